//! `init`, `check` and `audit`.

use super::{time_text, Context, JsonFlag};
use crate::auth::{authenticate, AuthRequest, SessionState};
use crate::cli::output::outln;
use crate::config::Config;
use crate::secret::Sensitive;
use crate::store::{audit, AuditEntry, Found, Store};
use anyhow::{Context as _, Result};
use clap::Args;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Issuer name shown in authenticator apps (written to the new config file).
    #[arg(long)]
    pub issuer: Option<String>,
}

pub fn init(ctx: &Context, args: &InitArgs) -> Result<i32> {
    let paths = &ctx.paths;
    // A store that is damaged or not ours is refused before anything is written: "Kept the
    // store" would hide that every login is about to fail.
    let store_path = paths.store();
    let found = Store::survey(&store_path).map_err(|problem| {
        anyhow::anyhow!(
            "cannot open the store {}: {problem}; nothing was changed: restore it from a \
             backup, or move it aside and run `ovpn-mfa init` again to start a new store",
            store_path.display()
        )
    })?;
    // The data directory holds the secrets (0700). The configuration holds none and must stay
    // readable by the verifier after OpenVPN drops privileges, so its own directory is 0755.
    let config_dir = paths.config_file.parent().filter(|d| *d != paths.data_dir);
    for (dir, mode) in [(config_dir, 0o755), (Some(paths.data_dir.as_path()), 0o700)] {
        let Some(dir) = dir else { continue };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }

    if paths.config_file.exists() {
        Config::load(&paths.config_file)?;
        eprintln!("Kept the existing configuration {}", paths.config_file.display());
    } else {
        let mut text = Config::default_file_text();
        if let Some(issuer) = &args.issuer {
            let mut config = Config::default();
            config.otp.issuer = issuer.clone();
            config.validate().map_err(anyhow::Error::msg)?;
            let quoted = toml::Value::String(issuer.clone()).to_string();
            text = text.replacen("issuer = \"OpenVPN\"", &format!("issuer = {quoted}"), 1);
        }
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&paths.config_file)
            .with_context(|| format!("cannot create {}", paths.config_file.display()))?;
        file.write_all(text.as_bytes())?;
        eprintln!("Wrote the configuration {}", paths.config_file.display());
    }

    let store = Store::create(&store_path)?;
    let now = crate::unix_now();
    if found != Found::Store {
        audit::append(store.conn(), &AuditEntry::admin(now, "init", None))?;
    }
    let shown = store_path.display();
    match found {
        Found::Missing => eprintln!("Created the store {shown}"),
        Found::Empty => eprintln!("Started a new store in the empty file {shown}"),
        Found::Store => eprintln!("Kept the store {shown}"),
    }
    eprintln!("Next: `ovpn-mfa user add NAME` to enrol a user.");
    Ok(0)
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The user name.
    pub name: String,
    /// The code from the authenticator app (or a recovery code). With a password, give
    /// PASSWORD+CODE in one string, or use --password-stdin.
    pub code: String,
    /// Read the user's password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub json: JsonFlag,
}

pub fn check(ctx: &Context, args: &CheckArgs) -> Result<i32> {
    let (config, mut store) = ctx.config_and_store()?;
    let field = if args.password_stdin {
        let password = super::read_stdin_line("the password")?;
        Sensitive::new(format!("{password}{}", args.code))
    } else {
        Sensitive::new(args.code.as_str())
    };
    let request = AuthRequest {
        username: &args.name,
        password: &field,
        session_state: SessionState::NoToken,
        session_id: None,
        source: Some("cli"),
        common_name: None,
    };
    let decision = authenticate(&mut store, &config, crate::unix_now(), &request);
    tracing::debug!("{decision}");
    if args.json.json {
        let value = serde_json::json!({
            "user": decision.user,
            "decision": decision.decision_word(),
            "reason": decision.reason(),
        });
        outln!("{value}")?;
    }
    match decision.outcome {
        crate::auth::Outcome::Accepted => {
            if !args.json.json {
                outln!("accepted")?;
            }
            Ok(0)
        }
        crate::auth::Outcome::Refused(_) => {
            eprintln!("refused: {}", decision.reason());
            Ok(1)
        }
        crate::auth::Outcome::Failed(ref e) => anyhow::bail!("{e}"),
    }
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Only entries about this user.
    #[arg(long)]
    pub user: Option<String>,
    /// How many of the newest entries to show.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    #[command(flatten)]
    pub json: JsonFlag,
}

pub fn audit(ctx: &Context, args: &AuditArgs) -> Result<i32> {
    let store = ctx.store()?;
    let user = match &args.user {
        Some(name) => Some(crate::username::Username::parse(name)?.to_string()),
        None => None,
    };
    let rows = audit::recent(store.conn(), user.as_deref(), args.limit)?;
    if args.json.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(0);
    }
    for row in rows {
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        outln!(
            "{} {} {} user={} source={} method={} session_state={} reason={}",
            time_text(row.at),
            row.kind.as_str(),
            row.decision,
            dash(&row.user),
            dash(&row.source),
            dash(&row.method),
            dash(&row.session_state),
            dash(&row.reason),
        )?;
    }
    Ok(0)
}
