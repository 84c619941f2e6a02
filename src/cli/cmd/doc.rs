//! `baton doc AGENT`: help generated from an agent's definition, from the client's catalog
//! (built-in and `definitions_dir`), or asked of the nodes that have the agent
//! (`rpcutil definition`).

use anyhow::anyhow;

use crate::cli::args::{Cli, OutputArgs};
use crate::cli::exit::{Exit, Failure};
use crate::cli::plan::load_catalog;
use crate::cli::report::print_as;
use crate::client::definitions::{self, DefinitionCache};
use crate::config::ClientConfig;
use crate::protocol::ddl::{Definition, DisplayPolicy, InputType};

/// `baton doc AGENT`: help generated from the agent's definition.
pub async fn run(
    cli: &Cli,
    agent: &str,
    collective: Option<String>,
    output: &OutputArgs,
) -> Result<Exit, Failure> {
    if let Some(path) = definition_path(agent) {
        let definition = definition_from_file(&path)?;
        print_definition(&definition, output);
        return Ok(Exit::Ok);
    }
    // Without a usable configuration only the built-in definitions are known, and no node can
    // be asked; that is reported below only if the agent is not built in.
    let config = ClientConfig::load(cli.config.as_deref()).ok();
    let catalog = load_catalog(config.as_ref());
    let definition = match catalog.definition(agent) {
        Some(definition) => (**definition).clone(),
        None => {
            let Some(mut config) = config else {
                return Err(Failure::usage(anyhow!(
                    "no definition of agent \"{agent}\" here, and no client configuration to ask the nodes with (set definitions_dir, or configure the broker)"
                )));
            };
            if let Some(collective) = collective {
                config.collective = collective;
            }
            match definition_from_nodes(&config, agent).await? {
                Some(definition) => definition,
                None => {
                    return Err(Failure {
                        exit: Exit::NothingMatched,
                        error: anyhow!(
                            "no definition of agent \"{agent}\": not built in, not in definitions_dir, and no node that has it answered"
                        ),
                    });
                }
            }
        }
    };
    print_definition(&definition, output);
    Ok(Exit::Ok)
}

fn print_definition(definition: &Definition, output: &OutputArgs) {
    if output.json || output.jsonl {
        print_as(definition, output.jsonl);
    } else {
        print!("{}", help_text(definition));
    }
}

/// `AGENT` as a definition file to read instead of an agent's name: anything with a `/` (an
/// agent name never has one) or ending in `.json`. A directory stands for its
/// `definition.json`, as in `agents.dir`.
fn definition_path(agent: &str) -> Option<std::path::PathBuf> {
    if !(agent.contains('/') || agent.ends_with(".json")) {
        return None;
    }
    let path = std::path::PathBuf::from(agent);
    Some(if path.is_dir() { path.join("definition.json") } else { path })
}

/// Reads and checks a definition file, as a node would load it: an agent's author sees its
/// help, or what is wrong with it (exit 2), before installing it anywhere.
fn definition_from_file(path: &std::path::Path) -> Result<Definition, Failure> {
    let bytes = std::fs::read(path).map_err(|error| {
        Failure::usage(anyhow!("cannot read definition file {}: {error}", path.display()))
    })?;
    Definition::from_json(&bytes, &path.display().to_string()).map_err(Failure::usage)
}

/// Asks the nodes that have `agent` for its definition (the first valid answer wins) and
/// caches it for `baton rpc` and the console (`client::definitions`).
async fn definition_from_nodes(config: &ClientConfig, agent: &str) -> Result<Option<Definition>, Failure> {
    let Some((definition, document)) = definitions::fetch_connected(config, agent).await? else {
        return Ok(None);
    };
    if let Some(cache) = DefinitionCache::user()
        && let Err(error) = cache.store(&definition, &document)
    {
        tracing::warn!(dir = %cache.dir().display(), %error, "cannot cache the definition");
    }
    Ok(Some(definition))
}

/// The help text `baton doc` prints for a definition.
pub fn help_text(definition: &Definition) -> String {
    use std::fmt::Write;
    let metadata = &definition.metadata;
    let mut text = String::new();
    let _ = writeln!(text, "{} - {}", metadata.name, metadata.description);
    let _ = writeln!(text);
    for (label, value) in [
        ("Author", &metadata.author),
        ("Version", &metadata.version),
        ("License", &metadata.license),
        ("URL", &metadata.url),
    ] {
        if !value.is_empty() {
            let _ = writeln!(text, "  {label:<8} {value}");
        }
    }
    let _ = writeln!(text, "  {:<8} {} s", "Timeout", metadata.timeout);
    for (name, action) in &definition.actions {
        let _ = writeln!(text);
        let _ = writeln!(text, "ACTION {name}: {}", action.description);
        let mut example = format!("baton rpc {} {name}", metadata.name);
        if action.inputs.is_empty() {
            let _ = writeln!(text, "  Inputs: none");
        } else {
            let _ = writeln!(text, "  Inputs:");
        }
        for (input_name, input) in &action.inputs {
            let mut rules = vec![input.kind.name().to_owned()];
            rules.push(if input.optional { "optional".to_owned() } else { "required".to_owned() });
            if let Some(list) = &input.list {
                rules.push(format!("one of {}", list.join("|")));
            }
            if let Some(max) = input.maxlength {
                rules.push(format!("at most {max} characters"));
            }
            if let Some(validation) = &input.validation {
                rules.push(format!("matching /{}/", validation.as_str()));
            }
            if let Some(default) = &input.default {
                rules.push(format!("default {default}"));
            }
            let _ = writeln!(text, "    {input_name:<16} {}", input.description);
            let _ = writeln!(text, "    {:<16} ({})", "", rules.join(", "));
            if !input.optional && input.default.is_none() {
                let placeholder = match input.kind {
                    InputType::List => {
                        input.list.as_ref().and_then(|list| list.first()).cloned().unwrap_or_default()
                    }
                    InputType::Boolean => "true".to_owned(),
                    InputType::Integer | InputType::Number => "1".to_owned(),
                    InputType::Float => "1.0".to_owned(),
                    InputType::Array => "a,b".to_owned(),
                    InputType::Object => "'{}'".to_owned(),
                    InputType::String => input_name.to_uppercase(),
                };
                example.push_str(&format!(" {input_name}={placeholder}"));
            }
        }
        if !action.outputs.is_empty() {
            let _ = writeln!(text, "  Outputs:");
        }
        for (output_name, output) in &action.outputs {
            let default =
                output.default.as_ref().map(|default| format!(" (default {default})")).unwrap_or_default();
            let _ = writeln!(
                text,
                "    {output_name:<16} \"{}\": {}{default}",
                output.display_as, output.description
            );
        }
        if !action.aggregate.is_empty() {
            let summaries: Vec<String> = action
                .aggregate
                .iter()
                .map(|aggregate| format!("{} of {}", aggregate.function(), aggregate.output()))
                .collect();
            let _ = writeln!(text, "  Summaries: {}", summaries.join(", "));
        }
        let display = match action.display {
            DisplayPolicy::Ok => "replies that succeeded",
            DisplayPolicy::Failed => "replies that failed",
            DisplayPolicy::Always => "every reply",
        };
        let _ = writeln!(text, "  Shows: {display}");
        let _ = writeln!(text, "  Example: {example}");
    }
    text
}
