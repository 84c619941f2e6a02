# @summary The authorization policy of one agent on nodes (<agent>.policy, MCollective's
#   actionpolicy format, docs/SECURITY.md). batond is reloaded when it changes; a policy with a
#   mistake keeps the previous one in force (and says so in the log).
#
# @example Only ops may restart services, anyone may ask their status
#   baton::policy { 'service':
#     default => 'deny',
#     rules   => [
#       { 'effect' => 'allow', 'callers' => 'user=ops', 'actions' => 'restart status' },
#       { 'effect' => 'allow', 'actions' => 'status' },
#     ],
#   }
#
# @param default
#   What applies when no rule matches.
# @param rules
#   In order; the first that matches decides. callers, actions, facts and classes default to
#   '*' (any); facts and classes use the filter syntax of -F and -C.
define baton::policy (
  Enum['allow', 'deny'] $default = 'deny',
  Array[Struct[{
        effect            => Enum['allow', 'deny'],
        Optional[callers] => Baton::PolicyField,
        Optional[actions] => Baton::PolicyField,
        Optional[facts]   => Baton::PolicyField,
        Optional[classes] => Baton::PolicyField,
  }]] $rules = [],
) {
  include baton

  unless $title =~ /\A[a-z][a-z0-9_]*\z/ {
    fail("baton::policy: ${title} is not an agent name (lowercase letters, digits, '_')")
  }
  $lines = $rules.map |$rule| {
    [$rule['effect'], $rule['callers'], $rule['actions'], $rule['facts'], $rule['classes']].map |$field| {
      $field ? { undef => '*', default => $field }
    }.join("\t")
  }
  file { "${baton::config}/policy/${title}.policy":
    ensure  => file,
    owner   => 'root',
    group   => 'root',
    mode    => '0644',
    content => "# Managed by Puppet (baton::policy)\npolicy default ${default}\n${lines.map |$line| { "${line}\n" }.join('')}",
    notify  => Exec['baton-reload'],
  }
}
