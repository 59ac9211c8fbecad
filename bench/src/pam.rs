//! The common setup to compare against: OpenVPN's auth-pam plugin with the
//! google-authenticator PAM module, one secret file per user.
//!
//! The PAM service file `/etc/pam.d/openvpn-bench-<pid>` exists only while the bench runs
//! (removed by the guard, or by `scripts/bench.sh` if the bench was killed).

use anyhow::{Context, Result};
use ovpn_mfa::otp::{self, TotpParams};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const AUTH_PAM_PLUGIN: &str =
    "/usr/lib/x86_64-linux-gnu/openvpn/plugins/openvpn-plugin-auth-pam.so";
const GA_MODULE: &str = "/usr/lib/x86_64-linux-gnu/security/pam_google_authenticator.so";

pub struct PamService {
    pub name: String,
    path: PathBuf,
}

impl PamService {
    /// Writes the service file. Codes come from `secrets/<user>` (read as root); the
    /// account phase is a plain permit, since the bench users have no Unix accounts.
    pub fn install(secrets: &Path) -> Result<PamService> {
        for needed in [AUTH_PAM_PLUGIN, GA_MODULE] {
            anyhow::ensure!(
                Path::new(needed).exists(),
                "{needed} is missing (apt-get install openvpn libpam-google-authenticator)"
            );
        }
        let name = format!("openvpn-bench-{}", std::process::id());
        let path = Path::new("/etc/pam.d").join(&name);
        let text = format!(
            "# Written by ovpn-mfa-bench for one benchmark run; removed when it ends.\n\
             auth required pam_google_authenticator.so secret={}/${{USER}} user=root\n\
             account required pam_permit.so\n",
            secrets.display()
        );
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        Ok(PamService { name, path })
    }
}

impl Drop for PamService {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Writes the secret file `google-authenticator -t -d -f -r 3 -R 30 -w 3 -e 0` would write:
/// TOTP, no reuse of a code, at most 3 logins per 30 s, one step of drift each way.
pub fn write_secret_file(path: &Path, base32: &str) -> Result<()> {
    let text = format!(
        "{base32}\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 3\n\" DISALLOW_REUSE\n\" TOTP_AUTH\n"
    );
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o400)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("write {}", path.display()))
}

/// The code a phone shows at `unix_time` for a secret (SHA1, 6 digits, 30 s, as
/// google-authenticator makes them).
pub fn code(key: &[u8], unix_time: u64) -> String {
    otp::totp(key, unix_time, &TotpParams::default())
}
