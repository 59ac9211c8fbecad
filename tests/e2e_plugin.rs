//! End-to-end tests of the ovpn-mfa plugin inside a real OpenVPN 2.6 server.
//!
//! The store is set up through the CLI (`init`, `user add`), the server configuration comes
//! from `openvpn server-config --plugin`, and codes come from `oathtool`, as on a phone.
//! Covered here: what the plugin writes to OpenVPN's log, privilege drop to nobody, `daemon`,
//! SIGHUP, SIGUSR1, many clients. The decisions themselves (input formats, replay,
//! renegotiation with tokens, a user disabled mid-session, a locked store) are the auth-path
//! suite's, which runs every test through the plugin too (`tests/e2e_auth.rs`, `plugin::`).
//!
//! Needs root, openvpn and oathtool (see `support::require_root`), and builds the plugin with
//! `cargo build -p ovpn-mfa-plugin` if it is not next to the ovpn-mfa binary yet.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::{ClientOpts, Lab, ServerOpts, TunMode};

const BIN: &str = env!("CARGO_BIN_EXE_ovpn-mfa");
const CONNECT: Duration = Duration::from_secs(40);

// ---------------------------------------------------------------------------------------
// The tests

#[test]
fn codes_and_passwords_are_checked_inside_openvpn() {
    let mut lab = Lab::new();
    let mfa = Mfa::init(&lab);
    let alice = mfa.add_user("alice", None);
    let bob = mfa.add_user("bob", None);
    let carol = mfa.add_user("carol", Some("carol's long password"));
    let lines = mfa.plugin_lines();
    assert!(!lines.iter().any(|l| l.starts_with("script-security")), "{lines:?}");
    lab.start_server(opts(&lines));
    lab.wait_server_log("PLUGIN ovpn-mfa: ready: store=", 1, CONNECT).unwrap();

    let client = lab.start_client(ClientOpts::new("alice", code_now(&alice)));
    assert_connects_and_pings(&lab, &client);

    let wrong = lab.start_client(ClientOpts::new("bob", wrong_code(&bob)).tun(TunMode::NoExec));
    wrong.wait_auth_failed(CONNECT).unwrap();
    assert_eq!(wrong.count(support::INIT_DONE), 0);

    // A password makes the plugin defer: a worker hashes it and writes the control file.
    let password = format!("carol's long password{}", code_now(&carol));
    let deferred = lab.start_client(ClientOpts::new("carol", password).tun(TunMode::NoExec));
    deferred.wait_connected(CONNECT).unwrap();
    let row = mfa.wait_for_row("carol", "accepted");
    assert_eq!(row["method"], "concat", "{row:#}");
    lab.wait_server_log("PLUGIN_CALL: POST", 1, CONNECT).unwrap();
    let log = lab.server_log();
    assert!(log.contains("AUTH_USER_PASS_VERIFY status=2"), "no deferred call in:\n{log}");
    assert!(log.contains("PLUGIN ovpn-mfa: auth accepted user=alice"), "{log}");
    assert!(log.contains("PLUGIN ovpn-mfa: auth refused user=bob"), "{log}");
    assert!(!log.contains("carol's long password"), "the password reached the log");
}

#[test]
fn the_plugin_keeps_working_after_openvpn_drops_privileges_and_on_sigusr1() {
    let mut lab = Lab::new();
    let mfa = Mfa::init(&lab);
    let alice = mfa.add_user("alice", None);
    let carol = mfa.add_user("carol", Some("carol's long password"));
    let erin = mfa.add_user("erin", None);
    // Needed only when a connection is opened again after the drop (see docs/plugin.md).
    chown_to_nobody(&mfa.dir);
    let server = opts(&mfa.plugin_lines())
        .line("user nobody")
        .line("group nogroup")
        .line("persist-key")
        .line("persist-tun");
    lab.start_server(server);
    let pid = server_pid(&lab.path("server.pid"));
    assert_eq!(process_uid(pid), 65534, "OpenVPN did not become nobody");

    let client = lab.start_client(ClientOpts::new("alice", code_now(&alice)));
    assert_connects_and_pings(&lab, &client);
    let password = format!("carol's long password{}", code_now(&carol));
    let deferred = lab.start_client(ClientOpts::new("carol", password).tun(TunMode::NoExec));
    deferred.wait_connected(CONNECT).unwrap();

    // SIGUSR1 restarts OpenVPN's instance but keeps plugins loaded.
    signal(pid, libc::SIGUSR1);
    lab.wait_server_log(support::INIT_DONE, 2, CONNECT).unwrap();
    let late = lab.start_client(ClientOpts::new("erin", code_now(&erin)).tun(TunMode::NoExec));
    late.wait_connected(CONNECT).unwrap();
    let log = lab.server_log();
    assert_eq!(log.matches("PLUGIN ovpn-mfa: ready:").count(), 1, "reopened on SIGUSR1:\n{log}");
    assert!(!log.contains("PLUGIN ovpn-mfa: auth failed"), "{log}");
}

#[test]
fn a_daemon_server_reopens_the_plugin_on_sighup_and_serves_many_clients() {
    let mut lab = Lab::new();
    let mfa = Mfa::init(&lab);
    let names: Vec<String> = (0..8).map(|n| format!("user{n}")).collect();
    let secrets: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(n, name)| mfa.add_user(name, (n % 2 == 1).then_some("a long password")))
        .collect();
    let (alice, bob) = (mfa.add_user("alice", None), mfa.add_user("bob", None));

    // The lab writes the configuration; the same file then runs as a daemon.
    lab.start_server(opts(&mfa.plugin_lines()));
    lab.stop_server();
    let daemon = Daemon::start(&lab);
    daemon.wait_for(support::INIT_DONE, 1);

    let client = lab.start_client(ClientOpts::new("alice", code_now(&alice)));
    assert_connects_and_pings(&lab, &client);

    // SIGHUP closes the plugin (joining its threads) and opens it again.
    signal(daemon.pid, libc::SIGHUP);
    daemon.wait_for(support::INIT_DONE, 2);
    daemon.wait_for("PLUGIN ovpn-mfa: ready:", 2);
    assert!(daemon.log().contains("PLUGIN ovpn-mfa: stopped"), "{}", daemon.log());
    let after_hup = lab.start_client(ClientOpts::new("bob", code_now(&bob)).tun(TunMode::NoExec));
    after_hup.wait_connected(CONNECT).unwrap();

    // Many clients at once, half of them with passwords (deferred to the workers).
    let clients: Vec<_> = names
        .iter()
        .zip(&secrets)
        .enumerate()
        .map(|(n, (name, secret))| {
            let password = match n % 2 {
                1 => format!("a long password{}", code_now(secret)),
                _ => code_now(secret),
            };
            lab.start_client(ClientOpts::new(name.as_str(), password).tun(TunMode::NoExec))
        })
        .collect();
    for (name, client) in names.iter().zip(&clients) {
        client.wait_connected(CONNECT).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(daemon.is_running());
}

// ---------------------------------------------------------------------------------------
// ovpn-mfa through its CLI

struct Mfa {
    dir: PathBuf,
}

impl Mfa {
    /// `ovpn-mfa init` in the lab's directory.
    fn init(lab: &Lab) -> Mfa {
        let mfa = Mfa { dir: lab.path("mfa") };
        mfa.run(&["init"]);
        mfa
    }

    fn run_with(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut command = Command::new(BIN);
        command.arg("--dir").arg(&self.dir).args(args).env_remove("OVPN_MFA_DIR");
        let out = support::output(&mut command, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "ovpn-mfa {args:?} failed: {stderr}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn run(&self, args: &[&str]) -> String {
        self.run_with(args, None)
    }

    /// `user add --json`; returns the base32 secret an app would scan.
    fn add_user(&self, name: &str, password: Option<&str>) -> String {
        let mut args = vec!["user", "add", name, "--json"];
        if password.is_some() {
            args.extend(["--method", "concat", "--password-stdin"]);
        }
        let out = self.run_with(&args, password.map(|p| format!("{p}\n")).as_deref());
        let enrolment: Value = serde_json::from_str(&out).expect("JSON from user add");
        enrolment["secret"].as_str().expect("secret").to_owned()
    }

    /// `openvpn server-config --plugin`, without comments, as an admin pastes it.
    fn plugin_lines(&self) -> Vec<String> {
        let so = support::plugin_so();
        let text = self.run(&["openvpn", "server-config", "--plugin"]);
        let lines: Vec<String> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        let expected = format!("plugin \"{}\" \"{}\"", so.display(), self.dir.display());
        assert!(lines.contains(&expected), "no {expected:?} in {lines:?}");
        lines
    }

    fn auth_rows(&self) -> Vec<Value> {
        let rows: Vec<Value> =
            serde_json::from_str(&self.run(&["audit", "--json", "--limit", "1000"])).unwrap();
        rows.into_iter().filter(|r| r["kind"] == "auth").collect()
    }

    fn wait_for_row(&self, user: &str, decision: &str) -> Value {
        let mut found = None;
        support::wait_until(Duration::from_secs(20), || {
            found = self
                .auth_rows()
                .into_iter()
                .find(|r| r["user"] == user && r["decision"] == decision);
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no {decision} row for {user}: {:#?}", self.auth_rows()))
    }
}

fn opts(lines: &[String]) -> ServerOpts {
    lines.iter().cloned().fold(ServerOpts::new(), ServerOpts::line)
}

fn code_now(secret: &str) -> String {
    let out = Command::new("oathtool").args(["--totp", "-b", secret]).output();
    let out = out.expect("the end-to-end tests need oathtool (apt-get install oathtool)");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A six-digit code that is none of the codes near now.
fn wrong_code(secret: &str) -> String {
    let now = code_now(secret);
    let candidate = if now == "000000" { "111111" } else { "000000" };
    candidate.to_owned()
}

fn assert_connects_and_pings(lab: &Lab, client: &support::Client) {
    client.wait_connected(CONNECT).unwrap();
    let ping = lab.ping_from_client(client, 3);
    assert!(ping.received >= 2, "pings lost in the tunnel:\n{}", ping.output);
}

fn server_pid(pid_file: &Path) -> i32 {
    let mut pid = None;
    support::wait_until(Duration::from_secs(10), || {
        pid = std::fs::read_to_string(pid_file).ok().and_then(|t| t.trim().parse().ok());
        pid.is_some()
    });
    pid.unwrap_or_else(|| panic!("no pid in {}", pid_file.display()))
}

fn process_uid(pid: i32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

fn signal(pid: i32, signal: libc::c_int) {
    // SAFETY: a plain syscall on a process this test started.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill {pid}: {}", std::io::Error::last_os_error());
}

/// Gives nobody the store directory and its files (uid/gid 65534 on Debian).
fn chown_to_nobody(dir: &Path) {
    let status = Command::new("chown").args(["-R", "nobody:nogroup"]).arg(dir).status().unwrap();
    assert!(status.success(), "chown failed");
}

/// The lab's server configuration run with `--daemon`; killed when dropped.
struct Daemon {
    pid: i32,
    log: PathBuf,
}

impl Daemon {
    fn start(lab: &Lab) -> Daemon {
        let (log, pid_file) = (lab.path("daemon.log"), lab.path("daemon.pid"));
        let status = Command::new("ip")
            .args(["netns", "exec", lab.server_ns(), "openvpn", "--config"])
            .arg(lab.path("server.conf"))
            .arg("--daemon")
            .arg("--log")
            .arg(&log)
            .arg("--writepid")
            .arg(&pid_file)
            .status()
            .expect("start openvpn --daemon");
        assert!(status.success(), "openvpn --daemon failed to start");
        Daemon { pid: server_pid(&pid_file), log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for(&self, needle: &str, count: usize) {
        support::wait_for_text(&self.log, needle, count, CONNECT).unwrap();
    }

    fn is_running(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: a plain syscall on the daemon this test started.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        support::wait_until(Duration::from_secs(5), || !self.is_running());
    }
}
