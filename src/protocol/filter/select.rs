//! `-S` select expressions: terms joined with `and`, `or`, `not` (or `!`) and parentheses.
//!
//! Precedence is `not` over `and` over `or`, as in MCollective. A term is one of:
//!
//! - a fact comparison, `KEY<op>VALUE` with the operators of `-F` (spaces around the operator
//!   are allowed). The value is a bare word (it ends at whitespace or `)`), a quoted string
//!   (`"..."` or `'...'`, which may hold spaces and parentheses), or a `/regex/` (which may hold
//!   spaces; `\/` is a slash inside it);
//! - a bare word or a `/regex/`: a class, as in MCollective;
//! - `identity(NAME)`, `agent(NAME)` or `class(NAME)`, where NAME is a name, a quoted name or a
//!   `/regex/`: the `-I`, `-A` and `-C` tests inside an expression.
//!
//! Two terms side by side with no operator between them are an error rather than an implicit
//! `and`, so that a forgotten operator or a missing quote is caught.

use std::borrow::Cow;
use std::fmt;

use super::fact::{FactTest, OPERATOR_CHARS, Operator, ValueSyntax, operator_run, scan_quoted};
use super::pattern::{Compiler, Pattern};
use super::{FilterErrorReason, FilterFlag, MAX_DEPTH, NodeView, column_of};

/// A parsed expression.
#[derive(Debug, Clone)]
pub(super) enum Expr {
    /// Every item matches (`and`).
    All(Vec<Expr>),
    /// Some item matches (`or`).
    Any(Vec<Expr>),
    Not(Box<Expr>),
    Class(Pattern),
    Identity(Pattern),
    Agent(Pattern),
    Fact(FactTest),
}

impl Expr {
    /// Whether `node` satisfies the expression. Recursion is bounded by [`MAX_DEPTH`], which
    /// the parser enforces.
    pub(super) fn matches<N: NodeView + ?Sized>(&self, node: &N) -> bool {
        match self {
            Expr::All(items) => items.iter().all(|item| item.matches(node)),
            Expr::Any(items) => items.iter().any(|item| item.matches(node)),
            Expr::Not(inner) => !inner.matches(node),
            Expr::Class(class) => class.matches_any(node.classes(), |name| node.has_class(name)),
            Expr::Identity(identity) => identity.matches(node.identity()),
            Expr::Agent(agent) => agent.matches_any(node.agents(), |name| node.has_agent(name)),
            Expr::Fact(fact) => fact.matches(node),
        }
    }

    /// The expression in words, parenthesized if it is an `or`, to stand among other clauses
    /// joined by `and`.
    pub(super) fn display_within_and(&self) -> Describe<'_> {
        Describe { expr: self, context: Binding::And }
    }

    fn binding(&self) -> Binding {
        match self {
            Expr::Any(_) => Binding::Or,
            Expr::All(_) => Binding::And,
            _ => Binding::Tight,
        }
    }
}

/// How tightly an expression binds; an expression written inside a context that binds more
/// tightly than it does needs parentheses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Binding {
    Or,
    And,
    Tight,
}

/// Explains an expression in words, with parentheses only where precedence needs them.
pub(super) struct Describe<'a> {
    expr: &'a Expr,
    context: Binding,
}

impl fmt::Display for Describe<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parenthesize = self.expr.binding() < self.context;
        if parenthesize {
            formatter.write_str("(")?;
        }
        let joined = |formatter: &mut fmt::Formatter<'_>, items: &[Expr], joiner, context| {
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    formatter.write_str(joiner)?;
                }
                write!(formatter, "{}", Describe { expr: item, context })?;
            }
            Ok(())
        };
        match self.expr {
            Expr::Any(items) => joined(formatter, items, " or ", Binding::And)?,
            Expr::All(items) => joined(formatter, items, " and ", Binding::And)?,
            Expr::Not(inner) => {
                write!(formatter, "not {}", Describe { expr: inner, context: Binding::Tight })?
            }
            Expr::Class(class) => write!(formatter, "{}", class.describe_has("class"))?,
            Expr::Identity(identity) => write!(formatter, "identity {}", identity.describe_is())?,
            Expr::Agent(agent) => write!(formatter, "{}", agent.describe_has("agent"))?,
            Expr::Fact(fact) => write!(formatter, "{fact}")?,
        }
        if parenthesize {
            formatter.write_str(")")?;
        }
        Ok(())
    }
}

/// What may come where a term is expected, for error messages.
const EXPECTED_TERM: &str = "a class, a fact comparison, \"not\" or \"(\"";
/// What may follow a complete term at the top level.
const EXPECTED_JOIN: &str = "\"and\" or \"or\" between terms";
/// What may follow a complete term inside parentheses.
const EXPECTED_JOIN_OR_CLOSE: &str = "\"and\", \"or\" or \")\"";
/// Unexpected tokens are quoted up to this many characters.
const QUOTED_TOKEN_CHARS: usize = 40;

/// Parses one `-S` expression.
pub(super) fn parse(text: &str, compiler: &mut Compiler) -> Result<Expr, FilterErrorReason> {
    if text.trim().is_empty() {
        return Err(FilterErrorReason::EmptyExpression);
    }
    let mut tokens = Lexer { text, position: 0, compiler }.tokens()?;
    // Popping from the end is cheaper than shifting from the front.
    tokens.reverse();
    let mut parser = Parser { text, tokens };
    let expr = parser.or(0)?;
    match parser.tokens.pop() {
        None => Ok(expr),
        Some(token) if matches!(token.kind, TokenKind::Close) => {
            Err(FilterErrorReason::UnmatchedCloseParen { column: column_of(text, token.start) })
        }
        Some(token) => Err(parser.unexpected(&token, EXPECTED_JOIN)),
    }
}

#[derive(Debug)]
enum TokenKind {
    Open,
    Close,
    And,
    Or,
    Not,
    Term(Expr),
}

#[derive(Debug)]
struct Token {
    kind: TokenKind,
    /// Byte offsets into the expression text.
    start: usize,
    end: usize,
}

struct Lexer<'t, 'c> {
    text: &'t str,
    position: usize,
    compiler: &'c mut Compiler,
}

impl<'t> Lexer<'t, '_> {
    fn tokens(mut self) -> Result<Vec<Token>, FilterErrorReason> {
        let mut tokens = Vec::new();
        loop {
            self.skip_whitespace();
            let start = self.position;
            let Some(next) = self.peek() else {
                return Ok(tokens);
            };
            let kind = match next {
                '(' => {
                    self.position += 1;
                    TokenKind::Open
                }
                ')' => {
                    self.position += 1;
                    TokenKind::Close
                }
                '!' if !self.rest().starts_with("!=") => {
                    self.position += 1;
                    TokenKind::Not
                }
                '/' => {
                    let (inner, end) = self.regex_at(start)?;
                    self.position = end;
                    self.expect_delimiter()?;
                    TokenKind::Term(Expr::Class(Pattern::Regex(self.compiler.regex(inner)?)))
                }
                '"' | '\'' => {
                    let (name, end) = scan_quoted(self.text, start)?;
                    self.position = end;
                    self.expect_delimiter()?;
                    TokenKind::Term(Expr::Class(exact_name(name, FilterFlag::Class)?))
                }
                _ => self.word_or_comparison()?,
            };
            tokens.push(Token { kind, start, end: self.position });
        }
    }

    fn rest(&self) -> &'t str {
        &self.text[self.position..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_whitespace(&mut self) {
        let rest = self.rest();
        self.position += rest.len() - rest.trim_start().len();
    }

    /// A keyword, a class word, a function term like `identity(web01)`, or a comparison.
    fn word_or_comparison(&mut self) -> Result<TokenKind, FilterErrorReason> {
        let start = self.position;
        let word_length = self
            .rest()
            .find(|character: char| {
                character.is_whitespace()
                    || matches!(character, '(' | ')')
                    || OPERATOR_CHARS.contains(&character)
            })
            .unwrap_or(self.rest().len());
        if word_length == 0 {
            // The expression has an operator where a fact name should be.
            return Err(FilterErrorReason::EmptyKey { column: column_of(self.text, start) });
        }
        let word = &self.rest()[..word_length];
        self.position += word_length;
        match word {
            "and" => return Ok(TokenKind::And),
            "or" => return Ok(TokenKind::Or),
            "not" => return Ok(TokenKind::Not),
            "identity" | "agent" | "class" if self.peek() == Some('(') => {
                return self.function(word);
            }
            _ => {}
        }
        let word_end = self.position;
        self.skip_whitespace();
        if Operator::starts(self.rest()) {
            return self.comparison(word).map(|fact| TokenKind::Term(Expr::Fact(fact)));
        }
        // `role~web` or `role!web`: an operator was meant. After whitespace, as in
        // `apache !web`, the parser reports the missing "and" instead.
        if self.position == word_end && self.rest().starts_with(OPERATOR_CHARS) {
            return Err(FilterErrorReason::UnknownOperator {
                operator: operator_run(self.rest()),
                column: column_of(self.text, self.position),
            });
        }
        // A bare word is a class; leave what follows it for the next token.
        self.position = word_end;
        Ok(TokenKind::Term(Expr::Class(exact_name(word.to_owned(), FilterFlag::Class)?)))
    }

    /// The rest of `KEY<op>VALUE`, with the position at the operator.
    fn comparison(&mut self, key: &str) -> Result<FactTest, FilterErrorReason> {
        let operator_start = self.position;
        let (operator, operator_length) =
            Operator::parse_prefix(self.rest()).ok_or_else(|| FilterErrorReason::UnknownOperator {
                operator: operator_run(self.rest()),
                column: column_of(self.text, operator_start),
            })?;
        self.position += operator_length;
        self.skip_whitespace();
        let value_start = self.position;
        let value = match self.peek() {
            None | Some(')') => {
                return Err(FilterErrorReason::MissingValue {
                    operator: self.text[operator_start..operator_start + operator_length].to_owned(),
                    column: column_of(self.text, operator_start),
                });
            }
            Some('"' | '\'') => {
                let (unquoted, end) = scan_quoted(self.text, value_start)?;
                self.position = end;
                ValueSyntax::Text(Cow::Owned(unquoted))
            }
            Some('/') => {
                let (inner, end) = self.regex_at(value_start)?;
                self.position = end;
                ValueSyntax::Regex { inner, written: &self.text[value_start..end] }
            }
            Some(_) => {
                let length = self
                    .rest()
                    .find(|character: char| character.is_whitespace() || character == ')')
                    .unwrap_or(self.rest().len());
                let bare = &self.rest()[..length];
                self.position += length;
                ValueSyntax::Text(Cow::Borrowed(bare))
            }
        };
        self.expect_delimiter()?;
        FactTest::build(key, operator, value, self.compiler)
    }

    /// `identity(NAME)`, `agent(NAME)` or `class(NAME)`, with the position at the `(`.
    fn function(&mut self, name: &str) -> Result<TokenKind, FilterErrorReason> {
        let flag = match name {
            "identity" => FilterFlag::Identity,
            "agent" => FilterFlag::Agent,
            _ => FilterFlag::Class,
        };
        let open = self.position;
        self.position += 1;
        self.skip_whitespace();
        let argument_start = self.position;
        let pattern = match self.peek() {
            Some('"' | '\'') => {
                let (unquoted, end) = scan_quoted(self.text, argument_start)?;
                self.position = end;
                exact_name(unquoted, flag)?
            }
            Some('/') => {
                let (inner, end) = self.regex_at(argument_start)?;
                self.position = end;
                Pattern::Regex(self.compiler.regex(inner)?)
            }
            _ => {
                let length = self
                    .rest()
                    .find(|character: char| character.is_whitespace() || character == ')')
                    .unwrap_or(self.rest().len());
                let bare = &self.rest()[..length];
                self.position += length;
                Pattern::parse(bare, flag, self.compiler)?
            }
        };
        self.skip_whitespace();
        match self.peek() {
            Some(')') => self.position += 1,
            None => {
                return Err(FilterErrorReason::MissingCloseParen { column: column_of(self.text, open) });
            }
            Some(_) => {
                return Err(FilterErrorReason::UnexpectedToken {
                    token: shortened(self.rest().split_whitespace().next().unwrap_or_default()),
                    column: column_of(self.text, self.position),
                    expected: "\")\" after the one name or /regex/",
                });
            }
        }
        self.expect_delimiter()?;
        Ok(TokenKind::Term(match flag {
            FilterFlag::Identity => Expr::Identity(pattern),
            FilterFlag::Agent => Expr::Agent(pattern),
            _ => Expr::Class(pattern),
        }))
    }

    /// Reads `/.../` starting at byte `start` (a `/`): the inside, and the byte after the
    /// closing slash. A backslash escapes the next character, so `\/` does not close it.
    fn regex_at(&self, start: usize) -> Result<(&'t str, usize), FilterErrorReason> {
        let text: &'t str = self.text;
        let bytes = text.as_bytes();
        // Only the ASCII bytes `\` and `/` are looked at, so every index where the scan stops
        // on a `/` is a character boundary.
        let mut index = start + 1;
        while let Some(byte) = bytes.get(index) {
            match byte {
                b'\\' => index += 2,
                b'/' => return Ok((&text[start + 1..index], index + 1)),
                _ => index += 1,
            }
        }
        Err(FilterErrorReason::UnclosedRegex { column: column_of(text, start) })
    }

    /// After a quoted string or a regex, the term must end: whitespace, `)` or the end.
    fn expect_delimiter(&self) -> Result<(), FilterErrorReason> {
        match self.peek() {
            None | Some(')') => Ok(()),
            Some(character) if character.is_whitespace() => Ok(()),
            Some(_) => Err(FilterErrorReason::TrailingText {
                text: shortened(
                    self.rest()
                        .split(|character: char| character.is_whitespace() || character == ')')
                        .next()
                        .unwrap_or_default(),
                ),
                column: column_of(self.text, self.position),
            }),
        }
    }
}

/// An exact name from a quoted or bare word, refusing the empty name.
fn exact_name(name: String, flag: FilterFlag) -> Result<Pattern, FilterErrorReason> {
    if name.trim().is_empty() {
        return Err(FilterErrorReason::Empty);
    }
    if name.contains(char::is_whitespace) {
        return Err(FilterErrorReason::Whitespace { flag: flag.short_flag() });
    }
    Ok(Pattern::Exact(name.into_boxed_str()))
}

fn shortened(text: &str) -> String {
    match text.char_indices().nth(QUOTED_TOKEN_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

struct Parser<'t> {
    text: &'t str,
    /// In reverse order: the next token is the last.
    tokens: Vec<Token>,
}

impl Parser<'_> {
    fn or(&mut self, depth: usize) -> Result<Expr, FilterErrorReason> {
        let first = self.and(depth)?;
        if !self.next_is(|kind| matches!(kind, TokenKind::Or)) {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.next_is(|kind| matches!(kind, TokenKind::Or)) {
            self.tokens.pop();
            items.push(self.and(depth)?);
        }
        Ok(Expr::Any(items))
    }

    fn and(&mut self, depth: usize) -> Result<Expr, FilterErrorReason> {
        let first = self.unary(depth)?;
        if !self.next_is(|kind| matches!(kind, TokenKind::And)) {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.next_is(|kind| matches!(kind, TokenKind::And)) {
            self.tokens.pop();
            items.push(self.unary(depth)?);
        }
        Ok(Expr::All(items))
    }

    /// `depth` counts the parentheses and `not`s around this point.
    fn unary(&mut self, depth: usize) -> Result<Expr, FilterErrorReason> {
        let Some(token) = self.tokens.pop() else {
            return Err(FilterErrorReason::UnexpectedEnd { expected: EXPECTED_TERM });
        };
        let nested = || {
            if depth >= MAX_DEPTH {
                Err(FilterErrorReason::TooDeep { limit: MAX_DEPTH })
            } else {
                Ok(depth + 1)
            }
        };
        match token.kind {
            TokenKind::Term(expr) => Ok(expr),
            TokenKind::Not => Ok(Expr::Not(Box::new(self.unary(nested()?)?))),
            TokenKind::Open => {
                let inner = self.or(nested()?)?;
                match self.tokens.pop() {
                    Some(Token { kind: TokenKind::Close, .. }) => Ok(inner),
                    None => Err(FilterErrorReason::MissingCloseParen {
                        column: column_of(self.text, token.start),
                    }),
                    Some(other) => Err(self.unexpected(&other, EXPECTED_JOIN_OR_CLOSE)),
                }
            }
            TokenKind::Close | TokenKind::And | TokenKind::Or => Err(self.unexpected(&token, EXPECTED_TERM)),
        }
    }

    fn next_is(&self, test: impl Fn(&TokenKind) -> bool) -> bool {
        self.tokens.last().is_some_and(|token| test(&token.kind))
    }

    fn unexpected(&self, token: &Token, expected: &'static str) -> FilterErrorReason {
        FilterErrorReason::UnexpectedToken {
            token: shortened(&self.text[token.start..token.end]),
            column: column_of(self.text, token.start),
            expected,
        }
    }
}
