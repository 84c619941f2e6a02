//! TLS (AMQPS, and STOMP over TLS to ActiveMQ and to RabbitMQ) with certificate and host name
//! verification on.

use serde_json::json;

use crate::harness::{Fleet, NodeSpec, Wire, broker, run_baton};

crate::on_every_tls_transport!(
    tls_works_with_verification_on,
    a_wrong_ca_or_a_wrong_host_name_fails_naming_the_problem
);

fn tls_works_with_verification_on(wire: Wire) {
    let fleet = Fleet::start_on(wire, vec![NodeSpec::new("secure01", json!({"role": "web"}), &[])]);
    let output = fleet.baton(&["rpc", "rpcutil", "get_fact", "fact=role", "-F", "role=web", "--json"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert_eq!(output.json()["replies"][0]["data"]["value"], "web");
}

fn a_wrong_ca_or_a_wrong_host_name_fails_naming_the_problem(wire: Wire) {
    let fleet = Fleet::start_on(wire, vec![]);
    let base = std::fs::read_to_string(fleet.client_config("")).expect("config");
    let other_ca = broker().var("BATON_TLS_OTHER_CA");
    let ca = broker().var("BATON_TLS_CA");

    let wrong_ca = fleet.dir.path().join("wrong-ca.toml");
    std::fs::write(&wrong_ca, base.replace(&format!("ca = {ca:?}"), &format!("ca = {other_ca:?}")))
        .expect("write");
    let output = run_baton(&wrong_ca, &["ping"], None);
    assert_eq!(output.code, 5, "{output:?}");
    assert!(output.stderr.contains("not issued by the configured CA"), "{output:?}");

    let wrong_host = fleet.dir.path().join("wrong-host.toml");
    std::fs::write(&wrong_host, base.replace("[tls]\n", "[tls]\nserver_name = \"mq.example.com\"\n"))
        .expect("write");
    let output = run_baton(&wrong_host, &["ping"], None);
    assert_eq!(output.code, 5, "{output:?}");
    assert!(output.stderr.contains("not valid for host \"mq.example.com\""), "{output:?}");
}
