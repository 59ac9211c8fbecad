//! Schema versions, kept in `PRAGMA user_version`. Each step moves one version forward and
//! runs in its own transaction; old steps are never edited once released.

use super::{Result, StoreError};
use rusqlite::Connection;

const STEPS: &[&str] = &[
    // 0 -> 1: the first schema.
    r#"
    CREATE TABLE users (
        id                INTEGER PRIMARY KEY,
        name              TEXT NOT NULL UNIQUE,
        state             TEXT NOT NULL CHECK (state IN ('enabled', 'disabled')),
        secret            BLOB NOT NULL,
        algorithm         TEXT NOT NULL,
        digits            INTEGER NOT NULL,
        period            INTEGER NOT NULL,
        password_hash     TEXT,
        client_method     TEXT NOT NULL,
        last_step         INTEGER,
        fail_count        INTEGER NOT NULL DEFAULT 0,
        fail_window_start INTEGER NOT NULL DEFAULT 0,
        last_fail_tag     BLOB,
        locked_until      INTEGER NOT NULL DEFAULT 0,
        lockout_level     INTEGER NOT NULL DEFAULT 0,
        created_at        INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL
    );
    CREATE TABLE recovery_codes (
        id       INTEGER PRIMARY KEY,
        user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        salt     BLOB NOT NULL,
        hash     BLOB NOT NULL,
        used_at  INTEGER
    );
    CREATE INDEX recovery_codes_user ON recovery_codes (user_id);
    CREATE TABLE sessions (
        session_id  TEXT PRIMARY KEY,
        user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        created_at  INTEGER NOT NULL,
        last_seen   INTEGER NOT NULL
    );
    CREATE TABLE audit (
        id             INTEGER PRIMARY KEY,
        at             INTEGER NOT NULL,
        kind           TEXT NOT NULL,
        user           TEXT,
        source         TEXT,
        method         TEXT,
        session_state  TEXT,
        decision       TEXT NOT NULL,
        reason         TEXT
    );
    CREATE INDEX audit_user ON audit (user, at);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    "#,
];

pub const CURRENT: i64 = STEPS.len() as i64;

/// Whether a file without any schema may be made into a store (`init`) or must already be one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Start {
    MayBeNew,
    Existing,
}

/// Refuses, before anything is written, a file that is not a store this program may use:
/// one from a newer version, another program's database, or (unless starting one) an empty
/// file.
pub fn check_start(conn: &Connection, start: Start, path: &std::path::Path) -> Result<()> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > CURRENT {
        return Err(StoreError::TooNew { found, known: CURRENT });
    }
    if found == 0 {
        let objects: i64 =
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if objects > 0 {
            return Err(StoreError::Foreign(path.to_owned()));
        }
        if start == Start::Existing {
            return Err(StoreError::Empty(path.to_owned()));
        }
    }
    Ok(())
}

/// The tables and triggers a store at `version` has (the schema's steps up to it, run in
/// memory), as (type, name).
pub fn expected_objects(version: i64) -> Result<Vec<(String, String)>> {
    let mut conn = Connection::open_in_memory()?;
    for step in STEPS.iter().take(version.clamp(0, CURRENT) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(step)?;
        tx.commit()?;
    }
    objects(&conn)
}

/// The tables and triggers in `conn`'s database, as (type, name).
pub fn objects(conn: &Connection) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare(
        "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'trigger') \
         AND name NOT LIKE 'sqlite_%' ORDER BY type, name",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn migrate(conn: &mut Connection) -> Result<()> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > CURRENT {
        return Err(StoreError::TooNew { found, known: CURRENT });
    }
    for (index, step) in STEPS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
        // Another process may have migrated while we waited for the lock.
        let now: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if now > index as i64 {
            continue;
        }
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
