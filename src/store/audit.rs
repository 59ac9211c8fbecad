//! The append-only audit log. Triggers in the schema refuse updates and deletes.
//!
//! Rows name the user, the source address, the method, the session state, the decision and
//! its reason. Nothing that can log a user in (code, password, secret, token) is ever given
//! to this module, so it cannot be written.

use super::Result;
use rusqlite::{named_params, Connection, Row};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditKind {
    /// A login decision made for OpenVPN or `check`.
    Auth,
    /// A change made by an administrator.
    Admin,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::Auth => "auth",
            AuditKind::Admin => "admin",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub at: u64,
    pub kind: AuditKind,
    pub user: Option<String>,
    pub source: Option<String>,
    pub method: Option<String>,
    pub session_state: Option<String>,
    pub decision: String,
    pub reason: Option<String>,
}

impl AuditEntry {
    /// An administrator's action on a user, e.g. `("user-disable", "alice")`.
    pub fn admin(at: u64, action: &str, user: Option<&str>) -> Self {
        AuditEntry {
            at,
            kind: AuditKind::Admin,
            user: user.map(str::to_owned),
            source: Some("cli".into()),
            method: None,
            session_state: None,
            decision: action.to_owned(),
            reason: None,
        }
    }
}

pub fn append(conn: &Connection, entry: &AuditEntry) -> Result<()> {
    conn.execute(
        "INSERT INTO audit (at, kind, user, source, method, session_state, decision, reason)
         VALUES (:at, :kind, :user, :source, :method, :state, :decision, :reason)",
        named_params! {
            ":at": entry.at,
            ":kind": entry.kind.as_str(),
            ":user": entry.user,
            ":source": entry.source,
            ":method": entry.method,
            ":state": entry.session_state,
            ":decision": entry.decision,
            ":reason": entry.reason,
        },
    )?;
    Ok(())
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<AuditEntry> {
    let kind: String = row.get(1)?;
    Ok(AuditEntry {
        at: row.get(0)?,
        kind: if kind == "admin" { AuditKind::Admin } else { AuditKind::Auth },
        user: row.get(2)?,
        source: row.get(3)?,
        method: row.get(4)?,
        session_state: row.get(5)?,
        decision: row.get(6)?,
        reason: row.get(7)?,
    })
}

/// The newest `limit` entries, oldest first, optionally for one user only.
pub fn recent(conn: &Connection, user: Option<&str>, limit: u32) -> Result<Vec<AuditEntry>> {
    let mut stmt = conn.prepare(
        "SELECT at, kind, user, source, method, session_state, decision, reason FROM (
             SELECT * FROM audit WHERE (:user IS NULL OR user = :user)
             ORDER BY id DESC LIMIT :limit
         ) ORDER BY id",
    )?;
    let rows = stmt
        .query_map(named_params! { ":user": user, ":limit": limit }, from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(rows)
}

pub fn count(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::temp_store;

    #[test]
    fn entries_can_be_added_but_never_changed_or_deleted() {
        let (_dir, store) = temp_store();
        append(store.conn(), &AuditEntry::admin(5, "user-add", Some("alice"))).unwrap();
        assert!(store.conn().execute("UPDATE audit SET decision = 'x'", []).is_err());
        assert!(store.conn().execute("DELETE FROM audit", []).is_err());
        let rows = recent(store.conn(), Some("alice"), 10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].decision, "user-add");
        assert!(recent(store.conn(), Some("bob"), 10).unwrap().is_empty());
    }
}
