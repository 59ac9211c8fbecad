//! `ovpn-mfa import google-authenticator`, driven as an administrator would: the files come
//! from the real `google-authenticator` tool (package libpam-google-authenticator) run
//! non-interactively, the phone is played by `oathtool` (package oathtool), and every check
//! goes through the real binary.
//!
//! Contents:
//! - a file from the tool imports; the phone's codes work before and after
//! - scratch codes become single-use recovery codes; used steps stay used
//! - step size and window from the file
//! - malformed files are reported and skipped, the others in the run imported
//! - existing users, `--user`, `~/.google_authenticator`, `--dry-run`, `--json`

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::Run;

const BIN: &str = env!("CARGO_BIN_EXE_ovpn-mfa");

/// The line of an import report about the file at `path`.
fn line_for<'a>(run: &'a Run, path: &Path) -> &'a str {
    let prefix = format!("{}: ", path.display());
    run.stdout
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line for {}: {run}", path.display()))
}

/// A temporary ovpn-mfa directory, initialised, and a place for the files to import.
struct Bed {
    dir: tempfile::TempDir,
}

impl Bed {
    fn new() -> Self {
        let bed = Bed { dir: tempfile::tempdir().unwrap() };
        bed.mfa(&["init"]).ok();
        std::fs::create_dir(bed.files()).unwrap();
        bed
    }

    fn mfa_dir(&self) -> PathBuf {
        self.dir.path().join("mfa")
    }

    fn files(&self) -> PathBuf {
        self.dir.path().join("files")
    }

    fn mfa(&self, args: &[&str]) -> Run {
        let mut command = Command::new(BIN);
        command.arg("--dir").arg(self.mfa_dir()).args(args).env_remove("OVPN_MFA_LOG");
        support::run(command, None)
    }

    fn import(&self, paths: &[&Path], flags: &[&str]) -> Run {
        let mut args = vec!["import".to_owned(), "google-authenticator".to_owned()];
        args.extend(paths.iter().map(|p| p.display().to_string()));
        args.extend(flags.iter().map(|f| f.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.mfa(&args)
    }

    /// `ovpn-mfa check NAME CODE` accepted?
    fn accepts(&self, user: &str, code: &str) -> bool {
        let run = self.mfa(&["check", user, code]);
        assert!(matches!(run.code, Some(0 | 1)), "{run}");
        run.code == Some(0)
    }

    fn user_json(&self, user: &str) -> Value {
        self.mfa(&["user", "show", user, "--json"]).ok().json()
    }

    fn users(&self) -> Vec<String> {
        let list = self.mfa(&["user", "list", "--json"]).ok().json();
        list.as_array().unwrap().iter().map(|u| u["user"].as_str().unwrap().to_owned()).collect()
    }
}

/// Runs the real setup tool non-interactively: time-based, reuse disallowed, rate-limited,
/// the default window unless `extra` sets one, and `extra`.
fn google_authenticator(path: &Path, extra: &[&str]) {
    let mut args = vec!["-t", "-d", "-f", "-r", "3", "-R", "30", "-q", "-Q", "NONE"];
    if !extra.contains(&"-w") {
        args.extend_from_slice(&["-w", "3"]);
    }
    args.extend_from_slice(extra);
    let output = Command::new("google-authenticator")
        .args(&args)
        .arg("-s")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run google-authenticator (apt install libpam-google-authenticator)");
    assert!(output.status.success(), "google-authenticator failed: {output:?}");
}

/// A counter-based file from the real tool.
fn google_authenticator_hotp(path: &Path) {
    let output = Command::new("google-authenticator")
        .args(["-c", "-f", "-u", "-w", "3", "-q", "-Q", "NONE", "-s"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run google-authenticator");
    assert!(output.status.success(), "google-authenticator -c failed: {output:?}");
}

struct GaFile {
    secret: String,
    scratch: Vec<String>,
}

fn read_ga(path: &Path) -> GaFile {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let secret = lines.next().unwrap().to_owned();
    let scratch = lines.filter(|l| !l.starts_with('"')).map(str::to_owned).collect();
    GaFile { secret, scratch }
}

/// The code a phone shows `offset` seconds from now, from an independent implementation.
fn phone_code(secret: &str, period: u64, offset: u64) -> String {
    phone_code_at(secret, period, now() + offset)
}

/// The code a phone shows at Unix time `at`.
fn phone_code_at(secret: &str, period: u64, at: u64) -> String {
    let output = Command::new("oathtool")
        .arg("--totp")
        .arg(format!("--time-step-size={period}s"))
        .arg(format!("--now=@{at}"))
        .args(["-b", secret])
        .output()
        .expect("run oathtool (apt install oathtool)");
    assert!(output.status.success(), "oathtool failed: {output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Nothing secret from `file` appears in `text`.
fn assert_no_secrets(text: &str, file: &GaFile) {
    assert!(!text.contains(&file.secret), "the secret leaked: {text}");
    for code in &file.scratch {
        assert!(!text.contains(code.as_str()), "a scratch code leaked: {text}");
    }
}

#[test]
fn a_file_from_the_setup_tool_imports_and_the_phone_codes_keep_working() {
    let bed = Bed::new();
    let path = bed.files().join("alice");
    google_authenticator(&path, &["-e", "5"]);
    let file = read_ga(&path);

    // What the phone shows now and in the next step, computed before the import.
    let now_code = phone_code(&file.secret, 30, 0);
    let next_code = phone_code(&file.secret, 30, 30);

    let run = bed.import(&[&path], &[]).ok();
    let line = line_for(&run, &path);
    assert!(line.contains("imported as alice"), "{line}");
    assert!(line.contains("5 scratch codes"), "{line}");
    assert_no_secrets(&run.stdout, &file);
    assert_no_secrets(&run.stderr, &file);

    assert!(bed.accepts("alice", &now_code), "the current phone code is refused");
    assert!(bed.accepts("alice", &next_code), "the next step's phone code is refused");
    assert!(!bed.accepts("alice", &next_code), "a used code was accepted again");

    let user = bed.user_json("alice");
    assert_eq!((user["algorithm"].as_str(), user["digits"].as_u64()), (Some("SHA1"), Some(6)));
    assert_eq!(user["period"], 30);
    assert_eq!(user["method"], "otp");
    let audit = bed.mfa(&["audit", "--user", "alice", "--json"]).ok().json();
    let rows = audit.as_array().unwrap();
    assert!(
        rows.iter().any(|r| r["decision"] == "user-import" && r["kind"] == "admin"),
        "{audit:#}"
    );
    assert_no_secrets(&audit.to_string(), &file);
}

#[test]
fn a_code_the_pam_module_saw_used_is_not_accepted_again() {
    let bed = Bed::new();
    let path = bed.files().join("judy");
    google_authenticator(&path, &["-e", "0"]);
    let file = read_ga(&path);
    let at = now();
    let step = at / 30;
    let text = std::fs::read_to_string(&path).unwrap();
    let used = format!("\" DISALLOW_REUSE {} {}", step - 1, step);
    std::fs::write(&path, text.replace("\" DISALLOW_REUSE", &used)).unwrap();
    let just_used = phone_code_at(&file.secret, 30, at);

    bed.import(&[&path], &[]).ok();
    let run = bed.mfa(&["check", "judy", &just_used]);
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("replayed-code"), "{run}");
    assert!(bed.accepts("judy", &phone_code_at(&file.secret, 30, at + 30)));
}

#[test]
fn scratch_codes_become_recovery_codes_that_work_once() {
    let bed = Bed::new();
    let path = bed.files().join("bob.google_authenticator");
    google_authenticator(&path, &["-e", "5"]);
    let file = read_ga(&path);
    assert_eq!(file.scratch.len(), 5);
    assert!(file.scratch.iter().all(|c| c.len() == 8 && c.bytes().all(|b| b.is_ascii_digit())));

    bed.import(&[&path], &[]).ok();
    assert_eq!(bed.user_json("bob")["recovery_codes_left"], 5);
    for (used, code) in file.scratch.iter().enumerate() {
        assert!(bed.accepts("bob", code), "scratch code {used} refused");
        assert!(!bed.accepts("bob", code), "scratch code {used} worked twice");
        assert_eq!(bed.user_json("bob")["recovery_codes_left"], 4 - used);
    }
}

#[test]
fn the_step_size_is_kept_and_a_wider_window_is_reported() {
    let bed = Bed::new();
    let path = bed.files().join("carol");
    google_authenticator(&path, &["-S", "60", "-w", "17", "-e", "0"]);
    let file = read_ga(&path);

    let run = bed.import(&[&path], &[]).ok();
    let line = line_for(&run, &path);
    assert!(line.contains("60 s steps"), "{line}");
    assert!(line.contains("WINDOW_SIZE 17") && line.contains("otp.window"), "{line}");
    assert_eq!(bed.user_json("carol")["period"], 60);
    assert!(bed.accepts("carol", &phone_code(&file.secret, 60, 0)));
}

#[test]
fn malformed_files_are_reported_and_skipped_while_the_others_are_imported() {
    let bed = Bed::new();
    let dir = bed.files();
    google_authenticator(&dir.join("good1"), &["-e", "2"]);
    google_authenticator(&dir.join("good2"), &["-e", "2"]);
    google_authenticator_hotp(&dir.join("counter"));
    std::fs::write(dir.join("badsecret"), "NOT-BASE32-!!\n\" TOTP_AUTH\n12345678\n").unwrap();
    std::fs::write(dir.join("empty"), "").unwrap();
    std::fs::write(dir.join("junk"), [0u8, 159, 146, 150, 255, 7, 1, 200, 0, 13]).unwrap();
    std::fs::write(dir.join("huge"), "A".repeat(1024 * 1024)).unwrap();
    std::fs::write(dir.join("short"), "JBSWY3DP\n\" TOTP_AUTH\n").unwrap();
    std::fs::write(dir.join("strayline"), "JBSWY3DPEHPK3PXP\nhello there\n").unwrap();

    let run = bed.import(&[&dir], &[]);
    assert_eq!(run.code, Some(1), "{run}");
    for (name, reason) in [
        ("counter", "HOTP (counter-based) files are not supported"),
        ("badsecret", "not a usable secret"),
        ("empty", "the file is empty"),
        ("junk", "not text"),
        ("huge", "larger than 64 KiB"),
        ("short", "too short"),
        ("strayline", "line 2 is neither an option"),
    ] {
        let line = line_for(&run, &dir.join(name));
        assert!(line.contains("not imported") && line.contains(reason), "{name}: {line}");
    }
    for name in ["good1", "good2"] {
        assert!(line_for(&run, &dir.join(name)).contains(&format!("imported as {name}")));
    }
    assert_eq!(run.stdout.lines().count(), 9, "one line per file: {run}");
    assert!(!run.stdout.contains("hello there") && !run.stdout.contains("NOT-BASE32"));
    assert_no_secrets(&run.stdout, &read_ga(&dir.join("counter")));
    assert_eq!(bed.users(), ["good1", "good2"]);
}

#[test]
fn existing_users_are_skipped_and_keep_their_secret() {
    let bed = Bed::new();
    let old_secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    bed.mfa(&["user", "add", "dave", "--secret", old_secret, "--json"]).ok();
    let path = bed.files().join("dave");
    google_authenticator(&path, &["-e", "3"]);
    let file = read_ga(&path);

    let run = bed.import(&[&path], &[]).ok();
    assert!(line_for(&run, &path).contains("dave exists, skipped"), "{run}");
    assert!(!bed.accepts("dave", &file.scratch[0]), "a scratch code of the skipped file works");
    assert!(!bed.accepts("dave", &phone_code(&file.secret, 30, 0)));
    assert!(bed.accepts("dave", &phone_code(old_secret, 30, 0)), "the old secret stopped");
}

#[test]
fn a_home_directory_file_is_imported_for_its_owner_or_for_the_user_flag() {
    let bed = Bed::new();
    let home = bed.files().join("home-of-someone");
    std::fs::create_dir(&home).unwrap();
    let path = home.join(".google_authenticator");
    google_authenticator(&path, &["-e", "1"]);

    // Without --user: the owner of the directory, who is the user running the test.
    let me = Command::new("id").arg("-un").output().unwrap();
    let me = String::from_utf8(me.stdout).unwrap().trim().to_ascii_lowercase();
    let run = bed.import(&[&path], &["--dry-run"]).ok();
    assert!(line_for(&run, &path).contains(&format!("would import as {me}")), "{run}");

    let run = bed.import(&[&path], &["--user", "Erin"]).ok();
    assert!(line_for(&run, &path).contains("imported as erin"), "{run}");
    assert_eq!(bed.users(), ["erin"]);
}

#[test]
fn the_user_flag_takes_exactly_one_file() {
    let bed = Bed::new();
    let (a, b) = (bed.files().join("a1"), bed.files().join("b1"));
    google_authenticator(&a, &[]);
    google_authenticator(&b, &[]);
    let run = bed.import(&[&a, &b], &["--user", "frank"]);
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("exactly one file"), "{run}");
    assert!(bed.users().is_empty());
}

#[test]
fn a_dry_run_reports_without_changing_anything() {
    let bed = Bed::new();
    let path = bed.files().join(".grace");
    google_authenticator(&path, &["-e", "4"]);
    let run = bed.import(&[&path], &["--dry-run", "--json"]).ok();
    let report = run.json();
    assert_eq!(report[0]["status"], "would-import");
    assert_eq!(report[0]["user"], "grace");
    assert_eq!(report[0]["recovery_codes"], 4);
    assert!(bed.users().is_empty());
    let audit = bed.mfa(&["audit", "--json"]).ok().json();
    assert!(!audit.to_string().contains("user-import"));
}

#[test]
fn json_output_is_one_array_entry_per_file() {
    let bed = Bed::new();
    google_authenticator(&bed.files().join("henry"), &["-e", "2"]);
    std::fs::write(bed.files().join("ivan"), "").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", bed.files().join("link")).unwrap();
    let run = bed.import(&[&bed.files()], &["--json"]);
    assert_eq!(run.code, Some(1), "{run}");
    let report = run.json();
    let statuses: Vec<(&str, &str)> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let path = r["path"].as_str().unwrap();
            (path.rsplit('/').next().unwrap(), r["status"].as_str().unwrap())
        })
        .collect();
    assert_eq!(statuses, [("henry", "imported"), ("ivan", "failed"), ("link", "skipped")]);
    assert_eq!(report[0]["recovery_codes"], 2);
    assert_eq!(report[0]["period"], 30);
}
