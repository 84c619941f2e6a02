//! The `resource` agent on prepared root directories: browse users, groups and host entries on
//! one node, clone them onto two others, and find them there.

use std::path::Path;

use serde_json::{Value, json};

use crate::harness::{Fleet, NodeSpec};

const BASE_PASSWD: &str =
    "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n";
const BASE_GROUP: &str = "root:x:0:\ndaemon:x:1:\n";
const BASE_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n";

fn prepare_root(root: &Path, passwd: &str, group: &str, hosts: &str) {
    std::fs::create_dir_all(root.join("etc")).expect("etc");
    std::fs::write(root.join("etc/passwd"), passwd).expect("passwd");
    std::fs::write(root.join("etc/group"), group).expect("group");
    std::fs::write(root.join("etc/hosts"), hosts).expect("hosts");
    std::fs::write(root.join("etc/shadow"), "root:*:19000:0:99999:7:::\n").expect("shadow");
}

fn data_of(output: &crate::harness::BatonOutput, node: &str) -> Value {
    let document = output.json();
    let reply = document["replies"]
        .as_array()
        .and_then(|replies| replies.iter().find(|reply| reply["node"] == node).cloned())
        .unwrap_or_else(|| panic!("no reply from {node}: {output:?}"));
    assert_eq!(reply["status"], 0, "{node}: {reply}");
    reply["data"].clone()
}

#[test]
fn resources_found_on_one_node_are_cloned_onto_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let roots = dir.path().join("roots");
    prepare_root(
        &roots.join("source"),
        &format!("{BASE_PASSWD}deploy:x:1500:1500:Deploy user:/srv/deploy:/bin/bash\n"),
        &format!("{BASE_GROUP}deploy:x:1500:\nops:x:1600:deploy,alice\n"),
        &format!("{BASE_HOSTS}10.1.2.3\tdb.internal db\n"),
    );
    for target in ["clone1", "clone2"] {
        prepare_root(&roots.join(target), BASE_PASSWD, BASE_GROUP, BASE_HOSTS);
    }
    let spec = |identity: &str, root: &str| {
        NodeSpec::new(identity, json!({}), &[])
            .with_config(&format!("[agents]\nresource_root = {:?}\n", roots.join(root).display().to_string()))
    };
    let fleet = Fleet::start_in(
        dir,
        None,
        vec![spec("source", "source"), spec("clone1", "clone1"), spec("clone2", "clone2")],
    );

    let cases = [
        (
            "user",
            "deploy",
            json!({"uid": 1500, "gid": 1500, "comment": "Deploy user", "home": "/srv/deploy", "shell": "/bin/bash"}),
        ),
        ("group", "ops", json!({"gid": 1600, "members": ["deploy", "alice"]})),
        ("host", "db.internal", json!({"ip": "10.1.2.3", "host_aliases": ["db"]})),
    ];
    for (kind, title, expected) in &cases {
        let type_input = format!("type={kind}");
        let title_input = format!("title={title}");
        // Browse: find on the source node.
        let found =
            fleet.baton(&["rpc", "resource", "find", &type_input, &title_input, "-I", "source", "--json"]);
        assert_eq!(found.code, 0, "{found:?}");
        let data = data_of(&found, "source");
        assert_eq!(data["exists"], true, "{data}");
        assert_eq!(&data["properties"], expected, "{kind} {title}");

        // Not on the others yet.
        let missing = fleet.baton(&[
            "rpc",
            "resource",
            "find",
            &type_input,
            &title_input,
            "-I",
            "clone1",
            "-I",
            "clone2",
            "--json",
        ]);
        assert_eq!(data_of(&missing, "clone1")["exists"], false);
        assert_eq!(missing.json()["aggregates"]["exists"]["counts"], json!({"absent": 2}), "{missing:?}");

        // Clone: create with the properties find returned, on both others.
        let properties = format!("properties={}", data["properties"]);
        let created = fleet.baton(&[
            "rpc",
            "resource",
            "create",
            &type_input,
            &title_input,
            &properties,
            "-I",
            "clone1",
            "-I",
            "clone2",
            "--json",
        ]);
        assert_eq!(created.code, 0, "{created:?}");
        assert_eq!(created.json()["aggregates"]["changed"]["counts"], json!({"changed": 2}), "{created:?}");

        // Found there now, identical; creating again changes nothing.
        let found = fleet.baton(&[
            "rpc",
            "resource",
            "find",
            &type_input,
            &title_input,
            "-I",
            "clone1",
            "-I",
            "clone2",
            "--json",
        ]);
        for node in ["clone1", "clone2"] {
            let data = data_of(&found, node);
            assert_eq!(data["exists"], true, "{node}: {data}");
            assert_eq!(&data["properties"], expected, "{node}: {kind} {title}");
        }
        let again = fleet.baton(&[
            "rpc",
            "resource",
            "create",
            &type_input,
            &title_input,
            &properties,
            "-I",
            "clone1",
            "--json",
        ]);
        assert_eq!(data_of(&again, "clone1")["changed"], false, "{again:?}");
    }

    // The real files under the clone's root hold the cloned entries.
    let clone_root = fleet.dir.path().join("roots/clone1");
    let passwd = std::fs::read_to_string(clone_root.join("etc/passwd")).expect("passwd");
    assert!(passwd.contains("deploy:x:1500:1500:Deploy user:/srv/deploy:/bin/bash"), "{passwd}");
    assert!(passwd.starts_with("root:x:0:0:"), "existing entries are kept: {passwd}");
    let shadow = std::fs::read_to_string(clone_root.join("etc/shadow")).expect("shadow");
    assert!(shadow.contains("deploy:!:"), "a new account is locked: {shadow}");
    let hosts = std::fs::read_to_string(clone_root.join("etc/hosts")).expect("hosts");
    assert!(hosts.contains("10.1.2.3\tdb.internal db"), "{hosts}");

    // Search lists every user of the source; the sum aggregate adds the counts up.
    let search = fleet.baton(&["rpc", "resource", "search", "type=user", "--json"]);
    assert_eq!(search.code, 0, "{search:?}");
    assert_eq!(data_of(&search, "source")["count"], 3);
    assert_eq!(search.json()["aggregates"]["count"]["value"], 9, "{search:?}");

    // A property the type does not have is invalid input (status 4), naming the properties.
    let bad = fleet.baton(&[
        "rpc",
        "resource",
        "create",
        "type=user",
        "title=eve",
        "properties={\"password\": \"x\"}",
        "-I",
        "clone1",
        "--json",
    ]);
    assert_eq!(bad.code, 1, "{bad:?}");
    let reply = &bad.json()["replies"][0];
    assert_eq!(reply["status"], 4, "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .is_some_and(|message| message.contains("a user has no property \"password\"")),
        "{reply}"
    );
}

/// Regression (issue 12, finding 5): cloning spread a uid-0 account from one node to another,
/// and `create` rewrote root's own entry. Nodes now refuse both unless their configuration
/// says otherwise (`[agents.resource]`), which this checks on a real batond.
#[test]
fn nodes_refuse_to_clone_root_accounts_unless_configured_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let roots = dir.path().join("roots");
    prepare_root(
        &roots.join("source"),
        &format!("{BASE_PASSWD}toor:x:0:0:backdoor:/root:/bin/bash\n"),
        BASE_GROUP,
        BASE_HOSTS,
    );
    for target in ["strict", "lenient"] {
        prepare_root(&roots.join(target), BASE_PASSWD, BASE_GROUP, BASE_HOSTS);
    }
    let spec = |identity: &str, extra: &str| {
        NodeSpec::new(identity, json!({}), &[]).with_config(&format!(
            "[agents]\nresource_root = {:?}\n{extra}",
            roots.join(identity).display().to_string()
        ))
    };
    let fleet = Fleet::start_in(
        dir,
        None,
        vec![
            spec("source", ""),
            spec("strict", ""),
            spec("lenient", "[agents.resource]\nallow_root_ids = true\nallow_system_accounts = true\n"),
        ],
    );
    let found =
        fleet.baton(&["rpc", "resource", "find", "type=user", "title=toor", "-I", "source", "--json"]);
    let properties = format!("properties={}", data_of(&found, "source")["properties"]);
    assert!(properties.contains("\"uid\":0"), "{properties}");

    let create = |title: &str, properties: &str| {
        fleet.baton(&[
            "rpc",
            "resource",
            "create",
            "type=user",
            &format!("title={title}"),
            properties,
            "-I",
            "strict",
            "-I",
            "lenient",
            "--json",
        ])
    };
    let reply_of = |output: &crate::harness::BatonOutput, node: &str| {
        output.json()["replies"]
            .as_array()
            .and_then(|replies| replies.iter().find(|reply| reply["node"] == node).cloned())
            .unwrap_or_else(|| panic!("no reply from {node}: {output:?}"))
    };
    for (title, properties, fragment) in [
        ("toor", properties.as_str(), "uid 0 is root's"),
        ("root", "properties={\"shell\": \"/tmp/x\"}", "user root is a system user"),
    ] {
        let created = create(title, properties);
        let strict = reply_of(&created, "strict");
        assert_eq!(strict["status"], 4, "{strict}");
        assert!(strict["message"].as_str().is_some_and(|message| message.contains(fragment)), "{strict}");
        let lenient = reply_of(&created, "lenient");
        assert_eq!(lenient["status"], 0, "{lenient}");
    }
    let strict_passwd =
        std::fs::read_to_string(fleet.dir.path().join("roots/strict/etc/passwd")).expect("passwd");
    assert_eq!(strict_passwd, BASE_PASSWD, "the strict node's accounts are untouched");
    let lenient_passwd =
        std::fs::read_to_string(fleet.dir.path().join("roots/lenient/etc/passwd")).expect("passwd");
    assert!(
        lenient_passwd.contains("toor:x:0:0:backdoor:/root:/bin/bash")
            && lenient_passwd.contains("root:x:0:0:root:/root:/tmp/x"),
        "{lenient_passwd}"
    );
}
