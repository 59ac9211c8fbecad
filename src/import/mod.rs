//! `import ...`: bringing users over from other OTP systems so they keep their phone entries.
//!
//! Only google-authenticator-libpam for now. Each file is imported in its own transaction
//! with its own audit row, so one bad file never stops the others; nothing read from a file
//! is ever printed, since every line of it is a secret.

pub mod google_authenticator;

use crate::auth::normalise_recovery_code;
use crate::cli::output::outln;
use crate::cli::{Context, JsonFlag};
use crate::otp::{Algorithm, TotpParams};
use crate::store::users::{self, ClientMethod, NewUser};
use crate::store::{audit, recovery, AuditEntry, Store, StoreError};
use crate::username::Username;
use anyhow::Result;
use clap::{Args, Subcommand};
use google_authenticator::GaFile;
use serde::Serialize;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroize;

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Import the per-user files of google-authenticator-libpam (~/.google_authenticator).
    ///
    /// Each PATH is a file, or a directory whose regular files are all imported (symbolic
    /// links and subdirectories in it are skipped). The user name comes from the file name:
    /// `alice`, `.alice` and `alice.google_authenticator` all become `alice`. A file named
    /// `.google_authenticator` is taken to be in its owner's home directory and is imported
    /// for the owner of that directory, who must also own the file; `--user` overrides this.
    ///
    /// The secret, step size and scratch codes are kept, so the phone entry keeps working
    /// and each scratch code works once as a recovery code. Codes are SHA1 with 6 digits.
    /// Counter-based (HOTP) files are refused. Existing users are skipped, never changed.
    /// One line per file says what happened (or a JSON array with --json); the exit status
    /// is 1 if any file could not be imported.
    GoogleAuthenticator(GoogleAuthenticatorArgs),
}

#[derive(Args, Debug)]
pub struct GoogleAuthenticatorArgs {
    /// Files or directories to import.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The user name to import a single file as, instead of one derived from its name.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Read and check everything and say what would be imported, but change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub json: JsonFlag,
}

pub fn run(ctx: &Context, command: ImportCommand) -> Result<i32> {
    match command {
        ImportCommand::GoogleAuthenticator(args) => google_authenticator(ctx, &args),
    }
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileStatus {
    Imported,
    WouldImport,
    Skipped,
    Failed,
}

#[derive(Debug, Serialize)]
pub struct FileReport {
    pub path: String,
    pub user: Option<String>,
    pub status: FileStatus,
    pub detail: String,
    pub recovery_codes: Option<usize>,
    pub period: Option<u64>,
    pub notes: Vec<String>,
}

impl FileReport {
    fn new(path: &Path, status: FileStatus, detail: impl Into<String>) -> Self {
        FileReport {
            path: shown_path(path),
            user: None,
            status,
            detail: detail.into(),
            recovery_codes: None,
            period: None,
            notes: Vec::new(),
        }
    }

    /// The report's one line: `PATH: what happened; notes`.
    fn line(&self) -> String {
        let mut line = format!("{}: {}", self.path, self.detail);
        for note in &self.notes {
            line.push_str("; note: ");
            line.push_str(note);
        }
        line
    }
}

fn google_authenticator(ctx: &Context, args: &GoogleAuthenticatorArgs) -> Result<i32> {
    let entries = expand(&args.paths);
    let files = entries.iter().filter(|e| matches!(e, Entry::File(_))).count();
    anyhow::ensure!(
        args.user.is_none() || files == 1,
        "--user names one user, so it takes exactly one file ({files} given)"
    );
    let forced = match &args.user {
        Some(name) => Some(Username::parse(name)?),
        None => None,
    };
    let config = ctx.config()?;
    let mut store = ctx.store()?;

    let mut reports = Vec::new();
    for entry in entries {
        let report = match entry {
            Entry::File(path) => {
                import_one(&mut store, config.otp.window, &path, forced.as_ref(), args.dry_run)
            }
            Entry::Report(report) => report,
        };
        if !args.json.json {
            outln!("{}", report.line())?;
        }
        reports.push(report);
    }

    if args.json.json {
        outln!("{}", serde_json::to_string_pretty(&reports)?)?;
    }
    Ok(if reports.iter().any(|r| r.status == FileStatus::Failed) { 1 } else { 0 })
}

/// A file to import, or what was found instead of one.
enum Entry {
    File(PathBuf),
    Report(FileReport),
}

/// The paths named on the command line, directories opened one level, in order. What is not
/// a regular file is reported: skipped inside a directory, failed when named.
fn expand(paths: &[PathBuf]) -> Vec<Entry> {
    let mut entries = Vec::new();
    for path in paths {
        let failed =
            |detail: String| Entry::Report(FileReport::new(path, FileStatus::Failed, detail));
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) => {
                entries.push(failed(format!("not imported: {e}")));
                continue;
            }
        };
        if meta.is_file() {
            entries.push(Entry::File(path.clone()));
            continue;
        }
        if !meta.is_dir() {
            entries.push(failed("not imported: not a regular file".into()));
            continue;
        }
        let listing = match std::fs::read_dir(path) {
            Ok(listing) => listing,
            Err(e) => {
                entries.push(failed(format!("directory not read: {e}")));
                continue;
            }
        };
        let mut inside: Vec<PathBuf> = listing.filter_map(|e| e.ok().map(|e| e.path())).collect();
        inside.sort();
        for entry in inside {
            // symlink_metadata: a link in a directory of copies is not followed.
            match std::fs::symlink_metadata(&entry) {
                Ok(meta) if meta.is_file() => entries.push(Entry::File(entry)),
                _ => entries.push(Entry::Report(FileReport::new(
                    &entry,
                    FileStatus::Skipped,
                    "skipped: not a regular file",
                ))),
            }
        }
    }
    entries
}

fn import_one(
    store: &mut Store,
    our_window: u64,
    path: &Path,
    forced: Option<&Username>,
    dry_run: bool,
) -> FileReport {
    let failed = |detail: String| FileReport::new(path, FileStatus::Failed, detail);

    let file = match read_file(path) {
        Ok(mut bytes) => {
            let parsed = google_authenticator::parse(&bytes);
            bytes.zeroize();
            parsed
        }
        Err(e) => return failed(format!("not imported: {e}")),
    };
    let file = match file {
        Ok(file) => file,
        Err(e) => return failed(format!("not imported: {e}")),
    };
    let name = match forced {
        Some(name) => name.clone(),
        None => match user_for_file(path) {
            Ok(name) => name,
            Err(reason) => return failed(format!("not imported: {reason}")),
        },
    };

    let params = TotpParams { algorithm: Algorithm::Sha1, digits: 6, period: file.step_secs };
    let mut report = FileReport::new(path, FileStatus::Imported, String::new());
    report.user = Some(name.to_string());
    report.recovery_codes = Some(file.scratch_codes.len());
    report.period = Some(params.period);
    report.notes = notes(&file, our_window);
    let summary = format!(
        "{} s steps, {} scratch code{} as recovery codes",
        params.period,
        file.scratch_codes.len(),
        if file.scratch_codes.len() == 1 { "" } else { "s" }
    );

    let result = if dry_run {
        users::get(store.conn(), &name).map(|found| found.is_none())
    } else {
        store_user(store, &name, &file, &params)
    };
    match result {
        Ok(true) if dry_run => {
            report.status = FileStatus::WouldImport;
            report.detail = format!("would import as {name} ({summary})");
        }
        Ok(true) => report.detail = format!("imported as {name} ({summary})"),
        Ok(false) => {
            report.status = FileStatus::Skipped;
            report.detail = format!("{name} exists, skipped");
            report.recovery_codes = None;
            report.period = None;
            report.notes.clear();
        }
        Err(e) => {
            report.status = FileStatus::Failed;
            report.detail = format!("not imported as {name}: {e}");
        }
    }
    report
}

/// Reads at most [`google_authenticator::MAX_FILE_BYTES`] + 1 bytes, so a huge file is
/// refused without being read whole.
fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let limit = google_authenticator::MAX_FILE_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The user a file is imported as when `--user` is not given.
fn user_for_file(path: &Path) -> Result<Username, String> {
    let file_name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    if let Some(name) = google_authenticator::user_from_file_name(&file_name) {
        return Username::parse(name).map_err(|e| format!("{e}; pass --user"));
    }

    // `.google_authenticator` itself: the owner of the home directory it sits in.
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let dir_owner =
        std::fs::metadata(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let file_owner = std::fs::metadata(path).map_err(|e| e.to_string())?.uid();
    if dir_owner.uid() != file_owner {
        return Err(format!(
            "the file belongs to uid {file_owner} but {} to uid {}, so the user is unclear; \
             pass --user",
            dir.display(),
            dir_owner.uid()
        ));
    }
    let name = user_name(dir_owner.uid())
        .ok_or_else(|| format!("uid {} has no user name; pass --user", dir_owner.uid()))?;
    Username::parse(&name).map_err(|e| format!("{e}; pass --user"))
}

/// What the administrator should know about a file that imports fine.
fn notes(file: &GaFile, our_window: u64) -> Vec<String> {
    let mut notes = Vec::new();
    if file.reach_steps() > our_window {
        notes.push(format!(
            "the file accepted codes up to {} steps from the current one (WINDOW_SIZE {}), \
             ovpn-mfa accepts {} (otp.window, for every user); raise it in the config if this \
             phone's clock drifts",
            file.reach_steps(),
            file.window_size,
            our_window
        ));
    }
    if let Some(skew) = file.time_skew.filter(|s| *s != 0) {
        notes.push(format!(
            "the PAM module had learned a clock skew of {skew} steps for this phone, which is \
             not carried over"
        ));
    }
    for option in &file.unknown_options {
        notes.push(format!("ignored the unknown option {option}"));
    }
    notes
}

/// Adds the user, their recovery codes and the audit row in one transaction. `Ok(false)`
/// when the user already exists (nothing is changed then).
fn store_user(
    store: &mut Store,
    name: &Username,
    file: &GaFile,
    params: &TotpParams,
) -> Result<bool, StoreError> {
    let now = crate::unix_now();
    let tx = store.write()?;
    let new = NewUser {
        name,
        key: &file.key,
        params: *params,
        password_hash: None,
        client_method: ClientMethod::Otp,
    };
    let id = match users::insert(&tx, &new, now) {
        Ok(id) => id,
        Err(StoreError::UserExists(_)) => return Ok(false),
        Err(e) => return Err(e),
    };

    // Steps the PAM module saw used stay used, so a code just typed there cannot be replayed
    // here. A step from the future would lock the user out, so those are ignored.
    let now_step = params.step_at(now);
    let last_used = file.used_steps.iter().copied().filter(|s| *s <= now_step + 1).max();
    if last_used.is_some() {
        users::record_success(&tx, id, last_used)?;
    }

    let mut codes: Vec<String> =
        file.scratch_codes.iter().map(|c| normalise_recovery_code(c.expose())).collect();
    let stored = recovery::replace(&tx, id, &codes);
    codes.zeroize();
    stored?;

    let mut entry = AuditEntry::admin(now, "user-import", Some(name.as_str()));
    entry.reason = Some("google-authenticator".into());
    audit::append(&tx, &entry)?;
    tx.commit()?;
    Ok(true)
}

/// A path for the report: control characters escaped so a hostile file name cannot forge
/// report lines.
fn shown_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    if text.chars().any(char::is_control) {
        text.chars().flat_map(char::escape_default).collect()
    } else {
        text.into_owned()
    }
}

/// The login name of `uid` from the system's user database.
fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to live memory of the stated size; on success `result`
    // points at `pwd`, whose strings live in `buf`, which outlives their use here.
    let rc =
        unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name is a NUL-terminated string inside `buf` (checked non-null above).
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}
