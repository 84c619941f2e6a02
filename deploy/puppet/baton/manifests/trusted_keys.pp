# @summary A directory of trusted ed25519 public keys holding exactly the keys given: callers'
#   keys on a node (baton::node), nodes' keys on a client (baton::client).
#
# Files not listed are removed, so taking a key out of Hiera retires it on the next run, and
# every change reloads batond (a client reads the directory at every command).
#
# @param keys
#   A file title (the file is <title>.pub) to the key's name and public key (hex).
define baton::trusted_keys (
  Hash[String[1], Struct[{ name => String[1], public => Pattern[/\A[0-9a-f]{64}\z/] }]] $keys,
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
    file { "${title}/${file}.pub":
      ensure  => file,
      owner   => 'root',
      group   => 'root',
      mode    => '0644',
      content => "# managed by Puppet (baton::trusted_keys)\nname = ${key['name']}\npublic = ${key['public']}\n",
      notify  => Exec['baton-reload'],
    }
  }
}
