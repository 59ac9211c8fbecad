//! The users table: enrolment, state, replay and lockout counters.

use super::{Result, StoreError};
use crate::otp::{OtpKey, TotpParams};
use crate::secret::Sensitive;
use crate::username::Username;
use rusqlite::{named_params, Connection, OptionalExtension, Row};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UserState {
    Enabled,
    Disabled,
}

impl UserState {
    pub fn as_str(self) -> &'static str {
        match self {
            UserState::Enabled => "enabled",
            UserState::Disabled => "disabled",
        }
    }
}

/// How the user's OpenVPN client sends the code. The verifier accepts every form whatever is
/// set here; this only decides which lines `openvpn client-config` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClientMethod {
    /// The code alone in the password field.
    Otp,
    /// Password followed directly by the code, in the password field.
    Concat,
    /// OpenVPN's static challenge: the client asks for the code separately (SCRV1).
    Scrv1,
}

impl ClientMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientMethod::Otp => "otp",
            ClientMethod::Concat => "concat",
            ClientMethod::Scrv1 => "scrv1",
        }
    }
}

impl FromStr for ClientMethod {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "otp" => Ok(ClientMethod::Otp),
            "concat" => Ok(ClientMethod::Concat),
            "scrv1" => Ok(ClientMethod::Scrv1),
            other => Err(format!("unknown client method {other:?}")),
        }
    }
}

impl fmt::Display for ClientMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the users table.
#[derive(Clone, Debug)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub state: UserState,
    pub key: OtpKey,
    pub params: TotpParams,
    pub password_hash: Option<Sensitive>,
    pub client_method: ClientMethod,
    pub last_step: Option<u64>,
    pub lock: LockState,
    pub created_at: u64,
    pub updated_at: u64,
}

/// The failure counters behind rate limiting and lockout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockState {
    pub fail_count: u32,
    pub fail_window_start: u64,
    /// A digest of the last failed attempt, so a client resending it counts once.
    pub last_fail_tag: Option<Vec<u8>>,
    pub locked_until: u64,
    pub lockout_level: u32,
}

pub struct NewUser<'a> {
    pub name: &'a Username,
    pub key: &'a OtpKey,
    pub params: TotpParams,
    pub password_hash: Option<&'a str>,
    pub client_method: ClientMethod,
}

const COLUMNS: &str = "id, name, state, secret, algorithm, digits, period, password_hash, \
     client_method, last_step, fail_count, fail_window_start, last_fail_tag, locked_until, \
     lockout_level, created_at, updated_at";

fn from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    let bad = |i: usize, what: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, what.into())
    };
    let state: String = row.get(2)?;
    let secret: Vec<u8> = row.get(3)?;
    let algorithm: String = row.get(4)?;
    let method: String = row.get(8)?;
    Ok(User {
        id: row.get(0)?,
        name: row.get(1)?,
        state: match state.as_str() {
            "enabled" => UserState::Enabled,
            _ => UserState::Disabled,
        },
        key: OtpKey::from_bytes(&secret).map_err(|e| bad(3, e.to_string()))?,
        params: TotpParams {
            algorithm: algorithm.parse().map_err(|e| bad(4, e))?,
            digits: row.get(5)?,
            period: row.get(6)?,
        },
        password_hash: row.get::<_, Option<String>>(7)?.map(Sensitive::from),
        client_method: method.parse().map_err(|e| bad(8, e))?,
        last_step: row.get(9)?,
        lock: LockState {
            fail_count: row.get(10)?,
            fail_window_start: row.get(11)?,
            last_fail_tag: row.get(12)?,
            locked_until: row.get(13)?,
            lockout_level: row.get(14)?,
        },
        created_at: row.get(15)?,
        updated_at: row.get(16)?,
    })
}

pub fn get(conn: &Connection, name: &Username) -> Result<Option<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE name = ?1");
    Ok(conn.query_row(&sql, [name.as_str()], from_row).optional()?)
}

pub fn get_by_id(conn: &Connection, id: i64) -> Result<Option<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], from_row).optional()?)
}

pub fn require(conn: &Connection, name: &Username) -> Result<User> {
    get(conn, name)?.ok_or_else(|| StoreError::NoSuchUser(name.to_string()))
}

pub fn list(conn: &Connection) -> Result<Vec<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users ORDER BY name");
    let mut stmt = conn.prepare(&sql)?;
    let users = stmt.query_map([], from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(users)
}

pub fn insert(conn: &Connection, user: &NewUser<'_>, now: u64) -> Result<i64> {
    let result = conn.execute(
        "INSERT INTO users (name, state, secret, algorithm, digits, period, password_hash,
                            client_method, created_at, updated_at)
         VALUES (:name, 'enabled', :secret, :alg, :digits, :period, :pw, :method, :now, :now)",
        named_params! {
            ":name": user.name.as_str(),
            ":secret": user.key.as_bytes(),
            ":alg": user.params.algorithm.as_str(),
            ":digits": user.params.digits,
            ":period": user.params.period,
            ":pw": user.password_hash,
            ":method": user.client_method.as_str(),
            ":now": now,
        },
    );
    match result {
        Ok(_) => Ok(conn.last_insert_rowid()),
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
            Err(StoreError::UserExists(user.name.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

fn update_one(conn: &Connection, name: &Username, sql: &str, now: u64) -> Result<()> {
    let changed = conn.execute(sql, named_params! { ":name": name.as_str(), ":now": now })?;
    if changed == 0 {
        return Err(StoreError::NoSuchUser(name.to_string()));
    }
    Ok(())
}

pub fn set_state(conn: &Connection, name: &Username, state: UserState, now: u64) -> Result<()> {
    let sql = format!(
        "UPDATE users SET state = '{}', updated_at = :now WHERE name = :name",
        state.as_str()
    );
    update_one(conn, name, &sql, now)
}

pub fn remove(conn: &Connection, name: &Username) -> Result<()> {
    let changed = conn.execute("DELETE FROM users WHERE name = ?1", [name.as_str()])?;
    if changed == 0 {
        return Err(StoreError::NoSuchUser(name.to_string()));
    }
    Ok(())
}

/// Replaces the OTP secret; the old one stops working at once and the replay state starts
/// over, since steps of the old secret say nothing about the new one.
pub fn replace_secret(
    conn: &Connection,
    name: &Username,
    key: &OtpKey,
    params: &TotpParams,
    now: u64,
) -> Result<()> {
    let changed = conn.execute(
        "UPDATE users SET secret = :secret, algorithm = :alg, digits = :digits, period = :period,
                last_step = NULL, updated_at = :now
         WHERE name = :name",
        named_params! {
            ":secret": key.as_bytes(),
            ":alg": params.algorithm.as_str(),
            ":digits": params.digits,
            ":period": params.period,
            ":now": now,
            ":name": name.as_str(),
        },
    )?;
    if changed == 0 {
        return Err(StoreError::NoSuchUser(name.to_string()));
    }
    Ok(())
}

pub fn set_password_hash(
    conn: &Connection,
    name: &Username,
    hash: Option<&str>,
    now: u64,
) -> Result<()> {
    let changed = conn.execute(
        "UPDATE users SET password_hash = ?1, updated_at = ?2 WHERE name = ?3",
        rusqlite::params![hash, now, name.as_str()],
    )?;
    if changed == 0 {
        return Err(StoreError::NoSuchUser(name.to_string()));
    }
    Ok(())
}

/// Clears the failure counters and any lockout.
pub fn unlock(conn: &Connection, name: &Username, now: u64) -> Result<()> {
    update_one(
        conn,
        name,
        "UPDATE users SET fail_count = 0, fail_window_start = 0, last_fail_tag = NULL,
                locked_until = 0, lockout_level = 0, updated_at = :now
         WHERE name = :name",
        now,
    )
}

/// Records `step` as the user's last accepted step, but only if it is later than the one
/// stored: returns false when another verification got there first. A success also clears
/// the failure counters and the lockout level.
pub fn record_success(conn: &Connection, id: i64, step: Option<u64>) -> Result<bool> {
    let changed = conn.execute(
        "UPDATE users SET last_step = COALESCE(:step, last_step), fail_count = 0,
                fail_window_start = 0, last_fail_tag = NULL, locked_until = 0, lockout_level = 0
         WHERE id = :id AND (:step IS NULL OR last_step IS NULL OR last_step < :step)",
        named_params! { ":step": step, ":id": id },
    )?;
    Ok(changed == 1)
}

pub fn save_lock_state(conn: &Connection, id: i64, lock: &LockState) -> Result<()> {
    conn.execute(
        "UPDATE users SET fail_count = :count, fail_window_start = :start, last_fail_tag = :tag,
                locked_until = :until, lockout_level = :level
         WHERE id = :id",
        named_params! {
            ":count": lock.fail_count,
            ":start": lock.fail_window_start,
            ":tag": lock.last_fail_tag,
            ":until": lock.locked_until,
            ":level": lock.lockout_level,
            ":id": id,
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::temp_store;

    fn add(conn: &Connection, name: &str) -> Username {
        let name = Username::parse(name).unwrap();
        let key = OtpKey::generate();
        let new = NewUser {
            name: &name,
            key: &key,
            params: TotpParams::default(),
            password_hash: None,
            client_method: ClientMethod::Otp,
        };
        insert(conn, &new, 100).unwrap();
        name
    }

    #[test]
    fn names_are_unique_whatever_their_case() {
        let (_dir, store) = temp_store();
        add(store.conn(), "Alice");
        let again = Username::parse("ALICE").unwrap();
        let key = OtpKey::generate();
        let new = NewUser {
            name: &again,
            key: &key,
            params: TotpParams::default(),
            password_hash: None,
            client_method: ClientMethod::Otp,
        };
        let err = insert(store.conn(), &new, 100).unwrap_err();
        assert!(matches!(err, StoreError::UserExists(_)), "{err}");
        assert_eq!(list(store.conn()).unwrap().len(), 1);
    }

    #[test]
    fn a_step_is_recorded_only_when_it_is_later() {
        let (_dir, store) = temp_store();
        let name = add(store.conn(), "bob");
        let id = require(store.conn(), &name).unwrap().id;
        assert!(record_success(store.conn(), id, Some(10)).unwrap());
        assert!(!record_success(store.conn(), id, Some(10)).unwrap());
        assert!(!record_success(store.conn(), id, Some(9)).unwrap());
        assert!(record_success(store.conn(), id, Some(11)).unwrap());
        assert_eq!(require(store.conn(), &name).unwrap().last_step, Some(11));
    }

    #[test]
    fn a_new_secret_forgets_the_replay_state() {
        let (_dir, store) = temp_store();
        let name = add(store.conn(), "carol");
        let id = require(store.conn(), &name).unwrap().id;
        record_success(store.conn(), id, Some(10)).unwrap();
        let key = OtpKey::generate();
        replace_secret(store.conn(), &name, &key, &TotpParams::default(), 200).unwrap();
        let user = require(store.conn(), &name).unwrap();
        assert_eq!(user.key, key);
        assert_eq!(user.last_step, None);
    }

    #[test]
    fn changes_to_missing_users_say_so() {
        let (_dir, store) = temp_store();
        let ghost = Username::parse("ghost").unwrap();
        assert!(matches!(remove(store.conn(), &ghost), Err(StoreError::NoSuchUser(_))));
        assert!(matches!(unlock(store.conn(), &ghost, 1), Err(StoreError::NoSuchUser(_))));
        let disabled = set_state(store.conn(), &ghost, UserState::Disabled, 1);
        assert!(matches!(disabled, Err(StoreError::NoSuchUser(_))));
    }
}
