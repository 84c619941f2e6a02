//! The `rpcutil` agent: what every node answers about itself.
//!
//! Discovery, `baton ping`, `baton inventory` and `baton facts` are built on it, so every node
//! has it and it never changes anything on the node.

use serde_json::{Map, Value, json};

use std::sync::Arc;

use super::{ActionContext, ActionOutcome, Agent, BoxFuture, Call, builtin_definition, required_string};
use crate::protocol::ddl::Definition;
use crate::protocol::filter::dotted_fact_in;
use crate::protocol::{StatusCode, now_ms};

/// The built-in `rpcutil` agent.
pub struct Rpcutil {
    definition: Arc<Definition>,
}

impl Rpcutil {
    pub fn new() -> Rpcutil {
        Rpcutil { definition: builtin_definition("rpcutil") }
    }
}

impl Default for Rpcutil {
    fn default() -> Self {
        Rpcutil::new()
    }
}

impl Agent for Rpcutil {
    fn definition(&self) -> &Arc<Definition> {
        &self.definition
    }

    fn call<'a>(&'a self, call: Call<'a>, context: &'a ActionContext) -> BoxFuture<'a, ActionOutcome> {
        Box::pin(async move {
            match run(call.action, call.data, context) {
                Ok(outcome) | Err(outcome) => outcome,
            }
        })
    }
}

fn run(
    action: &str,
    data: &Map<String, Value>,
    context: &ActionContext,
) -> Result<ActionOutcome, ActionOutcome> {
    let output = match action {
        // Discovery answers as ping does; its own action name is what marks it in audit logs.
        "ping" | "discover" => json!({ "pong": now_ms() }),
        "inventory" => json!({
            "identity": context.identity,
            "facts": *context.facts,
            "classes": *context.classes,
            "agents": context.agents.iter().map(|agent| &agent.agent).collect::<Vec<_>>(),
            "collectives": *context.collectives,
            "main_collective": context.collectives.first(),
            "version": env!("CARGO_PKG_VERSION"),
        }),
        "get_fact" => {
            let fact = required_string(data, "fact")?;
            json!({ "fact": fact, "value": lookup(&context.facts, fact) })
        }
        "get_facts" => {
            let wanted = required_string(data, "facts")?;
            let values: Map<String, Value> = wanted
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(|name| (name.to_string(), lookup(&context.facts, name).unwrap_or(Value::Null)))
                .collect();
            json!({ "values": values })
        }
        "agent_inventory" => json!({ "agents": *context.agents }),
        "collective_info" => json!({
            "main_collective": context.collectives.first(),
            "collectives": *context.collectives,
        }),
        "daemon_stats" => Value::Object(context.stats.snapshot()),
        "definition" => {
            let agent = required_string(data, "agent")?;
            let Some(summary) = context.agents.iter().find(|summary| summary.agent == agent) else {
                return Err(ActionOutcome::fail(
                    StatusCode::Aborted,
                    format!("{} has no agent \"{agent}\"", context.identity),
                ));
            };
            json!({ "definition": *summary.definition })
        }
        other => {
            return Err(ActionOutcome::fail(
                StatusCode::UnknownAction,
                format!("rpcutil has no action \"{other}\""),
            ));
        }
    };
    match output {
        Value::Object(map) => Ok(ActionOutcome::ok(map)),
        _ => unreachable!("every rpcutil action builds a JSON object"),
    }
}

/// Looks a fact up by dotted key exactly as filters do, so `baton facts KEY` shows the value
/// that `-F KEY=...` compares.
fn lookup(facts: &Map<String, Value>, dotted_key: &str) -> Option<Value> {
    dotted_fact_in(facts, dotted_key).cloned()
}
