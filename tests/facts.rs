//! Facts, classes, the node's filter view, change detection and the audit log, through the
//! public API and real files in a temporary directory.

use std::path::{Path, PathBuf};

use baton::node::audit::{AuditError, AuditLog, AuditRecord, Outcome};
use baton::node::facts::{Classes, FactSource, Facts, FactsError, NodeInventory, Warning};
use baton::protocol::filter::NodeView;
use baton::protocol::message::StatusCode;
use serde_json::{Value, json};

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().expect("a temporary directory can be created"))
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::write(&path, text).expect("the temporary directory is writable");
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

fn load(source: &FactSource) -> (Facts, Classes, Vec<Warning>) {
    match source.load() {
        Ok(loaded) => loaded,
        Err(error) => panic!("expected facts to load, got: {error}"),
    }
}

#[test]
fn fact_files_merge_in_order_over_builtins() {
    let dir = Dir::new();
    let yaml = dir.write(
        "facts.yaml",
        "role: web\nos:\n  family: Custom\nlocation:\n  dc: dc1\n  rack: r1\n\"literal.key\": true\n",
    );
    let json =
        dir.write("later.json", r#"{"role": "db", "location": {"rack": "r7"}, "list": [{"name": "eth0"}]}"#);
    let source = FactSource { files: vec![yaml, json], classes_file: None, facter: None };
    let (facts, classes, warnings) = load(&source);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(classes.as_slice().is_empty());

    let check = |key: &str, expected: Option<Value>| {
        assert_eq!(facts.lookup(key), expected.as_ref(), "fact {key}");
    };
    // Later file wins for scalars.
    check("role", Some(json!("db")));
    // Maps merge deeply: rack from the later file, dc kept from the earlier one.
    check("location.dc", Some(json!("dc1")));
    check("location.rack", Some(json!("r7")));
    // A fact file overrides one built-in key and leaves its siblings.
    check("os.family", Some(json!("Custom")));
    assert!(facts.lookup("os.name").is_some(), "os.name kept from the built-ins");
    // Literal dotted keys and array indices.
    check("literal.key", Some(json!(true)));
    check("list.0.name", Some(json!("eth0")));
    check("list.1.name", None);
    check("location.nope", None);
    check("role.deeper", None);
    // Built-ins are there.
    check("kernel", Some(json!("Linux")));
    check("baton_version", Some(json!(env!("CARGO_PKG_VERSION"))));
    for key in [
        "hostname",
        "fqdn",
        "os.release.full",
        "architecture",
        "hardwaremodel",
        "kernelrelease",
        "processors.count",
        "memory.system.total_bytes",
    ] {
        assert!(facts.lookup(key).is_some(), "built-in fact {key} is missing");
    }
}

#[test]
fn literal_dotted_key_wins_over_nested_walk() {
    let facts = Facts::from_map(
        json!({"a.b": "literal", "a": {"b": "nested", "c.d": "inner literal"}})
            .as_object()
            .expect("an object literal")
            .clone(),
    );
    let check = |key: &str, expected: Option<&str>| {
        assert_eq!(facts.lookup(key).and_then(Value::as_str), expected, "key {key}");
    };
    check("a.b", Some("literal"));
    check("a.c.d", Some("inner literal"));
    check("a.c", None);
    check("", None);
}

#[test]
fn broken_fact_files_name_the_file_and_line() {
    let dir = Dir::new();
    let check = |name: &str, text: &str, expected: &str| {
        let path = dir.write(name, text);
        let source = FactSource { files: vec![path.clone()], classes_file: None, facter: None };
        let error = source.load().expect_err("a broken fact file is an error");
        let expected = expected.replace("{file}", &path.display().to_string());
        assert_eq!(error.to_string(), expected, "for {name}");
    };
    check(
        "bad.yaml",
        "role: web\nlocation:\n  dc: dc1\n rack: [r1\n",
        "cannot parse fact file {file} at line 4, column 2: did not find expected key",
    );
    check(
        "bad.json",
        "{\n  \"role\": \"web\",\n  \"dc\": \n}\n",
        "cannot parse fact file {file} at line 4, column 1: expected value",
    );
    check(
        "list.yaml",
        "- a\n- b\n",
        "fact file {file} must hold a mapping of fact names to values at the top level, found a list",
    );
    check(
        "empty.yaml",
        "",
        "fact file {file} must hold a mapping of fact names to values at the top level, found nothing (is the file empty?)",
    );
}

#[test]
fn broken_yaml_error_carries_line_as_a_field() {
    let dir = Dir::new();
    let path = dir.write("facts.yaml", "ok: 1\nbad: [\n");
    let source = FactSource { files: vec![path.clone()], classes_file: None, facter: None };
    match source.load() {
        Err(FactsError::Parse { path: error_path, line, .. }) => {
            assert_eq!(error_path, path);
            assert!(line.is_some(), "the line is known");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn classes_file_parsing() {
    let check = |text: &str, expected: &[&str]| {
        assert_eq!(Classes::parse(text).as_slice(), expected, "for {text:?}");
    };
    check("", &[]);
    check("\n\n  \n", &[]);
    check("settings\nbaton\n", &["baton", "settings"]);
    check("  role::web  \r\n\tprofile::base\n\nrole::web\n", &["profile::base", "role::web"]);

    let dir = Dir::new();
    let classes_file = dir.write("classes.txt", "settings\nrole::web\n");
    let (_, classes, warnings) =
        load(&FactSource { files: vec![], classes_file: Some(classes_file), facter: None });
    assert!(warnings.is_empty());
    assert!(classes.contains("role::web"));
    assert!(!classes.contains("role::db"));
}

#[test]
fn missing_files_are_warnings() {
    let dir = Dir::new();
    let classes_file = dir.path("no-classes.txt");
    let fact_file = dir.path("no-facts.yaml");
    let (facts, classes, warnings) = load(&FactSource {
        files: vec![fact_file.clone()],
        classes_file: Some(classes_file.clone()),
        facter: None,
    });
    assert!(classes.as_slice().is_empty());
    assert!(facts.lookup("kernel").is_some(), "built-ins still load");
    assert_eq!(
        warnings,
        [
            Warning::MissingFactFile { path: fact_file },
            Warning::MissingClassesFile { path: classes_file.clone() }
        ]
    );
    assert_eq!(
        warnings[1].to_string(),
        format!(
            "classes file {} does not exist: this node has no classes until it appears (check facts.classes_file)",
            classes_file.display()
        )
    );
}

#[test]
fn change_detection() {
    let dir = Dir::new();
    let facts_file = dir.write("facts.yaml", "role: web\n");
    let classes_file = dir.path("classes.txt");
    let source = FactSource {
        files: vec![facts_file.clone()],
        classes_file: Some(classes_file.clone()),
        facter: None,
    };
    let stamp = source.stamp();
    assert!(!source.changed_since(&stamp), "nothing changed yet");

    // Rewritten with a different size.
    std::fs::write(&facts_file, "role: database\n").expect("writable");
    assert!(source.changed_since(&stamp));
    let stamp = source.stamp();

    // Replaced by rename with the same size and content length (a new inode).
    let replacement = dir.write("facts.yaml.new", "role: dbase\n");
    std::fs::write(&facts_file, "role: webxy\n").expect("writable");
    let stamp_same_size = source.stamp();
    std::fs::rename(&replacement, &facts_file).expect("rename within a directory");
    assert!(source.changed_since(&stamp_same_size));
    assert!(source.changed_since(&stamp));

    // A file appearing counts, and so does one disappearing.
    let stamp = source.stamp();
    std::fs::write(&classes_file, "baton\n").expect("writable");
    assert!(source.changed_since(&stamp));
    let stamp = source.stamp();
    std::fs::remove_file(&classes_file).expect("removable");
    assert!(source.changed_since(&stamp));
}

#[test]
fn node_inventory_is_a_node_view() {
    let facts = Facts::from_map(
        json!({"role": "web", "os": {"family": "Debian"}}).as_object().expect("an object literal").clone(),
    );
    let inventory = NodeInventory::new(
        "web01",
        facts,
        Classes::from_names(["role::web", "baton"]),
        ["rpcutil".to_owned(), "service".to_owned(), "package".to_owned()],
    );
    let view: &dyn NodeView = &inventory;
    assert_eq!(view.identity(), "web01");
    assert!(view.has_class("role::web"));
    assert!(!view.has_class("role::db"));
    assert_eq!(view.classes(), ["baton", "role::web"]);
    assert_eq!(view.fact("os.family"), Some(&json!("Debian")));
    assert_eq!(view.fact("os.name"), None);
    assert!(view.has_agent("service"));
    assert!(!view.has_agent("puppet"));
    assert_eq!(view.agents(), ["package", "rpcutil", "service"]);
}

fn record(request: &str, outcome: Outcome, status: Option<StatusCode>, reason: &str) -> AuditRecord {
    AuditRecord {
        time: "2024-05-01T12:00:00.123Z".to_owned(),
        request_id: request.parse().expect("a valid UUID literal"),
        sender: "alice@laptop".to_owned(),
        caller: "user=alice".to_owned(),
        agent: "service".to_owned(),
        action: "restart".to_owned(),
        collective: "baton".to_owned(),
        outcome,
        status,
        unverified: false,
        reason: reason.to_owned(),
    }
}

#[test]
fn audit_lines_are_json_one_per_line() {
    let dir = Dir::new();
    let path = dir.path("audit.log");
    let log = AuditLog::open(&path).expect("the directory exists");
    let records = [
        record("6f1c1a52-3d0e-4d5f-9a43-1f0a6f1b2c3d", Outcome::Accepted, Some(StatusCode::Ok), ""),
        record(
            "7a2b3c4d-1111-4222-8333-944455566677",
            Outcome::Refused,
            Some(StatusCode::Aborted),
            "not authorized: user=alice may not restart services\non this node",
        ),
        record("8a2b3c4d-1111-4222-8333-944455566677", Outcome::Dropped, None, "replayed request"),
    ];
    for record in &records {
        log.write(record).expect("writing to a temporary file works");
    }

    let text = std::fs::read_to_string(&path).expect("the log is readable");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "one line per record, newlines in reasons escaped:\n{text}");
    assert!(text.ends_with('\n'));
    for (line, record) in lines.iter().zip(&records) {
        let parsed: AuditRecord = serde_json::from_str(line).expect("each line is JSON");
        assert_eq!(&parsed, record);
    }
    let first: Value = serde_json::from_str(lines[0]).expect("JSON");
    assert_eq!(first["outcome"], "accepted");
    assert_eq!(first["status"], 0);
    assert_eq!(first.get("reason"), None, "an empty reason is left out");
    let dropped: Value = serde_json::from_str(lines[2]).expect("JSON");
    assert_eq!(dropped["outcome"], "dropped");
    assert_eq!(dropped.get("status"), None);
}

#[test]
fn audit_log_reopens_after_rotation() {
    let dir = Dir::new();
    let path = dir.path("audit.log");
    let rotated = dir.path("audit.log.1");
    let log = AuditLog::open(&path).expect("the directory exists");
    let line = record("6f1c1a52-3d0e-4d5f-9a43-1f0a6f1b2c3d", Outcome::Accepted, Some(StatusCode::Ok), "");
    log.write(&line).expect("writable");
    std::fs::rename(&path, &rotated).expect("rename within a directory");
    log.write(&line).expect("still writes to the rotated file");
    log.reopen().expect("the directory still exists");
    log.write(&line).expect("writes to the fresh file");

    let count = |path: &Path| std::fs::read_to_string(path).expect("readable").lines().count();
    assert_eq!(count(&rotated), 2);
    assert_eq!(count(&path), 1);
}

#[test]
fn audit_log_in_a_missing_directory_is_named() {
    let dir = Dir::new();
    let missing = dir.path("no-such-dir");
    let path = missing.join("audit.log");
    let error = AuditLog::open(&path).expect_err("the directory does not exist");
    assert!(matches!(error, AuditError::MissingDirectory { .. }));
    assert_eq!(
        error.to_string(),
        format!(
            "cannot open audit log {}: directory {} does not exist (create it, or change audit.file)",
            path.display(),
            missing.display()
        )
    );
}

/// Nodes with structured facts for [`node_and_console_select_the_same_nodes`]: nested maps,
/// arrays (of maps and of arrays), numbers, literal keys with dots, and facts some nodes lack
/// or hold as a scalar where others hold a map.
fn dotted_fleet() -> Vec<(&'static str, Value)> {
    vec![
        (
            "deb12",
            json!({
                "os": {"family": "Debian", "release": {"major": "12", "full": "12.5"}},
                "disks": [{"size": 2000}, {"size": 500}],
                "tags": ["web", "public"],
                "matrix": [[1, 2], [3, 4]],
                "a.b": "literal",
                "a": {"b": "nested", "c.d": "inner literal"},
                "networking": {"interfaces": {"eth0": {"ip": "10.0.0.1"}}},
                "count": 3,
            }),
        ),
        (
            "rhel9",
            json!({
                "os": {"family": "RedHat", "release": {"major": 9, "full": "9.3"}},
                "disks": [{"size": 100}],
                "tags": ["db"],
                "a": {"b": "nested"},
                "networking": {"interfaces": {"eth0": {"ip": "192.168.1.9"}, "eth1": {}}},
                "count": 12,
            }),
        ),
        ("bare", json!({"os": "linux", "disks": [], "count": "many", "a": "flat"})),
        ("empty", json!({})),
    ]
}

/// The node's filter view and the console's registry must agree on which nodes a dotted filter
/// selects: both walk dotted keys with `protocol::filter::dotted_fact`. Before they shared it, the
/// node had its own walker (in `node/facts.rs`) that the filter tests never exercised.
#[test]
fn node_and_console_select_the_same_nodes() {
    use std::sync::Arc;
    use std::time::Duration;

    use baton::console::registry::Registry;
    use baton::console::store::Store;
    use baton::protocol::{Filter, FilterSpec, Registration};
    use baton::security::{Psk, Security};

    let security = Security::Psk(Psk::from_bytes(b"q7Lk2vX9pR4mZ8wN3bT6yH1cF5gJ0dSa", "test").expect("psk"));
    let registry = Registry::load(
        "baton",
        Arc::new(Store::in_memory().expect("an in-memory store")),
        Duration::from_secs(10),
        Duration::from_secs(60),
        0,
    )
    .expect("registry");
    let mut nodes = Vec::new();
    for (identity, facts) in dotted_fleet() {
        let facts = facts.as_object().expect("facts are an object").clone();
        let registration = Registration {
            identity: identity.to_owned(),
            collectives: vec!["baton".to_owned()],
            facts: facts.clone(),
            classes: Vec::new(),
            agents: vec!["rpcutil".to_owned()],
            version: "0.1.0".to_owned(),
            time_ms: 1,
        };
        let sealed = security.seal_registration(&registration);
        let verified = security.open_registration(&sealed, 1 << 20).expect("verifies");
        registry.accept(verified, false, 1000).expect("accepted");
        nodes.push(NodeInventory::new(
            identity,
            Facts::from_map(facts),
            Classes::default(),
            ["rpcutil".to_owned()],
        ));
    }

    let check = |fact: &[&str], select: &[&str], expected: &[&str]| {
        let spec = FilterSpec {
            fact: fact.iter().map(|text| text.to_string()).collect(),
            select: select.iter().map(|text| text.to_string()).collect(),
            ..FilterSpec::default()
        };
        let filter = Filter::compile(&spec).expect("the filter compiles");
        let on_nodes: Vec<&str> =
            nodes.iter().filter(|node| filter.matches(*node)).map(|node| node.identity()).collect();
        let mut in_console: Vec<String> =
            registry.matching(&filter, 1000).into_iter().map(|node| node.identity).collect();
        let mut on_nodes_sorted: Vec<String> = on_nodes.iter().map(|name| name.to_string()).collect();
        on_nodes_sorted.sort();
        in_console.sort();
        assert_eq!(on_nodes_sorted, in_console, "node and console disagree on {spec:?}");
        let mut expected: Vec<String> = expected.iter().map(|name| name.to_string()).collect();
        expected.sort();
        assert_eq!(on_nodes_sorted, expected, "{spec:?}");
    };

    // Nested maps.
    check(&["os.family=Debian"], &[], &["deb12"]);
    check(&["os.family!=Debian"], &[], &["rhel9"]);
    check(&["os.release.major>=10"], &[], &["deb12"]);
    check(&["os.release.major=9"], &[], &["rhel9"]);
    check(&["os.release.full<12.10"], &[], &["rhel9"]);
    check(&["networking.interfaces.eth0.ip=~^10\\."], &[], &["deb12"]);
    check(&["networking.interfaces=eth1"], &[], &["rhel9"]);
    // Arrays by index, arrays of arrays, and indexes past the end.
    check(&["disks.0.size>1000"], &[], &["deb12"]);
    check(&["disks.1.size<1000"], &[], &["deb12"]);
    check(&["disks.0.size<1000"], &[], &["rhel9"]);
    check(&["disks.5.size>0"], &[], &[]);
    check(&["matrix.1.0=3"], &[], &["deb12"]);
    check(&["matrix.1=4"], &[], &["deb12"]);
    check(&["tags.0=web"], &[], &["deb12"]);
    check(&["tags=db"], &[], &["rhel9"]);
    // Literal keys with dots win, at the top and inside a map.
    check(&["a.b=literal"], &[], &["deb12"]);
    check(&["a.b=nested"], &[], &["rhel9"]);
    check(&["a.c.d=inner literal"], &[], &["deb12"]);
    check(&["a.c=x"], &[], &[]);
    // Numbers compare as numbers; "many" is not one, so it compares as text.
    check(&["count>2"], &[], &["bare", "deb12", "rhel9"]);
    check(&["count>=12"], &[], &["bare", "rhel9"]);
    check(&["count<5"], &[], &["deb12"]);
    // Missing keys, and a scalar where a map is expected, never match.
    check(&["missing.key=x"], &[], &[]);
    check(&["os.family.deeper=x"], &[], &[]);
    check(&["os.family=linux"], &[], &[]);
    check(&["os=linux"], &[], &["bare"]);
    check(&["a=flat"], &[], &["bare"]);
    // Compound expressions over dotted keys.
    check(&[], &["os.family=Debian or os.release.major=9"], &["deb12", "rhel9"]);
    check(&[], &["not os.family=Debian and disks.0.size<1000"], &["rhel9"]);
    check(&["count>2"], &["!(tags=web)"], &["bare", "rhel9"]);
}

/// Regression: `rpcutil get_fact` (what `baton facts KEY` shows) had a dotted-key walker of its
/// own that did not try literal dotted keys below the top level, so `baton facts a.c.d` showed
/// nothing on a node that `-F 'a.c.d=inner literal'` selects. It now reports, for every key,
/// exactly the value the node's filters compare.
#[test]
fn get_fact_reports_the_value_filters_match_on() {
    use std::sync::Arc;

    use baton::agents::rpcutil::Rpcutil;
    use baton::agents::{ActionContext, Agent, Call, StatsSource};
    use serde_json::Map;

    struct NoStats;
    impl StatsSource for NoStats {
        fn snapshot(&self) -> Map<String, Value> {
            Map::new()
        }
    }

    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let agent = Rpcutil::new();
    let keys = [
        "os.family",
        "os.release.major",
        "disks.0.size",
        "disks.1.size",
        "disks.5.size",
        "matrix.1.0",
        "tags.0",
        "a.b",
        "a.c.d",
        "a.c",
        "networking.interfaces.eth0.ip",
        "count",
        "missing.key",
        "os.family.deeper",
        "os",
    ];
    for (identity, facts) in dotted_fleet() {
        let facts = facts.as_object().expect("facts are an object").clone();
        let node = NodeInventory::new(identity, Facts::from_map(facts.clone()), Classes::default(), []);
        let context = ActionContext {
            identity: identity.to_owned(),
            collectives: vec!["baton".to_owned()].into(),
            facts: Arc::new(facts),
            classes: Vec::new().into(),
            agents: Vec::new().into(),
            stats: Arc::new(NoStats),
        };
        for key in keys {
            let data = json!({ "fact": key }).as_object().expect("an object literal").clone();
            let call = Call {
                action: "get_fact",
                data: &data,
                request_id: uuid::Uuid::nil(),
                caller: "user=test",
                sender: "test",
            };
            let outcome = runtime.block_on(agent.call(call, &context));
            let reported = outcome.data.get("value").cloned().unwrap_or(Value::Null);
            let matched_on = node.fact(key).cloned().unwrap_or(Value::Null);
            assert_eq!(reported, matched_on, "get_fact {key} on {identity}");
        }
    }
}

#[test]
fn facter_facts_merge_over_builtins_and_under_fact_files() {
    // The real Facter of Debian's puppet package (bin/test installs it).
    let dir = Dir::new();
    let file = dir.write("override.yaml", "kernel: from-the-file\n");
    let source = FactSource { files: vec![file], classes_file: None, facter: Some("facter".to_owned()) };
    let (facts, _, warnings) = load(&source);
    assert!(warnings.is_empty(), "{warnings:?}");
    // Only Facter reports its own version: the built-in facts do not.
    assert!(facts.lookup("facterversion").and_then(Value::as_str).is_some_and(|version| !version.is_empty()));
    assert!(facts.lookup("os.family").is_some_and(Value::is_string));
    assert_eq!(facts.lookup("kernel"), Some(&json!("from-the-file")), "a fact file has the last word");
}

#[test]
fn a_facter_that_fails_is_a_warning_not_an_error() {
    let source = FactSource { files: vec![], classes_file: None, facter: Some("false".to_owned()) };
    let (facts, _, warnings) = load(&source);
    assert!(facts.lookup("os.family").is_some_and(Value::is_string), "built-in facts remain");
    assert!(facts.lookup("facterversion").is_none());
    match warnings.as_slice() {
        [Warning::Facter { reason }] => assert!(reason.contains("false --json failed"), "{reason}"),
        other => panic!("expected one Facter warning, got {other:?}"),
    }
    let source =
        FactSource { files: vec![], classes_file: None, facter: Some("/nonexistent/facter".to_owned()) };
    let (_, _, warnings) = load(&source);
    assert!(warnings.iter().any(|warning| warning.to_string().contains("install Facter")), "{warnings:?}");
}
