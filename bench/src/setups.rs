//! The server configurations under comparison, and what each needs before a storm: its
//! server lines, its users, and the password field each client sends.
//!
//! Every storm gets fresh state (a new ovpn-mfa store or new google-authenticator files)
//! with new secrets, so replay protection never refuses a benchmark login and every run
//! starts from the same place.

use crate::pam::{self, PamService};
use anyhow::{bail, Context, Result};
use ovpn_mfa::config::Config;
use ovpn_mfa::otp::{self, OtpKey};
use ovpn_mfa::store::{users, ClientMethod, NewUser, Store};
use ovpn_mfa::username::Username;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Setup {
    /// Certificates only, no user authentication.
    Floor,
    /// auth-pam plugin + google-authenticator, synchronous (the common setup).
    PamSync,
    /// The same with `setenv deferred_auth_pam 1`.
    PamDeferred,
    /// `ovpn-mfa verify` script, code only (answered synchronously).
    ScriptOtp,
    /// `ovpn-mfa verify` script, password + code (argon2id, deferred to a worker).
    ScriptPassword,
    /// A plugin that accepts everyone at once: the floor for plugins.
    NoopPlugin,
    /// The ovpn-mfa plugin (plugin/), code only.
    PluginOtp,
    /// The ovpn-mfa plugin, password + code (argon2id on its worker threads).
    PluginPassword,
}

pub const ALL: [Setup; 8] = [
    Setup::Floor,
    Setup::PamSync,
    Setup::PamDeferred,
    Setup::ScriptOtp,
    Setup::ScriptPassword,
    Setup::NoopPlugin,
    Setup::PluginOtp,
    Setup::PluginPassword,
];

impl Setup {
    pub fn name(self) -> &'static str {
        match self {
            Setup::Floor => "floor",
            Setup::PamSync => "pam-sync",
            Setup::PamDeferred => "pam-deferred",
            Setup::ScriptOtp => "script-otp",
            Setup::ScriptPassword => "script-password",
            Setup::NoopPlugin => "noop-plugin",
            Setup::PluginOtp => "plugin-otp",
            Setup::PluginPassword => "plugin-password",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Setup::Floor => "certificates only (floor)",
            Setup::PamSync => "auth-pam + google-authenticator, synchronous",
            Setup::PamDeferred => "auth-pam + google-authenticator, deferred_auth_pam",
            Setup::ScriptOtp => "ovpn-mfa verify script, code only",
            Setup::ScriptPassword => "ovpn-mfa verify script, password + code (argon2id)",
            Setup::NoopPlugin => "no-op plugin (plugin floor)",
            Setup::PluginOtp => "ovpn-mfa plugin, code only",
            Setup::PluginPassword => "ovpn-mfa plugin, password + code (argon2id, deferred)",
        }
    }

    pub fn uses_pam(self) -> bool {
        matches!(self, Setup::PamSync | Setup::PamDeferred)
    }

    /// Runs the ovpn-mfa plugin (so needs it built).
    pub fn uses_plugin(self) -> bool {
        matches!(self, Setup::PluginOtp | Setup::PluginPassword)
    }
}

/// What the setups need from outside: binaries, the PAM service, a ready password hash.
pub struct Tools {
    pub ovpn_mfa: PathBuf,
    pub plugin: PathBuf,
    pub noop_plugin: PathBuf,
    pub pam: Option<PamService>,
    /// Where the PAM service reads `<user>` secret files from.
    pub ga_dir: PathBuf,
    /// One argon2id hash at the configured cost, shared by every password user: checking
    /// it costs the same whatever the salt, and hashing thousands would only slow the bench.
    pub password_hash: String,
}

pub const PASSWORD: &str = "bench-Password";

pub struct Prepared {
    pub server_lines: Vec<String>,
    /// The password field each user's client sends, in the order of `users`.
    pub passwords: Vec<String>,
}

/// Prepares `setup` for `users`, with codes for the step after the current one: accepted
/// from now on for at least two steps (60 s), longer than any storm should take.
pub fn prepare(setup: Setup, tools: &Tools, work: &Path, users: &[String]) -> Result<Prepared> {
    let code_time = ovpn_mfa::unix_now() + 30;
    let keys: Vec<OtpKey> = users.iter().map(|_| OtpKey::generate()).collect();
    match setup {
        Setup::Floor => Ok(Prepared {
            server_lines: Vec::new(),
            passwords: users.iter().map(|_| "unused".to_owned()).collect(),
        }),
        Setup::NoopPlugin => Ok(Prepared {
            server_lines: vec![format!("plugin {}", tools.noop_plugin.display())],
            passwords: users.iter().map(|_| "unused".to_owned()).collect(),
        }),
        Setup::PamSync | Setup::PamDeferred => {
            let service = tools.pam.as_ref().context("the PAM service was not installed")?;
            recreate_dir(&tools.ga_dir)?;
            for (user, key) in users.iter().zip(&keys) {
                pam::write_secret_file(&tools.ga_dir.join(user), &key.to_base32())?;
            }
            let mut lines = vec![format!("plugin {} {}", pam::AUTH_PAM_PLUGIN, service.name)];
            if setup == Setup::PamDeferred {
                lines.push("setenv deferred_auth_pam 1".into());
            }
            let passwords = keys.iter().map(|k| pam::code(k.as_bytes(), code_time)).collect();
            Ok(Prepared { server_lines: lines, passwords })
        }
        Setup::ScriptOtp | Setup::ScriptPassword | Setup::PluginOtp | Setup::PluginPassword => {
            let with_password = matches!(setup, Setup::ScriptPassword | Setup::PluginPassword);
            let config = init_ovpn_mfa(&tools.ovpn_mfa, work)?;
            let hash = with_password.then_some(tools.password_hash.as_str());
            enrol(work, &config, users, &keys, hash)?;
            let params = config.totp_params();
            let passwords = keys
                .iter()
                .map(|k| {
                    let code = otp::totp(k.as_bytes(), code_time, &params);
                    if with_password {
                        format!("{PASSWORD}{code}")
                    } else {
                        code
                    }
                })
                .collect();
            let snippet = server_snippet(&tools.ovpn_mfa, work)?;
            let server_lines = if setup.uses_plugin() {
                let plugin = tools.plugin.display();
                let mut lines = vec![format!("plugin {plugin} \"{}\"", work.display())];
                lines.extend(snippet.into_iter().filter(|l| !is_script_line(l)));
                lines
            } else {
                snippet
            };
            Ok(Prepared { server_lines, passwords })
        }
    }
}

/// `ovpn-mfa --dir DIR init`, as an admin would run it; returns the config it wrote.
fn init_ovpn_mfa(binary: &Path, dir: &Path) -> Result<Config> {
    run(Command::new(binary).arg("--dir").arg(dir).arg("init"))?;
    Config::load(&dir.join(ovpn_mfa::config::CONFIG_FILE)).map_err(Into::into)
}

/// The lines `ovpn-mfa openvpn server-config` prints, without comments and without its
/// `data-ciphers` line: every configuration runs the lab's ciphers.
fn server_snippet(binary: &Path, dir: &Path) -> Result<Vec<String>> {
    let out = run(Command::new(binary)
        .arg("--dir")
        .arg(dir)
        .args(["openvpn", "server-config", "--binary"])
        .arg(binary))?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("data-ciphers"))
        .map(str::to_owned)
        .collect())
}

fn is_script_line(line: &str) -> bool {
    ["script-security", "auth-user-pass-verify", "tmp-dir"].iter().any(|k| line.starts_with(k))
}

/// Enrols `users` in one transaction, the rows `user add` writes.
fn enrol(
    dir: &Path,
    config: &Config,
    users: &[String],
    keys: &[OtpKey],
    password_hash: Option<&str>,
) -> Result<()> {
    let path = dir.join(ovpn_mfa::config::STORE_FILE);
    let mut store = Store::open(&path, Duration::from_secs(10))?;
    let now = ovpn_mfa::unix_now();
    let method = if password_hash.is_some() { ClientMethod::Concat } else { ClientMethod::Otp };
    let tx = store.write()?;
    for (user, key) in users.iter().zip(keys) {
        let name = Username::parse(user)?;
        let new = NewUser {
            name: &name,
            key,
            params: config.totp_params(),
            password_hash,
            client_method: method,
        };
        users::insert(&tx, &new, now)?;
    }
    tx.commit()?;
    Ok(())
}

/// Runs a command, failing with its stderr unless it succeeds; returns its stdout.
pub fn run(command: &mut Command) -> Result<String> {
    let out = command.output().with_context(|| format!("run {command:?}"))?;
    if !out.status.success() {
        bail!("{command:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn recreate_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))
}
