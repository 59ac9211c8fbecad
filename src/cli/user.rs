//! `user ...`: enrolment and account management.

use super::output::{self, outln};
use super::{confirm, read_stdin_line, time_text, Context, JsonFlag};
use crate::auth::{generate_recovery_codes, lockout, password};
use crate::config::Config;
use crate::otp::{otpauth_uri, OtpKey, TotpParams};
use crate::secret::Sensitive;
use crate::setup::pki::Pki;
use crate::setup::{profile, ServerState};
use crate::store::users::{self, ClientMethod, NewUser, User, UserState};
use crate::store::{audit, recovery, sessions, AuditEntry};
use crate::username::Username;
use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Enrol a user: prints the QR code to scan, the otpauth URI and the secret, once.
    Add(AddArgs),
    /// List users.
    List(JsonFlag),
    /// Show one user (never the secret).
    Show(NameArgs),
    /// Refuse the user's logins, including renegotiations of live sessions.
    Disable(NameArgs),
    /// Allow a disabled user to log in again.
    Enable(NameArgs),
    /// Delete the user, their secret, recovery codes and sessions.
    Remove(ConfirmArgs),
    /// Give the user a new OTP secret; the old one stops working at once.
    ResetOtp(ResetArgs),
    /// Clear failure counters and any lockout.
    Unlock(NameArgs),
    /// Make 8 new single-use recovery codes (shown once); earlier ones are revoked.
    RecoveryCodes(ConfirmArgs),
    /// Set or clear the user's password (the optional third factor).
    SetPassword(SetPasswordArgs),
    /// Issue a new client certificate and profile (NAME.ovpn); the old certificate is revoked.
    Profile(NameArgs),
}

#[derive(Args, Debug)]
pub struct NameArgs {
    pub name: String,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Args, Debug)]
pub struct ConfirmArgs {
    pub name: String,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Args, Debug)]
pub struct QrArgs {
    /// Write the QR code to this PNG file (created 0600) instead of the terminal.
    #[arg(long, value_name = "FILE")]
    pub qr_png: Option<PathBuf>,
    /// Write the QR code to this SVG file (created 0600) instead of the terminal.
    #[arg(long, value_name = "FILE")]
    pub qr_svg: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct AddArgs {
    pub name: String,
    /// Read a password for the user from standard input (then the user signs in with
    /// certificate, password and code).
    #[arg(long)]
    pub password_stdin: bool,
    /// Issuer shown in the authenticator app (default: otp.issuer from the config).
    #[arg(long)]
    pub issuer: Option<String>,
    /// How the user's client will send the code (default: scrv1 with a password, else otp).
    #[arg(long, value_enum)]
    pub method: Option<ClientMethod>,
    /// Import an existing base32 secret instead of generating one.
    #[arg(long, value_name = "BASE32")]
    pub secret: Option<String>,
    #[command(flatten)]
    pub qr: QrArgs,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Args, Debug)]
pub struct ResetArgs {
    pub name: String,
    #[arg(long)]
    pub issuer: Option<String>,
    #[arg(long, short)]
    pub yes: bool,
    #[command(flatten)]
    pub qr: QrArgs,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Args, Debug)]
pub struct SetPasswordArgs {
    pub name: String,
    /// Read the new password from standard input.
    #[arg(long, conflicts_with = "clear", required_unless_present = "clear")]
    pub password_stdin: bool,
    /// Remove the password: the user signs in with certificate and code only.
    #[arg(long)]
    pub clear: bool,
}

pub fn run(ctx: &Context, command: UserCommand) -> Result<i32> {
    match command {
        UserCommand::Add(args) => add(ctx, &args),
        UserCommand::List(json) => list(ctx, json),
        UserCommand::Show(args) => show(ctx, &args),
        UserCommand::Disable(args) => set_state(ctx, &args, UserState::Disabled),
        UserCommand::Enable(args) => set_state(ctx, &args, UserState::Enabled),
        UserCommand::Remove(args) => remove(ctx, &args),
        UserCommand::ResetOtp(args) => reset_otp(ctx, &args),
        UserCommand::Unlock(args) => unlock(ctx, &args),
        UserCommand::RecoveryCodes(args) => recovery_codes(ctx, &args),
        UserCommand::SetPassword(args) => set_password(ctx, &args),
        UserCommand::Profile(args) => profile_command(ctx, &args),
    }
}

fn add(ctx: &Context, args: &AddArgs) -> Result<i32> {
    let name = Username::parse(&args.name)?;
    let config = ctx.config()?;
    let issuer = issuer(&config, args.issuer.as_deref())?;
    let key = match &args.secret {
        Some(text) => OtpKey::from_base32(text)?,
        None => OtpKey::generate(),
    };
    let params = config.totp_params();
    let hash = if args.password_stdin {
        let password = new_password()?;
        Some(password::hash(&password, &config.password).map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    let method =
        args.method.unwrap_or(if hash.is_some() { ClientMethod::Scrv1 } else { ClientMethod::Otp });
    if method == ClientMethod::Concat || method == ClientMethod::Scrv1 {
        anyhow::ensure!(hash.is_some(), "--method {method} needs a password (--password-stdin)");
    }

    let mut store = ctx.store()?;
    let uri = otpauth_uri(&issuer, name.as_str(), &key, &params);
    let written = write_qr_files(&uri, &args.qr)?;
    let now = crate::unix_now();
    let new = NewUser {
        name: &name,
        key: &key,
        params,
        password_hash: hash.as_deref(),
        client_method: method,
    };
    // With a server set up by `server init`, the user also gets a certificate and profile.
    // The secret is shown even if that fails, so the enrolment is never lost.
    let (server, server_error) = match ServerState::load(&ctx.paths.data_dir) {
        Ok(server) => (server, None),
        Err(e) => (None, Some(e)),
    };
    let mut profile = None;
    // The secret is shown before the user is committed: if it cannot be (a full disk, a
    // closed pipe), nothing is stored and no secret nobody saw is left working.
    let stored = (|| -> Result<()> {
        let tx = store.write()?;
        users::insert(&tx, &new, now)?;
        audit::append(&tx, &AuditEntry::admin(now, "user-add", Some(name.as_str())))?;
        profile = server.as_ref().map(|state| profile::issue(state, name.as_str(), method));
        let profile_path = profile.as_ref().and_then(|p| p.as_ref().ok()).cloned();
        show_before_commit(
            || {
                show_enrolment(
                    &name,
                    &issuer,
                    &key,
                    &params,
                    &args.qr,
                    args.json.json,
                    profile_path,
                )
            },
            format!("{name} was not added (nothing stored): the secret could not be shown"),
        )?;
        tx.commit().with_context(|| {
            format!("{name} was not added: the store did not save them, so the secret shown does not work")
        })?;
        Ok(())
    })();
    if let Err(e) = stored {
        remove_files(&written);
        if let (Some(state), Some(Ok(path))) = (&server, &profile) {
            withdraw_profile(state, &name, path);
        }
        return Err(e);
    }
    if let Some(e) = server_error.or(profile.and_then(Result::err)) {
        return Err(e.context(format!(
            "{name} was enrolled, but their profile could not be written; retry with \
             `ovpn-mfa user profile {name}`"
        )));
    }
    Ok(0)
}

/// Runs `show`, which shows a secret once, and flushes it out, so the caller commits only
/// what was shown. `undone` says what the failure left unchanged.
fn show_before_commit(show: impl FnOnce() -> Result<()>, undone: String) -> Result<()> {
    show().and_then(|()| Ok(output::flush()?)).context(undone)
}

/// Takes back the profile issued to a user whose enrolment was then not stored: the file
/// goes, and the certificate in it is revoked.
fn withdraw_profile(state: &ServerState, name: &Username, path: &std::path::Path) {
    let _ = std::fs::remove_file(path);
    let revoked = Pki::load(&state.pki_dir).and_then(|mut pki| pki.revoke(name.as_str()));
    if let Err(e) = revoked {
        eprintln!("warning: could not revoke the certificate just issued to {name}: {e:#}");
    }
}

/// Reads a new password from stdin. At least 8 characters: the field then always holds more
/// than a bare 6- or 8-digit code, so the verifier can tell from the field alone that hashing is
/// needed and defer it off OpenVPN's thread. At most 512: OpenVPN cannot carry more.
fn new_password() -> Result<Sensitive> {
    let password = Sensitive::from(read_stdin_line("the password")?);
    let length = password.expose().chars().count();
    anyhow::ensure!(
        (8..=512).contains(&length),
        "the password must be 8 to 512 characters long (it is {length})"
    );
    Ok(password)
}

fn issuer(config: &Config, flag: Option<&str>) -> Result<String> {
    let issuer = flag.unwrap_or(&config.otp.issuer).to_owned();
    anyhow::ensure!(
        !issuer.is_empty() && !issuer.contains(':') && issuer.len() <= 64,
        "the issuer must be 1 to 64 characters without ':'"
    );
    Ok(issuer)
}

/// The one place a secret is ever shown: right after `user add` or `user reset-otp`.
fn show_enrolment(
    name: &Username,
    issuer: &str,
    key: &OtpKey,
    params: &TotpParams,
    qr: &QrArgs,
    json: bool,
    profile: Option<PathBuf>,
) -> Result<()> {
    let uri = otpauth_uri(issuer, name.as_str(), key, params);
    let secret = key.to_base32();
    if json {
        let mut value = json!({
            "user": name.as_str(),
            "issuer": issuer,
            "otpauth_uri": uri,
            "secret": secret,
            "algorithm": params.algorithm.as_str(),
            "digits": params.digits,
            "period": params.period,
        });
        if let Some(path) = &profile {
            value["profile"] = json!(path);
        }
        outln!("{value}")?;
        return Ok(());
    }
    if qr.qr_png.is_none() && qr.qr_svg.is_none() {
        outln!("Scan this QR code with an authenticator app:\n")?;
        outln!("{}", crate::qr::terminal(&uri).map_err(anyhow::Error::msg)?)?;
    } else {
        for path in [&qr.qr_png, &qr.qr_svg].into_iter().flatten() {
            outln!("QR code written to {}", path.display())?;
        }
    }
    outln!("User:   {name}")?;
    outln!("Secret: {secret}")?;
    outln!("URI:    {uri}")?;
    if let Some(path) = &profile {
        outln!("Profile: {} (certificate and keys inside: send it privately)", path.display())?;
    }
    outln!("\nThe secret is shown only this once. Keep it out of tickets and chat.")?;
    Ok(())
}

/// Writes the QR code files before anything is stored: a path that cannot be written must
/// not leave behind a user (or a new secret) that nobody was shown. On failure, the files
/// already written are removed.
fn write_qr_files(uri: &str, qr: &QrArgs) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (path, bytes) in [
        (&qr.qr_png, qr.qr_png.as_ref().map(|_| crate::qr::png(uri, 8))),
        (&qr.qr_svg, qr.qr_svg.as_ref().map(|_| crate::qr::svg(uri).map(String::into_bytes))),
    ] {
        if let (Some(path), Some(bytes)) = (path, bytes) {
            let result = bytes.map_err(anyhow::Error::msg).and_then(|bytes| {
                crate::qr::write_private(path, &bytes)
                    .with_context(|| format!("cannot write the QR code to {}", path.display()))
            });
            if let Err(e) = result {
                remove_files(&written);
                return Err(e);
            }
            written.push(path.clone());
        }
    }
    Ok(written)
}

fn remove_files(paths: &[PathBuf]) {
    for path in paths {
        let _ = std::fs::remove_file(path);
    }
}

fn user_json(user: &User, recovery_left: u32, now: u64) -> serde_json::Value {
    json!({
        "user": user.name,
        "state": user.state,
        "method": user.client_method,
        "password": user.password_hash.is_some(),
        "algorithm": user.params.algorithm.as_str(),
        "digits": user.params.digits,
        "period": user.params.period,
        "last_login": user.last_step.map(|s| time_text(s * user.params.period)),
        "failures": user.lock.fail_count,
        "locked_until": lockout::is_locked(&user.lock, now).then(|| time_text(user.lock.locked_until)),
        "recovery_codes_left": recovery_left,
        "created": time_text(user.created_at),
        "updated": time_text(user.updated_at),
    })
}

fn list(ctx: &Context, json: JsonFlag) -> Result<i32> {
    let store = ctx.store()?;
    let now = crate::unix_now();
    let all = users::list(store.conn())?;
    if json.json {
        let values: Vec<_> = all
            .iter()
            .map(|u| Ok(user_json(u, recovery::remaining(store.conn(), u.id)?, now)))
            .collect::<Result<_>>()?;
        outln!("{}", serde_json::to_string_pretty(&values)?)?;
        return Ok(0);
    }
    if all.is_empty() {
        eprintln!("No users yet. Add one with `ovpn-mfa user add NAME`.");
    }
    for user in all {
        let locked = if lockout::is_locked(&user.lock, now) { " locked" } else { "" };
        outln!(
            "{:<24} {}{} method={}",
            user.name,
            user.state.as_str(),
            locked,
            user.client_method
        )?;
    }
    Ok(0)
}

fn show(ctx: &Context, args: &NameArgs) -> Result<i32> {
    let name = Username::parse(&args.name)?;
    let store = ctx.store()?;
    let user = users::require(store.conn(), &name)?;
    let value = user_json(&user, recovery::remaining(store.conn(), user.id)?, crate::unix_now());
    if args.json.json {
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(0);
    }
    for (field, v) in value.as_object().into_iter().flatten() {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "-".into(),
            other => other.to_string(),
        };
        outln!("{field:<20} {text}")?;
    }
    Ok(0)
}

fn set_state(ctx: &Context, args: &NameArgs, state: UserState) -> Result<i32> {
    let name = Username::parse(&args.name)?;
    let mut store = ctx.store()?;
    let now = crate::unix_now();
    let tx = store.write()?;
    users::set_state(&tx, &name, state, now)?;
    let action = if state == UserState::Disabled { "user-disable" } else { "user-enable" };
    audit::append(&tx, &AuditEntry::admin(now, action, Some(name.as_str())))?;
    tx.commit()?;
    report(args.json.json, &name, state.as_str())?;
    if state == UserState::Disabled && !args.json.json {
        eprintln!("Live sessions of {name} are refused at their next renegotiation.");
    }
    Ok(0)
}

fn remove(ctx: &Context, args: &ConfirmArgs) -> Result<i32> {
    let name = Username::parse(&args.name)?;
    let mut store = ctx.store()?;
    users::require(store.conn(), &name)?;
    confirm(&format!("Remove {name} and their OTP secret?"), args.yes)?;

    // The certificate goes into the CRL, which OpenVPN checks at every connection and
    // renegotiation, before the user is deleted: if revoking fails, nothing is deleted and
    // running the command again retries both.
    let not_revoked = |e: anyhow::Error| {
        e.context(format!(
            "{name} was not removed (nothing changed) because their certificate could not be \
             revoked; fix this and run `ovpn-mfa user remove {name}` again"
        ))
    };
    let server = ServerState::load(&ctx.paths.data_dir).map_err(not_revoked)?;
    if let Some(state) = &server {
        let revoked = Pki::load(&state.pki_dir)
            .and_then(|mut pki| pki.revoke(name.as_str()))
            .map_err(not_revoked)?;
        if revoked {
            eprintln!("Revoked the certificate of {name}.");
        }
    }

    let now = crate::unix_now();
    let tx = store.write()?;
    users::remove(&tx, &name)?;
    audit::append(&tx, &AuditEntry::admin(now, "user-remove", Some(name.as_str())))?;
    tx.commit()?;

    // Live sessions are ended now through the management socket.
    if let Some(state) = &server {
        let _ = std::fs::remove_file(state.profiles_dir.join(format!("{name}.ovpn")));
        match crate::setup::kill_sessions(&state.management_socket, name.as_str()) {
            Ok(Some(n)) => eprintln!("Ended {n} live session(s) of {name}."),
            Ok(None) => eprintln!("OpenVPN is not running; nothing to disconnect."),
            Err(e) => eprintln!("warning: could not disconnect live sessions: {e:#}"),
        }
    }
    report(args.json.json, &name, "removed")?;
    Ok(0)
}

fn profile_command(ctx: &Context, args: &NameArgs) -> Result<i32> {
    let name = Username::parse(&args.name)?;
    let state = ServerState::load(&ctx.paths.data_dir)?
        .context("no server here: run `ovpn-mfa server init` first")?;
    let store = ctx.store()?;
    let user = users::require(store.conn(), &name)?;
    let path = profile::issue(&state, name.as_str(), user.client_method)?;
    let now = crate::unix_now();
    audit::append(store.conn(), &AuditEntry::admin(now, "user-profile", Some(name.as_str())))?;
    if args.json.json {
        outln!("{}", json!({ "user": name.as_str(), "profile": path }))?;
    } else {
        outln!("Wrote {} (a new certificate; the previous one is revoked)", path.display())?;
    }
    Ok(0)
}

fn reset_otp(ctx: &Context, args: &ResetArgs) -> Result<i32> {
    let name = Username::parse(&args.name)?;
    let config = ctx.config()?;
    let issuer = issuer(&config, args.issuer.as_deref())?;
    let mut store = ctx.store()?;
    let user = users::require(store.conn(), &name)?;
    confirm(
        &format!("Replace the OTP secret of {name}? Their app entry stops working."),
        args.yes,
    )?;
    let key = OtpKey::generate();
    let params = config.totp_params();
    let uri = otpauth_uri(&issuer, name.as_str(), &key, &params);
    let written = write_qr_files(&uri, &args.qr)?;
    let now = crate::unix_now();
    let stored = (|| -> Result<()> {
        let tx = store.write()?;
        users::replace_secret(&tx, &name, &key, &params, now)?;
        sessions::end_all_for_user(&tx, user.id)?;
        audit::append(&tx, &AuditEntry::admin(now, "user-reset-otp", Some(name.as_str())))?;
        show_before_commit(
            || show_enrolment(&name, &issuer, &key, &params, &args.qr, args.json.json, None),
            format!(
                "the OTP secret of {name} was not changed (the old one still works): the new \
                 one could not be shown"
            ),
        )?;
        tx.commit().with_context(|| {
            format!("the OTP secret of {name} was not changed: the store did not save the new one")
        })?;
        Ok(())
    })();
    if let Err(e) = stored {
        remove_files(&written);
        return Err(e);
    }
    Ok(0)
}

fn unlock(ctx: &Context, args: &NameArgs) -> Result<i32> {
    let name = Username::parse(&args.name)?;
    let mut store = ctx.store()?;
    let now = crate::unix_now();
    let tx = store.write()?;
    users::unlock(&tx, &name, now)?;
    audit::append(&tx, &AuditEntry::admin(now, "user-unlock", Some(name.as_str())))?;
    tx.commit()?;
    report(args.json.json, &name, "unlocked")?;
    Ok(0)
}

fn recovery_codes(ctx: &Context, args: &ConfirmArgs) -> Result<i32> {
    let name = Username::parse(&args.name)?;
    let mut store = ctx.store()?;
    let user = users::require(store.conn(), &name)?;
    if recovery::remaining(store.conn(), user.id)? > 0 {
        confirm(&format!("Revoke the recovery codes {name} has and make new ones?"), args.yes)?;
    }
    let codes = generate_recovery_codes(8);
    let now = crate::unix_now();
    let tx = store.write()?;
    recovery::replace(&tx, user.id, &codes)?;
    audit::append(&tx, &AuditEntry::admin(now, "user-recovery-codes", Some(name.as_str())))?;
    let show = || -> Result<()> {
        if args.json.json {
            outln!("{}", json!({ "user": name.as_str(), "recovery_codes": codes }))?;
        } else {
            outln!("Recovery codes for {name}, each usable once in place of a code:\n")?;
            for code in &codes {
                outln!("  {code}")?;
            }
            outln!("\nThey are shown only this once; earlier codes no longer work.")?;
        }
        Ok(())
    };
    show_before_commit(
        show,
        format!(
            "the recovery codes of {name} were not changed (the earlier ones still work): the \
             new ones could not be shown"
        ),
    )?;
    tx.commit().with_context(|| {
        format!(
            "the recovery codes of {name} were not changed: the store did not save the new ones"
        )
    })?;
    Ok(0)
}

fn set_password(ctx: &Context, args: &SetPasswordArgs) -> Result<i32> {
    let name = Username::parse(&args.name)?;
    let config = ctx.config()?;
    let hash = if args.clear {
        None
    } else {
        let password = new_password()?;
        Some(password::hash(&password, &config.password).map_err(anyhow::Error::msg)?)
    };
    let mut store = ctx.store()?;
    let now = crate::unix_now();
    let tx = store.write()?;
    users::set_password_hash(&tx, &name, hash.as_deref(), now)?;
    let action = if args.clear { "user-clear-password" } else { "user-set-password" };
    audit::append(&tx, &AuditEntry::admin(now, action, Some(name.as_str())))?;
    tx.commit()?;
    report(false, &name, if args.clear { "password cleared" } else { "password set" })?;
    Ok(0)
}

fn report(json: bool, name: &Username, what: &str) -> Result<()> {
    if json {
        outln!("{}", json!({ "user": name.as_str(), "result": what }))?;
    } else {
        outln!("{name}: {what}")?;
    }
    Ok(())
}
