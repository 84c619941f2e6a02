# @summary A directory of trusted ed25519 public keys holding exactly the keys given: callers'
#   keys on a node (baton::node), nodes' keys on a client (baton::client).
#
# Files not listed are removed, so taking a key out of Hiera retires it on the next run, and
# every change reloads batond (a client reads the directory at every command).
#
# @param keys
#   The key's name (or name+LABEL, for a second key of that name while rotating) to its public
#   key; the file is <title>.pub. A `name` that is not the title's is refused here, as batond
#   would refuse the file.
define baton::trusted_keys (
  Baton::TrustedKeys $keys,
) {
  include baton

  file { $title:
    ensure  => directory,
    owner   => 'root',
    group   => 'root',
    mode    => '0755',
    recurse => true,
    purge   => true,
    force   => true,
    notify  => Exec['baton-reload'],
  }
  $keys.each |$file, $key| {
    $name = split($file, '\+')[0]
    if $key['name'] and $key['name'] != $name {
      $named = $key['name']
      fail(@("MESSAGE"/L))
        baton::trusted_keys: the key titled '${file}' is named '${named}': a trusted key is titled \
        after its name ('${named}', or '${named}+LABEL' beside another key of that name), so that \
        no title lets one caller sign as another
        | MESSAGE
    }
    file { "${title}/${file}.pub":
      ensure  => file,
      owner   => 'root',
      group   => 'root',
      mode    => '0644',
      content => "# managed by Puppet (baton::trusted_keys)\nname = ${name}\npublic = ${key['public']}\n",
      notify  => Exec['baton-reload'],
    }
  }
}
