//! The `baton` command line: parsing, checking, running each command, rendering, exit codes.
//!
//! Every command follows the same shape: check everything the user gave (filters, inputs,
//! configuration) in a validation stage (`plan`, `targets`) before connecting, so a mistake
//! exits 2 with nothing sent; connect (exit 5 when the broker cannot be reached); hand the
//! validated plan to `client`; render for people (`render`, `summary`) or scripts (`report`,
//! the `--json` contract); map the outcome onto the documented exit codes (`exit`). Each
//! command lives in a file of its own under `cmd`.

pub mod args;
mod cmd;
mod confirm;
#[cfg(feature = "console")]
mod console;
pub mod exit;
pub mod extras;
pub mod plan;
pub mod render;
pub mod report;
pub mod summary;
pub mod targets;

use std::io::IsTerminal;

use args::{Cli, Command, RolloutCommand};
use cmd::replies::RepliesArgs;
use cmd::rpc::{RpcArgs, RpcPlan};
use exit::{Exit, Failure};
pub use plan::parse_inputs;
use report::{ErrorReport, line};

/// Runs one parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let output = cli.command.output();
    match dispatch(&cli).await {
        Ok(exit) => exit.code(),
        Err(failure) => {
            render::failure(&output, &failure);
            failure.exit.code()
        }
    }
}

async fn dispatch(cli: &Cli) -> Result<Exit, Failure> {
    match &cli.command {
        Command::Ping { filter, output } => cmd::ping::run(cli, filter, output).await,
        Command::Discover { filter, discovery, output } => {
            cmd::discover::run(cli, filter, discovery, output).await
        }
        Command::Rpc { agent, action, inputs, filter, discovery, rollout, reply_to, yes, output } => {
            let args = RpcArgs {
                agent,
                action,
                inputs,
                filter,
                discovery,
                rollout,
                reply_to: reply_to.as_deref(),
                yes: *yes,
                output,
            };
            RpcPlan::new(cli, &args).await?.run(cli.verbose).await
        }
        Command::Rollout { command: RolloutCommand::Status { id, output } } => {
            cmd::rollout::status(cli, id, output).await
        }
        Command::Rollout { command: RolloutCommand::Resume { id, yes, output } } => {
            cmd::rollout::resume(cli, id, *yes, output).await
        }
        Command::Replies { name, request, wait, collective, output } => {
            let args =
                RepliesArgs { name, request: *request, wait: *wait, collective: collective.as_ref(), output };
            cmd::replies::run(cli, &args).await
        }
        Command::Completions { shell } => {
            extras::completions(*shell);
            Ok(Exit::Ok)
        }
        Command::Man { dir } => extras::man(dir.as_deref()).map(|()| Exit::Ok),
        Command::Inventory { node, collective, output } => {
            cmd::inventory::run(cli, node, collective.as_ref(), output).await
        }
        Command::Facts { fact, filter, discovery, output } => {
            cmd::facts::run(cli, fact, filter, discovery, output).await
        }
        Command::Agents { filter, discovery, output } => {
            cmd::agents::run(cli, filter, discovery, output).await
        }
        Command::Doc { agent, collective, output } => {
            cmd::doc::run(cli, agent, collective.clone(), output).await
        }
        Command::Keygen { name, dir, force } => cmd::keygen::run(cli, name.as_deref(), dir, *force),
        #[cfg(not(feature = "console"))]
        Command::Console { .. } => Err(Failure::usage(anyhow::anyhow!(
            "this baton was built without the web console; rebuild it with the default features \
             (cargo feature `console`) to run `baton console`"
        ))),
        #[cfg(feature = "console")]
        Command::Console { listen, users, add_user, database, registration_interval, user_keys, origins } => {
            match (add_user, users) {
                (Some(name), Some(users)) => console::add_user(users, name),
                _ => {
                    let options = crate::console::ConsoleOptions {
                        listen: *listen,
                        users: users.clone(),
                        database: database.clone().unwrap_or_else(crate::console::default_database),
                        registration_interval: std::time::Duration::from_secs(*registration_interval),
                        user_keys: user_keys.clone(),
                        origins: origins.clone(),
                    };
                    console::serve(cli, options).await
                }
            }
        }
    }
}

/// Whether stderr is a terminal a progress bar may draw on.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// What to print for a command line clap refused, when the user asked for JSON (`--json` or
/// `--jsonl` among the arguments): the same error document as every other failure, so a
/// script always gets JSON. `None` for help and version requests, and without JSON.
pub fn usage_error_json(args: &[String], error: &clap::Error) -> Option<String> {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        return None;
    }
    let mut wants = None;
    for arg in args.iter().skip(1).take_while(|arg| *arg != "--") {
        match arg.as_str() {
            "--json" => wants = Some(false),
            "--jsonl" => wants = Some(true),
            _ => {}
        }
    }
    let rendered = error.to_string();
    let message = rendered.lines().next().unwrap_or("invalid command line").trim_start_matches("error: ");
    let document = line("error", ErrorReport { error: message, exit_code: Exit::Usage.code() });
    wants.map(|one_line| {
        if one_line {
            serde_json::to_string(&document).unwrap_or_default()
        } else {
            serde_json::to_string_pretty(&document).unwrap_or_default()
        }
    })
}
