//! Footprint: the store's size per 1,000 users, and the peak memory and CPU of one verifier
//! process (`/usr/bin/time -f %M`, the peak RSS) with its CPU time (`wait4`).
//!
//! The per-process numbers also split a script login's CPU into its parts: starting any
//! process, starting ovpn-mfa, and opening the store and deciding.

use crate::setups::{self, PASSWORD};
use anyhow::{bail, Context, Result};
use ovpn_mfa::auth::{authenticate, AuthRequest, SessionState};
use ovpn_mfa::config::{Config, STORE_FILE};
use ovpn_mfa::otp::{self, OtpKey};
use ovpn_mfa::secret::Sensitive;
use ovpn_mfa::store::{audit, users, AuditEntry, ClientMethod, NewUser, Store};
use ovpn_mfa::username::Username;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub const USERS: usize = 1000;

#[derive(Debug, Clone, Copy, Default)]
pub struct Sizes {
    pub db: u64,
    pub wal: u64,
}

impl Sizes {
    pub fn total(&self) -> u64 {
        self.db + self.wal
    }
}

#[derive(Debug, Clone, Default)]
pub struct Footprint {
    /// After enrolling 1,000 users, one transaction each as `user add` does.
    pub enrolled: Sizes,
    /// After each of them logged in once (replay state and audit rows).
    pub after_logins: Sizes,
    /// The same, checkpointed into the main file.
    pub checkpointed: Sizes,
    pub processes: Vec<ProcessCost>,
}

/// Median peak RSS and CPU of one kind of process, over `samples` runs.
#[derive(Debug, Clone)]
pub struct ProcessCost {
    pub what: &'static str,
    pub max_rss_kib: u64,
    pub cpu_ms: f64,
    /// From start to exit, as the caller (OpenVPN, for a script) waits for it.
    pub wall_ms: f64,
    pub samples: usize,
}

pub fn measure(
    binary: &Path,
    work: &Path,
    password_hash: &str,
    samples: usize,
) -> Result<Footprint> {
    let dir = work.join("footprint");
    std::fs::create_dir_all(&dir)?;
    setups::run(Command::new(binary).arg("--dir").arg(&dir).arg("init"))?;
    let config = Config::load(&dir.join(ovpn_mfa::config::CONFIG_FILE))?;
    let store_path = dir.join(STORE_FILE);
    let params = config.totp_params();

    // Enrol like `user add`: one transaction per user with its audit row.
    let mut store = Store::open(&store_path, Duration::from_secs(10))?;
    let mut keys = Vec::with_capacity(USERS);
    let now = ovpn_mfa::unix_now();
    for i in 0..USERS {
        let name = Username::parse(&format!("user{i:04}"))?;
        let key = OtpKey::generate();
        let tx = store.write()?;
        let new = NewUser {
            name: &name,
            key: &key,
            params,
            password_hash: None,
            client_method: ClientMethod::Otp,
        };
        users::insert(&tx, &new, now)?;
        audit::append(&tx, &AuditEntry::admin(now, "user-add", Some(name.as_str())))?;
        tx.commit()?;
        keys.push((name, key));
    }
    let enrolled = sizes(&store_path);

    for (name, key) in &keys {
        let code = Sensitive::from(otp::totp(key.as_bytes(), now, &params));
        let req = AuthRequest {
            username: name.as_str(),
            password: &code,
            session_state: SessionState::Initial,
            session_id: None,
            source: Some("198.51.100.7"),
            common_name: None,
        };
        let decision = authenticate(&mut store, &config, now, &req);
        if !decision.accepted() {
            bail!("footprint login refused: {decision}");
        }
    }
    let after_logins = sizes(&store_path);
    store.conn().execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    let checkpointed = sizes(&store_path);
    drop(store);

    let processes = process_costs(binary, &dir, &config, password_hash, samples)?;
    Ok(Footprint { enrolled, after_logins, checkpointed, processes })
}

fn sizes(store: &Path) -> Sizes {
    let len = |suffix: &str| {
        let mut path = store.as_os_str().to_owned();
        path.push(suffix);
        std::fs::metadata(PathBuf::from(path)).map(|m| m.len()).unwrap_or(0)
    };
    Sizes { db: len(""), wal: len("-wal") }
}

/// Runs each kind of process `samples` times against the 1,000-user store.
fn process_costs(
    binary: &Path,
    dir: &Path,
    config: &Config,
    password_hash: &str,
    samples: usize,
) -> Result<Vec<ProcessCost>> {
    let params = config.totp_params();
    let store_path = dir.join(STORE_FILE);
    let mut store = Store::open(&store_path, Duration::from_secs(10))?;
    let mut fresh_user = |tag: &str, with_password: bool| -> Result<String> {
        let name = format!("proc{tag}");
        let key = OtpKey::generate();
        let tx = store.write()?;
        let parsed = Username::parse(&name)?;
        let new = NewUser {
            name: &parsed,
            key: &key,
            params,
            password_hash: with_password.then_some(password_hash),
            client_method: if with_password { ClientMethod::Concat } else { ClientMethod::Otp },
        };
        users::insert(&tx, &new, ovpn_mfa::unix_now())?;
        tx.commit()?;
        let code = otp::totp(key.as_bytes(), ovpn_mfa::unix_now(), &params);
        Ok(format!("{name}\n{}{code}\n", if with_password { PASSWORD } else { "" }))
    };

    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); KINDS.len()];
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); KINDS.len()];
    let mut rss: Vec<Vec<f64>> = vec![Vec::new(); KINDS.len()];
    for i in 0..samples {
        for (k, (kind, _)) in KINDS.iter().enumerate() {
            for probe in [Probe::Cpu, Probe::Rss] {
                let tag = format!("{i}k{k}{}", probe as u8);
                let mut stdin = None;
                let mut verdict = None;
                let (command, expect) = match kind {
                    Kind::True => (Command::new("/bin/true"), 0),
                    Kind::Version => {
                        let mut command = Command::new(binary);
                        command.arg("--version");
                        (command, 0)
                    }
                    Kind::VerifyOtp | Kind::VerifyDefers | Kind::Worker => {
                        let password = *kind != Kind::VerifyOtp;
                        let credentials = fresh_user(&tag, password)?;
                        let worker = *kind == Kind::Worker;
                        let (command, control) =
                            verify_command(binary, dir, &tag, &credentials, worker)?;
                        // Code only is answered by the exit code; a deferred login by the
                        // worker, in the control file.
                        verdict = Some((control, password.then_some(Duration::from_secs(30))));
                        if worker {
                            stdin = Some(credentials.into_bytes());
                        }
                        (command, if *kind == Kind::VerifyDefers { 2 } else { 0 })
                    }
                };
                let (measured, wall_ms) = run_measured(command, stdin.as_deref(), expect, probe)?;
                if let Some((control, wait)) = verdict {
                    expect_verdict(&control, wait)?;
                }
                match probe {
                    Probe::Cpu => {
                        cpu[k].push(measured);
                        wall[k].push(wall_ms);
                    }
                    Probe::Rss => rss[k].push(measured),
                }
            }
        }
    }
    Ok(KINDS
        .iter()
        .enumerate()
        .map(|(k, (_, what))| ProcessCost {
            what,
            max_rss_kib: crate::report::median(&rss[k]) as u64,
            cpu_ms: crate::report::median(&cpu[k]),
            wall_ms: crate::report::median(&wall[k]),
            samples,
        })
        .collect())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    True,
    Version,
    VerifyOtp,
    VerifyDefers,
    Worker,
}

const KINDS: [(Kind, &str); 5] = [
    (Kind::True, "/bin/true (fork + exec of a trivial program)"),
    (Kind::Version, "ovpn-mfa --version (starting ovpn-mfa, no store)"),
    (Kind::VerifyOtp, "ovpn-mfa verify, code only (a whole login)"),
    (Kind::VerifyDefers, "ovpn-mfa verify, password + code (foreground: hands over, exits 2)"),
    (Kind::Worker, "ovpn-mfa verify-worker, password + code (argon2id, decides)"),
];

/// What one run of a process measures.
#[derive(Clone, Copy)]
enum Probe {
    /// User + system CPU from `wait4`, started straight from the bench.
    Cpu = 0,
    /// Peak RSS, started under `/usr/bin/time` (see [`run_measured`]).
    Rss = 1,
}

/// `ovpn-mfa --dir DIR verify CREDFILE` with the environment OpenVPN gives a script, or
/// with `worker` the `verify-worker` it starts (which reads the credentials on stdin).
fn verify_command(
    binary: &Path,
    dir: &Path,
    tag: &str,
    credentials: &str,
    worker: bool,
) -> Result<(Command, PathBuf)> {
    let scratch = dir.join("scratch");
    std::fs::create_dir_all(&scratch)?;
    let stem = scratch.join(tag);
    let path = |suffix: &str| PathBuf::from(format!("{}.{suffix}", stem.display()));
    let (creds, control, reason, pending) = (path("cred"), path("acf"), path("arf"), path("apf"));
    std::fs::write(&creds, credentials)?;
    for file in [&control, &reason, &pending] {
        std::fs::write(file, "")?;
    }
    let mut command = Command::new(binary);
    command.arg("--dir").arg(dir);
    if worker {
        command.arg("verify-worker");
    } else {
        command.arg("verify").arg(&creds);
    }
    command
        .env("script_type", "user-pass-verify")
        // The client certificate is named after the user, as `user add` issues it.
        .env("common_name", credentials.lines().next().unwrap_or_default())
        .env("untrusted_ip", "198.51.100.7")
        .env("untrusted_port", "40000")
        .env("session_state", "Initial")
        .env("session_id", format!("benchsession{tag}"))
        .env("auth_control_file", &control)
        .env("auth_failed_reason_file", &reason)
        .env("auth_pending_file", &pending);
    Ok((command, control))
}

/// Checks the answer in the control file: with `wait`, a deferred answer must say `1`
/// within that time; without, the exit code already answered and the file must not say `0`.
fn expect_verdict(control: &Path, wait: Option<Duration>) -> Result<()> {
    let read = || std::fs::read_to_string(control).unwrap_or_default();
    let Some(wait) = wait else {
        let text = read();
        if text.starts_with('0') {
            bail!("verifier refused in {}", control.display());
        }
        return Ok(());
    };
    let deadline = std::time::Instant::now() + wait;
    loop {
        let text = read();
        if text.starts_with('1') {
            return Ok(());
        }
        if text.starts_with('0') || std::time::Instant::now() >= deadline {
            bail!("verifier answered {text:?} in {}", control.display());
        }
        crate::interrupt::sleep(Duration::from_millis(20))?;
    }
}

/// Runs `command` to completion and returns what `probe` asks for, and the wall time.
///
/// The peak RSS must come from a small parent: Linux carries the high-water mark of the image
/// a process replaced with exec into `ru_maxrss`, so a process started straight from this
/// (much larger) bench would report the bench's own size. Under `/usr/bin/time -f %M` the
/// smallest peak it can report is `time`'s own, about 1 MiB. CPU is read without the wrapper,
/// whose own start-up would be counted too.
fn run_measured(
    command: Command,
    stdin: Option<&[u8]>,
    expect: i32,
    probe: Probe,
) -> Result<(f64, f64)> {
    let report = tempfile::NamedTempFile::new()?;
    let mut run = match probe {
        Probe::Cpu => command,
        Probe::Rss => {
            let mut wrapped = Command::new("/usr/bin/time");
            wrapped.args(["-f", "%M", "-o"]).arg(report.path()).arg(command.get_program());
            wrapped.args(command.get_args());
            for (key, value) in command.get_envs() {
                if let Some(value) = value {
                    wrapped.env(key, value);
                }
            }
            wrapped
        }
    };
    run.stdout(Stdio::null()).stderr(Stdio::null());
    run.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let started = std::time::Instant::now();
    let mut child = run.spawn().with_context(|| format!("start {run:?}"))?;
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        pipe.write_all(bytes)?;
    }
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child, which std has not
    // reaped (we never call wait on `child`).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if rc != pid {
        bail!("wait4 {run:?}: {}", std::io::Error::last_os_error());
    }
    let wall_ms = started.elapsed().as_secs_f64() * 1e3;
    std::mem::forget(child);
    let code = std::process::ExitStatus::from_raw(status).code();
    if code != Some(expect) {
        bail!("{run:?} exited with {code:?}, expected {expect}");
    }
    match probe {
        Probe::Cpu => {
            let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
            Ok((ms(usage.ru_utime) + ms(usage.ru_stime), wall_ms))
        }
        Probe::Rss => {
            let text = std::fs::read_to_string(report.path())?;
            let kib = text
                .lines()
                .rev()
                .find_map(|l| l.trim().parse().ok())
                .with_context(|| format!("no peak RSS from /usr/bin/time in {text:?}"))?;
            Ok((kib, wall_ms))
        }
    }
}
