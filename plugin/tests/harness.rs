//! Drives the built plugin the way OpenVPN does: `dlopen` the .so, `open_v3` on a store made
//! with the library, then `func_v3` with valid, invalid and hostile environments, checking the
//! answers, the control files of deferred logins, the log lines and the memory.
//!
//! `HARNESS_CALLS` sets the number of hostile calls (default 100 000); `--nocapture` shows the
//! throughput and memory numbers. `valgrind_finds_no_leaks` (ignored by default, about a
//! minute) reruns a small variant under valgrind; see docs/plugin.md.

use ovpn_mfa::auth::password;
use ovpn_mfa::config::{Config, CONFIG_FILE, STORE_FILE};
use ovpn_mfa::otp::{totp, Algorithm, OtpKey, TotpParams};
use ovpn_mfa::secret::Sensitive;
use ovpn_mfa::store::users::{self, ClientMethod, NewUser};
use ovpn_mfa::store::Store;
use ovpn_mfa::username::Username;
use ovpn_mfa_plugin::ffi::{
    self, Callbacks, FuncArgs, FuncReturn, OpenArgs, OpenReturn, PluginLog,
};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

#[test]
fn open_registers_only_the_auth_call_and_asks_for_interface_three() {
    let _serial = serial();
    let lib = library();
    assert_eq!((lib.min_version)(), 3);
    assert_eq!((lib.init_point)(), ffi::INIT_POST_DAEMON);

    let fixture = Fixture::new(30);
    let plugin = Plugin::open(fixture.dir());
    assert_eq!(plugin.type_mask, ffi::mask(ffi::AUTH_USER_PASS_VERIFY));
    plugin.close();
    assert!(log_state().lines.iter().any(|l| l.starts_with("ready: store=")));
}

#[test]
fn open_fails_cleanly_without_a_store() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(CONFIG_FILE), "").unwrap();
    let argv =
        CStrings::new(&[plugin_so().as_os_str().as_bytes(), dir.path().as_os_str().as_bytes()]);
    let envp = CStrings::new(&[]);
    let mut ret = OpenReturn {
        type_mask: 0,
        handle: std::ptr::null_mut(),
        return_list: std::ptr::null_mut(),
    };
    let status = open_raw(&argv, &envp, &mut ret);
    assert_eq!(status, ffi::FUNC_ERROR);
    assert!(ret.handle.is_null());
    assert!(
        log_state().lines.iter().any(|l| l.contains("ovpn-mfa init")),
        "{:?}",
        log_state().lines
    );
}

#[test]
fn a_fresh_code_is_accepted_once_then_refused_as_a_replay() {
    let _serial = serial();
    let fixture = Fixture::new(30);
    let plugin = Plugin::open(fixture.dir());
    let alice = fixture.user("alice");

    let code = alice.code_now();
    let reason = fixture.control_file("reason-1");
    // OpenVPN's `common_name` reaches the decision: another user's certificate is refused
    // (and spends nothing), alice's own gets her the reason a replay is refused for.
    let foreign = Env::new()
        .set("username", "alice")
        .set("password", &code)
        .set("common_name", "mallory")
        .file("reason", &reason);
    assert_eq!(plugin.call(&foreign), ffi::FUNC_ERROR);
    assert_eq!(std::fs::read_to_string(&reason).unwrap(), "authentication failed");
    let env = Env::new()
        .set("username", "alice")
        .set("password", &code)
        .set("common_name", "alice")
        .file("reason", &reason);
    assert_eq!(plugin.call(&env), ffi::FUNC_SUCCESS);
    assert_eq!(plugin.call(&env), ffi::FUNC_ERROR);
    assert_eq!(
        std::fs::read_to_string(&reason).unwrap(),
        "code already used, wait for the next one"
    );

    // The static-challenge form of the next code, also through the synchronous path.
    let bob = fixture.user("bob");
    let scrv1 = format!("SCRV1::{}", b64(bob.code_now().as_bytes()));
    let env = Env::new().set("username", "BOB").set("password", &scrv1);
    assert_eq!(plugin.call(&env), ffi::FUNC_SUCCESS);
    assert_eq!(plugin.call(&env), ffi::FUNC_ERROR);

    let wrong = Env::new().set("username", "carol").set("password", "000000");
    assert_eq!(plugin.call(&wrong), ffi::FUNC_ERROR);
    plugin.close();
}

#[test]
fn tokens_resume_a_session_and_other_token_states_are_refused() {
    let _serial = serial();
    let fixture = Fixture::new(30);
    let plugin = Plugin::open(fixture.dir());
    let alice = fixture.user("alice");
    let login = |state: &str, user: &str, password: &str, session: &str| {
        let env = Env::new()
            .set("username", user)
            .set("password", password)
            .set("session_state", state)
            .set("session_id", session)
            .set("untrusted_ip", "192.0.2.7");
        plugin.call(&env)
    };

    assert_eq!(login("Initial", "alice", &alice.code_now(), "sid-alice"), ffi::FUNC_SUCCESS);
    let token = "SESS_ID_AT_0123456789abcdefABCDEF";
    assert_eq!(login("Authenticated", "alice", token, "sid-alice"), ffi::FUNC_SUCCESS);
    assert_eq!(login("Authenticated", "alice", token, "sid-alice"), ffi::FUNC_SUCCESS);
    assert_eq!(login("Authenticated", "bob", token, "sid-alice"), ffi::FUNC_ERROR);
    assert_eq!(login("Authenticated", "alice", token, "sid-unknown"), ffi::FUNC_ERROR);
    for state in ["Expired", "Invalid", "AuthenticatedEmptyUser", "ExpiredEmptyUser", "Bogus"] {
        assert_eq!(login(state, "alice", token, "sid-alice"), ffi::FUNC_ERROR, "{state}");
    }
    plugin.close();
}

#[test]
fn password_logins_are_deferred_and_answered_through_the_control_file() {
    let _serial = serial();
    let fixture = Fixture::new(10);
    let plugin = Plugin::open(fixture.dir());
    let dora = fixture.user("dora");
    let started = Instant::now();

    let control = fixture.control_file("acf-good");
    let concat = format!("{DORA_PASSWORD}{}", dora.code_now());
    let env = Env::new().set("username", "dora").set("password", &concat).file("control", &control);
    assert_eq!(plugin.call(&env), ffi::FUNC_DEFERRED);
    assert_eq!(wait_for_answer(&control, Duration::from_secs(10)), "1");

    let (control, reason) = (fixture.control_file("acf-bad"), fixture.control_file("reason-bad"));
    let env = Env::new()
        .set("username", "dora")
        .set("password", format!("wrong password{}", dora.code_now()))
        .file("control", &control)
        .file("reason", &reason);
    assert_eq!(plugin.call(&env), ffi::FUNC_DEFERRED);
    assert_eq!(wait_for_answer(&control, Duration::from_secs(10)), "0");
    assert_eq!(std::fs::read_to_string(&reason).unwrap(), "authentication failed");
    assert!(started.elapsed() < Duration::from_secs(10), "answers came after the deadline");

    // Without control files (no deferred auth in this OpenVPN) it is decided at once.
    let dave = fixture.user("dave");
    let env = Env::new()
        .set("username", "dave")
        .set("password", format!("SCRV1:{}:{}", b64(DAVE_PASSWORD), b64(dave.code_now())));
    assert_eq!(plugin.call(&env), ffi::FUNC_SUCCESS);

    // A token at renegotiation needs no hashing: synchronous even with control files.
    let env = Env::new()
        .set("username", "dora")
        .set("password", "SESS_ID_AT_whatever")
        .set("session_state", "Invalid")
        .file("control", &fixture.control_file("acf-token"));
    assert_eq!(plugin.call(&env), ffi::FUNC_ERROR);

    // The worker's decision lines reach the log on the next call, on OpenVPN's thread.
    plugin.close();
    let log = log_state();
    assert!(log.lines.iter().any(|l| l.contains("auth accepted user=dora")), "{:?}", log.lines);
    assert!(log.lines.iter().any(|l| l.contains("reason=wrong-password")), "{:?}", log.lines);
}

#[test]
fn a_locked_store_cannot_hold_logins_past_the_deadline_and_a_full_queue_refuses_at_once() {
    let _serial = serial();
    let deadline = Duration::from_secs(3);
    let fixture = Fixture::new(deadline.as_secs());
    let plugin = Plugin::open(fixture.dir());
    let erin = fixture.user("erin");

    let lock = StoreLock::hold(&fixture.dir().join(STORE_FILE));

    // A code-only login waits 50 ms on OpenVPN's thread, then goes to a worker.
    let started = Instant::now();
    let control = fixture.control_file("acf-code");
    let env = Env::new()
        .set("username", "erin")
        .set("password", erin.code_now())
        .file("control", &control);
    assert_eq!(plugin.call(&env), ffi::FUNC_DEFERRED);
    assert!(started.elapsed() < Duration::from_millis(500), "held OpenVPN {:?}", started.elapsed());

    // Password logins fill the workers and the queue; the rest are refused on the spot.
    let mut deferred = vec![control];
    let mut refused = 0;
    for n in 0..200 {
        let (control, reason) =
            (fixture.control_file(&format!("acf-{n}")), fixture.control_file(&format!("r-{n}")));
        let env = Env::new()
            .set("username", "dora")
            .set("password", format!("{DORA_PASSWORD}123456"))
            .file("control", &control)
            .file("reason", &reason);
        match plugin.call(&env) {
            ffi::FUNC_DEFERRED => deferred.push(control),
            ffi::FUNC_ERROR => {
                refused += 1;
                let why = std::fs::read_to_string(&reason).unwrap();
                assert_eq!(why, "authentication temporarily unavailable");
            }
            other => panic!("unexpected answer {other}"),
        }
    }
    let queued = deferred.len() - 1;
    assert!(
        (128..=132).contains(&queued),
        "{queued} queued, {refused} refused: {:#?}",
        log_state().lines
    );
    assert_eq!(queued + refused, 200);
    assert!(started.elapsed() < Duration::from_secs(1), "the calls held OpenVPN");

    for control in &deferred {
        let remaining = (started + deadline + Duration::from_millis(1500))
            .saturating_duration_since(Instant::now());
        assert_eq!(wait_for_answer(control, remaining), "0", "{}", control.display());
    }
    drop(lock);

    // Once the lock is gone, logins go through again.
    let frank = fixture.user("frank");
    let env = Env::new().set("username", "frank").set("password", frank.code_now());
    assert_eq!(plugin.call(&env), ffi::FUNC_SUCCESS);
    plugin.close();
    let log = log_state();
    assert!(log.lines.iter().any(|l| l.contains("too many logins waiting")), "no queue-full line");
    assert!(log.lines.iter().any(|l| l.contains("no decision within the deadline")));
}

#[test]
fn close_refuses_queued_logins_and_joins_the_workers() {
    let _serial = serial();
    let deadline = Duration::from_secs(3);
    let fixture = Fixture::new(deadline.as_secs());
    let plugin = Plugin::open(fixture.dir());
    let lock = StoreLock::hold(&fixture.dir().join(STORE_FILE));

    let controls: Vec<PathBuf> = (0..20)
        .map(|n| {
            let control = fixture.control_file(&format!("acf-{n}"));
            let env = Env::new()
                .set("username", "dora")
                .set("password", format!("{DORA_PASSWORD}123456"))
                .file("control", &control);
            assert_eq!(plugin.call(&env), ffi::FUNC_DEFERRED);
            control
        })
        .collect();
    let threads_before = thread_count();
    let started = Instant::now();
    plugin.close();
    let took = started.elapsed();
    drop(lock);

    // The queued logins are refused at once; the four in progress give up at the deadline.
    assert!(took <= deadline + Duration::from_secs(1), "close took {took:?}");
    for control in &controls {
        assert_eq!(std::fs::read_to_string(control).unwrap(), "0", "{}", control.display());
    }
    assert_eq!(thread_count(), threads_before - 5, "worker or deadline threads left running");
    assert!(log_state().lines.iter().any(|l| l.contains("the server is stopping")));

    // SIGHUP: OpenVPN opens the plugin again in the same process.
    let plugin = Plugin::open(fixture.dir());
    let gina = fixture.user("gina");
    let env = Env::new().set("username", "gina").set("password", gina.code_now());
    assert_eq!(plugin.call(&env), ffi::FUNC_SUCCESS);
    plugin.close();
}

#[test]
fn hostile_environments_never_crash_and_memory_stays_bounded() {
    let _serial = serial();
    let calls: usize =
        std::env::var("HARNESS_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let seed: u64 = std::env::var("HARNESS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::process::id() as u64 ^ ovpn_mfa::unix_now());
    eprintln!("hostile run: {calls} calls, HARNESS_SEED={seed}");
    let mut noise = Noise::new(seed);
    let fixture = Fixture::new(5);
    let heap_before_open = heap_kib();
    let plugin = Plugin::open(fixture.dir());
    let controls: Vec<PathBuf> =
        (0..8).map(|n| fixture.control_file(&format!("hostile-acf-{n}"))).collect();

    // RSS and live heap every tenth of the run: a leak grows with the calls; caches, the
    // allocator's arenas and the logins waiting for their deadline level off.
    let tenth = (calls / 10).max(1);
    let (mut rss, mut heap) = (Vec::new(), Vec::new());
    let mut counts = [0usize; 3];
    let mut checks = 0;
    let mut good_users = fixture.good_users.iter();
    let started = Instant::now();
    for n in 0..calls {
        if n % tenth == 0 {
            rss.push(rss_kib());
            heap.push(heap_kib());
        }
        // Every so often, a login with a known answer in between the noise.
        if n % 1000 == 500 {
            if let Some(name) = good_users.next() {
                let user = fixture.user(name);
                let env = Env::new().set("username", name).set("password", user.code_now());
                assert_eq!(plugin.call(&env), ffi::FUNC_SUCCESS, "fresh code for {name}");
                assert_eq!(plugin.call(&env), ffi::FUNC_ERROR, "replayed code for {name}");
                checks += 1;
            }
        }
        let env = hostile_env(&mut noise, &controls);
        let status = plugin.call(&env);
        assert!(
            status == ffi::FUNC_ERROR
                || (status == ffi::FUNC_DEFERRED && env.has("auth_control_file")),
            "call {n} (seed {seed}) answered {status}"
        );
        counts[status as usize] += 1;
    }
    let elapsed = started.elapsed();
    rss.push(rss_kib());
    heap.push(heap_kib());
    plugin.close();
    let (rss_closed, heap_closed) = (rss_kib(), heap_kib());

    let log = log_state();
    eprintln!(
        "hostile run: {calls} calls in {elapsed:.1?} ({:.0} calls/s); success {} refused {} deferred {}; \
         {checks} known-answer checks; {} log lines\n\
         RSS KiB at each tenth {rss:?}, after close {rss_closed}\n\
         live heap KiB before open {heap_before_open}, at each tenth {heap:?}, after close \
         {heap_closed}",
        calls as f64 / elapsed.as_secs_f64(),
        counts[0],
        counts[1],
        counts[2],
        log.count
    );
    assert!(checks >= (calls / 1000).min(fixture.good_users.len()), "known-answer checks ran");
    assert!(log.count as usize >= calls, "a log line per decision");
    for (what, series) in [("RSS", &rss), ("live heap", &heap)] {
        let (first, second) = series[1..].split_at(series.len() / 2);
        let (first_max, second_max) = (first.iter().max().unwrap(), second.iter().max().unwrap());
        assert!(second_max <= &(first_max + 16 * 1024), "{what} keeps growing: {series:?}");
        assert!(second_max <= &(series[0] + 64 * 1024), "{what} grew too much: {series:?}");
    }
    // Everything the plugin held (connections, caches, queued logins) is given back.
    assert!(heap_closed <= heap_before_open + 4 * 1024, "{heap_closed} KiB live after close");
}

/// Runs a small hostile run and the deferred tests in this binary under valgrind.
#[test]
#[ignore = "needs valgrind; takes about a minute"]
fn valgrind_finds_no_leaks() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("valgrind")
        .args(["--leak-check=full", "--errors-for-leak-kinds=definite", "--error-exitcode=99"])
        .arg(&exe)
        .args(["--exact", "--test-threads=1", "--nocapture"])
        .args([
            "hostile_environments_never_crash_and_memory_stays_bounded",
            "password_logins_are_deferred_and_answered_through_the_control_file",
            "close_refuses_queued_logins_and_joins_the_workers",
        ])
        .env("HARNESS_CALLS", "2000")
        .output()
        .expect("run valgrind (apt-get install valgrind)");
    let report = String::from_utf8_lossy(&out.stderr);
    let summary: Vec<&str> =
        report.lines().filter(|l| l.contains("lost:") || l.contains("ERROR SUMMARY")).collect();
    eprintln!("{}", summary.join("\n"));
    assert!(out.status.success(), "valgrind failed ({}):\n{report}", out.status);
    assert!(
        report.contains("definitely lost: 0 bytes")
            || report.contains("All heap blocks were freed"),
        "{report}"
    );
}

/// Not a test: the other process of [`StoreLock`].
#[test]
#[ignore = "helper run by the tests that need the store locked by another process"]
fn store_lock_helper() {
    let Some(path) = std::env::var_os("HARNESS_LOCK_STORE") else { return };
    let mut store = Store::open(Path::new(&path), Duration::ZERO).unwrap();
    let _lock = store.write().unwrap();
    println!("{LOCKED}");
    std::io::Write::flush(&mut std::io::stdout()).unwrap();
    // Held until the test closes our stdin (or kills us).
    let _ = std::io::stdin().read_line(&mut String::new());
}

// ---------------------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------------------

const NAMES: [&str; 10] = [
    "username",
    "password",
    "session_state",
    "session_id",
    "untrusted_ip",
    "untrusted_ip6",
    "auth_control_file",
    "auth_failed_reason_file",
    "common_name",
    "IV_GUI_VER",
];

/// Marks every password the generator makes up, so a log line holding one is found.
const SECRET_MARK: &str = "sekrit";

/// xorshift64*: reproducible from a seed, and fast even in a debug build.
struct Noise(u64);

impl Noise {
    fn new(seed: u64) -> Noise {
        Noise(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn range(&mut self, range: std::ops::Range<usize>) -> usize {
        range.start + self.below(range.end - range.start)
    }

    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    /// Random bytes without NUL (C strings cannot hold one). Long values repeat a random
    /// block, which is just as hostile and much cheaper to make.
    fn bytes(&mut self, len: std::ops::Range<usize>) -> Vec<u8> {
        let len = self.range(len);
        let mut block: Vec<u8> = (0..len.min(256)).map(|_| (self.next() % 255 + 1) as u8).collect();
        block.truncate(len);
        let mut bytes = block.repeat(len / block.len().max(1) + 1);
        bytes.truncate(len);
        bytes
    }

    fn printable(&mut self, len: std::ops::Range<usize>) -> String {
        let len = self.range(len);
        (0..len).map(|_| (b' ' + self.below(95) as u8) as char).collect()
    }
}

fn hostile_value(noise: &mut Noise, name: &str) -> Vec<u8> {
    match noise.below(20) {
        0 | 1 => noise.bytes(0..64),
        2 if noise.one_in(25) => vec![b'7'; 1 << 20],
        2 => noise.bytes(4096..70_000),
        3 => Vec::new(),
        4 => "\u{202e}é\u{7f}\r\n\t%s%n%%".as_bytes().to_vec(),
        _ => match name {
            "username" => {
                let victim = format!("Victim{}", noise.below(6));
                let pick = ["alice", "", ".dot", "-dash", "a/b", "x@y", "root", &victim, &victim];
                noise.pick(&pick).as_bytes().to_vec()
            }
            "password" => hostile_password(noise).into_bytes(),
            "session_state" => noise
                .pick(&[
                    "Initial",
                    "Authenticated",
                    "Expired",
                    "Invalid",
                    "AuthenticatedEmptyUser",
                    "ExpiredEmptyUser",
                    "initial",
                    "Authenticated\n",
                ])
                .as_bytes()
                .to_vec(),
            "session_id" => format!("{:x}{:x}", noise.next(), noise.next()).into_bytes(),
            "untrusted_ip" => format!("203.0.113.{}", noise.below(256)).into_bytes(),
            _ => noise.bytes(0..32),
        },
    }
}

fn hostile_password(noise: &mut Noise) -> String {
    let code = format!("{:06}", noise.below(1_000_000));
    let junk = noise.printable(0..40);
    match noise.below(9) {
        0 => code,
        1 => format!("{SECRET_MARK}{junk}{code}"),
        2 => format!("SCRV1:{}:{}", b64(format!("{SECRET_MARK}{junk}")), b64(&code)),
        3 => format!("SCRV1:{junk}"),
        4 => format!("SCRV1::{}", b64(&code)),
        5 => format!("SCRV1:{}:", b64(SECRET_MARK)),
        6 => format!("SESS_ID_AT_{SECRET_MARK}{:x}", noise.next()),
        7 => format!("abcde-fgh{}", noise.range(20..80)),
        _ => format!("{SECRET_MARK}{junk}"),
    }
}

fn hostile_env(noise: &mut Noise, controls: &[PathBuf]) -> Env {
    let mut env = Env::new();
    for name in NAMES {
        if noise.one_in(5) {
            continue;
        }
        let value = match name {
            // Only files of ours: a worker must never write somewhere it was not given.
            "auth_control_file" | "auth_failed_reason_file" if noise.one_in(3) => {
                controls[noise.below(controls.len())].as_os_str().as_bytes().to_vec()
            }
            "auth_control_file" | "auth_failed_reason_file" if noise.one_in(2) => {
                b"/nonexistent/ovpn-mfa-harness/acf".to_vec()
            }
            "auth_control_file" | "auth_failed_reason_file" => continue,
            _ => hostile_value(noise, name),
        };
        env = env.set(name, value);
        if noise.one_in(20) {
            env = env.raw(noise.bytes(12..13));
        }
    }
    if noise.one_in(10) {
        env = env.set("username", "shadowed").raw(b"=novalue".to_vec()).raw(Vec::new());
    }
    env
}

// ---------------------------------------------------------------------------------------
// The store, made the way `init` and `user add` make it
// ---------------------------------------------------------------------------------------

const DORA_PASSWORD: &str = "correct horse";
const DAVE_PASSWORD: &str = "battery staple";

struct Fixture {
    dir: tempfile::TempDir,
    keys: Vec<(String, OtpKey, TotpParams)>,
    good_users: Vec<String>,
}

struct TestUser<'a> {
    key: &'a OtpKey,
    params: &'a TotpParams,
}

impl TestUser<'_> {
    fn code_now(&self) -> String {
        totp(self.key.as_bytes(), ovpn_mfa::unix_now(), self.params)
    }
}

impl Fixture {
    fn new(deadline_secs: u64) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        // Cheap hashes keep a hundred thousand calls fast; the cost does not change a decision.
        let text = Config::default_file_text()
            .replace("memory_kib = 19456", "memory_kib = 64")
            .replace("iterations = 2", "iterations = 1")
            .replace("auth_deadline_secs = 30", &format!("auth_deadline_secs = {deadline_secs}"));
        let config = Config::parse(&text).unwrap();
        assert_eq!(config.password.memory_kib, 64);
        assert_eq!(config.openvpn.auth_deadline_secs, deadline_secs);
        std::fs::write(dir.path().join(CONFIG_FILE), &text).unwrap();

        let store = Store::create(&dir.path().join(STORE_FILE)).unwrap();
        let mut fixture = Fixture { dir, keys: Vec::new(), good_users: Vec::new() };
        let six = TotpParams::default();
        let eight = TotpParams { algorithm: Algorithm::Sha1, digits: 8, period: 30 };
        for name in ["alice", "bob", "carol", "erin", "frank", "gina"] {
            fixture.add(&store, &config, name, six, None);
        }
        fixture.add(&store, &config, "dora", six, Some(DORA_PASSWORD));
        fixture.add(&store, &config, "dave", six, Some(DAVE_PASSWORD));
        // Targets of the hostile run: 8-digit codes, which its 6-digit guesses never hit.
        for n in 0..6 {
            let password = (n % 2 == 0).then_some("victim password");
            fixture.add(&store, &config, &format!("victim{n}"), eight, password);
        }
        for n in 0..200 {
            let name = format!("good{n}");
            fixture.add(&store, &config, &name, six, None);
            fixture.good_users.push(name);
        }
        fixture
    }

    fn add(
        &mut self,
        store: &Store,
        config: &Config,
        name: &str,
        params: TotpParams,
        password: Option<&str>,
    ) {
        let key = OtpKey::generate();
        let hash = password.map(|p| password::hash(&Sensitive::from(p), &config.password).unwrap());
        let new = NewUser {
            name: &Username::parse(name).unwrap(),
            key: &key,
            params,
            password_hash: hash.as_deref(),
            client_method: ClientMethod::Otp,
        };
        users::insert(store.conn(), &new, ovpn_mfa::unix_now()).unwrap();
        self.keys.push((name.to_owned(), key, params));
    }

    fn user(&self, name: &str) -> TestUser<'_> {
        let (_, key, params) = self.keys.iter().find(|(n, _, _)| n == name).expect("known user");
        TestUser { key, params }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// An empty file, the way OpenVPN creates the control files before each call.
    fn control_file(&self, name: &str) -> PathBuf {
        let path = self.dir().join(name);
        std::fs::write(&path, "").unwrap();
        path
    }
}

const LOCKED: &str = "HARNESS-STORE-LOCKED";

/// The store's write lock, held by another process as an admin command or a stuck script
/// would hold it. It must be another process: the plugin has its own copy of SQLite, and two
/// copies in one process do not see each other's locks.
struct StoreLock {
    child: std::process::Child,
}

impl StoreLock {
    fn hold(store: &Path) -> StoreLock {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "store_lock_helper", "--ignored", "--nocapture", "--test-threads=1"])
            .env("HARNESS_LOCK_STORE", store)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        for line in stdout.lines() {
            if line.unwrap().contains(LOCKED) {
                return StoreLock { child };
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the lock helper exited without taking the lock");
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        if !exited_within_5s(&mut self.child) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn exited_within_5s(child: &mut std::process::Child) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn wait_for_answer(path: &Path, timeout: Duration) -> String {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if !text.is_empty() || started.elapsed() >= timeout {
            return text;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Bytes handed out by malloc and not freed yet, over all arenas (glibc's mallinfo2).
fn heap_kib() -> u64 {
    // SAFETY: a plain query of the allocator's counters.
    let info = unsafe { libc::mallinfo2() };
    ((info.uordblks + info.hblkhd) / 1024) as u64
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

// ---------------------------------------------------------------------------------------
// OpenVPN's side of the plugin API
// ---------------------------------------------------------------------------------------

type OpenFn = unsafe extern "C" fn(c_int, *const OpenArgs, *mut OpenReturn) -> c_int;
type FuncFn = unsafe extern "C" fn(c_int, *const FuncArgs, *mut FuncReturn) -> c_int;
type CloseFn = unsafe extern "C" fn(*mut c_void);
type IntFn = extern "C" fn() -> c_int;

struct Library {
    open: OpenFn,
    func: FuncFn,
    close: CloseFn,
    min_version: IntFn,
    init_point: IntFn,
}

/// The .so cargo built with this test: it builds the library's cdylib into the same `deps`
/// directory as the test (`cargo build` also copies it to `target/<profile>/`).
fn plugin_so() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let candidates =
        [deps.join("libovpn_mfa_plugin.so"), deps.parent().unwrap().join("libovpn_mfa_plugin.so")];
    let found = candidates.iter().find(|p| p.exists());
    found
        .unwrap_or_else(|| {
            panic!("no plugin at {candidates:?}: run `cargo build -p ovpn-mfa-plugin`")
        })
        .clone()
}

/// Loaded once and kept for the process, as OpenVPN keeps it between SIGHUPs.
fn library() -> &'static Library {
    static LIBRARY: OnceLock<Library> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let path = CString::new(plugin_so().as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path; the library's initialisers are Rust's, which do nothing odd.
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        assert!(!handle.is_null(), "dlopen failed: {}", dl_error());
        let symbol = |name: &CStr| {
            // SAFETY: a live handle and a NUL-terminated name.
            let ptr = unsafe { libc::dlsym(handle, name.as_ptr()) };
            assert!(!ptr.is_null(), "{name:?} is not exported");
            ptr
        };
        // SAFETY: the symbols are the plugin's entry points, with these signatures.
        unsafe {
            Library {
                open: std::mem::transmute::<*mut c_void, OpenFn>(symbol(c"openvpn_plugin_open_v3")),
                func: std::mem::transmute::<*mut c_void, FuncFn>(symbol(c"openvpn_plugin_func_v3")),
                close: std::mem::transmute::<*mut c_void, CloseFn>(symbol(
                    c"openvpn_plugin_close_v1",
                )),
                min_version: std::mem::transmute::<*mut c_void, IntFn>(symbol(
                    c"openvpn_plugin_min_version_required_v1",
                )),
                init_point: std::mem::transmute::<*mut c_void, IntFn>(symbol(
                    c"openvpn_plugin_select_initialization_point_v1",
                )),
            }
        }
    })
}

fn dl_error() -> String {
    // SAFETY: dlerror returns null or a valid string.
    let err = unsafe { libc::dlerror() };
    if err.is_null() {
        "unknown error".into()
    } else {
        // SAFETY: non-null, NUL-terminated.
        unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned()
    }
}

/// NUL-terminated strings and the NULL-terminated pointer array OpenVPN passes.
struct CStrings {
    _strings: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

impl CStrings {
    fn new(items: &[&[u8]]) -> CStrings {
        let strings: Vec<CString> =
            items.iter().map(|i| CString::new(i.to_vec()).unwrap()).collect();
        let mut ptrs: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        CStrings { _strings: strings, ptrs }
    }
}

/// The environment of one call, as `name=value` entries.
struct Env {
    entries: Vec<Vec<u8>>,
}

impl Env {
    fn new() -> Env {
        Env { entries: vec![b"script_type=user-pass-verify".to_vec()] }
    }

    fn set(self, name: &str, value: impl AsRef<[u8]>) -> Env {
        let mut entry = format!("{name}=").into_bytes();
        entry.extend_from_slice(value.as_ref());
        self.raw(entry)
    }

    fn raw(mut self, entry: Vec<u8>) -> Env {
        assert!(!entry.contains(&0), "C strings hold no NUL");
        self.entries.push(entry);
        self
    }

    fn file(self, which: &str, path: &Path) -> Env {
        let name = if which == "control" { "auth_control_file" } else { "auth_failed_reason_file" };
        self.set(name, path.as_os_str().as_bytes())
    }

    fn has(&self, name: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.starts_with(name.as_bytes()) && e.get(name.len()) == Some(&b'='))
    }
}

struct SharedCallbacks(Callbacks);

// SAFETY: a function pointer and null pointers, never written after the first use.
unsafe impl Sync for SharedCallbacks {}
unsafe impl Send for SharedCallbacks {}

fn open_raw(argv: &CStrings, envp: &CStrings, ret: &mut OpenReturn) -> c_int {
    set_openvpn_thread();
    // OpenVPN's callbacks struct is static; so is ours.
    static CALLBACKS: OnceLock<SharedCallbacks> = OnceLock::new();
    let callbacks = &CALLBACKS
        .get_or_init(|| {
            SharedCallbacks(Callbacks {
                plugin_log: Some(log_callback()),
                plugin_vlog: std::ptr::null(),
                plugin_secure_memzero: std::ptr::null(),
                plugin_base64_encode: std::ptr::null(),
                plugin_base64_decode: std::ptr::null(),
            })
        })
        .0;
    let args = OpenArgs {
        type_mask: 0xffff,
        argv: argv.ptrs.as_ptr(),
        envp: envp.ptrs.as_ptr(),
        callbacks,
        ssl_api: 1,
        ovpn_version: c"2.6.14".as_ptr(),
        ovpn_version_major: 2,
        ovpn_version_minor: 6,
        ovpn_version_patch: c".14".as_ptr(),
    };
    // SAFETY: everything passed is valid for the call, as OpenVPN guarantees.
    unsafe { (library().open)(5, &args, ret) }
}

struct Plugin {
    handle: *mut c_void,
    type_mask: c_int,
    so: CString,
}

impl Plugin {
    fn open(dir: &Path) -> Plugin {
        let so = plugin_so();
        let argv = CStrings::new(&[so.as_os_str().as_bytes(), dir.as_os_str().as_bytes()]);
        let envp = CStrings::new(&[b"verb=4", b"daemon=0"]);
        let mut ret = OpenReturn {
            type_mask: 0,
            handle: std::ptr::null_mut(),
            return_list: std::ptr::null_mut(),
        };
        assert_eq!(open_raw(&argv, &envp, &mut ret), ffi::FUNC_SUCCESS, "{:?}", log_state().lines);
        assert!(!ret.handle.is_null());
        let so = CString::new(so.as_os_str().as_bytes()).unwrap();
        Plugin { handle: ret.handle, type_mask: ret.type_mask, so }
    }

    fn call(&self, env: &Env) -> c_int {
        let items: Vec<&[u8]> = env.entries.iter().map(Vec::as_slice).collect();
        let envp = CStrings::new(&items);
        let argv = [self.so.as_ptr(), std::ptr::null()];
        let args = FuncArgs {
            plugin_type: ffi::AUTH_USER_PASS_VERIFY,
            argv: argv.as_ptr(),
            envp: envp.ptrs.as_ptr(),
            handle: self.handle,
            per_client_context: std::ptr::null_mut(),
            current_cert_depth: -1,
            current_cert: std::ptr::null_mut(),
        };
        let mut ret = FuncReturn { return_list: std::ptr::null_mut() };
        // SAFETY: a live handle and arguments valid for the call.
        unsafe { (library().func)(5, &args, &mut ret) }
    }

    fn close(self) {
        // SAFETY: a live handle, closed once.
        unsafe { (library().close)(self.handle) }
        let log = log_state();
        assert_eq!(log.off_thread, 0, "plugin_log was called from another thread");
        assert!(log.leaks.is_empty(), "secrets in the log: {:?}", log.leaks);
        assert!(log.misuse.is_empty(), "bad plugin_log calls: {:?}", log.misuse);
    }
}

// ---------------------------------------------------------------------------------------
// OpenVPN's plugin_log, as seen by the plugin
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct LogState {
    openvpn_thread: Option<ThreadId>,
    count: u64,
    /// The most recent lines (bounded, for assertions).
    lines: Vec<String>,
    off_thread: u64,
    leaks: Vec<String>,
    misuse: Vec<String>,
}

static LOG: Mutex<Option<LogState>> = Mutex::new(None);

/// Tests share the loaded library and its log: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    let guard = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    *LOG.lock().unwrap_or_else(PoisonError::into_inner) = Some(LogState::default());
    guard
}

fn set_openvpn_thread() {
    let mut log = LOG.lock().unwrap_or_else(PoisonError::into_inner);
    log.get_or_insert_with(LogState::default).openvpn_thread = Some(std::thread::current().id());
}

fn log_state() -> LogState {
    let mut log = LOG.lock().unwrap_or_else(PoisonError::into_inner);
    let state = log.get_or_insert_with(LogState::default);
    LogState {
        openvpn_thread: state.openvpn_thread,
        count: state.count,
        lines: state.lines.clone(),
        off_thread: state.off_thread,
        leaks: state.leaks.clone(),
        misuse: state.misuse.clone(),
    }
}

/// What the plugin calls as plugin_log. The plugin always passes the format "%s" and exactly
/// one string; on x86_64 and aarch64 Linux a variadic call with one pointer argument reaches a
/// function with that fixed signature unchanged.
unsafe extern "C" fn plugin_log_fixed(
    flags: c_int,
    name: *const c_char,
    format: *const c_char,
    text: *const c_char,
) {
    // SAFETY: the plugin passes NUL-terminated strings (checked for null first).
    let read = |p: *const c_char| {
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    let (name, format, text) = (read(name), read(format), read(text).unwrap_or_default());
    let mut log = LOG.lock().unwrap_or_else(PoisonError::into_inner);
    let log = log.get_or_insert_with(LogState::default);
    log.count += 1;
    if log.openvpn_thread.is_some() && log.openvpn_thread != Some(std::thread::current().id()) {
        log.off_thread += 1;
    }
    let known_flags = [ffi::PLOG_ERR, ffi::PLOG_WARN, ffi::PLOG_NOTE, ffi::PLOG_DEBUG];
    if name.as_deref() != Some("ovpn-mfa")
        || format.as_deref() != Some("%s")
        || !known_flags.contains(&flags)
    {
        log.misuse.push(format!("{flags} {name:?} {format:?}"));
    }
    let secrets = [SECRET_MARK, DORA_PASSWORD, DAVE_PASSWORD, "victim password", "SESS_ID_AT_"];
    if secrets.iter().any(|s| text.contains(s)) && log.leaks.len() < 10 {
        log.leaks.push(text.clone());
    }
    if log.lines.len() >= 5000 {
        log.lines.drain(..2500);
    }
    log.lines.push(text);
}

fn log_callback() -> PluginLog {
    let fixed: unsafe extern "C" fn(c_int, *const c_char, *const c_char, *const c_char) =
        plugin_log_fixed;
    // SAFETY: see plugin_log_fixed: same calling convention for the one way it is called.
    unsafe { std::mem::transmute(fixed) }
}
