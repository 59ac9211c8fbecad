//! The per-user file of google-authenticator-libpam (`~/.google_authenticator`), read without
//! I/O: bytes in, a parsed file or the reason it cannot be imported out.
//!
//! The format: the base32 secret on the first line; option lines that start with `" `, such
//! as `" TOTP_AUTH`, `" WINDOW_SIZE 3`, `" STEP_SIZE 30`, `" DISALLOW_REUSE 56666667`,
//! `" RATE_LIMIT 3 30 1700000000` or `" HOTP_COUNTER 1`; then one 8-digit scratch code per
//! line. A file with `HOTP_COUNTER` is counter-based, anything else is time-based, as in the
//! PAM module itself.
//!
//! Errors never quote the file: every line of it is a secret or next to one.

use crate::otp::{OtpKey, SecretError};
use crate::secret::Sensitive;
use crate::username::printable;

/// Largest file read. The PAM module writes a few hundred bytes; anything this big is not
/// one of its files.
pub const MAX_FILE_BYTES: usize = 64 * 1024;

/// The PAM module's step length when the file does not set one.
pub const DEFAULT_STEP_SECS: u64 = 30;

/// The PAM module's window when the file does not set one: 3 codes, the current one and one
/// on each side.
pub const DEFAULT_WINDOW_SIZE: u32 = 3;

/// Length of a scratch code.
pub const SCRATCH_CODE_LEN: usize = 8;

/// A parsed file. The secret and the scratch codes print as `[redacted]`.
#[derive(Debug)]
pub struct GaFile {
    pub key: OtpKey,
    /// `STEP_SIZE`, in seconds.
    pub step_secs: u64,
    /// `WINDOW_SIZE`: how many codes are valid at once, centred on the current one.
    pub window_size: u32,
    /// The time steps `DISALLOW_REUSE` lists as already used.
    pub used_steps: Vec<u64>,
    /// `TIME_SKEW`: the clock offset, in steps, the module had learned for this phone.
    pub time_skew: Option<i64>,
    pub scratch_codes: Vec<Sensitive>,
    /// Names of options this reader does not know, already made printable.
    pub unknown_options: Vec<String>,
}

impl GaFile {
    /// How many steps away from the current one the PAM module accepted a code. Its window
    /// runs from `(n - 1) / 2` steps back to `n / 2` steps ahead; this is the wider side.
    pub fn reach_steps(&self) -> u64 {
        u64::from(self.window_size / 2)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GaError {
    #[error("the file is larger than {} KiB, so it is not a google-authenticator file", MAX_FILE_BYTES / 1024)]
    TooLarge,
    #[error("the file is empty")]
    Empty,
    #[error("the file is not text (binary or not UTF-8)")]
    NotText,
    #[error("the first line is not a usable secret: {0}")]
    Secret(String),
    #[error(
        "HOTP (counter-based) files are not supported: ovpn-mfa only does time-based codes; \
         enrol the user afresh with `ovpn-mfa user add`"
    )]
    Hotp,
    #[error("line {line}: option {name} has a bad value ({expected})")]
    BadOption { line: usize, name: &'static str, expected: &'static str },
    #[error("line {line} is neither an option (\" NAME ...) nor an 8-digit scratch code")]
    BadLine { line: usize },
}

/// Parses the whole file.
pub fn parse(bytes: &[u8]) -> Result<GaFile, GaError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(GaError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| GaError::NotText)?;
    if text.contains('\0')
        || text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(GaError::NotText);
    }
    if text.trim().is_empty() {
        return Err(GaError::Empty);
    }

    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let key = OtpKey::from_base32(lines.next().unwrap_or("")).map_err(secret_error)?;
    let mut file = GaFile {
        key,
        step_secs: DEFAULT_STEP_SECS,
        window_size: DEFAULT_WINDOW_SIZE,
        used_steps: Vec::new(),
        time_skew: None,
        scratch_codes: Vec::new(),
        unknown_options: Vec::new(),
    };
    let mut hotp = false;
    // The module reads each option with get_cfg_value, which finds its first line: later
    // lines with the same name are never looked at, not even checked.
    let mut seen: Vec<&str> = Vec::new();

    for (index, line) in lines.enumerate() {
        let number = index + 2;
        if let Some(option) = line.strip_prefix("\" ") {
            let name = option.split_whitespace().next().unwrap_or("");
            if seen.contains(&name) {
                continue;
            }
            seen.push(name);
            hotp |= read_option(&mut file, option, number)?;
        } else if line.len() == SCRATCH_CODE_LEN && line.bytes().all(|b| b.is_ascii_digit()) {
            file.scratch_codes.push(Sensitive::new(line));
        } else if !line.trim().is_empty() {
            return Err(GaError::BadLine { line: number });
        }
    }

    if hotp {
        return Err(GaError::Hotp);
    }
    Ok(file)
}

/// Applies one option line to `file`; true if it makes the file counter-based.
fn read_option(file: &mut GaFile, option: &str, line: usize) -> Result<bool, GaError> {
    let mut words = option.split_whitespace();
    let name = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    let bad =
        |name: &'static str, expected: &'static str| GaError::BadOption { line, name, expected };
    match name {
        "TOTP_AUTH" => {}
        "HOTP_COUNTER" => return Ok(true),
        "STEP_SIZE" => {
            // The PAM module allows 1 to 60 seconds; ovpn-mfa's own limit is wider.
            file.step_secs = args
                .first()
                .and_then(|v| v.parse().ok())
                .filter(|s| (1..=60).contains(s))
                .ok_or_else(|| bad("STEP_SIZE", "1 to 60 seconds"))?;
        }
        "WINDOW_SIZE" => {
            file.window_size = args
                .first()
                .and_then(|v| v.parse().ok())
                .filter(|w| (1..=100).contains(w))
                .ok_or_else(|| bad("WINDOW_SIZE", "1 to 100 codes"))?;
        }
        "DISALLOW_REUSE" => {
            // Like the module, stop at the first entry that is not a number.
            file.used_steps = args.iter().map_while(|v| v.parse().ok()).collect();
        }
        "TIME_SKEW" => {
            let skew = args.first().and_then(|v| v.parse().ok());
            file.time_skew = Some(skew.ok_or_else(|| bad("TIME_SKEW", "a whole number"))?);
        }
        // The module's own rate limit and skew detection; ovpn-mfa has its own lockout and
        // a fixed window, so there is nothing to carry over.
        "RATE_LIMIT" | "RESETTING_TIME_SKEW" => {}
        other => file.unknown_options.push(printable(other)),
    }
    Ok(false)
}

/// Describes a bad secret without quoting any part of it.
fn secret_error(e: SecretError) -> GaError {
    let reason = match e {
        SecretError::BadCharacter(_) => "it has characters other than A-Z and 2-7".to_owned(),
        other => other.to_string(),
    };
    GaError::Secret(reason)
}

/// The user a file belongs to, from its name: `alice`, `.alice`, `alice.google_authenticator`
/// and `.alice.google_authenticator` all give `alice`. `None` for the module's own file name,
/// `.google_authenticator`, which names no one.
pub fn user_from_file_name(file_name: &str) -> Option<&str> {
    let name = file_name.strip_prefix('.').unwrap_or(file_name);
    if name == "google_authenticator" {
        return None;
    }
    let name = name.strip_suffix(".google_authenticator").unwrap_or(name);
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "MTZMRN6DRB5S6K64FFZ5GKOK7E";

    #[test]
    fn a_file_from_the_setup_tool_is_read_whole() {
        let text = format!(
            "{SECRET}\n\" RATE_LIMIT 3 30 1700000000\n\" WINDOW_SIZE 17\n\" STEP_SIZE 60\n\
             \" DISALLOW_REUSE 28333333 28333334\n\" TOTP_AUTH\n13671019\n43265912\n"
        );
        let file = parse(text.as_bytes()).unwrap();
        assert_eq!(file.key, OtpKey::from_base32(SECRET).unwrap());
        assert_eq!((file.step_secs, file.window_size, file.reach_steps()), (60, 17, 8));
        assert_eq!(file.used_steps, [28333333, 28333334]);
        let codes: Vec<_> = file.scratch_codes.iter().map(Sensitive::expose).collect();
        assert_eq!(codes, ["13671019", "43265912"]);
        assert!(file.unknown_options.is_empty());
    }

    #[test]
    fn defaults_are_the_modules_defaults() {
        let file = parse(format!("{SECRET}\r\n").as_bytes()).unwrap();
        assert_eq!((file.step_secs, file.window_size, file.reach_steps()), (30, 3, 1));
        assert!(file.scratch_codes.is_empty() && file.used_steps.is_empty());
        assert_eq!(file.time_skew, None);
    }

    #[test]
    fn unknown_options_are_kept_by_name_and_reported() {
        let file = parse(format!("{SECRET}\n\" SOMETHING_NEW 1 2\n").as_bytes()).unwrap();
        assert_eq!(file.unknown_options, ["SOMETHING_NEW"]);
    }

    #[test]
    fn the_first_line_of_a_repeated_option_counts_as_in_the_module() {
        let text = format!(
            "{SECRET}\n\" STEP_SIZE 60\n\" WINDOW_SIZE 5\n\" STEP_SIZE 30\n\" WINDOW_SIZE 0\n\
             \" DISALLOW_REUSE 1 2\n\" DISALLOW_REUSE 3\n\" TIME_SKEW -1\n\" TIME_SKEW x\n\
             \" NEW 1\n\" NEW 2\n"
        );
        let file = parse(text.as_bytes()).unwrap();
        assert_eq!((file.step_secs, file.window_size), (60, 5));
        assert_eq!(file.used_steps, [1, 2]);
        assert_eq!(file.time_skew, Some(-1));
        assert_eq!(file.unknown_options, ["NEW"]);
    }

    #[test]
    fn bad_files_are_refused_with_a_reason_that_quotes_nothing() {
        let hotp = format!("{SECRET}\n\" HOTP_COUNTER 1\n12345678\n");
        let cases: Vec<(Vec<u8>, GaError)> = vec![
            (Vec::new(), GaError::Empty),
            (b"\n\n  \n".to_vec(), GaError::Empty),
            (vec![0xff, 0xfe, 0x00, 0x41], GaError::NotText),
            (b"JBSWY3DPEHPK3PXP\0\n".to_vec(), GaError::NotText),
            (vec![b'A'; MAX_FILE_BYTES + 1], GaError::TooLarge),
            (hotp.into_bytes(), GaError::Hotp),
            (format!("{SECRET}\nhello\n").into_bytes(), GaError::BadLine { line: 2 }),
            (format!("{SECRET}\n1234567\n").into_bytes(), GaError::BadLine { line: 2 }),
            (
                format!("{SECRET}\n\" STEP_SIZE 0\n").into_bytes(),
                GaError::BadOption { line: 2, name: "STEP_SIZE", expected: "1 to 60 seconds" },
            ),
            (
                format!("{SECRET}\n\" WINDOW_SIZE x\n").into_bytes(),
                GaError::BadOption { line: 2, name: "WINDOW_SIZE", expected: "1 to 100 codes" },
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(parse(&bytes).unwrap_err(), want);
        }
        let err = parse(b"JBSWY3DPEHPK3PX1\n").unwrap_err().to_string();
        assert!(err.contains("other than A-Z") && !err.contains('1'), "{err}");
        let err = parse(b"JBSWY3DP\n").unwrap_err().to_string();
        assert!(err.contains("too short") && !err.contains("JBSW"), "{err}");
    }

    #[test]
    fn user_names_come_from_the_file_name() {
        for (file, user) in [
            ("alice", Some("alice")),
            (".alice", Some("alice")),
            ("alice.google_authenticator", Some("alice")),
            (".bob.smith.google_authenticator", Some("bob.smith")),
            (".google_authenticator", None),
            ("google_authenticator", None),
            (".", None),
        ] {
            assert_eq!(user_from_file_name(file), user, "{file}");
        }
    }
}
