//! `ovpn-mfa verify`: the script OpenVPN runs for every login and renegotiation.
//!
//! OpenVPN waits for a script with its only thread blocked, so the foreground process does as
//! little as it can. Code-only and token checks take a few milliseconds and answer at once.
//! Anything that may hash a password is deferred: the credentials are piped to a detached
//! worker before we exit 2 (OpenVPN deletes the credentials file the moment we exit), and the
//! worker writes the reason and then the verdict into OpenVPN's control files. The worker
//! always answers within `auth_deadline_secs`, even if the store is stuck.

use super::login::{log_decision, DeferredAnswer, Login};
use crate::cli::Context;
use crate::secret::Sensitive;
use clap::Args;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
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

/// Tells the worker when OpenVPN called us, so its deadline counts from then.
const STARTED_AT_VAR: &str = "OVPN_MFA_STARTED_AT_MS";

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The credentials file OpenVPN passes with `via-file` (user name, then password). Without
    /// it, the `username` and `password` environment variables are read (`via-env`).
    pub credentials_file: Option<PathBuf>,
}

fn var(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

fn read_credentials(path: &Path) -> Result<(String, Sensitive), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let cannot = |e: &dyn std::fmt::Display| {
        format!("cannot read the credentials file {}: {e}", path.display())
    };
    // OpenVPN writes a regular file. Anything else (a FIFO, a device) could block the read
    // with OpenVPN's thread waiting; O_NONBLOCK keeps even the open from blocking on a FIFO.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| cannot(&e))?;
    if !file.metadata().map_err(|e| cannot(&e))?.is_file() {
        return Err(cannot(&"not a regular file"));
    }
    // A longer file is cut; its password is then far over the core's limit and refused (and
    // audited) there, like any other malformed login.
    let mut bytes = Vec::new();
    file.take(MAX_CREDENTIALS_BYTES).read_to_end(&mut bytes).map_err(|e| cannot(&e))?;
    Ok(split_credentials(&bytes))
}

/// Line 1 user name, line 2 password. Bytes that are not UTF-8 become U+FFFD, which no valid
/// name or code contains, so they are refused later with a reason.
pub fn split_credentials(bytes: &[u8]) -> (String, Sensitive) {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.splitn(3, '\n');
    let username = lines.next().unwrap_or("").trim_end_matches('\r').to_owned();
    let password = lines.next().unwrap_or("").trim_end_matches('\r');
    (username, Sensitive::new(password))
}

fn read_login(args: &VerifyArgs) -> Result<Login, String> {
    let credentials = match &args.credentials_file {
        Some(path) => Some(read_credentials(path)?),
        None if var("password").is_none() => {
            return Err("no credentials file argument and no password in the environment \
                        (use via-file, or via-env with script-security 3)"
                .into())
        }
        None => None,
    };
    Ok(Login::from_lookup(var, credentials))
}

pub fn run(ctx: &Context, args: &VerifyArgs) -> i32 {
    let login = match read_login(args) {
        Ok(login) => login,
        Err(e) => {
            // Without credentials there is no user to audit; the log line is the record.
            let login = Login::from_lookup(var, Some((String::new(), Sensitive::default())));
            return refuse_early(ctx, &login, &e);
        }
    };
    let config = match ctx.config() {
        Ok(config) => config,
        Err(e) => return refuse_early(ctx, &login, &format!("{e:#}")),
    };

    let deferrable = login.can_defer() && survives_the_pipe(&login);
    if deferrable && login.may_hash_a_password() {
        return defer(ctx, &login);
    }
    // Without a worker to hand it to, wait for the store as long as allowed.
    let busy_timeout = if deferrable {
        SYNC_BUSY_TIMEOUT
    } else {
        Duration::from_secs(config.openvpn.auth_deadline_secs)
    };
    let decision = login.decide(&ctx.paths, &config, busy_timeout);
    if decision.store_busy() && deferrable {
        // Another process held the store past our short wait: let a worker wait instead.
        return defer(ctx, &login);
    }
    log_decision(&decision);
    login.write_reason(&decision);
    if decision.accepted() {
        EXIT_ACCEPT
    } else {
        EXIT_REFUSE
    }
}

/// Whether the worker reads back exactly this login: its pipe carries one line per field and
/// at most `MAX_CREDENTIALS_BYTES`. A line break inside a field (possible via-env) would shift
/// the fields, so the user name `"alice\n<code>"` was decided as alice presenting that code.
/// OpenVPN never sends such fields (it replaces CR and LF and caps the length), so deciding
/// them in the foreground costs it nothing.
fn survives_the_pipe(login: &Login) -> bool {
    let fields = [login.username.as_str(), login.password.expose()];
    let size = fields.iter().map(|f| f.len() as u64 + 1).sum::<u64>();
    size <= MAX_CREDENTIALS_BYTES && !fields.iter().any(|f| f.contains(['\n', '\r']))
}

/// Refuses a login that never reached the decision core (no credentials, no config, no
/// worker), auditing it if the store can be opened at all.
fn refuse_early(ctx: &Context, login: &Login, error: &str) -> i32 {
    let answer = DeferredAnswer::new(login.clone());
    let decision = crate::auth::failed_decision(&login.request(), error.to_owned(), false);
    log_decision(&decision);
    if let Ok(store) = crate::store::Store::open(&ctx.paths.store(), SYNC_BUSY_TIMEOUT) {
        crate::auth::audit_failed(&store, &decision, crate::unix_now());
    }
    answer.answer(&decision);
    EXIT_REFUSE
}

fn defer(ctx: &Context, login: &Login) -> i32 {
    match hand_to_worker(ctx, login) {
        Ok(()) => EXIT_DEFERRED,
        Err(e) => refuse_early(ctx, login, &format!("cannot start the worker: {e}")),
    }
}

/// Starts `ovpn-mfa verify-worker` in its own session with the credentials on a pipe, and
/// returns once they are written: after that the credentials file may disappear.
fn hand_to_worker(ctx: &Context, login: &Login) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    let mut command = Command::new(std::env::current_exe()?);
    if let Some(dir) = &ctx.dir {
        command.arg("--dir").arg(dir);
    }
    command
        .arg("verify-worker")
        .env(STARTED_AT_VAR, now_ms().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    // SAFETY: setsid is async-signal-safe. The worker must outlive us and stay out of
    // OpenVPN's process group.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let mut stdin = child.stdin.take().expect("stdin was piped");
    let mut payload = Vec::with_capacity(login.username.len() + login.password.len() + 2);
    payload.extend_from_slice(login.username.as_bytes());
    payload.push(b'\n');
    payload.extend_from_slice(login.password.expose().as_bytes());
    payload.push(b'\n');
    let written = stdin.write_all(&payload);
    zeroize::Zeroize::zeroize(&mut payload);
    written
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The worker: reads the credentials from stdin, decides, answers through the control files,
/// and refuses on its own when the deadline comes first.
pub fn run_worker(ctx: &Context) -> i32 {
    let mut bytes = Vec::new();
    let read = std::io::stdin().take(MAX_CREDENTIALS_BYTES + 1).read_to_end(&mut bytes);
    let credentials = split_credentials(&bytes);
    zeroize::Zeroize::zeroize(&mut bytes);
    let login = Login::from_lookup(var, Some(credentials));
    if let Err(e) = read {
        return refuse_early(ctx, &login, &format!("cannot read the credentials: {e}"));
    }
    let config = match ctx.config() {
        Ok(config) => config,
        Err(e) => return refuse_early(ctx, &login, &format!("{e:#}")),
    };

    // The deadline counts from when OpenVPN called the foreground half.
    let started = var(STARTED_AT_VAR).and_then(|v| v.parse().ok()).unwrap_or_else(now_ms);
    let elapsed = Duration::from_millis(now_ms().saturating_sub(started));
    let budget = Duration::from_secs(config.openvpn.auth_deadline_secs).saturating_sub(elapsed);
    let deadline = Instant::now() + budget;
    let answer = DeferredAnswer::new(login);

    let watchdog = answer.clone();
    std::thread::spawn(move || {
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        if watchdog.expire() {
            std::process::exit(EXIT_REFUSE);
        }
    });

    let decision = answer.decide_and_answer(&ctx.paths, &config, deadline);
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
