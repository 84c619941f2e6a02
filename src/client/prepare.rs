//! Request preparation: turning what a person asked for (an agent, an action, inputs as typed
//! text, a filter) into a request that can be sent, before anything is sent.
//!
//! The CLI (`baton rpc`) and the console (a job) both prepare through [`prepare`], so they
//! accept and refuse exactly the same things: the filter is compiled once, here; each input's
//! text is converted by the type its definition declares and the inputs are validated as the
//! nodes will validate them; the reply timeout follows the definition's declared action
//! timeout; the definition's display policy travels with the request. A [`PreparedRequest`]
//! then computes the definition's aggregates over the outcome (see [`Client::call_prepared`]
//! and [`Client::rollout`]), so no front end computes them itself.
//!
//! An agent the client has no definition for is still callable: its inputs go as strings and
//! the nodes check them.
//!
//! [`Client::call_prepared`]: super::Client::call_prepared
//! [`Client::rollout`]: super::Client::rollout

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::{CallOutcome, RequestSpec};
use crate::agents::catalog::Catalog;
use crate::protocol::ddl::{ActionDefinition, Definition, DisplayPolicy, InputError, is_agent_name};
use crate::protocol::filter::{Filter, FilterError, FilterSpec};

/// How long past its declared action timeout a reply may take to arrive: the node needs time
/// to reply after stopping a slow action, and the broker to deliver it.
const REPLY_MARGIN_SECS: u64 = 5;

/// What a person asked for, as typed: the inputs are text, converted by declared type here.
#[derive(Debug, Clone, Default)]
pub struct RequestText {
    pub agent: String,
    pub action: String,
    /// Input name and the text given for it, in the order given.
    pub inputs: Vec<(String, String)>,
    pub filter: FilterSpec,
}

/// Why a request was refused before anything was sent; each is the user's to fix (exit 2 in
/// the CLI, 400 in the console).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareError {
    #[error(
        "\"{agent}#{action}\" is not an agent and action (names are lowercase letters, digits and '_', starting with a letter)"
    )]
    NotAName { agent: String, action: String },
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// The definition has no such action; the message names the actions it has.
    #[error("{0}")]
    UnknownAction(String),
    #[error(transparent)]
    Input(#[from] InputError),
}

/// A request ready to send, with what the agent's definition says about it.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    /// The request, its filter compiled and its inputs converted and checked.
    pub spec: RequestSpec,
    /// The action's definition, when the client has the agent's.
    pub definition: Option<ActionDefinition>,
    /// How long to wait for replies (per batch, in a rollout).
    pub timeout: Duration,
}

impl PreparedRequest {
    /// Which replies the action's definition says are worth a line of their own, when known.
    pub fn display(&self) -> Option<DisplayPolicy> {
        self.definition.as_ref().map(|action| action.display)
    }

    /// Whether the action is declared read-only. The one rule of the CLI's and the console's
    /// confirmations: an action without a definition, or whose definition does not say
    /// `read_only`, may change things.
    pub fn read_only(&self) -> bool {
        self.definition.as_ref().is_some_and(|action| action.read_only)
    }

    /// The aggregates the definition declares, computed over the replies that succeeded;
    /// empty without a definition.
    pub fn aggregates(&self, outcome: &CallOutcome) -> Map<String, Value> {
        match &self.definition {
            Some(action) => aggregates_of(action, outcome),
            None => Map::new(),
        }
    }
}

/// The aggregates `action` declares, computed over the replies of `outcome` that succeeded:
/// what a live call carries, and what `baton replies` computes for collected replies.
pub fn aggregates_of(action: &ActionDefinition, outcome: &CallOutcome) -> Map<String, Value> {
    let outputs: Vec<&Map<String, Value>> =
        outcome.replies.iter().filter(|reply| reply.is_ok()).map(|reply| &reply.data).collect();
    action.summarize(&outputs)
}

/// Checks and converts `text` against the agent's definition in `catalog`. `configured_timeout`
/// is the configuration's `timeout_secs`; `timeout` overrides the reply timeout (`-t`).
pub fn prepare(
    catalog: &Catalog,
    text: RequestText,
    configured_timeout: Duration,
    timeout: Option<Duration>,
) -> Result<PreparedRequest, PrepareError> {
    let RequestText { agent, action, inputs, filter } = text;
    if !is_agent_name(&agent) || !is_agent_name(&action) {
        return Err(PrepareError::NotAName { agent, action });
    }
    let filter = Filter::compile(&filter)?;
    let definition = catalog.definition(&agent);
    let declared = match definition {
        Some(definition) => Some(definition.require_action(&action).map_err(PrepareError::UnknownAction)?),
        None => None,
    };
    let data = typed_inputs(declared, &agent, &action, inputs)?;
    let timeout = timeout.unwrap_or_else(|| reply_timeout(definition, configured_timeout));
    Ok(PreparedRequest {
        spec: RequestSpec { agent, action, data, filter, once: None },
        definition: declared.cloned(),
        timeout,
    })
}

/// Converts each input's text by its declared type and checks the inputs exactly as the nodes
/// will; without a definition, the texts go as they are.
fn typed_inputs(
    declared: Option<&ActionDefinition>,
    agent: &str,
    action: &str,
    inputs: Vec<(String, String)>,
) -> Result<Map<String, Value>, InputError> {
    let Some(declared) = declared else {
        return Ok(inputs.into_iter().map(|(key, text)| (key, Value::String(text))).collect());
    };
    let mut typed = Map::new();
    for (key, text) in inputs {
        let value = declared.parse_cli_value(agent, action, &key, &text)?;
        typed.insert(key, value);
    }
    declared.validate_inputs(agent, action, &typed)?;
    Ok(typed)
}

/// How long to wait for replies: the configured timeout, or longer when the agent's definition
/// lets its actions run longer (a Puppet run), so that a slow action is not reported as a
/// silent node.
pub fn reply_timeout(definition: Option<&Arc<Definition>>, configured: Duration) -> Duration {
    let declared = definition.map_or(0, |definition| definition.metadata.timeout);
    if declared >= configured.as_secs() {
        Duration::from_secs(declared + REPLY_MARGIN_SECS)
    } else {
        configured
    }
}
