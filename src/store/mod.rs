//! The embedded SQLite store: users, replay state, lockouts, recovery codes, sessions and
//! the audit log.
//!
//! One file in the data directory, created 0600, in WAL mode so readers never wait for the
//! writer. Every read-modify-write on the auth path runs in a `BEGIN IMMEDIATE` transaction,
//! which makes "check the step, then record it" atomic across processes.

pub mod audit;
pub mod recovery;
mod schema;
pub mod sessions;
pub mod users;

pub use audit::{AuditEntry, AuditKind};
pub use users::{ClientMethod, NewUser, User, UserState};

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no store at {0} (run `ovpn-mfa init` first, or pass the right --dir)")]
    Missing(PathBuf),
    #[error("cannot open the store {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("the store is busy (locked by another process for too long)")]
    Busy,
    #[error(
        "the store {0} is empty (was it truncated?): restore it from a backup, or run \
         `ovpn-mfa init` to start a new one without users"
    )]
    Empty(PathBuf),
    #[error("{0} is an SQLite database but not an ovpn-mfa store: pass the right --dir")]
    Foreign(PathBuf),
    #[error("the store was written by a newer ovpn-mfa (schema {found}, this one knows {known})")]
    TooNew { found: i64, known: i64 },
    #[error("user {0} already exists")]
    UserExists(String),
    #[error("no user {0}")]
    NoSuchUser(String),
    #[error(
        "the store is damaged ({0}): stop OpenVPN and restore it from a backup \
         (`ovpn-mfa doctor` checks it)"
    )]
    Corrupt(String),
    #[error("store error: {0}")]
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Busy
            }
            Some(rusqlite::ErrorCode::DatabaseCorrupt) => StoreError::Corrupt(e.to_string()),
            _ => StoreError::Sqlite(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How long a call waits for another process's write lock before giving up.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`Store::survey`] found at a store's path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    Missing,
    Empty,
    Store,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Creates the store file (mode 0600) if it does not exist and brings its schema up to
    /// date. Used by `init`; an existing store is kept as it is.
    pub fn create(path: &Path) -> Result<Self> {
        let open_err =
            |e: std::io::Error| StoreError::Open { path: path.to_owned(), message: e.to_string() };
        OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(open_err)?;
        Self::open_as(path, DEFAULT_BUSY_TIMEOUT, schema::Start::MayBeNew)
    }

    /// Opens an existing store, migrating it forward if it is older than this program. An
    /// empty file is refused rather than silently made into a store without users.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Self> {
        Self::open_as(path, busy_timeout, schema::Start::Existing)
    }

    fn open_as(path: &Path, busy_timeout: Duration, start: schema::Start) -> Result<Self> {
        if !path.exists() {
            return Err(StoreError::Missing(path.to_owned()));
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        // A lock held past the timeout is Busy here too (a holder in exclusive locking mode,
        // or another process recovering the WAL after a crash), so callers can retry later.
        let open_err = |e: rusqlite::Error| match StoreError::from(e) {
            StoreError::Sqlite(e) => {
                StoreError::Open { path: path.to_owned(), message: e.to_string() }
            }
            busy => busy,
        };
        let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
        conn.busy_timeout(busy_timeout)?;
        schema::check_start(&conn, start, path).map_err(|e| match e {
            StoreError::Sqlite(e) => open_err(e),
            other => other,
        })?;
        // WAL needs a write the first time; a read-only file or directory fails here.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut store = Store { conn, path: path.to_owned() };
        schema::migrate(&mut store.conn)?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's permission bits, to warn when they are wider than 0600.
    pub fn mode(&self) -> std::io::Result<u32> {
        Ok(std::fs::metadata(&self.path)?.permissions().mode() & 0o777)
    }

    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// A write transaction that takes the write lock at once, so everything read inside it
    /// is still true when it commits.
    pub fn write(&mut self) -> Result<Transaction<'_>> {
        Ok(self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
    }

    /// Reads a store file and checks its structure (`PRAGMA quick_check`) and schema (every
    /// table and trigger it should have) without writing to it or migrating it: for
    /// `doctor`, which must change nothing.
    pub fn check_file(path: &Path) -> Result<(), String> {
        match Self::survey(path)? {
            Found::Store => Ok(()),
            Found::Missing => Err("it does not exist".into()),
            Found::Empty => {
                Err("it holds no ovpn-mfa schema (empty, or another program's database)".into())
            }
        }
    }

    /// What is at `path`, read without writing to it: nothing, an empty file (or an SQLite
    /// database with nothing in it), or a sound store. `Err` says what is wrong with a file
    /// that is none of these: damaged, another program's database, or from a newer version.
    pub fn survey(path: &Path) -> Result<Found, String> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
            Err(e) => return Err(e.to_string()),
            Ok(meta) if meta.len() == 0 => return Ok(Found::Empty),
            Ok(_) => {}
        }
        let conn = open_to_read(path).map_err(|e| e.to_string())?;
        let version: i64 =
            conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| e.to_string())?;
        if version > schema::CURRENT {
            return Err(StoreError::TooNew { found: version, known: schema::CURRENT }.to_string());
        }
        let mut stmt = conn.prepare("PRAGMA quick_check(5)").map_err(|e| e.to_string())?;
        let problems: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| e.to_string())?;
        if problems != ["ok"] {
            // Its first row starts "*** in database main ***" and a line break.
            return Err(problems.join("; ").replace('\n', " "));
        }
        let found = schema::objects(&conn).map_err(|e| e.to_string())?;
        if version == 0 {
            return match found.is_empty() {
                true => Ok(Found::Empty),
                false => Err("it is an SQLite database but not an ovpn-mfa store".into()),
            };
        }
        let missing: Vec<String> = schema::expected_objects(version)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|object| !found.contains(object))
            .map(|(kind, name)| format!("{kind} {name}"))
            .collect();
        if !missing.is_empty() {
            return Err(format!("its schema lacks {}", missing.join(", ")));
        }
        Ok(Found::Store)
    }

    pub fn integrity_check(&self) -> Result<(), String> {
        let result: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        if result == "ok" {
            Ok(())
        } else {
            Err(result)
        }
    }
}

/// A read-only connection that leaves no trace. A store nobody has open has no -wal or -shm
/// file, and even a read-only connection would create them (and leave the -wal behind when
/// the file is damaged), so such a store is opened as immutable: no locks, no side files.
fn open_to_read(path: &Path) -> rusqlite::Result<Connection> {
    use std::os::unix::ffi::OsStrExt;
    let side = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name).exists()
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = if side("-wal") || side("-shm") {
        Connection::open_with_flags(path, flags)?
    } else {
        let mut uri = String::from("file:");
        for &b in path.as_os_str().as_bytes() {
            match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'-' | b'.' | b'_' | b'~' => {
                    uri.push(b as char)
                }
                _ => uri.push_str(&format!("%{b:02X}")),
            }
        }
        uri.push_str("?immutable=1");
        Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)?
    };
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

#[cfg(test)]
pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(&dir.path().join("test.sqlite")).unwrap();
    (dir, store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_store_is_private_and_at_the_current_schema() {
        let (_dir, store) = temp_store();
        assert_eq!(store.mode().unwrap(), 0o600);
        let version: i64 = store.conn().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, schema::CURRENT);
        let mode: String = store.conn().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        assert!(store.integrity_check().is_ok());
    }

    #[test]
    fn opening_a_missing_store_says_to_run_init() {
        let dir = tempfile::tempdir().unwrap();
        let err = Store::open(&dir.path().join("nope.sqlite"), DEFAULT_BUSY_TIMEOUT).err().unwrap();
        assert!(err.to_string().contains("ovpn-mfa init"), "{err}");
    }

    #[test]
    fn a_store_from_a_newer_version_is_refused_and_left_alone() {
        let (dir, store) = temp_store();
        store.conn().pragma_update(None, "user_version", 99).unwrap();
        drop(store);
        let path = dir.path().join("test.sqlite");
        let err = Store::open(&path, DEFAULT_BUSY_TIMEOUT).err().unwrap();
        assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
    }

    #[test]
    fn an_emptied_store_is_refused_not_made_into_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ovpn-mfa.sqlite");
        std::fs::write(&path, b"").unwrap();
        let err = Store::open(&path, DEFAULT_BUSY_TIMEOUT).err().unwrap();
        assert!(matches!(err, StoreError::Empty(_)), "{err}");
        assert!(err.to_string().contains("backup"), "{err}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "the empty file was written to");
        // `init` may start afresh in it.
        assert!(Store::create(&path).is_ok());
    }

    #[test]
    fn another_programs_database_is_refused_and_left_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.sqlite");
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('x');")
            .unwrap();
        drop(other);
        for err in [
            Store::open(&path, DEFAULT_BUSY_TIMEOUT).err().unwrap(),
            Store::create(&path).err().unwrap(),
        ] {
            assert!(matches!(err, StoreError::Foreign(_)), "{err}");
            assert!(!err.to_string().contains("CREATE"), "{err}");
        }
        let other = Connection::open(&path).unwrap();
        let tables: i64 =
            other.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0)).unwrap();
        assert_eq!(tables, 1, "tables were added to another program's database");
    }

    #[test]
    fn a_survey_finds_missing_empty_sound_and_incomplete_stores() {
        let (dir, store) = temp_store();
        let path = dir.path().join("test.sqlite");
        assert_eq!(Store::survey(&path), Ok(Found::Store));
        store.conn().execute_batch("DROP TABLE sessions; DROP TRIGGER audit_no_delete;").unwrap();
        drop(store);
        let err = Store::survey(&path).unwrap_err();
        assert!(err.contains("table sessions") && err.contains("trigger audit_no_delete"), "{err}");
        assert!(!err.contains("table users"), "{err}");

        // An odd name survives the URI the store is opened through, and nothing is left
        // beside it.
        let odd = dir.path().join("a ?b#%20.sqlite");
        std::fs::copy(&path, &odd).unwrap();
        assert!(Store::survey(&odd).unwrap_err().contains("table sessions"));
        let mut names: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["a ?b#%20.sqlite", "test.sqlite"]);

        assert_eq!(Store::survey(&dir.path().join("none")), Ok(Found::Missing));
        let empty = dir.path().join("empty.sqlite");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(Store::survey(&empty), Ok(Found::Empty));
        let foreign = dir.path().join("other.sqlite");
        Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE notes (x);").unwrap();
        assert!(Store::survey(&foreign).unwrap_err().contains("not an ovpn-mfa store"));
    }

    #[test]
    fn a_corrupt_file_gives_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.sqlite");
        std::fs::write(&path, b"this is not a database, just some text that is long enough")
            .unwrap();
        let err = Store::open(&path, DEFAULT_BUSY_TIMEOUT).err().unwrap();
        assert!(err.to_string().contains("not a database"), "{err}");
        assert!(std::fs::read(&path).unwrap().starts_with(b"this is not a database"));
    }
}
