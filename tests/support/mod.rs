//! End-to-end test support: real OpenVPN 2.6 servers and clients in throwaway network
//! namespaces.
//!
//! A test creates a [`Lab`], starts a server with the options under test, starts clients
//! and watches their logs:
//!
//! ```ignore
//! let mut lab = Lab::new();
//! lab.start_server(ServerOpts::new().line("script-security 2"));
//! let client = lab.start_client(ClientOpts::new("alice", "good"));
//! client.wait_connected(Duration::from_secs(20)).unwrap();
//! assert!(lab.ping_from_client(&client, 3).received > 0);
//! ```
//!
//! The tests need root, `openvpn`, `ip` and `ping`; [`require_root`] says so loudly instead
//! of skipping. Traffic stays inside the lab's namespaces. Everything a lab starts or
//! creates is removed when it is dropped, also when the test panics.

// Every test binary compiles this module separately and uses only some of the helpers.
#![allow(dead_code)]

mod lab;
mod netns;
mod pki;
mod plugin;
mod run;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

// The API of the harness, re-exported flat; a given test binary imports only part of it.
#[allow(unused_imports)]
pub use lab::{Client, ClientOpts, Lab, PingResult, ServerOpts, TunMode, INIT_DONE, KEEP_ENV};
#[allow(unused_imports)]
pub use netns::{in_netns, netns_exec, netns_list, netns_run, NS_PREFIX};
#[allow(unused_imports)]
pub use pki::Pki;
#[allow(unused_imports)]
pub use plugin::plugin_so;
#[allow(unused_imports)]
pub use run::{output, run, Run};

/// Panics with instructions unless the process runs as root and the tools are installed.
/// These tests are meant to run, not to pass by skipping.
pub fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    assert!(
        euid == Some("0"),
        "the end-to-end tests create network namespaces and tun devices: run them as root \
         (effective uid is {euid:?})"
    );
    for (tool, arg) in [("openvpn", "--version"), ("ip", "-V"), ("ping", "-V")] {
        let found = Command::new(tool).arg(arg).output().is_ok();
        assert!(found, "the end-to-end tests need `{tool}` on PATH (apt-get install it)");
    }
    assert!(
        Path::new("/dev/net/tun").exists(),
        "the end-to-end tests need /dev/net/tun (modprobe tun, or give the container the device)"
    );
}

/// Polls `condition` every 100 ms until it holds or `timeout` passes; returns the last
/// answer.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the file at `path` contains `needle` at least `min_count` times.
pub fn wait_for_text(
    path: &Path,
    needle: &str,
    min_count: usize,
    timeout: Duration,
) -> Result<(), String> {
    wait_for_match(path, timeout, |text| text.matches(needle).count() >= min_count)
        .map_err(|tail| format!("no {min_count} x {needle:?} in {}:\n{tail}", path.display()))
}

/// Waits until `matches` accepts the contents of the file at `path` (use it where a regex
/// would be handy). On timeout the error holds the file's last lines.
pub fn wait_for_match(
    path: &Path,
    timeout: Duration,
    mut matches: impl FnMut(&str) -> bool,
) -> Result<(), String> {
    let read = || std::fs::read_to_string(path).unwrap_or_default();
    if wait_until(timeout, || matches(&read())) {
        Ok(())
    } else {
        Err(log_tail(&read(), 40))
    }
}

/// The last `lines` lines of `text`.
pub fn log_tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
