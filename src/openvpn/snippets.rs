//! Configuration lines for an OpenVPN server and its clients.

use crate::cli::output::out;
use crate::cli::Context;
use crate::store::users::{self, ClientMethod};
use crate::username::Username;
use anyhow::{Context as _, Result};
use clap::Args;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct ServerConfigArgs {
    /// Path of the ovpn-mfa binary as OpenVPN should run it (default: this binary).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Do not create the auth-token secret and tmp-dir; only print the lines.
    #[arg(long)]
    pub no_create: bool,
    /// Check logins inside OpenVPN with the ovpn-mfa plugin instead of running the `verify`
    /// script for each one (no script-security, no process per login).
    #[arg(long)]
    pub plugin: bool,
    /// Path of libovpn_mfa_plugin.so as OpenVPN should load it (default: next to this
    /// binary if it is there, else /usr/local/lib/ovpn-mfa/libovpn_mfa_plugin.so).
    #[arg(long, value_name = "PATH", requires = "plugin")]
    pub plugin_path: Option<PathBuf>,
}

/// The plugin's file name, as cargo builds it and as it is installed.
pub const PLUGIN_FILE: &str = "libovpn_mfa_plugin.so";

/// Where the plugin is looked for when it is not next to this binary.
pub const DEFAULT_PLUGIN_PATH: &str = "/usr/local/lib/ovpn-mfa/libovpn_mfa_plugin.so";

#[derive(Args, Debug)]
pub struct ClientConfigArgs {
    pub name: String,
}

/// Quotes a path for an OpenVPN config line.
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The lines a server needs, in the order an admin would read them.
pub fn server_lines(
    binary: &Path,
    dir: Option<&Path>,
    token_secret: &Path,
    tmp_dir: &Path,
    config: &crate::config::Config,
) -> String {
    let mut command = binary.display().to_string();
    if let Some(dir) = dir {
        command.push_str(&format!(" --dir {}", dir.display()));
    }
    command.push_str(" verify");
    format!(
        "# ovpn-mfa: certificate + TOTP code for every login.\n\
         script-security 2\n\
         auth-user-pass-verify {cmd} via-file\n\
         tmp-dir {tmp}\n\
         {tokens}",
        cmd = quote(&command),
        tmp = quote(&tmp_dir.display().to_string()),
        tokens = token_lines(token_secret, config),
    )
}

/// The lines for the in-process plugin: the same decisions as the `verify` script, without
/// a process per login. No `tmp-dir`: OpenVPN's default keeps its control files where the
/// unprivileged user can write them, and no credentials file is ever written.
pub fn plugin_server_lines(
    plugin: &Path,
    dir: Option<&Path>,
    token_secret: &Path,
    config: &crate::config::Config,
) -> Result<String> {
    let mut line = format!("plugin {}", quote(&plugin.display().to_string()));
    if let Some(dir) = dir {
        line.push(' ');
        line.push_str(&quote(plugin_argument(dir)?));
    }
    Ok(format!(
        "# ovpn-mfa: certificate + TOTP code for every login, checked inside OpenVPN.\n\
         # The plugin opens its store before `user`/`group` drop privileges; after a SIGHUP\n\
         # it opens it again as that user (see docs/plugin.md).\n\
         {line}\n\
         {tokens}",
        tokens = token_lines(token_secret, config),
    ))
}

/// The auth-token lines both front ends need.
fn token_lines(token_secret: &Path, config: &crate::config::Config) -> String {
    let o = &config.openvpn;
    format!(
        "# Renegotiations present a signed token instead of the (stale) code; with\n\
         # external-auth ovpn-mfa still sees each one and refuses disabled users.\n\
         auth-gen-token {lifetime} {renewal} external-auth\n\
         auth-gen-token-secret {secret}\n\
         hand-window {hw}\n\
         # AEAD ciphers only: no byte-count renegotiations. Key renegotiation stays on\n\
         # (reneg-sec default 3600); never set reneg-sec 0.\n\
         data-ciphers AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305\n",
        lifetime = config.session.max_age_secs,
        renewal = o.token_renewal_secs,
        secret = quote(&token_secret.display().to_string()),
        hw = o.hand_window_secs,
    )
}

/// The directory as the plugin's argument. OpenVPN splits a plugin's only argument at
/// spaces and the plugin joins the parts with one space, so a path survives unless it has
/// leading, trailing or repeated spaces, or other whitespace.
fn plugin_argument(dir: &Path) -> Result<&str> {
    let text = dir.to_str().with_context(|| format!("{} is not UTF-8", dir.display()))?;
    let mangled = text.starts_with(' ')
        || text.ends_with(' ')
        || text.contains("  ")
        || text.contains(['\t', '\n', '\r']);
    anyhow::ensure!(
        !mangled,
        "{text:?} cannot be passed to an OpenVPN plugin intact (leading, trailing or \
         repeated spaces, or other whitespace): use another --dir"
    );
    Ok(text)
}

/// The plugin next to this binary if it is there (a cargo build, an unpacked release),
/// else the installed location.
fn default_plugin_path() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(PLUGIN_FILE)))
        .filter(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PLUGIN_PATH))
}

/// Which front end checks logins, and where OpenVPN finds it.
#[derive(Clone, Debug)]
pub enum Verifier {
    /// The `verify` script; `None` means this binary.
    Script(Option<PathBuf>),
    /// The in-process plugin; `None` means next to this binary, else the installed path.
    Plugin(Option<PathBuf>),
}

/// The MFA lines for this installation (its `--dir` and configuration) and front end. Every
/// command that writes them into a server configuration calls this.
pub fn mfa_lines(
    ctx: &Context,
    config: &crate::config::Config,
    verifier: &Verifier,
) -> Result<String> {
    let secret = ctx.paths.auth_token_secret();
    match verifier {
        Verifier::Plugin(path) => {
            let plugin = path.clone().unwrap_or_else(default_plugin_path);
            // OpenVPN may change directory (`cd`, `daemon`): the plugin needs absolute paths.
            let plugin = std::path::absolute(&plugin).context("cannot resolve the plugin path")?;
            let dir = match &ctx.dir {
                Some(dir) => Some(std::path::absolute(dir).context("cannot resolve --dir")?),
                None => None,
            };
            plugin_server_lines(&plugin, dir.as_deref(), &secret, config)
        }
        Verifier::Script(binary) => {
            let binary = match binary {
                Some(path) => path.clone(),
                None => std::env::current_exe().context("cannot find this binary's path")?,
            };
            let tmp_dir = ctx.paths.openvpn_tmp_dir();
            Ok(server_lines(&binary, ctx.dir.as_deref(), &secret, &tmp_dir, config))
        }
    }
}

/// Where the plugin would be loaded from, if it is the front end; for checking that it exists.
pub fn plugin_path(verifier: &Verifier) -> Option<PathBuf> {
    match verifier {
        Verifier::Plugin(path) => Some(path.clone().unwrap_or_else(default_plugin_path)),
        Verifier::Script(_) => None,
    }
}

pub fn server_config(ctx: &Context, args: &ServerConfigArgs) -> Result<i32> {
    let config = ctx.config()?;
    let verifier = if args.plugin {
        Verifier::Plugin(args.plugin_path.clone())
    } else {
        Verifier::Script(args.binary.clone())
    };
    let lines = mfa_lines(ctx, &config, &verifier)?;
    if !args.no_create {
        if !args.plugin {
            let tmp_dir = ctx.paths.openvpn_tmp_dir();
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&tmp_dir)
                .with_context(|| format!("cannot create {}", tmp_dir.display()))?;
        }
        let secret = ctx.paths.auth_token_secret();
        if !secret.exists() {
            create_token_secret(&secret)?;
            eprintln!("Created the auth-token secret {}", secret.display());
        }
    }
    out!("{lines}")?;
    Ok(0)
}

/// `openvpn --genkey auth-token FILE`, then mode 0600 whatever the umask was.
pub fn create_token_secret(path: &Path) -> Result<()> {
    let status = std::process::Command::new("openvpn")
        .arg("--genkey")
        .arg("auth-token")
        .arg(path)
        .stdout(std::process::Stdio::null())
        .status()
        .context("cannot run `openvpn --genkey auth-token` (is OpenVPN installed?)")?;
    anyhow::ensure!(status.success(), "`openvpn --genkey auth-token` failed ({status})");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    Ok(())
}

/// The client-side lines for a user's method.
pub fn client_lines(method: ClientMethod) -> String {
    let mut lines = String::from(
        "# ovpn-mfa: the client sends a user name and a code from the authenticator app.\n\
         auth-user-pass\n\
         # Do not keep the password in memory: renegotiations use the server's token.\n\
         auth-nocache\n",
    );
    match method {
        ClientMethod::Otp => {
            lines.push_str("# At the password prompt, type the 6-digit code from the app.\n")
        }
        ClientMethod::Concat => lines.push_str(
            "# At the password prompt, type your password immediately followed by the code.\n",
        ),
        ClientMethod::Scrv1 => {
            lines.push_str("static-challenge \"Enter the code from your authenticator app\" 1\n")
        }
    }
    lines
}

pub fn client_config(ctx: &Context, args: &ClientConfigArgs) -> Result<i32> {
    let name = Username::parse(&args.name)?;
    let store = ctx.store()?;
    let user = users::require(store.conn(), &name)?;
    out!("{}", client_lines(user.client_method))?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn server_lines_keep_renegotiation_and_satisfy_openvpn_startup_rules() {
        let config = Config::default();
        let text = server_lines(
            Path::new("/usr/bin/ovpn-mfa"),
            Some(Path::new("/srv/mfa dir")),
            Path::new("/var/lib/ovpn-mfa/auth-token.key"),
            Path::new("/var/lib/ovpn-mfa/tmp"),
            &config,
        );
        assert!(text.contains(
            "auth-user-pass-verify \"/usr/bin/ovpn-mfa --dir /srv/mfa dir verify\" via-file"
        ));
        assert!(text.contains("auth-gen-token 43200 3600 external-auth\n"));
        assert!(text.contains("script-security 2\n"));
        assert!(!text.lines().any(|l| l.trim_start().starts_with("reneg-sec")));
        let renewal = config.openvpn.token_renewal_secs;
        assert!(renewal >= 2 * config.openvpn.hand_window_secs);
    }

    #[test]
    fn plugin_lines_load_the_plugin_with_the_directory_and_keep_the_token_lines() {
        let config = Config::default();
        let secret = Path::new("/srv/mfa dir/auth-token.key");
        let so = Path::new("/usr/local/lib/ovpn-mfa/libovpn_mfa_plugin.so");
        let text =
            plugin_server_lines(so, Some(Path::new("/srv/mfa dir")), secret, &config).unwrap();
        assert!(text.contains(
            "\nplugin \"/usr/local/lib/ovpn-mfa/libovpn_mfa_plugin.so\" \"/srv/mfa dir\"\n"
        ));
        for script_line in ["script-security", "auth-user-pass-verify", "tmp-dir"] {
            assert!(!text.lines().any(|l| l.starts_with(script_line)), "{script_line}: {text}");
        }
        let script = server_lines(Path::new("/b"), None, secret, Path::new("/t"), &config);
        let tokens = token_lines(secret, &config);
        assert!(text.ends_with(&tokens) && script.ends_with(&tokens));
        assert!(tokens.contains("auth-gen-token 43200 3600 external-auth\n"));

        let text = plugin_server_lines(so, None, secret, &config).unwrap();
        assert!(text.contains("\nplugin \"/usr/local/lib/ovpn-mfa/libovpn_mfa_plugin.so\"\n"));
    }

    #[test]
    fn a_directory_openvpn_would_split_differently_is_refused() {
        let config = Config::default();
        let so = Path::new("/p.so");
        for bad in ["/srv/two  spaces", "/srv/trailing ", " /lead", "/tab\there"] {
            let err = plugin_server_lines(so, Some(Path::new(bad)), so, &config).unwrap_err();
            assert!(err.to_string().contains("cannot be passed to an OpenVPN plugin"), "{err}");
        }
    }

    #[test]
    fn static_challenge_is_only_for_scrv1_users() {
        assert!(client_lines(ClientMethod::Scrv1).contains("static-challenge"));
        assert!(!client_lines(ClientMethod::Otp).contains("static-challenge"));
        assert!(client_lines(ClientMethod::Concat).contains("auth-user-pass\n"));
    }
}
