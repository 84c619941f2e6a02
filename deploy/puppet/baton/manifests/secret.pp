# @summary A file only root may read, holding a key (the PSK, a private key); its content is
#   never shown in diffs or reports.
#
# @param content
#   The file's content.
define baton::secret (
  Sensitive[String[1]] $content,
) {
  file { $title:
    ensure    => file,
    owner     => 'root',
    group     => 'root',
    mode      => '0600',
    content   => $content,
    show_diff => false,
  }
}
