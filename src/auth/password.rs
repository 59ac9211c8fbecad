//! Optional user passwords, hashed with argon2id.

use crate::config::PasswordConfig;
use crate::secret::Sensitive;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::OnceLock;

fn hasher(config: &PasswordConfig) -> Result<Argon2<'static>, String> {
    let params = Params::new(config.memory_kib, config.iterations, config.parallelism, None)
        .map_err(|e| format!("invalid argon2 cost: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// A PHC string (`$argon2id$v=19$m=...`) for storing.
pub fn hash(password: &Sensitive, config: &PasswordConfig) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let hashed = hasher(config)?
        .hash_password(password.expose().as_bytes(), &salt)
        .map_err(|e| format!("cannot hash the password: {e}"))?;
    Ok(hashed.to_string())
}

/// Checks a password against a stored PHC string; the cost is read from the string itself.
pub fn verify(password: &Sensitive, stored: &Sensitive) -> bool {
    let Ok(parsed) = PasswordHash::new(stored.expose()) else {
        return false;
    };
    Argon2::default().verify_password(password.expose().as_bytes(), &parsed).is_ok()
}

/// Spends the time a real check would, so unknown users take as long as known ones.
pub fn verify_dummy(password: &Sensitive, config: &PasswordConfig) {
    static DUMMY: OnceLock<Option<Sensitive>> = OnceLock::new();
    let stored = DUMMY.get_or_init(|| hash(&"dummy".into(), config).ok().map(Sensitive::from));
    if let Some(stored) = stored {
        let _ = verify(password, stored);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordConfig {
        PasswordConfig { memory_kib: 1024, iterations: 1, parallelism: 1 }
    }

    #[test]
    fn a_hashed_password_verifies_and_others_do_not() {
        let stored = Sensitive::from(hash(&"correct horse".into(), &cheap()).unwrap());
        assert!(stored.expose().starts_with("$argon2id$"));
        assert!(verify(&"correct horse".into(), &stored));
        assert!(!verify(&"correct hors".into(), &stored));
        assert!(!verify(&"x".into(), &"not a hash".into()));
    }
}
