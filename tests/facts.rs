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
    let source = FactSource { files: vec![yaml, json], classes_file: None };
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
        let source = FactSource { files: vec![path.clone()], classes_file: None };
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
    let source = FactSource { files: vec![path.clone()], classes_file: None };
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
    let (_, classes, warnings) = load(&FactSource { files: vec![], classes_file: Some(classes_file) });
    assert!(warnings.is_empty());
    assert!(classes.contains("role::web"));
    assert!(!classes.contains("role::db"));
}

#[test]
fn missing_files_are_warnings() {
    let dir = Dir::new();
    let classes_file = dir.path("no-classes.txt");
    let fact_file = dir.path("no-facts.yaml");
    let (facts, classes, warnings) =
        load(&FactSource { files: vec![fact_file.clone()], classes_file: Some(classes_file.clone()) });
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
    let source = FactSource { files: vec![facts_file.clone()], classes_file: Some(classes_file.clone()) };
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
