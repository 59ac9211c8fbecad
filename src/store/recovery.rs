//! Single-use recovery codes, stored as salted SHA-256 digests.
//!
//! A fast hash is enough here: each code carries 50 random bits, and anyone who can read the
//! store can read the OTP secrets next to it anyway.

use super::Result;
use rusqlite::Connection;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

fn digest(salt: &[u8], code: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(code.as_bytes());
    h.finalize().to_vec()
}

/// Revokes every earlier code of the user and stores the new ones (already normalised).
pub fn replace(conn: &Connection, user_id: i64, codes: &[String]) -> Result<()> {
    conn.execute("DELETE FROM recovery_codes WHERE user_id = ?1", [user_id])?;
    let mut stmt =
        conn.prepare("INSERT INTO recovery_codes (user_id, salt, hash) VALUES (?1, ?2, ?3)")?;
    for code in codes {
        let salt: [u8; 16] = rand::random();
        stmt.execute(rusqlite::params![user_id, &salt[..], digest(&salt, code)])?;
    }
    Ok(())
}

/// Marks the matching unused code as used; true if there was one. Every unused code is
/// compared, in constant time, whatever matches.
pub fn consume(conn: &Connection, user_id: i64, code: &str, now: u64) -> Result<bool> {
    let mut stmt = conn.prepare(
        "SELECT id, salt, hash FROM recovery_codes WHERE user_id = ?1 AND used_at IS NULL",
    )?;
    let rows = stmt
        .query_map([user_id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, Vec<u8>>(2)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut found = None;
    for (id, salt, hash) in rows {
        if bool::from(digest(&salt, code).ct_eq(&hash)) && found.is_none() {
            found = Some(id);
        }
    }
    let Some(id) = found else { return Ok(false) };
    let changed = conn.execute(
        "UPDATE recovery_codes SET used_at = ?2 WHERE id = ?1 AND used_at IS NULL",
        rusqlite::params![id, now],
    )?;
    Ok(changed == 1)
}

pub fn remaining(conn: &Connection, user_id: i64) -> Result<u32> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM recovery_codes WHERE user_id = ?1 AND used_at IS NULL",
        [user_id],
        |r| r.get(0),
    )?)
}
