# @summary A Baton client (the CLI and the console): the baton package, client.toml, the
#   message key and the nodes' public keys it trusts.
#
# @example ed25519, nodes' keys from Hiera
#   class { 'baton::client':
#     broker_urls       => ['amqps://client:secret@mq1.example.com:5671/baton'],
#     security_scheme   => 'ed25519',
#     private_key       => Sensitive(lookup('baton::client::key')),
#     trusted_node_keys => lookup('baton::node_keys'),
#   }
#
# @param broker_urls
#   Broker URLs, tried in order.
# @param collective
#   The collective requests go to unless -T says otherwise.
# @param broker_transport
#   'amqp' or 'stomp'; default: what the URLs say.
# @param broker_dialect
#   For STOMP: 'activemq' or 'rabbitmq'.
# @param tls_ca
#   PEM CA file for TLS URLs.
# @param security_scheme
#   'psk' or 'ed25519'.
# @param psk
#   The shared key (psk scheme).
# @param private_key
#   The caller's private key file content, from `baton keygen --name user=<login>` (ed25519).
#   On a shared machine each user usually has their own key in ~/.config/baton instead.
# @param caller
#   The caller requests name (ed25519: must be private_key's name); default: user=<login>.
# @param trusted_node_keys
#   The nodes' public keys (ed25519): the node's identity (or identity+LABEL while rotating)
#   to its public key (Baton::TrustedKeys). Keys not listed are removed.
# @param timeout_secs
#   Seconds to wait for replies.
class baton::client (
  Array[String[1], 1] $broker_urls,
  Pattern[/\A[a-z0-9_-]+\z/] $collective = 'baton',
  Optional[Enum['amqp', 'stomp']] $broker_transport = undef,
  Optional[Enum['activemq', 'rabbitmq']] $broker_dialect = undef,
  Optional[String[1]] $tls_ca = undef,
  Enum['psk', 'ed25519'] $security_scheme = 'psk',
  Optional[Sensitive[String[1]]] $psk = undef,
  Optional[Sensitive[String[1]]] $private_key = undef,
  Optional[String[1]] $caller = undef,
  Baton::TrustedKeys $trusted_node_keys = {},
  Integer[1] $timeout_secs = 10,
) {
  include baton
  $config = $baton::config
  # Not node.toml's psk file: a machine that is node and client holds the key twice rather
  # than have two classes manage one file.
  $psk_file = "${config}/client.psk"
  $key_file = "${config}/client.ed25519"
  $trusted_dir = "${config}/nodes"

  if $baton::manage_packages {
    package { 'baton':
      ensure => $baton::package_ensure,
      before => File["${config}/client.toml"],
    }
  }

  # The broker URLs carry the client user's password, and the key or PSK the client signs
  # with is root's alone anyway: readable by root only, and never shown in a diff.
  file { "${config}/client.toml":
    ensure    => file,
    owner     => 'root',
    group     => 'root',
    mode      => '0640',
    show_diff => false,
    content   => epp('baton/client.toml.epp', {
        collective      => $collective,
        caller          => $caller,
        timeout_secs    => $timeout_secs,
        definitions_dir => $baton::definitions,
        broker_urls     => $broker_urls,
        transport       => $broker_transport,
        dialect         => $broker_dialect,
        tls_ca          => $tls_ca,
        scheme          => $security_scheme,
        psk_file        => $psk_file,
        key_file        => $key_file,
        trusted_dir     => $trusted_dir,
    }),
  }

  file { $baton::definitions:
    ensure => directory,
    owner  => 'root',
    group  => 'root',
    mode   => '0755',
  }

  case $security_scheme {
    'psk': {
      if $psk == undef { fail('baton::client: security_scheme psk needs psk (the shared key)') }
      baton::secret { $psk_file:
        content => Sensitive("${psk.unwrap}\n"),
      }
    }
    default: {
      if $private_key == undef {
        fail('baton::client: security_scheme ed25519 needs private_key (baton keygen --name user=<login>)')
      }
      baton::secret { $key_file:
        content => $private_key,
      }
      baton::trusted_keys { $trusted_dir:
        keys => $trusted_node_keys,
      }
    }
  }
}
