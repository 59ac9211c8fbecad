//! `ovpn-mfa doctor`: checks that the server around ovpn-mfa is set up so that MFA works and
//! stays safe, and says how to fix what is not.
//!
//! Every check gives one finding: ok, warn (works, but worth a look, or could not be told)
//! or fail (logins break or security suffers). Everything is read under `--root`, so tests
//! and image builds can check a planted tree; outside programs (`timedatectl`, `openvpn`)
//! are looked for in that tree too.

pub mod checks;
pub mod ovpn_conf;
pub mod system;

use crate::cli::output::outln;
use crate::cli::{Context, JsonFlag};
use crate::config::{Paths, CONFIG_FILE, DEFAULT_CONFIG_DIR, DEFAULT_DATA_DIR};
use anyhow::Result;
use checks::{MfaPaths, Server, Verifier};
use clap::Args;
use ovpn_conf::OvpnConf;
use serde::Serialize;
use std::path::{Path, PathBuf};
use system::{Identity, System};

/// The long `--help` of `doctor`.
pub const LONG_HELP: &str = "\
Check the OpenVPN server and ovpn-mfa setup and say how to fix what is wrong.

Checks: the clock is synchronised; OpenVPN is 2.6 or later; each server configuration runs \
ovpn-mfa (`auth-user-pass-verify ... ovpn-mfa ... verify` or the plugin), has auth-gen-token \
with external-auth and auth-gen-token-secret, no `reneg-sec 0`, and a token renewal of at \
least twice hand-window; the store and the auth-token secret are mode 0600; the store \
passes SQLite's quick_check and has every table of its schema; the user OpenVPN \
drops to (`user`) can use the store, its directory and the configuration; tmp-dir works under \
systemd's PrivateTmp; private keys are not readable by others; the CRL has not expired and is signed by the CA the \
configuration names (`ca`).

The store and configuration checked are those of the verifier's `--dir` (or `setenv \
OVPN_MFA_DIR`), else of --dir, else /etc/ovpn-mfa and /var/lib/ovpn-mfa. With --root, every \
system path, and every path in the configurations, is read under that directory, and programs \
(openvpn, timedatectl) are looked for there: a planted tree is checked without the host.

Output: one line per check, `ok`, `warn` or `FAIL`, with a `fix:` line under each problem \
(or a JSON array of {check, status, detail, fix, config} with --json). Exit 0 when nothing \
failed (warnings allowed), 1 otherwise.";

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Check this OpenVPN server configuration only (default: every *.conf in
    /// /etc/openvpn/server/, and the server configurations in /etc/openvpn/).
    #[arg(long, value_name = "FILE")]
    pub openvpn_config: Option<PathBuf>,
    /// Look at the system under DIR instead of / (paths in configurations are read under
    /// it too).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    #[command(flatten)]
    pub json: JsonFlag,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

/// One check's result.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do about it; `None` when all is well.
    pub fix: Option<String>,
    /// The OpenVPN configuration the finding is about, if it is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

impl Finding {
    pub fn ok(check: &'static str, detail: impl Into<String>) -> Self {
        Finding { check, status: Status::Ok, detail: detail.into(), fix: None, config: None }
    }

    pub fn warn(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding { status: Status::Warn, fix: Some(fix.into()), ..Finding::ok(check, detail) }
    }

    pub fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding { status: Status::Fail, fix: Some(fix.into()), ..Finding::ok(check, detail) }
    }
}

pub fn run(ctx: &Context, args: &DoctorArgs) -> Result<i32> {
    let findings = diagnose(ctx, args);
    if args.json.json {
        outln!("{}", serde_json::to_string_pretty(&findings)?)?;
    } else {
        for f in &findings {
            let about = f.config.as_deref().map(|c| format!("{c}: ")).unwrap_or_default();
            outln!("{:<4}  {}: {about}{}", f.status.label(), f.check, f.detail)?;
            if let Some(fix) = &f.fix {
                outln!("      fix: {fix}")?;
            }
        }
    }
    Ok(if findings.iter().any(|f| f.status == Status::Fail) { 1 } else { 0 })
}

/// Every finding, system-wide ones first, then those of each server configuration.
pub fn diagnose(ctx: &Context, args: &DoctorArgs) -> Vec<Finding> {
    let sys = System::new(&args.root);
    let mut findings = vec![checks::clock(&sys), checks::openvpn_version(&sys)];

    let configs = match &args.openvpn_config {
        Some(path) => vec![path.clone()],
        None => server_configs(&sys),
    };
    if configs.is_empty() {
        findings.push(Finding::fail(
            "openvpn-config",
            "no server configuration in /etc/openvpn/server/ or /etc/openvpn/",
            "pass --openvpn-config FILE, or set a server up with `ovpn-mfa server init`",
        ));
        let mfa = default_mfa_paths(&sys, ctx);
        findings.push(checks::store_mode(&sys, &mfa));
        findings.push(checks::store_integrity(&sys, &mfa));
        return findings;
    }

    for path in configs {
        let shown = sys.shown(&path);
        let text = match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                let mut f = Finding::fail(
                    "openvpn-config",
                    format!("cannot read it: {e}"),
                    "pass the right file with --openvpn-config",
                );
                f.config = Some(shown);
                findings.push(f);
                continue;
            }
        };
        let server = server(&sys, ctx, path, OvpnConf::parse(&text));
        let mut these = vec![
            checks::verifier(&server),
            checks::auth_gen_token(&server),
            checks::auth_token_secret(&server),
            checks::reneg_sec(&server),
            checks::token_renewal(&server),
            checks::store_mode(&sys, &server.mfa),
            checks::store_integrity(&sys, &server.mfa),
            checks::store_access(&server),
            checks::mfa_config(&server),
            checks::key_modes(&server),
            checks::tmp_dir(&server),
            checks::crl(&server),
        ];
        for f in &mut these {
            f.config = Some(shown.clone());
        }
        findings.extend(these);
    }
    findings
}

/// Every `*.conf` in /etc/openvpn/server/, and those in /etc/openvpn/ that are servers'
/// (Debian's older `openvpn@NAME` units run clients from there too).
fn server_configs(sys: &System) -> Vec<PathBuf> {
    let list = |dir: &str| -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(sys.path(dir))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf") && p.is_file())
            .collect();
        files.sort();
        files
    };
    let mut configs = list("/etc/openvpn/server");
    configs.extend(list("/etc/openvpn").into_iter().filter(|p| {
        std::fs::read_to_string(p).is_ok_and(|text| OvpnConf::parse(&text).is_server())
    }));
    configs
}

fn server<'a>(sys: &'a System, ctx: &Context, path: PathBuf, conf: OvpnConf) -> Server<'a> {
    let verifier = Verifier::of(&conf);
    let identity = conf.last("user").and_then(|d| d.arg(0)).map(|user| {
        let (uid, _) = sys
            .user(user)
            .ok_or_else(|| format!("the `user {user}` OpenVPN drops to does not exist"))?;
        // OpenVPN sets the gid only with a `group` line; without one it keeps root's.
        let gid = match conf.last("group").and_then(|d| d.arg(0)) {
            Some(group) => sys
                .group(group)
                .ok_or_else(|| format!("the `group {group}` OpenVPN drops to does not exist"))?,
            None => 0,
        };
        Ok(Identity { uid, gid })
    });
    let mut server =
        Server { sys, path, conf, verifier, mfa: default_mfa_paths(sys, ctx), identity };

    // The verifier's own --dir (or OVPN_MFA_DIR set for it) is what counts.
    let env_dir = server
        .conf
        .all("setenv")
        .filter(|d| d.arg(0) == Some("OVPN_MFA_DIR"))
        .last()
        .and_then(|d| d.arg(1).map(str::to_owned));
    if let Some(dir) = server.verifier.dir().or(env_dir) {
        let dir = server.resolve(&dir);
        server.mfa = MfaPaths { config_file: dir.join(CONFIG_FILE), data_dir: dir };
    }
    server
}

/// ovpn-mfa's paths when the server configuration does not say: `--dir` if given (as it is),
/// else the system defaults under the root.
fn default_mfa_paths(sys: &System, ctx: &Context) -> MfaPaths {
    match &ctx.dir {
        Some(dir) => {
            let paths = Paths::new(Some(dir));
            MfaPaths { config_file: paths.config_file, data_dir: paths.data_dir }
        }
        None => MfaPaths {
            config_file: sys.path(Path::new(DEFAULT_CONFIG_DIR).join(CONFIG_FILE)),
            data_dir: sys.path(DEFAULT_DATA_DIR),
        },
    }
}
