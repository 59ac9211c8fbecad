//! User names: what is allowed, and the folded form the store keys on.
//!
//! OpenVPN passes almost any byte sequence as a user name, so every name is checked here
//! before it is used anywhere else.

use std::fmt;

pub const MAX_LEN: usize = 64;

const RULE: &str = "1 to 64 ASCII letters, digits and . _ - @, not starting with . or -";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid user name {shown}: use {RULE}")]
pub struct InvalidUsername {
    shown: String,
}

/// A validated user name, folded to lower case.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, InvalidUsername> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
        let ok = !raw.is_empty()
            && raw.len() <= MAX_LEN
            && raw.chars().all(allowed)
            && !raw.starts_with(['.', '-']);
        if ok {
            Ok(Username(raw.to_ascii_lowercase()))
        } else {
            Err(InvalidUsername { shown: printable(raw) })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A short, escaped form of untrusted text, safe to put in a log line or an error: control
/// characters and non-ASCII are escaped, anything past 64 characters is cut, and the result is
/// quoted unless it is a plain word (so `key=value` log lines stay unambiguous).
pub fn printable(raw: &str) -> String {
    let plain =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | ':' | '/');
    if !raw.is_empty() && raw.len() <= MAX_LEN && raw.chars().all(plain) {
        return raw.to_owned();
    }
    let mut out: String = raw.chars().take(MAX_LEN).flat_map(char::escape_default).collect();
    if raw.chars().count() > MAX_LEN {
        out.push_str("...");
    }
    format!("\"{out}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_accepted_and_folded() {
        for name in ["alice", "Bob.Smith", "carol_d-1", "dave@example.com", "x"] {
            let user = Username::parse(name).unwrap();
            assert_eq!(user.as_str(), name.to_ascii_lowercase());
        }
        assert_eq!(Username::parse(&"a".repeat(64)).unwrap().as_str().len(), 64);
    }

    #[test]
    fn hostile_names_are_refused_with_the_rule() {
        let long = "a".repeat(65);
        let bad = [
            "",
            "..",
            "../etc/passwd",
            "a/b",
            "a b",
            "a\nb",
            "a\0b",
            "-rf",
            ".hidden",
            "аlice", // Cyrillic a
            "alice\u{200b}",
            "a;b",
            "a\"b",
            "a$b",
            &long,
        ];
        for name in bad {
            let err = Username::parse(name).unwrap_err().to_string();
            assert!(err.contains("1 to 64 ASCII letters"), "{name:?}: {err}");
            assert!(!err.contains('\n') && !err.contains('\0'), "{err:?}");
        }
    }

    #[test]
    fn printable_escapes_and_truncates() {
        assert_eq!(printable("a\nb"), "\"a\\nb\"");
        assert_eq!(printable("192.0.2.1"), "192.0.2.1");
        assert_eq!(printable("a b"), "\"a b\"");
        assert_eq!(printable(""), "\"\"");
        assert!(printable(&"x".repeat(5000)).len() < 80);
    }
}
