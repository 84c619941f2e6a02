//! Names and regular expressions: what `-I`, `-C` and `-A` hold, and the bounded regex
//! compiler every part of the filter language shares.
//!
//! A filter's text comes from the network, so [`Compiler`] keeps the budget for one filter:
//! its total length, how many regexes it may build, each with a size limit, and a compile
//! budget shared by all of its regexes, so that no filter can make a node spend unbounded
//! memory or time compiling it.
//!
//! The compile budget (security review finding 8: 32 regexes near the size limit cost a node
//! 160 ms of CPU per request, before authorization). Building a regex costs about as much as
//! the size limit it is built under, since the build stops once the limit is passed. So each
//! regex is first built under a small limit, and only a regex that needs more is built again
//! under a limit four times larger, up to [`REGEX_SIZE_LIMIT`]; every attempt's limit is
//! charged to the filter's [`REGEX_COMPILE_BUDGET`], and an attempt the remaining budget cannot
//! pay for is not made. The charge depends only on the filter's text, so the client (which
//! compiles every filter before sending it) and every node accept exactly the same filters.

use std::fmt;

use regex::{Regex, RegexBuilder};

use super::{
    FilterErrorReason, FilterFlag, MAX_DEPTH, MAX_EXPRESSION_BYTES, MAX_FILTER_BYTES, MAX_REGEXES,
    REGEX_COMPILE_BUDGET, REGEX_FIRST_SIZE_LIMIT, REGEX_SIZE_LIMIT,
};

/// The budget for compiling one filter.
#[derive(Debug)]
pub(super) struct Compiler {
    text_bytes: usize,
    regexes: usize,
    /// The sum of the size limits regexes were built under so far.
    compile_charged: usize,
}

impl Compiler {
    pub(super) fn new() -> Compiler {
        Compiler { text_bytes: 0, regexes: 0, compile_charged: 0 }
    }

    /// What compiling the filter's regexes was charged, in bytes of size limit.
    pub(super) fn compile_charged(&self) -> usize {
        self.compile_charged
    }

    /// Counts one flag's text against the per-flag and whole-filter length limits.
    pub(super) fn charge_text(&mut self, text: &str) -> Result<(), FilterErrorReason> {
        if text.len() > MAX_EXPRESSION_BYTES {
            return Err(FilterErrorReason::TooLong { length: text.len(), limit: MAX_EXPRESSION_BYTES });
        }
        self.text_bytes += text.len();
        if self.text_bytes > MAX_FILTER_BYTES {
            return Err(FilterErrorReason::FilterTooLong { limit: MAX_FILTER_BYTES });
        }
        Ok(())
    }

    /// Builds one regex within the limits. Matching is unanchored, like MCollective's
    /// (Ruby's `=~`): write `^` and `$` to match whole values.
    pub(super) fn regex(&mut self, pattern: &str) -> Result<Regex, FilterErrorReason> {
        if self.regexes >= MAX_REGEXES {
            return Err(FilterErrorReason::TooManyRegexes { limit: MAX_REGEXES });
        }
        self.regexes += 1;
        if pattern.is_empty() {
            // An empty regex matches everything, which is never what `//` was meant to say.
            return Err(FilterErrorReason::BadRegex {
                pattern: String::new(),
                message: "it is empty".to_owned(),
            });
        }
        let mut size_limit = REGEX_FIRST_SIZE_LIMIT;
        loop {
            if self.compile_charged + size_limit > REGEX_COMPILE_BUDGET {
                return Err(FilterErrorReason::RegexBudget {
                    pattern: pattern.to_owned(),
                    limit: REGEX_COMPILE_BUDGET,
                });
            }
            self.compile_charged += size_limit;
            match build_regex(pattern, size_limit) {
                Err(regex::Error::CompiledTooBig(_)) if size_limit < REGEX_SIZE_LIMIT => {
                    size_limit = (size_limit * 4).min(REGEX_SIZE_LIMIT);
                }
                Err(regex::Error::CompiledTooBig(_)) => {
                    return Err(FilterErrorReason::RegexTooBig {
                        pattern: pattern.to_owned(),
                        limit: REGEX_SIZE_LIMIT,
                    });
                }
                Err(other) => {
                    return Err(FilterErrorReason::BadRegex {
                        pattern: pattern.to_owned(),
                        message: regex_error_summary(&other),
                    });
                }
                Ok(regex) => return Ok(regex),
            }
        }
    }
}

fn build_regex(pattern: &str, size_limit: usize) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .size_limit(size_limit)
        .dfa_size_limit(size_limit)
        .nest_limit(MAX_DEPTH as u32)
        .build()
}

/// The one line of a regex error that says what is wrong. The regex crate's syntax errors
/// span several lines (the pattern, a caret, then `error: ...`); a filter error is one line
/// and already names the pattern.
fn regex_error_summary(error: &regex::Error) -> String {
    let full = error.to_string();
    full.lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .unwrap_or_else(|| full.lines().next().unwrap_or("invalid regular expression"))
        .to_owned()
}

/// The inside of a `/regex/` value, if `text` is one: it starts and ends with `/`. An empty
/// `//` is a regex too, so that [`Compiler::regex`] refuses it rather than it passing for a name.
pub(super) fn regex_literal(text: &str) -> Option<&str> {
    text.strip_prefix('/')?.strip_suffix('/')
}

/// An identity, class or agent name, or a regex over them.
#[derive(Debug, Clone)]
pub(super) enum Pattern {
    Exact(Box<str>),
    Regex(Regex),
}

impl Pattern {
    /// Parses the text of one `-I`, `-C` or `-A`: a name, or `/regex/`.
    pub(super) fn parse(
        text: &str,
        flag: FilterFlag,
        compiler: &mut Compiler,
    ) -> Result<Pattern, FilterErrorReason> {
        let text = text.trim();
        if text.is_empty() {
            return Err(FilterErrorReason::Empty);
        }
        if let Some(inner) = regex_literal(text) {
            return Ok(Pattern::Regex(compiler.regex(inner)?));
        }
        // Identities, classes and agents never contain whitespace; "web01 web02" is two names
        // given as one, which would silently match nothing.
        if text.contains(char::is_whitespace) {
            return Err(FilterErrorReason::Whitespace { flag: flag.short_flag() });
        }
        Ok(Pattern::Exact(text.into()))
    }

    /// Whether one name matches.
    pub(super) fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Exact(exact) => **exact == *name,
            Pattern::Regex(regex) => regex.is_match(name),
        }
    }

    /// Whether any of a node's names match: an exact name goes through `has` (which may be a
    /// set lookup), a regex is tried against each name.
    pub(super) fn matches_any(&self, names: &[String], has: impl Fn(&str) -> bool) -> bool {
        match self {
            Pattern::Exact(exact) => has(exact),
            Pattern::Regex(regex) => names.iter().any(|name| regex.is_match(name)),
        }
    }

    /// The name, when this is not a regex.
    pub(super) fn exact(&self) -> Option<&str> {
        match self {
            Pattern::Exact(exact) => Some(exact),
            Pattern::Regex(_) => None,
        }
    }

    /// `is "web01"` or `matches /^web/`.
    pub(super) fn describe_is(&self) -> DescribeIs<'_> {
        DescribeIs(self)
    }

    /// `has class "apache"` or `has a class matching /^role::/`.
    pub(super) fn describe_has<'a>(&'a self, what: &'static str) -> DescribeHas<'a> {
        DescribeHas { pattern: self, what }
    }
}

pub(super) struct DescribeIs<'a>(&'a Pattern);

impl fmt::Display for DescribeIs<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Pattern::Exact(exact) => write!(formatter, "is {exact:?}"),
            Pattern::Regex(regex) => write!(formatter, "matches /{}/", regex.as_str()),
        }
    }
}

pub(super) struct DescribeHas<'a> {
    pattern: &'a Pattern,
    what: &'static str,
}

impl fmt::Display for DescribeHas<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pattern {
            Pattern::Exact(exact) => write!(formatter, "has {} {exact:?}", self.what),
            Pattern::Regex(regex) => {
                let article = if self.what.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
                write!(formatter, "has {article} {} matching /{}/", self.what, regex.as_str())
            }
        }
    }
}
