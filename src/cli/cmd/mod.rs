//! One file per `baton` command. Each follows the same shape: build a validated plan from the
//! flags (`cli::plan`, no network), connect (exit 5 when the broker cannot be reached), find the
//! targets, hand the plan to `client`, render what comes back, map it onto the exit codes.

pub mod agents;
pub mod discover;
pub mod doc;
pub mod facts;
pub mod inventory;
pub mod keygen;
pub mod ping;
pub mod replies;
pub mod rollout;
pub mod rpc;

use serde_json::Map;

use super::exit::{Exit, Failure};
use super::render::Renderer;
use super::targets::Found;
use crate::client::{Client, RequestSpec};
use crate::config::ClientConfig;
use crate::protocol::filter::Filter;

/// Connects as the configuration says.
pub async fn connect(config: &ClientConfig) -> Result<Client, Failure> {
    Ok(Client::connect(config).await?)
}

/// A request for one of `rpcutil`'s actions, which every node has and which take no inputs
/// but those given here.
pub fn rpcutil(action: &str, data: Map<String, serde_json::Value>, filter: Filter) -> RequestSpec {
    RequestSpec { agent: "rpcutil".to_owned(), action: action.to_owned(), data, filter, once: None }
}

/// The check `facts` and `agents` make before sending `rpcutil ACTION` to what they found: with
/// no node found, the connection is closed, the user told what was empty, and exit 4 returned
/// for the command to end with; `None` when there are nodes to send to.
pub async fn nothing_found(found: &Found, action: &str, renderer: &mut Renderer) -> Option<Exit> {
    if !found.discovered.nodes.is_empty() {
        return None;
    }
    found.client.close().await;
    renderer.nothing_matched("rpcutil", action, &found.discovered, &found.plan.nothing_found());
    Some(Exit::NothingMatched)
}
