//! The confirmation `baton rpc` asks before an action that may change things reaches many
//! machines: "Run AGENT ACTION on 57 nodes? [y/N]".
//!
//! Which actions need it is the console's rule too ([`PreparedRequest::read_only`]: anything
//! not declared `read_only` in its definition); the CLI asks only above a number of nodes,
//! `confirm_above` in client.toml (default 10), since a change to a handful of named nodes is
//! what a person typing a command means. `--yes` answers for the person. Where there is nobody
//! to ask (stdin is not a terminal: CI, cron, a pipe), the command refuses (exit 2, nothing
//! sent) and says to add `--yes`, rather than guessing either way.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::anyhow;

use super::exit::Failure;
use crate::client::PreparedRequest;

/// Whether `request` may go to `nodes` nodes: at once when it is read-only, goes to at most
/// `confirm_above` nodes, or `yes` was given; else only after the person at the terminal
/// answers yes. A refusal or a "no" is a usage failure (exit 2): nothing was sent.
pub async fn confirm(
    request: &PreparedRequest,
    nodes: usize,
    confirm_above: usize,
    yes: bool,
) -> Result<(), Failure> {
    if yes || nodes <= confirm_above || request.read_only() {
        return Ok(());
    }
    let spec = &request.spec;
    let what = format!("{} {}", spec.agent, spec.action);
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(anyhow!(
            "{what} is not declared read-only and would run on {nodes} nodes, more than confirm_above ({confirm_above}) in the client configuration; there is no terminal to ask for confirmation, so nothing was sent: add --yes to run it"
        )));
    }
    let question = format!("Run {what} on {nodes} nodes? [y/N] ");
    // Read on a blocking thread: the runtime keeps the broker connection alive meanwhile.
    let answer = tokio::task::spawn_blocking(move || ask(&question))
        .await
        .map_err(|error| Failure::usage(anyhow!("cannot ask for confirmation: {error}")))?
        .map_err(|error| {
            Failure::usage(anyhow!("cannot read the confirmation from the terminal: {error}"))
        })?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(Failure::usage(anyhow!("{what} on {nodes} nodes not confirmed; nothing was sent")))
    }
}

/// Asks `question` on stderr and reads one line of answer from stdin.
fn ask(question: &str) -> std::io::Result<String> {
    let mut stderr = std::io::stderr().lock();
    stderr.write_all(question.as_bytes())?;
    stderr.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer)
}
