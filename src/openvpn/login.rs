//! One login as OpenVPN presents it, whichever front end received it (the `verify` script or
//! the in-process plugin), and how its answer goes back to OpenVPN.
//!
//! Both front ends read the same variables, apply the same rule for what must be deferred,
//! call the same decision core, and answer through the same files, so they cannot drift.

use super::control;
use crate::auth::{self, authenticate, AuthRequest, Decision, Outcome, SessionState};
use crate::config::{Config, Paths};
use crate::secret::Sensitive;
use crate::store::Store;
use crate::username::printable;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Everything OpenVPN tells us about one login. All of it is untrusted.
#[derive(Debug, Clone)]
pub struct Login {
    pub username: String,
    pub password: Sensitive,
    pub session_state: Option<String>,
    pub session_id: Option<String>,
    pub source: Option<String>,
    /// The client certificate's common name; absent without client certificates.
    pub common_name: Option<String>,
    pub control_file: Option<PathBuf>,
    pub reason_file: Option<PathBuf>,
}

impl Login {
    /// Reads the login from OpenVPN's variables through `lookup` (the process environment for
    /// the script, the `envp` array for the plugin). `credentials` overrides the `username`
    /// and `password` variables (the script's `via-file`).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        credentials: Option<(String, Sensitive)>,
    ) -> Login {
        let (username, password) = credentials.unwrap_or_else(|| {
            (
                lookup("username").unwrap_or_default(),
                Sensitive::from(lookup("password").unwrap_or_default()),
            )
        });
        Login {
            username,
            password,
            session_state: lookup("session_state"),
            session_id: lookup("session_id"),
            source: lookup("untrusted_ip").or_else(|| lookup("untrusted_ip6")),
            common_name: lookup("common_name"),
            control_file: lookup("auth_control_file").map(PathBuf::from),
            reason_file: lookup("auth_failed_reason_file").map(PathBuf::from),
        }
    }

    pub fn request(&self) -> AuthRequest<'_> {
        AuthRequest {
            username: &self.username,
            password: &self.password,
            session_state: SessionState::from_env(self.session_state.as_deref()),
            session_id: self.session_id.as_deref(),
            source: self.source.as_deref(),
            common_name: self.common_name.as_deref(),
        }
    }

    /// Whether deciding may hash a password, which takes tens of milliseconds and must not
    /// run on OpenVPN's thread: true when the password field holds more than a code.
    pub fn may_hash_a_password(&self) -> bool {
        let state = SessionState::from_env(self.session_state.as_deref());
        if !matches!(state, SessionState::Initial | SessionState::NoToken) {
            return false;
        }
        auth::input::may_hold_a_password(self.password.expose())
    }

    /// Whether OpenVPN gave us the files needed to answer later.
    pub fn can_defer(&self) -> bool {
        self.control_file.is_some()
    }

    /// Opens the store and decides, waiting at most `busy_timeout` for another process's
    /// write lock.
    pub fn decide(&self, paths: &Paths, config: &Config, busy_timeout: Duration) -> Decision {
        match Store::open(&paths.store(), busy_timeout) {
            Ok(mut store) => authenticate(&mut store, config, crate::unix_now(), &self.request()),
            Err(e) => {
                let busy = matches!(e, crate::store::StoreError::Busy);
                auth::failed_decision(&self.request(), e.to_string(), busy)
            }
        }
    }

    /// Decides on a store the caller keeps open (the plugin holds its connections); the
    /// caller sets the busy timeout.
    pub fn decide_with(&self, store: &mut Store, config: &Config) -> Decision {
        authenticate(store, config, crate::unix_now(), &self.request())
    }

    /// A short escaped user name for log lines about this login.
    pub fn shown_user(&self) -> String {
        printable(&self.username)
    }

    /// Writes the reason for a refusal where OpenVPN sends it to the client.
    pub fn write_reason(&self, decision: &Decision) {
        if decision.accepted() {
            return;
        }
        if let Some(path) = &self.reason_file {
            let _ = control::write_reason(path, decision.client_message());
        }
    }
}

/// Logs a decision: one line per login, at a level that matches the outcome.
pub fn log_decision(decision: &Decision) {
    match decision.outcome {
        Outcome::Accepted => tracing::info!("{decision}"),
        Outcome::Refused(_) => tracing::warn!("{decision}"),
        Outcome::Failed(_) => tracing::error!("{decision}"),
    }
}

/// The answer to one deferred login, written at most once: by the worker that decides it, or
/// by the deadline if that comes first.
#[derive(Clone)]
pub struct DeferredAnswer {
    login: Arc<Login>,
    /// Whether the answer is given. Held while it is written, so that the loser of a race
    /// returns only once the files are complete: the worker exits right after, and an exit
    /// halfway through the winner's writes would leave OpenVPN waiting for the hand-window.
    answered: Arc<Mutex<bool>>,
}

impl DeferredAnswer {
    pub fn new(login: Login) -> Self {
        DeferredAnswer { login: Arc::new(login), answered: Arc::new(Mutex::new(false)) }
    }

    pub fn login(&self) -> &Login {
        &self.login
    }

    /// Writes the reason (for refusals) and then the verdict. Returns false if an answer was
    /// already given, in which case nothing is written.
    pub fn answer(&self, decision: &Decision) -> bool {
        let mut answered = self.answered.lock().unwrap_or_else(|e| e.into_inner());
        if *answered {
            return false;
        }
        *answered = true;
        self.login.write_reason(decision);
        if let Some(path) = &self.login.control_file {
            if let Err(e) = control::write_verdict(path, decision.accepted()) {
                tracing::warn!(
                    "cannot answer OpenVPN for user={} (session gone?): {e}",
                    self.login.shown_user()
                );
            }
        }
        true
    }

    /// Refuses because no decision came in time. The store may be stuck, so this is logged
    /// but cannot be audited.
    pub fn expire(&self) -> bool {
        let mut answered = self.answered.lock().unwrap_or_else(|e| e.into_inner());
        if *answered {
            return false;
        }
        *answered = true;
        tracing::error!(
            "auth failed user={} source={} reason=\"error: no decision within the deadline\"",
            self.login.shown_user(),
            self.login.source.as_deref().map(printable).unwrap_or_else(|| "-".into())
        );
        if let Some(path) = &self.login.reason_file {
            let _ = control::write_reason(path, "authentication timed out");
        }
        if let Some(path) = &self.login.control_file {
            let _ = control::write_verdict(path, false);
        }
        true
    }

    /// Decides and answers before `deadline`; the store waits no longer than that.
    pub fn decide_and_answer(&self, paths: &Paths, config: &Config, deadline: Instant) -> Decision {
        let budget = deadline.saturating_duration_since(Instant::now());
        let decision = self.login.decide(paths, config, budget);
        log_decision(&decision);
        if Instant::now() > deadline {
            self.expire();
        } else {
            self.answer(&decision);
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn a_late_answer_returns_only_once_the_first_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let (control, reason) = (dir.path().join("acf"), dir.path().join("reason"));
        std::fs::write(&reason, "").unwrap();
        // A FIFO holds the first writer in `open` until the test reads it, like a slow disk.
        let fifo = std::ffi::CString::new(control.as_os_str().as_bytes()).unwrap();
        // SAFETY: a plain syscall on a NUL-terminated path that outlives it.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let files = [("auth_control_file", &control), ("auth_failed_reason_file", &reason)];
        let lookup = |name: &str| {
            files.iter().find(|(n, _)| *n == name).map(|(_, p)| p.display().to_string())
        };
        let login = Login::from_lookup(lookup, Some(("alice".into(), Sensitive::default())));
        let late = auth::failed_decision(&login.request(), "late".into(), false);
        let answer = DeferredAnswer::new(login);

        // The deadline answers first; the worker's own answer comes while it is writing.
        let first = std::thread::spawn({
            let answer = answer.clone();
            move || answer.expire()
        });
        std::thread::sleep(Duration::from_millis(100));
        let second = std::thread::spawn({
            let answer = answer.clone();
            move || answer.answer(&late)
        });
        std::thread::sleep(Duration::from_millis(100));
        // Returning now would let the worker exit with OpenVPN's control file unwritten.
        assert!(!second.is_finished(), "the late answer did not wait for the first");

        assert_eq!(std::fs::read_to_string(&control).unwrap(), "0");
        assert!(first.join().unwrap());
        assert!(!second.join().unwrap());
        assert_eq!(std::fs::read_to_string(&reason).unwrap(), "authentication timed out");
    }
}
