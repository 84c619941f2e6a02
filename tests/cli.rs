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
    write_private_psk(&dir.path().join("psk"));
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
    let warnings: Vec<&str> = stderr.lines().filter(|line| line.starts_with("baton: warning:")).collect();
    assert_eq!(warnings.len(), 1, "one warning for one bad file, got {warnings:#?}");
    assert!(warnings[0].contains("broken/definition.json"), "{warnings:?}");
}

/// Prepares `agent action KEY=VALUE...` with the built-in definitions and a configured timeout
/// of 10 s, as `baton rpc` and the console both do: `Ok((data, timeout secs, display))` or
/// `Err(fragment of the message)`.
fn check_prepare(
    words: &[&str],
    filter: &[&str],
    expected: Result<(serde_json::Value, u64, Option<&str>), &str>,
) {
    use baton::agents::catalog::Catalog;
    use baton::client::{RequestText, prepare};
    let inputs: Vec<String> = words[2..].iter().map(|word| word.to_string()).collect();
    let text = RequestText {
        agent: words[0].to_owned(),
        action: words[1].to_owned(),
        inputs: parse_inputs(&inputs).expect("KEY=VALUE"),
        filter: baton::protocol::FilterSpec {
            fact: filter.iter().map(|fact| fact.to_string()).collect(),
            ..Default::default()
        },
    };
    let result = prepare(&Catalog::builtin(), text, std::time::Duration::from_secs(10), None);
    match (result, expected) {
        (Ok(prepared), Ok((data, timeout, display))) => {
            assert_eq!(serde_json::Value::Object(prepared.spec.data.clone()), data, "{words:?}");
            assert_eq!(prepared.timeout.as_secs(), timeout, "{words:?}");
            let shown = prepared.display().map(|policy| serde_json::to_value(policy).expect("policy"));
            assert_eq!(shown.as_ref().and_then(|policy| policy.as_str()), display, "{words:?}");
            assert_eq!(prepared.spec.filter.spec().fact, filter, "the filter travels as given");
        }
        (Err(error), Err(fragment)) => {
            assert!(error.to_string().contains(fragment), "{words:?}: {error} lacks {fragment:?}")
        }
        (got, wanted) => panic!("{words:?}: got {got:?}, wanted {wanted:?}"),
    }
}

/// One request preparation for the CLI and the console: names, filter, typed inputs, the
/// "declared timeout + 5 s" rule and the display policy.
#[test]
fn requests_are_prepared_by_the_definition() {
    use serde_json::json;
    check_prepare(&["rpcutil", "ping"], &[], Ok((json!({}), 15, Some("always"))));
    check_prepare(
        &["rpcutil", "get_fact", "fact=os.family"],
        &["role=web"],
        Ok((json!({"fact": "os.family"}), 15, Some("always"))),
    );
    check_prepare(
        &["service", "restart", "service=nginx"],
        &[],
        Ok((json!({"service": "nginx"}), 65, Some("failed"))),
    );
    check_prepare(&["puppet", "status"], &[], Ok((json!({}), 605, Some("always"))));
    // No definition: the texts go as they are, the configured timeout applies, no policy.
    check_prepare(
        &["diskfree", "usage", "mount=/", "n=3"],
        &[],
        Ok((json!({"mount": "/", "n": "3"}), 10, None)),
    );
    check_prepare(&["rpcutil", "reboot"], &[], Err("no action \"reboot\""));
    check_prepare(&["rpcutil", "get_fact"], &[], Err("input \"fact\" is required"));
    check_prepare(&["rpcutil", "get_fact", "fact=a b"], &[], Err("must match"));
    check_prepare(&["rpcutil", "ping", "extra=1"], &[], Err("has no input \"extra\""));
    check_prepare(&["rpcutil", "ping"], &["role"], Err("role"));
    check_prepare(&["RpcUtil", "ping"], &[], Err("is not an agent and action"));
    check_prepare(&["rpcutil", "ping-now"], &[], Err("is not an agent and action"));
}

/// Runs the real `baton` with a configuration whose broker cannot be reached (port 1).
fn baton_without_broker(args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("temp dir");
    write_private_psk(&dir.path().join("psk"));
    let config = dir.path().join("client.toml");
    let text = format!(
        "[broker]\nurls = [\"amqp://baton:baton@127.0.0.1:1/baton\"]\n[security]\nscheme = \"psk\"\npsk_file = {:?}\n",
        dir.path().join("psk"),
    );
    std::fs::write(&config, text).expect("config");
    std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("--config")
        .arg(&config)
        .args(args)
        .env_remove("BATON_LOG")
        .output()
        .expect("run baton")
}

/// `-vv` shows the debug logs (and the default does not), as plain text without escape codes
/// when stderr is not a terminal. Regression: the CLI coloured its log lines into files and CI logs.
#[test]
fn dash_vv_shows_debug_logs_in_plain_text() {
    let loud = baton_without_broker(&["-vv", "rpc", "rpcutil", "ping"]);
    let stderr = String::from_utf8_lossy(&loud.stderr);
    assert!(stderr.contains("DEBUG"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "escape codes in a log that is not a terminal: {stderr:?}");
    let quiet = baton_without_broker(&["rpc", "rpcutil", "ping"]);
    let stderr = String::from_utf8_lossy(&quiet.stderr);
    assert!(!stderr.contains("DEBUG"), "{stderr}");
    assert!(stderr.contains("cannot reach any broker"), "{stderr}");
}

/// The validation stage checks every flag before connecting: with no broker to reach, each of
/// these is still a usage error (exit 2) that names the mistake, never a broker error (exit 5).
/// Regression: the discovery flags used to be checked only after connecting, so with the broker
/// down these exited 5 ("cannot reach broker") instead of naming the mistake.
#[test]
fn every_flag_is_checked_before_connecting() {
    let cases: &[(&[&str], &str)] = &[
        (&["rpc", "rpcutil", "ping", "--dm", "flatfile"], "--dm flatfile needs --nodes FILE"),
        (&["rpc", "rpcutil", "ping", "--dm", "stdin", "-F", "role=web"], "filters cannot be combined"),
        (&["rpc", "rpcutil", "ping", "--only", "failed"], "--only picks from the results"),
        (&["rpc", "rpcutil", "ping", "--dt=-1"], "not a number of seconds"),
        (&["rpc", "rpcutil", "ping", "-t", "0"], "not a number of seconds"),
        (&["rpc", "rpcutil", "ping", "--batch", "0"], "--batch must be at least 1"),
        (&["rpc", "rpcutil", "ping", "--limit", "0%"], "--limit must be at least 1"),
        (&["rpc", "rpcutil", "ping", "--reply-to", "later", "--batch", "2"], "--reply-to cannot be combined"),
        (&["rpc", "rpcutil", "get_fact", "fact=a b"], "must match"),
        (&["rpc", "rpcutil", "ping", "-S", "role=web and ("], "("),
        // Regression: `>>` was read as `>` and the value `>1`, matching nothing, silently.
        (&["rpc", "rpcutil", "ping", "-F", "rack>>1"], r#"unknown operator ">>" at column 5"#),
        (&["discover", "--dm", "flatfile"], "--dm flatfile needs --nodes FILE"),
        (&["facts", "role", "--nodes", "hosts.txt", "-C", "nginx"], "filters cannot be combined"),
        (&["agents", "--only", "ok"], "--only picks from the results"),
    ];
    for (args, fragment) in cases {
        let output = baton_without_broker(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(fragment), "{args:?}: stderr should mention {fragment:?}: {stderr}");
    }
}

/// A PSK file as an operator must keep it: mode 600, or the client refuses it (file trust).
fn write_private_psk(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, "a-test-key-that-is-long-enough-to-be-accepted").expect("psk");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod psk");
}

/// Runs the real `baton` with `args`, no configuration file and `BATON_CONFIG` as given.
fn baton_plain(args: &[&str], baton_config: Option<&str>) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_baton"));
    command.args(args).env_remove("BATON_LOG").env_remove("BATON_CONFIG");
    if let Some(value) = baton_config {
        command.env("BATON_CONFIG", value);
    }
    command.output().expect("run baton")
}

/// Regression: `keygen --name user=op` wrote `user-op.key` while `baton console --user-keys`
/// looked for `user=op.key` (and told the user to run that same keygen); and `--dir` had to
/// exist. One naming now, the key's name as it is, and the directory is made.
#[test]
fn keygen_names_the_files_after_the_key_and_makes_the_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = dir.path().join("not").join("yet");
    let output = baton_plain(&["keygen", "--name", "user=op", "--dir", keys.to_str().expect("utf-8")], None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout} {}", String::from_utf8_lossy(&output.stderr));
    let (private, public) = baton::security::ed25519::key_pair_paths(&keys, "user=op");
    assert_eq!(private, keys.join("user=op.key"));
    assert_eq!(public, keys.join("user=op.pub"));
    assert!(private.is_file() && public.is_file(), "{stdout}");
    assert!(stdout.contains(&format!("private key  {}", private.display())), "{stdout}");
    // The key loads under its name, as the console loads a user's key from --user-keys.
    let loaded = baton::security::Ed25519::load(&private, &keys).expect("the written key loads");
    assert_eq!(loaded.key_id(), "user=op");
}

/// Regression: an empty `BATON_CONFIG` said "a value is required for '--config'"; it now
/// means no file, as an unset one does (the default files are searched).
#[test]
fn an_empty_baton_config_means_no_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["discover"])
        .env_remove("BATON_LOG")
        .env("BATON_CONFIG", "")
        .env("XDG_CONFIG_HOME", dir.path())
        .env("HOME", dir.path())
        .output()
        .expect("run baton");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("a value is required"), "{stderr}");
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("missing \"broker.urls\""), "{stderr}");
}

/// Regression: a missing configuration file's error was printed twice in one line ("No such
/// file or directory ... : No such file or directory").
#[test]
fn a_missing_configuration_file_is_reported_once() {
    let output = baton_plain(&["ping"], Some("/nonexistent/baton/client.toml"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot read configuration file /nonexistent/baton/client.toml"), "{stderr}");
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");
}

/// Regression: `baton doc ./definition.json` broadcast a lookup for an agent of that name.
/// A path is read and checked as a node would load it, with no configuration or broker.
#[test]
fn doc_reads_a_definition_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hello = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/agents/hello");
    let file = hello.join("definition.json");
    for argument in [file.to_str().expect("utf-8"), hello.to_str().expect("utf-8")] {
        let output = baton_plain(&["doc", argument], Some("/nonexistent/client.toml"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{argument}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.starts_with("hello - Greets people"), "{stdout}");
        assert!(stdout.contains("greet"), "{stdout}");
    }
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, r#"{"metadata": {"name": "x"}}"#).expect("write");
    let output = baton_plain(&["doc", broken.to_str().expect("utf-8")], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&broken.display().to_string()), "the error names the file: {stderr}");
}
