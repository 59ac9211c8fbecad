//! The machine the numbers come from, and waiting for it to be quiet.

use crate::interrupt;
use std::process::Command;
use std::time::{Duration, Instant};

pub fn loadavg1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Other work that would skew the numbers: compilers and builds, and OpenVPN processes that
/// are not this bench's (whose configs live under `own_dir`), e.g. someone's end-to-end tests.
pub fn busy_processes(own_dir: Option<&std::path::Path>) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    let own = own_dir.map(|d| d.to_string_lossy().into_owned());
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // A zombie does no work, and its empty cmdline would pass for someone else's
        // OpenVPN: the deferred-auth children of auth-pam end up here between storms.
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')) {
            continue;
        }
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let comm = comm.trim();
        let build = matches!(
            comm,
            "cargo" | "rustc" | "cc1" | "cc1plus" | "ld" | "rust-lld" | "clippy-driver"
        ) || comm.starts_with("cargo-");
        // An empty cmdline is a process on its way out (its memory is already gone): the
        // bench's own auth-pam helper, killed with its server a moment ago.
        let foreign_openvpn = comm == "openvpn" && {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            !cmdline.is_empty() && own.as_deref().is_none_or(|own| !cmdline.contains(own))
        };
        if build || foreign_openvpn {
            found.push(format!("{comm}({})", name.to_string_lossy()));
        }
    }
    found
}

/// Waits (at most `limit`) until nothing in [`busy_processes`] runs; returns what still ran.
pub fn wait_no_others(
    own_dir: &std::path::Path,
    limit: Duration,
) -> Result<Vec<String>, interrupt::Interrupted> {
    let start = Instant::now();
    loop {
        let busy = busy_processes(Some(own_dir));
        if busy.is_empty() || start.elapsed() >= limit {
            return Ok(busy);
        }
        interrupt::sleep(Duration::from_secs(5))?;
    }
}

/// Waits until the 1-minute load is below `max_load` and no build runs, polling every 15 s
/// for at most `limit`. Returns whether it got quiet, and a line saying how it went.
pub fn wait_quiet(
    max_load: f64,
    limit: Duration,
) -> Result<(bool, String), interrupt::Interrupted> {
    let start = Instant::now();
    loop {
        let load = loadavg1();
        let busy = busy_processes(None);
        if load < max_load && busy.is_empty() {
            let line = format!(
                "machine quiet after {:.0} s of waiting (1-min load {load:.2}, no builds running)",
                start.elapsed().as_secs_f64()
            );
            return Ok((true, line));
        }
        if start.elapsed() >= limit {
            let line = format!(
                "machine NOT quiet after waiting {:.0} min: 1-min load {load:.2}, builds: {}",
                limit.as_secs_f64() / 60.0,
                if busy.is_empty() { "none".into() } else { busy.join(" ") }
            );
            return Ok((false, line));
        }
        eprintln!(
            "bench: waiting for a quiet machine (load {load:.2}, builds: {})",
            if busy.is_empty() { "none".into() } else { busy.len().to_string() }
        );
        interrupt::sleep(Duration::from_secs(15))?;
    }
}

fn first_line(command: &str, args: &[&str]) -> String {
    Command::new(command)
        .args(args)
        .output()
        .map(|o| {
            let text = if o.stdout.is_empty() { o.stderr } else { o.stdout };
            String::from_utf8_lossy(&text).lines().next().unwrap_or("").trim().to_owned()
        })
        .unwrap_or_else(|e| format!("({command}: {e})"))
}

/// A short markdown list describing the machine and the software under test.
pub fn describe(ovpn_mfa: &std::path::Path) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(f64::NAN);
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_owned()))
        .unwrap_or_default();
    let pam_ga =
        first_line("dpkg-query", &["-W", "-f", "${Version}", "libpam-google-authenticator"]);
    format!(
        "- date: {}\n- machine: {model}, {cores} cores, {mem_gib:.0} GiB RAM; {os}; kernel {}\n\
         - {}\n- libpam-google-authenticator {pam_ga}\n- ovpn-mfa {} (git {})\n",
        first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        first_line("uname", &["-r"]),
        first_line("openvpn", &["--version"]),
        first_line(ovpn_mfa.to_str().unwrap_or("ovpn-mfa"), &["--version"]),
        first_line("git", &["describe", "--always", "--dirty"]),
    )
}
