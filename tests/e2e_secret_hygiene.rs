//! End-to-end proof that no secret, code, password or token reaches a log, an audit row, an
//! error message or `Debug` output.
//!
//! One representative run with all logging turned up: the verifier at `OVPN_MFA_LOG=trace`
//! (through OpenVPN's `setenv`, checked to arrive), OpenVPN at `verb 4`, every admin command
//! with `-vv` and `OVPN_MFA_LOG=trace`. Three users log in the three ways a client sends the
//! code, a wrong and a replayed code are refused, every client renegotiates with its
//! auth-gen-token, a user disabled meanwhile is refused at renegotiation, and the admin
//! commands run over all of it. A wrapper around the verifier records every password field
//! OpenVPN hands over, tokens included. Then every secret the test set, computed or saw is
//! looked for everywhere that must be free of them; only the outputs meant to show a secret
//! once (enrolment, new recovery codes) are left out. The files that hold secrets must be
//! private.
//!
//! Needs root, openvpn and oathtool; see `support::require_root`. About 45 s, most of it
//! waiting for two renegotiations of the first client.

mod support;

use std::cell::RefCell;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ovpn_mfa::auth::{authenticate, input, AuthRequest, SessionState};
use ovpn_mfa::config::Config;
use ovpn_mfa::openvpn::login::Login;
use ovpn_mfa::secret::Sensitive;
use ovpn_mfa::store::{audit, users, AuditEntry, Store};
use serde_json::Value;
use support::{ClientOpts, Lab, ServerOpts, TunMode};

const BIN: &str = env!("CARGO_BIN_EXE_ovpn-mfa");
const STORE_FILE: &str = "ovpn-mfa.sqlite";
const CONNECT: Duration = Duration::from_secs(30);
/// The server's renegotiation period; OpenVPN starts one somewhat before it (18 to 20 s).
const RENEG_SEC: u64 = 20;
/// Long enough for a renegotiation counted from a moment the last one may just have ended.
const NEXT_RENEGOTIATION: Duration = Duration::from_secs(RENEG_SEC + 15);

/// The `[openvpn]` timing: renegotiations within the test. OpenVPN wants the token renewal
/// at least twice the hand-window, ovpn-mfa the deadline below the hand-window.
const OPENVPN_TIMING: &str =
    "[openvpn]\nhand_window_secs = 10\ntoken_renewal_secs = 20\nauth_deadline_secs = 8\n";

/// Passwords, distinctive enough that finding one anywhere is no accident. Bob's ends in
/// digits, so that only the fixed code length splits his password from his code.
const BOB_PASSWORD: &str = "Bob's concat passphrase 42";
const CAROL_PASSWORD: &str = "Carol's static-challenge pässword";
const CAROL_NEW_PASSWORD: &str = "Carol's replacement passphrase";

/// The verifier as the server runs it: records the password field OpenVPN hands over (line 2
/// of the credentials file, which OpenVPN appends as the last argument) and the log level
/// the verifier gets, then runs the command `openvpn server-config` printed, unchanged.
const WRAPPER: &str = r#"#!/bin/sh
umask 077
for credentials; do :; done
printf '%s\n' "${OVPN_MFA_LOG-<unset>}" >> "@LAB@/verifier-env"
printf '%s\n' "$(sed -n 2p "$credentials")" >> "@LAB@/seen"
exec "$@"
"#;

// ---------------------------------------------------------------------------------------
// The secrets and where they must not be.

/// Something that must not be shown. Failure messages name the kind.
struct Secret {
    kind: String,
    value: String,
}

impl Secret {
    /// A one-time code: matched as a whole number only, so that it is not found inside a
    /// timestamp or a byte count.
    fn is_code(&self) -> bool {
        matches!(self.value.len(), 6 | 8) && self.value.bytes().all(|b| b.is_ascii_digit())
    }
}

#[derive(Default)]
struct Secrets(Vec<Secret>);

impl Secrets {
    fn add(&mut self, kind: impl Into<String>, value: impl Into<String>) {
        let (kind, value) = (kind.into(), value.into());
        let secret = Secret { kind, value };
        // Anything shorter than a code would be found by accident, or not be a secret.
        assert!(
            secret.is_code() || secret.value.chars().count() >= 8,
            "{}: too short to look for: {:?}",
            secret.kind,
            secret.value
        );
        if !self.0.iter().any(|s| s.value == secret.value) {
            self.0.push(secret);
        }
    }

    fn count(&self, kind_prefix: &str) -> usize {
        self.0.iter().filter(|s| s.kind.starts_with(kind_prefix)).count()
    }
}

/// A text that must be free of secrets, and where it came from.
struct Source {
    name: String,
    text: String,
}

impl Source {
    fn new(name: impl Into<String>, text: impl Into<String>) -> Source {
        Source { name: name.into(), text: text.into() }
    }
}

/// One place a secret was found: indices into the secrets and the sources, and the line.
struct Find<'a> {
    secret: usize,
    source: usize,
    line_number: usize,
    line: &'a str,
}

/// Every occurrence of a secret in a source. Codes match as whole numbers; everything else
/// as a substring, in any case.
fn find<'a>(secrets: &Secrets, sources: &'a [Source]) -> Vec<Find<'a>> {
    let needles: Vec<String> = secrets.0.iter().map(|s| s.value.to_lowercase()).collect();
    let mut found = Vec::new();
    for (source_index, source) in sources.iter().enumerate() {
        for (number, line) in source.text.lines().enumerate() {
            let lower = line.to_lowercase();
            let numbers = digit_runs(line);
            for (secret_index, secret) in secrets.0.iter().enumerate() {
                let hit = if secret.is_code() {
                    numbers.contains(&secret.value.as_str())
                } else {
                    lower.contains(&needles[secret_index])
                };
                if hit {
                    found.push(Find {
                        secret: secret_index,
                        source: source_index,
                        line_number: number + 1,
                        line,
                    });
                }
            }
        }
    }
    found
}

/// The maximal runs of ASCII digits in `text`.
fn digit_runs(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_ascii_digit()).filter(|run| !run.is_empty()).collect()
}

// ---------------------------------------------------------------------------------------
// The admin side: every `ovpn-mfa` command of the run, as verbose as it gets.

/// What one command printed, and whether it is one of the outputs meant to show a secret.
struct Printed {
    label: String,
    text: String,
    shows_secrets: bool,
}

struct Admin {
    dir: PathBuf,
    printed: RefCell<Vec<Printed>>,
}

impl Admin {
    fn new(dir: PathBuf) -> Admin {
        Admin { dir, printed: RefCell::new(Vec::new()) }
    }

    /// `ovpn-mfa -vv --dir DIR ARGS...` with `OVPN_MFA_LOG=trace`; keeps both streams for
    /// the scan under `label`.
    fn command(&self, label: &str, args: &[&str], stdin: Option<&str>, shows: bool) -> Output {
        let mut command = Command::new(BIN);
        command.arg("-vv").arg("--dir").arg(&self.dir).args(args);
        command.env("OVPN_MFA_LOG", "trace").env_remove("OVPN_MFA_DIR").env_remove("RUST_LOG");
        let out = support::output(&mut command, stdin);
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.printed.borrow_mut().push(Printed {
            label: label.to_owned(),
            text,
            shows_secrets: shows,
        });
        out
    }

    /// A command that must succeed and shows no secret; returns its stdout.
    fn run(&self, args: &[&str]) -> String {
        self.run_with_stdin(args, None)
    }

    fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.command(&args.join(" "), args, stdin, false);
        succeeded(args, &out)
    }

    /// A command whose output is meant to show a secret once (enrolment, recovery codes):
    /// left out of the scan.
    fn run_showing_secrets(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.command(&args.join(" "), args, stdin, true);
        succeeded(args, &out)
    }

    /// `check USER FIELD [--password-stdin]`; `label` stands in for the arguments, which
    /// hold a code. Returns the exit code and stderr.
    fn check(&self, label: &str, user: &str, field: &str, password: Option<&str>) -> (i32, String) {
        let mut args = vec!["check", user, field];
        if password.is_some() {
            args.push("--password-stdin");
        }
        let stdin = password.map(|p| format!("{p}\n"));
        let out = self.command(&format!("check {user} ({label})"), &args, stdin.as_deref(), false);
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// `user add NAME --json --method METHOD [--password-stdin]`: the base32 secret.
    fn add_user(&self, name: &str, method: &str, password: Option<&str>) -> String {
        let mut args = vec!["user", "add", name, "--json", "--method", method];
        if password.is_some() {
            args.push("--password-stdin");
        }
        let stdin = password.map(|p| format!("{p}\n"));
        let out = self.run_showing_secrets(&args, stdin.as_deref());
        let enrolment: Value = serde_json::from_str(&out).expect("JSON from user add");
        enrolment["secret"].as_str().expect("a secret in the enrolment").to_owned()
    }

    fn store(&self) -> Store {
        Store::open(&self.dir.join(STORE_FILE), Duration::from_secs(10)).expect("store")
    }

    fn audit_rows(&self) -> Vec<AuditEntry> {
        audit::recent(self.store().conn(), None, u32::MAX).expect("audit rows")
    }

    /// Waits for the auth row of `user` with `decision`, `reason` and `method` (read
    /// in-process, so that polling adds no commands to the scan).
    fn wait_for_row(
        &self,
        timeout: Duration,
        user: &str,
        decision: &str,
        reason: &str,
        method: &str,
    ) -> AuditEntry {
        let matches = |row: &AuditEntry| {
            row.user.as_deref() == Some(user)
                && row.decision == decision
                && row.reason.as_deref() == Some(reason)
                && row.method.as_deref() == Some(method)
        };
        let mut found = None;
        support::wait_until(timeout, || {
            found = self.audit_rows().into_iter().find(|row| matches(row));
            found.is_some()
        });
        found.unwrap_or_else(|| {
            panic!("no audit row {user} {decision} {reason} {method}:\n{:#?}", self.audit_rows())
        })
    }

    /// Everything printed by the commands that are (`shows_secrets`) or are not meant to
    /// show a secret.
    fn sources(&self, shows_secrets: bool) -> Vec<Source> {
        let printed = self.printed.borrow();
        let scanned = printed.iter().filter(|p| p.shows_secrets == shows_secrets);
        scanned.map(|p| Source::new(format!("`ovpn-mfa {}`", p.label), p.text.clone())).collect()
    }
}

fn succeeded(args: &[&str], out: &Output) -> String {
    assert!(
        out.status.success(),
        "`ovpn-mfa {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

// ---------------------------------------------------------------------------------------
// Codes, as a phone computes them.

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

fn oathtool(args: &[&str]) -> Vec<String> {
    let out = Command::new("oathtool").args(args).output().unwrap_or_else(|e| {
        panic!("the end-to-end tests need `oathtool` (apt-get install oathtool): {e}")
    });
    assert!(out.status.success(), "oathtool failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("UTF-8 from oathtool");
    let codes: Vec<String> = text.lines().map(|l| l.trim().to_owned()).collect();
    assert!(codes.iter().all(|c| c.len() == 6), "unexpected oathtool output {text:?}");
    codes
}

/// The code an app shows at Unix time `at`.
fn code_at(secret: &str, at: u64) -> String {
    oathtool(&["--totp", "-b", "-N", &format!("@{at}"), secret]).remove(0)
}

/// Every code of `secret` for the steps from `from` to `to` (Unix times).
fn codes_between(secret: &str, from: u64, to: u64) -> Vec<String> {
    let window = ((to - from) / 30 + 1).to_string();
    oathtool(&["--totp", "-b", "-N", &format!("@{from}"), "-w", &window, secret])
}

/// Six digits that are not the code of any step near now, so no drift window accepts them.
fn wrong_code(secret: &str) -> String {
    let now = unix_now();
    let near = codes_between(secret, now - 90, now + 90);
    (0..)
        .map(|i: u64| format!("{:06}", (424_242 + i * 137_137) % 1_000_000))
        .find(|candidate| !near.contains(candidate))
        .expect("a code outside the window")
}

/// The static-challenge response an OpenVPN client builds from a password and a code.
fn scrv1(password: &str, code: &str) -> String {
    format!("SCRV1:{}:{}", STANDARD.encode(password), STANDARD.encode(code))
}

// ---------------------------------------------------------------------------------------
// What the library prints with `{:?}`.

/// `Debug` output of the library values that hold or touch secrets: stored users and audit
/// entries, every login OpenVPN handed the verifier (as the front ends build it), its split
/// form, and decisions made in-process on `(user, password field, expected decision)`.
fn debug_output(admin: &Admin, seen: &[String], decide: &[(&str, String, &str)]) -> Vec<Source> {
    let mut store = admin.store();
    let mut sources = Vec::new();
    for user in users::list(store.conn()).expect("list users") {
        sources.push(Source::new(format!("Debug of user {}", user.name), format!("{user:?}")));
        sources.push(Source::new(format!("Debug of user {}", user.name), format!("{user:#?}")));
    }
    let entries = audit::recent(store.conn(), None, u32::MAX).expect("audit entries");
    sources.push(Source::new("Debug of the audit entries", format!("{entries:#?}")));

    for (i, field) in seen.iter().enumerate() {
        let state = if field.starts_with("SESS_ID_AT_") { "Authenticated" } else { "Initial" };
        let lookup = |name: &str| match name {
            "session_state" => Some(state.to_owned()),
            "untrusted_ip" => Some("198.51.100.7".to_owned()),
            _ => None,
        };
        let login =
            Login::from_lookup(lookup, Some(("bob".into(), Sensitive::new(field.as_str()))));
        let name = format!("Debug of the login from password field {}", i + 1);
        sources.push(Source::new(&name, format!("{login:?} {:?}", login.request())));
        for has_password in [false, true] {
            let split = input::split(field, has_password, 6);
            sources.push(Source::new(&name, format!("{split:?}")));
        }
    }

    let config = Config::load(&admin.dir.join("config.toml")).expect("config");
    for (user, field, expected) in decide {
        let password = Sensitive::new(field.as_str());
        let request = AuthRequest {
            username: user,
            password: &password,
            session_state: SessionState::Initial,
            session_id: Some("c2Vzc2lvbi1pZC0x"),
            source: Some("198.51.100.7"),
            common_name: None,
        };
        let decision = authenticate(&mut store, &config, unix_now(), &request);
        assert_eq!(decision.decision_word(), *expected, "{decision}");
        let text = format!("{request:?}\n{decision:?}\n{decision}");
        sources.push(Source::new(format!("Debug of an in-process decision for {user}"), text));
    }
    sources
}

/// A raw dump of the audit table, every column of every row.
fn audit_table_dump(store_path: &Path) -> String {
    let conn = rusqlite::Connection::open(store_path).expect("open the store");
    let mut stmt = conn.prepare("SELECT * FROM audit").expect("select audit");
    let columns = stmt.column_count();
    let mut rows = stmt.query([]).expect("query audit");
    let mut dump = String::new();
    while let Some(row) = rows.next().expect("audit row") {
        let fields: Vec<String> = (0..columns)
            .map(|i| match row.get_ref(i).expect("column") {
                rusqlite::types::ValueRef::Null => "NULL".to_owned(),
                rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                rusqlite::types::ValueRef::Real(x) => x.to_string(),
                rusqlite::types::ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
                rusqlite::types::ValueRef::Blob(b) => String::from_utf8_lossy(b).into_owned(),
            })
            .collect();
        dump.push_str(&fields.join("|"));
        dump.push('\n');
    }
    dump
}

// ---------------------------------------------------------------------------------------
// Files that hold secrets.

/// Panics unless `path` is a file of mode 0600 owned by root (OpenVPN and ovpn-mfa run as
/// root here).
fn assert_private_file(path: &Path) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(meta.is_file(), "{} is not a file", path.display());
    assert_eq!(meta.mode() & 0o7777, 0o600, "{} has mode {:o}", path.display(), meta.mode());
    assert_eq!(meta.uid(), 0, "{} is owned by uid {}, not root", path.display(), meta.uid());
}

/// The store (with its WAL and shared-memory files), the auth-token secret and any client
/// profile must be mode 0600 and owned by root.
fn assert_secret_files_are_private(dir: &Path) {
    let store_files: Vec<PathBuf> = files_ending_in(dir, "")
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(STORE_FILE)))
        .collect();
    assert!(!store_files.is_empty(), "no store in {}", dir.display());
    for path in store_files.iter().chain([&dir.join("auth-token.key")]) {
        assert_private_file(path);
    }
    for profile in files_ending_in(dir, ".ovpn") {
        assert_private_file(&profile);
    }
}

/// Files under `dir`, recursively, whose name ends in `suffix`.
fn files_ending_in(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.to_string_lossy().ends_with(suffix) {
                found.push(path);
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------------------
// The server and what its verifier was handed.

/// Starts the server with the lines `openvpn server-config` prints, the verifier wrapped to
/// record what it is handed, OpenVPN's renegotiation every [`RENEG_SEC`] and the verifier's
/// log level at trace. Adds the auth-token secret's key lines to `secrets`; returns the
/// verifier line as printed.
fn start_server(lab: &mut Lab, admin: &Admin, secrets: &mut Secrets) -> String {
    let printed = admin.run(&["openvpn", "server-config", "--binary", BIN]);
    let mut lines: Vec<String> = printed
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    assert!(lines.contains(&"hand-window 10".to_owned()), "{lines:?}");
    assert!(lines.contains(&"auth-gen-token 43200 20 external-auth".to_owned()), "{lines:?}");

    let key = std::fs::read_to_string(admin.dir.join("auth-token.key")).expect("token secret");
    for line in key.lines().filter(|l| !l.is_empty() && !l.starts_with("-----")) {
        secrets.add("a line of the auth-token secret key", line);
    }

    let lab_dir = lab.dir().display().to_string();
    let wrapper = lab.write_script("verifier-wrapper.sh", &WRAPPER.replace("@LAB@", &lab_dir));
    let verify = lines.iter_mut().find(|l| l.starts_with("auth-user-pass-verify \""));
    let verify = verify.expect("an auth-user-pass-verify line");
    let printed_verify = verify.clone();
    *verify = verify.replacen('"', &format!("\"{} ", wrapper.display()), 1);
    let server = lines.iter().fold(ServerOpts::new(), |opts, line| opts.line(line.as_str()));
    lab.start_server(server.line(format!("reneg-sec {RENEG_SEC}")).env("OVPN_MFA_LOG", "trace"));
    printed_verify
}

/// The password fields the verifier was handed, in order, after checking that it always
/// ran at trace level and saw tokens. Each goes into `secrets`.
fn password_fields_seen(lab: &Lab, secrets: &mut Secrets) -> Vec<String> {
    let levels = std::fs::read_to_string(lab.path("verifier-env")).expect("verifier-env");
    assert!(
        !levels.is_empty() && levels.lines().all(|level| level == "trace"),
        "the verifier did not always run with OVPN_MFA_LOG=trace:\n{levels}"
    );
    let text = std::fs::read_to_string(lab.path("seen")).expect("the recorded password fields");
    let fields: Vec<String> = text.lines().map(str::to_owned).collect();
    let tokens = fields.iter().filter(|f| f.starts_with("SESS_ID_AT_")).count();
    assert!(tokens >= 3, "{tokens} auth-tokens reached the verifier:\n{text}");
    for field in &fields {
        if let Some(body) = field.strip_prefix("SESS_ID_AT_") {
            secrets.add("an auth-token (the password field at a renegotiation)", field.as_str());
            secrets.add("an auth-token without its prefix", body);
        } else if field.starts_with("SCRV1:") {
            secrets.add("a static-challenge response sent by a client", field.as_str());
        } else {
            secrets.add("a password field sent by a client", field.as_str());
        }
    }
    fields
}

/// `doctor` (plain and JSON) on the server's configuration with the verifier line as
/// printed, which it recognises (it does not know the wrapper). Its verdict does not matter
/// here, only what it prints.
fn run_doctor(lab: &Lab, admin: &Admin, printed_verify: &str) {
    let server_conf = std::fs::read_to_string(lab.path("server.conf")).expect("server.conf");
    let lines: Vec<&str> = server_conf
        .lines()
        .map(|l| if l.starts_with("auth-user-pass-verify") { printed_verify } else { l })
        .collect();
    let doctor_conf = lab.path("doctor.conf");
    std::fs::write(&doctor_conf, lines.join("\n") + "\n").expect("write doctor.conf");
    let conf = doctor_conf.display().to_string();
    admin.command("doctor", &["doctor", "--openvpn-config", &conf], None, false);
    admin.command("doctor --json", &["doctor", "--openvpn-config", &conf, "--json"], None, false);
}

/// Every log OpenVPN wrote in the lab, its stdout and stderr, and the server's status file.
fn openvpn_logs(lab: &Lab) -> Vec<Source> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for suffix in [".log", ".out", ".status"] {
        paths.extend(files_ending_in(lab.dir(), suffix));
    }
    paths.sort();
    // The server and five clients, each with a log and an output file.
    assert!(paths.len() >= 12, "logs of the server and 5 clients expected: {paths:?}");
    let read = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
    let name = |p: &PathBuf| p.file_name().unwrap_or_default().to_string_lossy().into_owned();
    paths.iter().map(|p| Source::new(name(p), read(p))).collect()
}

/// Kinds of secret that must be found where they are meant to be shown (enrolment, new
/// recovery codes) or recorded (the wrapper's file): proof that the search works.
const FOUND_WHERE_SHOWN: [&str; 5] =
    ["OTP secret", "a recovery code", "an auth-token", "a static-challenge", "a password field"];

fn assert_the_search_finds_them_where_shown(secrets: &Secrets, shown: &[Source]) {
    let finds = find(secrets, shown);
    for (index, secret) in secrets.0.iter().enumerate() {
        if FOUND_WHERE_SHOWN.iter().any(|kind| secret.kind.starts_with(kind)) {
            assert!(
                finds.iter().any(|f| f.secret == index),
                "the search misses {} where it is: {:?}",
                secret.kind,
                secret.value
            );
        }
    }
}

// ---------------------------------------------------------------------------------------

#[test]
fn no_secret_code_password_or_token_reaches_a_log_an_audit_row_or_debug_output() {
    let started = Instant::now();
    let test_start = unix_now();
    let mut lab = Lab::new();
    let admin = Admin::new(lab.path("mfa"));
    let mut secrets = Secrets::default();

    // An administrator's setup, as verbose as it gets.
    admin.run(&["init"]);
    std::fs::write(admin.dir.join("config.toml"), OPENVPN_TIMING).expect("write config.toml");
    let alice = admin.add_user("alice", "otp", None);
    let bob = admin.add_user("bob", "concat", Some(BOB_PASSWORD));
    let carol = admin.add_user("carol", "scrv1", Some(CAROL_PASSWORD));
    let mut otp_secrets = vec![("alice", alice.clone()), ("bob", bob.clone())];
    otp_secrets.push(("carol", carol.clone()));
    for (user, secret) in &otp_secrets {
        secrets.add(format!("OTP secret of {user}"), secret.as_str());
    }
    secrets.add("bob's password", BOB_PASSWORD);
    secrets.add("carol's password", CAROL_PASSWORD);
    secrets.add("carol's password, base64 as in SCRV1", STANDARD.encode(CAROL_PASSWORD));
    let printed_verify = start_server(&mut lab, &admin, &mut secrets);
    let setup_done = started.elapsed();

    // Each user connects the way their client sends the code, each with a configured
    // tunnel: in this harness a client without one hears nothing of the server's keepalive,
    // restarts after about 13 s and reconnects with its token, which would stand in for the
    // renegotiation waited for below.
    let alice_code = code_at(&alice, unix_now());
    let bob_code = code_at(&bob, unix_now());
    let carol_code = code_at(&carol, unix_now());
    secrets.add("carol's code, base64 as in SCRV1", STANDARD.encode(&carol_code));
    let configured =
        |user: &str, field: String| ClientOpts::new(user, field).tun(TunMode::Configure);
    let alice_client = lab.start_client(configured("alice", alice_code.clone()));
    let bob_client = lab.start_client(configured("bob", format!("{BOB_PASSWORD}{bob_code}")));
    let carol_client = lab.start_client(configured("carol", scrv1(CAROL_PASSWORD, &carol_code)));
    for client in [&alice_client, &bob_client, &carol_client] {
        client.wait_connected(CONNECT).unwrap();
    }
    let connected = Instant::now();

    // A wrong code, and alice's code replayed from another device.
    let wrong = wrong_code(&alice);
    let opts = ClientOpts::new("alice", wrong.as_str()).tun(TunMode::NoExec);
    let wrong_client = lab.start_client(opts);
    let opts = ClientOpts::new("alice", alice_code.as_str()).tun(TunMode::NoExec);
    let replay_client = lab.start_client(opts);
    for client in [&wrong_client, &replay_client] {
        client.wait_auth_failed(CONNECT).unwrap();
        assert_eq!(client.count(support::INIT_DONE), 0, "{}", client.log());
    }
    admin.wait_for_row(CONNECT, "alice", "refused", "wrong-code", "otp");
    admin.wait_for_row(CONNECT, "alice", "refused", "replayed-code", "otp");

    // The server renegotiates with every client once, and each presents its token.
    let clients = [("alice", &alice_client), ("bob", &bob_client), ("carol", &carol_client)];
    for (user, client) in clients {
        let row = admin.wait_for_row(NEXT_RENEGOTIATION, user, "accepted", "token", "token");
        assert_eq!(row.session_state.as_deref(), Some("Authenticated"), "{row:#?}");
        let log = lab.server_log();
        let peer = format!(" {user}/");
        let renegotiated = log.lines().any(|l| l.contains(&peer) && l.contains("TLS: soft reset"));
        assert!(renegotiated, "no renegotiation of {user}:\n{log}");
        assert_eq!(client.count("Inactivity timeout"), 0, "{user} reconnected instead");
    }
    let renegotiated = connected.elapsed();

    // Alice is disabled, to be refused at her next renegotiation; the admin commands run
    // meanwhile.
    admin.run(&["user", "disable", "alice"]);
    for args in [
        &["user", "list"][..],
        &["user", "list", "--json"],
        &["user", "show", "bob"],
        &["user", "show", "carol", "--json"],
        &["audit"],
        &["audit", "--json", "--limit", "1000"],
    ] {
        admin.run(args);
    }
    // The next step's code is within the drift window and after every step used so far.
    let bob_next = code_at(&bob, unix_now() + 30);
    assert_eq!(admin.check("good code", "bob", &bob_next, Some(BOB_PASSWORD)).0, 0);
    let bob_wrong = wrong_code(&bob);
    let (code, stderr) = admin.check("bad code", "bob", &bob_wrong, Some(BOB_PASSWORD));
    assert_eq!((code, stderr.lines().last()), (1, Some("refused: wrong-code")), "{stderr}");
    let carol_next = code_at(&carol, unix_now() + 30);
    let field = format!("{CAROL_PASSWORD}{carol_next}");
    assert_eq!(admin.check("password+code in one argument", "carol", &field, None).0, 0);
    let (code, stderr) = admin.check("code of a disabled user", "alice", &alice_code, None);
    assert_eq!((code, stderr.lines().last()), (1, Some("refused: disabled")), "{stderr}");

    let recovery = admin.run_showing_secrets(&["user", "recovery-codes", "bob", "--yes"], None);
    let recovery_codes: Vec<&str> = recovery.lines().filter_map(|l| l.strip_prefix("  ")).collect();
    assert_eq!(recovery_codes.len(), 8, "{recovery}");
    for code in &recovery_codes {
        secrets.add("a recovery code of bob", *code);
    }
    let (code, _) = admin.check("recovery code", "bob", recovery_codes[0], Some(BOB_PASSWORD));
    assert_eq!(code, 0);
    admin.wait_for_row(Duration::from_secs(5), "bob", "accepted", "recovery-code", "concat");
    let new_password = format!("{CAROL_NEW_PASSWORD}\n");
    admin.run_with_stdin(
        &["user", "set-password", "carol", "--password-stdin"],
        Some(&new_password),
    );
    secrets.add("carol's new password", CAROL_NEW_PASSWORD);
    // A secret in a refused argument must not come back in the error message.
    let bad_secret = format!("{}1", alice.to_lowercase());
    let args = ["user", "add", "dave", "--secret", &bad_secret];
    let out = admin.command("user add dave --secret (not base32)", &args, None, false);
    assert!(!out.status.success(), "a secret with a 1 in it was accepted");

    alice_client.wait_auth_failed(NEXT_RENEGOTIATION).unwrap();
    let row = admin.wait_for_row(Duration::from_secs(5), "alice", "refused", "disabled", "token");
    assert_eq!(row.session_state.as_deref(), Some("Authenticated"), "{row:#?}");
    assert!(alice_client.wait_exit(Duration::from_secs(10)), "disabled client still running");
    let disabled_refused = connected.elapsed();

    // A new secret for alice, shown once, and her first code with it.
    let reset = admin.run_showing_secrets(&["user", "reset-otp", "alice", "--yes"], None);
    let new_secret = reset.lines().find_map(|l| l.strip_prefix("Secret:"));
    let new_secret = new_secret.expect("a Secret line").trim().to_owned();
    secrets.add("OTP secret of alice after reset-otp", new_secret.as_str());
    otp_secrets.push(("alice after reset-otp", new_secret.clone()));
    admin.run(&["user", "enable", "alice"]);
    let alice_new_code = code_at(&new_secret, unix_now());
    assert_eq!(admin.check("code of the new secret", "alice", &alice_new_code, None).0, 0);
    for user in ["alice", "bob", "carol"] {
        admin.run(&["openvpn", "client-config", user]);
    }
    admin.run(&["openvpn", "server-config", "--binary", BIN]);
    run_doctor(&lab, &admin, &printed_verify);

    // Everything that crossed the wire, and in-process decisions for the Debug output:
    // alice with the next code of her new secret, bob with a wrong code.
    let seen = password_fields_seen(&lab, &mut secrets);
    for expected in [&alice_code, &wrong, &format!("{BOB_PASSWORD}{bob_code}")] {
        assert!(seen.contains(expected), "the wrapper missed a login: {seen:#?}");
    }
    let alice_next = code_at(&new_secret, unix_now() + 30);
    let bob_wrong_again = wrong_code(&bob);
    let decide = [
        ("alice", alice_next.clone(), "accepted"),
        ("bob", format!("{BOB_PASSWORD}{bob_wrong_again}"), "refused"),
    ];
    let debug = debug_output(&admin, &seen, &decide);

    // Every code used, and every code of every secret during the test: a code the verifier
    // expected must not be logged either.
    for code in [&alice_code, &bob_code, &carol_code, &bob_next, &carol_next, &wrong] {
        secrets.add("a code used in the test", code.as_str());
    }
    for code in [&bob_wrong, &alice_new_code, &alice_next, &bob_wrong_again] {
        secrets.add("a code used in the test", code.as_str());
    }
    let test_end = unix_now();
    for (user, secret) in &otp_secrets {
        for code in codes_between(secret, test_start - 60, test_end + 60) {
            secrets.add(format!("a code of {user} during the test"), code);
        }
    }

    // Where none of it may appear. OpenVPN's own lines need no exception: at verb 4 it
    // prints a pushed token as `auth-tokenSESS_ID`, without the token.
    let mut sources = admin.sources(false);
    let audit_json = admin.run(&["audit", "--json", "--limit", "1000"]);
    let audit_rows: Vec<Value> = serde_json::from_str(&audit_json).expect("JSON from audit");
    assert!(audit_rows.len() >= 15, "{audit_json}");
    sources.push(Source::new("`ovpn-mfa audit --json` (final)", audit_json));
    let audit_table = audit_table_dump(&admin.dir.join(STORE_FILE));
    sources.push(Source::new("the audit table", audit_table));
    sources.extend(debug);
    sources.extend(openvpn_logs(&lab));
    let server_log = lab.server_log();
    assert!(
        server_log.contains(" INFO auth accepted user=bob "),
        "no verifier lines:\n{server_log}"
    );

    let mut shown = admin.sources(true);
    shown.push(Source::new("the password fields the verifier was handed", seen.join("\n")));
    assert_the_search_finds_them_where_shown(&secrets, &shown);
    let leaks: Vec<String> = find(&secrets, &sources)
        .iter()
        .map(|f| {
            let (secret, source) = (&secrets.0[f.secret], &sources[f.source]);
            format!("{} in {}, line {}: {}", secret.kind, source.name, f.line_number, f.line)
        })
        .collect();
    eprintln!(
        "secret hygiene: {} secrets ({} tokens, {} codes) looked for in {} sources; setup \
         {setup_done:?}; renegotiated {renegotiated:?} and refused the disabled user \
         {disabled_refused:?} after connecting; {:?} in all",
        secrets.0.len(),
        secrets.count("an auth-token ("),
        secrets.0.iter().filter(|s| s.is_code()).count(),
        sources.len(),
        started.elapsed()
    );
    assert!(
        leaks.is_empty(),
        "{} secrets shown where they must not be:\n{}",
        leaks.len(),
        leaks.join("\n")
    );

    assert_secret_files_are_private(&admin.dir);
}
