//! `ovpn-mfa-bench`: what authentication costs an OpenVPN 2.6 server, measured with real
//! servers and clients in network namespaces (the end-to-end test harness, compiled in).
//!
//! For each configuration (certificates only, auth-pam + google-authenticator, the ovpn-mfa
//! script, plugins) and storm size N, a fresh server gets one client that pings through its
//! tunnel every 10 ms, then N clients connecting at once, each with its own user and code.
//! It reports the server's CPU per login (a cpuacct cgroup holding the server and everything
//! it forks), the time until all N are connected, and the ping round trips during the storm.
//! Runs are interleaved (A B C ... A B C ...) and the tables show medians.
//!
//! Run it through `sudo scripts/bench.sh [--quick]`, which builds everything first.

#[path = "../../tests/support/mod.rs"]
mod support;

mod cgroup;
mod footprint;
mod interrupt;
mod machine;
mod pam;
mod ping;
mod report;
mod setups;
mod storm;

use anyhow::{Context, Result};
use clap::Parser;
use setups::{Setup, Tools};
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Benchmarks ovpn-mfa against OpenVPN's usual authentication setups, with real OpenVPN
/// servers and clients in network namespaces. Needs root.
#[derive(Parser, Debug)]
#[command(name = "ovpn-mfa-bench")]
struct Args {
    /// Try the harness out: one run of 30-client storms (unless --runs/--clients say more).
    #[arg(long)]
    quick: bool,
    /// Runs per configuration and storm size, interleaved; tables show the medians
    /// [default: 5].
    #[arg(long)]
    runs: Option<usize>,
    /// Storm sizes, comma-separated [default: 100,200].
    #[arg(long, value_delimiter = ',')]
    clients: Option<Vec<usize>>,
    /// Configurations to run, comma-separated [default: all that can run here].
    #[arg(long, value_enum, value_delimiter = ',')]
    setups: Option<Vec<Setup>>,
    /// The ovpn-mfa binary under test (a release build).
    #[arg(long, default_value = "target/release/ovpn-mfa")]
    ovpn_mfa: PathBuf,
    /// The ovpn-mfa plugin under test (a release build), for the plugin-* configurations.
    #[arg(long, default_value = "target/release/libovpn_mfa_plugin.so")]
    plugin: PathBuf,
    /// Directory for the results (markdown report and per-storm CSV).
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Give up on a storm that is not fully connected after this many seconds.
    #[arg(long, default_value_t = 150)]
    storm_timeout_secs: u64,
    /// First wait up to this many minutes for a quiet machine (1-min load below 0.5, no
    /// compiler running); 0 starts at once. The report says whether it got quiet.
    #[arg(long, default_value_t = 0)]
    wait_quiet_mins: u64,
    /// Before each storm, wait up to this many seconds for other builds and other OpenVPN
    /// processes to finish (storms that still overlap them are counted in the report).
    #[arg(long, default_value_t = 300)]
    wait_others_secs: u64,
    /// How many times each verifier process is run for its memory and CPU.
    #[arg(long, default_value_t = 15)]
    process_samples: usize,
}

fn main() {
    interrupt::install();
    let args = Args::parse();
    let code = match run(&args) {
        Ok(()) => 0,
        Err(_) if interrupt::interrupted() => {
            eprintln!("bench: interrupted; everything it started has been removed");
            130
        }
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn run(args: &Args) -> Result<()> {
    support::require_root();
    let _lock = exclusive_lock()?;
    raise_fd_limit();
    cgroup::sweep_stale();

    let runs = args.runs.unwrap_or(if args.quick { 1 } else { 5 });
    let sizes = args.clients.clone().unwrap_or(if args.quick { vec![30] } else { vec![100, 200] });
    anyhow::ensure!(
        runs > 0 && sizes.iter().all(|&n| (1..=240).contains(&n)),
        "runs must be > 0 and storm sizes 1 to 240 (one /24 tunnel subnet)"
    );
    let ovpn_mfa = std::path::absolute(&args.ovpn_mfa)?;
    anyhow::ensure!(
        ovpn_mfa.exists(),
        "{} does not exist (cargo build --release, or use scripts/bench.sh)",
        ovpn_mfa.display()
    );
    let plugin = std::path::absolute(&args.plugin)?;
    let setups: Vec<Setup> = args.setups.clone().unwrap_or_else(|| setups::ALL.to_vec());
    anyhow::ensure!(
        !setups.iter().any(|s| s.uses_plugin()) || exports_plugin_v3(&plugin),
        "{} does not exist or does not export openvpn_plugin_open_v3 (cargo build --release \
         -p ovpn-mfa-plugin, or use scripts/bench.sh)",
        plugin.display()
    );
    let mut notes = Vec::new();

    let (quiet, quiet_line) = if args.wait_quiet_mins > 0 {
        machine::wait_quiet(0.5, Duration::from_secs(args.wait_quiet_mins * 60))?
    } else {
        let load = machine::loadavg1();
        let busy = machine::busy_processes(None);
        let quiet = load < 0.5 && busy.is_empty();
        (
            quiet,
            format!(
                "no wait for a quiet machine; 1-min load {load:.2}, builds running: {}",
                busy.len()
            ),
        )
    };
    eprintln!("bench: {quiet_line}");
    let load_start = machine::loadavg1();

    let mut lab = support::Lab::new();
    let config = ovpn_mfa::config::Config::default();
    let password_hash = ovpn_mfa::auth::password::hash(&setups::PASSWORD.into(), &config.password)
        .map_err(anyhow::Error::msg)?;
    let pam = if setups.iter().any(|s| s.uses_pam()) {
        Some(pam::PamService::install(&lab.path("ga"))?)
    } else {
        None
    };
    let tools = Tools {
        ovpn_mfa: ovpn_mfa.clone(),
        plugin: plugin.clone(),
        noop_plugin: build_noop_plugin(lab.dir())?,
        pam,
        ga_dir: lab.path("ga"),
        password_hash,
    };

    // Certificates are made once, before any storm, so no storm pays for them.
    lab.pki().client(storm::PINGER_CERT);
    for i in 1..=*sizes.iter().max().unwrap_or(&1) {
        lab.pki().client(&storm::storm_cert(i));
    }

    eprintln!("bench: store size and verifier processes ({} samples)", args.process_samples);
    let footprint =
        footprint::measure(&ovpn_mfa, lab.dir(), &tools.password_hash, args.process_samples)?;

    std::fs::create_dir_all(&args.out)?;
    let stamp = machine_stamp();
    let csv_path = args.out.join(format!("storms-{stamp}.csv"));
    let mut results = Vec::new();
    let mut id = 0;
    for run in 1..=runs {
        for &n in &sizes {
            for &setup in &setups {
                interrupt::check()?;
                id += 1;
                // Someone else's build or tests would be measured too: let them finish first.
                let others =
                    machine::wait_no_others(lab.dir(), Duration::from_secs(args.wait_others_secs))?;
                eprintln!("bench: run {run}/{runs}, {n} clients, {}", setup.name());
                let spec = storm::StormSpec {
                    run,
                    setup,
                    n,
                    id,
                    timeout: Duration::from_secs(args.storm_timeout_secs),
                };
                let outcome =
                    catch_unwind(AssertUnwindSafe(|| storm::run(&mut lab, &tools, &spec)));
                lab.stop_server();
                interrupt::check()?;
                match outcome {
                    Ok(Ok(mut result)) => {
                        let mut seen = others;
                        seen.extend(machine::busy_processes(Some(lab.dir())));
                        seen.sort();
                        seen.dedup();
                        if !seen.is_empty() {
                            eprintln!("bench:   other work ran: {}", seen.join(" "));
                        }
                        result.disturbed = !seen.is_empty();
                        eprintln!("bench:   {}", summary(&result));
                        if let Some(failure) = &result.failure {
                            eprintln!("bench:   first failure: {failure}");
                        }
                        results.push(result);
                    }
                    Ok(Err(e)) => {
                        eprintln!("bench:   storm failed: {e:#}");
                        notes.push(format!("run {run}, {n} clients, {}: {e:#}", setup.name()));
                    }
                    Err(_) => {
                        notes.push(format!(
                            "run {run}, {n} clients, {}: the harness panicked",
                            setup.name()
                        ));
                    }
                }
                std::fs::write(&csv_path, report::csv(&results))?;
            }
        }
    }

    let cells = report::cells(&results, &setups, &sizes);
    let load_end = machine::loadavg1();
    let mut md = String::new();
    md.push_str(&format!("### Results {stamp}\n\n{}", machine::describe(&ovpn_mfa)));
    md.push_str(&format!(
        "- command: `{}`\n\
         - {runs} run(s) per cell, storm sizes {sizes:?}; medians over complete runs\n\
         - {quiet_line}; 1-min load at start {load_start:.2}, at end {load_end:.2}{}\n\
         - storms during which other work (a build, someone else's OpenVPN) ran: {} of {}\n\n",
        std::env::args().collect::<Vec<_>>().join(" "),
        if quiet { "" } else { " (NOT a quiet machine: treat the numbers with care)" },
        results.iter().filter(|r| r.disturbed).count(),
        results.len(),
    ));
    md.push_str("Configurations:\n\n");
    for setup in &setups {
        md.push_str(&format!("- `{}`: {}\n", setup.name(), setup.describe()));
    }
    md.push('\n');
    md.push_str(&report::tables(&cells, &sizes));
    md.push_str("#### Targets\n\n");
    md.push_str(&report::targets(&cells, &sizes));
    md.push_str("\n#### Store and verifier processes\n\n");
    md.push_str(&report::footprint(&footprint));
    if !notes.is_empty() {
        md.push_str("\n#### Notes\n\n");
        for note in &notes {
            md.push_str(&format!("- {}\n", note.replace('\n', " ")));
        }
    }
    let md_path = args.out.join(format!("results-{stamp}.md"));
    std::fs::write(&md_path, &md)?;
    println!("{md}");
    eprintln!("bench: wrote {} and {}", md_path.display(), csv_path.display());
    Ok(())
}

fn summary(r: &storm::StormResult) -> String {
    format!(
        "{}/{} connected, all in {:.2} s (spawning {:.2} s), {:.2} ms CPU/login, ping p50 {:.2} \
         p99 {:.1} max {:.0} ms, {} of {} pings lost",
        r.connected,
        r.n,
        r.all_connected_s,
        r.spawn_s,
        r.cpu_ms_per_login(),
        r.stall.p50_ms,
        r.stall.p99_ms,
        r.stall.max_ms,
        r.stall.lost,
        r.stall.sent
    )
}

/// One bench at a time on this machine: two storms at once would measure each other.
fn exclusive_lock() -> Result<std::fs::File> {
    let path = Path::new("/run/lock/ovpn-mfa-bench.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    // SAFETY: flock on a descriptor we own; released when the file is closed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    anyhow::ensure!(rc == 0, "another ovpn-mfa-bench is running ({} is locked)", path.display());
    Ok(file)
}

/// Hundreds of clients and their logs: lift the soft descriptor limit to the hard one.
fn raise_fd_limit() {
    // SAFETY: plain getrlimit/setrlimit on a struct we own.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Whether `path` is a shared object exporting `openvpn_plugin_open_v3`.
fn exports_plugin_v3(path: &Path) -> bool {
    if !path.exists() {
        return false;
    }
    std::process::Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(path)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("openvpn_plugin_open_v3"))
        .unwrap_or(false)
}

/// Compiles the no-op plugin (bench/noop-plugin.c) into `dir`.
fn build_noop_plugin(dir: &Path) -> Result<PathBuf> {
    let source = dir.join("noop-plugin.c");
    std::fs::write(&source, include_str!("../noop-plugin.c"))?;
    let output = dir.join("noop-plugin.so");
    setups::run(
        std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&output)
            .arg(&source),
    )
    .context("compile the no-op plugin (needs cc and /usr/include/openvpn/openvpn-plugin.h)")?;
    Ok(output)
}

fn machine_stamp() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y%m%d-%H%M%S"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "now".into())
}
