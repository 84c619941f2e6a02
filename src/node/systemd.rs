//! Tells systemd how the daemon is doing (`sd_notify`), for `Type=notify` in batond.service:
//! `READY=1` once the node's queues are subscribed (so `systemctl start` returns when the node
//! answers, and units ordered after it find it answering), `RELOADING=1` then `READY=1` around a
//! SIGHUP reload, `STOPPING=1` when draining starts.
//!
//! The protocol is one datagram of `KEY=VALUE` lines to the Unix socket named by
//! `NOTIFY_SOCKET` (a path, or an abstract name written with a leading `@`). Without the
//! variable (not started by systemd) nothing is sent. A failure to send is logged and otherwise
//! ignored: systemd's own timeout reports a daemon that never became ready.

use std::os::unix::net::UnixDatagram;

use tracing::warn;

/// The node's queues are subscribed and it answers requests.
pub fn ready(status: &str) {
    notify(&format!("READY=1\nSTATUS={status}"));
}

/// A SIGHUP reload started; [`ready`] follows when it is done. (`MONOTONIC_USEC`, which only
/// `Type=notify-reload` needs, is not sent: the unit uses `Type=notify` with `ExecReload`,
/// which systemd 252, Debian 12's, supports.)
pub fn reloading() {
    notify("RELOADING=1\nSTATUS=reloading");
}

/// Shutdown started: in-flight actions are draining.
pub fn stopping() {
    notify("STOPPING=1\nSTATUS=draining in-flight actions");
}

fn notify(message: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else { return };
    if let Err(error) = send(&target.to_string_lossy(), message) {
        warn!(socket = %target.to_string_lossy(), %error, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

fn send(target: &str, message: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    match target.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            socket.send_to_addr(message.as_bytes(), &address)?;
        }
        None => {
            socket.send_to(message.as_bytes(), target)?;
        }
    }
    Ok(())
}
