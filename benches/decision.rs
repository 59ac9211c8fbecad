//! The login decision on a warm store: `ovpn_mfa::auth::authenticate` with the store already
//! open, as a long-lived front end (the plugin) calls it. `cargo bench --bench decision`.
//!
//! The clock is an input, so each accepted login can use a fresh time step (replay protection
//! would refuse a repeat) and each wrong code a fresh lockout window (five failures would
//! otherwise lock the user and measure the cheaper locked-out path).
//!
//! `otp accept, store opened per call` adds what the `verify` script pays on top of the
//! decision itself for opening the store; process start-up is measured by the storm bench.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ovpn_mfa::auth::{authenticate, AuthRequest, SessionState};
use ovpn_mfa::config::Config;
use ovpn_mfa::otp::{totp, OtpKey};
use ovpn_mfa::secret::Sensitive;
use ovpn_mfa::store::{users, ClientMethod, NewUser, Store};
use ovpn_mfa::username::Username;
use std::cell::Cell;
use std::path::PathBuf;
use std::time::Duration;

/// A store with `count` enrolled users (`user0000`, ...); returns their keys.
fn warm_store(dir: &std::path::Path, count: usize) -> (PathBuf, Vec<OtpKey>) {
    let path = dir.join("ovpn-mfa.sqlite");
    let mut store = Store::create(&path).expect("create the store");
    let config = Config::default();
    let tx = store.write().expect("write transaction");
    let keys: Vec<OtpKey> = (0..count)
        .map(|i| {
            let name = Username::parse(&format!("user{i:04}")).expect("valid name");
            let key = OtpKey::generate();
            let new = NewUser {
                name: &name,
                key: &key,
                params: config.totp_params(),
                password_hash: None,
                client_method: ClientMethod::Otp,
            };
            users::insert(&tx, &new, 1_700_000_000).expect("insert user");
            key
        })
        .collect();
    tx.commit().expect("commit");
    (path, keys)
}

fn request<'a>(user: &'a str, password: &'a Sensitive) -> AuthRequest<'a> {
    AuthRequest {
        username: user,
        password,
        session_state: SessionState::Initial,
        session_id: None,
        source: Some("198.51.100.7"),
        common_name: None,
    }
}

fn decision(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, keys) = warm_store(dir.path(), 1000);
    let config = Config::default();
    let params = config.totp_params();
    let mut store = Store::open(&path, Duration::from_secs(10)).expect("open the store");
    let key = keys[500].as_bytes().to_vec();
    let user = "user0500";

    // Every iteration at a later step, with that step's code: always a fresh, valid code.
    let now = Cell::new(1_800_000_000u64);
    c.bench_function("otp accept", |b| {
        b.iter_batched(
            || {
                now.set(now.get() + params.period);
                (now.get(), Sensitive::from(totp(&key, now.get(), &params)))
            },
            |(at, code)| {
                let d = authenticate(&mut store, &config, at, &request(user, &code));
                assert!(d.accepted(), "{d}");
            },
            BatchSize::SmallInput,
        )
    });

    // A wrong code, each in a new lockout window so the user never gets locked.
    let wrong_user = "user0501";
    let wrong_key = keys[501].as_bytes().to_vec();
    let step = config.lockout.window_secs + params.period;
    c.bench_function("wrong code", |b| {
        b.iter_batched(
            || {
                now.set(now.get() + step);
                let at = now.get();
                // A code that matches none of the steps the drift window accepts.
                let accepted: Vec<String> = [at - params.period, at, at + params.period]
                    .iter()
                    .map(|t| totp(&wrong_key, *t, &params))
                    .collect();
                let wrong = (0u32..)
                    .map(|k| format!("{k:06}"))
                    .find(|c| !accepted.contains(c))
                    .expect("a wrong code exists");
                (at, Sensitive::from(wrong))
            },
            |(at, code)| {
                let d = authenticate(&mut store, &config, at, &request(wrong_user, &code));
                assert!(!d.accepted(), "{d}");
            },
            BatchSize::SmallInput,
        )
    });

    // Renegotiation with auth-gen-token: a real login binds the session, then every
    // renegotiation presents the token (session_state Authenticated).
    let token_user = "user0502";
    let token_key = keys[502].as_bytes().to_vec();
    let login_at = now.get() + 1000;
    let code = Sensitive::from(totp(&token_key, login_at, &params));
    let mut first = request(token_user, &code);
    first.session_id = Some("bench-session");
    assert!(authenticate(&mut store, &config, login_at, &first).accepted());
    let token = Sensitive::from("SESS_ID_AT_bench-token");
    c.bench_function("token (renegotiation)", |b| {
        b.iter(|| {
            let req = AuthRequest {
                username: token_user,
                password: &token,
                session_state: SessionState::Authenticated,
                session_id: Some("bench-session"),
                source: Some("198.51.100.7"),
                common_name: None,
            };
            let d = authenticate(&mut store, &config, login_at + 60, &req);
            assert!(d.accepted(), "{d}");
        })
    });
    drop(store);

    // What the script adds per login before deciding: opening the store.
    let fresh_user = "user0503";
    let fresh_key = keys[503].as_bytes().to_vec();
    c.bench_function("otp accept, store opened per call", |b| {
        b.iter_batched(
            || {
                now.set(now.get() + params.period);
                (now.get(), Sensitive::from(totp(&fresh_key, now.get(), &params)))
            },
            |(at, code)| {
                let mut store = Store::open(&path, Duration::from_millis(250)).expect("open");
                let d = authenticate(&mut store, &config, at, &request(fresh_user, &code));
                assert!(d.accepted(), "{d}");
            },
            BatchSize::SmallInput,
        )
    });

    // The same with another connection held open, as a second process would: closing is then
    // not the last close, which skips SQLite's checkpoint of the WAL into the main file.
    let keeper = Store::open(&path, Duration::from_secs(10)).expect("open");
    c.bench_function("otp accept, store opened per call, another connection open", |b| {
        b.iter_batched(
            || {
                now.set(now.get() + params.period);
                (now.get(), Sensitive::from(totp(&fresh_key, now.get(), &params)))
            },
            |(at, code)| {
                let mut store = Store::open(&path, Duration::from_millis(250)).expect("open");
                let d = authenticate(&mut store, &config, at, &request(fresh_user, &code));
                assert!(d.accepted(), "{d}");
            },
            BatchSize::SmallInput,
        )
    });
    drop(keeper);
}

criterion_group!(benches, decision);
criterion_main!(benches);
