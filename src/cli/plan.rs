//! The validation stage: every flag of a command is checked here, without touching the network,
//! before anything connects, so a mistake exits 2 with nothing sent. The client configuration
//! is loaded once per command and the catalog of definitions read once (a bad definition file
//! warns once); what comes out is a validated plan that a command hands to `client`.

use std::time::Duration;

use anyhow::anyhow;

use super::args::{Cli, FilterArgs};
use super::exit::Failure;
use crate::agents::catalog::Catalog;
use crate::config::ClientConfig;
use crate::protocol::filter::Filter;

/// Loads the client configuration, with `-T` applied when given.
pub fn load_config(cli: &Cli, collective: Option<&String>) -> Result<ClientConfig, Failure> {
    let mut config = ClientConfig::load(cli.config.as_deref()).map_err(Failure::usage)?;
    if let Some(collective) = collective {
        config.collective = collective.clone();
    }
    Ok(config)
}

/// The definitions this client knows: built-in, plus `definitions_dir`. Problems with local
/// definition files are warnings, printed here once; the nodes check inputs anyway.
pub fn load_catalog(config: Option<&ClientConfig>) -> Catalog {
    let dir = config.and_then(|config| config.definitions_dir.as_deref());
    let (catalog, problems) = Catalog::load(dir);
    for problem in problems {
        eprintln!("baton: warning: {problem}");
    }
    catalog
}

/// Compiles the filter flags: the one compilation of the filter in this command.
pub fn compile_filter(filter: &FilterArgs) -> Result<Filter, Failure> {
    Filter::compile(&filter.spec()).map_err(Failure::usage)
}

/// A number of seconds given on the command line, or the default.
pub fn seconds(value: Option<f64>, default: u64) -> Result<Duration, Failure> {
    match value {
        None => Ok(Duration::from_secs(default)),
        Some(secs) if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 => Ok(Duration::from_secs_f64(secs)),
        Some(secs) => Err(Failure::usage(anyhow!("{secs} is not a number of seconds between 0 and 86400"))),
    }
}

/// Parses `KEY=VALUE` arguments into names and texts, in order; `client::prepare` converts the
/// texts by the types the agent's definition declares.
pub fn parse_inputs(inputs: &[String]) -> Result<Vec<(String, String)>, Failure> {
    let mut parsed: Vec<(String, String)> = Vec::new();
    for input in inputs {
        let Some((key, value)) = input.split_once('=') else {
            return Err(Failure::usage(anyhow!("input {input:?} is not KEY=VALUE (e.g. fact=role)")));
        };
        if key.is_empty() {
            return Err(Failure::usage(anyhow!("input {input:?} has an empty name")));
        }
        if parsed.iter().any(|(known, _)| known == key) {
            return Err(Failure::usage(anyhow!("input {key:?} is given twice")));
        }
        parsed.push((key.to_owned(), value.to_owned()));
    }
    Ok(parsed)
}
