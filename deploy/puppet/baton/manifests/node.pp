# @summary A Baton node: the batond package, node.toml, the message key, trusted callers'
#   keys, the facts file and the service.
#
# Every parameter can come from Hiera (baton::node::broker_urls, ...). The facts file is
# written from Puppet's own facts, and the classes file is the one Puppet writes itself, so a
# request filtered with -F or -C sees what Puppet sees.
#
# @example PSK, with secrets from Hiera (eyaml)
#   class { 'baton::node':
#     broker_urls => ['amqps://node:secret@mq1.example.com:5671/baton'],
#     psk         => Sensitive(lookup('baton::psk')),
#   }
#
# @param identity
#   The node's name in the fleet.
# @param collectives
#   The collectives the node serves; the first is its main one.
# @param broker_urls
#   Broker URLs, tried in order (amqp, amqps, stomp, stomp+ssl).
# @param broker_transport
#   'amqp' or 'stomp'; default: what the URLs say.
# @param broker_dialect
#   For STOMP: 'activemq' or 'rabbitmq'.
# @param tls_ca
#   PEM CA file for TLS URLs (a path on the node).
# @param tls_cert
#   Client certificate file, with tls_key.
# @param tls_key
#   Client key file, with tls_cert.
# @param security_scheme
#   'psk' or 'ed25519'.
# @param psk
#   The shared key (psk scheme).
# @param private_key
#   The node's private key file content, from `baton keygen --name <identity>` (ed25519).
# @param trusted_keys
#   The callers' public keys (ed25519): the caller's name (or name+LABEL while rotating) to its
#   public key, as `baton keygen` prints it (Baton::TrustedKeys). Keys not listed are removed,
#   so a rotation is: add the new key as `user=alice+2027`, let the callers switch, remove the
#   old one; each change reloads batond (SIGHUP).
# @param write_facts
#   Write Puppet's facts into a file batond reads.
# @param excluded_facts
#   Facts left out of the facts file because they change on every run.
# @param classes_file
#   Puppet's list of applied classes; default: this Puppet's own (settings::classfile).
# @param policy_unconfigured
#   What applies to an agent without a policy: 'allow' or 'deny'.
# @param audit_file
#   The audit log (one JSON line per request); undef for none.
# @param log_format
#   'text' or 'json' (journald and log shippers).
# @param log_level
#   A level or tracing filter directives.
# @param max_concurrency
#   Actions running at once.
# @param metrics_listen
#   host:port where batond serves Prometheus metrics (/metrics) and health (/healthz); undef
#   for none. Keep it on loopback or a monitoring network.
class baton::node (
  Array[String[1], 1] $broker_urls,
  String[1] $identity = $facts['networking']['fqdn'],
  Array[Pattern[/\A[a-z0-9_-]+\z/], 1] $collectives = ['baton'],
  Optional[Enum['amqp', 'stomp']] $broker_transport = undef,
  Optional[Enum['activemq', 'rabbitmq']] $broker_dialect = undef,
  Optional[String[1]] $tls_ca = undef,
  Optional[String[1]] $tls_cert = undef,
  Optional[String[1]] $tls_key = undef,
  Enum['psk', 'ed25519'] $security_scheme = 'psk',
  Optional[Sensitive[String[1]]] $psk = undef,
  Optional[Sensitive[String[1]]] $private_key = undef,
  Baton::TrustedKeys $trusted_keys = {},
  Boolean $write_facts = true,
  Array[String[1]] $excluded_facts = ['memory', 'system_uptime', 'uptime', 'uptime_days', 'uptime_hours',
  'uptime_seconds', 'load_averages', 'memoryfree', 'memoryfree_mb', 'swapfree', 'swapfree_mb', 'mountpoints'],
  String[1] $classes_file = $settings::classfile,
  Enum['allow', 'deny'] $policy_unconfigured = 'allow',
  Optional[String[1]] $audit_file = '/var/log/baton/audit.log',
  Enum['text', 'json'] $log_format = 'text',
  String[1] $log_level = 'info',
  Integer[1] $max_concurrency = 16,
  Optional[Pattern[/\A[^\s]+:[0-9]+\z/]] $metrics_listen = undef,
) {
  include baton
  $config = $baton::config

  case $security_scheme {
    'psk': {
      if $psk == undef { fail('baton::node: security_scheme psk needs psk (the shared key)') }
    }
    default: {
      if $private_key == undef {
        fail("baton::node: security_scheme ed25519 needs private_key (baton keygen --name ${identity})")
      }
    }
  }

  if $baton::manage_packages {
    package { 'batond':
      ensure => $baton::package_ensure,
      before => File["${config}/node.toml"],
    }
  }

  file { ["${config}/policy", $baton::agents]:
    ensure => directory,
    owner  => 'root',
    group  => 'root',
    mode   => '0755',
  }

  $psk_file = "${config}/psk"
  $key_file = "${config}/node.ed25519"
  $trusted_dir = "${config}/callers"
  $facts_file = "${config}/facts.json"
  $audit = $audit_file ? {
    undef   => undef,
    default => "${baton::root}${audit_file}",
  }

  $facts_files = $write_facts ? {
    true    => [$facts_file],
    default => [],
  }

  # The broker URLs carry the node user's password: never shown in a diff.
  file { "${config}/node.toml":
    ensure    => file,
    owner     => 'root',
    group     => 'root',
    mode      => '0640',
    show_diff => false,
    content   => epp('baton/node.toml.epp', {
        identity        => $identity,
        collectives     => $collectives,
        broker_urls     => $broker_urls,
        transport       => $broker_transport,
        dialect         => $broker_dialect,
        tls_ca          => $tls_ca,
        tls_cert        => $tls_cert,
        tls_key         => $tls_key,
        scheme          => $security_scheme,
        psk_file        => $psk_file,
        key_file        => $key_file,
        trusted_dir     => $trusted_dir,
        facts_files     => $facts_files,
        classes_file    => $classes_file,
        agents_dir      => $baton::agents,
        policy_dir      => "${config}/policy",
        unconfigured    => $policy_unconfigured,
        audit_file      => $audit,
        log_format      => $log_format,
        log_level       => $log_level,
        max_concurrency => $max_concurrency,
        metrics_listen  => $metrics_listen,
    }),
  }

  if $audit != undef {
    $audit_dir = $audit.regsubst('/[^/]*\z', '')
    exec { "baton-audit-dir ${audit_dir}":
      command => "mkdir -p '${audit_dir}'",
      creates => $audit_dir,
      path    => ['/usr/bin', '/bin'],
      before  => File["${config}/node.toml"],
    }
  }

  if $security_scheme == 'psk' {
    baton::secret { $psk_file:
      content => Sensitive("${psk.unwrap}\n"),
      notify  => Exec['baton-reload'],
    }
  } else {
    baton::secret { $key_file:
      content => $private_key,
      notify  => Exec['baton-reload'],
    }
    baton::trusted_keys { $trusted_dir:
      keys => $trusted_keys,
    }
  }

  if $write_facts {
    $kept = $facts.filter |$name, $value| { !($name in $excluded_facts) }
    # Facts describe the machine (serial numbers, addresses, mounts): only batond (root) reads
    # them; callers see what policies let them ask for.
    file { $facts_file:
      ensure  => file,
      owner   => 'root',
      group   => 'root',
      mode    => '0640',
      content => "${baton::to_json($kept)}\n",
    }
  }

  if $baton::manage_service {
    service { 'batond':
      ensure    => running,
      enable    => true,
      subscribe => File["${config}/node.toml"],
    }
    Service['batond'] -> Exec['baton-reload']
  }
}
