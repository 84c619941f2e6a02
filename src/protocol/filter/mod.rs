//! The filter language: which nodes a request is for.
//!
//! A filter travels in a request as source text ([`FilterSpec`]); the client and every node
//! compile it with the same parser ([`Filter::compile`]) and the node evaluates it against
//! itself ([`Filter::matches`]). The flags are MCollective's, and an operator's MCollective
//! filters select the same nodes here:
//!
//! - `-I` identity, exact or `/regex/`. Several `-I` are ORed among themselves.
//! - `-C` class, exact or `/regex/`, matching any of the node's classes.
//! - `-F 'KEY<op>VALUE'` with `==` (also `=`), `!=`, `<`, `>`, `<=`, `>=`, `=~` (and
//!   MCollective's legacy `=>` and `=<`). A `/regex/` value with `=` or `==` matches by regular
//!   expression. Dotted keys reach into structured facts.
//! - `-A` agent, exact or `/regex/`.
//! - `-S 'EXPR'`: classes and fact comparisons joined with `and`, `or`, `not` (or `!`) and
//!   parentheses; a bare word or `/regex/` is a class.
//!
//! Different flags, and several `-C`, `-F`, `-A` or `-S`, are ANDed. An empty filter matches
//! every node.
//!
//! Filter text arrives from the network on every node, so compiling is bounded: each flag's text
//! is at most [`MAX_EXPRESSION_BYTES`], all of them together at most [`MAX_FILTER_BYTES`],
//! expressions nest at most [`MAX_DEPTH`] levels, and a filter holds at most [`MAX_REGEXES`]
//! regular expressions, each limited to [`REGEX_SIZE_LIMIT`] bytes compiled and all of them
//! together to a compile budget of [`REGEX_COMPILE_BUDGET`]. Matching a compiled
//! filter against a node does not allocate.

mod fact;
mod pattern;
mod select;

use std::fmt;

use serde::{Deserialize, Serialize};

use fact::FactTest;
use pattern::{Compiler, Pattern};
use select::Expr;

/// The longest text accepted for one flag (one `-I`, `-C`, `-F`, `-A` or `-S` value), in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 4 * 1024;
/// The longest text accepted for a whole filter (every flag's text added up), in bytes.
pub const MAX_FILTER_BYTES: usize = 16 * 1024;
/// How deeply parentheses and `not` may nest in one `-S` expression.
pub const MAX_DEPTH: usize = 64;
/// How many regular expressions one filter may hold.
pub const MAX_REGEXES: usize = 32;
/// The most memory one compiled regular expression may take, in bytes (see
/// [`regex::RegexBuilder::size_limit`]).
pub const REGEX_SIZE_LIMIT: usize = 512 * 1024;
/// The size limit a regex is first built under; one that needs more is built again under
/// limits four times larger, up to [`REGEX_SIZE_LIMIT`] (see `pattern.rs`).
pub const REGEX_FIRST_SIZE_LIMIT: usize = 32 * 1024;
/// The sum of the size limits all of one filter's regexes may be built under, attempts that
/// needed a larger limit included: what bounds the CPU a node spends compiling one filter.
/// 32 ASCII-only regexes fit (each is built under the first limit), a dozen using Unicode
/// classes such as `\w`, or three that need nearly [`REGEX_SIZE_LIMIT`]; compiling it costs
/// an eighth of what 32 regexes at the size limit did.
pub const REGEX_COMPILE_BUDGET: usize = 2 * 1024 * 1024;

/// A filter as it travels in a request: the source text of each flag, unparsed. Every node
/// parses it with the same parser as the client, so the meaning cannot drift between them.
/// All lists are ANDed together; an empty spec matches every node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FilterSpec {
    /// `-I`: an identity or `/regex/`. Several `-I` are ORed among themselves (MCollective).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity: Vec<String>,
    /// `-C`: a class name or `/regex/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class: Vec<String>,
    /// `-F`: `key<op>value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fact: Vec<String>,
    /// `-A`: an agent name or `/regex/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent: Vec<String>,
    /// `-S`: compound expressions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub select: Vec<String>,
}

impl FilterSpec {
    /// True when no flag was given: the spec matches every node.
    pub fn is_empty(&self) -> bool {
        self.identity.is_empty()
            && self.class.is_empty()
            && self.fact.is_empty()
            && self.agent.is_empty()
            && self.select.is_empty()
    }
}

/// What a filter needs to know about a node.
pub trait NodeView {
    /// The node's identity (`identity` in its configuration).
    fn identity(&self) -> &str;
    /// Whether the node has exactly this class.
    fn has_class(&self, class: &str) -> bool;
    /// Every class of the node, for regex matching.
    fn classes(&self) -> &[String];
    /// A fact by dotted key (`os.family` reaches into structured facts); [`dotted_fact`] does
    /// the lookup for facts held as one JSON object.
    fn fact(&self, dotted_key: &str) -> Option<&serde_json::Value>;
    /// Whether the node has exactly this agent.
    fn has_agent(&self, agent: &str) -> bool;
    /// Every agent of the node, for regex matching.
    fn agents(&self) -> &[String];
}

/// Looks a dotted key up in structured facts: `os.family` is `facts["os"]["family"]`, and
/// `disks.0.size` indexes into an array. A key that exists as written (flat facts whose names
/// contain dots, such as `"os.family"` at the top level) wins over the dotted path, at every
/// level. This is the one dotted-key walker: the node, the console, `rpcutil get_fact` and the
/// tests all look facts up with it, so they cannot disagree about what a key names.
pub fn dotted_fact<'facts>(
    facts: &'facts serde_json::Value,
    dotted_key: &str,
) -> Option<&'facts serde_json::Value> {
    walk(|segment| child_value(facts, segment), dotted_key)
}

/// [`dotted_fact`] over facts held as a JSON object's map (as a node holds them).
pub fn dotted_fact_in<'facts>(
    facts: &'facts serde_json::Map<String, serde_json::Value>,
    dotted_key: &str,
) -> Option<&'facts serde_json::Value> {
    walk(|segment| facts.get(segment), dotted_key)
}

/// The walk itself, given how to take one step (`child`) from where it stands.
fn walk<'facts>(
    child: impl Fn(&str) -> Option<&'facts serde_json::Value>,
    dotted_key: &str,
) -> Option<&'facts serde_json::Value> {
    if let Some(found) = child(dotted_key) {
        return Some(found);
    }
    // Every dot is a possible boundary between nested keys; only prefixes that exist are
    // followed, so with ordinary facts this walks a single path.
    dotted_key.match_indices('.').find_map(|(dot, _)| {
        let (head, rest) = (&dotted_key[..dot], &dotted_key[dot + 1..]);
        child(head).and_then(|inner| dotted_fact(inner, rest))
    })
}

fn child_value<'facts>(value: &'facts serde_json::Value, segment: &str) -> Option<&'facts serde_json::Value> {
    match value {
        serde_json::Value::Object(map) => map.get(segment),
        serde_json::Value::Array(items) => segment.parse::<usize>().ok().and_then(|index| items.get(index)),
        _ => None,
    }
}

/// A filter compiled from a [`FilterSpec`]: regexes built, expressions parsed.
#[derive(Debug, Clone)]
pub struct Filter {
    spec: FilterSpec,
    /// ORed among themselves.
    identities: Vec<Pattern>,
    classes: Vec<Pattern>,
    facts: Vec<FactTest>,
    agents: Vec<Pattern>,
    selects: Vec<Expr>,
    compile_cost: usize,
}

impl Filter {
    /// Parses every flag of `spec`. The first flag that does not parse is reported, with its
    /// text and what is wrong with it; nothing is matched against a half-compiled filter.
    pub fn compile(spec: &FilterSpec) -> Result<Filter, FilterError> {
        let mut compiler = Compiler::new();
        let identities = compile_each(&mut compiler, FilterFlag::Identity, &spec.identity)?;
        let classes = compile_each(&mut compiler, FilterFlag::Class, &spec.class)?;
        let facts = compile_each(&mut compiler, FilterFlag::Fact, &spec.fact)?;
        let agents = compile_each(&mut compiler, FilterFlag::Agent, &spec.agent)?;
        let selects = compile_each(&mut compiler, FilterFlag::Select, &spec.select)?;
        let compile_cost = compiler.compile_charged();
        Ok(Filter { spec: spec.clone(), identities, classes, facts, agents, selects, compile_cost })
    }

    /// What compiling this filter's regexes was charged against [`REGEX_COMPILE_BUDGET`], in
    /// bytes: a bound on the memory its regexes hold, for callers that keep compiled filters.
    pub fn compile_cost(&self) -> usize {
        self.compile_cost
    }

    /// This filter, also requiring the agent `name` as `-A name` does; `None` when an `-A`
    /// already names exactly that agent. What `baton rpc AGENT` adds before discovery, so
    /// nodes without the agent are not asked (as MCollective did).
    pub fn requiring_agent(&self, name: &str) -> Result<Option<Filter>, FilterError> {
        if self.agents.iter().any(|agent| agent.exact() == Some(name)) {
            return Ok(None);
        }
        let mut spec = self.spec.clone();
        spec.agent.push(name.to_owned());
        Filter::compile(&spec).map(Some)
    }

    /// The source this filter was compiled from, as it goes on the wire.
    pub fn spec(&self) -> &FilterSpec {
        &self.spec
    }

    /// True when the filter has no flag at all and so matches every node.
    pub fn is_empty(&self) -> bool {
        self.spec.is_empty()
    }

    /// Whether `node` is one this filter selects. Does not allocate.
    pub fn matches<N: NodeView + ?Sized>(&self, node: &N) -> bool {
        // Cheapest checks first: identity and agents are plain lookups, facts and expressions
        // may walk JSON and run regexes.
        (self.identities.is_empty()
            || self.identities.iter().any(|identity| identity.matches(node.identity())))
            && self.agents.iter().all(|agent| agent.matches_any(node.agents(), |name| node.has_agent(name)))
            && self.classes.iter().all(|class| class.matches_any(node.classes(), |name| node.has_class(name)))
            && self.facts.iter().all(|fact| fact.matches(node))
            && self.selects.iter().all(|select| select.matches(node))
    }

    /// The identities, when the filter is nothing but plain `-I` names (no regex, no other
    /// flag): the client can then address those nodes directly and skip discovery.
    pub fn plain_identities(&self) -> Option<Vec<String>> {
        if self.identities.is_empty()
            || !self.classes.is_empty()
            || !self.facts.is_empty()
            || !self.agents.is_empty()
            || !self.selects.is_empty()
        {
            return None;
        }
        self.identities.iter().map(|identity| identity.exact().map(str::to_owned)).collect()
    }

    /// The filter explained in words, like MCollective's `describe_filter`, for example
    /// `identity matches /^web/ and fact "os.family" is "Debian"`; `every node` when empty.
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

/// The empty filter: it matches every node.
impl Default for Filter {
    fn default() -> Filter {
        Filter {
            spec: FilterSpec::default(),
            identities: Vec::new(),
            classes: Vec::new(),
            facts: Vec::new(),
            agents: Vec::new(),
            selects: Vec::new(),
            compile_cost: 0,
        }
    }
}

/// Explains the filter in words; see [`Filter::describe`].
impl fmt::Display for Filter {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return formatter.write_str("every node");
        }
        let mut clauses = Clauses::new(formatter);
        if !self.identities.is_empty() {
            clauses.next()?;
            let several = self.identities.len() > 1;
            if several {
                clauses.formatter.write_str("(")?;
            }
            for (index, identity) in self.identities.iter().enumerate() {
                if index > 0 {
                    clauses.formatter.write_str(" or ")?;
                }
                write!(clauses.formatter, "identity {}", identity.describe_is())?;
            }
            if several {
                clauses.formatter.write_str(")")?;
            }
        }
        for class in &self.classes {
            clauses.next()?;
            write!(clauses.formatter, "{}", class.describe_has("class"))?;
        }
        for fact in &self.facts {
            clauses.next()?;
            write!(clauses.formatter, "{fact}")?;
        }
        for agent in &self.agents {
            clauses.next()?;
            write!(clauses.formatter, "{}", agent.describe_has("agent"))?;
        }
        for select in &self.selects {
            clauses.next()?;
            // Parenthesize a top-level `or` so that the `and` joining the flags binds as meant.
            write!(clauses.formatter, "{}", select.display_within_and())?;
        }
        Ok(())
    }
}

/// Writes " and " between clauses.
struct Clauses<'f, 'a> {
    formatter: &'f mut fmt::Formatter<'a>,
    first: bool,
}

impl<'f, 'a> Clauses<'f, 'a> {
    fn new(formatter: &'f mut fmt::Formatter<'a>) -> Self {
        Clauses { formatter, first: true }
    }

    fn next(&mut self) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.formatter.write_str(" and ")?;
        }
        Ok(())
    }
}

/// Something one flag's text compiles into.
trait CompileFrom: Sized {
    fn compile_from(text: &str, flag: FilterFlag, compiler: &mut Compiler)
    -> Result<Self, FilterErrorReason>;
}

impl CompileFrom for Pattern {
    fn compile_from(
        text: &str,
        flag: FilterFlag,
        compiler: &mut Compiler,
    ) -> Result<Self, FilterErrorReason> {
        Pattern::parse(text, flag, compiler)
    }
}

impl CompileFrom for FactTest {
    fn compile_from(
        text: &str,
        _flag: FilterFlag,
        compiler: &mut Compiler,
    ) -> Result<Self, FilterErrorReason> {
        FactTest::parse(text, compiler)
    }
}

impl CompileFrom for Expr {
    fn compile_from(
        text: &str,
        _flag: FilterFlag,
        compiler: &mut Compiler,
    ) -> Result<Self, FilterErrorReason> {
        select::parse(text, compiler)
    }
}

fn compile_each<T: CompileFrom>(
    compiler: &mut Compiler,
    flag: FilterFlag,
    texts: &[String],
) -> Result<Vec<T>, FilterError> {
    texts
        .iter()
        .map(|text| {
            compiler
                .charge_text(text)
                .and_then(|()| T::compile_from(text, flag, compiler))
                .map_err(|reason| FilterError::new(flag, text, reason))
        })
        .collect()
}

/// Which flag a filter text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilterFlag {
    /// `-I`
    Identity,
    /// `-C`
    Class,
    /// `-F`
    Fact,
    /// `-A`
    Agent,
    /// `-S`
    Select,
}

impl FilterFlag {
    /// The short command-line flag, `-I`, `-C`, `-F`, `-A` or `-S`.
    pub fn short_flag(self) -> &'static str {
        match self {
            FilterFlag::Identity => "-I",
            FilterFlag::Class => "-C",
            FilterFlag::Fact => "-F",
            FilterFlag::Agent => "-A",
            FilterFlag::Select => "-S",
        }
    }

    /// What a person calls a value of this flag, as used in error messages.
    pub fn noun(self) -> &'static str {
        match self {
            FilterFlag::Identity => "identity filter",
            FilterFlag::Class => "class filter",
            FilterFlag::Fact => "fact filter",
            FilterFlag::Agent => "agent filter",
            FilterFlag::Select => "select expression",
        }
    }
}

/// Why a filter could not be parsed: which flag, its text, and what is wrong with it.
///
/// Displays as, for example, `invalid select expression "a and (b": missing ")" to close the
/// "(" at column 7`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {} {source_text:?}: {reason}", flag.noun())]
pub struct FilterError {
    /// The flag whose text is wrong.
    pub flag: FilterFlag,
    /// The text as given, shortened when it is very long.
    pub source_text: String,
    /// What is wrong with it.
    pub reason: FilterErrorReason,
}

/// Error messages quote at most this many characters of a filter's text.
const QUOTED_SOURCE_CHARS: usize = 100;

impl FilterError {
    fn new(flag: FilterFlag, text: &str, reason: FilterErrorReason) -> FilterError {
        let source_text = match text.char_indices().nth(QUOTED_SOURCE_CHARS) {
            Some((cut, _)) => format!("{}...", &text[..cut]),
            None => text.to_owned(),
        };
        FilterError { flag, source_text, reason }
    }

    /// The 1-based column (in characters) of the text the error is about, when it is about one
    /// place in the text.
    pub fn column(&self) -> Option<usize> {
        self.reason.column()
    }

    /// Two lines for a terminal: the filter text, and a `^` under the column the error is
    /// about. `None` when the error is about the text as a whole.
    pub fn caret(&self) -> Option<String> {
        let column = self.column()?;
        let shown: String = self
            .source_text
            .chars()
            .map(|character| if character == '\t' { ' ' } else { character })
            .collect();
        Some(format!("{shown}\n{}^", " ".repeat(column.saturating_sub(1))))
    }
}

/// What is wrong with a filter's text. Columns are 1-based and count characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterErrorReason {
    #[error("it is empty; give a name or a /regex/")]
    Empty,
    #[error("it contains whitespace; give each name its own {flag}")]
    Whitespace { flag: &'static str },
    #[error("it is {length} bytes long, over the limit of {limit}; shorten it")]
    TooLong { length: usize, limit: usize },
    #[error("the filter's flags add up to more than {limit} bytes; shorten them")]
    FilterTooLong { limit: usize },
    #[error("it nests parentheses or \"not\" more than {limit} levels deep; simplify it")]
    TooDeep { limit: usize },
    #[error("the filter holds more than {limit} regular expressions; join some with | into one")]
    TooManyRegexes { limit: usize },
    #[error("bad regex /{pattern}/: {message}")]
    BadRegex { pattern: String, message: String },
    #[error("regex /{pattern}/ needs more than {limit} bytes once compiled; simplify it")]
    RegexTooBig { pattern: String, limit: usize },
    #[error(
        "regex /{pattern}/ is over the filter's compile budget of {limit} bytes shared by all its \
         regexes; use fewer or simpler regexes (or plain names, which cost nothing)"
    )]
    RegexBudget { pattern: String, limit: usize },
    #[error("expected KEY<op>VALUE with one of == != < > <= >= =~")]
    FactSyntax,
    #[error("unknown operator {operator:?} at column {column}; use one of == != < > <= >= =~")]
    UnknownOperator { operator: String, column: usize },
    #[error("missing fact name before the operator at column {column}")]
    EmptyKey { column: usize },
    #[error("fact name {key:?} contains whitespace, a quote or a parenthesis")]
    InvalidKey { key: String },
    #[error("missing value after {operator:?} at column {column}; write \"\" to compare with an empty value")]
    MissingValue { operator: String, column: usize },
    #[error("the quote at column {column} is never closed")]
    UnclosedQuote { column: usize },
    #[error("the regex that starts with / at column {column} has no closing /")]
    UnclosedRegex { column: usize },
    #[error(
        "unexpected {text:?} at column {column} right after a value; quote values that contain / or spaces"
    )]
    TrailingText { text: String, column: usize },
    #[error("it is empty; give classes or fact comparisons joined by and, or, not")]
    EmptyExpression,
    #[error("missing \")\" to close the \"(\" at column {column}")]
    MissingCloseParen { column: usize },
    #[error("the \")\" at column {column} has no matching \"(\"")]
    UnmatchedCloseParen { column: usize },
    #[error("unexpected {token:?} at column {column}; expected {expected}")]
    UnexpectedToken { token: String, column: usize, expected: &'static str },
    #[error("it ends too early; expected {expected}")]
    UnexpectedEnd { expected: &'static str },
}

impl FilterErrorReason {
    /// The 1-based column the reason points at, if any.
    pub fn column(&self) -> Option<usize> {
        match self {
            FilterErrorReason::UnknownOperator { column, .. }
            | FilterErrorReason::EmptyKey { column }
            | FilterErrorReason::MissingValue { column, .. }
            | FilterErrorReason::UnclosedQuote { column }
            | FilterErrorReason::UnclosedRegex { column }
            | FilterErrorReason::TrailingText { column, .. }
            | FilterErrorReason::MissingCloseParen { column }
            | FilterErrorReason::UnmatchedCloseParen { column }
            | FilterErrorReason::UnexpectedToken { column, .. } => Some(*column),
            _ => None,
        }
    }
}

/// The 1-based character column of byte offset `byte` in `text`.
fn column_of(text: &str, byte: usize) -> usize {
    text.get(..byte).map_or_else(|| text.chars().count(), |head| head.chars().count()) + 1
}
