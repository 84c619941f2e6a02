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
        (Ok(data), Ok(want)) => assert_eq!(serde_json::Value::Object(data), want, "{args:?}"),
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
