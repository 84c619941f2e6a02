//! The command line's definition and the parsing that happens before anything is sent.

use baton::cli::args::Cli;
use baton::cli::parse_inputs;
use clap::{CommandFactory, Parser};

#[test]
fn the_clap_definition_is_consistent() {
    // Regression: `rpc AGENT` and `-A/--agent` once shared an argument id and every
    // `baton rpc` panicked at start.
    Cli::command().debug_assert();
}

#[test]
fn help_lists_the_exit_codes_and_every_subcommand_has_examples() {
    let mut command = Cli::command();
    let help = command.render_long_help().to_string();
    for code in ["0  every targeted node replied OK", "5  the broker could not be reached"] {
        assert!(help.contains(code), "baton --help lacks {code:?}:\n{help}");
    }
    for sub in command.get_subcommands_mut() {
        let name = sub.get_name().to_string();
        if name == "help" {
            continue;
        }
        let help = sub.render_long_help().to_string();
        assert!(help.contains("Examples:"), "baton {name} --help has no examples:\n{help}");
    }
}

fn check_parse(args: &[&str], ok: bool) {
    let mut argv = vec!["baton"];
    argv.extend_from_slice(args);
    assert_eq!(Cli::try_parse_from(&argv).is_ok(), ok, "parsing {args:?}");
}

#[test]
fn parsing() {
    check_parse(&["rpc", "rpcutil", "get_fact", "fact=role", "-A", "rpcutil", "-F", "role=web"], true);
    check_parse(&["find", "-C", "nginx"], true);
    check_parse(&["discover", "--dm", "stdin"], true);
    check_parse(&["discover", "--dm", "carrier-pigeon"], false);
    check_parse(&["rpc", "rpcutil"], false);
    check_parse(&["ping", "--json", "--jsonl"], false);
    check_parse(&["rpc", "a", "b", "--display", "sometimes"], false);
    check_parse(&["rpc", "a", "b", "--batch", "2", "--batch-sleep", "0.5", "--max-failures", "10%"], true);
    check_parse(&["rpc", "a", "b", "--batch-sleep", "1"], false);
    check_parse(&["rpc", "a", "b", "--limit", "3", "--limit-seed", "7"], true);
    check_parse(&["rpc", "a", "b", "-1", "--limit", "3"], false);
    check_parse(&["rpc", "a", "b", "--dm", "stdin", "--only", "failed,no_response"], true);
    check_parse(&["rpc", "a", "b", "--dm", "stdin", "--only", "broken"], false);
    check_parse(&["rpc", "a", "b", "--reply-to", "later"], true);
    check_parse(
        &["replies", "later", "--request", "6f1c2c52-4a8e-4f7e-9d55-3b0f0f0f0f0f", "--wait", "3"],
        true,
    );
    check_parse(&["replies", "later", "--request", "not-a-uuid"], false);
    check_parse(&["completions", "zsh"], true);
    check_parse(&["completions", "powershell"], false);
    check_parse(&["man"], true);
}

fn check_inputs(args: &[&str], expected: Result<serde_json::Value, &str>) {
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    match (parse_inputs(&args), expected) {
        (Ok(data), Ok(want)) => {
            let data: serde_json::Map<String, serde_json::Value> =
                data.into_iter().map(|(key, text)| (key, serde_json::Value::String(text))).collect();
            assert_eq!(serde_json::Value::Object(data), want, "{args:?}")
        }
        (Err(failure), Err(fragment)) => {
            let message = failure.error.to_string();
            assert!(message.contains(fragment), "{args:?}: {message:?} should contain {fragment:?}");
            assert_eq!(failure.exit.code(), 2);
        }
        (got, want) => {
            panic!("{args:?}: got {:?}, want {want:?}", got.map_err(|failure| failure.error.to_string()))
        }
    }
}

#[test]
fn key_value_inputs() {
    use serde_json::json;
    check_inputs(&[], Ok(json!({})));
    check_inputs(&["fact=role"], Ok(json!({"fact": "role"})));
    check_inputs(&["a=1", "b=x=y"], Ok(json!({"a": "1", "b": "x=y"})));
    check_inputs(&["empty="], Ok(json!({"empty": ""})));
    check_inputs(&["role"], Err("is not KEY=VALUE"));
    check_inputs(&["=web"], Err("empty name"));
    check_inputs(&["a=1", "a=2"], Err("given twice"));
}

/// Regression: `baton rpc` loaded the client configuration twice and read `definitions_dir`
/// once for the inputs, once for the timeout, once for the display policy and once for the
/// aggregates, so a bad definition file warned several times (twice even before connecting).
/// Here the broker cannot be reached (exit 5): what happens before connecting warns once.
#[test]
fn a_bad_definition_file_warns_once_before_connecting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broken = dir.path().join("definitions").join("broken");
    std::fs::create_dir_all(&broken).expect("agent dir");
    std::fs::write(broken.join("definition.json"), "{ not json").expect("bad definition");
    std::fs::write(dir.path().join("psk"), "a-test-key-that-is-long-enough-to-be-accepted").expect("psk");
    let config = dir.path().join("client.toml");
    std::fs::write(
        &config,
        format!(
            "definitions_dir = {:?}\n[broker]\nurls = [\"amqp://baton:baton@127.0.0.1:1/baton\"]\n[security]\nscheme = \"psk\"\npsk_file = {:?}\n",
            dir.path().join("definitions"),
            dir.path().join("psk"),
        ),
    )
    .expect("config");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--config")
        .arg(&config)
        .args(["rpc", "rpcutil", "ping", "-t", "1"])
        .env_remove("BATON_LOG")
        .output()
        .expect("run baton");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(5), "the broker is unreachable: {stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|line| line.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "one warning for one bad file, got {warnings:#?}");
    assert!(warnings[0].contains("broken/definition.json"), "{warnings:?}");
}
