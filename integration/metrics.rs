//! `[metrics] listen`: a real batond's `/metrics` accepted by Prometheus's own `promtool check
//! metrics`, counters that move after a ping, and `/healthz` following the broker connection,
//! which the test cuts with a proxy it controls (the shared broker keeps running); the
//! console's own `/metrics`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::console::ConsoleProcess;
use crate::harness::{Fleet, NodeSpec, SeveringProxy, Wire};

#[test]
fn metrics_pass_promtool_count_a_ping_and_health_follows_the_broker() {
    let proxy = SeveringProxy::to_rabbitmq();
    // The client goes straight to the broker: only the node's connection is cut.
    let wire = proxy.nodes_of(&Wire::amqp());
    let listen = free_local_address();
    let spec = NodeSpec::new("metrics01", json!({}), &[])
        .with_config(&format!("[metrics]\nlisten = \"{listen}\"\n"));
    let fleet = Fleet::start_on(wire, vec![spec]);
    let log = || fleet.node("metrics01").log();

    let (status, body) = http_get(listen, "/healthz");
    assert_eq!(status, 200, "healthz of a connected node: {body}\n{}", log());

    let before = http_get(listen, "/metrics").1;
    promtool_accepts(&before);
    let pings_before = sample(&before, r#"baton_requests_total{action="ping",agent="rpcutil",status="0"}"#);
    let received_before = sample(&before, r#"baton_pipeline_total{step="received"}"#);
    assert_eq!(sample(&before, "baton_broker_connected"), Some(1.0), "{before}");
    assert_eq!(sample(&before, "baton_healthy"), Some(1.0), "{before}");

    let output = fleet.baton(&["ping", "-I", "metrics01", "--json"]);
    assert_eq!(output.code, 0, "{output:?}");
    let after = http_get(listen, "/metrics").1;
    promtool_accepts(&after);
    let pings_after = sample(&after, r#"baton_requests_total{action="ping",agent="rpcutil",status="0"}"#);
    assert_eq!(pings_after, Some(pings_before.unwrap_or(0.0) + 1.0), "ping not counted:\n{after}");
    let received_after =
        sample(&after, r#"baton_pipeline_total{step="received"}"#).expect("received counter");
    assert!(received_after > received_before.unwrap_or(0.0), "{after}");
    let durations = sample(&after, r#"baton_action_duration_seconds_count{action="ping",agent="rpcutil"}"#);
    assert!(durations.is_some_and(|count| count >= 1.0), "no duration recorded:\n{after}");
    assert_eq!(sample(&after, "baton_actions_in_flight"), Some(0.0), "{after}");

    proxy.sever();
    let unhealthy = wait_for_health(listen, 503, &log);
    assert!(unhealthy.contains("not connected to the broker"), "{unhealthy}");
    let down = http_get(listen, "/metrics").1;
    assert_eq!(sample(&down, "baton_broker_connected"), Some(0.0), "{down}");
    assert_eq!(sample(&down, "baton_healthy"), Some(0.0), "{down}");
    let reconnects_down = sample(&down, "baton_broker_reconnects_total").expect("reconnects counter");

    proxy.restore();
    wait_for_health(listen, 200, &log);
    let up = http_get(listen, "/metrics").1;
    promtool_accepts(&up);
    assert_eq!(sample(&up, "baton_broker_connected"), Some(1.0), "{up}");
    let reconnects_up = sample(&up, "baton_broker_reconnects_total").expect("reconnects counter");
    assert!(
        reconnects_up > reconnects_down,
        "reconnection not counted: {reconnects_down} then {reconnects_up}"
    );
    let output = fleet.baton(&["ping", "-I", "metrics01", "--json"]);
    assert_eq!(output.code, 0, "the node answers again after the broker returned: {output:?}");
}

#[test]
fn the_console_serves_its_own_metrics_which_promtool_accepts() {
    let fleet = Fleet::start(vec![
        NodeSpec::new("console01", json!({}), &[]).with_config("[registration]\ninterval_secs = 1\n"),
    ]);
    let config = fleet.client_config("");
    let console = ConsoleProcess::start(&config, fleet.dir.path(), &["--registration-interval", "1"]);
    let address: SocketAddr =
        console.url.trim_start_matches("http://").parse().expect("the console's address");
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let (status, text) = http_get(address, "/metrics");
        assert_eq!(status, 200, "{text}\n{}", console.log());
        if sample(&text, "baton_console_registry_nodes") == Some(1.0) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the node never showed in the registry:\n{text}\n{}",
            console.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    promtool_accepts(&text);
    for series in
        ["baton_console_jobs_started_total", "baton_console_jobs_running", "baton_console_sse_clients"]
    {
        assert_eq!(sample(&text, series), Some(0.0), "{series}:\n{text}");
    }
}

/// Runs `promtool check metrics` (Debian's `prometheus` package) on `text`; fails the test
/// with promtool's own words if it finds anything wrong, lint problems included.
fn promtool_accepts(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (bin/test installs Debian's prometheus package)");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
    let output = child.wait_with_output().expect("promtool finishes");
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics refused the output ({}):\n{}{}\n--- metrics ---\n{text}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The value of the sample written exactly `series` (name and labels as the text format puts
/// them, labels sorted by name), if there is one.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().expect("a number"))
        .next()
}

/// Polls `/healthz` until it answers `status`; returns its body. Fails after 60 s with the log.
fn wait_for_health(listen: SocketAddr, status: u16, log: &dyn Fn() -> String) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (seen, body) = http_get(listen, "/healthz");
        if seen == status {
            return body;
        }
        assert!(Instant::now() < deadline, "/healthz still {seen} ({body}), not {status}:\n{}", log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A plain HTTP/1.1 GET: status code and body.
pub(crate) fn http_get(listen: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = StdStream::connect(listen).expect("connect to the metrics listener");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {listen}\r\nConnection: close\r\n\r\n")
        .expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a header and a body");
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("a status line");
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{head}");
    (status, body.to_string())
}

pub(crate) fn free_local_address() -> SocketAddr {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address")
}
