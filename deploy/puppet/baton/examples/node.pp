# A node and a client on one machine, with an external agent and its policy: the shape of a
# site's profile class. Secrets come from Hiera (eyaml) in a real site.
class { 'baton::node':
  identity    => 'web01.example.com',
  collectives => ['baton', 'dc1'],
  broker_urls => ['amqps://node:secret@mq1.example.com:5671/baton'],
  tls_ca      => '/etc/baton/ca.pem',
  psk         => Sensitive('change me: a long random shared key'),
}
class { 'baton::client':
  broker_urls => ['amqps://client:secret@mq1.example.com:5671/baton'],
  tls_ca      => '/etc/baton/ca.pem',
  psk         => Sensitive('change me: a long random shared key'),
}
baton::agent { 'hello':
  definition => file('/usr/share/doc/batond/examples/agents/hello/definition.json'),
  source     => '/usr/share/doc/batond/examples/agents/hello/agent',
}
baton::policy { 'hello':
  default => 'deny',
  rules   => [{ 'effect' => 'allow', 'callers' => 'user=ops' }],
}
