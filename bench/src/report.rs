//! Medians over runs, the markdown tables, the ratios and the targets.

use crate::footprint::Footprint;
use crate::setups::Setup;
use crate::storm::StormResult;
use std::fmt::Write as _;

/// Median of unsorted values; NaN when there are none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The medians of one configuration at one storm size.
#[derive(Debug, Clone)]
pub struct Cell {
    pub setup: Setup,
    pub n: usize,
    /// Runs in which every client connected (only these enter the medians).
    pub complete: usize,
    pub runs: usize,
    pub cpu_ms: f64,
    pub all_s: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub lost_pct: f64,
    /// Probes sent during the storm (how many samples the percentiles rest on).
    pub pings: f64,
}

pub fn cells(results: &[StormResult], setups: &[Setup], sizes: &[usize]) -> Vec<Cell> {
    let mut cells = Vec::new();
    for &n in sizes {
        for &setup in setups {
            let all: Vec<&StormResult> =
                results.iter().filter(|r| r.setup == setup && r.n == n).collect();
            if all.is_empty() {
                continue;
            }
            let ok: Vec<&StormResult> = all.iter().copied().filter(|r| r.complete()).collect();
            let m = |f: &dyn Fn(&StormResult) -> f64| {
                median(&ok.iter().map(|r| f(r)).collect::<Vec<_>>())
            };
            cells.push(Cell {
                setup,
                n,
                complete: ok.len(),
                runs: all.len(),
                cpu_ms: m(&|r| r.cpu_ms_per_login()),
                all_s: m(&|r| r.all_connected_s),
                p50: m(&|r| r.stall.p50_ms),
                p99: m(&|r| r.stall.p99_ms),
                max: m(&|r| r.stall.max_ms),
                lost_pct: m(&|r| 100.0 * f64::from(r.stall.lost) / f64::from(r.stall.sent.max(1))),
                pings: m(&|r| f64::from(r.stall.sent)),
            });
        }
    }
    cells
}

fn find(cells: &[Cell], setup: Setup, n: usize) -> Option<&Cell> {
    cells.iter().find(|c| c.setup == setup && c.n == n && c.complete > 0)
}

fn num(v: f64, decimals: usize) -> String {
    if v.is_nan() {
        "n/a".into()
    } else {
        format!("{v:.decimals$}")
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() || b == 0.0 {
        "n/a".into()
    } else {
        format!("{:.2}x", a / b)
    }
}

/// The tables of absolute numbers and ratios, one pair per storm size.
pub fn tables(cells: &[Cell], sizes: &[usize]) -> String {
    let mut out = String::new();
    for &n in sizes {
        let row_cells: Vec<&Cell> = cells.iter().filter(|c| c.n == n).collect();
        if row_cells.is_empty() {
            continue;
        }
        let floor = find(cells, Setup::Floor, n);
        let pam = find(cells, Setup::PamSync, n);
        let _ = writeln!(out, "#### Storm of {n} clients\n");
        let _ = writeln!(
            out,
            "| configuration | complete runs | server CPU ms/login | all connected (s) | \
             ping p50 / p99 / max (ms) | pings sent (lost) |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for c in &row_cells {
            let _ = writeln!(
                out,
                "| {} | {}/{} | {} | {} | {} / {} / {} | {} ({} %) |",
                c.setup.name(),
                c.complete,
                c.runs,
                num(c.cpu_ms, 2),
                num(c.all_s, 2),
                num(c.p50, 2),
                num(c.p99, 1),
                num(c.max, 0),
                num(c.pings, 0),
                num(c.lost_pct, 1),
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| configuration | CPU added over floor (ms/login) | CPU vs floor | CPU vs pam-sync | \
             all connected vs floor | vs pam-sync | p99 vs floor | p99 vs pam-sync |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        let get = |c: Option<&Cell>, f: fn(&Cell) -> f64| c.map(f).unwrap_or(f64::NAN);
        for c in &row_cells {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                c.setup.name(),
                num(c.cpu_ms - get(floor, |f| f.cpu_ms), 2),
                ratio(c.cpu_ms, get(floor, |f| f.cpu_ms)),
                ratio(c.cpu_ms, get(pam, |f| f.cpu_ms)),
                ratio(c.all_s, get(floor, |f| f.all_s)),
                ratio(c.all_s, get(pam, |f| f.all_s)),
                ratio(c.p99, get(floor, |f| f.p99)),
                ratio(c.p99, get(pam, |f| f.p99)),
            );
        }
        let _ = writeln!(out);
    }
    out
}

/// One line per target and storm size: met or missed, and by how much. Against the floor and
/// synchronous PAM for ovpn-mfa with code-only users (script and plugin), and against the
/// no-op plugin for the ovpn-mfa plugin.
pub fn targets(cells: &[Cell], sizes: &[usize]) -> String {
    let mut out = String::new();
    for &n in sizes {
        let floor = find(cells, Setup::Floor, n);
        let pam = find(cells, Setup::PamSync, n);
        for ours in [Setup::ScriptOtp, Setup::PluginOtp] {
            let name = ours.name();
            let Some(((floor, pam), otp)) = floor.zip(pam).zip(find(cells, ours, n)) else {
                let _ = writeln!(
                    out,
                    "- N={n}, {name}: not judged (floor, pam-sync and {name} all need complete \
                     runs)."
                );
                continue;
            };
            let added_otp = otp.cpu_ms - floor.cpu_ms;
            let added_pam = pam.cpu_ms - floor.cpu_ms;
            let limit = added_pam / 2.0;
            let _ = writeln!(
                out,
                "- N={n}, {name} CPU: adds {} ms/login over the floor; synchronous PAM adds {} \
                 ms; the target is at most half of that ({} ms): **{}**{}.",
                num(added_otp, 2),
                num(added_pam, 2),
                num(limit, 2),
                met(added_otp <= limit),
                missed_by(added_otp, limit),
            );
            let limit = floor.p99 * 1.10;
            let _ = writeln!(
                out,
                "- N={n}, {name} stall: p99 {} ms vs floor p99 {} ms (limit +10 % = {} ms): \
                 **{}**{}.",
                num(otp.p99, 1),
                num(floor.p99, 1),
                num(limit, 1),
                met(otp.p99 <= limit),
                missed_by(otp.p99, limit),
            );
        }
        match (find(cells, Setup::NoopPlugin, n), find(cells, Setup::PluginOtp, n)) {
            (Some(noop), Some(plugin)) => {
                let _ = writeln!(
                    out,
                    "- N={n}, plugin-otp CPU: {} vs no-op plugin {} ms/login (limit {}): **{}**{}.",
                    num(plugin.cpu_ms, 2),
                    num(noop.cpu_ms, 2),
                    num(noop.cpu_ms * 1.1, 2),
                    met(plugin.cpu_ms <= noop.cpu_ms * 1.1),
                    missed_by(plugin.cpu_ms, noop.cpu_ms * 1.1),
                );
                let _ = writeln!(
                    out,
                    "- N={n}, plugin-otp stall: p99 {} vs no-op plugin {} ms (limit {}): **{}**{}.",
                    num(plugin.p99, 1),
                    num(noop.p99, 1),
                    num(noop.p99 * 1.1, 1),
                    met(plugin.p99 <= noop.p99 * 1.1),
                    missed_by(plugin.p99, noop.p99 * 1.1),
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "- N={n}, plugin-otp vs no-op plugin: not judged (both need complete runs)."
                );
            }
        }
    }
    out
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "missed"
    }
}

fn missed_by(value: f64, limit: f64) -> String {
    if value <= limit || limit.is_nan() || limit <= 0.0 {
        String::new()
    } else {
        format!(
            " by {} ({:.0} % over the limit)",
            num(value - limit, 2),
            (value / limit - 1.0) * 100.0
        )
    }
}

pub fn footprint(f: &Footprint) -> String {
    let kib = |b: u64| format!("{:.0} KiB", b as f64 / 1024.0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| store with {} users | main file | WAL | main + WAL |",
        crate::footprint::USERS
    );
    let _ = writeln!(out, "|---|---|---|---|");
    for (what, s) in [
        ("enrolled (one transaction per user, like `user add`)", f.enrolled),
        ("after each user logged in once", f.after_logins),
        ("the same, checkpointed", f.checkpointed),
    ] {
        let _ = writeln!(out, "| {what} | {} | {} | {} |", kib(s.db), kib(s.wal), kib(s.total()));
    }
    let _ = writeln!(out);
    let samples = f.processes.first().map(|p| p.samples).unwrap_or(0);
    let _ = writeln!(
        out,
        "| process, median of {samples} runs | peak RSS (KiB) | CPU (ms) | wall (ms) |"
    );
    let _ = writeln!(out, "|---|---|---|---|");
    for p in &f.processes {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            p.what,
            p.max_rss_kib,
            num(p.cpu_ms, 2),
            num(p.wall_ms, 2)
        );
    }
    out
}

/// Every storm, for the record.
pub fn csv(results: &[StormResult]) -> String {
    let mut out = String::from(
        "run,n,setup,cpu_ms_per_login,cpu_ms_total,connected,failed,spawn_s,all_connected_s,\
         median_connected_s,ping_p50_ms,ping_p99_ms,ping_max_ms,pings_sent,pings_lost,\
         server_hwm_kib,disturbed\n",
    );
    for r in results {
        let _ = writeln!(
            out,
            "{},{},{},{:.3},{:.1},{},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{},{},{},{}",
            r.run,
            r.n,
            r.setup.name(),
            r.cpu_ms_per_login(),
            r.cpu_ns as f64 / 1e6,
            r.connected,
            r.failed,
            r.spawn_s,
            r.all_connected_s,
            r.median_connected_s,
            r.stall.p50_ms,
            r.stall.p99_ms,
            r.stall.max_ms,
            r.stall.sent,
            r.stall.lost,
            r.server_hwm_kib,
            r.disturbed,
        );
    }
    out
}
