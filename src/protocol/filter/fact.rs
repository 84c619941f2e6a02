//! Fact comparisons: `KEY<op>VALUE`, as given to `-F` and inside `-S` expressions.
//!
//! The semantics are MCollective's, so that an operator's filters select the same nodes:
//!
//! - A fact the node lacks (or whose value is null) never matches, not even with `!=`.
//! - An array fact matches when any element does; an object fact is tested on its keys.
//!   `!=` and a negated regex are the exact opposite of `==` and `=~` on a fact that exists:
//!   `roles!=web` selects the nodes none of whose roles is `web`.
//! - `<`, `<=`, `>`, `>=` compare numbers when both sides are numbers (a JSON number, or text
//!   that reads as an integer or a decimal), and text otherwise.
//! - `==` compares text; a fact that is a JSON number also equals a value that reads as the
//!   same number (`cpus==8` matches `8` and `8.0`), but text facts stay text, so that
//!   `version==1.10` does not match `1.1`. Booleans are the text `true` and `false`.
//! - `=~`, and a `/regex/` value with `=` or `==`, match by unanchored regular expression;
//!   `!=` with a `/regex/` value is the negation.

use std::cmp::Ordering;
use std::fmt;

use regex::Regex;
use serde_json::Value;

use super::pattern::{Compiler, regex_literal};
use super::{FilterErrorReason, NodeView, column_of};

/// The characters an operator is made of; a fact name ends where the first one appears.
pub(super) const OPERATOR_CHARS: [char; 5] = ['=', '!', '<', '>', '~'];

/// A comparison operator, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operator {
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    Match,
}

impl Operator {
    /// The operator at the start of `text`, longest first, and its length in bytes; `None` when
    /// the run of operator characters there is no operator (`>>`, `=!`). Includes MCollective's
    /// legacy spellings `=>` (for `>=`) and `=<` (for `<=`).
    pub(super) fn parse_prefix(text: &str) -> Option<(Operator, usize)> {
        const SPELLINGS: [(&str, Operator); 10] = [
            ("==", Operator::Equal),
            ("=~", Operator::Match),
            ("=>", Operator::GreaterOrEqual),
            ("=<", Operator::LessOrEqual),
            ("!=", Operator::NotEqual),
            ("<=", Operator::LessOrEqual),
            (">=", Operator::GreaterOrEqual),
            ("<", Operator::Less),
            (">", Operator::Greater),
            ("=", Operator::Equal),
        ];
        let (spelling, operator) = SPELLINGS.iter().find(|(spelling, _)| text.starts_with(spelling))?;
        // `rack>>1` is a typo, not `>` with the value `>1`: a value that would start with an
        // operator character must be quoted, so no typo silently matches nothing.
        if operator_run(text).len() > spelling.len() {
            return None;
        }
        Some((*operator, spelling.len()))
    }

    /// Whether `text` starts with an operator (so a word before it is a fact name).
    pub(super) fn starts(text: &str) -> bool {
        Operator::parse_prefix(text).is_some()
    }
}

/// The run of operator characters at the start of `text`, to quote in an "unknown operator"
/// error.
pub(super) fn operator_run(text: &str) -> String {
    text.chars().take_while(|character| OPERATOR_CHARS.contains(character)).collect()
}

/// A comparison's value as written: plain text (bare or unquoted), or a `/regex/`.
pub(super) enum ValueSyntax<'a> {
    Text(std::borrow::Cow<'a, str>),
    /// `inner` is between the slashes; `written` includes them.
    Regex {
        inner: &'a str,
        written: &'a str,
    },
}

/// One fact comparison, compiled.
#[derive(Debug, Clone)]
pub(super) struct FactTest {
    key: Box<str>,
    check: Check,
}

#[derive(Debug, Clone)]
enum Check {
    Equals(Literal),
    NotEquals(Literal),
    Compare(Comparison, Literal),
    Matches(Regex),
    NotMatches(Regex),
}

#[derive(Debug, Clone, Copy)]
enum Comparison {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

impl Comparison {
    fn accepts(self, fact_against_value: Ordering) -> bool {
        match self {
            Comparison::Less => fact_against_value.is_lt(),
            Comparison::LessOrEqual => fact_against_value.is_le(),
            Comparison::Greater => fact_against_value.is_gt(),
            Comparison::GreaterOrEqual => fact_against_value.is_ge(),
        }
    }

    fn words(self) -> &'static str {
        match self {
            Comparison::Less => "is less than",
            Comparison::LessOrEqual => "is at most",
            Comparison::Greater => "is greater than",
            Comparison::GreaterOrEqual => "is at least",
        }
    }
}

/// A value to compare with, parsed as a number once at compile time when it reads as one.
#[derive(Debug, Clone)]
struct Literal {
    text: Box<str>,
    number: Option<Number>,
}

impl Literal {
    fn new(text: &str) -> Literal {
        Literal { text: text.into(), number: parse_number(text) }
    }

    fn equals(&self, fact: Scalar<'_>) -> bool {
        match fact {
            Scalar::Text(text) => text == &*self.text,
            Scalar::Bool(true) => &*self.text == "true",
            Scalar::Bool(false) => &*self.text == "false",
            // A JSON number's text is always numeric, so a value that is not a number can
            // never equal it.
            Scalar::Number(number) => self
                .number
                .is_some_and(|value| Number::from_json(number).compare(value).is_some_and(Ordering::is_eq)),
        }
    }

    /// How the fact orders against this value: numerically when both are numbers.
    fn compare(&self, fact: Scalar<'_>) -> Option<Ordering> {
        if let (Some(fact_number), Some(value)) = (fact.number(), self.number) {
            return fact_number.compare(value);
        }
        fact.with_text(|text| Ord::cmp(text, &*self.text))
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.number.is_some() {
            formatter.write_str(&self.text)
        } else {
            write!(formatter, "{:?}", &*self.text)
        }
    }
}

impl FactTest {
    /// Parses the text of one `-F`: `KEY<op>VALUE`, with optional spaces around the operator.
    /// The value is the rest of the text, spaces included; a value in quotes (`"..."` or
    /// `'...'`) is taken literally, which also keeps `/a/` from being read as a regex.
    pub(super) fn parse(text: &str, compiler: &mut Compiler) -> Result<FactTest, FilterErrorReason> {
        let Some(operator_start) = text.find(OPERATOR_CHARS) else {
            return Err(FilterErrorReason::FactSyntax);
        };
        let key = text[..operator_start].trim();
        if key.is_empty() {
            return Err(FilterErrorReason::EmptyKey { column: column_of(text, operator_start) });
        }
        let Some((operator, operator_length)) = Operator::parse_prefix(&text[operator_start..]) else {
            return Err(FilterErrorReason::UnknownOperator {
                operator: operator_run(&text[operator_start..]),
                column: column_of(text, operator_start),
            });
        };
        let after_operator = operator_start + operator_length;
        let value_text = text[after_operator..].trim();
        if value_text.is_empty() {
            return Err(FilterErrorReason::MissingValue {
                operator: text[operator_start..after_operator].to_owned(),
                column: column_of(text, operator_start),
            });
        }
        let value_start = text.len() - text[after_operator..].trim_start().len();
        let value = if value_text.starts_with(['"', '\'']) {
            let (unquoted, end) = scan_quoted(text, value_start)?;
            let trailing = text[end..].trim();
            if !trailing.is_empty() {
                let trailing_start = text.len() - text[end..].trim_start().len();
                return Err(FilterErrorReason::TrailingText {
                    text: trailing.to_owned(),
                    column: column_of(text, trailing_start),
                });
            }
            ValueSyntax::Text(unquoted.into())
        } else if let Some(inner) = regex_literal(value_text) {
            ValueSyntax::Regex { inner, written: value_text }
        } else {
            ValueSyntax::Text(value_text.into())
        };
        FactTest::build(key, operator, value, compiler)
    }

    /// Compiles one comparison from its parts.
    pub(super) fn build(
        key: &str,
        operator: Operator,
        value: ValueSyntax<'_>,
        compiler: &mut Compiler,
    ) -> Result<FactTest, FilterErrorReason> {
        if key.contains(|character: char| {
            character.is_whitespace() || matches!(character, '"' | '\'' | '(' | ')')
        }) {
            return Err(FilterErrorReason::InvalidKey { key: key.to_owned() });
        }
        let comparison = |literal: &str, comparison| Check::Compare(comparison, Literal::new(literal));
        let check = match (operator, value) {
            (Operator::Match, ValueSyntax::Regex { inner: pattern, .. }) => {
                Check::Matches(compiler.regex(pattern)?)
            }
            (Operator::Match, ValueSyntax::Text(pattern)) => Check::Matches(compiler.regex(&pattern)?),
            (Operator::Equal, ValueSyntax::Regex { inner, .. }) => Check::Matches(compiler.regex(inner)?),
            (Operator::NotEqual, ValueSyntax::Regex { inner, .. }) => {
                Check::NotMatches(compiler.regex(inner)?)
            }
            (Operator::Equal, ValueSyntax::Text(text)) => Check::Equals(Literal::new(&text)),
            (Operator::NotEqual, ValueSyntax::Text(text)) => Check::NotEquals(Literal::new(&text)),
            // Ordering against a regex means nothing; like MCollective, take the text as written.
            (ordering, ValueSyntax::Regex { written, .. }) => comparison(written, ordering_of(ordering)),
            (ordering, ValueSyntax::Text(text)) => comparison(&text, ordering_of(ordering)),
        };
        Ok(FactTest { key: key.into(), check })
    }

    /// Whether `node` has the fact and its value passes.
    pub(super) fn matches<N: NodeView + ?Sized>(&self, node: &N) -> bool {
        node.fact(&self.key).is_some_and(|value| self.matches_value(value))
    }

    fn matches_value(&self, value: &Value) -> bool {
        if value.is_null() {
            return false;
        }
        match &self.check {
            Check::Equals(literal) => any_scalar(value, |fact| literal.equals(fact)),
            Check::NotEquals(literal) => !any_scalar(value, |fact| literal.equals(fact)),
            Check::Compare(comparison, literal) => any_scalar(value, |fact| {
                literal.compare(fact).is_some_and(|ordering| comparison.accepts(ordering))
            }),
            Check::Matches(regex) => {
                any_scalar(value, |fact| fact.with_text(|text| regex.is_match(text)).unwrap_or(false))
            }
            Check::NotMatches(regex) => {
                !any_scalar(value, |fact| fact.with_text(|text| regex.is_match(text)).unwrap_or(false))
            }
        }
    }
}

fn ordering_of(operator: Operator) -> Comparison {
    match operator {
        Operator::Less => Comparison::Less,
        Operator::LessOrEqual => Comparison::LessOrEqual,
        Operator::Greater => Comparison::Greater,
        // `build` handles the other operators before asking; `>=` is the only one left.
        _ => Comparison::GreaterOrEqual,
    }
}

/// Explains the comparison in words, e.g. `fact os.family is "Debian"`.
impl fmt::Display for FactTest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "fact {} ", self.key)?;
        match &self.check {
            Check::Equals(literal) => write!(formatter, "is {literal}"),
            Check::NotEquals(literal) => write!(formatter, "is not {literal}"),
            Check::Compare(comparison, literal) => {
                write!(formatter, "{} {literal}", comparison.words())
            }
            Check::Matches(regex) => write!(formatter, "matches /{}/", regex.as_str()),
            Check::NotMatches(regex) => write!(formatter, "does not match /{}/", regex.as_str()),
        }
    }
}

/// Reads a quoted value starting at byte `start` of `text` (which holds `"` or `'`). A
/// backslash escapes the quote character and itself; any other backslash is kept as written,
/// so a quoted regex like `"\d+"` means what it says. Returns the unquoted value and the byte
/// just after the closing quote.
pub(super) fn scan_quoted(text: &str, start: usize) -> Result<(String, usize), FilterErrorReason> {
    let unclosed = FilterErrorReason::UnclosedQuote { column: column_of(text, start) };
    let mut characters = text[start..].char_indices();
    let Some((_, quote)) = characters.next() else {
        return Err(unclosed);
    };
    let mut value = String::new();
    while let Some((offset, character)) = characters.next() {
        if character == quote {
            return Ok((value, start + offset + character.len_utf8()));
        }
        if character == '\\' {
            match characters.next() {
                Some((_, escaped)) if escaped == quote || escaped == '\\' => value.push(escaped),
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => break,
            }
        } else {
            value.push(character);
        }
    }
    Err(unclosed)
}

/// A fact value reduced to something comparable.
#[derive(Clone, Copy)]
enum Scalar<'a> {
    Text(&'a str),
    Bool(bool),
    Number(&'a serde_json::Number),
}

impl<'a> Scalar<'a> {
    fn of(value: &'a Value) -> Option<Scalar<'a>> {
        match value {
            Value::String(text) => Some(Scalar::Text(text)),
            Value::Bool(flag) => Some(Scalar::Bool(*flag)),
            Value::Number(number) => Some(Scalar::Number(number)),
            Value::Null | Value::Array(_) | Value::Object(_) => None,
        }
    }

    /// Runs `use_text` on the value's text. A number is formatted on the stack; `None` only if
    /// its text would not fit there (it always does for JSON numbers without arbitrary
    /// precision).
    fn with_text<R>(self, use_text: impl FnOnce(&str) -> R) -> Option<R> {
        match self {
            Scalar::Text(text) => Some(use_text(text)),
            Scalar::Bool(true) => Some(use_text("true")),
            Scalar::Bool(false) => Some(use_text("false")),
            Scalar::Number(number) => {
                let mut buffer = StackText::new();
                fmt::Write::write_fmt(&mut buffer, format_args!("{number}")).ok()?;
                buffer.as_str().map(use_text)
            }
        }
    }

    fn number(self) -> Option<Number> {
        match self {
            Scalar::Text(text) => parse_number(text),
            Scalar::Number(number) => Some(Number::from_json(number)),
            Scalar::Bool(_) => None,
        }
    }
}

/// Whether `test` passes for the value, for any element of an array, or for any key of an
/// object (MCollective tests a hash fact's keys).
fn any_scalar(value: &Value, test: impl Fn(Scalar<'_>) -> bool) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|item| Scalar::of(item).is_some_and(&test)),
        Value::Object(map) => map.keys().any(|key| test(Scalar::Text(key))),
        scalar => Scalar::of(scalar).is_some_and(test),
    }
}

/// A number from a fact or a filter value.
#[derive(Debug, Clone, Copy)]
enum Number {
    Integer(i128),
    Float(f64),
}

impl Number {
    fn from_json(number: &serde_json::Number) -> Number {
        if let Some(integer) = number.as_i64() {
            Number::Integer(integer.into())
        } else if let Some(integer) = number.as_u64() {
            Number::Integer(integer.into())
        } else {
            Number::Float(number.as_f64().unwrap_or(f64::NAN))
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Number::Integer(integer) => integer as f64,
            Number::Float(float) => float,
        }
    }

    /// `None` only for NaN, which never compares.
    fn compare(self, other: Number) -> Option<Ordering> {
        match (self, other) {
            (Number::Integer(left), Number::Integer(right)) => Some(left.cmp(&right)),
            (left, right) => left.as_f64().partial_cmp(&right.as_f64()),
        }
    }
}

/// Reads `text` as a number when all of it is one: an optional sign, digits, optionally a
/// decimal point followed by digits, optionally an exponent. Stricter than Rust's parsers on
/// purpose: `inf`, `NaN`, `1.`, `.5` and `0x10` are text.
fn parse_number(text: &str) -> Option<Number> {
    let bytes = text.as_bytes();
    let mut index = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let digits = |index: &mut usize| {
        let start = *index;
        while bytes.get(*index).is_some_and(u8::is_ascii_digit) {
            *index += 1;
        }
        *index > start
    };
    if !digits(&mut index) {
        return None;
    }
    let mut integral = true;
    if bytes.get(index) == Some(&b'.') {
        index += 1;
        integral = false;
        if !digits(&mut index) {
            return None;
        }
    }
    if matches!(bytes.get(index), Some(b'e' | b'E')) {
        index += 1;
        integral = false;
        if matches!(bytes.get(index), Some(b'+' | b'-')) {
            index += 1;
        }
        if !digits(&mut index) {
            return None;
        }
    }
    if index != bytes.len() {
        return None;
    }
    if integral && let Ok(integer) = text.parse::<i128>() {
        return Some(Number::Integer(integer));
    }
    text.parse::<f64>().ok().map(Number::Float)
}

/// A small buffer on the stack to format a number into, so that matching does not allocate.
struct StackText {
    bytes: [u8; 48],
    length: usize,
}

impl StackText {
    fn new() -> StackText {
        StackText { bytes: [0; 48], length: 0 }
    }

    fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.bytes[..self.length]).ok()
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let end = self.length + text.len();
        let slot = self.bytes.get_mut(self.length..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(text.as_bytes());
        self.length = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_strictly() {
        for (text, expected) in [
            ("8", Some(8.0)),
            ("-3", Some(-3.0)),
            ("+3", Some(3.0)),
            ("2.5", Some(2.5)),
            ("1e3", Some(1000.0)),
            ("1.5E-1", Some(0.15)),
            ("99999999999999999999999", Some(1e23)),
            ("", None),
            ("-", None),
            ("1.", None),
            (".5", None),
            ("inf", None),
            ("NaN", None),
            ("0x10", None),
            ("1e", None),
            ("1.2.3", None),
            (" 1", None),
        ] {
            assert_eq!(parse_number(text).map(Number::as_f64), expected, "parse_number({text:?})");
        }
    }

    #[test]
    fn quoted_values_unescape_only_quotes_and_backslashes() {
        for (text, expected) in [
            (r#""a b""#, Ok((String::from("a b"), 5))),
            (r#"'it''"#, Ok((String::from("it"), 4))),
            (r#""say \"hi\"""#, Ok((String::from(r#"say "hi""#), 12))),
            (r#""\d+\\""#, Ok((String::from(r"\d+\"), 7))),
            (r#""open"#, Err(FilterErrorReason::UnclosedQuote { column: 1 })),
            (r#""ends in \""#, Err(FilterErrorReason::UnclosedQuote { column: 1 })),
        ] {
            assert_eq!(scan_quoted(text, 0), expected, "scan_quoted({text:?})");
        }
    }

    #[test]
    fn numbers_format_on_the_stack() {
        let huge: Value = serde_json::json!(1e300);
        let Value::Number(number) = &huge else { panic!("json! of a float is a number") };
        assert_eq!(Scalar::Number(number).with_text(str::to_owned), Some(String::from("1e+300")));
    }
}
