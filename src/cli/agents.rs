//! The commands about agents: input checks against definitions, `baton agents`, `baton doc`,
//! `baton keygen`, and the aggregate summaries of `baton rpc`.
//!
//! Definitions come from [`Catalog`]: the built-in agents' definitions shipped in the binary,
//! plus `definitions_dir` from the client's configuration. `baton doc` asks the nodes
//! (`rpcutil definition`) for an agent the client has no definition for.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use serde_json::{Map, Value, json};

use super::args::{Cli, DiscoveryArgs, Display, FilterArgs, OutputArgs};
use super::exit::{Exit, Failure};
use crate::agents::catalog::Catalog;
use crate::client::{CallOutcome, RequestSpec, Targets};
use crate::config::ClientConfig;
use crate::protocol::FilterSpec;
use crate::protocol::ddl::{Definition, DisplayPolicy, InputType};

/// The catalog of definitions this client knows: built-in, plus `definitions_dir`. Problems
/// with local definition files are warnings; the nodes check inputs anyway.
pub fn catalog(config: Option<&ClientConfig>) -> Catalog {
    let dir = config.and_then(|config| config.definitions_dir.as_deref());
    let (catalog, problems) = Catalog::load(dir);
    for problem in problems {
        eprintln!("baton: warning: {problem}");
    }
    catalog
}

/// Parses `KEY=VALUE` arguments and, when the agent's definition is known, converts each value
/// by its declared type and checks the inputs exactly as the nodes will. A problem is a usage
/// error (exit 2) naming the input and the rule, and nothing is sent.
pub fn typed_inputs(
    cli: &Cli,
    agent: &str,
    action: &str,
    inputs: &[String],
) -> Result<Map<String, Value>, Failure> {
    let texts = super::parse_inputs(inputs)?;
    // A configuration that does not load is reported by the command itself, with its own
    // message; here it only means no local definitions beyond the built-in ones.
    let config = ClientConfig::load(cli.config.as_deref()).ok();
    let catalog = catalog(config.as_ref());
    let Some(definition) = catalog.definition(agent) else {
        return Ok(texts);
    };
    let declared = definition.require_action(action).map_err(|message| Failure::usage(anyhow!(message)))?;
    let mut typed = Map::new();
    for (key, value) in texts {
        let text = value.as_str().unwrap_or_default();
        let converted = declared
            .parse_cli_value(agent, action, &key, text)
            .map_err(|error| Failure::usage(anyhow!(error)))?;
        typed.insert(key, converted);
    }
    declared.validate_inputs(agent, action, &typed).map_err(|error| Failure::usage(anyhow!(error)))?;
    Ok(typed)
}

/// The aggregates the definition declares for this call, computed over the replies that
/// succeeded; empty when the client has no definition.
pub fn aggregates(config: &ClientConfig, outcome: &CallOutcome) -> Map<String, Value> {
    let catalog = catalog(Some(config));
    let Some(action) =
        catalog.definition(&outcome.agent).and_then(|definition| definition.action(&outcome.action))
    else {
        return Map::new();
    };
    let outputs: Vec<&Map<String, Value>> =
        outcome.replies.iter().filter(|reply| reply.is_ok()).map(|reply| &reply.data).collect();
    action.summarize(&outputs)
}

/// How long `baton rpc` waits for replies when `-t` is not given: the configured timeout, or
/// longer when the agent's definition lets its actions run longer (a Puppet run), so that a
/// slow action is not reported as a silent node.
pub fn default_timeout_secs(config: &ClientConfig, request: &RequestSpec) -> u64 {
    let catalog = catalog(Some(config));
    let declared = catalog.definition(&request.agent).map_or(0, |definition| definition.metadata.timeout);
    if declared >= config.timeout_secs { declared + 5 } else { config.timeout_secs }
}

/// The output settings with `--display` defaulted to the action's display policy, when the
/// user gave none and the client has the definition.
pub fn with_display_policy(config: &ClientConfig, request: &RequestSpec, output: &OutputArgs) -> OutputArgs {
    let mut output = output.clone();
    if output.display.is_none() {
        let catalog = catalog(Some(config));
        let policy = catalog
            .definition(&request.agent)
            .and_then(|definition| definition.action(&request.action))
            .map(|action| action.display);
        output.display = policy.map(|policy| match policy {
            DisplayPolicy::Ok => Display::Ok,
            DisplayPolicy::Failed => Display::Failed,
            DisplayPolicy::Always => Display::All,
        });
    }
    output
}

/// `baton agents`: which agents the targeted nodes have.
pub async fn agents(
    cli: &Cli,
    filter: &FilterArgs,
    discovery: &DiscoveryArgs,
    output: &OutputArgs,
) -> Result<Exit, Failure> {
    let (config, spec) = super::prepare(cli, filter)?;
    let client = super::connect(&config).await?;
    let discovered = super::targets(&client, &config, &spec, discovery).await?;
    let request = RequestSpec {
        agent: "rpcutil".to_owned(),
        action: "agent_inventory".to_owned(),
        data: Map::new(),
        filter: spec,
    };
    if discovered.nodes.is_empty() {
        client.close().await;
        super::render::Renderer::new(output, cli.verbose).nothing_matched(&request, &discovered);
        return Ok(Exit::NothingMatched);
    }
    let timeout = Duration::from_secs(config.timeout_secs);
    let targets = Targets::Nodes(discovered.nodes.clone());
    let outcome = client.call(&request, &targets, timeout, None, &mut |_| {}).await?;
    client.close().await;

    // agent -> (description, versions, nodes)
    let mut found: BTreeMap<String, (String, BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for reply in outcome.replies.iter().filter(|reply| reply.is_ok()) {
        for entry in reply.data.get("agents").and_then(Value::as_array).into_iter().flatten() {
            let Some(name) = entry.get("agent").and_then(Value::as_str) else { continue };
            let slot = found.entry(name.to_owned()).or_default();
            if let Some(description) = entry.get("description").and_then(Value::as_str) {
                slot.0 = description.to_owned();
            }
            if let Some(version) = entry.get("version").and_then(Value::as_str) {
                slot.1.insert(version.to_owned());
            }
            slot.2.insert(reply.node.clone());
        }
    }
    let failed: Vec<&crate::client::NodeReply> =
        outcome.replies.iter().filter(|reply| !reply.is_ok()).collect();
    if output.json || output.jsonl {
        let document = json!({
            "agents": found.iter().map(|(agent, (description, versions, nodes))| json!({
                "agent": agent, "description": description, "versions": versions, "nodes": nodes,
            })).collect::<Vec<_>>(),
            "targeted": outcome.targeted,
            "no_response": outcome.no_response,
            "failed": failed,
        });
        println!(
            "{}",
            if output.json {
                serde_json::to_string_pretty(&document)
            } else {
                serde_json::to_string(&document)
            }
            .unwrap_or_default()
        );
    } else {
        let answered = outcome.replies.iter().filter(|reply| reply.is_ok()).count();
        println!("Agents on {answered} of {} node(s):", discovered.nodes.len());
        println!();
        let width = found.keys().map(String::len).max().unwrap_or(5).max(5);
        println!("  {:<width$}  {:<10}  {:>5}  description", "agent", "version", "nodes");
        for (agent, (description, versions, nodes)) in &found {
            let versions = versions.iter().cloned().collect::<Vec<_>>().join(",");
            println!("  {agent:<width$}  {versions:<10}  {:>5}  {description}", nodes.len());
        }
        for reply in &failed {
            println!("{:<40} {}: {}", reply.node, reply.status_text, reply.message);
        }
        if !outcome.no_response.is_empty() {
            println!();
            println!("No response from: {}", outcome.no_response.join(" "));
        }
    }
    Ok(Exit::for_outcome(&outcome))
}

/// `baton doc AGENT`: help generated from the agent's definition.
pub async fn doc(
    cli: &Cli,
    agent: &str,
    collective: Option<String>,
    output: &OutputArgs,
) -> Result<Exit, Failure> {
    let config = ClientConfig::load(cli.config.as_deref()).ok();
    let catalog = catalog(config.as_ref());
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
    if output.json || output.jsonl {
        let text = if output.json {
            serde_json::to_string_pretty(&definition)
        } else {
            serde_json::to_string(&definition)
        };
        println!("{}", text.unwrap_or_default());
    } else {
        print!("{}", help_text(&definition));
    }
    Ok(Exit::Ok)
}

/// Asks the nodes that have `agent` for its definition; the first valid answer wins.
async fn definition_from_nodes(config: &ClientConfig, agent: &str) -> Result<Option<Definition>, Failure> {
    let client = super::connect(config).await?;
    let request = RequestSpec {
        agent: "rpcutil".to_owned(),
        action: "definition".to_owned(),
        data: Map::from_iter([("agent".to_owned(), json!(agent))]),
        filter: FilterSpec { agent: vec![agent.to_owned()], ..FilterSpec::default() },
    };
    let timeout = Duration::from_secs(config.discovery_timeout_secs.max(1));
    let outcome = client
        .call(&request, &Targets::Broadcast, timeout, Some(Duration::from_millis(300)), &mut |_| {})
        .await?;
    client.close().await;
    for reply in outcome.replies.iter().filter(|reply| reply.is_ok()) {
        let Some(document) = reply.data.get("definition") else { continue };
        let origin = format!("node {}", reply.node);
        if let Ok(definition) = Definition::from_json(document.to_string().as_bytes(), &origin) {
            return Ok(Some(definition));
        }
    }
    Ok(None)
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

/// `baton keygen`: writes an ed25519 key pair.
pub fn keygen(cli: &Cli, name: Option<&str>, dir: &Path, force: bool) -> Result<Exit, Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = match name {
        Some(name) => name.to_owned(),
        None => match ClientConfig::load(cli.config.as_deref()) {
            Ok(config) => config.caller,
            Err(_) => format!("user={}", std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned())),
        },
    };
    if !crate::security::ed25519::is_key_name(&name) {
        return Err(Failure::usage(anyhow!(
            "key name {name:?} may hold letters, digits and = . - _ @ : only (a caller id like user=alice, or a node identity)"
        )));
    }
    let stem: String = name
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || matches!(character, '.' | '-' | '_') {
                character
            } else {
                '-'
            }
        })
        .collect();
    let private_path = dir.join(format!("{stem}.key"));
    let public_path = dir.join(format!("{stem}.pub"));
    if !force {
        for path in [&private_path, &public_path] {
            if path.exists() {
                return Err(Failure::usage(anyhow!(
                    "{} exists; keep it, or pass --force to replace it",
                    path.display()
                )));
            }
        }
    }
    let (private, public) = crate::security::ed25519::generate(&name);
    let write = |path: &PathBuf, text: &str, mode: u32| -> Result<(), Failure> {
        use std::io::Write;
        let _ = std::fs::remove_file(path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .map_err(|error| Failure::usage(anyhow!("cannot write {}: {error}", path.display())))?;
        file.write_all(text.as_bytes())
            .map_err(|error| Failure::usage(anyhow!("cannot write {}: {error}", path.display())))
    };
    write(&private_path, &private, 0o600)?;
    write(&public_path, &public, 0o644)?;
    println!("Wrote a key pair for \"{name}\":");
    println!("  private key  {} (mode 600; keep it secret)", private_path.display());
    println!("  public key   {}", public_path.display());
    println!();
    println!(
        "Next: set security.scheme = \"ed25519\" and security.key_file = {:?},",
        private_path.display().to_string()
    );
    println!("then copy {} into the trusted_keys_dir of every node (for a caller)", public_path.display());
    println!("or of every client (for a node).");
    Ok(Exit::Ok)
}
