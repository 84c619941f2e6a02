//! `baton rollout status ID` and `baton rollout resume ID`: a saved rollout (see
//! `client::journal`), shown, or continued with the nodes that did not succeed. This
//! machine's record comes first; without one, the rollout is rebuilt from the events the
//! broker retains (`client::events`), and a resume saves it here.

use anyhow::anyhow;

use super::rpc::RpcPlan;
use crate::cli::args::{Cli, OutputArgs};
use crate::cli::exit::{Exit, Failure};
use crate::cli::plan::load_config;
use crate::cli::render::Renderer;
use crate::client::events::{EVENTS_READ_TIMEOUT, EVENTS_RETAINED, read_rollout};
use crate::client::journal::{Journal, RolloutRecord, parse_id, rollouts_dir};
use crate::client::retained::NotRetained;

/// Where the rollout's record is: this machine's journal, or the broker's events.
enum Found {
    Here(Journal),
    OnTheBroker(RolloutRecord),
}

async fn find(cli: &Cli, id: &str) -> Result<(Found, std::path::PathBuf), Failure> {
    let dir = rollouts_dir().ok_or_else(|| {
        Failure::usage(anyhow!("neither XDG_STATE_HOME nor HOME is set: no rollouts are recorded"))
    })?;
    let id = parse_id(id)?;
    if let Some(journal) = Journal::find(&dir, id)? {
        return Ok((Found::Here(journal), dir));
    }
    let config = load_config(cli, None)?;
    let client = super::connect(&config).await?;
    let read = read_rollout(&client, &config.collective, id, EVENTS_READ_TIMEOUT).await;
    client.close().await;
    let collective = &config.collective;
    let days = EVENTS_RETAINED.as_secs() / 86_400;
    match read {
        Ok(Some(record)) => Ok((Found::OnTheBroker(record), dir)),
        Ok(None) => Err(Failure::usage(anyhow!(
            "no rollout {id} in {} nor in the events the broker keeps for collective \"{collective}\" (the last {days} days); a rollout is found on another machine only when it ran with --events in that collective",
            dir.display()
        ))),
        Err(NotRetained(why)) => Err(Failure::usage(anyhow!(
            "no rollout {id} in {}, and the broker's events cannot be read ({why}); a rollout is found on another machine only when it ran with --events, over AMQP, with the stream \"{collective}.events\" declared (rabbitmq/definitions.json)",
            dir.display()
        ))),
    }
}

/// Shows where every node of the rollout stands; reads the records only, sends nothing. A
/// rollout with events may have been resumed on another runner since this machine's record
/// was written: the broker's record is shown when it is of a later run.
pub async fn status(cli: &Cli, id: &str, output: &OutputArgs) -> Result<Exit, Failure> {
    let record = match find(cli, id).await?.0 {
        Found::Here(journal) if journal.record().request.events => {
            let here = journal.record().clone();
            newer_on_the_broker(cli, &here).await.unwrap_or(here)
        }
        Found::Here(journal) => journal.record().clone(),
        Found::OnTheBroker(record) => record,
    };
    Renderer::new(output, 0).rollout_status(&record);
    Ok(Exit::Ok)
}

/// Continues the rollout with its remaining nodes; a rollout with nothing left exits 0 at once.
pub async fn resume(cli: &Cli, id: &str, yes: bool, output: &OutputArgs) -> Result<Exit, Failure> {
    let journal = match find(cli, id).await? {
        (Found::Here(journal), _) => journal,
        // Saved here once the resume holds the rollout's locks: from then on this machine's
        // record is the first source.
        (Found::OnTheBroker(record), dir) => Journal::unsaved(&dir, record),
    };
    if journal.record().remaining().is_empty() {
        Renderer::new(output, cli.verbose).rollout_status(journal.record());
        return Ok(Exit::Ok);
    }
    RpcPlan::resume(cli, journal, yes, output).await?.run(cli.verbose).await
}

/// The broker's record of `here`'s rollout when it is of a later run (resumed elsewhere);
/// `None` when it is not, or cannot be read (this machine's record is shown, as before).
async fn newer_on_the_broker(cli: &Cli, here: &RolloutRecord) -> Option<RolloutRecord> {
    let config = load_config(cli, None).ok()?;
    let client = match super::connect(&config).await {
        Ok(client) => client,
        Err(error) => {
            tracing::debug!(error = %error.error, "the broker's record is not read; this machine's is shown");
            return None;
        }
    };
    let read = read_rollout(&client, &here.collective, here.rollout_id, EVENTS_READ_TIMEOUT).await;
    client.close().await;
    match read {
        Ok(Some(remote)) if remote.runs > here.runs => Some(remote),
        Ok(_) => None,
        Err(NotRetained(why)) => {
            tracing::debug!(%why, "the broker's record is not read; this machine's is shown");
            None
        }
    }
}
