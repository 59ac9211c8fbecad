//! Configuration lines for an OpenVPN server and its clients.

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
}

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
    let o = &config.openvpn;
    format!(
        "# ovpn-mfa: certificate + TOTP code for every login.\n\
         script-security 2\n\
         auth-user-pass-verify {cmd} via-file\n\
         tmp-dir {tmp}\n\
         # Renegotiations present a signed token instead of the (stale) code; with\n\
         # external-auth ovpn-mfa still sees each one and refuses disabled users.\n\
         auth-gen-token {lifetime} {renewal} external-auth\n\
         auth-gen-token-secret {secret}\n\
         hand-window {hw}\n\
         # AEAD ciphers only: no byte-count renegotiations. Key renegotiation stays on\n\
         # (reneg-sec default 3600); never set reneg-sec 0.\n\
         data-ciphers AES-256-GCM:AES-128-GCM:CHACHA20-POLY1305\n",
        cmd = quote(&command),
        tmp = quote(&tmp_dir.display().to_string()),
        lifetime = config.session.max_age_secs,
        renewal = o.token_renewal_secs,
        secret = quote(&token_secret.display().to_string()),
        hw = o.hand_window_secs,
    )
}

pub fn server_config(ctx: &Context, args: &ServerConfigArgs) -> Result<i32> {
    let config = ctx.config()?;
    let binary = match &args.binary {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot find this binary's path")?,
    };
    let secret = ctx.paths.auth_token_secret();
    let tmp_dir = ctx.paths.openvpn_tmp_dir();
    if !args.no_create {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&tmp_dir)
            .with_context(|| format!("cannot create {}", tmp_dir.display()))?;
        if !secret.exists() {
            create_token_secret(&secret)?;
            eprintln!("Created the auth-token secret {}", secret.display());
        }
    }
    print!("{}", server_lines(&binary, ctx.dir.as_deref(), &secret, &tmp_dir, &config));
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
    print!("{}", client_lines(user.client_method));
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
    fn static_challenge_is_only_for_scrv1_users() {
        assert!(client_lines(ClientMethod::Scrv1).contains("static-challenge"));
        assert!(!client_lines(ClientMethod::Otp).contains("static-challenge"));
        assert!(client_lines(ClientMethod::Concat).contains("auth-user-pass\n"));
    }
}
