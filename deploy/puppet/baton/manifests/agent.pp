# @summary An external agent: its executable and definition on nodes, its definition on clients
#   and consoles (so they check typed inputs and compute aggregates before any node answers).
#
# Declare it after baton::node and/or baton::client (the defaults of on_node and on_client look
# at which of them this catalog has). A node is reloaded (SIGHUP) when the agent changes, which
# binds its queue for the new agent.
#
# @example
#   baton::agent { 'diskfree':
#     definition => file('profile/baton/diskfree/definition.json'),
#     source     => 'puppet:///modules/profile/baton/diskfree/agent',
#   }
#
# @param definition
#   The agent's definition.json content (docs/AGENTS.md).
# @param source
#   Where the executable comes from (a puppet:/// URL or a path), or use content.
# @param content
#   The executable's content, instead of source.
# @param on_node
#   Install the executable and definition into batond's agents directory.
# @param on_client
#   Install the definition into the clients' definitions directory.
define baton::agent (
  String[1] $definition,
  Optional[String[1]] $source = undef,
  Optional[String[1]] $content = undef,
  Boolean $on_node = defined(Class['baton::node']),
  Boolean $on_client = defined(Class['baton::client']),
) {
  include baton

  unless $title =~ /\A[a-z][a-z0-9_]*\z/ {
    fail("baton::agent: ${title} is not an agent name (lowercase letters, digits, '_')")
  }
  if $on_node and $source == undef and $content == undef {
    fail("baton::agent ${title}: give the executable as source or content")
  }

  if $on_node {
    $dir = "${baton::agents}/${title}"
    file { $dir:
      ensure => directory,
      owner  => 'root',
      group  => 'root',
      mode   => '0755',
    }
    file { "${dir}/definition.json":
      ensure  => file,
      owner   => 'root',
      group   => 'root',
      mode    => '0644',
      content => $definition,
      notify  => Exec['baton-reload'],
    }
    file { "${dir}/agent":
      ensure  => file,
      owner   => 'root',
      group   => 'root',
      mode    => '0755',
      source  => $source,
      content => $content,
      notify  => Exec['baton-reload'],
    }
  }

  if $on_client {
    file { ["${baton::definitions}/${title}"]:
      ensure => directory,
      owner  => 'root',
      group  => 'root',
      mode   => '0755',
    }
    file { "${baton::definitions}/${title}/definition.json":
      ensure  => file,
      owner   => 'root',
      group   => 'root',
      mode    => '0644',
      content => $definition,
    }
  }
}
