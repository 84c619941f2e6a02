//! Authorization policies: who may run which action of an agent, on which nodes.
//!
//! One file per agent, `<policy_dir>/<agent>.policy`, in the format of MCollective's
//! actionpolicy plugin, so existing policies carry over:
//!
//! ```text
//! # service.policy
//! policy default deny
//! allow   user=alice                *                  *                *
//! allow   user=bob user=carol       status restart     role=web         *
//! deny    *                         stop               *                production
//! deny    *                         *                  *                *     service=/\.target$/
//! allow   user=dave                 restart            *                *     service=/^(nginx|app)$/
//! ```
//!
//! Fields are separated by tabs (a line without tabs may use spaces, when no field holds a
//! space): `allow` or `deny`, the callers (`*` or caller ids separated by spaces), the actions
//! (`*` or names), the facts (`*`, fact comparisons as `-F` takes them, all of which must
//! match, or one compound expression as `-S` takes it), optionally the classes (`*`, class
//! names that must all be present, or a compound expression) and, beyond MCollective's format,
//! optionally the inputs: `*`, or conditions on the request's inputs written exactly like fact
//! comparisons (`service=/^(nginx|app)$/`, `count<=10`, `unit!=/\.target$/`), all of which must
//! match, or one compound expression of them. Input conditions are the filter language's, so
//! a regex means the same in a policy as in `-F`. They see the inputs after validation against
//! the agent's definition, defaults filled in; an input the request does not have never
//! matches, and a request whose inputs are invalid matches no rule with input conditions. The
//! first rule that matches decides; when none does, the `policy default` line does (deny when
//! there is none). An agent without a policy file gets `authorization.unconfigured`.
//!
//! Policies are loaded whole: a file with a mistake refuses to load, naming the file and line,
//! so a typo never silently opens (or closes) a node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::config::{AuthorizationConfig, UnconfiguredPolicy};
use crate::protocol::filter::{Filter, FilterSpec, NodeView};

/// The largest policy file read, in bytes.
const MAX_POLICY_BYTES: u64 = 1024 * 1024;

/// Every agent's policy, and what applies to agents without one.
#[derive(Debug, Clone)]
pub struct Authorization {
    policies: BTreeMap<String, Policy>,
    unconfigured: UnconfiguredPolicy,
}

impl Default for Authorization {
    /// No policies, and every request allowed: a node without an `[authorization]` table.
    fn default() -> Self {
        Authorization { policies: BTreeMap::new(), unconfigured: UnconfiguredPolicy::Allow }
    }
}

/// One agent's policy file, parsed.
#[derive(Debug, Clone)]
pub struct Policy {
    file: PathBuf,
    default_allow: bool,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    line: usize,
    text: String,
    allow: bool,
    /// `None` matches every caller.
    callers: Option<Vec<String>>,
    /// `None` matches every action.
    actions: Option<Vec<String>>,
    facts: Option<Filter>,
    classes: Option<Filter>,
    /// Conditions on the request's validated inputs; `None` matches any inputs.
    inputs: Option<Filter>,
}

/// What the policy said about one request, and which rule said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The rule that decided, for the audit log and the refusal message:
    /// `service.policy line 4 (deny * stop * production)`.
    pub rule: String,
}

/// Why policies could not be loaded. The daemon refuses to start (or, on reload, keeps the
/// policies it had) rather than run with a policy it did not understand.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy directory {}: {source} (create it or change authorization.policy_dir)", dir.display())]
    Directory { dir: PathBuf, source: std::io::Error },
    #[error("cannot read policy file {}: {source}", file.display())]
    Read { file: PathBuf, source: std::io::Error },
    #[error("policy file {} is over {MAX_POLICY_BYTES} bytes", file.display())]
    TooLarge { file: PathBuf },
    #[error("policy file {} line {line}: {reason}", file.display())]
    Syntax { file: PathBuf, line: usize, reason: String },
    /// A policy file others could change (see [`crate::security::file_trust`]).
    #[error(transparent)]
    Untrusted(#[from] crate::security::file_trust::UntrustedFile),
}

impl Authorization {
    /// Loads every `*.policy` file of the configured directory.
    pub fn load(config: &AuthorizationConfig) -> Result<Authorization, PolicyError> {
        let mut authorization =
            Authorization { policies: BTreeMap::new(), unconfigured: config.unconfigured };
        let Some(dir) = &config.policy_dir else {
            return Ok(authorization);
        };
        let entries =
            std::fs::read_dir(dir).map_err(|source| PolicyError::Directory { dir: dir.clone(), source })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|extension| extension == "policy"))
            .collect();
        files.sort();
        for file in files {
            let Some(agent) = file.file_stem().and_then(|stem| stem.to_str()).map(str::to_owned) else {
                continue;
            };
            crate::security::file_trust::check_trusted(&file, crate::security::file_trust::Purpose::Policy)?;
            let metadata = std::fs::metadata(&file)
                .map_err(|source| PolicyError::Read { file: file.clone(), source })?;
            if metadata.len() > MAX_POLICY_BYTES {
                return Err(PolicyError::TooLarge { file });
            }
            let text = std::fs::read_to_string(&file)
                .map_err(|source| PolicyError::Read { file: file.clone(), source })?;
            let policy = Policy::parse(&text, &file)?;
            authorization.policies.insert(agent, policy);
        }
        Ok(authorization)
    }

    /// Policies given directly, by agent name (tests and tools).
    pub fn from_policies(
        policies: BTreeMap<String, Policy>,
        unconfigured: UnconfiguredPolicy,
    ) -> Authorization {
        Authorization { policies, unconfigured }
    }

    /// How many agents have a policy file.
    pub fn policy_count(&self) -> usize {
        self.policies.len()
    }

    /// Decides whether `caller` may run `agent#action` on `node`, with no inputs known: rules
    /// with input conditions do not match.
    pub fn decide<N: NodeView + ?Sized>(
        &self,
        caller: &str,
        agent: &str,
        action: &str,
        node: &N,
    ) -> Decision {
        self.decide_request(caller, agent, action, node, None)
    }

    /// Decides whether `caller` may run `agent#action` on `node` with `inputs` (validated
    /// against the agent's definition; `None` when they are not valid).
    pub fn decide_request<N: NodeView + ?Sized>(
        &self,
        caller: &str,
        agent: &str,
        action: &str,
        node: &N,
        inputs: Option<&Map<String, Value>>,
    ) -> Decision {
        match self.policies.get(agent) {
            Some(policy) => policy.decide(caller, action, node, inputs),
            None => Decision {
                allowed: self.unconfigured == UnconfiguredPolicy::Allow,
                rule: format!(
                    "no policy file for agent {agent}; authorization.unconfigured = {}",
                    match self.unconfigured {
                        UnconfiguredPolicy::Allow => "allow",
                        UnconfiguredPolicy::Deny => "deny",
                    }
                ),
            },
        }
    }
}

impl Policy {
    /// Parses a policy file's text; `file` names it in errors and decisions.
    pub fn parse(text: &str, file: &Path) -> Result<Policy, PolicyError> {
        let mut policy = Policy { file: file.to_owned(), default_allow: false, rules: Vec::new() };
        let syntax =
            |line: usize, reason: String| PolicyError::Syntax { file: file.to_owned(), line, reason };
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = trimmed.split_whitespace().collect();
            if words.first() == Some(&"policy") {
                match words.as_slice() {
                    ["policy", "default", "allow"] => policy.default_allow = true,
                    ["policy", "default", "deny"] => policy.default_allow = false,
                    _ => {
                        return Err(syntax(
                            line,
                            format!(
                                "expected \"policy default allow\" or \"policy default deny\", found {trimmed:?}"
                            ),
                        ));
                    }
                }
                continue;
            }
            let fields: Vec<&str> = if trimmed.contains('\t') {
                trimmed.split('\t').map(str::trim).filter(|field| !field.is_empty()).collect()
            } else {
                words
            };
            if !(4..=6).contains(&fields.len()) {
                return Err(syntax(
                    line,
                    format!(
                        "expected 4 to 6 tab-separated fields (allow|deny, callers, actions, facts, classes, inputs), found {}",
                        fields.len()
                    ),
                ));
            }
            let allow = match fields[0] {
                "allow" => true,
                "deny" => false,
                other => {
                    return Err(syntax(line, format!("a rule starts with allow or deny, not {other:?}")));
                }
            };
            let list =
                |field: &str| (field != "*").then(|| field.split_whitespace().map(str::to_owned).collect());
            let facts = match fields[3] {
                "*" => None,
                field => Some(compile_comparisons(field, "fact").map_err(|reason| syntax(line, reason))?),
            };
            let classes = match fields.get(4).copied() {
                None | Some("*") => None,
                Some(field) => Some(compile_classes(field).map_err(|reason| syntax(line, reason))?),
            };
            let inputs = match fields.get(5).copied() {
                None | Some("*") => None,
                Some(field) => {
                    Some(compile_comparisons(field, "input").map_err(|reason| syntax(line, reason))?)
                }
            };
            policy.rules.push(Rule {
                line,
                text: fields.join(" "),
                allow,
                callers: list(fields[1]),
                actions: list(fields[2]),
                facts,
                classes,
                inputs,
            });
        }
        Ok(policy)
    }

    fn decide<N: NodeView + ?Sized>(
        &self,
        caller: &str,
        action: &str,
        node: &N,
        inputs: Option<&Map<String, Value>>,
    ) -> Decision {
        let file_name = self
            .file
            .file_name()
            .map_or_else(|| self.file.display().to_string(), |name| name.to_string_lossy().into_owned());
        for rule in &self.rules {
            let caller_matches =
                rule.callers.as_ref().is_none_or(|callers| callers.iter().any(|listed| listed == caller));
            let action_matches =
                rule.actions.as_ref().is_none_or(|actions| actions.iter().any(|listed| listed == action));
            let facts_match = rule.facts.as_ref().is_none_or(|filter| filter.matches(node));
            let classes_match = rule.classes.as_ref().is_none_or(|filter| filter.matches(node));
            let inputs_match = rule
                .inputs
                .as_ref()
                .is_none_or(|filter| inputs.is_some_and(|inputs| filter.matches(&InputView { inputs })));
            if caller_matches && action_matches && facts_match && classes_match && inputs_match {
                return Decision {
                    allowed: rule.allow,
                    rule: format!("{file_name} line {} ({})", rule.line, rule.text),
                };
            }
        }
        Decision {
            allowed: self.default_allow,
            rule: format!(
                "{file_name}: no rule matched; policy default {}",
                if self.default_allow { "allow" } else { "deny" }
            ),
        }
    }
}

/// Comparisons of facts or inputs (`what`): every word a `-F` comparison, or else the whole
/// field one `-S` expression.
fn compile_comparisons(field: &str, what: &str) -> Result<Filter, String> {
    let as_facts =
        FilterSpec { fact: field.split_whitespace().map(str::to_owned).collect(), ..FilterSpec::default() };
    match Filter::compile(&as_facts) {
        Ok(filter) => Ok(filter),
        Err(_) => Filter::compile(&FilterSpec { select: vec![field.to_owned()], ..FilterSpec::default() })
            .map_err(|error| {
                format!(
                    "{what} condition {field:?} is neither comparisons (KEY=VALUE, KEY=/RE/, ...) nor a compound expression: {error}"
                )
            }),
    }
}

/// Class conditions: every word a class that must be present, or a compound expression.
fn compile_classes(field: &str) -> Result<Filter, String> {
    let compound = field.split_whitespace().any(|word| matches!(word, "and" | "or" | "not" | "!"))
        || field.contains('(');
    let spec = if compound {
        FilterSpec { select: vec![field.to_owned()], ..FilterSpec::default() }
    } else {
        FilterSpec { class: field.split_whitespace().map(str::to_owned).collect(), ..FilterSpec::default() }
    };
    Filter::compile(&spec).map_err(|error| format!("class condition {field:?} is invalid: {error}"))
}

/// A request's inputs seen as a node with those inputs for facts, so that input conditions are
/// evaluated by the filter language itself. It has no identity, classes or agents.
struct InputView<'a> {
    inputs: &'a Map<String, Value>,
}

impl NodeView for InputView<'_> {
    fn identity(&self) -> &str {
        ""
    }

    fn has_class(&self, _class: &str) -> bool {
        false
    }

    fn classes(&self) -> &[String] {
        &[]
    }

    fn fact(&self, key: &str) -> Option<&Value> {
        self.inputs.get(key)
    }

    fn has_agent(&self, _agent: &str) -> bool {
        false
    }

    fn agents(&self) -> &[String] {
        &[]
    }
}
