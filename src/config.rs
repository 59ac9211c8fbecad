//! Where ovpn-mfa keeps things, and its configuration file.

use crate::otp::{Algorithm, TotpParams};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DEFAULT_CONFIG_DIR: &str = "/etc/ovpn-mfa";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/ovpn-mfa";
pub const STORE_FILE: &str = "ovpn-mfa.sqlite";
pub const CONFIG_FILE: &str = "config.toml";

/// The configuration file and the data directory.
#[derive(Clone, Debug)]
pub struct Paths {
    pub config_file: PathBuf,
    pub data_dir: PathBuf,
}

impl Paths {
    /// `--dir DIR` puts both under one directory; without it the system locations are used.
    pub fn new(dir: Option<&Path>) -> Self {
        match dir {
            Some(dir) => Paths { config_file: dir.join(CONFIG_FILE), data_dir: dir.to_path_buf() },
            None => Paths {
                config_file: Path::new(DEFAULT_CONFIG_DIR).join(CONFIG_FILE),
                data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            },
        }
    }

    pub fn store(&self) -> PathBuf {
        self.data_dir.join(STORE_FILE)
    }

    pub fn auth_token_secret(&self) -> PathBuf {
        self.data_dir.join("auth-token.key")
    }

    /// OpenVPN's `tmp-dir`, where it writes the credentials file for the verifier.
    pub fn openvpn_tmp_dir(&self) -> PathBuf {
        self.data_dir.join("tmp")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub otp: OtpConfig,
    pub lockout: LockoutConfig,
    pub password: PasswordConfig,
    pub session: SessionConfig,
    pub openvpn: OpenVpnConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtpConfig {
    pub issuer: String,
    pub algorithm: Algorithm,
    pub digits: u32,
    pub period: u64,
    pub window: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LockoutConfig {
    pub max_failures: u32,
    pub window_secs: u64,
    pub lockout_secs: u64,
    pub max_lockout_secs: u64,
}

/// Upper bounds of the argon2id cost. A hash runs inside the OpenVPN server (the plugin's
/// workers, several at once) or its worker processes: a cost past these would exhaust memory
/// or miss OpenVPN's deadline, and a failed allocation aborts the whole server.
pub const MAX_PASSWORD_MEMORY_KIB: u32 = 262_144;
pub const MAX_PASSWORD_ITERATIONS: u32 = 16;
pub const MAX_PASSWORD_PARALLELISM: u32 = 8;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordConfig {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    pub max_age_secs: u64,
    pub allow_empty_username_tokens: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenVpnConfig {
    pub auth_deadline_secs: u64,
    pub hand_window_secs: u64,
    pub token_renewal_secs: u64,
    /// Refuse logins whose client certificate's common name is not the user name.
    pub bind_certificate: bool,
}

impl Default for OtpConfig {
    fn default() -> Self {
        let params = TotpParams::default();
        OtpConfig {
            issuer: "OpenVPN".into(),
            algorithm: params.algorithm,
            digits: params.digits,
            period: params.period,
            window: 1,
        }
    }
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            max_failures: 5,
            window_secs: 300,
            lockout_secs: 900,
            max_lockout_secs: 86_400,
        }
    }
}

impl Default for PasswordConfig {
    fn default() -> Self {
        // OWASP's argon2id baseline: 19 MiB, 2 passes, one lane.
        PasswordConfig { memory_kib: 19_456, iterations: 2, parallelism: 1 }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig { max_age_secs: 12 * 3600, allow_empty_username_tokens: false }
    }
}

impl Default for OpenVpnConfig {
    fn default() -> Self {
        OpenVpnConfig {
            auth_deadline_secs: 30,
            hand_window_secs: 60,
            token_renewal_secs: 3600,
            bind_certificate: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path} (run `ovpn-mfa init` first?)")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let text = String::from_utf8(bytes).map_err(|_| ConfigError::Invalid {
            path: path.to_owned(),
            message: "not UTF-8 text".into(),
        })?;
        Self::parse(&text)
            .map_err(|message| ConfigError::Invalid { path: path.to_owned(), message })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Config = toml::from_str(text).map_err(|e| one_line(&e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        self.totp_params().validate()?;
        if self.otp.window > 10 {
            return Err("otp.window must be at most 10 steps".into());
        }
        if self.otp.issuer.is_empty() || self.otp.issuer.contains(':') {
            return Err("otp.issuer must be non-empty and contain no ':'".into());
        }
        let l = &self.lockout;
        if l.max_failures == 0 || l.window_secs == 0 || l.lockout_secs == 0 {
            return Err("lockout values must be greater than zero".into());
        }
        if l.max_lockout_secs < l.lockout_secs {
            return Err("lockout.max_lockout_secs must be at least lockout.lockout_secs".into());
        }
        let o = &self.openvpn;
        if o.auth_deadline_secs == 0 || o.auth_deadline_secs >= o.hand_window_secs {
            return Err("openvpn.auth_deadline_secs must be between 1 and hand_window_secs".into());
        }
        if o.token_renewal_secs < 2 * o.hand_window_secs {
            return Err("openvpn.token_renewal_secs must be at least 2 x hand_window_secs \
                        (OpenVPN refuses to start otherwise)"
                .into());
        }
        if self.session.max_age_secs == 0 {
            return Err("session.max_age_secs must be greater than zero".into());
        }
        let p = &self.password;
        if p.memory_kib > MAX_PASSWORD_MEMORY_KIB
            || p.iterations > MAX_PASSWORD_ITERATIONS
            || p.parallelism > MAX_PASSWORD_PARALLELISM
        {
            return Err(format!(
                "password cost is too high: at most memory_kib = {MAX_PASSWORD_MEMORY_KIB}, \
                 iterations = {MAX_PASSWORD_ITERATIONS}, parallelism = {MAX_PASSWORD_PARALLELISM} \
                 (each login hashes in the server's memory, several at a time)"
            ));
        }
        argon2::Params::new(
            self.password.memory_kib,
            self.password.iterations,
            self.password.parallelism,
            None,
        )
        .map_err(|e| format!("password cost is not valid for argon2id: {e}"))?;
        Ok(())
    }

    pub fn totp_params(&self) -> TotpParams {
        TotpParams {
            algorithm: self.otp.algorithm,
            digits: self.otp.digits,
            period: self.otp.period,
        }
    }

    /// The commented file `init` writes.
    pub fn default_file_text() -> String {
        let d = Config::default();
        format!(
            r#"# ovpn-mfa configuration. Every setting is shown with its default value.

[otp]
# Name shown in the authenticator app.
issuer = "{issuer}"
# Parameters for new enrolments. Most apps support only SHA1, 6 digits, 30 s.
algorithm = "{alg}"
digits = {digits}
period = {period}
# Steps accepted before and after the current one, for clock drift (1 = +/- 30 s).
window = {window}

[lockout]
# This many failures within window_secs lock the account for lockout_secs.
max_failures = {maxf}
window_secs = {lw}
lockout_secs = {ls}
# Each further lockout doubles, up to this. A successful login or `user unlock` resets it.
max_lockout_secs = {lmax}

[password]
# argon2id cost for optional user passwords (at most 262144 KiB, 16 iterations, 8 lanes).
memory_kib = {mem}
iterations = {it}
parallelism = {par}

[session]
# A session resumed with an OpenVPN auth token without a new code lasts at most this long.
max_age_secs = {age}
# Accept auth tokens whose user name was blanked by an OpenVPN 3 client, matched by session.
allow_empty_username_tokens = {empty}

[openvpn]
# A deferred check gives up and refuses after this many seconds (keep below hand-window).
auth_deadline_secs = {deadline}
# Must match the server's hand-window; token renewal must be at least twice it.
hand_window_secs = {hw}
token_renewal_secs = {renew}
# Refuse a login whose client certificate's common name is not the user name (compared
# ignoring case), also at renegotiation, so that certificate and code come from one person.
# `server init` and `user add` issue certificates named after the user. Turn it off only
# for a PKI whose names differ from the user names. Servers without client certificates
# (`verify-client-cert none`) are not affected.
bind_certificate = {bind}
"#,
            issuer = d.otp.issuer,
            alg = d.otp.algorithm,
            digits = d.otp.digits,
            period = d.otp.period,
            window = d.otp.window,
            maxf = d.lockout.max_failures,
            lw = d.lockout.window_secs,
            ls = d.lockout.lockout_secs,
            lmax = d.lockout.max_lockout_secs,
            mem = d.password.memory_kib,
            it = d.password.iterations,
            par = d.password.parallelism,
            age = d.session.max_age_secs,
            empty = d.session.allow_empty_username_tokens,
            deadline = d.openvpn.auth_deadline_secs,
            hw = d.openvpn.hand_window_secs,
            renew = d.openvpn.token_renewal_secs,
            bind = d.openvpn.bind_certificate,
        )
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_parses_to_the_defaults() {
        assert_eq!(Config::parse(&Config::default_file_text()).unwrap(), Config::default());
    }

    #[test]
    fn certificates_are_bound_to_user_names_unless_turned_off() {
        assert!(Config::default().openvpn.bind_certificate);
        assert!(Config::default_file_text().contains("\nbind_certificate = true\n"));
        let off = Config::parse("[openvpn]\nbind_certificate = false").unwrap();
        assert!(!off.openvpn.bind_certificate);
    }

    #[test]
    fn an_empty_file_means_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn bad_files_give_one_line_errors() {
        for bad in [
            "[otp]\ndigits = 7",
            "[otp]\nwindow = 100",
            "[lockout]\nmax_failures = 0",
            "[openvpn]\ntoken_renewal_secs = 60",
            "[nope]",
            "[otp\n",
            "[otp]\nalgorithm = \"MD5\"",
            "[password]\nmemory_kib = 1",
            "[password]\nmemory_kib = 4000000000",
            "[password]\niterations = 100000000",
            "[password]\nparallelism = 64",
        ] {
            let err = Config::parse(bad).unwrap_err();
            assert!(!err.is_empty() && !err.contains('\n'), "{bad:?}: {err}");
        }
    }
}
