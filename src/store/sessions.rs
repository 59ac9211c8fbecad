//! OpenVPN auth-token sessions: which user a `session_id` belongs to and when it started.
//!
//! A session is bound at the first full login (session_state `Initial`); renegotiations
//! that present the token are checked against it.

use super::Result;
use rusqlite::{Connection, OptionalExtension};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub user_id: i64,
    pub created_at: u64,
    pub last_seen: u64,
}

pub fn bind(conn: &Connection, session_id: &str, user_id: i64, now: u64) -> Result<()> {
    conn.execute(
        "INSERT OR REPLACE INTO sessions (session_id, user_id, created_at, last_seen)
         VALUES (?1, ?2, ?3, ?3)",
        rusqlite::params![session_id, user_id, now],
    )?;
    Ok(())
}

pub fn get(conn: &Connection, session_id: &str) -> Result<Option<Session>> {
    Ok(conn
        .query_row(
            "SELECT user_id, created_at, last_seen FROM sessions WHERE session_id = ?1",
            [session_id],
            |r| Ok(Session { user_id: r.get(0)?, created_at: r.get(1)?, last_seen: r.get(2)? }),
        )
        .optional()?)
}

pub fn touch(conn: &Connection, session_id: &str, now: u64) -> Result<()> {
    conn.execute(
        "UPDATE sessions SET last_seen = ?2 WHERE session_id = ?1",
        rusqlite::params![session_id, now],
    )?;
    Ok(())
}

/// Forgets sessions not seen for `idle_secs`, so the table stays small.
pub fn prune(conn: &Connection, now: u64, idle_secs: u64) -> Result<usize> {
    Ok(conn.execute("DELETE FROM sessions WHERE last_seen < ?1", [now.saturating_sub(idle_secs)])?)
}

pub fn end_all_for_user(conn: &Connection, user_id: i64) -> Result<usize> {
    Ok(conn.execute("DELETE FROM sessions WHERE user_id = ?1", [user_id])?)
}
