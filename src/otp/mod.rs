//! The one-time password core: HOTP (RFC 4226) and TOTP (RFC 6238).
//!
//! Pure functions only. Time is always an argument, never read here, so tests can stand on
//! the exact edge of a time step.

mod key;
mod uri;

pub use key::{OtpKey, SecretError, MIN_SECRET_BYTES};
pub use uri::{otpauth_uri, parse_otpauth_uri, OtpauthUri, UriError};

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use subtle::ConstantTimeEq;

/// The HMAC hash behind the codes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Algorithm {
    #[default]
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().replace('-', "").as_str() {
            "SHA1" => Ok(Algorithm::Sha1),
            "SHA256" => Ok(Algorithm::Sha256),
            "SHA512" => Ok(Algorithm::Sha512),
            _ => Err(format!("unknown OTP algorithm {s:?}; expected SHA1, SHA256 or SHA512")),
        }
    }
}

/// How a user's codes are made: hash, number of digits, and step length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpParams {
    pub algorithm: Algorithm,
    pub digits: u32,
    pub period: u64,
}

impl Default for TotpParams {
    fn default() -> Self {
        TotpParams { algorithm: Algorithm::Sha1, digits: 6, period: 30 }
    }
}

impl TotpParams {
    /// Checks the parameters against what authenticator apps support.
    pub fn validate(&self) -> Result<(), String> {
        if self.digits != 6 && self.digits != 8 {
            return Err(format!("OTP digits must be 6 or 8, not {}", self.digits));
        }
        if !(1..=300).contains(&self.period) {
            return Err(format!("OTP period must be 1 to 300 seconds, not {}", self.period));
        }
        Ok(())
    }

    /// The time step that `unix_time` falls in.
    pub fn step_at(&self, unix_time: u64) -> u64 {
        unix_time / self.period
    }
}

/// RFC 4226: the code for `counter`, as a number below 10^digits.
pub fn hotp(key: &[u8], counter: u64, digits: u32, algorithm: Algorithm) -> u32 {
    let digest = match algorithm {
        Algorithm::Sha1 => hmac_digest::<Hmac<sha1::Sha1>>(key, counter),
        Algorithm::Sha256 => hmac_digest::<Hmac<sha2::Sha256>>(key, counter),
        Algorithm::Sha512 => hmac_digest::<Hmac<sha2::Sha512>>(key, counter),
    };
    // Dynamic truncation, RFC 4226 section 5.3.
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let word = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    word % 10u32.pow(digits)
}

fn hmac_digest<M: Mac + KeyInit>(key: &[u8], counter: u64) -> Vec<u8> {
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
    Mac::update(&mut mac, &counter.to_be_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The code for a time step, zero-padded to the configured number of digits.
pub fn totp_at_step(key: &[u8], step: u64, params: &TotpParams) -> String {
    let code = hotp(key, step, params.digits, params.algorithm);
    format!("{code:0width$}", width = params.digits as usize)
}

/// The code an authenticator app shows at `unix_time`.
pub fn totp(key: &[u8], unix_time: u64, params: &TotpParams) -> String {
    totp_at_step(key, params.step_at(unix_time), params)
}

/// Looks for `code` among the steps from `window` before to `window` after the one `unix_time`
/// falls in, and returns the step that matched.
///
/// Every candidate is computed and compared in constant time, so the time taken does not tell
/// which step (if any) matched. Codes with the wrong length or non-digits never match.
pub fn verify_totp(
    key: &[u8],
    code: &str,
    unix_time: u64,
    params: &TotpParams,
    window: u64,
) -> Option<u64> {
    let well_formed =
        code.len() == params.digits as usize && code.bytes().all(|b| b.is_ascii_digit());
    let current = params.step_at(unix_time);
    let first = current.saturating_sub(window);
    let mut matched = None;
    for step in first..=current.saturating_add(window) {
        let expected = totp_at_step(key, step, params);
        let equal = expected.as_bytes().ct_eq(code.as_bytes());
        if bool::from(equal) && matched.is_none() {
            matched = Some(step);
        }
    }
    matched.filter(|_| well_formed)
}

/// What a code means for a user whose last accepted step is `last_step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TotpCheck {
    /// The code is valid for this step, which is later than any step accepted before.
    Fresh(u64),
    /// The code is valid, but only for a step already accepted (or an earlier one).
    Replayed(u64),
    /// The code matches no step in the window.
    Wrong,
}

/// [`verify_totp`] with replay protection (RFC 6238 section 5.2): a step at or before
/// `last_step` is never fresh. Every step in the window is computed, in constant time.
pub fn check_totp(
    key: &[u8],
    code: &str,
    unix_time: u64,
    params: &TotpParams,
    window: u64,
    last_step: Option<u64>,
) -> TotpCheck {
    let well_formed =
        code.len() == params.digits as usize && code.bytes().all(|b| b.is_ascii_digit());
    let current = params.step_at(unix_time);
    let mut fresh = None;
    let mut replayed = None;
    for step in current.saturating_sub(window)..=current.saturating_add(window) {
        let expected = totp_at_step(key, step, params);
        if !bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            continue;
        }
        let used = last_step.is_some_and(|last| step <= last);
        match (used, fresh, replayed) {
            (false, None, _) => fresh = Some(step),
            (true, _, None) => replayed = Some(step),
            _ => {}
        }
    }
    match (well_formed, fresh, replayed) {
        (false, _, _) => TotpCheck::Wrong,
        (true, Some(step), _) => TotpCheck::Fresh(step),
        (true, None, Some(step)) => TotpCheck::Replayed(step),
        (true, None, None) => TotpCheck::Wrong,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC4226_KEY: &[u8] = b"12345678901234567890";

    #[test]
    fn rfc4226_appendix_d_vectors_match() {
        let expected =
            [755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489];
        for (counter, want) in expected.iter().enumerate() {
            assert_eq!(hotp(RFC4226_KEY, counter as u64, 6, Algorithm::Sha1), *want);
        }
    }

    fn rfc6238_key(algorithm: Algorithm) -> &'static [u8] {
        match algorithm {
            Algorithm::Sha1 => b"12345678901234567890",
            Algorithm::Sha256 => b"12345678901234567890123456789012",
            Algorithm::Sha512 => {
                b"1234567890123456789012345678901234567890123456789012345678901234"
            }
        }
    }

    #[test]
    fn rfc6238_appendix_b_vectors_match_for_all_three_hashes() {
        let table: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (time, sha1, sha256, sha512) in table {
            for (algorithm, want) in
                [(Algorithm::Sha1, sha1), (Algorithm::Sha256, sha256), (Algorithm::Sha512, sha512)]
            {
                let params = TotpParams { algorithm, digits: 8, period: 30 };
                assert_eq!(totp(rfc6238_key(algorithm), time, &params), want, "{algorithm} {time}");
            }
        }
    }

    #[test]
    fn codes_keep_their_leading_zeros() {
        let params = TotpParams { digits: 8, ..TotpParams::default() };
        assert_eq!(totp(RFC4226_KEY, 1111111109, &params), "07081804");
    }

    #[test]
    fn verification_reports_the_matching_step_within_the_window() {
        let params = TotpParams::default();
        let now = 1_700_000_015; // step 56_666_667, 15 s into it
        let step = params.step_at(now);
        for offset in [-1i64, 0, 1] {
            let s = (step as i64 + offset) as u64;
            let code = totp_at_step(RFC4226_KEY, s, &params);
            assert_eq!(verify_totp(RFC4226_KEY, &code, now, &params, 1), Some(s));
        }
        let old = totp_at_step(RFC4226_KEY, step - 2, &params);
        assert_eq!(verify_totp(RFC4226_KEY, &old, now, &params, 1), None);
        let old_in_wider_window = verify_totp(RFC4226_KEY, &old, now, &params, 2);
        assert_eq!(old_in_wider_window, Some(step - 2));
    }

    #[test]
    fn step_edges_are_exact() {
        let params = TotpParams::default();
        let code = totp(RFC4226_KEY, 89, &params); // step 2
        assert_eq!(verify_totp(RFC4226_KEY, &code, 119, &params, 0), None);
        assert_eq!(verify_totp(RFC4226_KEY, &code, 89, &params, 0), Some(2));
        assert_eq!(verify_totp(RFC4226_KEY, &code, 90, &params, 0), None);
        assert_eq!(verify_totp(RFC4226_KEY, &code, 90, &params, 1), Some(2));
        assert_eq!(verify_totp(RFC4226_KEY, &code, 120, &params, 1), None);
    }

    #[test]
    fn an_accepted_step_and_every_earlier_one_are_replays() {
        let params = TotpParams::default();
        let now = 1_700_000_000;
        let step = params.step_at(now);
        let current = totp_at_step(RFC4226_KEY, step, &params);
        let previous = totp_at_step(RFC4226_KEY, step - 1, &params);
        let next = totp_at_step(RFC4226_KEY, step + 1, &params);
        assert_eq!(
            check_totp(RFC4226_KEY, &current, now, &params, 1, None),
            TotpCheck::Fresh(step)
        );
        let last = Some(step);
        assert_eq!(
            check_totp(RFC4226_KEY, &current, now, &params, 1, last),
            TotpCheck::Replayed(step)
        );
        assert_eq!(
            check_totp(RFC4226_KEY, &previous, now, &params, 1, last),
            TotpCheck::Replayed(step - 1)
        );
        assert_eq!(
            check_totp(RFC4226_KEY, &next, now, &params, 1, last),
            TotpCheck::Fresh(step + 1)
        );
        assert_eq!(check_totp(RFC4226_KEY, "000000", now, &params, 1, last), TotpCheck::Wrong);
    }

    #[test]
    fn malformed_codes_never_match() {
        let params = TotpParams::default();
        let code = totp(RFC4226_KEY, 1000, &params);
        for bad in ["", "12345", "1234567", " 123456", "abcdef", "１２３４５６"] {
            assert_eq!(verify_totp(RFC4226_KEY, bad, 1000, &params, 1), None, "{bad:?}");
        }
        let padded = format!("{code} ");
        assert_eq!(verify_totp(RFC4226_KEY, &padded, 1000, &params, 1), None);
    }

    #[test]
    fn the_window_does_not_underflow_at_the_epoch() {
        let params = TotpParams::default();
        let code = totp(RFC4226_KEY, 0, &params);
        assert_eq!(verify_totp(RFC4226_KEY, &code, 0, &params, 1), Some(0));
    }
}
