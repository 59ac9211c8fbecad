//! The deferred half: a fixed set of worker threads, each with its own store connection, fed
//! through a bounded queue, and one deadline thread that refuses whatever is not answered in
//! time, so that even a stuck store cannot hold a client past `auth_deadline_secs`.

use crate::decide_on;
use ovpn_mfa::auth::failed_decision;
use ovpn_mfa::config::Config;
use ovpn_mfa::openvpn::login::{log_decision, DeferredAnswer};
use ovpn_mfa::store::Store;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

/// A login waiting for a worker, with the moment OpenVPN stops waiting for it.
pub struct Job {
    pub answer: Arc<DeferredAnswer>,
    pub deadline: Instant,
}

pub struct Pool {
    queue: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    deadlines: Arc<Deadlines>,
    timer: Option<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Pool {
    /// Starts one worker per store connection and the deadline thread. The connections are
    /// opened by the caller, before OpenVPN drops privileges.
    pub fn start(
        stores: Vec<Store>,
        store_path: PathBuf,
        config: Arc<Config>,
        capacity: usize,
    ) -> std::io::Result<Pool> {
        let (queue, jobs) = sync_channel(capacity);
        let jobs = Arc::new(Mutex::new(jobs));
        let deadlines = Arc::new(Deadlines::default());
        let timer = std::thread::Builder::new().name("ovpn-mfa-deadline".into()).spawn({
            let deadlines = Arc::clone(&deadlines);
            move || deadlines.run()
        })?;
        let mut pool = Pool {
            queue: Some(queue),
            workers: Vec::new(),
            deadlines,
            timer: Some(timer),
            stopping: Arc::new(AtomicBool::new(false)),
        };

        for (n, store) in stores.into_iter().enumerate() {
            let worker = Worker {
                store: Some(store),
                store_path: store_path.clone(),
                config: Arc::clone(&config),
                stopping: Arc::clone(&pool.stopping),
            };
            let jobs = Arc::clone(&jobs);
            let spawned = std::thread::Builder::new()
                .name(format!("ovpn-mfa-worker-{n}"))
                .spawn(move || worker.run(&jobs));
            match spawned {
                Ok(handle) => pool.workers.push(handle),
                Err(e) => {
                    pool.stop();
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    /// Queues a login for a worker, or hands it back when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        let Some(queue) = &self.queue else { return Err(job) };
        let (answer, deadline) = (Arc::downgrade(&job.answer), job.deadline);
        match queue.try_send(job) {
            Ok(()) => {
                self.deadlines.add(deadline, answer);
                Ok(())
            }
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => Err(job),
        }
    }

    /// Refuses the queued logins, lets the decisions in progress finish (each is bounded by
    /// its store busy timeout), and joins every thread.
    pub fn stop(&mut self) {
        self.stopping.store(true, AtomicOrdering::SeqCst);
        drop(self.queue.take());
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        self.deadlines.stop();
        if let Some(timer) = self.timer.take() {
            let _ = timer.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Worker {
    /// `None` after a store error, reopened for the next job.
    store: Option<Store>,
    store_path: PathBuf,
    config: Arc<Config>,
    stopping: Arc<AtomicBool>,
}

impl Worker {
    fn run(mut self, jobs: &Mutex<Receiver<Job>>) {
        loop {
            // Waiting in recv with the lock held is fine: the others would only wait for it.
            let job = lock(jobs).recv();
            let Ok(job) = job else { return };
            if catch_unwind(AssertUnwindSafe(|| self.handle(&job))).is_err() {
                // A bug of ours: refuse this login, and start over with a fresh connection in
                // case a transaction was cut short.
                self.store = None;
                refuse(&job, "internal error (see the log)");
            }
        }
    }

    fn handle(&mut self, job: &Job) {
        if self.stopping.load(AtomicOrdering::SeqCst) {
            return refuse(job, "the server is stopping");
        }
        let budget = job.deadline.saturating_duration_since(Instant::now());
        if budget.is_zero() {
            job.answer.expire();
            return;
        }
        let login = job.answer.login();
        let decision = decide_on(&mut self.store, &self.store_path, &self.config, login, budget);
        log_decision(&decision);
        if Instant::now() > job.deadline {
            job.answer.expire();
        } else {
            job.answer.answer(&decision);
        }
    }
}

fn refuse(job: &Job, why: &str) {
    let decision = failed_decision(&job.answer.login().request(), why.to_owned(), false);
    log_decision(&decision);
    job.answer.answer(&decision);
}

/// Deferred logins by deadline, earliest first. Entries are weak: once a worker has answered
/// and dropped its job, the login (and the password in it) is freed, and the entry is left
/// to lapse at its deadline.
#[derive(Default)]
struct Deadlines {
    state: Mutex<DeadlineState>,
    wake: Condvar,
}

#[derive(Default)]
struct DeadlineState {
    heap: BinaryHeap<Entry>,
    added: u64,
    stopped: bool,
}

struct Entry {
    at: Instant,
    seq: u64,
    answer: Weak<DeferredAnswer>,
}

impl Ord for Entry {
    /// Reversed, so that the max-heap pops the earliest deadline (then the oldest entry).
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl Deadlines {
    fn add(&self, at: Instant, answer: Weak<DeferredAnswer>) {
        let mut state = lock(&self.state);
        state.added += 1;
        let seq = state.added;
        state.heap.push(Entry { at, seq, answer });
        self.wake.notify_one();
    }

    fn stop(&self) {
        lock(&self.state).stopped = true;
        self.wake.notify_one();
    }

    fn run(&self) {
        let mut state = lock(&self.state);
        while !state.stopped {
            let now = Instant::now();
            let next = state.heap.peek().map(|e| e.at);
            match next {
                Some(at) if at <= now => {
                    let entry = state.heap.pop().expect("peeked");
                    drop(state);
                    if let Some(answer) = entry.answer.upgrade() {
                        answer.expire();
                    }
                    state = lock(&self.state);
                }
                Some(at) => {
                    let waited = self.wake.wait_timeout(state, at - now);
                    state = waited.unwrap_or_else(PoisonError::into_inner).0;
                }
                None => state = self.wake.wait(state).unwrap_or_else(PoisonError::into_inner),
            }
        }
        // Everything still here was answered by the workers before they stopped; expiring
        // is a no-op for those and refuses anything that slipped through.
        let rest = std::mem::take(&mut state.heap);
        drop(state);
        for answer in rest.into_iter().filter_map(|entry| entry.answer.upgrade()) {
            answer.expire();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ovpn_mfa::openvpn::login::Login;
    use std::time::Duration;

    fn answer() -> Arc<DeferredAnswer> {
        Arc::new(DeferredAnswer::new(Login::from_lookup(|_| None, None)))
    }

    #[test]
    fn the_earliest_deadline_comes_first_then_the_oldest_entry() {
        let now = Instant::now();
        let (a, b, c) = (answer(), answer(), answer());
        let mut heap = BinaryHeap::new();
        for (at, seq, answer) in [(now + Duration::from_secs(5), 1, &a), (now, 2, &b), (now, 3, &c)]
        {
            heap.push(Entry { at, seq, answer: Arc::downgrade(answer) });
        }
        let order: Vec<u64> = std::iter::from_fn(|| heap.pop().map(|e| e.seq)).collect();
        assert_eq!(order, [2, 3, 1]);
    }

    #[test]
    fn an_answered_login_is_freed_before_its_deadline() {
        let deadlines = Deadlines::default();
        let job = answer();
        deadlines.add(Instant::now() + Duration::from_secs(60), Arc::downgrade(&job));
        let weak = Arc::downgrade(&job);
        drop(job);
        assert!(weak.upgrade().is_none(), "the deadline entry kept the login alive");
        assert_eq!(lock(&deadlines.state).heap.len(), 1);
    }
}
