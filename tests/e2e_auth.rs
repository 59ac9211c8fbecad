//! End-to-end tests of ovpn-mfa as the verifier of a real OpenVPN 2.6 server, through both
//! front ends: every test runs as `script::NAME` (the `verify` script) and `plugin::NAME`
//! (the in-process plugin), each with the server lines `openvpn server-config` prints for it.
//!
//! Every test sets up a store the way an administrator would (`init`, `user add --json`,
//! `openvpn server-config`), computes codes with `oathtool` the way a phone would, and
//! connects real clients through the network namespaces of a [`Lab`] (see `support/`).
//! The audit log (`audit --json`) is checked for the record each decision leaves.
//!
//! Needs root, openvpn and oathtool; see `support::require_root`. The plugin is built with
//! `cargo build -p ovpn-mfa-plugin` if needed (`support::plugin_so`). The renegotiation
//! tests dominate the run time (about a minute each): they wait for real renegotiations.

mod support;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use support::{Client, ClientOpts, Lab, ServerOpts, TunMode};

const BIN: &str = env!("CARGO_BIN_EXE_ovpn-mfa");

/// How OpenVPN reaches ovpn-mfa. Both make the same decisions from the same core; they
/// differ in what OpenVPN and ovpn-mfa write to the server log, and in what OpenVPN itself
/// checks before asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FrontEnd {
    /// `auth-user-pass-verify "ovpn-mfa verify" via-file`: a process per login; a password
    /// login exits 2 and a detached worker answers.
    Script,
    /// `plugin libovpn_mfa_plugin.so DIR`: inside OpenVPN; a password login returns
    /// FUNC_DEFERRED and one of the plugin's worker threads answers.
    Plugin,
}

/// Declares every test once per front end: `script::NAME` and `plugin::NAME` run `NAME`
/// with [`FrontEnd::Script`] and [`FrontEnd::Plugin`].
macro_rules! for_both_front_ends {
    ($($name:ident),* $(,)?) => {
        mod script {
            $(
                #[test]
                fn $name() {
                    super::$name(super::FrontEnd::Script)
                }
            )*
        }
        mod plugin {
            $(
                #[test]
                fn $name() {
                    super::$name(super::FrontEnd::Plugin)
                }
            )*
        }
    };
}

for_both_front_ends! {
    a_code_alone_in_the_password_field_connects_and_carries_traffic,
    a_password_followed_by_the_code_connects_and_carries_traffic,
    a_static_challenge_response_connects_and_carries_traffic,
    a_wrong_code_is_refused_and_audited,
    a_code_replayed_by_a_second_connection_is_refused_as_replay,
    two_simultaneous_logins_with_one_code_let_exactly_one_in,
    unknown_users_are_refused_and_audited_without_stalling_the_tunnels,
    a_certificate_of_another_user_is_refused_and_audited,
    a_client_survives_renegotiations_only_with_auth_gen_token,
    a_user_disabled_while_connected_is_refused_at_the_next_renegotiation,
    malformed_logins_are_refused_while_the_server_and_connected_clients_carry_on,
    password_logins_are_deferred_to_the_worker_and_still_connect,
    logins_are_refused_within_the_deadline_while_the_store_stays_locked,
}
const CONNECT: Duration = Duration::from_secs(30);
const REFUSED: Duration = Duration::from_secs(30);

/// The server's renegotiation period in the renegotiation tests. OpenVPN's server starts a
/// renegotiation somewhat before it (18 to 20 s here).
const RENEG_SEC: u64 = 20;

/// The `[openvpn]` section of config.toml; `openvpn server-config` turns it into
/// `hand-window` and `auth-gen-token` lines.
#[derive(Clone, Copy, Debug)]
struct Timing {
    hand_window: u64,
    token_renewal: u64,
    auth_deadline: u64,
}

/// The shipped defaults.
const DEFAULT_TIMING: Timing = Timing { hand_window: 60, token_renewal: 3600, auth_deadline: 30 };

/// Short enough for renegotiations within a test. OpenVPN refuses to start unless the token
/// renewal is at least twice the hand-window; ovpn-mfa wants the deadline below it.
const FAST_RENEG: Timing = Timing { hand_window: 10, token_renewal: 20, auth_deadline: 5 };

/// An ovpn-mfa configuration and store in the lab's directory, driven through the real CLI,
/// and the front end the server is to use.
struct Mfa {
    dir: PathBuf,
    front: FrontEnd,
}

impl Mfa {
    /// `ovpn-mfa init`, then the `[openvpn]` timing written into config.toml.
    fn init(lab: &Lab, front: FrontEnd, timing: Timing) -> Mfa {
        let mfa = Mfa { dir: lab.path("mfa"), front };
        mfa.run(&["init"]);
        let config = format!(
            "[openvpn]\nauth_deadline_secs = {}\nhand_window_secs = {}\ntoken_renewal_secs = {}\n",
            timing.auth_deadline, timing.hand_window, timing.token_renewal
        );
        std::fs::write(mfa.dir.join("config.toml"), config).expect("write config.toml");
        mfa
    }

    fn command(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = Command::new(BIN);
        command.arg("--dir").arg(&self.dir).args(args);
        command.env_remove("OVPN_MFA_DIR").env_remove("OVPN_MFA_LOG");
        support::output(&mut command, stdin)
    }

    /// Runs a command that must succeed and returns its standard output.
    fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.command(args, stdin);
        assert!(
            out.status.success(),
            "`ovpn-mfa {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    fn run(&self, args: &[&str]) -> String {
        self.run_with_stdin(args, None)
    }

    /// `user add NAME --json --method METHOD [--password-stdin]`; returns the base32 secret
    /// the user would scan into an app.
    fn add_user(&self, name: &str, password: Option<&str>, method: &str) -> String {
        let mut args = vec!["user", "add", name, "--json", "--method", method];
        if password.is_some() {
            args.push("--password-stdin");
        }
        let stdin = password.map(|p| format!("{p}\n"));
        let out = self.run_with_stdin(&args, stdin.as_deref());
        let enrolment: Value = serde_json::from_str(&out).expect("JSON from user add");
        assert_eq!(enrolment["user"], name);
        assert_eq!(enrolment["digits"], 6);
        let secret = enrolment["secret"].as_str().expect("secret in the JSON");
        secret.to_owned()
    }

    /// The lines `openvpn server-config` prints for the front end, comments left out: this
    /// test binary as the `verify` script, or the plugin built next to it.
    fn server_lines(&self) -> Vec<String> {
        let so = support::plugin_so().display().to_string();
        let args = match self.front {
            FrontEnd::Script => vec!["openvpn", "server-config", "--binary", BIN],
            FrontEnd::Plugin => vec!["openvpn", "server-config", "--plugin", "--plugin-path", &so],
        };
        let lines: Vec<String> = self
            .run(&args)
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_owned)
            .collect();
        let (wanted, unwanted) = match self.front {
            FrontEnd::Script => ("auth-user-pass-verify ", "plugin "),
            FrontEnd::Plugin => ("plugin ", "auth-user-pass-verify "),
        };
        assert!(lines.iter().any(|l| l.starts_with(wanted)), "no {wanted:?} in {lines:?}");
        assert!(!lines.iter().any(|l| l.starts_with(unwanted)), "{unwanted:?} in {lines:?}");
        lines
    }

    /// The server configuration ovpn-mfa asks for, as an admin would paste it.
    fn server_opts(&self) -> ServerOpts {
        self.server_lines().into_iter().fold(ServerOpts::new(), ServerOpts::line)
    }

    /// Every login decision in the audit log, oldest first.
    fn auth_rows(&self) -> Vec<Value> {
        let out = self.run(&["audit", "--json", "--limit", "1000"]);
        let rows: Vec<Value> = serde_json::from_str(&out).expect("JSON from audit");
        rows.into_iter().filter(|row| row["kind"] == "auth").collect()
    }

    /// The auth row of `user` with `decision` and `reason`. The row is written before
    /// OpenVPN hears the answer, so a short wait is only for slow disks.
    fn wait_for_row(&self, user: &str, decision: &str, reason: &str) -> Value {
        self.wait_for_row_within(Duration::from_secs(5), user, decision, reason)
    }

    fn wait_for_row_within(
        &self,
        timeout: Duration,
        user: &str,
        decision: &str,
        reason: &str,
    ) -> Value {
        let mut found = None;
        support::wait_until(timeout, || {
            found = self.auth_rows().into_iter().find(|row| {
                row["user"] == user && row["decision"] == decision && row["reason"] == reason
            });
            found.is_some()
        });
        found.unwrap_or_else(|| {
            panic!(
                "no audit row user={user} decision={decision} reason={reason}; rows:\n{:#?}",
                self.auth_rows()
            )
        })
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

fn oathtool(args: &[&str]) -> String {
    let out = Command::new("oathtool").args(args).output().unwrap_or_else(|e| {
        panic!("the end-to-end tests need `oathtool` (apt-get install oathtool): {e}")
    });
    assert!(out.status.success(), "oathtool failed: {}", String::from_utf8_lossy(&out.stderr));
    let code = String::from_utf8(out.stdout).expect("UTF-8 from oathtool").trim().to_owned();
    assert_eq!(code.len(), 6, "unexpected oathtool output {code:?}");
    code
}

/// The code an authenticator app shows now for `secret`.
fn code_now(secret: &str) -> String {
    oathtool(&["--totp", "-b", secret])
}

/// The code an app would show at Unix time `at`.
fn code_at(secret: &str, at: u64) -> String {
    oathtool(&["--totp", "-b", "-N", &format!("@{at}"), secret])
}

/// Six digits that are not the code of any step near now, so no drift window accepts them.
fn wrong_code(secret: &str) -> String {
    let now = unix_now();
    let near: HashSet<String> = (0..=6).map(|k| code_at(secret, now - 90 + k * 30)).collect();
    (0..)
        .map(|i: u64| format!("{:06}", (424_242 + i * 137_137) % 1_000_000))
        .find(|candidate| !near.contains(candidate))
        .expect("a code outside the window")
}

/// The static-challenge response an OpenVPN client builds from a password and a code.
fn scrv1(password: &str, code: &str) -> String {
    format!("SCRV1:{}:{}", STANDARD.encode(password), STANDARD.encode(code))
}

/// What OpenVPN logs (at `verb 4`) when the plugin returns FUNC_DEFERRED for a login.
const PLUGIN_DEFERRED: &str = "PLUGIN_AUTH_USER_PASS_VERIFY status=2";

/// Waits for the tunnel and checks that it carries pings to the server.
fn assert_connects_and_pings(lab: &Lab, client: &Client) {
    client.wait_connected(CONNECT).unwrap();
    let ping = lab.ping_from_client(client, 3);
    assert_eq!(ping.transmitted, 3, "{}", ping.output);
    assert!(ping.received >= 2, "pings lost in the tunnel:\n{}", ping.output);
}

/// Waits for `AUTH_FAILED` and for the client to give up; it never had a tunnel.
fn assert_refused(client: &Client) {
    client.wait_auth_failed(REFUSED).unwrap();
    assert!(client.wait_exit(Duration::from_secs(10)), "client still running after AUTH_FAILED");
    assert_eq!(client.count(support::INIT_DONE), 0, "refused client got a tunnel");
}

fn assert_row(row: &Value, method: &str, session_state: &str) {
    assert_eq!(row["method"], method, "{row:#}");
    assert_eq!(row["session_state"], session_state, "{row:#}");
}

/// Pings the server through a client's tunnel every 0.2 s until stopped.
struct BackgroundPing {
    child: Child,
}

struct PingStats {
    transmitted: u32,
    received: u32,
    /// The slowest answer, in milliseconds (none if nothing came back).
    max_rtt_ms: Option<f64>,
    output: String,
}

impl PingStats {
    fn lost(&self) -> u32 {
        self.transmitted.saturating_sub(self.received)
    }
}

impl std::fmt::Display for PingStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} sent, {} answered\n{}", self.transmitted, self.received, self.output)
    }
}

impl BackgroundPing {
    fn start(lab: &Lab, client: &Client) -> BackgroundPing {
        assert!(client.has_tunnel(), "{} has no configured tunnel", client.dev());
        let target = lab.server_tunnel_ip().to_string();
        #[rustfmt::skip]
        let args = [
            "netns", "exec", lab.client_ns(),
            "ping", "-n", "-q", "-i", "0.2", "-W", "2", "-I", client.dev(), &target,
        ];
        let child = Command::new("ip")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ping");
        BackgroundPing { child }
    }

    /// Stops ping the way Ctrl-C does, so that it prints its summary.
    fn stop(mut self) -> PingStats {
        // `ip netns exec` execs ping in place: the child's pid is ping's.
        // SAFETY: a plain syscall on our own, not yet reaped, child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let mut output = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            std::io::Read::read_to_string(&mut out, &mut output).expect("read ping output");
        }
        if let Some(mut err) = self.child.stderr.take() {
            std::io::Read::read_to_string(&mut err, &mut output).expect("read ping errors");
        }
        let _ = self.child.wait();
        let (transmitted, received) = ping_summary(&output)
            .unwrap_or_else(|| panic!("no summary in the ping output:\n{output}"));
        let max_rtt_ms = output
            .lines()
            .find_map(|line| line.strip_prefix("rtt min/avg/max/mdev = "))
            .and_then(|values| values.split('/').nth(2))
            .and_then(|max| max.parse().ok());
        PingStats { transmitted, received, max_rtt_ms, output }
    }
}

impl Drop for BackgroundPing {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `N packets transmitted, M received` from ping's summary.
fn ping_summary(output: &str) -> Option<(u32, u32)> {
    let line = output.lines().find(|line| line.contains("packets transmitted"))?;
    let mut numbers = line.split(',').map(|part| part.split_whitespace().next());
    Some((numbers.next()??.parse().ok()?, numbers.next()??.parse().ok()?))
}

/// A code with at least `margin` left in its 30 s step, so that it is still the current
/// code when the server checks it.
fn fresh_code(secret: &str, margin: Duration) -> String {
    let into_step = Duration::from_millis(
        (SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() % 30_000) as u64,
    );
    if into_step + margin > Duration::from_secs(30) {
        std::thread::sleep(Duration::from_secs(30) - into_step + Duration::from_millis(200));
    }
    code_now(secret)
}

// ---------------------------------------------------------------------------------------
// The three ways a client sends the code.

fn a_code_alone_in_the_password_field_connects_and_carries_traffic(front: FrontEnd) {
    let mut lab = Lab::new();
    let mfa = Mfa::init(&lab, front, DEFAULT_TIMING);
    let secret = mfa.add_user("alice", None, "otp");
    lab.start_server(mfa.server_opts());

    let client = lab.start_client(ClientOpts::new("alice", code_now(&secret)));
    assert_connects_and_pings(&lab, &client);

    let row = mfa.wait_for_row("alice", "accepted", "ok");
    assert_row(&row, "otp", "Initial");
    assert!(row["source"].as_str().is_some_and(|s| s.starts_with("10.213.")), "{row:#}");
    // The pushed token is what renegotiations will present instead of the code.
    assert!(client.log().contains("auth-token"), "no auth-token in the PUSH_REPLY");
}

fn a_password_followed_by_the_code_connects_and_carries_traffic(front: FrontEnd) {
    let mut lab = Lab::new();
    let mfa = Mfa::init(&lab, front, DEFAULT_TIMING);
    // Ends in digits: only the fixed code length tells password and code apart.
    let password = "horse battery 42";
    let secret = mfa.add_user("bob", Some(password), "concat");
    lab.start_server(mfa.server_opts());

    let client =
        lab.start_client(ClientOpts::new("bob", format!("{password}{}", code_now(&secret))));
    assert_connects_and_pings(&lab, &client);
    assert_row(&mfa.wait_for_row("bob", "accepted", "ok"), "concat", "Initial");
}

fn a_static_challenge_response_connects_and_carries_traffic(front: FrontEnd) {
    let mut lab = Lab::new();
    let mfa = Mfa::init(&lab, front, DEFAULT_TIMING);
    let password = "carol's pässword";
    let secret = mfa.add_user("carol", Some(password), "scrv1");
    lab.start_server(mfa.server_opts());

    // What `static-challenge` makes of the password and the typed code; the CLI client
    // cannot answer the prompt without a terminal, so the result goes in the auth file.
    let client = lab.start_client(ClientOpts::new("carol", scrv1(password, &code_now(&secret))));
    assert_connects_and_pings(&lab, &client);
    assert_row(&mfa.wait_for_row("carol", "accepted", "ok"), "scrv1", "Initial");
}

// ---------------------------------------------------------------------------------------
// Refusals.

fn a_wrong_code_is_refused_and_audited(front: FrontEnd) {
    let mut lab = Lab::new();
    let mfa = Mfa::init(&lab, front, DEFAULT_TIMING);
    let secret = mfa.add_user("alice", None, "otp");
    lab.start_server(mfa.server_opts());

    let client = lab.start_client(ClientOpts::new("alice", wrong_code(&secret)));
    assert_refused(&client);
    assert!(client.log().contains("AUTH_FAILED,authentication failed"), "{}", client.log());
    assert_row(&mfa.wait_for_row("alice", "refused", "wrong-code"), "otp", "Initial");
    assert!(!mfa.auth_rows().iter().any(|row| row["decision"] == "accepted"));
}

fn a_code_replayed_by_a_second_connection_is_refused_as_replay(front: FrontEnd) {
    let mut lab = Lab::new();
    let mfa = Mfa::init(&lab, front, DEFAULT_TIMING);
    let secret = mfa.add_user("alice", None, "otp");
    lab.start_server(mfa.server_opts());

    let code = code_now(&secret);
    let first = lab.start_client(ClientOpts::new("alice", code.clone()));
    first.wait_connected(CONNECT).unwrap();
    // Someone who saw the code over alice's shoulder, seconds later, from another device
    // with her certificate (with anyone else's, `bind_certificate` refuses it before the code
    // is looked at).
    let second = lab.start_client(ClientOpts::new("alice", code).tun(TunMode::NoExec));
    assert_refused(&second);

    assert!(second.log().contains("AUTH_FAILED,code already used"), "{}", second.log());
    assert_row(&mfa.wait_for_row("alice", "refused", "replayed-code"), "otp", "Initial");
    let accepted = mfa.auth_rows().iter().filter(|row| row["decision"] == "accepted").count();
    assert_eq!(accepted, 1);
    assert!(lab.ping_from_client(&first, 2).received > 0, "the first tunnel went down");
}

fn two_simultaneous_logins_with_one_code_let_exactly_one_in(front: FrontEnd) {
    let mut lab = Lab::new();
    let mfa = Mfa::init(&lab, front, DEFAULT_TIMING);
    // A password makes both logins deferred: two workers race for the same step.
    let secret = mfa.add_user("alice", Some("alices password"), "concat");
    // Her laptop and her phone, both with her certificate: without `duplicate-cn` the login
    // accepted first would end the other before its answer came.
    lab.start_server(mfa.server_opts().line("duplicate-cn"));

    let password = format!("alices password{}", code_now(&secret));
    let clients: Vec<Client> = (0..2)
        .map(|_| {
            let opts = ClientOpts::new("alice", password.as_str());
            lab.start_client(opts.tun(TunMode::NoExec))
        })
        .collect();
    let decided = |c: &Client| c.count(support::INIT_DONE) + c.count("AUTH_FAILED") > 0;
    assert!(support::wait_until(CONNECT, || clients.iter().all(decided)), "no answer in time");

    let connected = clients.iter().filter(|c| c.count(support::INIT_DONE) > 0).count();
    assert_eq!(connected, 1, "both or neither got in with one code");
    let rows = mfa.auth_rows();
    let decisions: Vec<_> = rows.iter().map(|r| (&r["decision"], &r["reason"])).collect();
    assert_eq!(decisions.len(), 2, "{rows:#?}");
    assert!(decisions.contains(&(&"accepted".into(), &"ok".into())), "{rows:#?}");
    assert!(decisions.contains(&(&"refused".into(), &"replayed-code".into())), "{rows:#?}");
    let log = lab.server_log();
    assert_eq!(log.matches("authentication deferred for username 'alice'").count(), 2, "{log}");
}

fn unknown_users_are_refused_and_audited_without_stalling_the_tunnels(front: FrontEnd) {
    let mut lab = Lab::new();
    let mfa = Mfa::init(&lab, front, DEFAULT_TIMING);
    let secret = mfa.add_user("alice", None, "otp");
    lab.start_server(mfa.server_opts());
    let alice = lab.start_client(ClientOpts::new("alice", code_now(&secret)));
    assert_connects_and_pings(&lab, &alice);
    let ping = BackgroundPing::start(&lab, &alice);

    // A valid code of another user and a recovery code need no password hash: answered at
    // once. A long number may be a PIN and a code: deferred, so that the hash spent to look
    // like a real check runs in the worker, not on OpenVPN's only thread.
    let attempts =
        [(code_now(&secret), false), ("abcde-fgh23".into(), false), ("4711".repeat(3), true)];
    for (i, (password, deferred)) in attempts.into_iter().enumerate() {
        let user = format!("mallory{i}");
        // A certificate named after the user, as the CA would issue it: with any other,
        // `bind_certificate` refuses the login before the name is looked up.
        let client = lab.start_client(ClientOpts::new(&user, password).tun(TunMode::NoExec));
        assert_refused(&client);
        assert_row(&mfa.wait_for_row(&user, "refused", "unknown-user"), "-", "Initial");
        let log = lab.server_log();
        let line = format!("deferred for username '{user}'");
        assert_eq!(log.contains(&line), deferred, "{user}: {line:?} expected {deferred}\n{log}");
    }

    std::thread::sleep(Duration::from_millis(500));
    let ping = ping.stop();
    assert!(ping.lost() <= 1, "{ping}");
    let slowest = ping.max_rtt_ms.expect("rtt summary");
    assert!(slowest < 500.0, "the tunnel stalled while unknown users were refused: {ping}");
}

fn a_certificate_of_another_user_is_refused_and_audited(front: FrontEnd) {
    let mut lab = Lab::new();
    let mfa = Mfa::init(&lab, front, DEFAULT_TIMING);
    mfa.add_user("alice", None, "otp");
    let bob = mfa.add_user("bob", None, "otp");
    let carol = mfa.add_user("carol", Some("carol's long password"), "concat");
    lab.start_server(mfa.server_opts());

    // A password login is decided by the deferred worker: it must bind the certificate too.
    let with_password = format!("carol's long password{}", code_now(&carol));
    let client = lab.start_client(
        ClientOpts::new("carol", with_password.as_str()).cert("alice").tun(TunMode::NoExec),
    );
    assert_refused(&client);
    mfa.wait_for_row("carol", "refused", "certificate-mismatch");

    // Alice's certificate with bob's name and bob's valid code: two factors, two people.
    let code = code_now(&bob);
    let client =
        lab.start_client(ClientOpts::new("bob", code.as_str()).cert("alice").tun(TunMode::NoExec));
    assert_refused(&client);
    assert!(client.log().contains("AUTH_FAILED,authentication failed"), "{}", client.log());
    assert_row(&mfa.wait_for_row("bob", "refused", "certificate-mismatch"), "-", "Initial");
    assert!(!mfa.auth_rows().iter().any(|row| row["decision"] == "accepted"));
    let own = lab.start_client(
        ClientOpts::new("carol", with_password.as_str()).cert("carol").tun(TunMode::NoExec),
    );
    own.wait_connected(Duration::from_secs(40)).unwrap();

    // The refusal spent neither bob's code nor a failure: with his own certificate it works.
    let own = lab.start_client(ClientOpts::new("BOB", code.as_str()).cert("bob"));
    assert_connects_and_pings(&lab, &own);
    assert_row(&mfa.wait_for_row("bob", "accepted", "ok"), "otp", "Initial");
}

// ---------------------------------------------------------------------------------------
// Renegotiation.

/// What happened to one connected client while its server renegotiated.
struct RenegRun {
    /// Renegotiations the server started (`TLS: soft reset`).
    renegotiations: usize,
    /// When the client saw AUTH_FAILED, counted from its tunnel coming up, and how many
    /// renegotiations the server had started by then.
    auth_failed: Option<(Duration, usize)>,
    client_running: bool,
    /// A ping through the tunnel for the whole time.
    ping: PingStats,
    rows: Vec<Value>,
    client_log: String,
    server_log: String,
}

impl RenegRun {
    /// The ends of both logs, for failure messages.
    fn logs(&self) -> String {
        format!(
            "--- client log ---\n{}\n--- server log ---\n{}",
            support::log_tail(&self.client_log, 30),
            support::log_tail(&self.server_log, 30)
        )
    }
}

/// Connects alice (code only) to a server that renegotiates every [`RENEG_SEC`] seconds,
/// with the `openvpn server-config` lines as printed or without its `auth-gen-token` lines,
/// and pings through the tunnel until three renegotiations were verified or the client is
/// gone. The client caches its password, as OpenVPN does unless told `auth-nocache`: without
/// a token, the cached code is all it can present at a renegotiation.
fn ride_through_renegotiations(front: FrontEnd, keep_auth_gen_token: bool) -> RenegRun {
    let mut lab = Lab::new();
    let mfa = Mfa::init(&lab, front, FAST_RENEG);
    let secret = mfa.add_user("alice", None, "otp");
    let lines = mfa.server_lines();
    assert!(lines.contains(&"hand-window 10".to_owned()), "{lines:?}");
    assert!(lines.contains(&"auth-gen-token 43200 20 external-auth".to_owned()), "{lines:?}");
    let server = lines
        .into_iter()
        .filter(|line| keep_auth_gen_token || !line.starts_with("auth-gen-token"))
        .fold(ServerOpts::new(), ServerOpts::line);
    lab.start_server(server.line(format!("reneg-sec {RENEG_SEC}")));

    let client =
        lab.start_client(ClientOpts::new("alice", fresh_code(&secret, Duration::from_secs(3))));
    client.wait_connected(CONNECT).unwrap();
    let up = Instant::now();
    let ping = BackgroundPing::start(&lab, &client);

    let renegotiations = || lab.server_log().matches("TLS: soft reset").count();
    // Decisions the verifier logged through OpenVPN, the first login included.
    let decisions = || {
        let log = lab.server_log();
        log.matches("auth accepted user=alice").count() + log.matches("auth refused").count()
    };
    let mut auth_failed = None;
    support::wait_until(Duration::from_secs(3 * RENEG_SEC + 25), || {
        if auth_failed.is_none() && client.count("AUTH_FAILED") > 0 {
            auth_failed = Some((up.elapsed(), renegotiations()));
        }
        let gone = auth_failed.is_some() && !client.is_running();
        gone || (renegotiations() >= 3 && decisions() > 3)
    });
    // Let the packets sent during the last renegotiation come back before counting.
    std::thread::sleep(Duration::from_secs(2));
    let ping = ping.stop();

    RenegRun {
        renegotiations: renegotiations(),
        auth_failed,
        client_running: client.is_running(),
        ping,
        rows: mfa.auth_rows(),
        client_log: client.log(),
        server_log: lab.server_log(),
    }
}

fn a_client_survives_renegotiations_only_with_auth_gen_token(front: FrontEnd) {
    let (with_token, without_token) = std::thread::scope(|scope| {
        let with = scope.spawn(|| ride_through_renegotiations(front, true));
        let without = scope.spawn(|| ride_through_renegotiations(front, false));
        let join = |h: std::thread::ScopedJoinHandle<'_, RenegRun>| {
            h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        };
        (join(with), join(without))
    });

    for (name, run) in [("with", &with_token), ("without", &without_token)] {
        eprintln!(
            "{name} auth-gen-token: {} renegotiations, AUTH_FAILED {:?}, ping {} sent {} lost",
            run.renegotiations,
            run.auth_failed,
            run.ping.transmitted,
            run.ping.lost()
        );
    }

    // With the server-config lines as printed: three renegotiations, each answered by the
    // verifier from the token, and the tunnel never noticed.
    let run = &with_token;
    assert!(run.renegotiations >= 3, "{} renegotiations\n{}", run.renegotiations, run.logs());
    assert_eq!(run.auth_failed, None, "{}", run.logs());
    assert_eq!(run.client_log.matches("AUTH_FAILED").count(), 0);
    assert!(run.client_running, "{}", run.logs());
    // A renewed token with every renegotiation.
    let renewed =
        run.client_log.matches("Received control message: 'PUSH_REPLY,auth-token").count();
    assert!(renewed >= 3, "{renewed} token renewals\n{}", run.logs());
    assert!(run.ping.transmitted >= 3 * RENEG_SEC as u32 * 4, "ping too short: {}", run.ping);
    assert!(run.ping.lost() <= 1, "pings lost across renegotiations: {}", run.ping);
    assert_eq!(run.rows[0]["decision"], "accepted");
    assert_row(&run.rows[0], "otp", "Initial");
    assert!(run.rows.len() > 3, "{:#?}", run.rows);
    for row in &run.rows[1..] {
        assert_eq!(row["decision"], "accepted", "{row:#}");
        assert_eq!(row["reason"], "token", "{row:#}");
        assert_row(row, "token", "Authenticated");
    }

    // The same server without auth-gen-token: the client resends its cached code at the
    // first renegotiation, which is a replay, and the tunnel dies. The checks above see it.
    let run = &without_token;
    let (after, renegotiations) = run.auth_failed.unwrap_or_else(|| {
        panic!("the client survived without auth-gen-token: the test is blind\n{}", run.logs())
    });
    assert_eq!(renegotiations, 1, "not refused at the first renegotiation\n{}", run.logs());
    assert!(
        after >= Duration::from_secs(RENEG_SEC * 3 / 4),
        "refused before any renegotiation ({after:?})"
    );
    assert!(!run.client_running, "{}", run.logs());
    assert!(run.client_log.contains("AUTH_FAILED,code already used"), "{}", run.logs());
    assert!(run.ping.lost() > 1, "the dead tunnel still answered pings: {}", run.ping);
    assert_eq!(run.rows.len(), 2, "{:#?}", run.rows);
    assert_eq!(run.rows[0]["decision"], "accepted");
    assert_eq!(run.rows[1]["decision"], "refused");
    assert_eq!(run.rows[1]["reason"], "replayed-code");
    // No token on the server: OpenVPN sets no session_state at all.
    assert_row(&run.rows[1], "otp", "none");
}

fn a_user_disabled_while_connected_is_refused_at_the_next_renegotiation(front: FrontEnd) {
    let mut lab = Lab::new();
    let mfa = Mfa::init(&lab, front, FAST_RENEG);
    let alice = mfa.add_user("alice", None, "otp");
    // Bob has a password: his first login goes through the deferred worker, which must bind
    // the session his later tokens are checked against.
    let bob = mfa.add_user("bob", Some("bobs password"), "scrv1");
    lab.start_server(mfa.server_opts().line(format!("reneg-sec {RENEG_SEC}")));
    let alice_client = lab.start_client(ClientOpts::new("alice", code_now(&alice)));
    assert_connects_and_pings(&lab, &alice_client);
    let up = Instant::now();
    // A configured tunnel of his own: a client whose tun device is not up would lose its
    // connection and come back with a token, which is no renegotiation (see TunMode::NoExec).
    let bob_opts = ClientOpts::new("bob", scrv1("bobs password", &code_now(&bob)));
    let bob_client = lab.start_client(bob_opts.tun(TunMode::Configure));
    assert_connects_and_pings(&lab, &bob_client);

    let answer: Value =
        serde_json::from_str(&mfa.run(&["user", "disable", "alice", "--json"])).unwrap();
    assert_eq!(answer["result"], "disabled");

    // Refused when the server renegotiates, with a valid token and no new code.
    alice_client.wait_auth_failed(Duration::from_secs(RENEG_SEC + 15)).unwrap();
    let after = up.elapsed();
    assert!(after >= Duration::from_secs(RENEG_SEC * 3 / 4), "refused before the renegotiation");
    assert!(alice_client.wait_exit(Duration::from_secs(10)), "disabled client still running");
    let log = lab.server_log();
    assert_eq!(soft_resets(&log, "alice"), 1, "refused without a renegotiation:\n{log}");
    assert_row(&mfa.wait_for_row("alice", "refused", "disabled"), "token", "Authenticated");

    // Bob, still enabled, renegotiates a moment later and stays: on the connection he
    // opened, with his tunnel carrying traffic all along.
    let row = mfa.wait_for_row_within(Duration::from_secs(RENEG_SEC), "bob", "accepted", "token");
    assert_row(&row, "token", "Authenticated");
    let log = lab.server_log();
    assert_eq!(soft_resets(&log, "bob"), 1, "{log}");
    assert_eq!(
        log.matches("[bob] Peer Connection Initiated").count(),
        1,
        "bob reconnected:\n{log}"
    );
    let bob_log = bob_client.log();
    assert!(bob_client.is_running(), "{}", support::log_tail(&bob_log, 20));
    assert_eq!(bob_client.count("AUTH_FAILED"), 0, "{bob_log}");
    assert_eq!(bob_client.count("Inactivity timeout"), 0, "{bob_log}");
    assert_eq!(bob_client.count(support::INIT_DONE), 1, "{bob_log}");
    let ping = lab.ping_from_client(&bob_client, 3);
    assert!(ping.received >= 2, "bob's tunnel broke at the renegotiation:\n{}", ping.output);
}

/// Renegotiations the server started on `user`'s connection (`user/ADDR:PORT TLS: soft
/// reset ...` in its log).
fn soft_resets(server_log: &str, user: &str) -> usize {
    let prefix = format!(" {user}/");
    server_log.lines().filter(|l| l.contains(&prefix) && l.contains("TLS: soft reset")).count()
}

// ---------------------------------------------------------------------------------------
// Hostile input through the real server.

/// The longest password the hostile-input test gets to both front ends. OpenVPN 2.6 writes the
/// script's via-file with lines of at most 512 bytes and refuses longer ones itself.
const LONG_PASSWORD: usize = 500;

fn malformed_logins_are_refused_while_the_server_and_connected_clients_carry_on(front: FrontEnd) {
    let mut lab = Lab::new();
    let mfa = Mfa::init(&lab, front, DEFAULT_TIMING);
    let alice = mfa.add_user("alice", None, "otp");
    let bob = mfa.add_user("bob", Some("bobs password"), "scrv1");
    let carol = mfa.add_user("carol", None, "otp");
    let dave = mfa.add_user("dave", None, "otp");
    lab.start_server(mfa.server_opts());
    let alice_client = lab.start_client(ClientOpts::new("alice", code_now(&alice)));
    assert_connects_and_pings(&lab, &alice_client);

    let bob_code = code_now(&bob);
    let carol_code = code_now(&carol);
    let attempts = [
        // Not base64 at all, where the password goes.
        ("bob", format!("SCRV1:not*base64!:{}", STANDARD.encode(&bob_code))),
        // A long password followed by a valid code.
        ("bob", format!("{}{bob_code}", "x".repeat(LONG_PASSWORD - 6))),
        // Path characters in the name, with somebody's valid code.
        ("../../etc/passwd", carol_code.clone()),
        // The client drops control characters after its own emptiness checks: these
        // arrive as an empty user name (which OpenVPN refuses itself) and an empty
        // password (which reaches the verifier).
        ("\u{1}", carol_code.clone()),
        ("carol", "\u{1}".to_owned()),
    ];
    let mut refused = Vec::new();
    for (username, password) in &attempts {
        // Each with the certificate of the user it names (where that can be a certificate
        // name), so that `bind_certificate` lets the malformed field reach the check.
        let opts = ClientOpts::new(*username, password.as_str());
        refused.push(lab.start_client(opts.tun(TunMode::NoExec)));
    }
    // Longer than OpenVPN writes into the via-file (512 bytes a line): OpenVPN refuses it
    // without running the script. The plugin gets it as it came (there is no file to write)
    // and refuses it like any wrong password.
    let long = format!("{}{bob_code}", "x".repeat(1280 - 6));
    let long = lab.start_client(ClientOpts::new("bob", long).tun(TunMode::NoExec));
    // 4 KiB does not fit in the client's TLS message (2 KiB in OpenVPN 2.6): the client
    // gives up on its side and retries, and the server never hears of it.
    let huge = format!("{}{bob_code}", "x".repeat(4096 - 6));
    let huge = lab.start_client(ClientOpts::new("bob", huge).tun(TunMode::NoExec));

    for client in refused.iter().chain([&long]) {
        assert_refused(client);
    }
    let log = lab.server_log();
    assert!(log.contains("peer provided a blank username"), "empty user name not seen:\n{log}");
    let refused_by_openvpn = log.contains("could not write username/password to file");
    assert_eq!(
        refused_by_openvpn,
        front == FrontEnd::Script,
        "the 1280-byte password was refused by OpenVPN itself only with the script:\n{log}"
    );
    huge.wait_for("Key Method #2 write failed", 1, CONNECT).unwrap();
    huge.kill();
    assert_eq!(huge.count(support::INIT_DONE), 0);

    // Each attempt that reached the verifier was refused with a reason and left a record.
    let rows = mfa.auth_rows();
    let mut reasons: Vec<(&str, &str)> = rows
        .iter()
        .filter(|row| row["decision"] == "refused")
        .map(|row| (row["user"].as_str().unwrap_or("?"), row["reason"].as_str().unwrap_or("?")))
        .collect();
    let mut expected = vec![
        ("bob", "malformed-scrv1"),
        ("bob", "wrong-password"),
        ("../../etc/passwd", "invalid-username"),
        ("carol", "no-code"),
    ];
    if front == FrontEnd::Plugin {
        // The 1280-byte password.
        expected.push(("bob", "wrong-password"));
    }
    reasons.sort();
    expected.sort();
    assert_eq!(reasons, expected, "{rows:#?}");
    assert!(!rows.iter().any(|row| row["decision"] == "failed"), "{rows:#?}");

    // The server is still up, alice's tunnel still works, and a new login still succeeds.
    assert!(lab.is_server_running());
    assert_eq!(alice_client.count("AUTH_FAILED"), 0);
    let ping = lab.ping_from_client(&alice_client, 3);
    assert!(ping.received >= 2, "alice's tunnel broke:\n{}", ping.output);
    let dave_client = lab.start_client(ClientOpts::new("dave", code_now(&dave)));
    dave_client.wait_connected(CONNECT).unwrap();
    let status = lab.management("status 2").unwrap();
    assert!(status.contains("CLIENT_LIST,alice,"), "{status}");
    assert!(status.contains("CLIENT_LIST,dave,"), "{status}");
}

// ---------------------------------------------------------------------------------------
// Deferred logins.

fn password_logins_are_deferred_to_the_worker_and_still_connect(front: FrontEnd) {
    let mut lab = Lab::new();
    let mfa = Mfa::init(&lab, front, DEFAULT_TIMING);
    let alice = mfa.add_user("alice", None, "otp");
    lab.start_server(mfa.server_opts());

    // A code alone is checked while OpenVPN waits: no password hash to compute.
    let alice_client = lab.start_client(ClientOpts::new("alice", code_now(&alice)));
    assert_connects_and_pings(&lab, &alice_client);
    let log = lab.server_log();
    assert!(log.contains("authentication succeeded for username 'alice'"), "{log}");
    assert!(!log.contains("deferred for username 'alice'"), "{log}");

    // A password is hashed off OpenVPN's thread: by the detached worker after `verify` exited
    // 2, or by a worker thread after the plugin returned FUNC_DEFERRED. Also a numeric PIN,
    // which makes the whole field look like a long number.
    let users = [("bob", "bobs password"), ("pin", "47114711")];
    let deferred =
        |log: &str, user: &str| log.find(&format!("authentication deferred for username '{user}'"));
    let accepted = |log: &str, user: &str| log.find(&format!("auth accepted user={user} "));
    for (n, (user, password)) in users.into_iter().enumerate() {
        let secret = mfa.add_user(user, Some(password), "concat");
        let opts = ClientOpts::new(user, format!("{password}{}", code_now(&secret)));
        let client = lab.start_client(opts.tun(TunMode::NoExec));
        client.wait_connected(CONNECT).unwrap();
        assert_row(&mfa.wait_for_row(user, "accepted", "ok"), "concat", "Initial");

        let log = lab.server_log();
        assert!(deferred(&log, user).is_some(), "{user}'s login was not deferred:\n{log}");
        match front {
            // The worker writes its decision to OpenVPN's log file itself, before it answers.
            FrontEnd::Script => assert!(
                deferred(&log, user) < accepted(&log, user),
                "{user}: no decision after OpenVPN deferred the login:\n{log}"
            ),
            // OpenVPN logs the plugin's deferred return. The worker thread's line waits for
            // OpenVPN's thread, which writes it when it next calls the plugin (below).
            FrontEnd::Plugin => {
                let returns = log.matches(PLUGIN_DEFERRED).count();
                assert_eq!(returns, n + 1, "no {PLUGIN_DEFERRED:?} for {user}:\n{log}");
                assert!(accepted(&log, user).is_none(), "a worker thread wrote the log:\n{log}");
            }
        }
    }
    if front == FrontEnd::Plugin {
        // Each login's call into the plugin first writes what the workers logged meanwhile.
        let carol = mfa.add_user("carol", None, "otp");
        let opts = ClientOpts::new("carol", code_now(&carol)).tun(TunMode::NoExec);
        lab.start_client(opts).wait_connected(CONNECT).unwrap();
        let log = lab.server_log();
        let next_call = [deferred(&log, "pin"), accepted(&log, "carol")];
        for ((user, _), next_call) in users.into_iter().zip(next_call) {
            let (deferred, accepted) = (deferred(&log, user), accepted(&log, user));
            assert!(deferred < accepted, "{user}: no decision after the deferral:\n{log}");
            assert!(accepted < next_call, "{user}: not written at the next call:\n{log}");
        }
    }
}

fn logins_are_refused_within_the_deadline_while_the_store_stays_locked(front: FrontEnd) {
    let mut lab = Lab::new();
    let deadline = 3;
    let mfa = Mfa::init(&lab, front, Timing { auth_deadline: deadline, ..DEFAULT_TIMING });
    let alice = mfa.add_user("alice", None, "otp");
    let bob = mfa.add_user("bob", Some("bobs password"), "concat");
    let carol = mfa.add_user("carol", None, "otp");
    lab.start_server(mfa.server_opts());
    let alice_client = lab.start_client(ClientOpts::new("alice", code_now(&alice)));
    assert_connects_and_pings(&lab, &alice_client);

    // Carol's code is still within the drift window when she uses it again below.
    let carol_code = code_now(&carol);
    let bob_code = code_now(&bob);
    // Another process holds the store's write lock, say an admin command that hangs.
    let store = rusqlite::Connection::open(mfa.dir.join("ovpn-mfa.sqlite")).unwrap();
    store.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let locked = Instant::now();
    let bob_client = lab.start_client(
        ClientOpts::new("bob", format!("bobs password{bob_code}")).tun(TunMode::NoExec),
    );
    let carol_client =
        lab.start_client(ClientOpts::new("carol", carol_code.as_str()).tun(TunMode::NoExec));

    // OpenVPN's thread is not held up meanwhile: alice's tunnel keeps carrying traffic.
    let ping = lab.ping_from_client(&alice_client, 10);
    assert!(ping.received >= 9, "tunnel stalled while the store was locked:\n{}", ping.output);
    for client in [&bob_client, &carol_client] {
        assert_refused(client);
        let log = client.log();
        assert!(
            log.contains("AUTH_FAILED,authentication timed out")
                || log.contains("AUTH_FAILED,authentication temporarily unavailable"),
            "{log}"
        );
    }
    // The deadline plus OpenVPN's polling of the control file (up to 8 s).
    let waited = locked.elapsed();
    assert!(waited >= Duration::from_secs(deadline), "refused before the deadline: {waited:?}");
    assert!(waited < Duration::from_secs(deadline + 10), "refused too late: {waited:?}");
    store.execute_batch("ROLLBACK").unwrap();
    drop(store);

    // Nothing was half-recorded: carol's code was never used up and still works.
    let carol_again = lab.start_client(ClientOpts::new("carol", carol_code).tun(TunMode::NoExec));
    carol_again.wait_connected(CONNECT).unwrap();
    assert_row(&mfa.wait_for_row("carol", "accepted", "ok"), "otp", "Initial");
}
