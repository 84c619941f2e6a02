//! Configuration loading: defaults, every documented key, environment overrides, and the exact
//! text of each kind of error (which must name the key and the file or variable).

use std::path::{Path, PathBuf};

use baton::broker::{StompDialect, Transport, redact};
use baton::config::{
    ConfigError, ConfigLoader, DialectKind, LogFormat, NodeConfig, SchemeKind, TransportKind,
    UnconfiguredPolicy,
};

/// A node file with just what is required.
const MINIMAL: &str = r#"
[broker]
urls = ["amqp://node:secret@mq1:5672/baton"]
[security]
psk_file = "/etc/baton/psk"
"#;

/// Writes `toml` as `node.toml` in a fresh directory and loads it with `env` as the whole
/// environment (so the test never sees the real one).
fn load_node(toml: &str, env: &[(&str, &str)]) -> (Result<NodeConfig, ConfigError>, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory can be created");
    let path = dir.path().join("node.toml");
    std::fs::write(&path, toml).expect("the temporary directory is writable");
    let result = ConfigLoader::new(Some(&path)).with_env(env.iter().copied()).node();
    // Keep the path for messages; the directory itself may go.
    (result, path)
}

fn node(toml: &str, env: &[(&str, &str)]) -> NodeConfig {
    match load_node(toml, env).0 {
        Ok(config) => config,
        Err(error) => panic!("expected the configuration to load, got: {error}"),
    }
}

/// Loads `toml` with `env` and checks the error text; `{file}` in `expected` stands for the
/// configuration file's path.
fn check_node_error(toml: &str, env: &[(&str, &str)], expected: &str) {
    let (result, path) = load_node(toml, env);
    let expected = expected.replace("{file}", &path.display().to_string());
    match result {
        Ok(config) => panic!("expected error {expected:?}, but it loaded: {config:?}"),
        Err(error) => assert_eq!(error.to_string(), expected, "for:\n{toml}"),
    }
}

#[test]
fn node_defaults() {
    let config = node(MINIMAL, &[]);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .expect("this test runs on Linux");
    assert_eq!(config.identity, host);
    assert_eq!(config.collectives, ["baton"]);
    assert_eq!(config.main_collective(), "baton");
    assert_eq!(config.broker.transport(), TransportKind::Amqp);
    assert_eq!(config.broker.transport, None);
    assert_eq!(config.broker.dialect, None);
    assert_eq!(config.broker.connect_timeout_secs, 5);
    assert_eq!(config.broker.max_backoff_secs, 30);
    assert_eq!(config.broker.max_message_bytes, 1024 * 1024);
    assert_eq!(config.broker.node_queue_expiry_secs, 7 * 24 * 3600);
    assert_eq!(config.tls, Default::default());
    assert_eq!(config.security.scheme, SchemeKind::Psk);
    assert_eq!(config.security.clock_skew_secs, 60);
    assert_eq!(config.security.replay_window, 100_000);
    assert!(config.facts.files.is_empty());
    assert_eq!(config.facts.classes_file, None);
    assert_eq!(config.facts.poll_interval_secs, 5);
    assert_eq!(config.agents.dir, Path::new("/usr/lib/baton/agents"));
    assert_eq!(config.agents.max_concurrency, 16);
    assert_eq!(config.authorization.policy_dir, None);
    assert_eq!(config.authorization.unconfigured, UnconfiguredPolicy::Allow);
    assert_eq!(config.audit.file, None);
    assert_eq!(config.registration.interval_secs, 300);
    assert_eq!(config.log.format, LogFormat::Text);
    assert_eq!(config.log.level, "info");
}

#[test]
fn node_every_key() {
    let config = node(
        r#"
identity = "web01"
collectives = ["baton", "dc1"]
[broker]
transport = "stomp"
urls = ["stomp+ssl://node:secret@mq1:61614", "stomp://mq2:61613"]
dialect = "rabbitmq"
connect_timeout_secs = 7
max_backoff_secs = 60
max_message_bytes = 2048
node_queue_expiry_secs = 3600
[tls]
ca = "/etc/baton/ca.pem"
cert = "/etc/baton/node.pem"
key = "/etc/baton/node.key"
server_name = "mq.example.com"
[security]
scheme = "ed25519"
key_file = "/etc/baton/node.ed25519"
trusted_keys_dir = "/etc/baton/callers"
clock_skew_secs = 30
replay_window = 500
[facts]
files = ["/etc/baton/facts.yaml", "/etc/baton/more.json"]
classes_file = "/var/lib/puppet/state/classes.txt"
poll_interval_secs = 2
[agents]
dir = "/opt/agents"
max_concurrency = 4
[audit]
file = "/var/log/baton/audit.log"
[registration]
interval_secs = 0
[log]
format = "json"
level = "baton=debug,lapin=warn"
"#,
        &[],
    );
    assert_eq!(config.identity, "web01");
    assert_eq!(config.collectives, ["baton", "dc1"]);
    assert_eq!(config.main_collective(), "baton");
    assert_eq!(config.broker.transport, Some(TransportKind::Stomp));
    assert_eq!(config.broker.urls.len(), 2);
    assert_eq!(config.broker.dialect, Some(DialectKind::RabbitMq));
    assert_eq!(config.broker.connect_timeout_secs, 7);
    assert_eq!(config.broker.max_backoff_secs, 60);
    assert_eq!(config.broker.max_message_bytes, 2048);
    assert_eq!(config.broker.node_queue_expiry_secs, 3600);
    assert_eq!(config.tls.ca.as_deref(), Some(Path::new("/etc/baton/ca.pem")));
    assert_eq!(config.tls.cert.as_deref(), Some(Path::new("/etc/baton/node.pem")));
    assert_eq!(config.tls.key.as_deref(), Some(Path::new("/etc/baton/node.key")));
    assert_eq!(config.tls.server_name.as_deref(), Some("mq.example.com"));
    assert_eq!(config.security.scheme, SchemeKind::Ed25519);
    assert_eq!(config.security.psk_file, None);
    assert_eq!(config.security.key_file.as_deref(), Some(Path::new("/etc/baton/node.ed25519")));
    assert_eq!(config.security.trusted_keys_dir.as_deref(), Some(Path::new("/etc/baton/callers")));
    assert_eq!(config.security.clock_skew_secs, 30);
    assert_eq!(config.security.replay_window, 500);
    assert_eq!(config.facts.files.len(), 2);
    assert_eq!(config.facts.classes_file.as_deref(), Some(Path::new("/var/lib/puppet/state/classes.txt")));
    assert_eq!(config.facts.poll_interval_secs, 2);
    assert_eq!(config.agents.dir, Path::new("/opt/agents"));
    assert_eq!(config.agents.max_concurrency, 4);
    assert_eq!(config.audit.file.as_deref(), Some(Path::new("/var/log/baton/audit.log")));
    assert_eq!(config.registration.interval_secs, 0);
    assert_eq!(config.log.format, LogFormat::Json);
    assert_eq!(config.log.level, "baton=debug,lapin=warn");

    let settings = config.broker_settings(None, "batond web01".to_owned());
    assert_eq!(settings.transport, Transport::Stomp);
    assert_eq!(settings.dialect, StompDialect::RabbitMq);
    assert_eq!(settings.urls, config.broker.urls);
    assert_eq!(settings.tls_server_name.as_deref(), Some("mq.example.com"));
    assert_eq!(settings.connection_name, "batond web01");
    assert_eq!(settings.connect_timeout.as_secs(), 7);
    assert_eq!(settings.max_backoff.as_secs(), 60);
    assert_eq!(settings.max_message_bytes, 2048);
    assert_eq!(settings.node_queue_expiry.as_secs(), 3600);
}

#[test]
fn transport_follows_url_scheme_when_not_set() {
    let config = node("[broker]\nurls = [\"stomp://mq1:61613\"]\n[security]\npsk_file = \"/p\"\n", &[]);
    assert_eq!(config.broker.transport(), TransportKind::Stomp);
    let settings = config.broker_settings(None, String::new());
    assert_eq!(settings.transport, Transport::Stomp);
    assert_eq!(settings.dialect, StompDialect::ActiveMq);
}

#[test]
fn node_errors() {
    let urls = "[broker]\nurls = [\"amqp://mq1/baton\"]\n";
    let psk = "[security]\npsk_file = \"/p\"\n";
    let cases: &[(&str, &str)] = &[
        (
            "brokr = 1\n",
            r#"unknown key "brokr" in {file} (known keys: identity, collectives, broker, tls, security, facts, agents, authorization, audit, registration, log, requests, metrics)"#,
        ),
        (
            "[broker]\nurlz = [\"amqp://mq1\"]\n",
            r#"unknown key "broker.urlz" in {file} (known keys: transport, urls, dialect, connect_timeout_secs, max_backoff_secs, max_message_bytes, node_queue_expiry_secs)"#,
        ),
        (
            "[agents.puppet]\nmanifesto = \"/x.pp\"\n",
            r#"unknown key "agents.puppet.manifesto" in {file} (known keys: command, extra_args, manifest)"#,
        ),
        (
            "[broker]\ntransport = \"amqq\"\n",
            r#"invalid value for "broker.transport" in {file}: expected "amqp" or "stomp", found "amqq""#,
        ),
        (
            "[log]\nformat = \"xml\"\n",
            r#"invalid value for "log.format" in {file}: expected "text" or "json", found "xml""#,
        ),
        (
            "[broker]\nconnect_timeout_secs = \"soon\"\n",
            r#"invalid value for "broker.connect_timeout_secs" in {file}: expected a non-negative integer, found "soon""#,
        ),
        (
            "[broker]\nmax_backoff_secs = -1\n",
            r#"invalid value for "broker.max_backoff_secs" in {file}: expected a non-negative integer, found -1"#,
        ),
        (
            "[broker]\nurls = 5\n",
            r#"invalid value for "broker.urls" in {file}: expected a string or a list of strings, found 5"#,
        ),
        (
            "broker = \"amqp://mq1\"\n",
            r#"invalid value for "broker" in {file}: expected a table, found "amqp://mq1""#,
        ),
        (
            "identity = \"a\"\n[broker\nurls = 1\n",
            "syntax error in {file}, line 2, column 8: unclosed table, expected `]`",
        ),
        (
            "[security]\npsk_file = \"/p\"\n",
            r#"missing "broker.urls": set it in {file} or BATON_BROKER__URLS"#,
        ),
        ("[broker]\nurls = []\n", r#"missing "broker.urls": set it in {file} or BATON_BROKER__URLS"#),
        (
            "[broker]\nurls = [\"amqp://mq1/baton\"]\n[security]\npsk_file = \"/p\"\n[requests]\nmax_ttl_secs = 86401\n",
            r#"invalid value for "requests.max_ttl_secs" in {file}: 86401 is not between 1 and 86400 seconds (the protocol's longest ttl)"#,
        ),
        (urls, r#"missing "security.psk_file": set it in {file} or BATON_SECURITY__PSK_FILE"#),
        (
            "[broker]\nurls = [\"stomp://mq1\"]\ntransport = \"amqp\"\n",
            r#"invalid value for "broker.urls" in {file}: "stomp://mq1" is a stomp URL but broker.transport is "amqp" (change the URL scheme or broker.transport)"#,
        ),
        (
            "[broker]\nurls = [\"amqp://mq1\", \"stomp://mq2\"]\n",
            r#"invalid value for "broker.urls" in {file}: "stomp://mq2" uses a different transport than "amqp://mq1": all URLs must be AMQP (amqp://, amqps://) or all STOMP (stomp://, stomp+ssl://)"#,
        ),
        (
            "[broker]\nurls = [\"http://u:pw@mq1\"]\n",
            r#"invalid value for "broker.urls" in {file}: "http://u:***@mq1" has scheme "http": expected one of "amqp", "amqps", "stomp", "stomp+ssl""#,
        ),
        (
            "[broker]\nurls = [\"mq1:5672\"]\n",
            r#"invalid value for "broker.urls" in {file}: "mq1:5672" is not a URL: expected scheme://host, e.g. amqps://mq1:5671/baton"#,
        ),
        (
            "[broker]\nurls = [\"amqp:///baton\"]\n",
            r#"invalid value for "broker.urls" in {file}: "amqp:///baton" names no host"#,
        ),
    ];
    for (toml, expected) in cases {
        check_node_error(toml, &[], expected);
    }

    let with_required = |extra: &str| format!("{urls}{psk}{extra}");
    let rule_cases: &[(&str, &str)] = &[
        (
            "[tls]\ncert = \"/c.pem\"\n",
            r#"invalid value for "tls.cert" in {file}: tls.cert is set but tls.key is not: a client certificate needs its key (set both or neither)"#,
        ),
        (
            "[tls]\nkey = \"/c.key\"\n",
            r#"invalid value for "tls.key" in {file}: tls.key is set but tls.cert is not: set both or neither"#,
        ),
        (
            "collectives = []\n",
            r#"invalid value for "collectives" in {file}: expected at least one collective, found an empty list (the first is the main collective)"#,
        ),
        (
            "collectives = [\"baton\", \"DC1\"]\n",
            r#"invalid value for "collectives" in {file}: collective "DC1" must be lowercase letters, digits, '_' or '-' (it is part of exchange and queue names)"#,
        ),
        (
            "collectives = [\"baton\", \"baton\"]\n",
            r#"invalid value for "collectives" in {file}: collective "baton" is listed twice"#,
        ),
        (
            "identity = \"web 01\"\n",
            r#"invalid value for "identity" in {file}: "web 01" is not a usable node identity: use letters, digits, '.', '-' and '_' (it becomes part of queue names)"#,
        ),
        (
            "[agents]\nmax_concurrency = 0\n",
            r#"invalid value for "agents.max_concurrency" in {file}: expected at least 1, found 0"#,
        ),
        (
            "[security]\nscheme = \"ed25519\"\nkey_file = \"/k\"\n",
            r#"missing "security.trusted_keys_dir": set it in {file} or BATON_SECURITY__TRUSTED_KEYS_DIR"#,
        ),
    ];
    for (extra, expected) in rule_cases {
        // Tables may not be repeated in TOML, so the extra keys go in through their own
        // table only where the base has none; security cases replace the base's table.
        let toml = if extra.starts_with("[security]") {
            format!("{urls}{extra}")
        } else if extra.starts_with('[') {
            with_required(extra)
        } else {
            format!("{extra}{urls}{psk}")
        };
        check_node_error(&toml, &[], expected);
    }
}

#[test]
fn dialect_with_amqp_is_an_error() {
    check_node_error(
        "[broker]\nurls = [\"amqp://mq1\"]\ndialect = \"activemq\"\n[security]\npsk_file = \"/p\"\n",
        &[],
        r#"invalid value for "broker.dialect" in {file}: a dialect applies to STOMP only; remove it or use stomp:// URLs"#,
    );
}

#[test]
fn environment_overrides_nested_keys() {
    let config = node(
        MINIMAL,
        &[
            ("BATON_BROKER__URLS", r#"["amqps://mq9:5671/baton", "amqps://mq8:5671/baton"]"#),
            ("BATON_SECURITY__PSK_FILE", "/run/psk"),
            ("BATON_IDENTITY", "1234"),
            ("BATON_COLLECTIVES", r#"["baton", "dc2"]"#),
            ("BATON_AGENTS__MAX_CONCURRENCY", "3"),
        ],
    );
    assert_eq!(config.broker.urls, ["amqps://mq9:5671/baton", "amqps://mq8:5671/baton"]);
    assert_eq!(config.security.psk_file.as_deref(), Some(Path::new("/run/psk")));
    // A numeric-looking identity arrives as a number from the environment and still loads.
    assert_eq!(config.identity, "1234");
    assert_eq!(config.collectives, ["baton", "dc2"]);
    assert_eq!(config.agents.max_concurrency, 3);
    assert_eq!(config.provenance().origin("broker.urls"), "environment variable BATON_BROKER__URLS");
}

#[test]
fn a_single_url_needs_no_brackets_in_the_environment() {
    let config = node(MINIMAL, &[("BATON_BROKER__URLS", "amqp://mq7/baton")]);
    assert_eq!(config.broker.urls, ["amqp://mq7/baton"]);
}

#[test]
fn provenance_names_the_file_for_file_values() {
    let (result, path) = load_node(MINIMAL, &[]);
    let config = result.expect("the minimal configuration loads");
    assert_eq!(config.provenance().origin("security.psk_file"), path.display().to_string());
    assert_eq!(config.provenance().origin("identity"), "built-in defaults");
}

#[test]
fn environment_errors_name_the_variable() {
    check_node_error(
        MINIMAL,
        &[("BATON_BROKER__CONNECT_TIMEOUT_SECS", "soon")],
        r#"invalid value for "broker.connect_timeout_secs" in environment variable BATON_BROKER__CONNECT_TIMEOUT_SECS: expected a non-negative integer, found "soon""#,
    );
    check_node_error(
        MINIMAL,
        &[("BATON_BROKER__URLZ", "amqp://mq1")],
        r#"unknown key "broker.urlz" in environment variable BATON_BROKER__URLZ (known keys: transport, urls, dialect, connect_timeout_secs, max_backoff_secs, max_message_bytes, node_queue_expiry_secs)"#,
    );
    check_node_error(
        MINIMAL,
        &[("BATON_BROKER__URLS", "[\"ftp://mq1\"]")],
        r#"invalid value for "broker.urls" in environment variable BATON_BROKER__URLS: "ftp://mq1" has scheme "ftp": expected one of "amqp", "amqps", "stomp", "stomp+ssl""#,
    );
}

/// Regression guard: our scripts export BATON_* variables that are not configuration keys;
/// reading them would make every load fail on "unknown key".
#[test]
fn unrelated_baton_variables_are_ignored() {
    let config = node(
        MINIMAL,
        &[
            ("BATON_RABBITMQ_NODE_URL", "amqp://x"),
            ("BATON_TLS_CA", "/tmp/ca.pem"),
            ("BATON_STATE_DIR", "/tmp/state"),
            ("BATON_BROKER", "weird"),
            ("BATON_", "empty"),
            ("BATON_BROKER__", "empty key"),
            ("PATH", "/usr/bin"),
        ],
    );
    assert_eq!(config.tls.ca, None);
    assert_eq!(config.broker.urls, ["amqp://node:secret@mq1:5672/baton"]);
}

#[test]
fn environment_alone_is_enough() {
    // No --config: the default file does not exist on a test machine (or the test would be
    // reading it), so this also shows a missing default file is fine.
    let config = ConfigLoader::new(None)
        .with_env([
            ("BATON_BROKER__URLS", "amqp://mq1/baton"),
            ("BATON_SECURITY__PSK_FILE", "/p"),
            ("BATON_IDENTITY", "envnode"),
        ])
        .node();
    match config {
        Ok(config) => assert_eq!(config.identity, "envnode"),
        // A machine with a real /etc/baton/node.toml may have keys we cannot predict.
        Err(error) if Path::new("/etc/baton/node.toml").exists() => {
            eprintln!("skipped: /etc/baton/node.toml exists: {error}");
        }
        Err(error) => panic!("expected the environment to suffice, got: {error}"),
    }
}

#[test]
fn missing_explicit_file_is_named() {
    let dir = tempfile::tempdir().expect("a temporary directory can be created");
    let path = dir.path().join("nope.toml");
    let error = ConfigLoader::new(Some(&path))
        .with_env(Vec::<(String, String)>::new())
        .node()
        .expect_err("a missing --config file is an error");
    assert_eq!(
        error.to_string(),
        format!(
            "cannot read configuration file {}: No such file or directory (os error 2) (check the path and its permissions)",
            path.display()
        )
    );
}

#[test]
fn flags_override_file_and_environment() {
    let dir = tempfile::tempdir().expect("a temporary directory can be created");
    let path = dir.path().join("node.toml");
    std::fs::write(&path, MINIMAL).expect("the temporary directory is writable");
    let loader = ConfigLoader::new(Some(&path)).with_env([("BATON_IDENTITY", "fromenv")]);
    let config = loader
        .clone()
        .set("identity", "fromflag")
        .set("broker.connect_timeout_secs", 9u64)
        .node()
        .expect("overrides are valid");
    assert_eq!(config.identity, "fromflag");
    assert_eq!(config.broker.connect_timeout_secs, 9);
    assert_eq!(config.provenance().origin("identity"), "command-line flags");

    let error =
        loader.set("broker.transport", "carrier-pigeon").node().expect_err("a bad flag value is an error");
    assert_eq!(
        error.to_string(),
        r#"invalid value for "broker.transport" in command-line flags: expected "amqp" or "stomp", found "carrier-pigeon""#
    );
}

#[test]
fn validate_after_changing_fields() {
    let mut config = node(MINIMAL, &[]);
    config.collectives.clear();
    let error = config.validate().expect_err("no collectives is invalid");
    assert_eq!(error.key(), Some("collectives"));
}

/// Through the real process environment, set safely by figment's Jail.
#[test]
// Jail's closure must return figment's own (large) error type; not our choice.
#[allow(clippy::result_large_err)]
fn process_environment_is_read() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("node.toml", MINIMAL)?;
        jail.set_env("BATON_BROKER__URLS", r#"["amqp://jailed/baton"]"#);
        jail.set_env("BATON_TLS_CA", "/unrelated");
        let config = NodeConfig::load(Some(Path::new("node.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(config.broker.urls, ["amqp://jailed/baton"]);
        Ok(())
    });
}

const CLIENT_MINIMAL: &str = r#"
[broker]
urls = ["amqp://client:secret@mq1/baton"]
[security]
psk_file = "/etc/baton/psk"
"#;

#[test]
fn client_defaults_and_search_order() {
    let dir = tempfile::tempdir().expect("a temporary directory can be created");
    let xdg = dir.path().join("xdg");
    let home = dir.path().join("home");
    std::fs::create_dir_all(xdg.join("baton")).expect("the temporary directory is writable");
    std::fs::create_dir_all(home.join(".config/baton")).expect("the temporary directory is writable");
    std::fs::write(xdg.join("baton/client.toml"), CLIENT_MINIMAL).expect("writable");
    std::fs::write(
        home.join(".config/baton/client.toml"),
        format!("collective = \"fromhome\"\n{CLIENT_MINIMAL}"),
    )
    .expect("writable");
    let host = baton::config::host_name().unwrap_or_else(|| "localhost".to_owned());

    let loader = ConfigLoader::new(None).with_env([
        ("XDG_CONFIG_HOME", xdg.to_str().expect("temporary paths are UTF-8")),
        ("HOME", home.to_str().expect("temporary paths are UTF-8")),
        ("USER", "alice"),
    ]);
    assert_eq!(
        loader.client_candidates(),
        [xdg.join("baton/client.toml"), PathBuf::from("/etc/baton/client.toml")]
    );
    let config = loader.client().expect("the XDG file loads");
    assert_eq!(config.identity, format!("alice@{host}"));
    assert_eq!(config.caller, "user=alice");
    assert_eq!(config.collective, "baton");
    assert_eq!(config.timeout_secs, 10);
    assert_eq!(config.discovery_timeout_secs, 2);
    assert_eq!(config.ttl_secs, 60);
    assert_eq!(config.confirm_above, 10);
    assert_eq!(config.broker.urls, ["amqp://client:secret@mq1/baton"]);

    // Without XDG_CONFIG_HOME, ~/.config is used.
    let config = ConfigLoader::new(None)
        .with_env([("HOME", home.to_str().expect("temporary paths are UTF-8")), ("USER", "bob")])
        .client()
        .expect("the HOME file loads");
    assert_eq!(config.collective, "fromhome");
    assert_eq!(config.caller, "user=bob");
}

#[test]
fn client_every_key_and_errors() {
    let dir = tempfile::tempdir().expect("a temporary directory can be created");
    let path = dir.path().join("client.toml");
    std::fs::write(
        &path,
        format!(
            "identity = \"ci@builder\"\ncaller = \"cert=ci\"\ncollective = \"dc1\"\n\
             timeout_secs = 30\ndiscovery_timeout_secs = 5\nttl_secs = 120\nrequest_records_days = 3\n\
             confirm_above = 50\nregistry_window_secs = 70\nregistry_grace_ms = 250\n{CLIENT_MINIMAL}"
        ),
    )
    .expect("writable");
    let config = ConfigLoader::new(Some(&path))
        .with_env([("BATON_TTL_SECS", "90")])
        .client()
        .expect("every client key loads");
    assert_eq!(config.identity, "ci@builder");
    assert_eq!(config.caller, "cert=ci");
    assert_eq!(config.collective, "dc1");
    assert_eq!(config.timeout_secs, 30);
    assert_eq!(config.discovery_timeout_secs, 5);
    assert_eq!(config.ttl_secs, 90);
    assert_eq!(config.request_records_days, 3);
    assert_eq!(config.confirm_above, 50);
    assert_eq!(config.registry_window_secs, 70);
    assert_eq!(config.registry_grace_ms, 250);
    let settings = config.broker_settings(None, "baton ci".to_owned());
    assert_eq!(settings.transport, Transport::Amqp);

    std::fs::write(&path, format!("colective = \"dc1\"\n{CLIENT_MINIMAL}")).expect("writable");
    let error = ConfigLoader::new(Some(&path))
        .with_env([("BATON_STATE_DIR", "/x")])
        .client()
        .expect_err("a typo is an error");
    assert_eq!(
        error.to_string(),
        format!(
            r#"unknown key "colective" in {} (known keys: identity, caller, collective, broker, tls, security, timeout_secs, discovery_timeout_secs, ttl_secs, registry_window_secs, registry_grace_ms, definitions_dir, request_records_days, confirm_above)"#,
            path.display()
        )
    );
}

#[test]
fn passwords_are_redacted() {
    let cases = [
        ("amqps://node:secret@mq1:5671/baton", "amqps://node:***@mq1:5671/baton"),
        ("amqp://node@mq1/baton", "amqp://node@mq1/baton"),
        ("stomp://mq1:61613", "stomp://mq1:61613"),
        ("amqp://u:p@ss@mq1/x?y=z@w", "amqp://u:***@mq1/x?y=z@w"),
        ("not a url", "not a url"),
    ];
    for (url, expected) in cases {
        assert_eq!(redact(url), expected, "for {url}");
    }
}

/// The shipped examples load as they are, and with every commented-out key switched on (except
/// `dialect`, which is STOMP-only while the examples use AMQP): the comments stay true.
#[test]
fn deploy_examples_load() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples");
    let uncommented = |text: &str| -> String {
        text.lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.contains(" = ")
                        && rest.starts_with(|c: char| c.is_ascii_lowercase())
                        && !rest.starts_with("dialect") =>
                {
                    rest
                }
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let dir = tempfile::tempdir().expect("a temporary directory can be created");
    for name in ["node.toml", "client.toml"] {
        let text = std::fs::read_to_string(examples.join(name)).expect("the example exists");
        for (variant, body) in [("as shipped", text.clone()), ("uncommented", uncommented(&text))] {
            let path = dir.path().join(name);
            std::fs::write(&path, &body).expect("writable");
            let loader = ConfigLoader::new(Some(&path)).with_env([("USER", "alice")]);
            let result =
                if name == "node.toml" { loader.node().map(|_| ()) } else { loader.client().map(|_| ()) };
            if let Err(error) = result {
                panic!("{name} ({variant}) does not load: {error}\n{body}");
            }
        }
    }
    let node = NodeConfig::load(Some(&examples.join("node.toml"))).expect("the example loads");
    assert_eq!(node.identity, "web01");
    assert_eq!(node.broker.urls.len(), 2);
}

/// Authorization settings are enforced now (node/policy.rs), so they load; they were refused
/// while nothing enforced them.
#[test]
fn authorization_settings_load() {
    let base = "identity = \"n1\"\n[broker]\nurls = [\"amqp://mq/baton\"]\n[security]\npsk_file = \"/k\"\n";
    let toml = "[authorization]\npolicy_dir = \"/etc/baton/policy\"\nunconfigured = \"deny\"\n";
    let (result, _path) = load_node(&format!("{base}{toml}"), &[]);
    let node = result.expect("authorization settings load");
    assert_eq!(node.authorization.policy_dir.as_deref(), Some(std::path::Path::new("/etc/baton/policy")));
    assert_eq!(node.authorization.unconfigured, baton::config::UnconfiguredPolicy::Deny);
}

/// Runs the real `batond --check` on a node configuration of `extra` lines beside a working
/// identity, broker URL (never contacted) and PSK.
fn batond_check(dir: &Path, extra: &str) -> (Option<i32>, String, String) {
    use std::os::unix::fs::PermissionsExt;
    let psk = dir.join("psk");
    std::fs::write(&psk, "a-test-key-that-is-long-enough-to-be-accepted").expect("psk");
    std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).expect("chmod psk");
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "identity = \"check01\"\n{extra}\n[broker]\nurls = [\"amqp://n:n@127.0.0.1:1/baton\"]\n[security]\nscheme = \"psk\"\npsk_file = {psk:?}\n"
        ),
    )
    .expect("config");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_batond"))
        .arg("--config")
        .arg(&config)
        .arg("--check")
        .env_remove("BATON_LOG")
        .output()
        .expect("run batond");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.code(), text(&output.stdout), text(&output.stderr))
}

/// Regression: `batond --check` said "configuration OK" with an invalid agent definition (the
/// daemon then ran without that agent), and never read the TLS files it claimed to check.
#[test]
fn batond_check_reads_agent_definitions_and_tls_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let agents = dir.path().join("agents");
    std::fs::create_dir_all(agents.join("typo")).expect("agent dir");
    std::fs::write(agents.join("typo").join("definition.json"), "{ \"metadata\": ").expect("definition");
    std::fs::write(agents.join("typo").join("agent"), "#!/bin/sh\n").expect("agent");
    let tables = format!("[agents]\ndir = {agents:?}\n");
    let (code, stdout, stderr) = batond_check(dir.path(), &tables);
    assert_eq!(code, Some(2), "{stdout} {stderr}");
    assert!(!stdout.contains("configuration OK"), "{stdout}");
    assert!(stderr.contains("typo"), "the error names the agent's files: {stderr}");

    std::fs::remove_dir_all(agents.join("typo")).expect("remove the bad agent");
    let (code, stdout, stderr) = batond_check(dir.path(), &tables);
    assert_eq!(code, Some(0), "{stdout} {stderr}");
    assert!(stdout.contains("configuration OK: node check01"), "{stdout}");

    // The URL is plain amqp://, yet a configured CA that does not exist is reported.
    let missing_ca = dir.path().join("no-such-ca.pem");
    let (code, stdout, stderr) = batond_check(dir.path(), &format!("[tls]\nca = {missing_ca:?}\n"));
    assert_eq!(code, Some(2), "{stdout} {stderr}");
    assert!(stderr.contains("no-such-ca.pem"), "{stderr}");
    let not_a_certificate = dir.path().join("psk");
    let (code, _, stderr) = batond_check(dir.path(), &format!("[tls]\nca = {not_a_certificate:?}\n"));
    assert_eq!(code, Some(2), "a PSK is no CA bundle: {stderr}");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let (code, stdout, stderr) =
        batond_check(dir.path(), &format!("[tls]\nca = {:?}\n", fixtures.join("ca.pem")));
    assert_eq!(code, Some(0), "a real CA passes: {stdout} {stderr}");
}
