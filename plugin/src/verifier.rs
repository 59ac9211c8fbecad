//! The object behind OpenVPN's plugin handle: the configuration, the store connections and
//! the worker pool, and the decision for one `AUTH_USER_PASS_VERIFY` call.
//!
//! It makes the same decisions as the `verify` script, in the same order: code-only and
//! token checks are decided at once on OpenVPN's thread; anything that may hash a password,
//! or that finds the store busy, is deferred to a worker when OpenVPN gave us control files.
//! (The script also decides at once the odd fields its worker pipe cannot carry; the plugin
//! hands a login to its workers in memory, so every login can be deferred.)
//!
//! # Privileges
//!
//! Every store connection is opened in `openvpn_plugin_open_v3`, which OpenVPN calls before
//! it drops privileges (`user`/`group`), and is kept for the plugin's lifetime. A connection
//! is reopened later only after a store error, and OpenVPN runs `open_v3` again on SIGHUP as
//! the unprivileged user. Both then run as that user: the store directory and the files in it
//! (`ovpn-mfa.sqlite` and its `-wal`/`-shm` files) and `config.toml` must be owned by, or at
//! least writable and readable by, that user, or those logins are refused (and a SIGHUP
//! stops OpenVPN, which treats a plugin that cannot open as fatal).

use crate::ffi::{StringArray, FUNC_DEFERRED, FUNC_ERROR, FUNC_SUCCESS};
use crate::pool::{Job, Pool};
use ovpn_mfa::auth::{audit_failed, failed_decision, Decision, Outcome};
use ovpn_mfa::config::{Config, Paths};
use ovpn_mfa::openvpn::login::{log_decision, DeferredAnswer, Login};
use ovpn_mfa::store::{Store, StoreError};
use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Worker threads, each with its own store connection. Password hashing is CPU-bound; four
/// keep a small server's cores busy without starving OpenVPN's thread.
pub const WORKERS: usize = 4;

/// Logins waiting for a worker. Beyond this a login is refused at once: a queue this long
/// would not be worked off before OpenVPN's deadline anyway.
pub const QUEUE_CAPACITY: usize = 128;

/// How long OpenVPN's thread waits for another process's write lock before it hands the
/// login to a worker. Every packet of every tunnel waits with it.
pub const SYNC_BUSY_TIMEOUT: Duration = Duration::from_millis(50);

pub struct Verifier {
    store_path: PathBuf,
    config: Arc<Config>,
    /// Used on OpenVPN's thread only; the mutex costs nothing uncontended and keeps the type
    /// sound if a host ever calls from two threads.
    store: Mutex<Option<Store>>,
    pool: Pool,
}

impl Verifier {
    /// Loads the configuration, opens the store connections and starts the workers.
    /// `dir` is the plugin argument (`--dir` of the CLI); `None` uses the system paths.
    pub fn open(dir: Option<&Path>) -> Result<Verifier, String> {
        let paths = Paths::new(dir);
        let config = Config::load(&paths.config_file).map_err(|e| e.to_string())?;
        let store_path = paths.store();
        let open = || Store::open(&store_path, SYNC_BUSY_TIMEOUT).map_err(|e| e.to_string());
        let store = open()?;
        let worker_stores = (0..WORKERS).map(|_| open()).collect::<Result<Vec<_>, _>>()?;

        let config = Arc::new(config);
        let pool =
            Pool::start(worker_stores, store_path.clone(), Arc::clone(&config), QUEUE_CAPACITY)
                .map_err(|e| format!("cannot start the worker threads: {e}"))?;
        tracing::info!(
            "ready: store={} workers={WORKERS} deadline={}s",
            store_path.display(),
            config.openvpn.auth_deadline_secs
        );
        Ok(Verifier { store_path, config, store: Mutex::new(Some(store)), pool })
    }

    /// One `AUTH_USER_PASS_VERIFY` call; `called_at` starts the deferred deadline.
    pub fn verify(&self, env: StringArray<'_>, called_at: Instant) -> c_int {
        let login = Login::from_lookup(|name| env.var(name), None);
        if login.can_defer() && login.may_hash_a_password() {
            return self.defer(login, called_at);
        }

        // Without control files there is no deferring: wait for the store as long as allowed.
        let busy_timeout = if login.can_defer() {
            SYNC_BUSY_TIMEOUT
        } else {
            Duration::from_secs(self.config.openvpn.auth_deadline_secs)
        };
        let decision = {
            let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
            decide_on(&mut store, &self.store_path, &self.config, &login, busy_timeout)
        };
        if decision.store_busy() && login.can_defer() {
            // Another process held the store past our short wait: let a worker wait instead.
            return self.defer(login, called_at);
        }
        log_decision(&decision);
        login.write_reason(&decision);
        if decision.accepted() {
            FUNC_SUCCESS
        } else {
            FUNC_ERROR
        }
    }

    fn defer(&self, login: Login, called_at: Instant) -> c_int {
        let deadline = called_at + Duration::from_secs(self.config.openvpn.auth_deadline_secs);
        match self.pool.submit(Job { answer: Arc::new(DeferredAnswer::new(login)), deadline }) {
            Ok(()) => FUNC_DEFERRED,
            Err(job) => {
                self.refuse_early(job.answer.login(), "too many logins waiting for a decision")
            }
        }
    }

    /// Refuses a login that never reached the decision core, auditing it like the script's
    /// early refusals, but only if the store is free at once: this runs on OpenVPN's thread,
    /// often because the store is busy.
    pub fn refuse_early(&self, login: &Login, error: &str) -> c_int {
        let decision = failed_decision(&login.request(), error.to_owned(), false);
        log_decision(&decision);
        if let Some(store) = self.store.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            if store.conn().busy_timeout(Duration::ZERO).is_ok() {
                audit_failed(store, &decision, ovpn_mfa::unix_now());
            }
        }
        login.write_reason(&decision);
        FUNC_ERROR
    }

    /// Stops the workers (queued logins are refused) and closes the store connections.
    pub fn close(mut self) {
        self.pool.stop();
        tracing::info!("stopped");
    }
}

/// Decides on the connection in `slot`, opening it first if an earlier error closed it.
/// After a store error (other than a busy lock) the connection is dropped, so the next login
/// starts over with a fresh one.
pub fn decide_on(
    slot: &mut Option<Store>,
    store_path: &Path,
    config: &Config,
    login: &Login,
    busy_timeout: Duration,
) -> Decision {
    let store = match slot {
        Some(store) => store,
        None => match Store::open(store_path, busy_timeout) {
            Ok(store) => slot.insert(store),
            Err(e) => {
                let busy = matches!(e, StoreError::Busy);
                return failed_decision(&login.request(), e.to_string(), busy);
            }
        },
    };
    if let Err(e) = store.conn().busy_timeout(busy_timeout) {
        *slot = None;
        return failed_decision(&login.request(), format!("store error: {e}"), false);
    }
    let decision = login.decide_with(store, config);
    if matches!(decision.outcome, Outcome::Failed(_)) && !decision.store_busy() {
        *slot = None;
    }
    decision
}
