//! Optional user passwords, hashed with argon2id.

use crate::config::PasswordConfig;
use crate::secret::Sensitive;
use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::cell::RefCell;
use std::sync::OnceLock;

thread_local! {
    /// argon2's working memory (19 MiB at the default cost), kept by each thread and reused.
    /// A fresh buffer per check lands in whichever malloc arena is free as threads contend,
    /// and each arena keeps what it got: the plugin's four workers grew OpenVPN's RSS to
    /// 181-785 MiB in a storm of password logins (BENCHMARKS.md).
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

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
/// A string whose cost exceeds the configuration's bounds is refused, not computed: it could
/// only come from outside `set-password`, and computing it could take the server down.
pub fn verify(password: &Sensitive, stored: &Sensitive) -> bool {
    let Ok(parsed) = PasswordHash::new(stored.expose()) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    if !within_bounds(&params) || parsed.algorithm != Algorithm::Argon2id.ident() {
        return false;
    }
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let argon2 = Argon2::new(Algorithm::Argon2id, version, params);
    let mut computed = vec![0u8; expected.len()];
    let hashed = BLOCKS.with(|blocks| {
        let mut blocks = blocks.borrow_mut();
        let count = argon2.params().block_count();
        if blocks.len() < count {
            blocks.resize(count, Block::default());
        }
        let result = argon2.hash_password_into_with_memory(
            password.expose().as_bytes(),
            salt,
            &mut computed,
            &mut blocks[..count],
        );
        // What stays behind is derived from the password: clear it (a memset, cheap next to
        // the hash).
        blocks[..count].fill(Block::default());
        result
    });
    // `Output` compares in constant time.
    hashed.is_ok() && Output::new(&computed).is_ok_and(|computed| computed == expected)
}

fn within_bounds(params: &Params) -> bool {
    use crate::config::{
        MAX_PASSWORD_ITERATIONS, MAX_PASSWORD_MEMORY_KIB, MAX_PASSWORD_PARALLELISM,
    };
    params.m_cost() <= MAX_PASSWORD_MEMORY_KIB
        && params.t_cost() <= MAX_PASSWORD_ITERATIONS
        && params.p_cost() <= MAX_PASSWORD_PARALLELISM
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

    #[test]
    fn a_stored_hash_costlier_than_the_bounds_is_refused_without_computing_it() {
        let stored = hash(&"correct horse".into(), &cheap()).unwrap();
        // The same salt and digest with a cost of 4 TB would abort on allocation if computed.
        let costly = Sensitive::from(stored.replace("m=1024", "m=4000000000"));
        assert!(costly.expose().contains("m=4000000000"));
        assert!(!verify(&"correct horse".into(), &costly));
        let slow = Sensitive::from(stored.replace("t=1", "t=100000000"));
        assert!(slow.expose().contains("t=100000000"));
        assert!(!verify(&"correct horse".into(), &slow));
    }
}
