# @summary Renders a value as JSON (Puppet 7's core has no to_json; stdlib is not required).
#
# Used for the facts file, so that batond sees Puppet's own facts. Keys are sorted, so the
# same facts give the same file and batond is not reloaded for nothing.
#
# @param value
#   Any data value: hashes, arrays, strings, numbers, booleans, undef.
# @return [String] the JSON text
function baton::to_json(Any $value) >> String {
  case $value {
    Hash: {
      $members = $value.keys.sort.map |$key| { "${baton::to_json(String($key))}:${baton::to_json($value[$key])}" }
      "{${members.join(',')}}"
    }
    Array: {
      "[${value.map |$item| { baton::to_json($item) }.join(',')}]"
    }
    Boolean, Numeric: {
      "${value}"
    }
    Undef: {
      'null'
    }
    default: {
      # Any other control character (a fact read from a device or a file may hold one) would
      # make the file invalid JSON and batond refuse it: it becomes U+FFFD, escaped.
      $escaped = String($value).regsubst('\\\\', '\\\\\\\\', 'G').regsubst('"', '\\"', 'G')
        .regsubst("\n", '\\n', 'G').regsubst("\r", '\\r', 'G').regsubst("\t", '\\t', 'G')
        .regsubst(/[\x00-\x08\x0b\x0c\x0e-\x1f]/, '\\ufffd', 'G')
      "\"${escaped}\""
    }
  }
}
