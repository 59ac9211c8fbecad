//! Network namespace plumbing: create, enter, list and destroy the namespaces of a lab.
//!
//! Only namespaces whose names start with [`NS_PREFIX`] are ever deleted here, and the
//! veth pair is created directly inside the lab's two namespaces, so nothing is added to
//! or removed from the host's own network namespace.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Output};

/// Prefix of every namespace this harness creates: `ovmfa-e2e-<pid>-<lab>-<role>`.
pub const NS_PREFIX: &str = "ovmfa-e2e-";

/// Runs `args` inside namespace `ns` (`ip netns exec NS ARGS...`) and returns its output,
/// whatever the exit status.
pub fn netns_exec(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run `ip netns exec {ns} {}`: {e}", args.join(" ")))
}

/// Like [`netns_exec`], but panics unless the command succeeds; returns its stdout.
pub fn netns_run(ns: &str, args: &[&str]) -> String {
    let out = netns_exec(ns, args);
    assert!(
        out.status.success(),
        "`ip netns exec {ns} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Names of all network namespaces on the host, as `ip netns list` shows them.
pub fn netns_list() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("run ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Runs `f` on a fresh thread that has joined namespace `ns`, so sockets it opens live
/// there. The calling thread's namespace is untouched.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = Path::new("/run/netns").join(ns);
    let handle = File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns only reads the descriptor, which stays open for the call,
                // and it changes the namespace of this short-lived thread alone.
                let rc = unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns into {ns}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

pub(crate) fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kills whatever still runs in `ns` (script children of a killed OpenVPN, say) and
/// deletes it. Best effort and silent: this runs from `Drop`, possibly during a panic.
pub(crate) fn destroy(ns: &str) {
    if !netns_list().iter().any(|name| name == ns) {
        return;
    }
    kill_all(ns);
    let _ = Command::new("ip").args(["netns", "delete", ns]).output();
}

/// Kills every process in `ns`. A killed OpenVPN leaves behind what it forked there: the
/// auth-pam plugin's background process, deferred-auth children, scripts. Best effort.
pub(crate) fn kill_all(ns: &str) {
    let Ok(pids) = Command::new("ip").args(["netns", "pids", ns]).output() else {
        return;
    };
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<libc::pid_t>() {
            // SAFETY: plain syscall on a pid read from our own namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Deletes namespaces left behind by earlier test processes that died without running
/// their guards (SIGKILL, abort). A namespace is stale when the process id in its name no
/// longer exists; namespaces of live processes, including parallel test runs, are left
/// alone.
pub(crate) fn sweep_stale() {
    for name in netns_list() {
        let Some(rest) = name.strip_prefix(NS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            destroy(&name);
        }
    }
}
