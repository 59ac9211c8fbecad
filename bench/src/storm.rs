//! One storm: a fresh server for one configuration, one client already connected and
//! pinging through its tunnel, then N clients started at once, each with its own user and
//! a valid code, until all of them are connected.

use crate::cgroup::CpuGroup;
use crate::interrupt;
use crate::ping::{Pinger, Stall};
use crate::setups::{self, Setup, Tools};
use crate::support::{Client, ClientOpts, Lab, ServerOpts, TunMode, INIT_DONE};
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// Lines every configuration's server gets on top of the lab's base config.
const SERVER_BASE: &[&str] = &[
    // The usual production level; the lab's verb 4 logs every packet count.
    "verb 3",
    // A common production keepalive (the lab's 2/10 suits short tests).
    "keepalive 10 60",
    // OpenVPN 2.6 answers at most 100 new clients per 10 s by default: a storm must not be
    // throttled, or every configuration measures the limiter.
    "connect-freq-initial 100000 10",
    "max-clients 1024",
];

/// Storm clients log at the default level: enough to see why one failed.
const CLIENT_VERB: &str = "verb 3";

/// The pinging client's user name and certificate name: ovpn-mfa refuses a certificate
/// whose name is not the user's (`openvpn.bind_certificate`).
pub const PINGER_CERT: &str = "pinger";

/// Storm client `i`'s user name, which is also its certificate's name.
pub fn storm_cert(i: usize) -> String {
    format!("u{i:03}")
}

#[derive(Debug, Clone)]
pub struct StormResult {
    pub run: usize,
    pub setup: Setup,
    pub n: usize,
    /// CPU of the server and all it forked, from just before the first client started
    /// until all were connected and every helper process had exited.
    pub cpu_ns: u64,
    pub connected: usize,
    pub failed: usize,
    /// How long starting the N client processes took.
    pub spawn_s: f64,
    /// From the first client's start until the last one's tunnel was up.
    pub all_connected_s: f64,
    /// Median time from the first client's start to a client's tunnel being up.
    pub median_connected_s: f64,
    pub stall: Stall,
    /// VmHWM of the OpenVPN server process after the storm.
    pub server_hwm_kib: u64,
    /// The first failure's log lines, when some client did not connect.
    pub failure: Option<String>,
    /// Whether other work (a build, someone's OpenVPN tests) ran at its start or end.
    pub disturbed: bool,
}

impl StormResult {
    pub fn complete(&self) -> bool {
        self.failed == 0 && self.connected == self.n
    }

    pub fn cpu_ms_per_login(&self) -> f64 {
        self.cpu_ns as f64 / 1e6 / self.n as f64
    }
}

pub struct StormSpec {
    pub run: usize,
    pub setup: Setup,
    pub n: usize,
    /// Unique per storm; names its work directory and cgroup.
    pub id: usize,
    pub timeout: Duration,
}

pub fn run(lab: &mut Lab, tools: &Tools, spec: &StormSpec) -> Result<StormResult> {
    let work = lab.path(&format!("storm{}", spec.id));
    std::fs::create_dir_all(&work)?;
    let users: Vec<String> =
        std::iter::once(PINGER_CERT.to_owned()).chain((1..=spec.n).map(storm_cert)).collect();
    let prepared = setups::prepare(spec.setup, tools, &work.join("mfa"), &users)?;

    let mut opts = ServerOpts::new();
    for line in SERVER_BASE.iter().map(|l| l.to_string()).chain(prepared.server_lines) {
        opts = opts.line(line);
    }
    lab.start_server(opts);
    let result = storm(lab, spec, &users, &prepared.passwords, &work);
    lab.stop_server();
    result
}

fn storm(
    lab: &mut Lab,
    spec: &StormSpec,
    users: &[String],
    passwords: &[String],
    work: &std::path::Path,
) -> Result<StormResult> {
    // The established tunnel whose pings measure the stall.
    let pinger = lab.start_client(
        ClientOpts::new(&users[0], &passwords[0])
            .cert(PINGER_CERT)
            .tun(TunMode::Configure)
            .line(CLIENT_VERB),
    );
    let mut clients = Vec::with_capacity(spec.n);
    let outcome = (|| {
        pinger
            .wait_connected(Duration::from_secs(30))
            .map_err(|e| anyhow::anyhow!("the pinging client did not connect: {e}"))?;
        let check = lab.ping_from_client(&pinger, 3);
        if check.received == 0 {
            bail!("no ping through the established tunnel:\n{}", check.output);
        }
        // Let the first login's helpers (a deferred worker, say) finish.
        interrupt::sleep(Duration::from_millis(500))?;

        let server_pids = netns_pids(lab.server_ns());
        let server_pid = main_pid(&server_pids).context("no OpenVPN server process found")?;
        let group = CpuGroup::create(&format!("s{}", spec.id))?;
        for pid in &server_pids {
            // The auth-pam plugin's background process is the server's child from startup.
            group.add(*pid)?;
        }
        let probe = Pinger::start(
            lab.client_ns(),
            pinger.dev(),
            &lab.server_tunnel_ip().to_string(),
            &work.join("ping.txt"),
        )?;
        interrupt::sleep(Duration::from_millis(300))?;

        let cpu_before = group.usage_ns()?;
        let wall_start = unix_seconds(SystemTime::now());
        let start = Instant::now();
        for (i, (user, password)) in users[1..].iter().zip(&passwords[1..]).enumerate() {
            clients.push(
                lab.start_client(
                    ClientOpts::new(user, password)
                        .cert(storm_cert(i + 1))
                        .tun(TunMode::NoExec)
                        .line(CLIENT_VERB),
                ),
            );
        }
        let spawn_s = start.elapsed().as_secs_f64();

        let watched = watch(&clients, start, spec.timeout)?;
        let done = Instant::now();
        let wall_done = unix_seconds(SystemTime::now());
        // Deferred helpers may still be on their way out: wait until only the processes
        // that were there before the storm remain (bounded).
        let before: BTreeSet<u32> = server_pids.iter().copied().collect();
        while group.pids().iter().any(|p| !before.contains(p)) && done.elapsed().as_secs() < 10 {
            interrupt::check()?;
            std::thread::sleep(Duration::from_millis(10));
        }
        let cpu_ns = group.usage_ns()?.saturating_sub(cpu_before);
        let log = probe.stop()?;
        let stall = log.stall(wall_start, wall_done);
        let server_hwm_kib = vm_hwm_kib(server_pid).unwrap_or_default();

        let mut times: Vec<f64> = watched.iter().filter_map(|w| w.connected_at).collect();
        times.sort_by(f64::total_cmp);
        let connected = times.len();
        let failure = watched.iter().find_map(|w| w.failure.clone());
        Ok(StormResult {
            run: spec.run,
            setup: spec.setup,
            n: spec.n,
            cpu_ns,
            connected,
            failed: spec.n - connected,
            spawn_s,
            all_connected_s: times.last().copied().unwrap_or(f64::NAN),
            median_connected_s: crate::ping::percentile(&times, 50.0),
            stall,
            server_hwm_kib,
            failure,
            disturbed: false,
        })
    })();
    pinger.kill();
    for client in &clients {
        client.kill();
    }
    outcome
}

/// What became of one storm client.
struct Watched {
    connected_at: Option<f64>,
    failure: Option<String>,
}

/// Follows every client's log (reading only what is new) until each is connected or has
/// exited, or `timeout` passes.
fn watch(clients: &[Client], start: Instant, timeout: Duration) -> Result<Vec<Watched>> {
    struct Tail {
        file: Option<File>,
        carry: Vec<u8>,
        done: bool,
    }
    let mut tails: Vec<Tail> =
        clients.iter().map(|_| Tail { file: None, carry: Vec::new(), done: false }).collect();
    let mut watched: Vec<Watched> =
        clients.iter().map(|_| Watched { connected_at: None, failure: None }).collect();
    let needle = INIT_DONE.as_bytes();
    let mut left = clients.len();
    let mut chunk = Vec::new();
    while left > 0 {
        interrupt::check()?;
        if start.elapsed() > timeout {
            for (client, w) in clients.iter().zip(&mut watched) {
                if w.connected_at.is_none() && w.failure.is_none() {
                    w.failure = Some(format!(
                        "{} not connected after {timeout:?}:\n{}",
                        client.dev(),
                        crate::support::log_tail(&client.log(), 15)
                    ));
                }
            }
            break;
        }
        for ((client, tail), w) in clients.iter().zip(&mut tails).zip(&mut watched) {
            if tail.done {
                continue;
            }
            if tail.file.is_none() {
                tail.file = File::open(client.log_path()).ok();
            }
            // Check liveness before reading, so a client that connected and then exited is
            // still seen as connected.
            let running = client.is_running();
            if let Some(file) = &mut tail.file {
                chunk.clear();
                file.read_to_end(&mut chunk)?;
                tail.carry.extend_from_slice(&chunk);
                if tail.carry.windows(needle.len()).any(|w| w == needle) {
                    w.connected_at = Some(start.elapsed().as_secs_f64());
                    tail.done = true;
                    tail.file = None;
                    left -= 1;
                    continue;
                }
                let keep = tail.carry.len().saturating_sub(needle.len());
                tail.carry.drain(..keep);
            }
            if !running {
                w.failure = Some(format!(
                    "{} exited without connecting:\n{}",
                    client.dev(),
                    crate::support::log_tail(&client.log(), 15)
                ));
                tail.done = true;
                tail.file = None;
                left -= 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(watched)
}

/// Every process in network namespace `ns`.
pub fn netns_pids(ns: &str) -> Vec<u32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The process among `pids` whose parent is not among them: OpenVPN itself, not the
/// helpers it forked.
fn main_pid(pids: &[u32]) -> Option<u32> {
    pids.iter().copied().find(|pid| parent(*pid).is_some_and(|ppid| !pids.contains(&ppid)))
}

fn parent(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("PPid:")).and_then(|v| v.trim().parse().ok())
}

pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let value = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    value.split_whitespace().next()?.parse().ok()
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}
