//! Acceptance tests of the command line: every test runs the real `ovpn-mfa` binary against
//! its own temporary directory, building state the way an administrator would (`init`, then
//! `user add`), and checks what the binary prints, its exit code and the audit log.
//!
//! Outside tools stand in for the other side: `oathtool` (package oathtool) plays the phone
//! app, `zbarimg` (zbar-tools) plays its camera, and `setpriv` (util-linux) gives an
//! unprivileged user for the read-only test, which therefore needs root.
//!
//! Contents:
//! - codes from oathtool: current, neighbouring and old steps, replays, leading zeros
//! - concurrent checks of one code
//! - QR codes and their files
//! - lockout and unlock
//! - where secrets, recovery codes and used codes may appear
//! - bad input: user names, secrets, missing, read-only and corrupt files
//! - recovery codes, passwords
//! - regressions

mod support;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{run, Run};

const BIN: &str = env!("CARGO_BIN_EXE_ovpn-mfa");

/// Variables that would change what the binary does or prints.
const ENV_TO_CLEAR: [&str; 4] = ["OVPN_MFA_DIR", "OVPN_MFA_LOG", "RUST_BACKTRACE", "RUST_LOG"];

/// The step length of the default configuration, in seconds.
const PERIOD: u64 = 30;

/// `ovpn-mfa --dir DIR ARGS...`, isolated from the caller's environment.
fn ovpn_mfa(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.arg("--dir").arg(dir).args(args);
    for var in ENV_TO_CLEAR {
        command.env_remove(var);
    }
    command
}

/// The same as user `nobody`, through `setpriv`.
fn ovpn_mfa_as_nobody(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("setpriv");
    command.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
    command.arg("--dir").arg(dir).args(args);
    for var in ENV_TO_CLEAR {
        command.env_remove(var);
    }
    command
}

/// One data directory, removed at the end of the test.
struct Lab {
    temp: tempfile::TempDir,
}

impl Lab {
    /// A directory with nothing in it yet.
    fn empty() -> Self {
        Lab { temp: tempfile::tempdir().unwrap() }
    }

    /// A directory after `ovpn-mfa init`.
    fn new() -> Self {
        let lab = Lab::empty();
        lab.run(&["init"]).ok();
        lab
    }

    fn dir(&self) -> &Path {
        self.temp.path()
    }

    fn config_file(&self) -> PathBuf {
        self.dir().join("config.toml")
    }

    fn store_file(&self) -> PathBuf {
        self.dir().join("ovpn-mfa.sqlite")
    }

    fn run(&self, args: &[&str]) -> Run {
        run(ovpn_mfa(self.dir(), args), None)
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        run(ovpn_mfa(self.dir(), args), Some(stdin))
    }

    /// Enrols `name` and returns the base32 secret from `user add --json`.
    fn add_user(&self, name: &str) -> String {
        let out = self.run(&["user", "add", name, "--json"]).ok().json();
        assert_eq!(out["user"], name);
        out["secret"].as_str().expect("a secret in the JSON").to_owned()
    }

    fn check(&self, name: &str, code: &str) -> Run {
        self.run(&["check", name, code])
    }

    /// The names `user list --json` returns.
    fn user_names(&self) -> Vec<String> {
        let list = self.run(&["user", "list", "--json"]).ok().json();
        let rows = list.as_array().expect("a JSON array of users");
        rows.iter().map(|u| u["user"].as_str().unwrap().to_owned()).collect()
    }

    /// The login decisions about `name`, oldest first, as (decision, reason).
    fn auth_decisions(&self, name: &str) -> Vec<(String, String)> {
        let rows = self.run(&["audit", "--json", "--user", name, "--limit", "1000"]).ok().json();
        let rows = rows.as_array().expect("a JSON array of audit rows");
        rows.iter()
            .filter(|row| row["kind"] == "auth")
            .map(|row| {
                let field = |key: &str| row[key].as_str().unwrap_or("-").to_owned();
                (field("decision"), field("reason"))
            })
            .collect()
    }

    /// Sets `key` in `[section]` of config.toml; the key must already be there.
    fn set_config(&self, section: &str, key: &str, value: &str) {
        let text = std::fs::read_to_string(self.config_file()).unwrap();
        let mut current = String::new();
        let mut found = false;
        let lines: Vec<String> = text
            .lines()
            .map(|line| {
                if let Some(name) = line.trim().strip_prefix('[') {
                    current = name.trim_end_matches(']').to_owned();
                }
                let is_key = line.split('=').next().map(str::trim) == Some(key);
                if current == section && is_key && !line.trim_start().starts_with('#') {
                    found = true;
                    return format!("{key} = {value}");
                }
                line.to_owned()
            })
            .collect();
        assert!(found, "no {key} in [{section}] of\n{text}");
        std::fs::write(self.config_file(), lines.join("\n") + "\n").unwrap();
    }

    /// Asserts the store still holds exactly `names`, and that SQLite finds it consistent.
    fn assert_store_intact(&self, names: &[&str]) {
        assert_eq!(self.user_names(), names);
        let store = ovpn_mfa::store::Store::open(&self.store_file(), Duration::from_secs(10))
            .expect("the store opens");
        assert_eq!(store.integrity_check(), Ok(()));
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The code `oathtool` computes for a base32 secret at a Unix time.
fn totp_at(secret: &str, unix: u64) -> String {
    let mut command = Command::new("oathtool");
    command.args(["--totp", "--base32", "-N", &format!("@{unix}"), secret]);
    let out = run(command, None).ok();
    let code = out.stdout.trim().to_owned();
    assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()), "{out}");
    code
}

/// The code oathtool computes for `steps` steps away from the one `unix` falls in.
fn totp_steps_away(secret: &str, unix: u64, steps: i64) -> String {
    totp_at(secret, unix.checked_add_signed(steps * PERIOD as i64).unwrap())
}

/// The current time, after waiting into the next step if fewer than `margin` seconds are
/// left in this one. Tests that need "the previous step" to stay the previous step until
/// they are done call this first.
fn time_with_margin(margin: u64) -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into_step = now.as_secs_f64() % PERIOD as f64;
    if into_step > (PERIOD - margin) as f64 {
        std::thread::sleep(Duration::from_secs_f64(PERIOD as f64 - into_step + 0.1));
    }
    unix_now()
}

/// Six-digit codes that match none of the steps around `unix` for this secret.
fn wrong_codes(secret: &str, unix: u64, count: usize) -> Vec<String> {
    let valid: Vec<String> = (-2..=2).map(|s| totp_steps_away(secret, unix, s)).collect();
    (0..1_000_000u64)
        .map(|n| format!("{:06}", (n * 7919 + 123_457) % 1_000_000))
        .filter(|code| !valid.contains(code))
        .take(count)
        .collect()
}

/// The maximal runs of ASCII digits in `text`: a code counts as shown only as a whole number.
fn digit_runs(text: &str) -> Vec<&str> {
    text.split(|c: char| !c.is_ascii_digit()).filter(|run| !run.is_empty()).collect()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// Codes from oathtool.

#[test]
fn codes_oathtool_makes_for_this_and_the_neighbouring_steps_are_accepted() {
    let lab = Lab::new();
    // A fresh user per step: accepting a later step would turn earlier ones into replays.
    let users = [("previous", -1), ("current", 0), ("next", 1)];
    let secrets: Vec<String> = users.iter().map(|(name, _)| lab.add_user(name)).collect();

    let now = time_with_margin(5);
    for ((name, steps), secret) in users.iter().zip(&secrets) {
        let code = totp_steps_away(secret, now, *steps);
        let out = lab.check(name, &code).ok();
        assert_eq!(out.stdout, "accepted\n", "{out}");
    }
}

#[test]
fn a_code_two_steps_old_is_refused_as_a_wrong_code() {
    let lab = Lab::new();
    let secret = lab.add_user("alice");

    let old = totp_steps_away(&secret, unix_now(), -2);
    lab.check("alice", &old).refused("wrong-code");

    let decisions = lab.auth_decisions("alice");
    assert_eq!(decisions, [("refused".into(), "wrong-code".into())]);
}

#[test]
fn a_code_is_accepted_once_and_then_refused_as_a_replay() {
    let lab = Lab::new();
    let secret = lab.add_user("alice");

    let now = time_with_margin(5);
    let code = totp_at(&secret, now);
    lab.check("alice", &code).ok();
    lab.check("alice", &code).refused("replayed-code");
    // An earlier step is a replay too, once a later one was used.
    let previous = totp_steps_away(&secret, now, -1);
    lab.check("alice", &previous).refused("replayed-code");

    let reasons: Vec<String> = lab.auth_decisions("alice").into_iter().map(|d| d.1).collect();
    assert_eq!(reasons, ["ok", "replayed-code", "replayed-code"]);
}

#[test]
fn a_code_with_a_leading_zero_is_accepted() {
    let lab = Lab::new();
    // One code in ten starts with 0: 150 users make a miss about a one in seven million event.
    for i in 0..150 {
        let name = format!("zero{i}");
        let secret = lab.add_user(&name);
        let code = totp_at(&secret, unix_now());
        if code.starts_with('0') {
            // Even if a step boundary passes before `check`, this code is the previous
            // step's, which the default window still accepts.
            let out = lab.check(&name, &code).ok();
            assert_eq!(out.stdout, "accepted\n");
            return;
        }
    }
    panic!("no code starting with 0 in 150 enrolments");
}

// Concurrency.

#[test]
fn fifty_concurrent_checks_of_one_code_accept_exactly_one() {
    let lab = Lab::new();
    let secret = lab.add_user("alice");
    let code = totp_at(&secret, time_with_margin(5));

    let children: Vec<_> = (0..50)
        .map(|_| {
            let mut command = ovpn_mfa(lab.dir(), &["check", "alice", &code]);
            command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
            command.spawn().expect("spawn check")
        })
        .collect();
    let runs: Vec<Run> = children
        .into_iter()
        .map(|child| Run::from_output("check".into(), child.wait_with_output().unwrap()))
        .collect();

    let accepted: Vec<&Run> = runs.iter().filter(|r| r.code == Some(0)).collect();
    assert_eq!(accepted.len(), 1, "{runs:#?}");
    assert_eq!(accepted[0].stdout, "accepted\n");
    for refused in runs.iter().filter(|r| r.code != Some(0)) {
        // Exit 1 with the replay reason: not killed, not a store error, not a panic.
        assert_eq!(refused.code, Some(1), "{refused}");
        assert_eq!(refused.stderr, "refused: replayed-code\n", "{refused}");
    }

    let decisions = lab.auth_decisions("alice");
    assert_eq!(decisions.len(), 50);
    let accepted_rows = decisions.iter().filter(|d| d.0 == "accepted").count();
    assert_eq!(accepted_rows, 1, "{decisions:?}");
}

// QR codes.

/// What `zbarimg` reads from an image file. An SVG is first rasterised with `rsvg-convert`
/// (librsvg2-bin): zbarimg reads SVG only through an ImageMagick delegate that a minimal
/// install lacks.
fn decode_qr(path: &Path) -> String {
    let image = if path.extension().is_some_and(|e| e == "svg") {
        let png = path.with_extension("svg.png");
        let mut rasterise = Command::new("rsvg-convert");
        rasterise.arg("--output").arg(&png).arg(path);
        run(rasterise, None).ok();
        png
    } else {
        path.to_path_buf()
    };
    let mut command = Command::new("zbarimg");
    command.args(["-q", "--raw"]).arg(&image);
    run(command, None).ok().stdout.trim_end().to_owned()
}

#[test]
fn the_png_qr_code_decodes_to_the_uri_printed_beside_it() {
    let lab = Lab::new();
    let png = lab.dir().join("alice.png");

    let out = lab.run(&["user", "add", "alice", "--qr-png", png.to_str().unwrap()]).ok();

    let uri = out
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("URI:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no URI line: {out}"));
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(out.stdout.contains(&format!("QR code written to {}", png.display())), "{out}");
    assert_eq!(decode_qr(&png), uri);
    assert_eq!(mode_of(&png), 0o600);
}

#[test]
fn qr_files_written_with_json_output_decode_to_its_uri_and_are_private() {
    let lab = Lab::new();
    let png = lab.dir().join("bob.png");
    let svg = lab.dir().join("bob.svg");
    let args = ["--qr-png", png.to_str().unwrap(), "--qr-svg", svg.to_str().unwrap(), "--json"];

    let out = lab.run(&[&["user", "add", "bob"][..], &args].concat()).ok().json();
    let uri = out["otpauth_uri"].as_str().unwrap();
    let secret = out["secret"].as_str().unwrap();
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    assert_eq!(decode_qr(&png), uri);
    assert_eq!(decode_qr(&svg), uri);
    assert_eq!(mode_of(&png), 0o600);
    assert_eq!(mode_of(&svg), 0o600);

    // A new secret gets new files with the new URI.
    std::fs::remove_file(&png).unwrap();
    std::fs::remove_file(&svg).unwrap();
    let reset = lab.run(&[&["user", "reset-otp", "bob", "--yes"][..], &args].concat()).ok();
    let new_uri = reset.json()["otpauth_uri"].as_str().unwrap().to_owned();
    assert_ne!(new_uri, uri);
    assert_eq!(decode_qr(&png), new_uri);
    assert_eq!(mode_of(&png), 0o600);
    assert_eq!(mode_of(&svg), 0o600);
}

// Lockout.

#[test]
fn three_failures_lock_the_user_out_until_the_lockout_expires() {
    let lab = Lab::new();
    for (key, value) in [
        ("max_failures", "3"),
        ("window_secs", "60"),
        ("lockout_secs", "2"),
        ("max_lockout_secs", "8"),
    ] {
        lab.set_config("lockout", key, value);
    }
    let secret = lab.add_user("alice");

    for wrong in wrong_codes(&secret, unix_now(), 3) {
        lab.check("alice", &wrong).refused("wrong-code");
    }
    lab.check("alice", &totp_at(&secret, unix_now())).refused("locked-out");
    let shown = lab.run(&["user", "show", "alice", "--json"]).ok().json();
    assert!(shown["locked_until"].is_string(), "{shown}");

    // The lockout ends 2 s after the third failure; the clock counts whole seconds.
    std::thread::sleep(Duration::from_secs(3));
    let out = lab.check("alice", &totp_at(&secret, unix_now())).ok();
    assert_eq!(out.stdout, "accepted\n");
    let shown = lab.run(&["user", "show", "alice", "--json"]).ok().json();
    assert!(shown["locked_until"].is_null(), "{shown}");

    let decisions = lab.auth_decisions("alice");
    let expected = [
        ("refused", "wrong-code"),
        ("refused", "wrong-code"),
        ("refused", "wrong-code"),
        ("refused", "locked-out"),
        ("accepted", "ok"),
    ];
    let expected: Vec<(String, String)> =
        expected.iter().map(|(d, r)| (d.to_string(), r.to_string())).collect();
    assert_eq!(decisions, expected);
}

#[test]
fn unlock_clears_a_lockout_at_once() {
    let lab = Lab::new();
    lab.set_config("lockout", "max_failures", "3");
    lab.set_config("lockout", "lockout_secs", "600");
    let secret = lab.add_user("alice");

    for wrong in wrong_codes(&secret, unix_now(), 3) {
        lab.check("alice", &wrong).refused("wrong-code");
    }
    let code = totp_at(&secret, time_with_margin(5));
    lab.check("alice", &code).refused("locked-out");

    let out = lab.run(&["user", "unlock", "alice"]).ok();
    assert_eq!(out.stdout, "alice: unlocked\n");
    lab.check("alice", &code).ok();

    let reasons: Vec<String> = lab.auth_decisions("alice").into_iter().map(|d| d.1).collect();
    assert_eq!(reasons, ["wrong-code", "wrong-code", "wrong-code", "locked-out", "ok"]);
    let audit = lab.run(&["audit", "--json", "--user", "alice"]).ok().json();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["kind"] == "admin")
        .map(|row| row["decision"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["user-add", "user-unlock"]);
}

// Where secrets may appear.

#[test]
fn secrets_recovery_codes_passwords_and_used_codes_are_shown_only_where_they_belong() {
    let lab = Lab::empty();
    let mut outputs: Vec<(&str, Run)> = Vec::new();
    let mut used_codes: Vec<String> = Vec::new();
    let password = "Correct-Horse-7";

    outputs.push(("init", lab.run(&["init"]).ok()));
    let add = lab.run(&["user", "add", "alice"]).ok();
    let secret = secret_line(&add);
    outputs.push(("user add", add));
    for args in [
        &["user", "list"][..],
        &["user", "list", "--json"],
        &["user", "show", "alice"],
        &["user", "show", "alice", "--json"],
        &["user", "disable", "alice"],
    ] {
        outputs.push(("admin", lab.run(args).ok()));
    }

    let now = time_with_margin(5);
    let code = totp_at(&secret, now);
    used_codes.push(code.clone());
    outputs.push(("check", lab.check("alice", &code).refused("disabled")));
    outputs.push(("admin", lab.run(&["user", "enable", "alice"]).ok()));
    outputs.push(("check", lab.check("alice", &code).ok()));
    let next = totp_steps_away(&secret, now, 1);
    used_codes.push(next.clone());
    outputs.push(("check", lab.run(&["-vv", "check", "alice", &next]).ok()));
    let wrong = wrong_codes(&secret, now, 1).remove(0);
    used_codes.push(wrong.clone());
    let refused = lab.run(&["-vv", "check", "alice", &wrong]);
    assert!(refused.code == Some(1) && refused.stderr.ends_with("refused: wrong-code\n"));
    outputs.push(("check", refused));
    outputs.push(("audit", lab.run(&["audit"]).ok()));
    outputs.push(("audit", lab.run(&["audit", "--json"]).ok()));

    let recovery = lab.run(&["user", "recovery-codes", "alice", "--yes"]).ok();
    let recovery_codes: Vec<String> =
        recovery.stdout.lines().filter_map(|l| l.strip_prefix("  ")).map(str::to_owned).collect();
    assert_eq!(recovery_codes.len(), 8, "{recovery}");
    outputs.push(("user recovery-codes", recovery));
    outputs.push(("check", lab.check("alice", &recovery_codes[0]).ok()));

    let set = lab.run_with_stdin(&["user", "set-password", "alice", "--password-stdin"], password);
    outputs.push(("admin", set.ok()));
    outputs.push(("admin", lab.run(&["user", "set-password", "alice", "--clear"]).ok()));

    let reset = lab.run(&["user", "reset-otp", "alice", "--yes"]).ok();
    let new_secret = secret_line(&reset);
    assert_ne!(new_secret, secret);
    outputs.push(("user reset-otp", reset));
    for args in [
        &["user", "unlock", "alice"][..],
        &["user", "show", "alice", "--json"],
        &["openvpn", "client-config", "alice"],
        &["openvpn", "server-config", "--no-create"],
        &["user", "remove", "alice", "--yes"],
    ] {
        outputs.push(("admin", lab.run(args).ok()));
    }
    outputs.push(("audit", lab.run(&["audit"]).ok()));
    let audit = lab.run(&["audit", "--json", "--limit", "1000"]).ok();
    // The log the codes must stay out of does hold every login decision.
    let rows = audit.json();
    let reasons: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["kind"] == "auth")
        .map(|row| row["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["disabled", "ok", "ok", "wrong-code", "recovery-code"]);
    outputs.push(("audit", audit));

    let shown_in = |needle: &str| -> Vec<&str> {
        let needle = needle.to_ascii_lowercase();
        outputs
            .iter()
            .filter(|(_, run)| run.printed().to_ascii_lowercase().contains(&needle))
            .map(|(label, _)| *label)
            .collect()
    };
    assert_eq!(shown_in(&secret), ["user add"]);
    assert_eq!(shown_in(&new_secret), ["user reset-otp"]);
    for code in &recovery_codes {
        assert_eq!(shown_in(code), ["user recovery-codes"], "{code}");
    }
    assert!(shown_in(password).is_empty(), "the password was printed");
    for (label, run) in &outputs {
        for code in &used_codes {
            assert!(!digit_runs(&run.printed()).contains(&code.as_str()), "{label}: {run}");
        }
    }
}

/// The base32 secret from the `Secret:` line of a human-readable enrolment.
fn secret_line(run: &Run) -> String {
    let secret = run.stdout.lines().find_map(|line| line.strip_prefix("Secret:"));
    let secret = secret.unwrap_or_else(|| panic!("no Secret line: {run}")).trim();
    assert_eq!(secret.len(), 32, "{run}");
    secret.to_owned()
}

// Bad input.

#[test]
fn invalid_user_names_are_refused_by_add_show_and_check() {
    let lab = Lab::new();
    lab.add_user("alice");
    let long = "a".repeat(65);
    // "аlice" starts with a Cyrillic a. `--` keeps "-rf" from being read as options.
    for name in ["../x", "a b", "", long.as_str(), "аlice", "-rf", "a/b", "x\ny"] {
        for command in [&["user", "add", "--"][..], &["user", "show", "--"]] {
            let out = lab.run(&[command, &[name]].concat()).fails_cleanly();
            assert!(out.error_line().contains("invalid user name"), "{out}");
        }
        // `check` answers the way the server does: a refusal with a reason, not an error.
        lab.run(&["check", "--", name, "123456"]).refused("invalid-username");
    }
    lab.assert_store_intact(&["alice"]);
    assert!(!lab.dir().parent().unwrap().join("x").exists());
}

#[test]
fn bad_secrets_are_refused_on_import() {
    let lab = Lab::new();
    lab.add_user("alice");
    for (secret, says) in [
        ("JBSWY3DP", "too short"),
        ("JBSWY3DPEHPK3PX1", "not base32"),
        ("JBSWY3DP!HPK3PXP", "not base32"),
        ("JBSWY3DPEHPK3PXPÄ", "not base32"),
        ("JBSWY3DPEHPK3PXPA", "not valid base32"),
        ("", "empty"),
    ] {
        let out = lab.run(&["user", "add", "bob", "--secret", secret]).fails_cleanly();
        assert!(out.error_line().contains(says), "{secret:?}: {out}");
    }
    lab.assert_store_intact(&["alice"]);

    // The same command with a good secret works, and oathtool agrees with it.
    let good = "JBSWY3DPEHPK3PXP";
    lab.run(&["user", "add", "bob", "--secret", good]).ok();
    lab.check("bob", &totp_at(good, unix_now())).ok();
}

#[test]
fn commands_without_a_data_directory_say_to_run_init_and_create_nothing() {
    let lab = Lab::empty();
    let missing = lab.dir().join("nowhere").join("ovpn-mfa");
    let missing_str = missing.to_str().unwrap();
    for args in [
        &["user", "list"][..],
        &["user", "list", "--json"],
        &["user", "add", "alice"],
        &["user", "show", "alice"],
        &["user", "disable", "alice"],
        &["user", "enable", "alice"],
        &["user", "unlock", "alice"],
        &["user", "reset-otp", "alice", "--yes"],
        &["user", "recovery-codes", "alice", "--yes"],
        &["user", "remove", "alice", "--yes"],
        &["check", "alice", "123456"],
        &["audit"],
        &["openvpn", "client-config", "alice"],
        &["openvpn", "server-config", "--no-create"],
    ] {
        let out = run(ovpn_mfa(&missing, args), None).fails_cleanly();
        assert!(out.error_line().contains("ovpn-mfa init"), "{out}");
        assert!(out.error_line().contains(missing_str), "{out}");
        // The reason is given once, not repeated by the error chain.
        assert!(out.error_line().matches("os error").count() <= 1, "{out}");
    }
    assert!(!lab.dir().join("nowhere").exists());

    run(ovpn_mfa(&missing, &["init"]), None).ok();
    let list = run(ovpn_mfa(&missing, &["user", "list", "--json"]), None).ok();
    assert_eq!(list.json(), serde_json::json!([]));
}

#[test]
fn a_read_only_data_directory_fails_cleanly_and_keeps_the_store() {
    let euid = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:").and_then(|ids| ids.split_whitespace().nth(1)))
        .map(str::to_owned);
    assert_eq!(euid.as_deref(), Some("0"), "this test needs root to run setpriv");

    let lab = Lab::new();
    let secret = lab.add_user("alice");
    // Owned by root, readable by all: DAC keeps `nobody` from writing anything in it.
    std::fs::set_permissions(lab.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let files_before = list_dir(lab.dir());

    // First the store as init made it (0600), then one that nobody may read but not write.
    for store_mode in [0o600, 0o644] {
        std::fs::set_permissions(lab.store_file(), std::fs::Permissions::from_mode(store_mode))
            .unwrap();
        let code = totp_at(&secret, unix_now());
        for args in [
            &["user", "add", "bob"][..],
            &["user", "disable", "alice"],
            &["user", "unlock", "alice"],
            &["user", "recovery-codes", "alice", "--yes"],
            &["user", "reset-otp", "alice", "--yes"],
            &["user", "remove", "alice", "--yes"],
            &["check", "alice", &code],
        ] {
            let out = run(ovpn_mfa_as_nobody(lab.dir(), args), None).fails_cleanly();
            assert!(out.error_line().contains("cannot open the store"), "{out}");
        }
        assert_eq!(list_dir(lab.dir()), files_before, "mode {store_mode:o}");
    }

    lab.assert_store_intact(&["alice"]);
    let shown = lab.run(&["user", "show", "alice", "--json"]).ok().json();
    assert_eq!(shown["state"], "enabled");
    assert_eq!(shown["recovery_codes_left"], 0);
    lab.check("alice", &totp_at(&secret, unix_now())).ok();
}

fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_corrupt_config_file_fails_cleanly_and_keeps_the_store() {
    let lab = Lab::new();
    let secret = lab.add_user("alice");
    let good_config = std::fs::read(lab.config_file()).unwrap();

    let garbage: [&[u8]; 3] = [
        b"this is [not toml =\n[[[\n",
        b"[lockout]\nmax_failures = \"three\"\n",
        b"\xff\xfe\x00garbage\x80\n",
    ];
    for bytes in garbage {
        std::fs::write(lab.config_file(), bytes).unwrap();
        let code = totp_at(&secret, unix_now());
        for args in [
            &["init"][..],
            &["user", "add", "bob"],
            &["user", "reset-otp", "alice", "--yes"],
            &["check", "alice", &code],
            &["openvpn", "server-config", "--no-create"],
        ] {
            let out = lab.run(args).fails_cleanly();
            let config = lab.config_file().display().to_string();
            assert!(out.error_line().contains(&format!("{config} is not valid")), "{out}");
        }
        assert_eq!(std::fs::read(lab.config_file()).unwrap(), bytes, "init kept the file");
    }

    std::fs::write(lab.config_file(), good_config).unwrap();
    lab.assert_store_intact(&["alice"]);
    // The secret was not replaced and no login was recorded.
    lab.check("alice", &totp_at(&secret, unix_now())).ok();
    assert_eq!(lab.auth_decisions("alice"), [("accepted".into(), "ok".into())]);
}

#[test]
fn a_corrupt_store_file_fails_cleanly_and_is_left_as_it_was() {
    let lab = Lab::new();
    let mut noise = vec![0u8; 16 * 1024];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut noise).unwrap();
    std::fs::write(lab.store_file(), &noise).unwrap();

    for args in [
        &["user", "list"][..],
        &["user", "list", "--json"],
        &["user", "add", "bob"],
        &["user", "show", "alice"],
        &["user", "disable", "alice"],
        &["user", "remove", "alice", "--yes"],
        &["check", "alice", "123456"],
        &["audit", "--json"],
        &["openvpn", "client-config", "alice"],
    ] {
        let out = lab.run(args).fails_cleanly();
        assert!(out.error_line().contains("cannot open the store"), "{out}");
    }
    // `init` says which files it looked at before it fails, so only its last line counts.
    let init = lab.run(&["init"]);
    assert_eq!(init.code, Some(1), "{init}");
    let last = init.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("ovpn-mfa: error: cannot open the store"), "{init}");
    assert_eq!(init.stderr.matches("ovpn-mfa: error:").count(), 1, "{init}");

    assert_eq!(std::fs::read(lab.store_file()).unwrap(), noise);
}

#[test]
fn a_store_with_a_damaged_table_is_not_written_to_by_logins() {
    let lab = Lab::new();
    let secret = lab.add_user("sam");
    let mut bytes = std::fs::read(lab.store_file()).unwrap();
    assert!(bytes.len() > 3 * 4096, "a smaller store than expected: {}", bytes.len());
    // The file header stays valid, so the store opens; the tables behind it do not read.
    bytes[4096..3 * 4096].fill(0xA5);
    std::fs::write(lab.store_file(), &bytes).unwrap();

    let check = lab.check("sam", &totp_at(&secret, unix_now()));
    assert_eq!(check.code, Some(1), "{check}");
    assert!(check.stderr.contains("damaged"), "{check}");
    assert!(!check.stderr.contains(&secret), "{check}");
    assert_eq!(std::fs::read(lab.store_file()).unwrap(), bytes, "check wrote to the store");
}

#[test]
fn init_in_an_empty_store_file_says_it_starts_a_new_store() {
    let lab = Lab::empty();
    std::fs::write(lab.store_file(), b"").unwrap();
    let out = lab.run(&["init"]).ok();
    let said = format!("Started a new store in the empty file {}", lab.store_file().display());
    assert!(out.stderr.contains(&said) && !out.stderr.contains("Kept the store"), "{out}");
    lab.assert_store_intact(&[]);
    assert!(lab.run(&["init"]).ok().stderr.contains("Kept the store"));
}

#[test]
fn init_refuses_a_damaged_or_foreign_store_and_changes_nothing() {
    let lab = Lab::new();
    lab.add_user("alice");
    let store = lab.store_file();
    let good = std::fs::read(&store).unwrap();
    assert!(good.len() >= 3 * 4096, "the store is smaller than expected: {}", good.len());
    // The header page is intact; the pages after it are not.
    let mut damaged = good.clone();
    damaged[4096..3 * 4096].fill(0xA5);
    std::fs::write(&store, &damaged).unwrap();
    std::fs::remove_file(lab.config_file()).unwrap();
    let before = snapshot(lab.dir());
    let out = lab.run(&["init"]).fails_cleanly();
    let line = out.error_line();
    assert!(line.contains("cannot open the store"), "{out}");
    assert!(line.contains("nothing was changed") && line.contains("backup"), "{out}");
    assert_eq!(before, snapshot(lab.dir()), "init wrote something: {out}");

    std::fs::remove_file(&store).unwrap();
    let other = rusqlite::Connection::open(&store).unwrap();
    other.execute_batch("CREATE TABLE notes (body TEXT)").unwrap();
    drop(other);
    let before = snapshot(lab.dir());
    let out = lab.run(&["init"]).fails_cleanly();
    assert!(out.error_line().contains("not an ovpn-mfa store"), "{out}");
    assert_eq!(before, snapshot(lab.dir()), "init wrote something: {out}");
}

// Recovery codes and passwords.

#[test]
fn each_recovery_code_works_once_and_none_after_the_user_is_removed() {
    let lab = Lab::new();
    lab.add_user("alice");

    let out = lab.run(&["user", "recovery-codes", "alice", "--yes", "--json"]).ok().json();
    assert_eq!(out["user"], "alice");
    let codes: Vec<String> = out["recovery_codes"]
        .as_array()
        .expect("a list of codes")
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 8);
    let mut distinct = codes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 8, "{codes:?}");

    lab.check("alice", &codes[0]).ok();
    lab.check("alice", &codes[0]).refused("wrong-code");
    let shown = lab.run(&["user", "show", "alice", "--json"]).ok().json();
    assert_eq!(shown["recovery_codes_left"], 7);

    let removed = lab.run(&["user", "remove", "alice", "--yes"]).ok();
    assert_eq!(removed.stdout, "alice: removed\n");
    lab.check("alice", &codes[1]).refused("unknown-user");

    let decisions = lab.auth_decisions("alice");
    let reasons: Vec<&str> = decisions.iter().map(|d| d.1.as_str()).collect();
    assert_eq!(reasons, ["recovery-code", "wrong-code", "unknown-user"]);
}

#[test]
fn a_user_with_a_password_needs_it_on_stdin_alongside_the_code() {
    let lab = Lab::new();
    let out = lab
        .run_with_stdin(&["user", "add", "carol", "--password-stdin", "--json"], "s3cret pw\n")
        .ok()
        .json();
    let secret = out["secret"].as_str().unwrap().to_owned();
    let shown = lab.run(&["user", "show", "carol", "--json"]).ok().json();
    assert_eq!(shown["password"], true);

    let code = totp_at(&secret, time_with_margin(5));
    let check = ["check", "carol", &code, "--password-stdin"];
    lab.run_with_stdin(&check, "wrong pw\n").refused("wrong-password");
    // Without the password the code alone is not enough.
    lab.check("carol", &code).refused("no-password");
    let out = lab.run_with_stdin(&check, "s3cret pw\n").ok();
    assert_eq!(out.stdout, "accepted\n");
    lab.run_with_stdin(&check, "s3cret pw\n").refused("replayed-code");

    let reasons: Vec<String> = lab.auth_decisions("carol").into_iter().map(|d| d.1).collect();
    assert_eq!(reasons, ["wrong-password", "no-password", "ok", "replayed-code"]);
}

// Regressions.

/// Guards against a user enrolled with a secret nobody saw: `user add` used to store the
/// user first and then fail on a QR path that already existed.
#[test]
fn a_qr_file_that_cannot_be_written_leaves_no_user_and_no_new_secret_behind() {
    let lab = Lab::new();
    let taken = lab.dir().join("taken.svg");
    std::fs::write(&taken, "someone else's file").unwrap();
    let png = lab.dir().join("new.png");
    let qr = ["--qr-png", png.to_str().unwrap(), "--qr-svg", taken.to_str().unwrap()];

    let out = lab.run(&[&["user", "add", "alice"][..], &qr].concat()).fails_cleanly();
    assert!(out.error_line().contains("cannot write the QR code"), "{out}");
    assert!(!png.exists(), "a QR file with a secret nobody enrolled was left behind");
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "someone else's file");
    lab.assert_store_intact(&[]);

    // The same goes for a new secret: the old one keeps working.
    let secret = lab.add_user("alice");
    lab.run(&[&["user", "reset-otp", "alice", "--yes"][..], &qr].concat()).fails_cleanly();
    assert!(!png.exists());
    lab.check("alice", &totp_at(&secret, unix_now())).ok();
}

#[test]
fn passwords_shorter_than_eight_characters_are_refused_and_nothing_is_stored() {
    let lab = Lab::new();
    for short in ["1234\n", "pin\n"] {
        let add = lab.run_with_stdin(&["user", "add", "dave", "--password-stdin"], short);
        assert_eq!(add.code, Some(1), "{add}");
        assert!(add.stderr.contains("8 to 512 characters"), "{add}");
        assert!(!add.stdout.contains("Secret"), "no enrolment may be shown: {add}");
    }
    let listed = lab.run(&["user", "list", "--json"]).ok().json();
    assert_eq!(listed.as_array().map(Vec::len), Some(0));
    lab.run(&["user", "add", "dave", "--json"]).ok();
    let set = lab.run_with_stdin(&["user", "set-password", "dave", "--password-stdin"], "1234\n");
    assert_eq!(set.code, Some(1), "{set}");
    let shown = lab.run(&["user", "show", "dave", "--json"]).ok().json();
    assert_eq!(shown["password"], false);
}

/// `ovpn-mfa --dir DIR ARGS...` with standard output going to `stdout` (stderr captured).
fn run_with_stdout(lab: &Lab, args: &[&str], stdout: Stdio) -> Run {
    let mut command = ovpn_mfa(lab.dir(), args);
    command.stdin(Stdio::null()).stdout(stdout).stderr(Stdio::piped());
    let what = format!("{command:?}");
    Run::from_output(what, command.output().expect("run ovpn-mfa"))
}

/// Standard output on a full disk.
fn dev_full() -> Stdio {
    Stdio::from(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap())
}

/// Standard output into a pipe nobody reads any more (`| true`, `| head -1` after its line).
fn closed_pipe() -> Stdio {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "pipe2");
    // SAFETY: pipe2 just opened these descriptors and nothing else owns them.
    let (reader, writer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(reader);
    Stdio::from(writer)
}

/// Guards against a secret stored but never shown: `user add`, `user recovery-codes` and
/// `user reset-otp` used to commit first and then panic on standard output.
#[test]
fn a_secret_that_cannot_be_shown_is_not_stored_and_the_old_one_keeps_working() {
    let lab = Lab::new();
    for (sink, name) in [(dev_full(), "f1"), (closed_pipe(), "p1")] {
        let add = run_with_stdout(&lab, &["user", "add", name], sink).fails_cleanly();
        assert!(add.error_line().contains(&format!("{name} was not added")), "{add}");
        assert!(add.error_line().contains("cannot write to standard output"), "{add}");
    }
    lab.run(&["user", "add", "j1", "--json"]).ok();
    run_with_stdout(&lab, &["user", "add", "j2", "--json"], dev_full()).fails_cleanly();
    lab.assert_store_intact(&["j1"]);

    let secret = lab.add_user("alice");
    let out = lab.run(&["user", "recovery-codes", "alice", "--yes", "--json"]).ok().json();
    let code = out["recovery_codes"][0].as_str().unwrap().to_owned();
    for sink in [dev_full(), closed_pipe()] {
        let args = ["user", "recovery-codes", "alice", "--yes"];
        let out = run_with_stdout(&lab, &args, sink).fails_cleanly();
        assert!(out.error_line().contains("recovery codes of alice were not changed"), "{out}");
        let args = ["user", "reset-otp", "alice", "--yes"];
        let out = run_with_stdout(&lab, &args, dev_full()).fails_cleanly();
        assert!(out.error_line().contains("OTP secret of alice was not changed"), "{out}");
    }
    let shown = lab.run(&["user", "show", "alice", "--json"]).ok().json();
    assert_eq!(shown["recovery_codes_left"], 8);
    lab.check("alice", &code).ok();
    lab.check("alice", &totp_at(&secret, unix_now())).ok();
    let actions = lab.run(&["audit", "--user", "alice"]).ok().stdout;
    assert_eq!(actions.matches("user-recovery-codes").count(), 1, "{actions}");
    assert!(!actions.contains("user-reset-otp"), "{actions}");
}

/// Guards against a panic and backtrace when a reader goes away: `audit | head -1` ends
/// quietly, with the exit code of a program ended by SIGPIPE; a full disk is an error.
#[test]
fn listings_end_quietly_when_their_reader_goes_away() {
    let lab = Lab::new();
    for name in ["alice", "bob", "carol"] {
        lab.add_user(name);
    }
    for args in [
        &["audit", "--limit", "100000"][..],
        &["audit", "--json"],
        &["user", "list"],
        &["user", "show", "alice"],
        &["openvpn", "client-config", "alice"],
    ] {
        let out = run_with_stdout(&lab, args, closed_pipe());
        assert_eq!(out.code, Some(141), "{out}");
        assert_eq!(out.stderr, "", "{out}");
        let out = run_with_stdout(&lab, args, dev_full()).fails_cleanly();
        assert!(out.error_line().contains("cannot write to standard output: No space"), "{out}");
    }
}

/// The files in `dir` (recursively) with their contents.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path.clone());
                out.insert(path, Vec::new());
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// `server init` for this lab: system files under DIR/root, a stand-in plugin, and no
/// changes to the running system.
fn server_init(lab: &Lab, extra: &[&str]) -> Run {
    let plugin = lab.dir().join("stand-in-plugin.so");
    if !plugin.exists() {
        std::fs::write(&plugin, "").unwrap();
    }
    let root = lab.dir().join("root");
    let mut args = vec!["server", "init", "--endpoint", "vpn.example.com", "--no-system", "--yes"];
    args.extend(["--root", root.to_str().unwrap(), "--plugin-path", plugin.to_str().unwrap()]);
    args.extend(extra);
    lab.run(&args)
}

/// Clears the immutable attribute it set, also when the test fails.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Immutable {
        let mut chattr = Command::new("chattr");
        chattr.arg("+i").arg(path);
        let out = run(chattr, None);
        assert_eq!(out.code, Some(0), "this test needs root and chattr: {out}");
        Immutable(path.to_owned())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// Guards against a certificate that stays valid forever: `user remove` used to delete the
/// user first and then fail to write the CRL, and a retry found no user to remove.
#[test]
fn a_user_whose_certificate_cannot_be_revoked_is_not_removed_and_a_retry_works() {
    let lab = Lab::new();
    server_init(&lab, &[]).ok();
    lab.add_user("alice");
    let pki = lab.dir().join("root/etc/openvpn/server/server");
    let ledger = || std::fs::read_to_string(pki.join("pki.json")).unwrap();
    assert!(ledger().contains("\"alice\""), "{}", ledger());

    // The CRL cannot be replaced, even by root.
    let before = snapshot(lab.dir());
    let guard = Immutable::set(&pki.join("crl.pem"));
    let out = lab.run(&["user", "remove", "alice", "--yes"]).fails_cleanly();
    assert!(out.error_line().contains("alice was not removed"), "{out}");
    assert!(out.error_line().contains("run `ovpn-mfa user remove alice` again"), "{out}");
    assert!(out.error_line().contains("crl.pem"), "{out}");
    assert!(!out.stderr.contains("run as root"), "already root: {out}");
    assert!(out.stderr.contains("chattr -i"), "{out}");
    assert!(!out.stdout.contains("removed"), "{out}");
    lab.assert_store_intact(&["alice"]);
    assert_eq!(before, snapshot(lab.dir()), "a failed removal changed files");

    // A server.toml that cannot be read stops it the same way.
    drop(guard);
    let state = lab.dir().join("server.toml");
    let good = std::fs::read(&state).unwrap();
    std::fs::write(&state, "this is = = not toml").unwrap();
    let out = lab.run(&["user", "remove", "alice", "--yes"]).fails_cleanly();
    assert!(out.error_line().contains("alice was not removed"), "{out}");
    assert!(out.error_line().contains("server.toml is not valid"), "{out}");
    lab.assert_store_intact(&["alice"]);

    // Once fixed, running it again revokes and removes.
    std::fs::write(&state, good).unwrap();
    let crl = std::fs::read(pki.join("crl.pem")).unwrap();
    let out = lab.run(&["user", "remove", "alice", "--yes"]).ok();
    assert!(out.stderr.contains("Revoked the certificate of alice"), "{out}");
    assert_eq!(out.stdout, "alice: removed\n");
    assert!(!ledger().contains("\"alice\""), "{}", ledger());
    assert_ne!(crl, std::fs::read(pki.join("crl.pem")).unwrap(), "the CRL was not re-signed");
    lab.assert_store_intact(&[]);
}

/// Guards against a silent loss: `server adopt` on a file with a begin marker but no end
/// marker used to drop every line after the marker.
#[test]
fn adopting_a_config_with_an_unterminated_ovpn_mfa_block_is_refused_and_changes_nothing() {
    let lab = Lab::empty();
    let conf = lab.dir().join("server.conf");
    let text = "port 1194\ndev tun\n\
                # --- ovpn-mfa begin: managed by `ovpn-mfa server adopt` ---\n\
                hand-window 60\nca ca.crt\ncert server.crt\nkey server.key\n";
    std::fs::write(&conf, text).unwrap();
    let before = snapshot(lab.dir());
    for extra in [&["--dry-run"][..], &[]] {
        let args = [&["server", "adopt", conf.to_str().unwrap(), "--verifier", "script"], extra];
        let out = lab.run(&args.concat()).fails_cleanly();
        assert!(out.error_line().contains("line 3 begins an ovpn-mfa block"), "{out}");
        assert!(out.error_line().contains("# --- ovpn-mfa end ---"), "{out}");
        assert_eq!(out.stdout, "", "{out}");
        assert_eq!(before, snapshot(lab.dir()), "{out}");
    }
}

/// Guards against a leaked key: `server adopt` used to write the config (which may hold an
/// inline <key>) back as 0644 root:root, whatever its mode and group were.
#[test]
fn adopting_keeps_the_mode_owner_and_group_of_the_config_and_its_backup() {
    use std::os::unix::fs::MetadataExt;
    let lab = Lab::empty();
    let conf = lab.dir().join("server.conf");
    let original = "port 1194\ndev tun\nreneg-sec 0\n\
                    auth-user-pass-verify /etc/openvpn/check-password.sh via-file\n\
                    reneg-sec 0\n<key>\n-----BEGIN PRIVATE KEY-----\nsecret\n\
                    -----END PRIVATE KEY-----\n</key>\n";
    std::fs::write(&conf, original).unwrap();
    std::os::unix::fs::chown(&conf, Some(0), Some(65534)).unwrap();
    std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o640)).unwrap();

    let out = lab.run(&["server", "adopt", conf.to_str().unwrap(), "--verifier", "script"]).ok();
    let adopted = std::fs::read_to_string(&conf).unwrap();
    assert!(adopted.contains("# --- ovpn-mfa end ---"), "{adopted}");
    let backups: Vec<PathBuf> = std::fs::read_dir(lab.dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".ovpn-mfa-backup-"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(std::fs::read_to_string(&backups[0]).unwrap(), original);
    for file in [&conf, &backups[0]] {
        let meta = std::fs::symlink_metadata(file).unwrap();
        assert!(meta.is_file(), "{}", file.display());
        assert_eq!(meta.mode() & 0o7777, 0o640, "{}", file.display());
        assert_eq!((meta.uid(), meta.gid()), (0, 65534), "{}", file.display());
    }

    // The earlier verify script is commented out, and said so; the reneg-sec 0 lines are
    // reported once, with their lines.
    let verify: Vec<&str> =
        adopted.lines().filter(|l| l.starts_with("auth-user-pass-verify")).collect();
    assert_eq!(verify.len(), 1, "{adopted}");
    assert!(!verify[0].contains("check-password.sh"), "{adopted}");
    assert!(adopted.contains("# auth-user-pass-verify /etc/openvpn/check-password.sh"));
    assert!(out.stdout.contains("commented out `auth-user-pass-verify /etc/openvpn/check-password.sh via-file` on line 4"), "{out}");
    assert_eq!(out.stdout.matches("reneg-sec 0").count(), 1, "{out}");
    assert!(out.stdout.contains("`reneg-sec 0` on lines 3 and 5"), "{out}");

    // A line the admin put inside the block is dropped by the next adopt, and named.
    let edited = adopted.replace("# --- ovpn-mfa end ---", "verb 5\n# --- ovpn-mfa end ---");
    std::fs::write(&conf, &edited).unwrap();
    let line = edited.lines().position(|l| l == "verb 5").unwrap() + 1;
    let out = lab.run(&["server", "adopt", conf.to_str().unwrap(), "--verifier", "script"]).ok();
    assert!(out.stdout.contains(&format!("dropped line {line} `verb 5`")), "{out}");
    assert!(out.stdout.contains("put your own lines outside the markers"), "{out}");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), adopted);
    let meta = std::fs::metadata(&conf).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o640, 0, 65534));
}

/// Guards against a forked config: adopting `link.conf -> real.conf` used to replace the
/// link with a file and leave real.conf, the one OpenVPN may read, without MFA.
#[test]
fn adopting_a_symlinked_config_changes_its_target_and_keeps_the_link() {
    use std::os::unix::fs::MetadataExt;
    let lab = Lab::empty();
    let real_dir = lab.dir().join("real");
    std::fs::create_dir(&real_dir).unwrap();
    let real = real_dir.join("real.conf");
    std::fs::write(&real, "port 1194\ndev tun\n").unwrap();
    std::os::unix::fs::chown(&real, Some(0), Some(65534)).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = lab.dir().join("link.conf");
    std::os::unix::fs::symlink("real/real.conf", &link).unwrap();

    let out = lab.run(&["server", "adopt", link.to_str().unwrap(), "--verifier", "script"]).ok();
    assert!(out.stderr.contains("is a symlink: adopting its target"), "{out}");
    assert!(out.stderr.contains(real.to_str().unwrap()), "{out}");
    assert!(out.stdout.contains(&format!("Changed {}:", real.display())), "{out}");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("real/real.conf"));
    let adopted = std::fs::read_to_string(&real).unwrap();
    assert!(adopted.contains("# --- ovpn-mfa end ---"), "{adopted}");
    let meta = std::fs::metadata(&real).unwrap();
    assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o640, 0, 65534));
    // The backup is next to the target, not the link.
    let backups = std::fs::read_dir(&real_dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains("backup"))
        .count();
    assert_eq!(backups, 1);

    let out = lab.run(&["server", "adopt", link.to_str().unwrap(), "--verifier", "script"]).ok();
    assert!(out.stdout.contains("nothing changed"), "{out}");
}

/// The store holds every user's OTP secret: handing it to `nobody` shares it with every
/// other service running as `nobody`, and adopt says so.
#[test]
fn adopting_a_server_that_runs_as_nobody_recommends_a_user_of_its_own() {
    let lab = Lab::empty();
    let conf = lab.dir().join("server.conf");
    std::fs::write(&conf, "port 1194\ndev tun\nuser nobody\ngroup nogroup\n").unwrap();
    let args = ["server", "adopt", conf.to_str().unwrap(), "--verifier", "script", "--dry-run"];
    let out = lab.run(&args).ok();
    assert!(out.stdout.contains("give `nobody`"), "{out}");
    let warning = out.stderr.lines().find(|l| l.contains("runs as `nobody`")).expect("a warning");
    assert!(warning.starts_with("warning: "), "{out}");
    assert!(warning.contains("user openvpn"), "{out}");

    std::fs::write(&conf, "port 1194\ndev tun\nuser openvpn\n").unwrap();
    let out = lab.run(&args).ok();
    assert!(!out.stderr.contains("nobody"), "{out}");
}

/// Guards against a half-rewritten server: a second `server init` with another subnet used
/// to keep server.conf but rewrite the NAT rules and server.toml, and exit 0.
#[test]
fn a_second_server_init_with_other_network_options_is_refused_and_changes_nothing() {
    let lab = Lab::new();
    server_init(&lab, &[]).ok();
    let before = snapshot(lab.dir());
    assert!(server_init(&lab, &[]).ok().stdout.contains("Nothing to do"));

    for extra in [&["--subnet", "10.9.0.0/24"][..], &["--subnet", "10.9.0.0/24", "--dry-run"]] {
        let out = server_init(&lab, extra).fails_cleanly();
        let line = out.error_line();
        assert!(line.contains("nothing was changed"), "{out}");
        assert!(line.contains("--subnet: the existing setup has 10.8.0.0/24"), "{out}");
        assert!(line.contains("this run asks for 10.9.0.0/24"), "{out}");
        assert!(line.contains("--force"), "{out}");
        assert_eq!(before, snapshot(lab.dir()), "{out}");
    }
    let out = server_init(&lab, &["--proto", "tcp", "--dns", "8.8.8.8"]).fails_cleanly();
    assert!(out.error_line().contains("--proto: the existing setup has udp"), "{out}");
    assert!(out.error_line().contains("--dns: the existing setup has 1.1.1.1,9.9.9.9"), "{out}");
    assert_eq!(before, snapshot(lab.dir()), "{out}");

    // --force rewrites every file for the new subnet.
    server_init(&lab, &["--subnet", "10.9.0.0/24", "--force"]).ok();
    let root = lab.dir().join("root");
    let conf = std::fs::read_to_string(root.join("etc/openvpn/server/server.conf")).unwrap();
    assert!(conf.contains("\nserver 10.9.0.0 255.255.255.0\n"), "{conf}");
    let nat = std::fs::read_to_string(root.join("etc/ovpn-mfa/nat-server.nft")).unwrap();
    assert!(nat.contains("ip saddr 10.9.0.0/24") && !nat.contains("10.8.0.0"), "{nat}");
    assert!(server_init(&lab, &["--subnet", "10.9.0.0/24"]).ok().stdout.contains("Nothing to do"));
}

/// The verifier is part of the setup too: a re-run that asks for the other one, or for the
/// plugin at another path, must not say "Nothing to do" and keep the old one.
#[test]
fn a_second_server_init_with_another_verifier_is_refused_and_changes_nothing() {
    let lab = Lab::new();
    server_init(&lab, &[]).ok();
    let before = snapshot(lab.dir());

    let out = server_init(&lab, &["--verifier", "script"]).fails_cleanly();
    let line = out.error_line();
    assert!(line.contains("nothing was changed"), "{out}");
    assert!(line.contains("--verifier: the existing setup has plugin"), "{out}");
    assert!(line.contains("this run asks for script") && line.contains("--force"), "{out}");
    assert_eq!(before, snapshot(lab.dir()), "{out}");

    let other = lab.dir().join("other-plugin.so");
    std::fs::write(&other, "").unwrap();
    let root = lab.dir().join("root");
    let args = ["server", "init", "--endpoint", "vpn.example.com", "--no-system", "--yes"];
    let mut args = args.to_vec();
    args.extend(["--root", root.to_str().unwrap(), "--plugin-path", other.to_str().unwrap()]);
    let out = lab.run(&args).fails_cleanly();
    let said = format!("this run asks for {}", other.display());
    assert!(out.error_line().contains("--plugin-path: the existing setup has"), "{out}");
    assert!(out.error_line().contains(&said), "{out}");
    std::fs::remove_file(&other).unwrap();
    assert_eq!(before, snapshot(lab.dir()), "{out}");

    // --force switches to the script; then the script is what a re-run must ask for.
    server_init(&lab, &["--verifier", "script", "--force"]).ok();
    let conf = std::fs::read_to_string(root.join("etc/openvpn/server/server.conf")).unwrap();
    assert!(conf.contains("\nauth-user-pass-verify ") && !conf.contains("\nplugin "), "{conf}");
    let out = server_init(&lab, &["--verifier", "script"]).ok();
    assert!(out.stdout.contains("Nothing to do"), "{out}");
    let out = server_init(&lab, &[]).fails_cleanly();
    assert!(out.error_line().contains("--verifier: the existing setup has script"), "{out}");
}
