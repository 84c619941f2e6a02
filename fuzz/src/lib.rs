//! What several fuzz targets share: reading filter flags out of the fuzzer's bytes.

use baton::protocol::filter::FilterSpec;

/// Splits `data` on NUL bytes into filter flags. In each, the first byte picks the flag (`-I`,
/// `-C`, `-F`, `-A` or `-S`); with `repeats`, the second says how many times the text is
/// repeated (1 to 256), so that small inputs reach texts past the size limits; the rest, read as
/// UTF-8 (lossily), is the text.
pub fn filter_spec(data: &[u8], repeats: bool) -> FilterSpec {
    let mut spec = FilterSpec::default();
    for chunk in data.split(|byte| *byte == 0) {
        let Some((selector, rest)) = chunk.split_first() else { continue };
        let (times, text) = match rest.split_first() {
            Some((repeat, text)) if repeats => (usize::from(*repeat) + 1, text),
            _ if repeats => continue,
            _ => (1, rest),
        };
        let text = String::from_utf8_lossy(text).repeat(times);
        let list = match selector % 5 {
            0 => &mut spec.identity,
            1 => &mut spec.class,
            2 => &mut spec.fact,
            3 => &mut spec.agent,
            _ => &mut spec.select,
        };
        list.push(text);
    }
    spec
}
