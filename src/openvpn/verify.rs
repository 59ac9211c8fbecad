//! `ovpn-mfa verify`: the script OpenVPN runs for every login and renegotiation.
//!
//! OpenVPN waits for a script with its only thread blocked, so the foreground process does as
//! little as it can. Code-only and token checks are a few milliseconds and answer at once.
//! Anything that may hash a password is deferred: the credentials are piped to a detached
//! worker before we exit 2 (OpenVPN deletes the credentials file the moment we exit), and the
//! worker writes the reason and then the verdict into OpenVPN's control files. The worker
//! always answers within `auth_deadline_secs`, even if the store is stuck.

use super::control;
use crate::auth::{authenticate, AuthRequest, Decision, Outcome, SessionState};
use crate::cli::Context;
use crate::secret::Sensitive;
use crate::store::Store;
use clap::Args;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// OpenVPN's script exit codes.
pub const EXIT_ACCEPT: i32 = 0;
pub const EXIT_REFUSE: i32 = 1;
pub const EXIT_DEFERRED: i32 = 2;

/// Longest credentials file read. OpenVPN caps a password at a few KiB; anything longer is
/// hostile and refused without being read whole.
const MAX_CREDENTIALS_BYTES: u64 = 64 * 1024;

/// How long the synchronous path waits for the store's write lock before it hands the login
/// to a worker instead of holding up OpenVPN.
const SYNC_BUSY_TIMEOUT: Duration = Duration::from_millis(250);

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The credentials file OpenVPN passes with `via-file` (user name, then password). Without
    /// it, the `username` and `password` environment variables are read (`via-env`).
    pub credentials_file: Option<PathBuf>,
}

/// Everything OpenVPN tells us about one login, read once from the environment.
struct Env {
    username: String,
    password: Sensitive,
    session_state: Option<String>,
    session_id: Option<String>,
    source: Option<String>,
    control_file: Option<PathBuf>,
    reason_file: Option<PathBuf>,
}

fn var(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

fn read_credentials(path: &Path) -> Result<(String, Sensitive), String> {
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot read the credentials file {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_CREDENTIALS_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the credentials file {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_CREDENTIALS_BYTES {
        return Err("the credentials file is too large".into());
    }
    Ok(split_credentials(&bytes))
}

/// Line 1 user name, line 2 password. Bytes that are not UTF-8 become U+FFFD, which no valid
/// name or code contains, so they are refused later with a reason.
fn split_credentials(bytes: &[u8]) -> (String, Sensitive) {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.splitn(3, '\n');
    let username = lines.next().unwrap_or("").trim_end_matches('\r').to_owned();
    let password = lines.next().unwrap_or("").trim_end_matches('\r');
    (username, Sensitive::new(password))
}

impl Env {
    fn read(args: &VerifyArgs) -> Result<Env, String> {
        let (username, password) = match &args.credentials_file {
            Some(path) => read_credentials(path)?,
            None => {
                let password = var("password").ok_or(
                    "no credentials file argument and no password in the environment \
                     (use via-file, or via-env with script-security 3)",
                )?;
                (var("username").unwrap_or_default(), Sensitive::from(password))
            }
        };
        Ok(Env {
            username,
            password,
            session_state: var("session_state"),
            session_id: var("session_id"),
            source: var("untrusted_ip").or_else(|| var("untrusted_ip6")),
            control_file: var("auth_control_file").map(PathBuf::from),
            reason_file: var("auth_failed_reason_file").map(PathBuf::from),
        })
    }

    fn request(&self) -> AuthRequest<'_> {
        AuthRequest {
            username: &self.username,
            password: &self.password,
            session_state: SessionState::from_env(self.session_state.as_deref()),
            session_id: self.session_id.as_deref(),
            source: self.source.as_deref(),
        }
    }

    /// A login may need a password hash when its password field holds more than a code.
    fn may_hash_a_password(&self) -> bool {
        let state = SessionState::from_env(self.session_state.as_deref());
        if !matches!(state, SessionState::Initial | SessionState::NoToken) {
            return false;
        }
        let field = self.password.expose();
        if let Some(rest) = field.strip_prefix("SCRV1:") {
            return !rest.starts_with(':');
        }
        let field = field.trim();
        let code_only = field.len() <= 10 && field.bytes().all(|b| b.is_ascii_digit());
        !(code_only || crate::auth::input::looks_like_recovery_code(field))
    }
}

pub fn run(ctx: &Context, args: &VerifyArgs) -> i32 {
    let env = match Env::read(args) {
        Ok(env) => env,
        Err(e) => {
            // No credentials means no user to audit; the log line is the record.
            tracing::error!("auth failed user=- reason=\"{e}\"");
            return EXIT_REFUSE;
        }
    };
    let config = match ctx.config() {
        Ok(config) => config,
        Err(e) => return refuse_without_store(&env, &format!("{e:#}")),
    };

    if env.control_file.is_some() && env.may_hash_a_password() {
        return match hand_to_worker(ctx, &env) {
            Ok(()) => EXIT_DEFERRED,
            Err(e) => refuse_without_store(&env, &format!("cannot start the worker: {e}")),
        };
    }

    let mut store = match Store::open(&ctx.paths.store(), SYNC_BUSY_TIMEOUT) {
        Ok(store) => store,
        Err(crate::store::StoreError::Busy) if env.control_file.is_some() => {
            return match hand_to_worker(ctx, &env) {
                Ok(()) => EXIT_DEFERRED,
                Err(e) => refuse_without_store(&env, &format!("cannot start the worker: {e}")),
            };
        }
        Err(e) => return refuse_without_store(&env, &e.to_string()),
    };
    let decision = authenticate(&mut store, &config, crate::unix_now(), &env.request());
    if decision.store_busy() && env.control_file.is_some() {
        // The store was locked past our short wait: let a worker wait for it instead.
        if hand_to_worker(ctx, &env).is_ok() {
            return EXIT_DEFERRED;
        }
    }
    log_decision(&decision);
    if !decision.accepted() {
        if let Some(path) = &env.reason_file {
            let _ = control::write_reason(path, decision.client_message());
        }
        return EXIT_REFUSE;
    }
    EXIT_ACCEPT
}

fn refuse_without_store(env: &Env, error: &str) -> i32 {
    tracing::error!(
        "auth failed user={} source={} reason=\"error: {}\"",
        crate::username::printable(&env.username),
        env.source.as_deref().map(crate::username::printable).unwrap_or_else(|| "-".into()),
        error
    );
    if let Some(path) = &env.reason_file {
        let _ = control::write_reason(path, "authentication temporarily unavailable");
    }
    if let Some(path) = &env.control_file {
        let _ = control::write_verdict(path, false);
    }
    EXIT_REFUSE
}

pub fn log_decision(decision: &Decision) {
    match decision.outcome {
        Outcome::Accepted => tracing::info!("{decision}"),
        Outcome::Refused(_) => tracing::warn!("{decision}"),
        Outcome::Failed(_) => tracing::error!("{decision}"),
    }
}

/// Starts `ovpn-mfa verify-worker` in its own session with the credentials on a pipe, and
/// returns once they are written: after that the credentials file may disappear.
fn hand_to_worker(ctx: &Context, env: &Env) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    if let Some(dir) = &ctx.dir {
        command.arg("--dir").arg(dir);
    }
    command
        .arg("verify-worker")
        .env("OVPN_MFA_STARTED_AT_MS", now_ms().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    // SAFETY: setsid is async-signal-safe; the worker must outlive us and not be part of
    // OpenVPN's process group.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let mut payload = Vec::with_capacity(env.username.len() + env.password.len() + 2);
    payload.extend_from_slice(env.username.as_bytes());
    payload.push(b'\n');
    payload.extend_from_slice(env.password.expose().as_bytes());
    payload.push(b'\n');
    let written = stdin.write_all(&payload);
    zeroize::Zeroize::zeroize(&mut payload);
    written?;
    drop(stdin);
    Ok(())
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// The worker: reads the credentials from stdin, decides, answers through the control files,
/// and refuses on its own when the deadline comes first.
pub fn run_worker(ctx: &Context) -> i32 {
    let mut bytes = Vec::new();
    let read = std::io::stdin().take(MAX_CREDENTIALS_BYTES + 1).read_to_end(&mut bytes);
    let (username, password) = split_credentials(&bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    let env = Env {
        username,
        password,
        session_state: var("session_state"),
        session_id: var("session_id"),
        source: var("untrusted_ip").or_else(|| var("untrusted_ip6")),
        control_file: var("auth_control_file").map(PathBuf::from),
        reason_file: var("auth_failed_reason_file").map(PathBuf::from),
    };
    if let Err(e) = read {
        return refuse_without_store(&env, &format!("cannot read credentials: {e}"));
    }
    let config = match ctx.config() {
        Ok(config) => config,
        Err(e) => return refuse_without_store(&env, &format!("{e:#}")),
    };

    // The deadline counts from when OpenVPN called the foreground half.
    let started_ms: u128 = var("OVPN_MFA_STARTED_AT_MS").and_then(|v| v.parse().ok()).unwrap_or(0);
    let elapsed =
        Duration::from_millis(now_ms().saturating_sub(started_ms).min(u64::MAX as u128) as u64);
    let budget = Duration::from_secs(config.openvpn.auth_deadline_secs).saturating_sub(elapsed);
    let deadline = Instant::now() + budget;
    let answered = Arc::new(AtomicBool::new(false));

    let watchdog = {
        let answered = Arc::clone(&answered);
        let control = env.control_file.clone();
        let reason = env.reason_file.clone();
        let user = crate::username::printable(&env.username);
        std::thread::spawn(move || {
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            if !answered.swap(true, Ordering::SeqCst) {
                tracing::error!(
                    "auth failed user={user} reason=\"error: no decision within the deadline\""
                );
                if let Some(path) = &reason {
                    let _ = control::write_reason(path, "authentication timed out");
                }
                if let Some(path) = &control {
                    let _ = control::write_verdict(path, false);
                }
                std::process::exit(EXIT_REFUSE);
            }
        })
    };
    drop(watchdog);

    let busy_timeout = deadline.saturating_duration_since(Instant::now());
    let decision = match Store::open(&ctx.paths.store(), busy_timeout) {
        Ok(mut store) => authenticate(&mut store, &config, crate::unix_now(), &env.request()),
        Err(e) => {
            if answered.swap(true, Ordering::SeqCst) {
                return EXIT_REFUSE;
            }
            return refuse_without_store(&env, &e.to_string());
        }
    };
    if answered.swap(true, Ordering::SeqCst) {
        // The watchdog already refused; this late decision is only logged.
        log_decision(&decision);
        return EXIT_REFUSE;
    }
    log_decision(&decision);
    if !decision.accepted() {
        if let Some(path) = &env.reason_file {
            let _ = control::write_reason(path, decision.client_message());
        }
    }
    if let Some(path) = &env.control_file {
        if let Err(e) = control::write_verdict(path, decision.accepted()) {
            tracing::warn!("cannot answer OpenVPN (session gone?): {e}");
        }
    }
    if decision.accepted() {
        EXIT_ACCEPT
    } else {
        EXIT_REFUSE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_split_into_two_lines() {
        let (user, password) = split_credentials(b"alice\r\nSCRV1:YQ==:MTIzNDU2\n");
        assert_eq!(user, "alice");
        assert_eq!(password.expose(), "SCRV1:YQ==:MTIzNDU2");
        let (user, password) = split_credentials(b"");
        assert_eq!((user.as_str(), password.expose()), ("", ""));
        let (user, _) = split_credentials(b"al\xffice\npw\n");
        assert!(user.contains('\u{fffd}'));
    }
}
