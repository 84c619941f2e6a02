//! Shell completions and manual pages, generated from the one clap definition of the CLI so
//! they can never disagree with what `baton` accepts.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

use super::args::{Cli, Shell};
use super::exit::Failure;

/// Writes the completion script for `shell` to stdout.
pub fn completions(shell: Shell) {
    let mut command = Cli::command();
    let mut stdout = std::io::stdout().lock();
    match shell {
        Shell::Bash => {
            clap_complete::generate(clap_complete::Shell::Bash, &mut command, "baton", &mut stdout)
        }
        Shell::Zsh => clap_complete::generate(clap_complete::Shell::Zsh, &mut command, "baton", &mut stdout),
        Shell::Fish => {
            clap_complete::generate(clap_complete::Shell::Fish, &mut command, "baton", &mut stdout)
        }
    }
    let _ = stdout.flush();
}

/// Writes baton(1) to stdout, or every page (baton.1, baton-rpc.1, ...) into `dir`.
pub fn man(dir: Option<&Path>) -> Result<(), Failure> {
    let command = Cli::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the manual directory {}", dir.display()))
                .map_err(Failure::usage)?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("cannot write manual pages into {}", dir.display()))
                .map_err(Failure::usage)?;
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .context("cannot render the manual page")
                .map_err(Failure::usage)?;
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(&page);
            let _ = stdout.flush();
        }
    }
    Ok(())
}
