//! Hardening (issue "Hardening", items 1 to 3): the verifier and the admin commands with many
//! processes at once, under `kill -9`, and against hostile input and hostile stores.
//!
//! Every test runs the real `ovpn-mfa` binary against its own temporary directory, with only
//! the variables OpenVPN would set, and reads the store back through the library. The tests
//! take turns (see [`serial`]): they measure time and start hundreds of processes, which would
//! skew each other on a small machine.
//!
//! Outside tools: `oathtool` (package oathtool) plays the phone app, `setpriv` (util-linux)
//! gives the unprivileged user for the read-only store, which therefore needs root.
//!
//! Contents:
//! - concurrency: 200 verifiers across 20 users at once
//! - crash safety: verifiers and admin commands killed at random points
//! - hostile input: a table of malformed logins through `verify`, then `check` and `user add`
//! - hostile stores: read-only, locked for a long time, corrupt

mod support;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ovpn_mfa::store::{audit, users, AuditEntry, AuditKind, Store};
use ovpn_mfa::username::printable;
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::Run;

const BIN: &str = env!("CARGO_BIN_EXE_ovpn-mfa");

/// The step length of the default configuration, in seconds.
const PERIOD: u64 = 30;

/// `openvpn.auth_deadline_secs` in the labs for hostile input and stores.
const DEADLINE: Duration = Duration::from_secs(3);

/// How long any refusal may take: the deadline plus a margin for a loaded machine.
const BOUND: Duration = Duration::from_secs(3 + 5);

/// Resident memory one `verify` process may use, in KiB. Debug builds need about 10 MiB; a
/// verifier that read a hostile credentials file whole would need far more.
const MAX_RSS_KIB: i64 = 48 * 1024;

/// The unprivileged user `setpriv` switches to.
const NOBODY: u32 = 65534;

/// Lets one test of this file run at a time.
fn serial() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

// Running the binary.

fn run(command: Command) -> Run {
    support::run(command, None)
}

/// `ovpn-mfa --dir DIR ARGS...` with an empty environment: OpenVPN hands a script only the
/// variables it sets, and nothing from the test's own environment may leak in.
fn ovpn_mfa<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> Command {
    let mut command = Command::new(BIN);
    command.env_clear().arg("--dir").arg(dir).args(args);
    command
}

/// Waits for `child` and returns how it ended and its peak resident memory in KiB. `Child`
/// cannot report the latter, so this reaps the process itself; `child` must not be waited
/// for again.
fn wait_with_rusage(child: &Child) -> (ExitStatus, i64) {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live locals; `pid` is our own unreaped child.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            return (ExitStatus::from_raw(status), usage.ru_maxrss);
        }
        let error = std::io::Error::last_os_error();
        assert_eq!(error.kind(), std::io::ErrorKind::Interrupted, "wait4: {error}");
    }
}

// Time and codes.

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The current time, after waiting into the next step if fewer than `margin` seconds are
/// left in this one.
fn time_with_margin(margin: u64) -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into_step = now.as_secs_f64() % PERIOD as f64;
    if into_step > (PERIOD - margin) as f64 {
        std::thread::sleep(Duration::from_secs_f64(PERIOD as f64 - into_step + 0.1));
    }
    unix_now()
}

/// The code `oathtool` computes for a base32 secret at a Unix time.
fn totp_at(secret: &str, unix: u64) -> String {
    let mut command = Command::new("oathtool");
    command.args(["--totp", "--base32", "-N", &format!("@{unix}"), secret]);
    let out = run(command).ok();
    let code = out.stdout.trim().to_owned();
    assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()), "{out}");
    code
}

/// Six-digit codes that match none of the steps from two before to two after `unix`.
fn wrong_codes(secret: &str, unix: u64, count: usize) -> Vec<String> {
    let near: Vec<String> = (-2i64..=2)
        .map(|s| totp_at(secret, unix.checked_add_signed(s * PERIOD as i64).unwrap()))
        .collect();
    let mut rng = rand::thread_rng();
    let mut codes: Vec<String> = Vec::new();
    while codes.len() < count {
        let code = format!("{:06}", rng.gen_range(0..1_000_000));
        if !near.contains(&code) && !codes.contains(&code) {
            codes.push(code);
        }
    }
    codes
}

/// The maximal runs of ASCII digits in `text`: a code counts as shown only as a whole number.
fn digit_runs(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_ascii_digit()).filter(|run| !run.is_empty()).collect()
}

// The log line.

/// The lines of `stderr` that are login decisions (`auth accepted|refused|failed ...`).
fn decision_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| {
            ["auth accepted ", "auth refused ", "auth failed "].iter().any(|w| line.contains(w))
        })
        .collect()
}

/// A `key=value` field of a decision line. `reason` is the last field and may hold spaces.
/// Other values are a plain word or a quoted, escaped string (see `printable`).
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line.find(&format!(" {key}=")).unwrap_or_else(|| panic!("no {key}= in {line}"));
    let value = &line[start + key.len() + 2..];
    if key == "reason" {
        return value;
    }
    if let Some(quoted) = value.strip_prefix('"') {
        // The closing quote is the first one not escaped by a backslash.
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                '"' if !escaped => return &value[..i + 2],
                '\\' => escaped = !escaped,
                _ => escaped = false,
            }
        }
        panic!("unterminated {key}= in {line}");
    }
    value.split(' ').next().unwrap_or_default()
}

fn assert_no_panic(text: &str, what: &str) {
    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!text.contains(bad), "{what}: {text}");
    }
}

// A data directory.

/// One data directory after `init`, removed at the end of the test, and a scratch directory
/// standing in for OpenVPN's tmp-dir (credentials and control files).
struct Lab {
    temp: tempfile::TempDir,
    scratch: tempfile::TempDir,
}

/// A user as the store holds it, less the counters a refusal may move.
#[derive(Debug, PartialEq, Eq)]
struct UserSnapshot {
    name: String,
    state: String,
    secret: Vec<u8>,
    last_step: Option<u64>,
    password_hash: Option<String>,
    recovery_codes: u32,
}

impl Lab {
    fn new() -> Self {
        let scratch = tempfile::tempdir().unwrap();
        // OpenVPN's tmp-dir is reachable by the user it runs as; so is this one.
        std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let lab = Lab { temp: tempfile::tempdir().unwrap(), scratch };
        lab.cli(&["init"]).ok();
        lab
    }

    /// A lab whose deferred logins give up after [`DEADLINE`], where failures never lock a
    /// user out (the hostile cases add up to many) and password hashing is cheap.
    fn with_short_deadline() -> Self {
        let lab = Lab::new();
        for (section, key, value) in [
            ("openvpn", "auth_deadline_secs", DEADLINE.as_secs().to_string()),
            ("openvpn", "hand_window_secs", "10".into()),
            ("openvpn", "token_renewal_secs", "20".into()),
            ("lockout", "max_failures", "1000".into()),
            ("password", "memory_kib", "1024".into()),
            ("password", "iterations", "1".into()),
        ] {
            lab.set_config(section, key, &value);
        }
        lab
    }

    fn dir(&self) -> &Path {
        self.temp.path()
    }

    fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    fn store_file(&self) -> PathBuf {
        self.dir().join("ovpn-mfa.sqlite")
    }

    fn cli<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        run(ovpn_mfa(self.dir(), args))
    }

    /// Enrols `name` and returns the base32 secret from `user add --json`.
    fn add_user(&self, name: &str) -> String {
        let out = self.cli(&["user", "add", name, "--json"]).ok().json();
        out["secret"].as_str().expect("a secret in the JSON").to_owned()
    }

    /// Enrols `name` with a password, for the static-challenge (SCRV1) cases.
    fn add_user_with_password(&self, name: &str, password: &str) -> String {
        let mut command =
            ovpn_mfa(self.dir(), &["user", "add", name, "--password-stdin", "--json"]);
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, format!("{password}\n").as_bytes()).unwrap();
        drop(stdin);
        let out = Run::from_output("user add".into(), child.wait_with_output().unwrap()).ok();
        out.json()["secret"].as_str().unwrap().to_owned()
    }

    /// Sets `key` in `[section]` of config.toml; the key must already be there.
    fn set_config(&self, section: &str, key: &str, value: &str) {
        let path = self.dir().join("config.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut current = "";
        let mut found = false;
        let mut lines = Vec::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if let Some(name) = trimmed.strip_prefix('[') {
                current = name.trim_end_matches(']');
            }
            let is_key = trimmed.split('=').next().map(str::trim) == Some(key);
            if current == section && is_key && !trimmed.starts_with('#') {
                found = true;
                lines.push(format!("{key} = {value}"));
            } else {
                lines.push(line.to_owned());
            }
        }
        assert!(found, "no {key} in [{section}] of\n{text}");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }

    fn open_store(&self) -> Store {
        Store::open(&self.store_file(), Duration::from_secs(10)).expect("the store opens")
    }

    /// Every user, and asserts on the way that SQLite finds the store consistent.
    fn users(&self) -> Vec<UserSnapshot> {
        let store = self.open_store();
        assert_eq!(store.integrity_check(), Ok(()));
        let all = users::list(store.conn()).unwrap();
        all.iter()
            .map(|u| UserSnapshot {
                name: u.name.clone(),
                state: u.state.as_str().to_owned(),
                secret: u.key.as_bytes().to_vec(),
                last_step: u.last_step,
                password_hash: u.password_hash.as_ref().map(|h| h.expose().to_owned()),
                recovery_codes: ovpn_mfa::store::recovery::remaining(store.conn(), u.id).unwrap(),
            })
            .collect()
    }

    /// Every audit row, oldest first.
    fn audit(&self) -> Vec<AuditEntry> {
        audit::recent(self.open_store().conn(), None, u32::MAX).unwrap()
    }

    /// `user show NAME --json`.
    fn show(&self, name: &str) -> Value {
        self.cli(&["user", "show", name, "--json"]).ok().json()
    }
}

// One login as OpenVPN presents it.

/// How the credentials reach `verify`.
#[derive(Clone, Debug)]
enum Creds {
    /// via-file: a file with exactly these bytes.
    File(Vec<u8>),
    /// via-file, but the path given is this one.
    Path(PathBuf),
    /// via-env: the `username` and `password` variables; `None` leaves one out.
    Env { user: Option<Vec<u8>>, password: Option<Vec<u8>> },
}

/// One call of `verify`: the credentials and the other variables OpenVPN sets.
#[derive(Clone, Debug)]
struct Attempt {
    creds: Creds,
    vars: BTreeMap<&'static str, Vec<u8>>,
    /// What the client typed in the password field: it must never be printed.
    password: Vec<u8>,
}

impl Attempt {
    fn with_creds(creds: Creds, password: &[u8]) -> Self {
        let mut vars = BTreeMap::new();
        vars.insert("session_state", b"Initial".to_vec());
        vars.insert("untrusted_ip", b"198.51.100.7".to_vec());
        vars.insert("session_id", b"aGFyZGVuaW5nLXNlc3Npb24".to_vec());
        Attempt { creds, vars, password: password.to_vec() }
    }

    /// via-file: `user` on line 1, `password` on line 2.
    fn file(user: impl AsRef<[u8]>, password: impl AsRef<[u8]>) -> Self {
        let (user, password) = (user.as_ref(), password.as_ref());
        let content = [user, b"\n", password, b"\n"].concat();
        Attempt::with_creds(Creds::File(content), password)
    }

    /// via-file with these exact bytes in the file.
    fn file_bytes(content: &[u8]) -> Self {
        Attempt::with_creds(Creds::File(content.to_vec()), b"")
    }

    fn path(path: PathBuf) -> Self {
        Attempt::with_creds(Creds::Path(path), b"")
    }

    /// via-env.
    fn env(user: impl AsRef<[u8]>, password: impl AsRef<[u8]>) -> Self {
        let (user, password) = (user.as_ref().to_vec(), password.as_ref().to_vec());
        let creds = Creds::Env { user: Some(user), password: Some(password.clone()) };
        Attempt::with_creds(creds, &password)
    }

    /// The user name as sent: it is shown in the log by design, whatever it holds.
    fn username(&self) -> Vec<u8> {
        match &self.creds {
            Creds::File(content) => content.split(|b| *b == b'\n').next().unwrap().to_vec(),
            Creds::Path(_) => Vec::new(),
            Creds::Env { user, .. } => user.clone().unwrap_or_default(),
        }
    }

    fn set(mut self, var: &'static str, value: impl AsRef<[u8]>) -> Self {
        self.vars.insert(var, value.as_ref().to_vec());
        self
    }

    fn unset(mut self, var: &'static str) -> Self {
        self.vars.remove(var);
        self
    }
}

/// How `verify` answered.
#[derive(Debug)]
struct Verdict {
    /// `None` when killed by a signal.
    exit: Option<i32>,
    /// The control and reason files' contents after the answer (with control files only).
    control: Option<String>,
    reason_file: Option<String>,
    /// Both halves' stderr: the foreground process and, when deferred, its worker.
    stderr: String,
    stderr_bytes: Vec<u8>,
    /// From the start until the answer: the exit, or the verdict in the control file.
    elapsed: Duration,
    max_rss_kib: i64,
}

static FILE_NUMBER: AtomicUsize = AtomicUsize::new(0);

/// Runs `verify` for `attempt`, OpenVPN-style: with `control`, empty control and reason files
/// are created first and a deferred answer is awaited there. With `as_nobody` the verifier
/// runs as user `nobody`, and the files it is handed are that user's, as OpenVPN's would be.
// The child is reaped by `wait_with_rusage`, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn verify(lab: &Lab, attempt: &Attempt, control: bool, as_nobody: bool) -> Verdict {
    let n = FILE_NUMBER.fetch_add(1, Ordering::Relaxed);
    let scratch = lab.scratch();
    let give_away = |path: &Path| {
        if as_nobody {
            std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    };
    let mut command = if as_nobody {
        let mut command = Command::new("/usr/bin/setpriv");
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        command
    } else {
        Command::new(BIN)
    };
    command.env_clear().arg("--dir").arg(lab.dir()).arg("verify");
    match &attempt.creds {
        Creds::File(content) => {
            let path = scratch.join(format!("credentials-{n}"));
            std::fs::write(&path, content).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            give_away(&path);
            command.arg(path);
        }
        Creds::Path(path) => {
            command.arg(path);
        }
        Creds::Env { user, password } => {
            if let Some(user) = user {
                command.env("username", OsStr::from_bytes(user));
            }
            if let Some(password) = password {
                command.env("password", OsStr::from_bytes(password));
            }
        }
    }
    for (name, value) in &attempt.vars {
        command.env(name, OsStr::from_bytes(value));
    }
    let files = control.then(|| {
        let control_file = scratch.join(format!("acf-{n}"));
        let reason_file = scratch.join(format!("arf-{n}"));
        for path in [&control_file, &reason_file] {
            std::fs::write(path, "").unwrap();
            give_away(path);
        }
        command.env("auth_control_file", &control_file);
        command.env("auth_failed_reason_file", &reason_file);
        (control_file, reason_file)
    });
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());

    let start = Instant::now();
    let mut child = command.spawn().unwrap();
    // A deferred worker inherits stderr, so this read ends when both halves are gone.
    let mut stderr = child.stderr.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr.read_to_end(&mut bytes);
        let _ = sender.send(bytes);
    });
    let (status, max_rss_kib) = wait_with_rusage(&child);
    if status.code() == Some(2) {
        let (control_file, _) = files.as_ref().expect("deferred without control files");
        while std::fs::read(control_file).unwrap().is_empty() && start.elapsed() < BOUND * 2 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let elapsed = start.elapsed();
    let stderr_bytes = receiver.recv_timeout(BOUND * 2).expect("the worker ended");
    let read = |path: &PathBuf| std::fs::read_to_string(path).unwrap();
    Verdict {
        exit: status.code(),
        control: files.as_ref().map(|(c, _)| read(c)),
        reason_file: files.as_ref().map(|(_, r)| read(r)),
        stderr: String::from_utf8_lossy(&stderr_bytes).into_owned(),
        stderr_bytes,
        elapsed,
        max_rss_kib,
    }
}

impl Verdict {
    /// Asserts a refusal OpenVPN would act on: exit 1, or exit 2 and then `0` in the control
    /// file; within [`BOUND`], in bounded memory, with the reason file written, one decision
    /// line on stderr, no panic, and none of `secrets` printed. Returns the decision line.
    fn assert_refused(&self, what: &str, secrets: &[&[u8]]) -> String {
        let deferred_refusal = self.exit == Some(2) && self.control.as_deref() == Some("0");
        assert!(self.exit == Some(1) || deferred_refusal, "{what}: {self:#?}");
        assert!(self.elapsed < BOUND, "{what}: took {:?}", self.elapsed);
        assert!(self.max_rss_kib < MAX_RSS_KIB, "{what}: used {} KiB", self.max_rss_kib);
        if let Some(reason) = &self.reason_file {
            // What the client is told: written before the verdict, never empty on a refusal.
            assert!(!reason.is_empty(), "{what}: no reason for the client: {self:#?}");
        }
        assert_no_panic(&self.stderr, what);
        let lines = decision_lines(&self.stderr);
        assert_eq!(lines.len(), 1, "{what}: one decision line expected:\n{}", self.stderr);
        assert!(!lines[0].contains("auth accepted"), "{what}: {}", lines[0]);
        let client_text = self.reason_file.clone().unwrap_or_default().into_bytes();
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            for (place, text) in [("stderr", &self.stderr_bytes), ("reason", &client_text)] {
                assert_not_shown(what, place, text, secret);
            }
        }
        lines[0].to_owned()
    }
}

/// Asserts that `secret` is nowhere in `text`: a code not as a whole number, anything else
/// not as a substring (long ones checked by slices, so a partial leak shows too).
fn assert_not_shown(what: &str, place: &str, text: &[u8], secret: &[u8]) {
    let shown = String::from_utf8_lossy(text);
    if secret.len() == 6 && secret.iter().all(u8::is_ascii_digit) {
        let code = std::str::from_utf8(secret).unwrap();
        assert!(!digit_runs(&shown).contains(&code), "{what}: {place} shows the code:\n{shown}");
        return;
    }
    if secret.len() < 6 {
        return;
    }
    let lossy = String::from_utf8_lossy(secret).into_owned();
    let mut needles: Vec<&[u8]> = vec![secret, lossy.as_bytes()];
    if secret.len() > 64 {
        let mid = secret.len() / 2;
        needles = vec![&secret[..32], &secret[mid..mid + 32], &secret[secret.len() - 32..]];
    }
    for needle in needles {
        let found = text.windows(needle.len()).any(|w| w == needle);
        assert!(!found, "{what}: {place} shows what the client sent:\n{shown}");
    }
}

// 1. Concurrency.

/// One of the 200 concurrent verifiers and what it was given.
struct Concurrent {
    user: usize,
    valid: bool,
    code: String,
    child: Child,
}

#[test]
fn two_hundred_concurrent_verifiers_across_twenty_users_decide_every_code_exactly_once() {
    let _turn = serial();
    const USERS: usize = 20;
    const SAME_CODE: usize = 6;
    const WRONG: usize = 4;
    let lab = Lab::new();
    let names: Vec<String> = (0..USERS).map(|i| format!("user{i:02}")).collect();
    let secrets: Vec<String> = names.iter().map(|n| lab.add_user(n)).collect();
    // Below the default lockout threshold (5), so nobody locks whatever the order.
    const { assert!(WRONG < 5) };

    // Enough of the step left that every code is computed and presented in it (the code of
    // the current step stays valid through the next one, so a boundary during the run is
    // harmless; wrong codes match none of the five steps around now).
    let now = time_with_margin(8);
    let step = now / PERIOD;
    let mut plan: Vec<(usize, bool, String)> = Vec::new();
    for (user, secret) in secrets.iter().enumerate() {
        let code = totp_at(secret, now);
        plan.extend((0..SAME_CODE).map(|_| (user, true, code.clone())));
        plan.extend(wrong_codes(secret, now, WRONG).into_iter().map(|c| (user, false, c)));
    }
    assert_eq!(plan.len(), 200);
    // Shuffled, so every user's processes compete with every other user's.
    plan.shuffle(&mut rand::thread_rng());

    let started = Instant::now();
    let mut running: Vec<Concurrent> = Vec::new();
    for (i, (user, valid, code)) in plan.into_iter().enumerate() {
        let name = &names[user];
        let mut command = ovpn_mfa(lab.dir(), &["verify"]);
        // Half via-file, half via-env, as the two OpenVPN setups would call it.
        if i % 2 == 0 {
            let path = lab.scratch().join(format!("credentials-{i}"));
            std::fs::write(&path, format!("{name}\n{code}\n")).unwrap();
            command.arg(path);
        } else {
            command.env("username", name).env("password", &code);
        }
        command
            .env("session_state", "Initial")
            .env("session_id", format!("c2Vzc2lvbi{i:03}"))
            .env("untrusted_ip", format!("10.8.{user}.{}", i % 250 + 1))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = command.spawn().expect("spawn verify");
        running.push(Concurrent { user, valid, code, child });
    }
    let spawned = started.elapsed();

    let mut accepted = vec![0; USERS];
    for process in running {
        let output = process.child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let kind = if process.valid { "valid" } else { "wrong" };
        let what = format!("{} with a {kind} code", names[process.user]);
        assert_no_panic(&stderr, &what);
        assert!(!digit_runs(&stderr).contains(&process.code.as_str()), "{what}: {stderr}");
        // The decision line and nothing else: no warning about the store on the way.
        let lines = decision_lines(&stderr);
        assert_eq!((lines.len(), stderr.lines().count()), (1, 1), "{what}: {stderr}");
        let reason = field(lines[0], "reason");
        for bad in ["locked", "busy", "error"] {
            assert!(!reason.contains(bad), "{what}: {}", lines[0]);
        }
        assert_eq!(field(lines[0], "user"), names[process.user], "{}", lines[0]);
        assert_eq!(field(lines[0], "session_state"), "Initial", "{}", lines[0]);
        match (process.valid, output.status.code(), reason) {
            (true, Some(0), "ok") => accepted[process.user] += 1,
            (true, Some(1), "replayed-code") | (false, Some(1), "wrong-code") => {}
            other => panic!("{what}: unexpected {other:?}: {stderr}"),
        }
    }
    let finished = started.elapsed();
    eprintln!("200 verifiers: spawned in {spawned:?}, all decided after {finished:?}");
    assert_eq!(accepted, vec![1; USERS], "acceptances per user");

    // The audit log holds each decision once, in the order they were committed.
    let rows: Vec<AuditEntry> =
        lab.audit().into_iter().filter(|r| r.kind == AuditKind::Auth).collect();
    assert_eq!(rows.len(), 200);
    let count = |reason: &str| rows.iter().filter(|r| r.reason.as_deref() == Some(reason)).count();
    assert_eq!(
        (count("ok"), count("replayed-code"), count("wrong-code")),
        (USERS, USERS * (SAME_CODE - 1), USERS * WRONG)
    );

    // A login resets the failure count, so each user's count is the number of wrong codes
    // committed after its one acceptance: every failure after it counted, none twice.
    let snapshots = lab.users();
    for (user, name) in names.iter().enumerate() {
        let mine: Vec<&AuditEntry> =
            rows.iter().filter(|r| r.user.as_deref() == Some(name)).collect();
        assert_eq!(mine.len(), SAME_CODE + WRONG, "{name}");
        let accepted_at = mine.iter().position(|r| r.decision == "accepted").unwrap();
        let failures_after = mine[accepted_at..]
            .iter()
            .filter(|r| r.reason.as_deref() == Some("wrong-code"))
            .count();
        let shown = lab.show(name);
        assert_eq!(shown["failures"], failures_after, "{name}: {shown}");
        assert!(shown["locked_until"].is_null(), "{name}: {shown}");
        let snapshot = snapshots.iter().find(|u| &u.name == name).unwrap();
        assert_eq!(snapshot.last_step, Some(step), "{name} (user {user})");
    }
}

// 2. Crash safety.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Op {
    Verify,
    Check,
    UserAdd,
    Disable,
    Enable,
    RecoveryCodes,
}

/// A process of the crash test and what it would prove if it finished.
struct Victim {
    op: Op,
    /// The user it acts on (an enrolled one, or the new name for `user add`).
    user: String,
    /// For a login: the step of the code presented.
    step: Option<u64>,
    /// Whether `user add` asks for a name that may already exist.
    duplicate: bool,
    child: Child,
    /// When SIGKILL is due; `None` for the bystander of a round, left to finish.
    kill_at: Option<Instant>,
}

/// The codes of the base users by (user, step), from oathtool, computed once each.
struct Phone {
    secrets: Vec<String>,
    cache: HashMap<(usize, u64), String>,
}

impl Phone {
    fn code(&mut self, user: usize, step: u64) -> String {
        let secret = &self.secrets[user];
        self.cache.entry((user, step)).or_insert_with(|| totp_at(secret, step * PERIOD)).clone()
    }
}

#[test]
fn processes_killed_at_random_points_leave_a_consistent_store_that_lost_no_acknowledged_write() {
    let _turn = serial();
    const KILLS: usize = 200;
    const TIME_LIMIT: Duration = Duration::from_secs(90);
    const AT_ONCE: usize = 3;
    let lab = Lab::new();
    // Enough users that fresh codes remain for the logins that get through.
    let base: Vec<String> = (0..30).map(|i| format!("base{i:02}")).collect();
    let mut phone =
        Phone { secrets: base.iter().map(|n| lab.add_user(n)).collect(), cache: HashMap::new() };

    let mut killed: BTreeMap<Op, usize> = BTreeMap::new();
    let mut finished: BTreeMap<Op, usize> = BTreeMap::new();
    let mut added: Vec<String> = Vec::new();
    let mut accepted: Vec<(String, u64)> = Vec::new();
    let mut next_name = 0;
    let started = Instant::now();
    let mut rounds = 0;
    while killed.values().sum::<usize>() < KILLS && started.elapsed() < TIME_LIMIT {
        rounds += 1;
        // Three processes to kill, and a bystander whose writes, made while the others die
        // around it, are acknowledged and must last.
        let names_before = next_name;
        let mut victims: Vec<Victim> = (0..=AT_ONCE)
            .map(|i| {
                start_victim(&lab, &base, &mut phone, &mut next_name, names_before, i < AT_ONCE)
            })
            .collect();

        victims.sort_by_key(|v| (v.kill_at.is_none(), v.kill_at));
        for victim in &mut victims {
            let Some(kill_at) = victim.kill_at else { continue };
            std::thread::sleep(kill_at.saturating_duration_since(Instant::now()));
            if victim.child.try_wait().unwrap().is_none() {
                victim.child.kill().unwrap();
            }
        }
        for victim in victims {
            let (op, user, step, duplicate) =
                (victim.op, victim.user, victim.step, victim.duplicate);
            let output = victim.child.wait_with_output().unwrap();
            // Only a process the signal found still running counts as killed.
            if output.status.signal() == Some(libc::SIGKILL) {
                *killed.entry(op).or_default() += 1;
                continue;
            }
            *finished.entry(op).or_default() += 1;
            let out = Run::from_output(format!("{op:?} {user}"), output);
            assert_survivor(&out, op, duplicate);
            match (op, out.code) {
                (Op::Verify | Op::Check, Some(0)) => accepted.push((user, step.unwrap())),
                (Op::UserAdd, Some(0)) => added.push(user),
                _ => {}
            }
        }
    }
    let total: usize = killed.values().sum();
    eprintln!(
        "{rounds} rounds in {:?}: killed {killed:?}, finished {finished:?}, {} logins and {} \
         enrolments acknowledged",
        started.elapsed(),
        accepted.len(),
        added.len()
    );
    assert!(total >= KILLS, "only {total} processes were killed while running in {TIME_LIMIT:?}");
    for op in [Op::Verify, Op::Check, Op::UserAdd] {
        assert!(killed.get(&op).copied().unwrap_or(0) >= 10, "few kills of {op:?}: {killed:?}");
    }

    // The store opens, is consistent, and kept everything it acknowledged.
    let snapshots = lab.users();
    let names: Vec<&str> = snapshots.iter().map(|u| u.name.as_str()).collect();
    let listed = lab.cli(&["user", "list", "--json"]).ok().json();
    let listed: Vec<&str> =
        listed.as_array().unwrap().iter().map(|u| u["user"].as_str().unwrap()).collect();
    assert_eq!(listed, names);
    let unique: HashSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "a user is listed twice: {names:?}");
    for name in base.iter().chain(&added) {
        assert!(unique.contains(name.as_str()), "{name} was acknowledged but is gone");
    }
    for (name, step) in &accepted {
        let user = snapshots.iter().find(|u| &u.name == name).unwrap();
        assert!(user.last_step >= Some(*step), "{name}: accepted step {step} lost: {user:?}");
    }

    // And it still works: a new user logs in with oathtool's code.
    let secret = lab.add_user("after-the-crashes");
    let out = lab.cli(&["check", "after-the-crashes", &totp_at(&secret, unix_now())]).ok();
    assert_eq!(out.stdout, "accepted\n");
}

/// Starts one random process of the crash test; with `kill`, SIGKILL is due 0 to 25 ms from
/// now.
fn start_victim(
    lab: &Lab,
    base: &[String],
    phone: &mut Phone,
    next_name: &mut usize,
    names_before: usize,
    kill: bool,
) -> Victim {
    let mut rng = rand::thread_rng();
    let op = match rng.gen_range(0..20) {
        0..=5 => Op::Verify,
        6..=8 => Op::Check,
        9..=13 => Op::UserAdd,
        14 => Op::Disable,
        15 => Op::Enable,
        _ => Op::RecoveryCodes,
    };
    let index = rng.gen_range(0..base.len());
    let mut user = base[index].clone();
    let (mut step, mut duplicate) = (None, false);
    let mut command = match op {
        Op::Verify | Op::Check => {
            // Mostly this step's code; sometimes the next one's, which moves last_step on.
            let s = unix_now() / PERIOD + u64::from(rng.gen_ratio(1, 4));
            step = Some(s);
            login_command(lab, op, &user, &phone.code(index, s), rng.gen())
        }
        Op::UserAdd => {
            // Now and then the name of an enrolment of an earlier round again, to meet UNIQUE.
            // Not one of this round: the two would race, and either might be the one refused.
            duplicate = names_before > 0 && rng.gen_ratio(1, 10);
            if duplicate {
                user = format!("added{}", names_before - 1);
            } else {
                user = format!("added{next_name}");
                *next_name += 1;
            }
            ovpn_mfa(lab.dir(), &["user", "add", &user, "--json"])
        }
        Op::Disable => ovpn_mfa(lab.dir(), &["user", "disable", &user]),
        Op::Enable => ovpn_mfa(lab.dir(), &["user", "enable", &user]),
        Op::RecoveryCodes => ovpn_mfa(lab.dir(), &["user", "recovery-codes", &user, "--yes"]),
    };
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = command.spawn().unwrap();
    let delay = Duration::from_millis(rng.gen_range(0..=25));
    let kill_at = kill.then(|| Instant::now() + delay);
    Victim { op, user, step, duplicate, child, kill_at }
}

/// `verify` (via-file or via-env) or `check` for one user and code.
fn login_command(lab: &Lab, op: Op, name: &str, code: &str, via_file: bool) -> Command {
    if op == Op::Check {
        return ovpn_mfa(lab.dir(), &["check", name, code]);
    }
    let mut command = ovpn_mfa(lab.dir(), &["verify"]);
    if via_file {
        let n = FILE_NUMBER.fetch_add(1, Ordering::Relaxed);
        let path = lab.scratch().join(format!("credentials-{n}"));
        std::fs::write(&path, format!("{name}\n{code}\n")).unwrap();
        command.arg(path);
    } else {
        command.env("username", name).env("password", code);
    }
    command.env("session_state", "Initial").env("untrusted_ip", "10.9.0.1");
    command
}

/// A process of the crash test that the signal missed must have finished normally: the
/// crashes of others may not turn into errors, locks or panics for it.
fn assert_survivor(out: &Run, op: Op, duplicate: bool) {
    assert_no_panic(&out.stderr, &out.what);
    match op {
        Op::Verify => {
            let lines = decision_lines(&out.stderr);
            assert_eq!(lines.len(), 1, "{out}");
            let reason = field(lines[0], "reason");
            let fine = matches!(
                (out.code, reason),
                (Some(0), "ok") | (Some(1), "replayed-code" | "disabled")
            );
            assert!(fine, "{out}");
        }
        Op::Check => {
            let fine = out.code == Some(0)
                || ["refused: replayed-code\n", "refused: disabled\n"].contains(&&*out.stderr);
            assert!(fine, "{out}");
        }
        Op::UserAdd if duplicate && out.code == Some(1) => {
            assert!(out.stderr.contains("already exists"), "{out}");
        }
        _ => assert_eq!(out.code, Some(0), "{out}"),
    }
}

// 3. Hostile input.

/// Carol's password. Its length is no multiple of three, so its base64 ends in padding.
const CAROL_PASSWORD: &str = "carol-passw0rd";

/// A hostile login and the refusal it must get.
struct Case {
    what: String,
    attempt: Attempt,
    /// `refused` (an expected refusal) or `failed` (the verifier could not decide).
    decision: &'static str,
    /// The reason exactly for a refusal; a part of the error for a failure.
    reason: &'static str,
    /// The user as the log line and the audit row name it.
    user: String,
}

fn refused(what: impl Into<String>, attempt: Attempt, reason: &'static str, user: &str) -> Case {
    Case { what: what.into(), attempt, decision: "refused", reason, user: user.to_owned() }
}

fn failed(what: impl Into<String>, attempt: Attempt, error: &'static str) -> Case {
    // Without readable credentials there is no user name to show.
    Case { what: what.into(), attempt, decision: "failed", reason: error, user: printable("") }
}

fn shown(raw: &[u8]) -> String {
    printable(&String::from_utf8_lossy(raw))
}

/// `len` bytes of text that is neither a code nor anything the verifier prints, ending in
/// `tail`.
fn filler(len: usize, tail: &str) -> String {
    let mut text: String = "Zq7-".repeat(len / 4 + 1);
    text.truncate(len - tail.len());
    text + tail
}

/// A string shaped like an OpenVPN auth token (what a client sends when renegotiating).
fn auth_token() -> String {
    let mut bytes = [0u8; 48];
    rand::thread_rng().fill(&mut bytes[..]);
    format!("SESS_ID_AT_{}", BASE64.encode(bytes))
}

/// The static-challenge response a client sends: `SCRV1:<base64 password>:<base64 code>`.
fn scrv1(password: &str, code: &str) -> String {
    format!("SCRV1:{}:{}", BASE64.encode(password), BASE64.encode(code))
}

/// Every hostile login, with alice's (`v`) and carol's (`c`) current codes and a wrong one.
fn hostile_cases(lab: &Lab, v: &str, c: &str, wrong: &str) -> Vec<Case> {
    let token = auth_token();
    let pw64 = BASE64.encode(CAROL_PASSWORD);
    let c64 = BASE64.encode(c);
    let (c64_head, c64_tail) = c64.split_at(4);
    let mut cases = vec![
        refused(
            "non-UTF-8 in the user name (file)",
            Attempt::file(b"al\xffice", v),
            "invalid-username",
            &shown(b"al\xffice"),
        ),
        refused(
            "non-UTF-8 in the user name (env)",
            Attempt::env(b"al\xffice", v),
            "invalid-username",
            &shown(b"al\xffice"),
        ),
        refused(
            "non-UTF-8 in the password (file)",
            Attempt::file("alice", b"12\xff456"),
            "wrong-code",
            "alice",
        ),
        refused(
            "non-UTF-8 in the password (env)",
            Attempt::env("alice", b"12\xff456"),
            "wrong-code",
            "alice",
        ),
        refused(
            "a NUL in the user name",
            Attempt::file(b"ali\0ce", v),
            "invalid-username",
            &shown(b"ali\0ce"),
        ),
        refused(
            "a NUL after the right code",
            Attempt::file("alice", format!("{v}\0")),
            "wrong-code",
            "alice",
        ),
        refused(
            "a line feed inside the user name (env)",
            Attempt::env("alice\nbob", v),
            "invalid-username",
            &printable("alice\nbob"),
        ),
        refused(
            "a code smuggled after a line feed in the user name (env)",
            Attempt::env(format!("alice\n{v}"), filler(20, "")),
            "invalid-username",
            &printable(&format!("alice\n{v}")),
        ),
        refused(
            "a carriage return after the user name (env)",
            Attempt::env("alice\r", v),
            "invalid-username",
            &printable("alice\r"),
        ),
        refused(
            "a line feed inside the code (env)",
            Attempt::env("alice", format!("{}\n{}", &v[..3], &v[3..])),
            "wrong-code",
            "alice",
        ),
        refused(
            "a carriage return inside the password line (file)",
            Attempt::file_bytes(format!("alice\n{v}\rX\n").as_bytes()),
            "wrong-code",
            "alice",
        ),
        refused(
            "a 4 KiB password field ending in the right code",
            Attempt::file("alice", filler(4096, v)),
            "wrong-code",
            "alice",
        ),
        refused(
            "a password field one byte over 4 KiB",
            Attempt::file("alice", filler(4097, v)),
            "field-too-long",
            "alice",
        ),
        refused(
            "a 1 MiB password field (file)",
            Attempt::file("alice", filler(1 << 20, v)),
            "field-too-long",
            "alice",
        ),
        refused(
            "a 100 KiB password field (env)",
            Attempt::env("alice", filler(100 << 10, v)),
            "field-too-long",
            "alice",
        ),
        refused(
            "a user name over 64 bytes",
            Attempt::file("a".repeat(65), v),
            "invalid-username",
            &printable(&"a".repeat(65)),
        ),
        refused(
            "an unknown user with the right code of another",
            Attempt::file("mallory", v),
            "unknown-user",
            "mallory",
        ),
        refused(
            "Cyrillic а in аlice",
            Attempt::file("аlice", v),
            "invalid-username",
            &printable("аlice"),
        ),
        refused(
            "ALICE with a wrong code maps to alice",
            Attempt::file("ALICE", wrong),
            "wrong-code",
            "alice",
        ),
        refused(
            "SCRV1 with no parts",
            Attempt::file("carol", "SCRV1:"),
            "malformed-scrv1",
            "carol",
        ),
        refused(
            "SCRV1 with the password part only",
            Attempt::file("carol", format!("SCRV1:{pw64}")),
            "malformed-scrv1",
            "carol",
        ),
        refused(
            "SCRV1 with an empty code part",
            Attempt::file("carol", format!("SCRV1:{pw64}:")),
            "no-code",
            "carol",
        ),
        refused(
            "SCRV1 with an empty password part",
            Attempt::file("carol", format!("SCRV1::{c64}")),
            "no-password",
            "carol",
        ),
        refused(
            "SCRV1 with a third part",
            Attempt::file("carol", format!("{}:{c64}", scrv1(CAROL_PASSWORD, c))),
            "malformed-scrv1",
            "carol",
        ),
        refused(
            "SCRV1 with unpadded base64",
            Attempt::file("carol", format!("SCRV1:{}:{c64}", pw64.trim_end_matches('='))),
            "malformed-scrv1",
            "carol",
        ),
        refused(
            "SCRV1 with something not base64",
            Attempt::file("carol", format!("SCRV1:{CAROL_PASSWORD}:{c}")),
            "malformed-scrv1",
            "carol",
        ),
        refused(
            "SCRV1 with line-wrapped base64 (env)",
            Attempt::env("carol", format!("SCRV1:{pw64}:{c64_head}\n{c64_tail}")),
            "malformed-scrv1",
            "carol",
        ),
        // A credentials file holds one line of password: the wrapped half of the code is lost.
        refused(
            "SCRV1 with line-wrapped base64 (file)",
            Attempt::file("carol", format!("SCRV1:{pw64}:{c64_head}\n{c64_tail}")),
            "wrong-code",
            "carol",
        ),
        refused(
            "an auth-token string as password while Initial",
            Attempt::file("alice", &token),
            "wrong-code",
            "alice",
        ),
        refused(
            "Authenticated with an unknown session_id",
            Attempt::file("alice", &token)
                .set("session_state", "Authenticated")
                .set("session_id", BASE64.encode(rand::random::<[u8; 24]>())),
            "unknown-session",
            "alice",
        ),
        refused(
            "Authenticated without session_id",
            Attempt::file("alice", &token)
                .set("session_state", "Authenticated")
                .unset("session_id"),
            "unknown-session",
            "alice",
        ),
        refused(
            "Authenticated with a 4 KiB session_id",
            Attempt::file("alice", &token)
                .set("session_state", "Authenticated")
                .set("session_id", filler(4096, "")),
            "unknown-session",
            "alice",
        ),
        refused(
            "Expired with a token",
            Attempt::file("alice", &token).set("session_state", "Expired"),
            "token-expired",
            "alice",
        ),
        refused(
            "Invalid with a token",
            Attempt::file("alice", &token).set("session_state", "Invalid"),
            "token-invalid",
            "alice",
        ),
        refused(
            "AuthenticatedEmptyUser with a token",
            Attempt::file("", &token).set("session_state", "AuthenticatedEmptyUser"),
            "empty-user-token",
            &printable(""),
        ),
        refused(
            "no session_state at all",
            Attempt::file("alice", wrong).unset("session_state"),
            "wrong-code",
            "alice",
        ),
        refused(
            "no untrusted_ip",
            Attempt::file("alice", wrong).unset("untrusted_ip"),
            "wrong-code",
            "alice",
        ),
        refused(
            "no username variable (env)",
            Attempt::with_creds(Creds::Env { user: None, password: Some(v.into()) }, v.as_bytes()),
            "invalid-username",
            &printable(""),
        ),
        refused(
            "an empty credentials file",
            Attempt::file_bytes(b""),
            "invalid-username",
            &printable(""),
        ),
        refused(
            "a credentials file with the user name only",
            Attempt::file_bytes(b"alice\n"),
            "no-code",
            "alice",
        ),
        failed(
            "no password variable (env)",
            Attempt::with_creds(Creds::Env { user: Some(b"alice".to_vec()), password: None }, b""),
            "no password in the environment",
        ),
        failed(
            "no variables at all",
            Attempt::with_creds(Creds::Env { user: None, password: None }, b"")
                .unset("session_state")
                .unset("untrusted_ip")
                .unset("session_id"),
            "no password in the environment",
        ),
        failed(
            "a credentials file that does not exist",
            Attempt::path(lab.scratch().join("gone")),
            "cannot read the credentials file",
        ),
        failed(
            "a directory as the credentials file",
            Attempt::path(lab.scratch().to_owned()),
            "cannot read the credentials file",
        ),
        failed(
            "a FIFO nobody writes to as the credentials file",
            Attempt::path(fifo(&lab.scratch().join("fifo"))),
            "not a regular file",
        ),
    ];
    for state in ["Bogus", "authenticated", "", "Initial\n", "Authenticated "] {
        let attempt = Attempt::file("alice", v).set("session_state", state);
        let what = format!("session_state {state:?} with the right code");
        cases.push(refused(what, attempt, "unknown-session-state", "alice"));
    }
    for name in ["../alice", "/etc/passwd", "alice/../bob", "./alice", "alice/"] {
        let what = format!("{name:?} as user name");
        cases.push(refused(what, Attempt::file(name, v), "invalid-username", &printable(name)));
    }
    cases
}

/// A named pipe at `path` (made once), which would block a reader until someone writes.
fn fifo(path: &Path) -> PathBuf {
    if !path.exists() {
        let status = Command::new("mkfifo").arg(path).status().expect("run mkfifo");
        assert!(status.success(), "mkfifo failed");
    }
    path.to_owned()
}

/// The store's users and its number of audit rows.
fn store_state(lab: &Lab) -> (Vec<UserSnapshot>, usize) {
    (lab.users(), lab.audit().len())
}

/// Runs one hostile case and asserts its refusal (see [`Verdict::assert_refused`]), that the
/// log line names the expected user, reason, session state and source, that exactly one audit
/// row says the same, and that no user changed.
fn assert_case(lab: &Lab, case: &Case, control: bool, secrets: &[&[u8]]) -> Verdict {
    let mode = if control { "control files" } else { "no control files" };
    let what = format!("{} ({mode})", case.what);
    let (users_before, audit_before) = store_state(lab);

    let verdict = verify(lab, &case.attempt, control, false);

    // What the client sent as password must not show; its user name is shown by design.
    let mut secrets = secrets.to_vec();
    secrets.push(&case.attempt.password);
    let username = case.attempt.username();
    secrets.retain(|s| !username.windows(s.len().max(1)).any(|w| w == *s));
    let line = verdict.assert_refused(&what, &secrets);
    assert!(line.contains(&format!("auth {} ", case.decision)), "{what}: {line}");
    assert_eq!(field(&line, "user"), case.user, "{what}: {line}");
    let reason = field(&line, "reason");
    if case.decision == "refused" {
        assert_eq!(reason, case.reason, "{what}: {line}");
        let state = case.attempt.vars.get("session_state").map(|s| shown(s));
        let state = state.unwrap_or_else(|| "none".into());
        assert_eq!(field(&line, "session_state"), state, "{what}: {line}");
        let source = case.attempt.vars.get("untrusted_ip").map(|s| shown(s));
        assert_eq!(field(&line, "source"), source.unwrap_or_else(|| "-".into()), "{what}");
    } else {
        let error = reason.strip_prefix("error: ").unwrap_or_else(|| panic!("{what}: {line}"));
        assert!(error.contains(case.reason), "{what}: {line}");
    }

    let (users_after, audit_after) = store_state(lab);
    assert_eq!(audit_after, audit_before + 1, "{what}");
    let row = lab.audit().pop().unwrap();
    assert_eq!(row.kind, AuditKind::Auth, "{what}");
    assert_eq!(row.decision, case.decision, "{what}");
    assert_eq!(row.user.as_deref(), Some(case.user.as_str()), "{what}");
    assert_eq!(row.reason.as_deref(), Some(reason), "{what}");
    assert_eq!(row.session_state.as_deref(), Some(field(&line, "session_state")), "{what}");
    assert_eq!(row.source.as_deref(), Some(field(&line, "source")), "{what}");
    assert_eq!(users_after, users_before, "{what}");
    verdict
}

#[test]
fn hostile_logins_through_verify_are_refused_in_time_audited_once_and_change_no_user() {
    let _turn = serial();
    let lab = Lab::with_short_deadline();
    let alice = lab.add_user("alice");
    let carol = lab.add_user_with_password("carol", CAROL_PASSWORD);
    // Every code stays valid for the whole table: through this step and the next.
    let now = time_with_margin(10);
    let (v, c) = (totp_at(&alice, now), totp_at(&carol, now));
    let wrong = wrong_codes(&alice, now, 1).remove(0);
    let pw64 = BASE64.encode(CAROL_PASSWORD);
    let secrets: [&[u8]; 4] =
        [v.as_bytes(), c.as_bytes(), CAROL_PASSWORD.as_bytes(), pw64.as_bytes()];

    let started = Instant::now();
    let (mut slowest, mut largest, mut runs, mut deferred) = (Duration::ZERO, 0, 0, 0);
    for case in hostile_cases(&lab, &v, &c, &wrong) {
        for control in [false, true] {
            let verdict = assert_case(&lab, &case, control, &secrets);
            slowest = slowest.max(verdict.elapsed);
            largest = largest.max(verdict.max_rss_kib);
            runs += 1;
            deferred += usize::from(verdict.exit == Some(2));
        }
    }
    eprintln!(
        "{runs} hostile logins ({deferred} deferred) in {:?}; slowest {slowest:?}, largest \
         verifier {largest} KiB",
        started.elapsed()
    );
    // The codes used throughout are still unused: nothing above logged anyone in.
    assert_eq!(verify(&lab, &Attempt::file("alice", &v), false, false).exit, Some(0));
}

#[test]
fn a_user_name_in_capitals_logs_in_as_the_folded_name_and_the_audit_says_so() {
    let _turn = serial();
    let lab = Lab::with_short_deadline();
    let secret = lab.add_user("alice");
    let code = totp_at(&secret, time_with_margin(5));

    let first = verify(&lab, &Attempt::file("ALICE", &code), false, false);
    assert_eq!(first.exit, Some(0), "{first:#?}");
    let lines = decision_lines(&first.stderr);
    assert_eq!(lines.len(), 1, "{}", first.stderr);
    assert!(lines[0].contains("auth accepted user=alice "), "{}", lines[0]);

    // The same code under another spelling is the same user's replay.
    let second = verify(&lab, &Attempt::env("Alice", &code), true, false);
    let line = second.assert_refused("Alice replaying ALICE's code", &[code.as_bytes()]);
    assert_eq!((field(&line, "user"), field(&line, "reason")), ("alice", "replayed-code"));

    let rows: Vec<(Option<String>, String)> = lab
        .audit()
        .into_iter()
        .filter(|r| r.kind == AuditKind::Auth)
        .map(|r| (r.user, r.decision))
        .collect();
    let alice = Some("alice".to_owned());
    assert_eq!(rows, [(alice.clone(), "accepted".into()), (alice, "refused".into())]);
}

#[test]
fn hostile_names_and_codes_given_to_check_and_user_add_are_refused_and_change_nothing() {
    let _turn = serial();
    let lab = Lab::with_short_deadline();
    let secret = lab.add_user("alice");
    let now = time_with_margin(10);
    let v = totp_at(&secret, now);
    let wrong = wrong_codes(&secret, now, 1).remove(0);
    let token = auth_token();
    let big = filler(4096, &v);
    let too_big = filler(4097, &v);

    // `check` answers as the verifier does: a refusal with a reason, audited once.
    let checks: Vec<(&str, &str, &str, String)> = vec![
        ("../alice", &v, "invalid-username", printable("../alice")),
        ("/etc/passwd", &v, "invalid-username", printable("/etc/passwd")),
        ("аlice", &v, "invalid-username", printable("аlice")),
        ("ali\nce", &v, "invalid-username", printable("ali\nce")),
        ("alice\r", &v, "invalid-username", printable("alice\r")),
        ("ALICE", &wrong, "wrong-code", "alice".into()),
        ("alice", &token, "wrong-code", "alice".into()),
        ("alice", &big, "wrong-code", "alice".into()),
        ("alice", &too_big, "field-too-long", "alice".into()),
        ("alice", "SCRV1:", "malformed-scrv1", "alice".into()),
    ];
    for (name, code, reason, user) in checks {
        let what = format!("check {name:?}");
        let before = store_state(&lab);
        let out = lab.cli(&["check", "--", name, code]);
        assert_eq!(out.code, Some(1), "{what}: {out}");
        assert_eq!(out.stderr, format!("refused: {reason}\n"), "{what}: {out}");
        assert!(!digit_runs(&out.stdout).contains(&v.as_str()), "{out}");
        let after = store_state(&lab);
        assert_eq!((&after.0, after.1), (&before.0, before.1 + 1), "{what}");
        let row = lab.audit().pop().unwrap();
        assert_eq!((row.user, row.reason.as_deref()), (Some(user), Some(reason)), "{what}");
    }

    // Arguments that are not UTF-8 never reach a decision, and leave no trace.
    let not_utf8 = OsStr::from_bytes(b"al\xffice");
    let hostile_arguments: [Vec<&OsStr>; 3] = [
        vec![OsStr::new("check"), OsStr::new("--"), not_utf8, OsStr::new(&v)],
        vec![OsStr::new("check"), OsStr::new("alice"), OsStr::from_bytes(b"12\xff456")],
        vec![OsStr::new("user"), OsStr::new("add"), OsStr::new("--"), not_utf8],
    ];
    for args in hostile_arguments {
        let before = store_state(&lab);
        let out = lab.cli(&args);
        assert!(matches!(out.code, Some(c) if c != 0), "{out}");
        assert!(out.stderr.to_lowercase().contains("utf-8"), "{out}");
        assert_no_panic(&out.stderr, &out.what);
        assert_eq!(store_state(&lab), before, "{out}");
    }

    // `user add` refuses the same names with an error and enrols nobody.
    let names: [&OsStr; 7] = [
        OsStr::new("../x"),
        OsStr::new("/etc/passwd"),
        OsStr::new("аlice"),
        OsStr::new("a\nb"),
        OsStr::new("a\rb"),
        OsStr::new("ALICE"),
        OsStr::new("Alice"),
    ];
    for name in names {
        let before = store_state(&lab);
        let out = lab.cli(&[OsStr::new("user"), OsStr::new("add"), OsStr::new("--"), name]);
        assert_eq!(out.code, Some(1), "{out}");
        assert!(out.stderr.starts_with("ovpn-mfa: error: "), "{out}");
        let expected = if name.as_bytes().eq_ignore_ascii_case(b"alice") {
            "already exists"
        } else {
            "invalid user name"
        };
        assert!(out.stderr.contains(expected), "{out}");
        assert_no_panic(&out.stderr, &out.what);
        assert_eq!(store_state(&lab), before, "{out}");
    }
    assert!(!lab.dir().parent().unwrap().join("x").exists());
    assert_eq!(lab.cli(&["check", "alice", &v]).ok().stdout, "accepted\n");
}

// Hostile stores.

/// The logins tried against a broken store: a code alone (decided at once) and a static
/// challenge with a password (always handed to a worker when control files allow).
fn logins_for_broken_stores(alice_code: &str, carol_code: &str) -> [(&'static str, Attempt); 2] {
    [
        ("a code alone", Attempt::file("alice", alice_code)),
        ("password and code", Attempt::env("carol", scrv1(CAROL_PASSWORD, carol_code))),
    ]
}

fn assert_running_as_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:").and_then(|ids| ids.split_whitespace().nth(1)));
    assert_eq!(euid, Some("0"), "this test needs root to run setpriv");
}

#[test]
fn a_store_the_verifier_may_not_write_refuses_logins_in_time_and_stays_as_it_was() {
    let _turn = serial();
    assert_running_as_root();
    let lab = Lab::with_short_deadline();
    let alice = lab.add_user("alice");
    let carol = lab.add_user_with_password("carol", CAROL_PASSWORD);
    // Owned by root and readable by all: `nobody` reaches the config but may write nothing.
    std::fs::set_permissions(lab.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let now = time_with_margin(10);
    let (v, c) = (totp_at(&alice, now), totp_at(&carol, now));
    let before = store_state(&lab);

    // First the store as init made it (0600), then one nobody may read but not write.
    for mode in [0o600, 0o644] {
        std::fs::set_permissions(lab.store_file(), std::fs::Permissions::from_mode(mode)).unwrap();
        for (login, attempt) in logins_for_broken_stores(&v, &c) {
            for control in [false, true] {
                let what = format!("store mode {mode:o}, {login}, control files {control}");
                let verdict = verify(&lab, &attempt, control, true);
                let line = verdict.assert_refused(
                    &what,
                    &[v.as_bytes(), c.as_bytes(), CAROL_PASSWORD.as_bytes()],
                );
                assert!(line.contains("auth failed "), "{what}: {line}");
                assert!(field(&line, "reason").starts_with("error: "), "{what}: {line}");
            }
        }
    }

    std::fs::set_permissions(lab.store_file(), std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(store_state(&lab), before, "nobody changed the store");
    assert_eq!(verify(&lab, &Attempt::file("alice", &v), false, false).exit, Some(0));
}

#[test]
fn a_store_locked_by_another_process_refuses_logins_within_the_deadline_and_keeps_the_code_unused()
{
    let _turn = serial();
    let lab = Lab::with_short_deadline();
    let alice = lab.add_user("alice");
    let carol = lab.add_user_with_password("carol", CAROL_PASSWORD);
    // Eight logins of up to the deadline each, and the codes still valid afterwards.
    let now = time_with_margin(10);
    let (v, c) = (totp_at(&alice, now), totp_at(&carol, now));
    let before = store_state(&lab);
    let secrets: [&[u8]; 3] = [v.as_bytes(), c.as_bytes(), CAROL_PASSWORD.as_bytes()];

    // A writer that never commits; then one in exclusive locking mode, which keeps even
    // readers out (as a process recovering the WAL after a crash briefly does).
    let holds = [
        ("writers locked out", "BEGIN EXCLUSIVE"),
        (
            "readers locked out too",
            "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; CREATE TABLE held (x);",
        ),
    ];
    for (hold, sql) in holds {
        let holder = rusqlite::Connection::open(lab.store_file()).unwrap();
        holder.execute_batch(sql).unwrap();
        for (login, attempt) in logins_for_broken_stores(&v, &c) {
            for control in [false, true] {
                let what = format!("{hold}, {login}, control files {control}");
                let verdict = verify(&lab, &attempt, control, false);
                let line = verdict.assert_refused(&what, &secrets);
                assert!(line.contains("auth failed "), "{what}: {line}");
                let reason = field(&line, "reason");
                assert!(reason.contains("busy") || reason.contains("deadline"), "{what}: {line}");
                if control {
                    // Handed to a worker, which waits and then refuses in OpenVPN's place.
                    assert_eq!(verdict.exit, Some(2), "{what}: {verdict:#?}");
                } else {
                    // With nobody to hand it to, the verifier waits for the lock as long as
                    // it may instead of refusing at the first sign of another process.
                    let waited = verdict.elapsed >= DEADLINE - Duration::from_millis(500);
                    assert!(waited, "{what}: {verdict:#?}");
                }
                eprintln!("{what}: answered after {:?}", verdict.elapsed);
            }
        }
        holder.execute_batch("ROLLBACK").unwrap();
    }

    // Nothing was recorded, so the codes were not used up.
    assert_eq!(store_state(&lab), before);
    assert_eq!(verify(&lab, &Attempt::file("alice", &v), false, false).exit, Some(0));
    let carol_login = Attempt::env("carol", scrv1(CAROL_PASSWORD, &c));
    let deferred = verify(&lab, &carol_login, true, false);
    assert_eq!((deferred.exit, deferred.control.as_deref()), (Some(2), Some("1")), "{deferred:#?}");
}

#[test]
fn a_corrupt_store_refuses_logins_in_time_and_is_left_byte_for_byte() {
    let _turn = serial();
    let lab = Lab::with_short_deadline();
    let alice = lab.add_user("alice");
    let carol = lab.add_user_with_password("carol", CAROL_PASSWORD);
    let now = time_with_margin(10);
    let (v, c) = (totp_at(&alice, now), totp_at(&carol, now));
    let healthy = std::fs::read(lab.store_file()).unwrap();

    let mut noise = vec![0u8; healthy.len()];
    rand::thread_rng().fill(&mut noise[..]);
    // SQLite's own 100-byte header kept: the file opens, and breaks at the first page read.
    let mut header_kept = noise.clone();
    header_kept[..100].copy_from_slice(&healthy[..100]);
    for (variant, bytes) in
        [("random bytes", &noise), ("a valid header, random pages", &header_kept)]
    {
        for leftover in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{leftover}", lab.store_file().display()));
        }
        std::fs::write(lab.store_file(), bytes).unwrap();
        for (login, attempt) in logins_for_broken_stores(&v, &c) {
            for control in [false, true] {
                let what = format!("{variant}, {login}, control files {control}");
                let verdict = verify(&lab, &attempt, control, false);
                let line = verdict.assert_refused(
                    &what,
                    &[v.as_bytes(), c.as_bytes(), CAROL_PASSWORD.as_bytes()],
                );
                assert!(line.contains("auth failed "), "{what}: {line}");
                assert_eq!(&std::fs::read(lab.store_file()).unwrap(), bytes, "{what}");
            }
        }
    }
}

// Regressions.

/// Guards against a login decided for someone else: the worker read the credentials back line
/// by line, so a via-env user name `alice\n<code>` with a password long enough to be deferred
/// became alice presenting that code, and was accepted.
#[test]
fn a_code_smuggled_after_a_line_feed_in_the_user_name_is_refused_also_when_deferred() {
    let _turn = serial();
    let lab = Lab::with_short_deadline();
    let secret = lab.add_user("alice");
    let code = totp_at(&secret, time_with_margin(5));
    let smuggled = format!("alice\n{code}");

    for control in [true, false] {
        let attempt = Attempt::env(&smuggled, "a password long enough to defer");
        let verdict = verify(&lab, &attempt, control, false);
        // The code is part of the user name, which the log shows (escaped) by design.
        let line = verdict.assert_refused(&smuggled, &[b"a password long enough to defer"]);
        assert_eq!(field(&line, "reason"), "invalid-username", "{line}");
        assert_eq!(field(&line, "user"), printable(&smuggled), "{line}");
    }
    // The code was not used up by either attempt.
    assert_eq!(verify(&lab, &Attempt::file("alice", &code), true, false).exit, Some(0));
}
