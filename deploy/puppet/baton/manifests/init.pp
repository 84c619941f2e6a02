# @summary Settings shared by every Baton class: where files go and how packages are handled.
#
# Declared implicitly by baton::node, baton::client and the defined types; set its parameters
# through Hiera (baton::root, ...).
#
# @param root
#   A directory every managed path is put under, written into the configuration too: '' on a
#   real machine; a temporary directory for tests and image builds.
# @param config_dir
#   Where node.toml, client.toml, keys and policies live.
# @param agents_dir
#   The external agents of batond (one directory per agent).
# @param definitions_dir
#   The agent definitions the CLI and console read (copies of the nodes' definition.json).
# @param manage_packages
#   Install the batond and baton Debian packages (built by bin/package).
# @param package_ensure
#   The packages' ensure value: 'installed', 'latest' or a version.
# @param manage_service
#   Manage batond.service: running and enabled, restarted when node.toml changes, reloaded
#   (SIGHUP) when keys, agents, policies or facts change.
# @param reload_command
#   What reloads batond when keys, agents or policies change. Default with manage_service:
#   systemctl try-reload-or-restart batond (a stopped batond is no error). Without
#   manage_service and without this: nothing (batond re-reads facts by itself, the rest at its
#   next SIGHUP).
class baton (
  String $root = '',
  String[1] $config_dir = '/etc/baton',
  String[1] $agents_dir = '/usr/lib/baton/agents',
  String[1] $definitions_dir = '/usr/share/baton/definitions',
  Boolean $manage_packages = true,
  String[1] $package_ensure = 'installed',
  Boolean $manage_service = true,
  Optional[String[1]] $reload_command = undef,
) {
  $config = "${root}${config_dir}"
  $agents = "${root}${agents_dir}"
  $definitions = "${root}${definitions_dir}"
  # `true` when nothing is to be reloaded: the exec below then does nothing.
  $reload = $reload_command ? {
    undef   => $manage_service ? {
      true    => 'systemctl try-reload-or-restart batond',
      default => 'true',
    },
    default => $reload_command,
  }

  if $root != '' {
    # Under a test or image root, the parent directories the packages would create.
    exec { 'baton-parents':
      command => "mkdir -p '${config}' '${agents}' '${definitions}'",
      unless  => "test -d '${config}' -a -d '${agents}' -a -d '${definitions}'",
      path    => ['/usr/bin', '/bin'],
      before  => File[$config],
    }
  }
  file { $config:
    ensure => directory,
    owner  => 'root',
    group  => 'root',
    mode   => '0755',
  }

  # The one place that reloads batond: everything batond re-reads on SIGHUP notifies it.
  exec { 'baton-reload':
    command     => $reload,
    path        => ['/usr/sbin', '/usr/bin', '/sbin', '/bin'],
    refreshonly => true,
  }
}
