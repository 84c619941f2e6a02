//! How Baton's programs write their log lines: the one `tracing` set-up of `batond`, `baton`
//! (and so the console) and `baton-emulator`, and the one escaping of hostile text in them.
//!
//! Log lines carry what messages claim: a request's caller (`user=alice`), its sender, agent
//! and action, a node's identity from a registration, error messages quoting any of them. With
//! a PSK those are claims any key holder writes, and a caller holding a newline would end the
//! line and forge the next one (`caller=x⏎2026-12-02T… INFO request accepted caller=user=root`),
//! or carry terminal escape codes to whoever reads the log. So the text format escapes every
//! control character of every field, where the line is formatted rather than at each `warn!`:
//! an event written later is covered too, whatever it logs and however (`%`, `?`, the message).
//! The JSON format needs nothing more: its encoder escapes them. The audit log is JSON lines
//! too (`node::audit`).

use std::borrow::Cow;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;

/// Installs the process's log subscriber, writing to standard error: JSON lines when `json`,
/// else text lines (coloured when `ansi`) whose field values have their control characters
/// escaped ([`escape_control_characters`]). Call once, at the start of `main`.
pub fn init(filter: EnvFilter, json: bool, ansi: bool) {
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if json {
        builder.json().init();
    } else {
        let fields = tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
            let text = format!("{value:?}");
            let text = escape_control_characters(&text);
            if field.name() == "message" {
                write!(writer, "{text}")
            } else {
                write!(writer, "{}={text}", field.name())
            }
        })
        .delimited(" ");
        builder.fmt_fields(fields).init();
    }
}

/// `text` with every control character (line breaks, escape, NUL, C1 controls) and the Unicode
/// line and paragraph separators written as Rust escapes (`\n`, `\u{1b}`), so that it stays on
/// one line and carries no terminal codes. Text without any is returned as it is.
pub fn escape_control_characters(text: &str) -> Cow<'_, str> {
    escape_where(text, |character| character.is_control() || matches!(character, '\u{2028}' | '\u{2029}'))
}

/// `text` as a terminal may show it: as [`escape_control_characters`], but keeping line breaks
/// and tabs, for node-supplied text in the CLI's human output (a command's output keeps its
/// lines; an escape sequence in it cannot move the cursor, recolour or retitle the terminal).
pub fn escape_terminal_controls(text: &str) -> Cow<'_, str> {
    escape_where(text, |character| character.is_control() && !matches!(character, '\n' | '\t'))
}

fn escape_where(text: &str, needs_escape: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(&needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for character in text.chars() {
        if needs_escape(character) {
            escaped.extend(character.escape_default());
        } else {
            escaped.push(character);
        }
    }
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::escape_control_characters;

    #[test]
    fn a_terminal_keeps_lines_and_tabs_but_no_escape_sequence() {
        use super::escape_terminal_controls;
        assert_eq!(escape_terminal_controls("a\tb\nc"), "a\tb\nc");
        assert_eq!(
            escape_terminal_controls("\u{1b}]0;owned\u{7}\u{1b}[2J\r"),
            "\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\r"
        );
        assert_eq!(escape_terminal_controls("\u{9b}31m"), "\\u{9b}31m");
    }

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        let check = |text: &str, expected: &str| assert_eq!(escape_control_characters(text), expected);
        check("user=alice", "user=alice");
        check("naïve ünïcode", "naïve ünïcode");
        check("x\n2026-12-02 INFO forged", "x\\n2026-12-02 INFO forged");
        check("a\r\tb\0", "a\\r\\tb\\u{0}");
        check("\u{1b}[31mred", "\\u{1b}[31mred");
        check("one\u{2028}two\u{85}", "one\\u{2028}two\\u{85}");
    }
}
