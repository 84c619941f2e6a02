//! `baton console`: starting the web console, and adding its users. The console itself is the
//! `console` module; this is only its command line.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::anyhow;

use super::args::Cli;
use super::exit::{Exit, Failure};
use crate::config::ClientConfig;
use crate::console::ConsoleOptions;

/// Runs the console until Ctrl-C or SIGTERM; SIGHUP reloads its keys.
pub async fn serve(cli: &Cli, options: ConsoleOptions) -> Result<Exit, Failure> {
    let config = ClientConfig::load(cli.config.as_deref()).map_err(Failure::usage)?;
    let shutdown = async {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = async {
                match terminate.as_mut() {
                    Some(signal) => { signal.recv().await; }
                    None => std::future::pending().await,
                }
            } => {}
        }
    };
    let on_listening = |address: std::net::SocketAddr| {
        eprintln!("baton console: listening on http://{address}/ (collective {})", config.collective);
    };
    // SIGHUP reloads the keys, as it does for batond (a rotated node key, a new trusted key).
    let reload = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|error| Failure::usage(anyhow!("cannot handle SIGHUP: {error}")))?;
    let reload_on_hangup = reload.clone();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            reload_on_hangup.notify_one();
        }
    });
    match crate::console::run(config.clone(), options, on_listening, shutdown, reload).await {
        Ok(()) => Ok(Exit::Ok),
        Err(error) if error.is_usage() => Err(Failure::usage(anyhow!(error))),
        Err(error) => Err(Failure::broker(anyhow!(error))),
    }
}

/// `baton console --users FILE --add-user NAME`: reads the password and writes its hash.
pub fn add_user(users: &Path, name: &str) -> Result<Exit, Failure> {
    let password =
        read_password(name).map_err(|error| Failure::usage(anyhow!("cannot read the password: {error}")))?;
    crate::console::add_user(users, name, &password).map_err(|error| Failure::usage(anyhow!(error)))?;
    eprintln!("baton console: {name} can log in now ({})", users.display());
    Ok(Exit::Ok)
}

/// The first line of standard input; on a terminal, prompted for with echo turned off.
fn read_password(name: &str) -> std::io::Result<String> {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    if terminal {
        eprint!("password for {name}: ");
        std::io::stderr().flush()?;
        set_echo(false);
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if terminal {
        set_echo(true);
        eprintln!();
    }
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Turns the terminal's echo off or on with stty (no terminal library needed for one prompt).
fn set_echo(on: bool) {
    let _ = std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .status();
}
