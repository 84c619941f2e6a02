# @summary Trusted ed25519 public keys: a file title to the key (its public half in hex, and
#   optionally its name). The title is the key's name (`user=alice`, a node's identity), or the
#   name, `+` and a label (`user=alice+2027`) for a second key of that name during a rotation.
#   batond and baton refuse a key file whose name line is not the name its title gives, so a
#   title cannot let one caller sign as another; baton::trusted_keys fails the catalog first.
type Baton::TrustedKeys = Hash[
  Pattern[/\A[A-Za-z0-9=._@:-]+(\+[A-Za-z0-9._-]+)?\z/],
  Struct[{ Optional[name] => String[1], public => Pattern[/\A[0-9a-f]{64}\z/] }]
]
