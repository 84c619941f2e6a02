# @summary One field of a policy rule: no tab, newline or other control character, since a
#   policy file is one rule per line with tab-separated fields; one in a field would end the
#   field or the line and let the rest be read as another rule.
type Baton::PolicyField = Pattern[/\A[^\x00-\x1f\x7f]+\z/]
