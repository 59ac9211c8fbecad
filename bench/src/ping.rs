//! The data-plane probe: `ping` every 10 ms through an established tunnel while a storm
//! runs, and the round-trip times of the probes sent inside the storm's window.
//!
//! OpenVPN 2.x forwards packets on the same thread that runs TLS handshakes, plugins and
//! scripts, so anything that holds that thread shows up here as a late reply. `ping`
//! stamps each request, so a reply that waited in a socket buffer still reports the full
//! delay.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const INTERVAL: Duration = Duration::from_millis(10);

pub struct Pinger {
    child: Child,
    out: PathBuf,
}

impl Pinger {
    /// Starts pinging `target` from namespace `ns` out of device `dev`.
    pub fn start(ns: &str, dev: &str, target: &str, out: &Path) -> Result<Pinger> {
        let file =
            std::fs::File::create(out).with_context(|| format!("create {}", out.display()))?;
        let interval = format!("{}", INTERVAL.as_secs_f64());
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "ping", "-D", "-n", "-i", &interval, "-I", dev, target])
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("start ping")?;
        Ok(Pinger { child, out: out.to_owned() })
    }

    /// Stops the pinger (SIGINT, so it prints its summary) and reads what it saw.
    pub fn stop(mut self) -> Result<PingLog> {
        self.interrupt_and_reap();
        let text = std::fs::read_to_string(&self.out)
            .with_context(|| format!("read {}", self.out.display()))?;
        Ok(PingLog::parse(&text))
    }

    fn interrupt_and_reap(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: a signal to our own child, which has not been reaped yet.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
            for _ in 0..40 {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        self.interrupt_and_reap();
    }
}

/// One answered probe: when it was sent (Unix seconds) and its round-trip time.
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    pub seq: u32,
    pub sent_at: f64,
    pub rtt_ms: f64,
}

#[derive(Debug, Default)]
pub struct PingLog {
    pub replies: Vec<Reply>,
    pub transmitted: u32,
}

/// Round-trip statistics of the probes sent inside a window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stall {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Probes sent inside the window (answered or not).
    pub sent: u32,
    /// Probes sent inside the window that never got an answer.
    pub lost: u32,
}

impl PingLog {
    /// Reads `ping -D` output: `[1733250000.123456] 64 bytes from A: icmp_seq=3 ttl=64
    /// time=0.321 ms`, and the `N packets transmitted` summary.
    pub fn parse(text: &str) -> PingLog {
        let mut log = PingLog::default();
        for line in text.lines() {
            if let Some(reply) = parse_reply(line) {
                log.replies.push(reply);
            } else if line.contains("packets transmitted") {
                log.transmitted =
                    line.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or_default();
            }
        }
        log.replies.sort_by_key(|r| r.seq);
        log.replies.dedup_by_key(|r| r.seq);
        log
    }

    /// Statistics over probes sent in `[from, to]` (Unix seconds). A lost probe's send time
    /// is interpolated from its answered neighbours.
    pub fn stall(&self, from: f64, to: f64) -> Stall {
        let inside = |t: f64| t >= from && t <= to;
        let mut rtts: Vec<f64> =
            self.replies.iter().filter(|r| inside(r.sent_at)).map(|r| r.rtt_ms).collect();
        let mut lost = 0;
        for pair in self.replies.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let gap = b.seq - a.seq;
            for k in 1..gap {
                let t = a.sent_at + (b.sent_at - a.sent_at) * f64::from(k) / f64::from(gap);
                if inside(t) {
                    lost += 1;
                }
            }
        }
        let sent = rtts.len() as u32 + lost;
        rtts.sort_by(f64::total_cmp);
        Stall {
            p50_ms: percentile(&rtts, 50.0),
            p99_ms: percentile(&rtts, 99.0),
            max_ms: rtts.last().copied().unwrap_or(f64::NAN),
            sent,
            lost,
        }
    }
}

fn parse_reply(line: &str) -> Option<Reply> {
    let stamp = line.strip_prefix('[')?.split(']').next()?.parse::<f64>().ok()?;
    let field = |name: &str| -> Option<&str> {
        let start = line.find(name)? + name.len();
        line[start..].split_whitespace().next()
    };
    let seq = field("icmp_seq=")?.parse().ok()?;
    let rtt_ms: f64 = field("time=")?.parse().ok()?;
    Some(Reply { seq, sent_at: stamp - rtt_ms / 1000.0, rtt_ms })
}

/// Nearest-rank percentile of sorted values; NaN when there are none.
pub fn percentile(sorted: &[f64], pct: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (pct / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_and_losses_inside_the_window_are_counted() {
        let text = "\
PING 10.0.0.1 (10.0.0.1) from 10.0.0.2 tun1: 56(84) bytes of data.
[100.010000] 64 bytes from 10.0.0.1: icmp_seq=1 ttl=64 time=10.0 ms
[100.030000] 64 bytes from 10.0.0.1: icmp_seq=2 ttl=64 time=20.0 ms
[100.041000] 64 bytes from 10.0.0.1: icmp_seq=5 ttl=64 time=1.00 ms

--- 10.0.0.1 ping statistics ---
5 packets transmitted, 3 received, 40% packet loss, time 40ms
";
        let log = PingLog::parse(text);
        assert_eq!(log.transmitted, 5);
        assert_eq!(log.replies.len(), 3);
        let stall = log.stall(99.0, 101.0);
        assert_eq!((stall.sent, stall.lost), (5, 2));
        assert_eq!(stall.max_ms, 20.0);
        assert_eq!(stall.p50_ms, 10.0);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&values[..1], 99.0), 1.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
