//! OTP shared secrets: generation, base32 import and export.

use data_encoding::BASE32_NOPAD;
use rand::RngCore;
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Shortest secret accepted on import, in bytes. RFC 4226 asks for 128 bits, but the
/// google-authenticator PAM module has always issued 80-bit secrets and their users must be
/// able to keep their phone entries, so 80 bits is the floor. New secrets are 160 bits.
pub const MIN_SECRET_BYTES: usize = 10;

/// Longest secret accepted (a SHA-512 block is 128 bytes; nothing longer makes sense).
pub const MAX_SECRET_BYTES: usize = 128;

const NEW_SECRET_BYTES: usize = 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("the secret is empty")]
    Empty,
    #[error("the secret is not base32: {0:?} is not one of A-Z and 2-7")]
    BadCharacter(char),
    #[error("the secret is not valid base32 (its length or last character is wrong)")]
    BadLength,
    #[error("the secret is too short: {bits} bits, at least {min} are needed", min = MIN_SECRET_BYTES * 8)]
    TooShort { bits: usize },
    #[error("the secret is too long: at most {} bytes", MAX_SECRET_BYTES)]
    TooLong,
}

/// A user's OTP shared secret. Prints as `[redacted]`; wiped on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct OtpKey(Vec<u8>);

impl OtpKey {
    /// A new 160-bit secret from the operating system's random number generator.
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; NEW_SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        OtpKey(bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretError> {
        if bytes.is_empty() {
            return Err(SecretError::Empty);
        }
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort { bits: bytes.len() * 8 });
        }
        if bytes.len() > MAX_SECRET_BYTES {
            return Err(SecretError::TooLong);
        }
        Ok(OtpKey(bytes.to_vec()))
    }

    /// Reads a base32 secret the way people paste them: any case, with spaces, dashes and
    /// `=` padding.
    pub fn from_base32(text: &str) -> Result<Self, SecretError> {
        let mut clean = String::with_capacity(text.len());
        for c in text.chars() {
            match c {
                ' ' | '\t' | '-' | '=' => {}
                'a'..='z' | 'A'..='Z' | '2'..='7' => clean.push(c.to_ascii_uppercase()),
                other => return Err(SecretError::BadCharacter(other)),
            }
            if clean.len() > MAX_SECRET_BYTES * 2 {
                return Err(SecretError::TooLong);
            }
        }
        if clean.is_empty() {
            return Err(SecretError::Empty);
        }
        let bytes = BASE32_NOPAD.decode(clean.as_bytes()).map_err(|_| SecretError::BadLength);
        clean.zeroize();
        OtpKey::from_bytes(&bytes?)
    }

    /// Upper-case base32 without padding, as Google Authenticator expects.
    pub fn to_base32(&self) -> String {
        BASE32_NOPAD.encode(&self.0)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for OtpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtpKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_secrets_are_160_bits_and_32_base32_characters() {
        let key = OtpKey::generate();
        assert_eq!(key.as_bytes().len(), 20);
        let text = key.to_base32();
        assert_eq!(text.len(), 32);
        assert!(!text.contains('='));
        assert_ne!(OtpKey::generate(), key);
    }

    #[test]
    fn pasted_secrets_are_normalised() {
        let key = OtpKey::generate();
        let text = key.to_base32();
        let messy: String = text
            .to_lowercase()
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(" - ");
        assert_eq!(OtpKey::from_base32(&messy).unwrap(), key);
        // 10 bytes encode to 16 characters; a padded form is accepted too.
        let ga = OtpKey::from_base32("JBSWY3DPEHPK3PXP").unwrap();
        assert_eq!(ga.as_bytes(), b"Hello!\xde\xad\xbe\xef");
        assert_eq!(OtpKey::from_base32("jbsw y3dp ehpk 3pxp====").unwrap(), ga);
    }

    #[test]
    fn bad_secrets_are_refused_with_a_reason() {
        assert_eq!(OtpKey::from_base32(""), Err(SecretError::Empty));
        assert_eq!(OtpKey::from_base32(" = "), Err(SecretError::Empty));
        assert_eq!(OtpKey::from_base32("JBSWY3DP"), Err(SecretError::TooShort { bits: 40 }));
        assert_eq!(OtpKey::from_base32("JBSWY3DPEHPK3PX1"), Err(SecretError::BadCharacter('1')));
        assert_eq!(OtpKey::from_base32("JBSWY3DPEHPK3PXPA"), Err(SecretError::BadLength));
        assert_eq!(OtpKey::from_base32(&"A".repeat(10_000)), Err(SecretError::TooLong));
        let err = OtpKey::from_base32("JBSWY3DP").unwrap_err().to_string();
        assert!(err.contains("at least 80"), "{err}");
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let key = OtpKey::from_base32("JBSWY3DPEHPK3PXP").unwrap();
        assert_eq!(format!("{key:?}"), "OtpKey([redacted])");
    }
}
