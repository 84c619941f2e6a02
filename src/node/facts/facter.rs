//! Facts from Facter: `facter --json`, when `facts.facter` is on, merged over the built-in
//! facts and under the fact files (so an operator's file still has the last word).
//!
//! Facter takes a second or more, so it runs when facts are loaded (start, SIGHUP, a fact file
//! changing), never per request, and is stopped after [`FACTER_TIMEOUT`]. A Facter that is
//! missing, fails or prints something else than a JSON object is a warning: the node keeps its
//! other facts rather than refusing to start.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// The longest Facter may take; it is killed after this.
pub const FACTER_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `program --json` and returns its facts, or why there are none.
pub fn facts(program: &str) -> Result<Map<String, Value>, String> {
    let mut child = crate::agents::command::new_blocking(program)
        .arg("--json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| {
            format!("cannot run {program}: {error} (install Facter, or set facts.facter = false)")
        })?;
    // Read both pipes while it runs: Facter's JSON is larger than a pipe buffer, and it logs
    // to stderr.
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let deadline = Instant::now() + FACTER_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program} --json did not finish within {} s", FACTER_TIMEOUT.as_secs()));
            }
            Err(error) => return Err(format!("cannot wait for {program}: {error}")),
        }
    };
    let text = stdout.join().unwrap_or_default();
    // Facter 4 exits 1 when any resolver logged an error (in a container, /proc/1/environ is
    // unreadable) yet prints every other fact: what it printed is used if it is an object.
    match serde_json::from_str(&text) {
        Ok(Value::Object(facts)) => Ok(facts),
        _ if !status.success() => {
            let stderr = stderr.join().unwrap_or_default();
            let last: String = stderr.lines().last().unwrap_or_default().chars().take(300).collect();
            Err(format!("{program} --json failed ({status}): {last}"))
        }
        Ok(_) => Err(format!("{program} --json printed JSON that is not an object of facts")),
        Err(error) => Err(format!("{program} --json printed something that is not JSON: {error}")),
    }
}

/// Reads a pipe to its end on a thread of its own; an unreadable pipe reads as empty.
fn read_in_background(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}
