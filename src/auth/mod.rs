//! The authentication decision: one function that both OpenVPN front ends and `check` call.
//!
//! It takes the time and the store as inputs. Outcomes are kept apart: accepted, refused
//! (expected: a wrong code, a disabled user; logged with a reason) and failed (our fault: the
//! store is unreadable; logged as an error). Every decision writes one audit row, in the same
//! transaction as the state it changes.

pub mod input;
pub mod lockout;
pub mod password;

use crate::config::Config;
use crate::otp::{check_totp, TotpCheck};
use crate::secret::Sensitive;
use crate::store::users::{self, User, UserState};
use crate::store::{audit, recovery, sessions, AuditEntry, AuditKind, Store, StoreError};
use crate::username::{printable, Username};
use input::InputError;
use sha2::{Digest, Sha256};
use std::fmt;

/// OpenVPN's `session_state`, set when the server uses `auth-gen-token`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// No auth-gen-token on the server: every call is a full login.
    NoToken,
    Initial,
    Authenticated,
    Expired,
    Invalid,
    AuthenticatedEmptyUser,
    ExpiredEmptyUser,
    Unknown(String),
}

impl SessionState {
    pub fn from_env(value: Option<&str>) -> Self {
        match value {
            None => SessionState::NoToken,
            Some("Initial") => SessionState::Initial,
            Some("Authenticated") => SessionState::Authenticated,
            Some("Expired") => SessionState::Expired,
            Some("Invalid") => SessionState::Invalid,
            Some("AuthenticatedEmptyUser") => SessionState::AuthenticatedEmptyUser,
            Some("ExpiredEmptyUser") => SessionState::ExpiredEmptyUser,
            Some(other) => SessionState::Unknown(printable(other)),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            SessionState::NoToken => "none",
            SessionState::Initial => "Initial",
            SessionState::Authenticated => "Authenticated",
            SessionState::Expired => "Expired",
            SessionState::Invalid => "Invalid",
            SessionState::AuthenticatedEmptyUser => "AuthenticatedEmptyUser",
            SessionState::ExpiredEmptyUser => "ExpiredEmptyUser",
            SessionState::Unknown(s) => s,
        }
    }
}

/// One login attempt as OpenVPN (or `check`) presents it. Everything here is untrusted.
#[derive(Debug)]
pub struct AuthRequest<'a> {
    pub username: &'a str,
    pub password: &'a Sensitive,
    pub session_state: SessionState,
    pub session_id: Option<&'a str>,
    pub source: Option<&'a str>,
    /// The client certificate's common name (OpenVPN's `common_name`), absent when the
    /// server asks for no client certificate.
    pub common_name: Option<&'a str>,
}

/// Why a login was refused. The first word of `as_str` is what logs and the audit log show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    InvalidUsername,
    UnknownUser,
    Disabled,
    LockedOut,
    Malformed(InputError),
    WrongPassword,
    WrongCode,
    Replay,
    TokenExpired,
    TokenInvalid,
    EmptyUserToken,
    UnknownSessionState,
    UnknownSession,
    SessionTooOld,
    /// The client certificate was issued to someone else (`openvpn.bind_certificate`).
    CertificateMismatch,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::InvalidUsername => "invalid-username",
            Refusal::UnknownUser => "unknown-user",
            Refusal::Disabled => "disabled",
            Refusal::LockedOut => "locked-out",
            Refusal::Malformed(InputError::BadScrv1) => "malformed-scrv1",
            Refusal::Malformed(InputError::NoCode) => "no-code",
            Refusal::Malformed(InputError::NoPassword) => "no-password",
            Refusal::Malformed(InputError::TooLong) => "field-too-long",
            Refusal::WrongPassword => "wrong-password",
            Refusal::WrongCode => "wrong-code",
            Refusal::Replay => "replayed-code",
            Refusal::TokenExpired => "token-expired",
            Refusal::TokenInvalid => "token-invalid",
            Refusal::EmptyUserToken => "empty-user-token",
            Refusal::UnknownSessionState => "unknown-session-state",
            Refusal::UnknownSession => "unknown-session",
            Refusal::SessionTooOld => "session-too-old",
            Refusal::CertificateMismatch => "certificate-mismatch",
        }
    }

    /// The short text sent to the client as `AUTH_FAILED,<text>`. It says no more than the
    /// user needs: wrong password and wrong code look the same, unknown users look like
    /// wrong codes.
    ///
    /// `bound` says whether the client's certificate is the account's own (its common name
    /// is the user name). Only then do refusals that only an existing account can earn
    /// (replay, lockout, a missing password) say why: anyone else could otherwise tell
    /// existing accounts from unknown ones. Without such a certificate they read
    /// "authentication failed", like an unknown user.
    pub fn client_message(self, bound: bool) -> &'static str {
        const FAILED: &str = "authentication failed";
        match self {
            Refusal::Replay if bound => "code already used, wait for the next one",
            Refusal::LockedOut if bound => "too many failed attempts, try again later",
            Refusal::Malformed(InputError::NoPassword) if bound => "password and code required",
            // Only a client that holds a token OpenVPN signed for this server gets here, and
            // these do not depend on whether the name it sent exists.
            Refusal::TokenExpired | Refusal::SessionTooOld | Refusal::UnknownSession => {
                "session expired, reconnect with a new code"
            }
            _ => FAILED,
        }
    }
}

/// Whether the certificate's common name names `user` (a folded user name), compared the way
/// user names are folded.
pub fn certificate_names(common_name: &str, user: &str) -> bool {
    common_name.eq_ignore_ascii_case(user)
}

/// What `openvpn.bind_certificate` decides for a login as `user` (folded) with a certificate
/// named `common_name`: refused when the option is on and the certificate is someone else's.
/// Without a common name (no client certificates on the server) there is nothing to bind.
pub fn certificate_mismatch(bind: bool, common_name: Option<&str>, user: &str) -> bool {
    bind && common_name.is_some_and(|cn| !certificate_names(cn, user))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Refused(Refusal),
    /// Something on our side broke (the store could not be read or written).
    Failed(String),
}

/// A decision and what the log line and the audit row say about it.
#[derive(Debug)]
pub struct Decision {
    pub outcome: Outcome,
    /// The folded user name, or an escaped form of what the client sent.
    pub user: String,
    pub source: String,
    pub method: &'static str,
    pub session_state: String,
    /// Extra detail for accepted logins, e.g. "recovery-code" or "token".
    pub note: Option<&'static str>,
    /// Whether the client's certificate names the account decided on (see
    /// [`Refusal::client_message`]).
    pub certificate_bound: bool,
    /// Whether the audit row was already written inside the decision's own transaction.
    audited: bool,
    /// Whether it failed only because another process held the store's lock too long.
    busy: bool,
}

impl Decision {
    pub fn accepted(&self) -> bool {
        self.outcome == Outcome::Accepted
    }

    /// True when the store was locked by another process past the busy timeout; nothing
    /// was recorded, so the same attempt can be decided again elsewhere.
    pub fn store_busy(&self) -> bool {
        self.busy
    }

    pub fn decision_word(&self) -> &'static str {
        match self.outcome {
            Outcome::Accepted => "accepted",
            Outcome::Refused(_) => "refused",
            Outcome::Failed(_) => "failed",
        }
    }

    pub fn reason(&self) -> String {
        match &self.outcome {
            Outcome::Accepted => self.note.unwrap_or("ok").to_owned(),
            Outcome::Refused(r) => r.as_str().to_owned(),
            Outcome::Failed(e) => format!("error: {e}"),
        }
    }

    pub fn client_message(&self) -> &'static str {
        match &self.outcome {
            Outcome::Accepted => "",
            Outcome::Refused(r) => r.client_message(self.certificate_bound),
            Outcome::Failed(_) => "authentication temporarily unavailable",
        }
    }

    fn audit_entry(&self, now: u64) -> AuditEntry {
        AuditEntry {
            at: now,
            kind: AuditKind::Auth,
            user: Some(self.user.clone()),
            source: Some(self.source.clone()),
            method: Some(self.method.to_owned()),
            session_state: Some(self.session_state.clone()),
            decision: self.decision_word().to_owned(),
            reason: Some(self.reason()),
        }
    }
}

impl fmt::Display for Decision {
    /// The one log line per decision: `auth accepted user=alice source=... method=otp ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "auth {} user={} source={} method={} session_state={} reason={}",
            self.decision_word(),
            self.user,
            self.source,
            self.method,
            self.session_state,
            self.reason()
        )
    }
}

/// Decides one login attempt at `now` (Unix seconds) and records it in the store.
pub fn authenticate(
    store: &mut Store,
    config: &Config,
    now: u64,
    req: &AuthRequest<'_>,
) -> Decision {
    let mut decision = Decision {
        outcome: Outcome::Failed("not decided".into()),
        user: printable(req.username),
        source: req.source.map(printable).unwrap_or_else(|| "-".into()),
        method: "-",
        session_state: req.session_state.as_str().to_owned(),
        note: None,
        certificate_bound: false,
        audited: false,
        busy: false,
    };
    let result = decide(store, config, now, req, &mut decision);
    let mut damaged = false;
    decision.outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => {
            decision.busy = matches!(e, StoreError::Busy);
            damaged = matches!(e, StoreError::Corrupt(_));
            Outcome::Failed(e.to_string())
        }
    };
    // Decisions that changed state were audited in their own transaction; the rest here.
    // Nothing is written to a store SQLite found damaged: the log line is the only record.
    if !decision.audited && !decision.busy && !damaged {
        let _ = audit::append(store.conn(), &decision.audit_entry(now));
    }
    decision
}

/// A decision that could not be made (no store, no config, no credentials). The caller logs
/// it; without a store there is nowhere to audit it.
pub fn failed_decision(req: &AuthRequest<'_>, message: String, store_busy: bool) -> Decision {
    Decision {
        user: printable(req.username),
        source: req.source.map(printable).unwrap_or_else(|| "-".into()),
        method: "-",
        session_state: req.session_state.as_str().to_owned(),
        note: None,
        certificate_bound: false,
        audited: false,
        busy: store_busy,
        outcome: Outcome::Failed(message),
    }
}

/// Audits a decision made without the store (see [`failed_decision`]) once a store is at
/// hand. Best effort: a store that cannot be written cannot record why.
pub fn audit_failed(store: &Store, decision: &Decision, now: u64) {
    let _ = audit::append(store.conn(), &decision.audit_entry(now));
}

/// Writes the decision's audit row in the transaction that holds its state change, then
/// commits both at once.
fn commit_decision(
    tx: rusqlite::Transaction<'_>,
    decision: &mut Decision,
    outcome: Outcome,
    now: u64,
) -> Result<Outcome, StoreError> {
    decision.outcome = outcome.clone();
    audit::append(&tx, &decision.audit_entry(now))?;
    tx.commit()?;
    decision.audited = true;
    Ok(outcome)
}

fn decide(
    store: &mut Store,
    config: &Config,
    now: u64,
    req: &AuthRequest<'_>,
    decision: &mut Decision,
) -> Result<Outcome, StoreError> {
    match &req.session_state {
        SessionState::NoToken | SessionState::Initial => {
            full_login(store, config, now, req, decision)
        }
        SessionState::Authenticated => {
            decision.method = "token";
            resume_session(store, config, now, req.username, req, decision)
        }
        SessionState::AuthenticatedEmptyUser if config.session.allow_empty_username_tokens => {
            decision.method = "token";
            resume_session(store, config, now, "", req, decision)
        }
        SessionState::AuthenticatedEmptyUser | SessionState::ExpiredEmptyUser => {
            decision.method = "token";
            Ok(Outcome::Refused(Refusal::EmptyUserToken))
        }
        SessionState::Expired => {
            decision.method = "token";
            Ok(Outcome::Refused(Refusal::TokenExpired))
        }
        SessionState::Invalid => {
            decision.method = "token";
            Ok(Outcome::Refused(Refusal::TokenInvalid))
        }
        SessionState::Unknown(_) => Ok(Outcome::Refused(Refusal::UnknownSessionState)),
    }
}

/// `session_state` Authenticated: OpenVPN has checked the token's signature and age; we check
/// that the account may still connect and that the session is ours and young enough.
///
/// The attempt is audited under the name that was sent (folded when valid), not under the
/// session's owner: a token of alice's presented as bob is bob's refused attempt. Only a
/// blanked name (an allowed empty-user token) is audited as the session's user.
fn resume_session(
    store: &mut Store,
    config: &Config,
    now: u64,
    username: &str,
    req: &AuthRequest<'_>,
    decision: &mut Decision,
) -> Result<Outcome, StoreError> {
    let sent = Username::parse(username).ok();
    if let Some(name) = &sent {
        decision.user = name.to_string();
    }
    let Some(session_id) = req.session_id.filter(|s| !s.is_empty() && s.len() <= 128) else {
        return Ok(Outcome::Refused(Refusal::UnknownSession));
    };
    let tx = store.write()?;
    let Some(session) = sessions::get(&tx, session_id)? else {
        return Ok(Outcome::Refused(Refusal::UnknownSession));
    };
    let Some(user) = users::get_by_id(&tx, session.user_id)? else {
        return Ok(Outcome::Refused(Refusal::UnknownUser));
    };
    if username.is_empty() {
        decision.user = user.name.clone();
    } else if sent.as_ref().map(Username::as_str) != Some(&user.name) {
        return Ok(Outcome::Refused(Refusal::UnknownSession));
    }
    if certificate_mismatch(config.openvpn.bind_certificate, req.common_name, &user.name) {
        return Ok(Outcome::Refused(Refusal::CertificateMismatch));
    }
    decision.certificate_bound =
        req.common_name.is_some_and(|cn| certificate_names(cn, &user.name));
    if let Some(refusal) = barred(&user, now) {
        return Ok(Outcome::Refused(refusal));
    }
    if now.saturating_sub(session.created_at) >= config.session.max_age_secs {
        return Ok(Outcome::Refused(Refusal::SessionTooOld));
    }
    sessions::touch(&tx, session_id, now)?;
    decision.note = Some("token");
    commit_decision(tx, decision, Outcome::Accepted, now)
}

fn full_login(
    store: &mut Store,
    config: &Config,
    now: u64,
    req: &AuthRequest<'_>,
    decision: &mut Decision,
) -> Result<Outcome, StoreError> {
    let Ok(name) = Username::parse(req.username) else {
        return Ok(Outcome::Refused(Refusal::InvalidUsername));
    };
    decision.user = name.to_string();
    // Before the store is asked: a certificate issued to someone else learns nothing about
    // the account, costs it no lockout failure, and pays for no hash.
    if certificate_mismatch(config.openvpn.bind_certificate, req.common_name, name.as_str()) {
        return Ok(Outcome::Refused(Refusal::CertificateMismatch));
    }
    decision.certificate_bound =
        req.common_name.is_some_and(|cn| certificate_names(cn, name.as_str()));

    // A first look outside any transaction, so slow password hashing holds no lock.
    let Some(user) = users::get(store.conn(), &name)? else {
        // Only where a known user's check would hash too: those logins are deferred, so the
        // dummy never runs on OpenVPN's thread, and a bare code costs no hash either way.
        if input::may_hold_a_password(req.password.expose()) {
            password::verify_dummy(req.password, &config.password);
        }
        return Ok(Outcome::Refused(Refusal::UnknownUser));
    };
    if let Some(refusal) = barred(&user, now) {
        return Ok(Outcome::Refused(refusal));
    }

    let field = req.password.expose();
    let presented = input::split(field, user.password_hash.is_some(), user.params.digits);
    let mut presented = match presented {
        Ok(p) => p,
        Err(e) => {
            return count_failure(store, config, now, &user, field, Refusal::Malformed(e), decision)
        }
    };
    decision.method = presented.format.as_str();
    if let (Some(stored), Some(given)) = (&user.password_hash, &presented.password) {
        if !password::verify(given, stored) {
            // An 8-digit scratch code imported from google-authenticator splits the field
            // elsewhere than a 6-digit code: try that reading (one more hash, only for fields
            // that end in 8 digits) before calling the password wrong.
            let scratch = input::split_scratch_code(field, user.params.digits)
                .filter(|p| p.password.as_ref().is_some_and(|pw| password::verify(pw, stored)));
            match scratch {
                Some(other) => presented = other,
                None => {
                    return count_failure(
                        store,
                        config,
                        now,
                        &user,
                        field,
                        Refusal::WrongPassword,
                        decision,
                    )
                }
            }
        }
    }

    // The decisive part: re-read the user under the write lock, check and record at once.
    let tx = store.write()?;
    let Some(user) = users::get_by_id(&tx, user.id)? else {
        return Ok(Outcome::Refused(Refusal::UnknownUser));
    };
    if let Some(refusal) = barred(&user, now) {
        return Ok(Outcome::Refused(refusal));
    }
    let code = presented.code.expose();
    let check =
        check_totp(user.key.as_bytes(), code, now, &user.params, config.otp.window, user.last_step);
    let outcome = match check {
        TotpCheck::Fresh(step) => {
            if users::record_success(&tx, user.id, Some(step))? {
                Outcome::Accepted
            } else {
                Outcome::Refused(Refusal::Replay)
            }
        }
        TotpCheck::Replayed(_) => Outcome::Refused(Refusal::Replay),
        TotpCheck::Wrong => {
            if recovery::consume(&tx, user.id, &normalise_recovery_code(code), now)? {
                users::record_success(&tx, user.id, None)?;
                decision.note = Some("recovery-code");
                Outcome::Accepted
            } else {
                let tag = attempt_tag(&user, now, field);
                let lock = lockout::register_failure(&user.lock, now, &config.lockout, tag);
                users::save_lock_state(&tx, user.id, &lock)?;
                Outcome::Refused(Refusal::WrongCode)
            }
        }
    };
    if outcome == Outcome::Accepted {
        if let Some(session_id) = req.session_id.filter(|s| !s.is_empty() && s.len() <= 128) {
            sessions::bind(&tx, session_id, user.id, now)?;
        }
        sessions::prune(&tx, now, config.session.max_age_secs.saturating_mul(2))?;
    }
    commit_decision(tx, decision, outcome, now)
}

/// Why an account may not log in at all right now, whatever it presents.
fn barred(user: &User, now: u64) -> Option<Refusal> {
    if user.state == UserState::Disabled {
        Some(Refusal::Disabled)
    } else if lockout::is_locked(&user.lock, now) {
        Some(Refusal::LockedOut)
    } else {
        None
    }
}

/// Records a failure that happened before the code was looked at (bad input, wrong password).
fn count_failure(
    store: &mut Store,
    config: &Config,
    now: u64,
    user: &User,
    field: &str,
    refusal: Refusal,
    decision: &mut Decision,
) -> Result<Outcome, StoreError> {
    let tx = store.write()?;
    if let Some(current) = users::get_by_id(&tx, user.id)? {
        let tag = attempt_tag(&current, now, field);
        let lock = lockout::register_failure(&current.lock, now, &config.lockout, tag);
        users::save_lock_state(&tx, user.id, &lock)?;
    }
    commit_decision(tx, decision, Outcome::Refused(refusal), now)
}

/// Identifies an attempt without storing what was sent: a digest keyed with the user's
/// secret, over the current step and the whole password field.
fn attempt_tag(user: &User, now: u64, field: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(user.key.as_bytes());
    h.update(user.params.step_at(now).to_be_bytes());
    h.update(field.as_bytes());
    h.finalize()[..16].to_vec()
}

/// Recovery codes are compared lower-case without spaces, the dash kept in its place.
pub fn normalise_recovery_code(code: &str) -> String {
    code.chars().filter(|c| !c.is_whitespace()).map(|c| c.to_ascii_lowercase()).collect()
}

/// Makes `count` new recovery codes in the `abcde-fgh23` form (50 random bits each).
pub fn generate_recovery_codes(count: usize) -> Vec<String> {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut rng = rand::rngs::OsRng;
    (0..count)
        .map(|_| {
            let mut code = String::with_capacity(input::RECOVERY_CODE_LEN);
            for i in 0..10 {
                if i == 5 {
                    code.push('-');
                }
                code.push(ALPHABET[rng.gen_range(0..32)] as char);
            }
            code
        })
        .collect()
}

#[cfg(test)]
mod tests;
