//! The command line: definitions (which become `--help`) and one function per command.
//! `main.rs` parses, calls [`run`], and renders any error.

mod admin;
pub mod output;
mod user;

use crate::config::{Config, Paths};
use crate::store::{Store, DEFAULT_BUSY_TIMEOUT};
use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "ovpn-mfa", version, about = "TOTP multi-factor authentication for OpenVPN")]
pub struct Cli {
    /// Keep the configuration and the store under DIR instead of /etc/ovpn-mfa and
    /// /var/lib/ovpn-mfa.
    #[arg(long, global = true, env = "OVPN_MFA_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// More detail on stderr (-v debug, -vv trace). Secrets are never logged at any level.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the configuration file (with documented defaults) and the store.
    Init(admin::InitArgs),
    /// Enrol and manage users.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Verify a code the way the server will (a valid code is used up).
    /// Exit 0 accepted, 1 refused.
    Check(admin::CheckArgs),
    /// Show the audit log of logins and admin actions.
    Audit(admin::AuditArgs),
    /// The OpenVPN side: the verifier and configuration lines.
    #[command(subcommand)]
    Openvpn(OpenvpnCommand),
    /// Set up a road-warrior OpenVPN server with MFA, or add MFA to an existing one.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Import users from another OTP system, keeping their phone entries.
    #[command(subcommand)]
    Import(crate::import::ImportCommand),
    /// Check the OpenVPN server and ovpn-mfa setup and say how to fix what is wrong.
    #[command(long_about = crate::doctor::LONG_HELP)]
    Doctor(crate::doctor::DoctorArgs),
    /// The verifier OpenVPN runs through `auth-user-pass-verify ... via-file` (or via-env).
    /// Exit 0 accepts, 1 refuses, 2 defers the answer to a background worker.
    Verify(crate::openvpn::verify::VerifyArgs),
    /// Internal: the background half of a deferred `verify`.
    #[command(hide = true)]
    VerifyWorker,
}

#[derive(Subcommand, Debug)]
pub enum OpenvpnCommand {
    /// Print the lines an existing OpenVPN server config needs for ovpn-mfa.
    ServerConfig(crate::openvpn::snippets::ServerConfigArgs),
    /// Print the client-side lines for a user.
    ClientConfig(crate::openvpn::snippets::ClientConfigArgs),
}

#[derive(Subcommand, Debug)]
pub enum ServerCommand {
    /// Create the PKI, the server configuration (with MFA), forwarding and NAT, and start it.
    Init(crate::setup::server::InitArgs),
    /// Add MFA to an existing server configuration (backed up first; idempotent).
    Adopt(crate::setup::adopt::AdoptArgs),
}

#[derive(Args, Debug, Clone, Copy)]
pub struct JsonFlag {
    /// Machine-readable JSON output.
    #[arg(long)]
    pub json: bool,
}

/// What every command needs: where things are, the configuration, and the store.
pub struct Context {
    pub paths: Paths,
    /// The `--dir` given, if any, to hand on to child processes.
    pub dir: Option<PathBuf>,
}

impl Context {
    pub fn config(&self) -> Result<Config> {
        Ok(Config::load(&self.paths.config_file)?)
    }

    pub fn store(&self) -> Result<Store> {
        Ok(Store::open(&self.paths.store(), DEFAULT_BUSY_TIMEOUT)?)
    }

    pub fn config_and_store(&self) -> Result<(Config, Store)> {
        Ok((self.config()?, self.store()?))
    }
}

pub fn run(cli: Cli) -> Result<i32> {
    // Paths end up in OpenVPN's configuration, which resolves them from its own directory.
    let dir = cli.dir.as_deref().map(std::path::absolute).transpose()?;
    let ctx = Context { paths: Paths::new(dir.as_deref()), dir };
    let code = match cli.command {
        Command::Init(args) => admin::init(&ctx, &args),
        Command::User(cmd) => user::run(&ctx, cmd),
        Command::Check(args) => admin::check(&ctx, &args),
        Command::Audit(args) => admin::audit(&ctx, &args),
        Command::Openvpn(OpenvpnCommand::ServerConfig(args)) => {
            crate::openvpn::snippets::server_config(&ctx, &args)
        }
        Command::Openvpn(OpenvpnCommand::ClientConfig(args)) => {
            crate::openvpn::snippets::client_config(&ctx, &args)
        }
        Command::Server(ServerCommand::Init(args)) => crate::setup::server::init(&ctx, &args),
        Command::Server(ServerCommand::Adopt(args)) => crate::setup::adopt::adopt(&ctx, &args),
        Command::Import(cmd) => crate::import::run(&ctx, cmd),
        Command::Doctor(args) => crate::doctor::run(&ctx, &args),
        Command::Verify(args) => Ok(crate::openvpn::verify::run(&ctx, &args)),
        Command::VerifyWorker => Ok(crate::openvpn::verify::run_worker(&ctx)),
    }?;
    output::flush()?;
    Ok(code)
}

/// `init` with default options, for commands that set up the store as one of their steps.
pub fn admin_init(ctx: &Context) -> Result<i32> {
    admin::init(ctx, &admin::InitArgs { issuer: None })
}

/// Reads one line (a password) from standard input, without the line ending.
pub fn read_stdin_line(what: &str) -> Result<String> {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).with_context(|| format!("cannot read {what}"))?;
    let line = line.trim_end_matches(['\n', '\r']).to_owned();
    anyhow::ensure!(!line.is_empty(), "{what} on standard input is empty");
    Ok(line)
}

/// Asks for confirmation on a terminal; without one, `--yes` is required.
pub fn confirm(question: &str, yes: bool) -> Result<()> {
    use std::io::{IsTerminal, Write};
    if yes {
        return Ok(());
    }
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "{question} Pass --yes to confirm when not running on a terminal"
    );
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    anyhow::ensure!(matches!(answer.trim(), "y" | "Y" | "yes"), "not confirmed, nothing changed");
    Ok(())
}

/// RFC 3339 time in UTC for human and JSON output.
pub fn time_text(unix: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
    humantime::format_rfc3339_seconds(t).to_string()
}
