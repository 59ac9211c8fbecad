//! `ovpn-mfa doctor` against planted system trees (`--root`). Each tree starts as a clean,
//! working setup built the way an administrator would (`ovpn-mfa init`, `openvpn --genkey`,
//! a CA's CRL); each test then plants one misconfiguration and checks that doctor names it,
//! fails, and says how to fix it.
//!
//! The environment checks are injected through the tree: a stand-in `openvpn` that prints a
//! version, and systemd-timesyncd's "synchronized" flag file. So the clean tree passes with
//! every check ok whatever machine the test runs on.
//!
//! Contents:
//! - a clean tree passes, and so does one made by `server init`; the text format
//! - one test per misconfiguration: missing MFA lines, reneg-sec 0, renewal below twice the
//!   hand-window, store mode 0644, auth-token secret 0644, expired CRL, CRL of
//!   another CA, store missing a table, store not owned by
//!   the `user` OpenVPN drops to
//! - environment: an old OpenVPN fails, an unknown clock only warns

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertificateRevocationListParams, IsCa,
    KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber,
};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_ovpn-mfa");

/// The server configuration of the clean tree; tests edit it.
const CLEAN_CONF: &str = "\
# a road-warrior server with ovpn-mfa
port 1194
proto udp
dev tun
server 10.8.0.0 255.255.255.0
ca ca.crt
cert server.crt
key server.key
crl-verify /etc/openvpn/server/crl.pem
user vpn
group vpn
persist-key
hand-window 60
script-security 2
auth-user-pass-verify \"/usr/bin/ovpn-mfa --dir /var/lib/ovpn-mfa verify\" via-file
tmp-dir /var/lib/ovpn-mfa/tmp
auth-gen-token 43200 3600 external-auth
auth-gen-token-secret /var/lib/ovpn-mfa/auth-token.key
";

struct Tree {
    dir: tempfile::TempDir,
    /// The CA of the clean tree: its ca.crt, and the key that signs its CRL.
    ca: Option<(rcgen::Certificate, KeyPair)>,
}

/// A CA certificate and its key, with the same (default) name each time.
fn new_ca() -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (ca.self_signed(&key).unwrap(), key)
}

struct Doctor {
    code: Option<i32>,
    stdout: String,
    findings: Vec<Value>,
}

impl Doctor {
    fn finding(&self, check: &str) -> &Value {
        self.findings
            .iter()
            .find(|f| f["check"] == check)
            .unwrap_or_else(|| panic!("no {check} finding: {}", self.stdout))
    }

    fn status(&self, check: &str) -> &str {
        self.finding(check)["status"].as_str().unwrap()
    }

    /// Asserts that exactly the `check` failed, that doctor exits 1, and that it says how to
    /// fix it; returns the detail.
    fn fails_only(&self, check: &str) -> String {
        assert_eq!(self.code, Some(1), "{}", self.stdout);
        let failed: Vec<&str> = self
            .findings
            .iter()
            .filter(|f| f["status"] == "fail")
            .map(|f| f["check"].as_str().unwrap())
            .collect();
        assert_eq!(failed, [check], "{}", self.stdout);
        let finding = self.finding(check);
        assert!(finding["fix"].as_str().is_some_and(|f| !f.is_empty()), "{finding:#}");
        finding["detail"].as_str().unwrap().to_owned()
    }
}

impl Tree {
    /// A working setup: OpenVPN 2.6 with the MFA lines, a store and secrets at 0600, owned by
    /// the user OpenVPN drops to (here: whoever runs the test), a valid CRL, a synced clock.
    fn clean() -> Tree {
        let tree = Tree { dir: tempfile::tempdir().unwrap(), ca: Some(new_ca()) };
        let uid = unsafe { libc::geteuid() };
        let gid = unsafe { libc::getegid() };
        tree.write(
            "/etc/passwd",
            &format!("root:x:0:0::/root:/bin/sh\nvpn:x:{uid}:{gid}::/:/bin/false\n"),
            0o644,
        );
        tree.write("/etc/group", &format!("root:x:0:\nvpn:x:{gid}:\n"), 0o644);
        tree.fake_openvpn("2.6.14");
        tree.write("/usr/bin/ovpn-mfa", "#!/bin/sh\nexit 1\n", 0o755);
        tree.write("/run/systemd/timesync/synchronized", "", 0o644);

        let data = tree.path("/var/lib/ovpn-mfa");
        let init = Command::new(BIN).arg("--dir").arg(&data).arg("init").output().unwrap();
        assert!(init.status.success(), "init: {init:?}");
        std::fs::create_dir(data.join("tmp")).unwrap();
        std::fs::set_permissions(data.join("tmp"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let secret = data.join("auth-token.key");
        let genkey = Command::new("openvpn").args(["--genkey", "auth-token"]).arg(&secret).output();
        assert!(genkey.unwrap().status.success(), "openvpn --genkey auth-token");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();

        tree.write("/etc/openvpn/server/server.key", "not really a key\n", 0o600);
        let ca_pem = tree.ca.as_ref().unwrap().0.pem();
        tree.write("/etc/openvpn/server/ca.crt", &ca_pem, 0o644);
        tree.write_crl(2100);
        tree.write("/etc/openvpn/server/server.conf", CLEAN_CONF, 0o644);
        tree
    }

    fn path(&self, system_path: &str) -> PathBuf {
        self.dir.path().join(system_path.trim_start_matches('/'))
    }

    fn write(&self, system_path: &str, text: &str, mode: u32) {
        let path = self.path(system_path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn chmod(&self, system_path: &str, mode: u32) {
        std::fs::set_permissions(self.path(system_path), std::fs::Permissions::from_mode(mode))
            .unwrap();
    }

    /// A stand-in `openvpn` that only tells its version.
    fn fake_openvpn(&self, version: &str) {
        let script = format!(
            "#!/bin/sh\necho 'OpenVPN {version} x86_64-pc-linux-gnu [SSL (OpenSSL)] [AEAD]'\n"
        );
        self.write("/usr/sbin/openvpn", &script, 0o755);
    }

    /// A CRL from the tree's CA whose nextUpdate is at the start of `next_year`.
    fn write_crl(&self, next_year: i32) {
        let (ca, key) = self.ca.as_ref().unwrap();
        self.write_crl_signed_by(ca, key, next_year);
    }

    fn write_crl_signed_by(&self, ca: &rcgen::Certificate, key: &KeyPair, next_year: i32) {
        let crl = CertificateRevocationListParams {
            this_update: date_time_ymd(2020, 1, 1),
            next_update: date_time_ymd(next_year, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(ca, key)
        .unwrap();
        self.write("/etc/openvpn/server/crl.pem", &crl.pem().unwrap(), 0o644);
    }

    fn edit_conf(&self, edit: impl FnOnce(&str) -> String) {
        let path = self.path("/etc/openvpn/server/server.conf");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, edit(&text)).unwrap();
    }

    fn run(&self, json: bool) -> (Option<i32>, String) {
        let mut cmd = Command::new(BIN);
        cmd.arg("doctor").arg("--root").arg(self.dir.path()).stdin(Stdio::null());
        cmd.env_remove("OVPN_MFA_DIR");
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().expect("run ovpn-mfa doctor");
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn doctor(&self) -> Doctor {
        let (code, stdout) = self.run(true);
        let value: Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        let findings = value.as_array().unwrap().clone();
        Doctor { code, stdout, findings }
    }
}

#[test]
fn a_clean_tree_passes_with_every_check_ok() {
    let tree = Tree::clean();
    let doctor = tree.doctor();
    assert_eq!(doctor.code, Some(0), "{}", doctor.stdout);
    for f in &doctor.findings {
        assert_eq!(f["status"], "ok", "{f:#}");
        assert!(f["fix"].is_null(), "{f:#}");
    }
    let checks: Vec<&str> = doctor.findings.iter().map(|f| f["check"].as_str().unwrap()).collect();
    for check in [
        "clock",
        "openvpn-version",
        "verifier",
        "auth-gen-token",
        "auth-token-secret",
        "reneg-sec",
        "token-renewal",
        "store-mode",
        "store-integrity",
        "store-access",
        "mfa-config",
        "key-modes",
        "tmp-dir",
        "crl",
    ] {
        assert!(checks.contains(&check), "{check} missing from {checks:?}");
    }
    assert_eq!(doctor.finding("crl")["config"], "/etc/openvpn/server/server.conf");
}

#[test]
fn a_server_made_by_server_init_passes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = root.join("var/lib/ovpn-mfa");
    // A stand-in plugin at a path of its own: server init only checks that it exists, and
    // this test must not depend on another test binary having built the real one.
    let stand_in = tempfile::tempdir().unwrap();
    let plugin = stand_in.path().join("libovpn_mfa_plugin.so");
    std::fs::write(&plugin, "").unwrap();
    let init = Command::new(BIN)
        .arg("--dir")
        .arg(&data)
        .args(["server", "init", "--endpoint", "vpn.example.com", "--no-system", "--yes"])
        .arg("--root")
        .arg(root)
        .arg("--plugin-path")
        .arg(&plugin)
        .output()
        .unwrap();
    assert!(init.status.success(), "server init: {init:?}");
    // What the running system would have: OpenVPN, a synced clock, and the verifier binary
    // and plugin at the paths the configuration names.
    let tree = Tree { dir, ca: None };
    tree.fake_openvpn("2.6.14");
    tree.write("/run/systemd/timesync/synchronized", "", 0o644);
    tree.write(BIN, "", 0o755);
    tree.write(plugin.to_str().unwrap(), "", 0o644);

    let doctor = tree.doctor();
    assert_eq!(doctor.code, Some(0), "{}", doctor.stdout);
    for f in &doctor.findings {
        assert_eq!(f["status"], "ok", "{f:#}");
    }
}

#[test]
fn text_output_is_one_line_per_check_and_a_fix_line_for_each_problem() {
    let tree = Tree::clean();
    tree.edit_conf(|t| format!("{t}reneg-sec 0\n"));
    let (code, stdout) = tree.run(false);
    assert_eq!(code, Some(1), "{stdout}");
    let mut lines = stdout.lines().peekable();
    let mut checks = 0;
    while let Some(line) = lines.next() {
        let (status, rest) = line.split_at(6);
        assert!(["ok    ", "warn  ", "FAIL  "].contains(&status), "{line:?}");
        assert!(rest.split_once(": ").is_some_and(|(c, _)| !c.contains(' ')), "{line:?}");
        checks += 1;
        let has_fix = lines.peek().is_some_and(|l| l.starts_with("      fix: "));
        assert_eq!(has_fix, status != "ok    ", "{line:?}");
        if has_fix {
            lines.next();
        }
    }
    assert_eq!(checks, 14, "{stdout}");
    assert!(
        stdout.contains("FAIL  reneg-sec: /etc/openvpn/server/server.conf: line 19"),
        "{stdout}"
    );
}

#[test]
fn missing_mfa_lines_fail() {
    let tree = Tree::clean();
    tree.edit_conf(|t| {
        t.lines()
            .filter(|l| !l.starts_with("auth-user-pass-verify") && !l.starts_with("auth-gen-token"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let doctor = tree.doctor();
    assert_eq!(doctor.code, Some(1), "{}", doctor.stdout);
    assert_eq!(doctor.status("verifier"), "fail");
    assert_eq!(doctor.status("auth-gen-token"), "fail");
    assert_eq!(doctor.status("auth-token-secret"), "warn");
    let fix = doctor.finding("verifier")["fix"].as_str().unwrap();
    assert!(fix.contains("ovpn-mfa openvpn server-config"), "{fix}");
}

#[test]
fn a_token_without_external_auth_fails() {
    let tree = Tree::clean();
    tree.edit_conf(|t| t.replace("3600 external-auth", "3600"));
    let detail = tree.doctor().fails_only("auth-gen-token");
    assert!(detail.contains("disabled user"), "{detail}");
}

#[test]
fn reneg_sec_zero_fails() {
    let tree = Tree::clean();
    tree.edit_conf(|t| format!("{t}reneg-sec 0\n"));
    let detail = tree.doctor().fails_only("reneg-sec");
    assert!(detail.contains("reneg-sec 0"), "{detail}");
}

#[test]
fn a_token_renewal_below_twice_the_hand_window_fails() {
    let tree = Tree::clean();
    tree.edit_conf(|t| t.replace("auth-gen-token 43200 3600", "auth-gen-token 43200 100"));
    let detail = tree.doctor().fails_only("token-renewal");
    assert!(detail.contains("100 s") && detail.contains("hand-window (60 s)"), "{detail}");

    // The renewal defaults to reneg-sec when auth-gen-token gives none.
    let tree = Tree::clean();
    tree.edit_conf(|t| {
        t.replace("auth-gen-token 43200 3600", "auth-gen-token 43200")
            .replace("hand-window 60", "hand-window 90\nreneg-sec 150")
    });
    let doctor = tree.doctor();
    assert_eq!(doctor.status("token-renewal"), "fail", "{}", doctor.stdout);
    assert_eq!(doctor.status("mfa-config"), "warn", "hand-window differs from the config");
}

#[test]
fn a_store_readable_by_everyone_fails() {
    let tree = Tree::clean();
    tree.chmod("/var/lib/ovpn-mfa/ovpn-mfa.sqlite", 0o644);
    let detail = tree.doctor().fails_only("store-mode");
    assert!(detail.contains("0644"), "{detail}");
}

#[test]
fn a_damaged_store_fails_and_is_left_as_it_was() {
    let tree = Tree::clean();
    let store = tree.path("/var/lib/ovpn-mfa/ovpn-mfa.sqlite");
    let mut bytes = std::fs::read(&store).unwrap();
    assert!(bytes.len() >= 3 * 4096, "the store is smaller than expected: {}", bytes.len());
    // Page 2 onwards hold the tables: what a bad disk or a stray write leaves behind.
    bytes[4096..3 * 4096].fill(0xA5);
    std::fs::write(&store, &bytes).unwrap();

    let detail = tree.doctor().fails_only("store-integrity");
    assert!(detail.contains("damaged"), "{detail}");
    assert_eq!(std::fs::read(&store).unwrap(), bytes, "doctor wrote to the store");
    assert!(!tree.path("/var/lib/ovpn-mfa/ovpn-mfa.sqlite-wal").exists(), "doctor left a -wal");
}

#[test]
fn a_store_missing_a_table_fails() {
    let tree = Tree::clean();
    let store = tree.path("/var/lib/ovpn-mfa/ovpn-mfa.sqlite");
    rusqlite::Connection::open(&store).unwrap().execute_batch("DROP TABLE sessions").unwrap();
    let detail = tree.doctor().fails_only("store-integrity");
    assert!(detail.contains("table sessions"), "{detail}");
}

#[test]
fn without_a_server_config_the_store_is_still_checked_whole() {
    let tree = Tree::clean();
    std::fs::remove_file(tree.path("/etc/openvpn/server/server.conf")).unwrap();
    let doctor = tree.doctor();
    assert_eq!(doctor.status("openvpn-config"), "fail", "{}", doctor.stdout);
    assert_eq!(doctor.status("store-integrity"), "ok", "{}", doctor.stdout);

    let store = tree.path("/var/lib/ovpn-mfa/ovpn-mfa.sqlite");
    rusqlite::Connection::open(&store).unwrap().execute_batch("DROP TABLE sessions").unwrap();
    let doctor = tree.doctor();
    let finding = doctor.finding("store-integrity");
    assert_eq!(finding["status"], "fail", "{}", doctor.stdout);
    assert!(finding["detail"].as_str().unwrap().contains("table sessions"), "{finding:#}");
}

#[test]
fn an_emptied_store_fails() {
    let tree = Tree::clean();
    let store = tree.path("/var/lib/ovpn-mfa/ovpn-mfa.sqlite");
    std::fs::write(&store, b"").unwrap();
    let detail = tree.doctor().fails_only("store-integrity");
    assert!(detail.contains("no ovpn-mfa schema"), "{detail}");
    assert_eq!(std::fs::metadata(&store).unwrap().len(), 0, "doctor wrote to the store");
}

#[test]
fn a_store_readable_by_its_group_is_a_warning() {
    let tree = Tree::clean();
    tree.chmod("/var/lib/ovpn-mfa/ovpn-mfa.sqlite", 0o640);
    let doctor = tree.doctor();
    assert_eq!(doctor.status("store-mode"), "warn");
    assert_eq!(doctor.code, Some(0), "{}", doctor.stdout);
}

#[test]
fn an_auth_token_secret_readable_by_everyone_fails() {
    let tree = Tree::clean();
    tree.chmod("/var/lib/ovpn-mfa/auth-token.key", 0o644);
    let detail = tree.doctor().fails_only("auth-token-secret");
    assert!(detail.contains("forge"), "{detail}");
}

#[test]
fn an_expired_crl_fails() {
    let tree = Tree::clean();
    tree.write_crl(2021);
    let detail = tree.doctor().fails_only("crl");
    assert!(detail.contains("expired at 2021-01-01T00:00:00Z"), "{detail}");
}

#[test]
fn a_crl_signed_by_another_ca_fails() {
    let tree = Tree::clean();
    // Same name as the server's CA, another key: only the signature tells them apart.
    let (other, key) = new_ca();
    tree.write_crl_signed_by(&other, &key, 2100);
    let doctor = tree.doctor();
    let detail = doctor.fails_only("crl");
    assert!(detail.contains("not signed by the CA") && detail.contains("ca.crt"), "{detail}");
    let fix = doctor.finding("crl")["fix"].as_str().unwrap();
    assert!(fix.contains("CA"), "{fix}");
}

#[test]
fn a_crl_whose_ca_cannot_be_read_is_a_warning() {
    let tree = Tree::clean();
    tree.edit_conf(|t| t.replace("ca ca.crt\n", "<ca>\nnot shown\n</ca>\n"));
    let doctor = tree.doctor();
    assert_eq!(doctor.status("crl"), "warn", "{}", doctor.stdout);
    assert!(doctor.finding("crl")["detail"].as_str().unwrap().contains("inline"));
    assert_eq!(doctor.code, Some(0), "{}", doctor.stdout);

    let tree = Tree::clean();
    std::fs::remove_file(tree.path("/etc/openvpn/server/ca.crt")).unwrap();
    assert_eq!(tree.doctor().status("crl"), "warn");
}

#[test]
fn a_store_not_owned_by_the_user_openvpn_runs_as_fails() {
    let tree = Tree::clean();
    let other = unsafe { libc::geteuid() } + 1;
    tree.write(
        "/etc/passwd",
        &format!("root:x:0:0::/root:/bin/sh\nvpn:x:{other}:{other}::/:/bin/false\n"),
        0o644,
    );
    tree.write("/etc/group", &format!("root:x:0:\nvpn:x:{other}:\n"), 0o644);
    let doctor = tree.doctor();
    assert_eq!(doctor.code, Some(1), "{}", doctor.stdout);
    let access = doctor.finding("store-access");
    assert_eq!(access["status"], "fail", "{access:#}");
    let detail = access["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("uid {other}")) && detail.contains("ovpn-mfa.sqlite"),
        "{detail}"
    );
    assert!(access["fix"].as_str().unwrap().starts_with("chown vpn "), "{access:#}");
    // The same user cannot use the tmp-dir either.
    assert_eq!(doctor.status("tmp-dir"), "fail");
}

#[test]
fn an_old_openvpn_fails() {
    let tree = Tree::clean();
    tree.fake_openvpn("2.5.9");
    let detail = tree.doctor().fails_only("openvpn-version");
    assert!(detail.contains("2.5.9") && detail.contains("2.6"), "{detail}");
}

#[test]
fn an_unknown_clock_state_is_a_warning_not_a_failure() {
    let tree = Tree::clean();
    std::fs::remove_file(tree.path("/run/systemd/timesync/synchronized")).unwrap();
    let doctor = tree.doctor();
    assert_eq!(doctor.status("clock"), "warn");
    assert!(doctor.finding("clock")["detail"].as_str().unwrap().starts_with("unknown"));
    assert_eq!(doctor.code, Some(0), "{}", doctor.stdout);
}

#[test]
fn a_tmp_dir_inside_tmp_is_warned_about_under_private_tmp() {
    let tree = Tree::clean();
    tree.edit_conf(|t| t.replace("tmp-dir /var/lib/ovpn-mfa/tmp", "tmp-dir /tmp/ovpn-mfa"));
    let doctor = tree.doctor();
    assert_eq!(doctor.status("tmp-dir"), "warn", "{}", doctor.stdout);
    assert!(doctor.finding("tmp-dir")["detail"].as_str().unwrap().contains("PrivateTmp"));

    tree.edit_conf(|t| t.replace("tmp-dir /tmp/ovpn-mfa", "tmp-dir /tmp"));
    assert_eq!(tree.doctor().status("tmp-dir"), "ok");
}

#[test]
fn a_named_config_is_the_only_one_checked() {
    let tree = Tree::clean();
    let other = tree.path("/srv/other.conf");
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    std::fs::write(&other, "server 10.9.0.0 255.255.255.0\n").unwrap();
    let out = Command::new(BIN)
        .arg("doctor")
        .arg("--root")
        .arg(tree.dir.path())
        .arg("--openvpn-config")
        .arg(&other)
        .arg("--json")
        .output()
        .unwrap();
    let findings: Value = serde_json::from_slice(&out.stdout).unwrap();
    let configs: Vec<&str> =
        findings.as_array().unwrap().iter().filter_map(|f| f["config"].as_str()).collect();
    assert!(!configs.is_empty() && configs.iter().all(|c| *c == "/srv/other.conf"), "{configs:?}");
    assert_eq!(out.status.code(), Some(1));
}
