//! The decision core, driven with an injected clock against a temporary store.

use super::*;
use crate::config::PasswordConfig;
use crate::otp::{totp_at_step, OtpKey, TotpParams};
use crate::store::users::{ClientMethod, NewUser};
use crate::store::{temp_store, Store};

const T0: u64 = 1_800_000_000; // the start of a 30 s step

struct Bed {
    _dir: tempfile::TempDir,
    store: Store,
    config: Config,
    key: OtpKey,
    /// The `common_name` every login presents; none, as without client certificates.
    common_name: Option<String>,
}

fn bed_with_password(password: Option<&str>) -> Bed {
    let (dir, mut store) = temp_store();
    let config = Config {
        password: PasswordConfig { memory_kib: 1024, iterations: 1, parallelism: 1 },
        ..Config::default()
    };
    let key = OtpKey::generate();
    let name = Username::parse("alice").unwrap();
    let hash = password.map(|p| password::hash(&p.into(), &config.password).unwrap());
    let new = NewUser {
        name: &name,
        key: &key,
        params: TotpParams::default(),
        password_hash: hash.as_deref(),
        client_method: ClientMethod::Otp,
    };
    let tx = store.write().unwrap();
    users::insert(&tx, &new, T0).unwrap();
    tx.commit().unwrap();
    Bed { _dir: dir, store, config, key, common_name: None }
}

fn bed() -> Bed {
    bed_with_password(None)
}

impl Bed {
    fn code_at(&self, now: u64) -> String {
        totp_at_step(self.key.as_bytes(), now / 30, &TotpParams::default())
    }

    fn login(&mut self, user: &str, password: &str, now: u64) -> Decision {
        self.login_state(user, password, now, SessionState::Initial, Some("sess-1"))
    }

    fn login_state(
        &mut self,
        user: &str,
        password: &str,
        now: u64,
        state: SessionState,
        session_id: Option<&str>,
    ) -> Decision {
        let password = Sensitive::new(password);
        let req = AuthRequest {
            username: user,
            password: &password,
            session_state: state,
            session_id,
            source: Some("192.0.2.10"),
            common_name: self.common_name.as_deref(),
        };
        authenticate(&mut self.store, &self.config, now, &req)
    }

    fn disable(&mut self) {
        let tx = self.store.write().unwrap();
        users::set_state(&tx, &Username::parse("alice").unwrap(), UserState::Disabled, T0).unwrap();
        tx.commit().unwrap();
    }

    fn audit(&self) -> Vec<AuditEntry> {
        audit::recent(self.store.conn(), None, 1000).unwrap()
    }

    fn user(&self) -> User {
        users::require(self.store.conn(), &Username::parse("alice").unwrap()).unwrap()
    }
}

fn refused(d: &Decision) -> Refusal {
    match d.outcome {
        Outcome::Refused(r) => r,
        ref other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_current_code_is_accepted_and_audited() {
    let mut bed = bed();
    let code = bed.code_at(T0 + 5);
    let d = bed.login("alice", &code, T0 + 5);
    assert!(d.accepted(), "{d}");
    assert_eq!(bed.user().last_step, Some(T0 / 30));
    let audit = bed.audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].decision, "accepted");
    assert_eq!(audit[0].user.as_deref(), Some("alice"));
    assert_eq!(audit[0].method.as_deref(), Some("otp"));
    assert_eq!(audit[0].source.as_deref(), Some("192.0.2.10"));
}

#[test]
fn a_code_is_accepted_once_per_step() {
    let mut bed = bed();
    bed.common_name = Some("alice".into());
    let code = bed.code_at(T0);
    assert!(bed.login("alice", &code, T0).accepted());
    let again = bed.login("alice", &code, T0 + 1);
    assert_eq!(refused(&again), Refusal::Replay);
    assert_eq!(again.client_message(), "code already used, wait for the next one");
    // The next step's code works.
    let next = bed.code_at(T0 + 30);
    assert!(bed.login("alice", &next, T0 + 30).accepted());
    // And the previous step's code, although inside the window, is now a replay.
    assert_eq!(refused(&bed.login("alice", &code, T0 + 31)), Refusal::Replay);
}

#[test]
fn the_window_is_one_step_each_way_and_exact_at_the_edges() {
    let mut bed = bed();
    let code = bed.code_at(T0); // step s
                                // Last second of step s+1: still inside the window.
    assert!(bed.login("alice", &code, T0 + 59).accepted());

    let mut bed = bed_with_password(None);
    let code = bed.code_at(T0);
    // First second of step s+2: two steps old, refused.
    assert_eq!(refused(&bed.login("alice", &code, T0 + 60)), Refusal::WrongCode);
    // Next step's code, one second before its step starts: accepted (clock drift).
    let ahead = bed.code_at(T0 + 90);
    assert!(bed.login("alice", &ahead, T0 + 60).accepted());
}

#[test]
fn a_failed_attempt_does_not_consume_the_step() {
    let mut bed = bed();
    assert_eq!(refused(&bed.login("alice", "000001", T0)), Refusal::WrongCode);
    let code = bed.code_at(T0);
    if code != "000001" {
        assert!(bed.login("alice", &code, T0).accepted());
    }
}

#[test]
fn five_failures_lock_the_account_until_it_expires() {
    let mut bed = bed();
    for i in 0..5u64 {
        let d = bed.login("alice", &format!("00000{i}"), T0 + i * 31);
        assert_eq!(refused(&d), Refusal::WrongCode);
    }
    let now = T0 + 4 * 31;
    let code = bed.code_at(now + 1);
    let d = bed.login("alice", &code, now + 1);
    assert_eq!(refused(&d), Refusal::LockedOut);
    assert_eq!(bed.user().last_step, None, "a locked-out attempt must not consume the step");
    let later = now + 900;
    let code = bed.code_at(later);
    assert!(bed.login("alice", &code, later).accepted());
    assert_eq!(bed.user().lock.lockout_level, 0, "success resets the doubling");
}

#[test]
fn a_resent_wrong_code_counts_once() {
    let mut bed = bed();
    for _ in 0..10 {
        bed.login("alice", "999999", T0 + 3);
    }
    assert_eq!(bed.user().lock.fail_count, 1);
    assert_eq!(bed.user().lock.locked_until, 0);
}

#[test]
fn unknown_invalid_and_disabled_users_are_refused_and_audited() {
    let mut bed = bed();
    let code = bed.code_at(T0);
    assert_eq!(refused(&bed.login("bob", &code, T0)), Refusal::UnknownUser);
    assert_eq!(refused(&bed.login("../etc/passwd", &code, T0)), Refusal::InvalidUsername);
    assert_eq!(refused(&bed.login("", &code, T0)), Refusal::InvalidUsername);
    let tx = bed.store.write().unwrap();
    users::set_state(&tx, &Username::parse("alice").unwrap(), UserState::Disabled, T0).unwrap();
    tx.commit().unwrap();
    assert_eq!(refused(&bed.login("ALICE", &code, T0)), Refusal::Disabled);
    let audit = bed.audit();
    let reasons: Vec<_> = audit.iter().map(|a| a.reason.clone().unwrap()).collect();
    assert_eq!(reasons, ["unknown-user", "invalid-username", "invalid-username", "disabled"]);
    assert_eq!(audit[1].user.as_deref(), Some("../etc/passwd"));
}

#[test]
fn a_user_with_a_password_must_give_it_in_every_form() {
    let mut bed = bed_with_password(Some("pw 1234"));
    let code = bed.code_at(T0);
    assert_eq!(refused(&bed.login("alice", &code, T0)), Refusal::Malformed(InputError::NoPassword));
    assert_eq!(refused(&bed.login("alice", &format!("wrong{code}"), T0)), Refusal::WrongPassword);
    let d = bed.login("alice", &format!("pw 1234{code}"), T0);
    assert!(d.accepted(), "{d}");
    assert_eq!(d.method, "concat");

    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let next = bed.code_at(T0 + 30);
    let scrv1 = format!("SCRV1:{}:{}", b64("pw 1234"), b64(&next));
    let d = bed.login("alice", &scrv1, T0 + 30);
    assert!(d.accepted(), "{d}");
    assert_eq!(d.method, "scrv1");
}

#[test]
fn a_token_resumes_the_session_without_a_code() {
    let mut bed = bed();
    let code = bed.code_at(T0);
    assert!(bed.login_state("alice", &code, T0, SessionState::Initial, Some("S1")).accepted());
    let token = "SESS_ID_AT_whatever";
    let d = bed.login_state("alice", token, T0 + 3600, SessionState::Authenticated, Some("S1"));
    assert!(d.accepted(), "{d}");
    assert_eq!(d.reason(), "token");
    // Another session id, or another user's name with this session: refused.
    let d = bed.login_state("alice", token, T0 + 3600, SessionState::Authenticated, Some("S2"));
    assert_eq!(refused(&d), Refusal::UnknownSession);
    let d = bed.login_state("mallory", token, T0 + 3600, SessionState::Authenticated, Some("S1"));
    assert_eq!(refused(&d), Refusal::UnknownSession);
    // Too old.
    let late = T0 + bed.config.session.max_age_secs;
    let d = bed.login_state("alice", token, late, SessionState::Authenticated, Some("S1"));
    assert_eq!(refused(&d), Refusal::SessionTooOld);
}

#[test]
fn a_disabled_or_locked_user_is_refused_at_renegotiation() {
    let mut bed = bed();
    let code = bed.code_at(T0);
    assert!(bed.login_state("alice", &code, T0, SessionState::Initial, Some("S1")).accepted());
    let name = Username::parse("alice").unwrap();
    let tx = bed.store.write().unwrap();
    users::set_state(&tx, &name, UserState::Disabled, T0).unwrap();
    tx.commit().unwrap();
    let d =
        bed.login_state("alice", "SESS_ID_AT_x", T0 + 60, SessionState::Authenticated, Some("S1"));
    assert_eq!(refused(&d), Refusal::Disabled);
}

#[test]
fn expired_invalid_empty_user_and_unknown_token_states_are_refused() {
    let mut bed = bed();
    let code = bed.code_at(T0);
    assert!(bed.login_state("alice", &code, T0, SessionState::Initial, Some("S1")).accepted());
    let cases = [
        (SessionState::Expired, Refusal::TokenExpired),
        (SessionState::Invalid, Refusal::TokenInvalid),
        (SessionState::AuthenticatedEmptyUser, Refusal::EmptyUserToken),
        (SessionState::ExpiredEmptyUser, Refusal::EmptyUserToken),
        (SessionState::from_env(Some("Bogus\n")), Refusal::UnknownSessionState),
    ];
    for (state, want) in cases {
        let d = bed.login_state("alice", "SESS_ID_AT_x", T0 + 60, state, Some("S1"));
        assert_eq!(refused(&d), want);
    }
}

#[test]
fn empty_user_tokens_are_matched_by_session_when_allowed() {
    let mut bed = bed();
    bed.config.session.allow_empty_username_tokens = true;
    let code = bed.code_at(T0);
    assert!(bed.login_state("alice", &code, T0, SessionState::Initial, Some("S1")).accepted());
    let state = SessionState::AuthenticatedEmptyUser;
    let d = bed.login_state("", "SESS_ID_AT_x", T0 + 60, state.clone(), Some("S1"));
    assert!(d.accepted(), "{d}");
    assert_eq!(d.user, "alice");
    let d = bed.login_state("", "SESS_ID_AT_x", T0 + 60, state, Some("nope"));
    assert_eq!(refused(&d), Refusal::UnknownSession);
}

#[test]
fn a_token_string_sent_as_a_password_at_initial_is_just_a_wrong_code() {
    let mut bed = bed();
    let d = bed.login_state("alice", "SESS_ID_AT_abcdef", T0, SessionState::Initial, Some("S1"));
    assert_eq!(refused(&d), Refusal::WrongCode);
}

#[test]
fn recovery_codes_work_once() {
    let mut bed = bed();
    let codes = generate_recovery_codes(8);
    let id = bed.user().id;
    recovery::replace(bed.store.conn(), id, &codes).unwrap();
    let d = bed.login("alice", &codes[3].to_uppercase(), T0);
    assert!(d.accepted(), "{d}");
    assert_eq!(d.reason(), "recovery-code");
    assert_eq!(refused(&bed.login("alice", &codes[3], T0 + 1)), Refusal::WrongCode);
    assert_eq!(recovery::remaining(bed.store.conn(), id).unwrap(), 7);
}

#[test]
fn an_eight_digit_recovery_code_works_after_a_password_once() {
    // google-authenticator scratch codes, as `import` stores them, typed as PASSWORD+CODE.
    let mut bed = bed_with_password(Some("pw12"));
    let id = bed.user().id;
    recovery::replace(bed.store.conn(), id, &["12345678".to_owned()]).unwrap();
    assert_eq!(refused(&bed.login("alice", "wrong12345678", T0)), Refusal::WrongPassword);
    let d = bed.login("alice", "pw1212345678", T0);
    assert!(d.accepted(), "{d}");
    assert_eq!(d.reason(), "recovery-code");
    assert_eq!(refused(&bed.login("alice", "pw1212345678", T0 + 1)), Refusal::WrongCode);
    let code = bed.code_at(T0 + 30);
    assert!(bed.login("alice", &format!("pw12{code}"), T0 + 30).accepted());
}

#[test]
fn log_lines_and_audit_rows_never_contain_the_credentials() {
    let mut bed = bed_with_password(Some("S3cretPassw0rd"));
    let code = bed.code_at(T0);
    let attempts = [
        format!("S3cretPassw0rd{code}"),
        format!("S3cretPassw0rdX{code}"),
        "S3cretPassw0rd".to_string(),
    ];
    let mut lines = vec![];
    for (i, attempt) in attempts.iter().enumerate() {
        let d = bed.login("alice", attempt, T0 + i as u64);
        lines.push(format!("{d} {d:?}"));
    }
    lines.extend(bed.audit().iter().map(|a| format!("{a:?}")));
    let secret = bed.key.to_base32();
    for line in lines {
        for needle in ["S3cretPassw0rd", code.as_str(), secret.as_str()] {
            assert!(!line.contains(needle), "{needle:?} leaked into {line}");
        }
    }
}

/// An attacker who knows the user name (and any password) guesses codes for an hour, as fast
/// as the server lets them, with the default lockout settings. Every guess the server actually
/// evaluates has a 2w+1 in 10^digits chance; locked-out guesses are refused before the code is
/// looked at and give no information.
#[test]
fn an_hour_of_guessing_has_less_than_one_chance_in_ten_thousand() {
    let mut bed = bed();
    let window = bed.config.otp.window;
    let mut evaluated = 0u64;
    let mut guess = 0u32;
    for second in 0..3600u64 {
        let now = T0 + second;
        // Two guesses a second (more only adds locked-out refusals); each is a code that is
        // wrong right now, so the count is exact and the test cannot flake.
        for _ in 0..2 {
            let valid: Vec<String> = (0..=2 * window)
                .map(|i| {
                    totp_at_step(bed.key.as_bytes(), now / 30 + i - window, &TotpParams::default())
                })
                .collect();
            let code = loop {
                guess = (guess + 1) % 1_000_000;
                let candidate = format!("{guess:06}");
                if !valid.contains(&candidate) {
                    break candidate;
                }
            };
            let d = bed.login("alice", &code, now);
            match refused(&d) {
                Refusal::WrongCode => evaluated += 1,
                Refusal::LockedOut => {}
                other => panic!("unexpected refusal {other:?}"),
            }
        }
    }
    let per_guess = (2 * window + 1) as f64 / 1e6;
    let success = 1.0 - (1.0 - per_guess).powf(evaluated as f64);
    println!("evaluated guesses in one hour: {evaluated}, success probability: {success:.2e}");
    assert_eq!(evaluated, 15, "5 guesses, lock 15 min; 5, lock 30 min; 5, lock 60 min");
    assert!(success < 1e-4, "{success}");
}

#[test]
fn a_certificate_of_someone_else_is_refused_before_the_account_is_looked_at() {
    let mut bed = bed();
    bed.common_name = Some("mallory".into());
    let code = bed.code_at(T0);
    let d = bed.login("alice", &code, T0);
    assert_eq!(refused(&d), Refusal::CertificateMismatch);
    assert_eq!(d.client_message(), "authentication failed");
    // An unknown name is refused the same way, so the refusal says nothing about accounts.
    assert_eq!(refused(&bed.login("bob", &code, T0)), Refusal::CertificateMismatch);
    let audit = bed.audit();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0].user.as_deref(), Some("alice"));
    assert_eq!(audit[0].decision, "refused");
    assert_eq!(audit[0].reason.as_deref(), Some("certificate-mismatch"));
    // Neither the code nor a lockout failure was spent on it.
    assert_eq!(bed.user().last_step, None);
    assert_eq!(bed.user().lock.fail_count, 0);

    // The certificate's name is compared the way user names are folded.
    bed.common_name = Some("Alice".into());
    let d = bed.login("ALICE", &code, T0);
    assert!(d.accepted(), "{d}");
}

#[test]
fn certificates_are_not_bound_when_turned_off_or_absent() {
    let mut bed = bed();
    bed.config.openvpn.bind_certificate = false;
    bed.common_name = Some("mallory".into());
    assert!(bed.login("alice", &bed.code_at(T0), T0).accepted());
    bed.config.openvpn.bind_certificate = true;
    bed.common_name = None;
    assert!(bed.login("alice", &bed.code_at(T0 + 30), T0 + 30).accepted());
}

#[test]
fn a_token_is_refused_at_renegotiation_with_a_certificate_of_someone_else() {
    let mut bed = bed();
    bed.common_name = Some("alice".into());
    let code = bed.code_at(T0);
    assert!(bed.login_state("alice", &code, T0, SessionState::Initial, Some("S1")).accepted());
    let token = "SESS_ID_AT_whatever";
    let state = SessionState::Authenticated;
    assert!(bed.login_state("alice", token, T0 + 60, state.clone(), Some("S1")).accepted());
    bed.common_name = Some("mallory".into());
    let d = bed.login_state("alice", token, T0 + 120, state.clone(), Some("S1"));
    assert_eq!(refused(&d), Refusal::CertificateMismatch);
    // Also for an empty-user token, matched by session.
    bed.config.session.allow_empty_username_tokens = true;
    let d = bed.login_state("", token, T0 + 120, SessionState::AuthenticatedEmptyUser, Some("S1"));
    assert_eq!(refused(&d), Refusal::CertificateMismatch);
    let last = bed.audit().pop().unwrap();
    assert_eq!(last.reason.as_deref(), Some("certificate-mismatch"));
    assert_eq!(last.user.as_deref(), Some("alice"));
    assert_eq!(last.session_state.as_deref(), Some("AuthenticatedEmptyUser"));
}

#[test]
fn a_token_presented_under_another_name_is_audited_under_that_name() {
    let mut bed = bed();
    let code = bed.code_at(T0);
    assert!(bed.login_state("alice", &code, T0, SessionState::Initial, Some("S1")).accepted());
    let state = SessionState::Authenticated;
    let d = bed.login_state("Bob", "SESS_ID_AT_x", T0 + 60, state.clone(), Some("S1"));
    assert_eq!(refused(&d), Refusal::UnknownSession);
    assert_eq!(d.user, "bob");
    let d = bed.login_state("bad name", "SESS_ID_AT_x", T0 + 60, state, Some("S1"));
    assert_eq!(refused(&d), Refusal::UnknownSession);
    assert_eq!(d.user, "\"bad name\"");
    let audit = bed.audit();
    let rows: Vec<_> =
        audit.iter().map(|a| (a.user.clone().unwrap(), a.reason.clone().unwrap())).collect();
    assert_eq!(rows[1], ("bob".to_owned(), "unknown-session".to_owned()));
    assert_eq!(rows[2], ("\"bad name\"".to_owned(), "unknown-session".to_owned()));
}

/// Whatever an existing account is refused for, a client without that account's certificate
/// reads the same text as for a name that does not exist: the text tells no one which
/// accounts exist. With the account's own certificate, the helpful reasons stay.
#[test]
fn refusals_read_the_same_for_unknown_and_existing_users_without_the_accounts_certificate() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for (certificate, bind) in [(None, true), (Some("mallory"), false), (Some("mallory"), true)] {
        let mut bed = bed_with_password(Some("pw 1234"));
        bed.config.openvpn.bind_certificate = bind;
        bed.common_name = certificate.map(str::to_owned);
        let code = bed.code_at(T0);
        let unknown = bed.login("nobody", &code, T0).client_message();
        let unknown_with_password = bed.login("nobody", &format!("pw 1234{code}"), T0);
        assert_eq!(unknown, "authentication failed");
        assert_eq!(unknown_with_password.client_message(), unknown);

        // Six failures lock the account here, so that each reason below is reached once.
        bed.config.lockout.max_failures = 6;
        let mut attempts: Vec<(&str, Decision)> = vec![];
        // A replay needs an accepted code first, which a mismatched certificate never gets.
        if !(bind && certificate.is_some()) {
            let scrv1 = format!("SCRV1:{}:{}", b64("pw 1234"), b64(&code));
            assert!(bed.login("alice", &scrv1, T0).accepted());
            attempts.push(("replay", bed.login("alice", &scrv1, T0 + 1)));
        }
        attempts.push(("code only", bed.login("alice", &code, T0 + 2)));
        attempts.push(("wrong password", bed.login("alice", &format!("wrong{code}"), T0 + 3)));
        attempts.push(("bad scrv1", bed.login("alice", "SCRV1:*:*", T0 + 4)));
        attempts.push(("no code", bed.login("alice", "SCRV1:cHc=:", T0 + 5)));
        attempts.push(("too long", bed.login("alice", &"x".repeat(5000), T0 + 6)));
        attempts.push(("wrong code", bed.login("alice", "pw 1234000000", T0 + 7)));
        attempts.push(("locked out", bed.login("alice", &format!("pw 1234{code}"), T0 + 8)));
        bed.disable();
        attempts.push(("disabled", bed.login("alice", &format!("pw 1234{code}"), T0 + 9)));
        for (what, d) in &attempts {
            assert!(!d.accepted(), "{what}: {d}");
            assert_eq!(d.client_message(), unknown, "{what} ({certificate:?}, bind={bind}): {d}");
        }
        let reasons: Vec<_> = attempts.iter().map(|(_, d)| d.reason()).collect();
        if bind && certificate.is_some() {
            assert!(reasons.iter().all(|r| r == "certificate-mismatch"), "{reasons:?}");
        } else {
            let all = [
                "replayed-code",
                "no-password",
                "wrong-password",
                "malformed-scrv1",
                "no-code",
                "field-too-long",
                "wrong-code",
                "locked-out",
                "disabled",
            ];
            assert_eq!(reasons, all);
            for reason in all {
                assert!(reasons.iter().any(|r| r == reason), "no {reason} in {reasons:?}");
            }
        }
    }

    // The account's own certificate: the reasons that help its owner are given.
    let mut bed = bed_with_password(Some("pw 1234"));
    bed.common_name = Some("alice".into());
    let code = bed.code_at(T0);
    assert_eq!(bed.login("alice", &code, T0).client_message(), "password and code required");
    assert!(bed.login("alice", &format!("pw 1234{code}"), T0).accepted());
    let replay = bed.login("alice", &format!("pw 1234{code}"), T0 + 1);
    assert_eq!(replay.client_message(), "code already used, wait for the next one");
}
