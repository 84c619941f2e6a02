//! `baton rollout status ID` and `baton rollout resume ID`: a saved rollout (see
//! `client::journal`), shown, or continued with the nodes that did not succeed.

use anyhow::anyhow;

use super::rpc::RpcPlan;
use crate::cli::args::{Cli, OutputArgs};
use crate::cli::exit::{Exit, Failure};
use crate::cli::render::Renderer;
use crate::client::journal::{Journal, rollouts_dir};

fn open(id: &str) -> Result<Journal, Failure> {
    let dir = rollouts_dir().ok_or_else(|| {
        Failure::usage(anyhow!("neither XDG_STATE_HOME nor HOME is set: no rollouts are recorded"))
    })?;
    Ok(Journal::open(&dir, id)?)
}

/// Shows where every node of the rollout stands; reads the record only, sends nothing.
pub fn status(id: &str, output: &OutputArgs) -> Result<Exit, Failure> {
    let journal = open(id)?;
    Renderer::new(output, 0).rollout_status(journal.record());
    Ok(Exit::Ok)
}

/// Continues the rollout with its remaining nodes; a rollout with nothing left exits 0 at once.
pub async fn resume(cli: &Cli, id: &str, yes: bool, output: &OutputArgs) -> Result<Exit, Failure> {
    let journal = open(id)?;
    if journal.record().remaining().is_empty() {
        Renderer::new(output, cli.verbose).rollout_status(journal.record());
        return Ok(Exit::Ok);
    }
    RpcPlan::resume(cli, journal, yes, output).await?.run(cli.verbose).await
}
