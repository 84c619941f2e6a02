//! Filters, discovery, ping and rpc reach exactly the right nodes; JSON documents and exit
//! codes are as documented. Every test here runs over each transport (AMQP to RabbitMQ, STOMP to
//! ActiveMQ, STOMP to RabbitMQ) with the same assertions.

use serde_json::json;

use crate::harness::{Fleet, NodeSpec, Wire};

crate::on_every_transport!(
    every_kind_of_filter_reaches_exactly_the_right_nodes,
    ping_and_rpc_reach_the_same_nodes_as_discovery,
    get_fact_json_is_the_documented_document,
    facts_counts_values_across_nodes,
    inventory_shows_facts_classes_agents_and_stats,
    discover_json_piped_into_rpc_targets_exactly_those_nodes,
    usage_errors_exit_2_before_anything_is_sent,
    nothing_matched_exits_4_and_unknown_action_fails_with_status_2,
);

/// Three nodes with different facts and classes, shared by the filter cases.
fn three_nodes(wire: Wire) -> Fleet {
    Fleet::start_on(
        wire,
        vec![
            NodeSpec::new(
                "web01",
                json!({"role": "web", "rack": 3, "os": {"family": "debian"}, "tags": ["edge", "prod"]}),
                &["nginx", "base"],
            ),
            NodeSpec::new(
                "web02",
                json!({"role": "web", "rack": 12, "os": {"family": "redhat"}, "tags": ["prod"]}),
                &["nginx", "base", "monitoring"],
            ),
            NodeSpec::new(
                "db01",
                json!({"role": "db", "rack": 7, "os": {"family": "debian"}, "tags": ["staging"]}),
                &["postgresql", "base"],
            ),
        ],
    )
}

fn every_kind_of_filter_reaches_exactly_the_right_nodes(wire: Wire) {
    let fleet = three_nodes(wire);
    let cases: &[(&[&str], &[&str])] = &[
        (&[], &["db01", "web01", "web02"]),
        (&["-I", "web01"], &["web01"]),
        (&["-I", "web01", "-I", "db01"], &["db01", "web01"]),
        (&["-I", "/^web/"], &["web01", "web02"]),
        (&["-C", "nginx"], &["web01", "web02"]),
        (&["-C", "/^postgres/"], &["db01"]),
        (&["-C", "nginx", "-C", "monitoring"], &["web02"]),
        (&["-F", "role=web"], &["web01", "web02"]),
        (&["-F", "role==db"], &["db01"]),
        (&["-F", "role!=web"], &["db01"]),
        (&["-F", "rack>5"], &["db01", "web02"]),
        (&["-F", "rack<=7"], &["db01", "web01"]),
        (&["-F", "rack>=12"], &["web02"]),
        (&["-F", "os.family=debian"], &["db01", "web01"]),
        (&["-F", "role=/^(web|db)$/"], &["db01", "web01", "web02"]),
        (&["-F", "role=~^d"], &["db01"]),
        (&["-F", "tags=edge"], &["web01"]),
        (&["-F", "missing_fact=x"], &[]),
        (&["-F", "missing_fact!=x"], &[]),
        (&["-A", "rpcutil"], &["db01", "web01", "web02"]),
        (&["-A", "no_such_agent"], &[]),
        (&["-S", "role=web and rack>5"], &["web02"]),
        (&["-S", "nginx and not os.family=redhat"], &["web01"]),
        (&["-S", "(role=db or rack<5) and base"], &["db01", "web01"]),
        (&["-S", "! nginx"], &["db01"]),
        (&["-F", "role=web", "-C", "monitoring"], &["web02"]),
        (&["-F", "role=web", "-S", "rack<10 or db"], &["web01"]),
    ];
    let mut failures = Vec::new();
    for (filter, expected) in cases {
        let mut args = vec!["discover", "--json", "--dt", "3"];
        args.extend_from_slice(filter);
        let output = fleet.baton(&args);
        let found = output.nodes("nodes");
        let expected_code = if expected.is_empty() { 4 } else { 0 };
        if found != *expected || output.code != expected_code {
            failures.push(format!(
                "discover {filter:?}: got {found:?} exit {}, want {expected:?} exit {expected_code}",
                output.code
            ));
        }
    }
    assert!(failures.is_empty(), "filter mismatches:\n{}", failures.join("\n"));
}

fn ping_and_rpc_reach_the_same_nodes_as_discovery(wire: Wire) {
    let fleet = three_nodes(wire);
    let ping = fleet.baton(&["ping", "-F", "role=web", "--json"]);
    assert_eq!(ping.code, 0, "{ping:?}");
    assert_eq!(ping.nodes("replies"), ["web01", "web02"]);

    let rpc = fleet.baton(&["rpc", "rpcutil", "get_fact", "fact=rack", "-S", "rack>5 and base", "--json"]);
    assert_eq!(rpc.code, 0, "{rpc:?}");
    assert_eq!(rpc.nodes("targeted"), ["db01", "web02"]);
    assert_eq!(rpc.nodes("replies"), ["db01", "web02"]);

    let human = fleet.baton(&["rpc", "rpcutil", "ping", "-C", "base"]);
    assert_eq!(human.code, 0, "{human:?}");
    assert!(human.stdout.contains("Finished processing 3 / 3 nodes in"), "{human:?}");
}

fn get_fact_json_is_the_documented_document(wire: Wire) {
    let fleet = three_nodes(wire);
    let output = fleet.baton(&["rpc", "rpcutil", "get_fact", "fact=role", "--json"]);
    assert_eq!(output.code, 0, "{output:?}");
    let document = output.json();
    assert!(document["request_id"].as_str().is_some_and(|id| id.len() == 36), "{document}");
    assert_eq!(document["agent"], "rpcutil");
    assert_eq!(document["action"], "get_fact");
    assert_eq!(document["targeted"], json!(["db01", "web01", "web02"]));
    assert_eq!(document["no_response"], json!([]));
    assert_eq!(document["stats"]["targeted"], 3);
    assert_eq!(document["stats"]["ok"], 3);
    assert_eq!(document["stats"]["failed"], 0);
    assert_eq!(document["stats"]["no_response"], 0);
    let replies = document["replies"].as_array().expect("replies");
    let roles: Vec<(String, String)> = replies
        .iter()
        .map(|reply| {
            assert_eq!(reply["status"], 0, "{reply}");
            assert_eq!(reply["status_text"], "OK");
            assert!(reply["ms"].as_f64().is_some(), "{reply}");
            (
                reply["node"].as_str().unwrap_or_default().to_string(),
                reply["data"]["value"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        [
            ("db01".to_string(), "db".to_string()),
            ("web01".to_string(), "web".to_string()),
            ("web02".to_string(), "web".to_string())
        ]
    );
}

fn facts_counts_values_across_nodes(wire: Wire) {
    let fleet = three_nodes(wire);
    let output = fleet.baton(&["facts", "role", "--json"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(output.json()["values"], json!({"db": 1, "web": 2}));
    let human = fleet.baton(&["facts", "os.family"]);
    assert!(human.stdout.contains("Report for fact: os.family"), "{human:?}");
    assert!(human.stdout.contains("debian") && human.stdout.contains("found 2 times"), "{human:?}");
    let nobody = fleet.baton(&["facts", "role", "-F", "role=mainframe"]);
    assert_eq!(nobody.code, 4, "nothing matched: {nobody:?}");
    assert!(nobody.stderr.contains("No nodes matched the filter"), "{nobody:?}");
}

fn inventory_shows_facts_classes_agents_and_stats(wire: Wire) {
    let fleet = three_nodes(wire);
    let output = fleet.baton(&["inventory", "web02", "--json"]);
    assert_eq!(output.code, 0, "{output:?}");
    let document = output.json();
    assert_eq!(document["inventory"]["facts"]["role"], "web");
    assert_eq!(document["inventory"]["classes"], json!(["base", "monitoring", "nginx"]));
    assert!(
        document["inventory"]["agents"].as_array().is_some_and(|agents| agents.contains(&json!("rpcutil")))
    );
    assert!(
        document["daemon_stats"]["received"].as_u64().is_some_and(|received| received >= 1),
        "{document}"
    );
    // Built-in facts are merged under the file's facts.
    assert!(document["inventory"]["facts"]["kernel"].is_string(), "{document}");
}

fn discover_json_piped_into_rpc_targets_exactly_those_nodes(wire: Wire) {
    let fleet = three_nodes(wire);
    let discovered = fleet.baton(&["discover", "-F", "role=web", "--json"]);
    assert_eq!(discovered.code, 0, "{discovered:?}");
    let rpc =
        fleet.baton_with_stdin(&["rpc", "rpcutil", "ping", "--dm", "stdin", "--json"], &discovered.stdout);
    assert_eq!(rpc.code, 0, "{rpc:?}");
    assert_eq!(rpc.nodes("targeted"), ["web01", "web02"]);

    let nodes_file = fleet.dir.path().join("nodes.txt");
    std::fs::write(&nodes_file, "# the database\ndb01\n\nweb01 # and one web node\n")
        .expect("write nodes file");
    let rpc =
        fleet.baton(&["rpc", "rpcutil", "ping", "--nodes", nodes_file.to_str().expect("utf-8"), "--json"]);
    assert_eq!(rpc.code, 0, "{rpc:?}");
    assert_eq!(rpc.nodes("targeted"), ["db01", "web01"]);
}

fn usage_errors_exit_2_before_anything_is_sent(wire: Wire) {
    let fleet = three_nodes(wire);
    let cases: &[(&[&str], &str)] = &[
        (&["rpc", "rpcutil", "get_fact", "-F", "role"], "role"),
        (&["discover", "-S", "role=web and (rack>1"], ")"),
        (&["discover", "-I", "/[/"], "regex"),
        (&["rpc", "rpcutil", "get_fact", "fact"], "KEY=VALUE"),
        (&["rpc", "rpcutil", "ping", "--nodes", "/nonexistent/nodes.txt"], "/nonexistent/nodes.txt"),
    ];
    for (args, fragment) in cases {
        let output = fleet.baton(args);
        assert_eq!(output.code, 2, "{args:?}: {output:?}");
        assert!(output.stderr.contains(fragment), "{args:?}: stderr should mention {fragment:?}: {output:?}");
    }
    let json = fleet.baton(&["discover", "-F", "role", "--json"]);
    assert_eq!(json.code, 2);
    assert_eq!(json.json()["exit_code"], 2, "{json:?}");
}

fn nothing_matched_exits_4_and_unknown_action_fails_with_status_2(wire: Wire) {
    let fleet = three_nodes(wire);
    let none = fleet.baton(&["rpc", "rpcutil", "ping", "-F", "role=mainframe", "--json"]);
    assert_eq!(none.code, 4, "{none:?}");
    assert_eq!(none.json()["stats"]["targeted"], 0);

    // An agent the client has no definition for goes out unchecked; the node answers status 2.
    let unknown = fleet.baton(&["rpc", "nosuchagent", "reboot", "-I", "web01", "--json"]);
    assert_eq!(unknown.code, 1, "{unknown:?}");
    let reply = &unknown.json()["replies"][0];
    assert_eq!(reply["status"], 2, "{reply}");
    assert!(
        reply["message"].as_str().is_some_and(|message| message.contains("unknown agent \"nosuchagent\"")),
        "{reply}"
    );

    // A known agent's definition lets the client refuse an unknown action or a missing input
    // before sending (exit 2); integration/agents.rs shows the node's own status 2, 3 and 4.
    let unknown = fleet.baton(&["rpc", "rpcutil", "reboot", "-I", "web01", "--json"]);
    assert_eq!(unknown.code, 2, "{unknown:?}");
    assert!(
        unknown.json()["error"].as_str().is_some_and(|error| error.contains("no action \"reboot\"")),
        "{unknown:?}"
    );
    let missing = fleet.baton(&["rpc", "rpcutil", "get_fact", "-I", "web01", "--json"]);
    assert_eq!(missing.code, 2, "{missing:?}");
    assert!(
        missing.json()["error"].as_str().is_some_and(|error| error.contains("input \"fact\" is required")),
        "{missing:?}"
    );
}

/// Regression: one `baton rpc` read `definitions_dir` four times (for the inputs, the timeout,
/// the display policy and the aggregates), so one bad definition file printed its warning four
/// times. The catalog is now loaded once per command, and the run still answers with the
/// aggregates of a good definition.
#[test]
fn a_bad_definition_file_warns_once_per_rpc() {
    let fleet = Fleet::start(vec![NodeSpec::new("web01", json!({"role": "web"}), &[])]);
    let definitions = tempfile::tempdir().expect("definitions dir");
    let broken = definitions.path().join("broken");
    std::fs::create_dir(&broken).expect("agent dir");
    std::fs::write(broken.join("definition.json"), "{ not json").expect("bad definition");
    let config = fleet.client_config_with(
        &fleet.wire,
        &format!("definitions_dir = {:?}\n", definitions.path().display().to_string()),
        "",
    );
    for args in [&["rpc", "rpcutil", "ping"][..], &["rpc", "rpcutil", "ping", "--json"]] {
        let output = crate::harness::run_baton(&config, args, None);
        assert_eq!(output.code, 0, "{args:?}: {output:?}");
        let warnings: Vec<&str> =
            output.stderr.lines().filter(|line| line.starts_with("baton: warning:")).collect();
        assert_eq!(warnings.len(), 1, "{args:?}: one warning for one bad file, got {warnings:#?}");
        assert!(warnings[0].contains("broken/definition.json"), "{warnings:?}");
    }
}
