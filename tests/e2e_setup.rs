//! End-to-end tests of the setup commands: `server init`, the profiles `user add` writes,
//! revocation by `user remove`, and `server adopt` on an installer-style configuration.
//!
//! OpenVPN runs the files ovpn-mfa generated, unchanged, in the network namespaces of a
//! [`Lab`] (see `support/`); codes come from `oathtool`, as from a phone. `server init` gets
//! `--root` inside the lab's temp dir and runs inside the server namespace, so its
//! forwarding and NAT changes land there; the tests check that nothing reaches the host.
//!
//! Needs root, openvpn, oathtool and nft; see `support::require_root`.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::{Client, ClientOpts, Lab};

const BIN: &str = env!("CARGO_BIN_EXE_ovpn-mfa");
const CONNECT: Duration = Duration::from_secs(30);
/// How long a client told to HALT may take to exit.
const HALTED: Duration = Duration::from_secs(15);
/// OpenSSL's reason in OpenVPN's `VERIFY ERROR` line for a certificate on the CRL.
const REVOKED: &str = "error=certificate revoked";

/// Where `server init` would write on a real system (and `user add`, `adopt` next to it).
/// None of them may change while the commands run with `--root` and `--dir`.
const HOST_PATHS: &[&str] = &[
    "/etc/openvpn",
    "/etc/ovpn-mfa",
    "/etc/sysctl.d",
    "/etc/systemd/system",
    "/var/lib/ovpn-mfa",
    "/run/openvpn-server",
    "/var/log/openvpn",
];

// ---------------------------------------------------------------------------------------
// Running ovpn-mfa.

/// `ovpn-mfa --dir DIR ARGS...`, in the network namespace `ns` if given (through
/// `ip netns exec`, as an admin would run it on the server).
fn ovpn_mfa(ns: Option<&str>, dir: &Path, args: &[&str]) -> Output {
    let mut command = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, BIN]);
            c
        }
        None => Command::new(BIN),
    };
    command
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("OVPN_MFA_DIR")
        .env_remove("OVPN_MFA_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ovpn-mfa")
}

/// Like [`ovpn_mfa`], but the command must succeed; returns stdout and stderr.
fn run(ns: Option<&str>, dir: &Path, args: &[&str]) -> (String, String) {
    let out = ovpn_mfa(ns, dir, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "`ovpn-mfa {}` failed ({}):\n{stdout}\n{stderr}",
        args.join(" "),
        out.status
    );
    (stdout, stderr)
}

/// `user add NAME --json`; returns the enrolment JSON.
fn add_user(dir: &Path, name: &str) -> Value {
    let (stdout, _) = run(None, dir, &["user", "add", name, "--json"]);
    let enrolment: Value = serde_json::from_str(&stdout).expect("JSON from user add");
    assert_eq!(enrolment["user"], name);
    enrolment
}

/// Every login decision in the audit log, oldest first.
fn auth_rows(dir: &Path) -> Vec<Value> {
    let (stdout, _) = run(None, dir, &["audit", "--json", "--limit", "1000"]);
    let rows: Vec<Value> = serde_json::from_str(&stdout).expect("JSON from audit");
    rows.into_iter().filter(|row| row["kind"] == "auth").collect()
}

fn has_row(dir: &Path, user: &str, decision: &str) -> bool {
    auth_rows(dir).iter().any(|row| row["user"] == user && row["decision"] == decision)
}

// ---------------------------------------------------------------------------------------
// Codes, as a phone computes them.

fn oathtool(args: &[&str]) -> String {
    let out = Command::new("oathtool").args(args).output().unwrap_or_else(|e| {
        panic!("the end-to-end tests need `oathtool` (apt-get install oathtool): {e}")
    });
    assert!(out.status.success(), "oathtool failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 from oathtool").trim().to_owned()
}

fn code_now(secret: &str) -> String {
    oathtool(&["--totp", "-b", secret])
}

/// Six digits that are not the code of any step near now, so no drift window accepts them.
fn wrong_code(secret: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let near: HashSet<String> = (0..=6)
        .map(|k| oathtool(&["--totp", "-b", "-N", &format!("@{}", now - 90 + k * 30), secret]))
        .collect();
    (0..)
        .map(|i: u64| format!("{:06}", (424_242 + i * 137_137) % 1_000_000))
        .find(|candidate| !near.contains(candidate))
        .expect("a code outside the window")
}

// ---------------------------------------------------------------------------------------
// What the host and the namespaces look like.

/// One file system entry as far as "did anything change" goes.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    mode: u32,
    uid: u32,
    len: u64,
    mtime: (i64, i64),
    /// Contents of regular files.
    contents: Option<Vec<u8>>,
}

/// Every entry under `root` (itself included, if it exists), without following symlinks.
fn tree(root: &Path, with_contents: bool) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut pending = vec![root.to_owned()];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                pending.push(entry.path());
            }
        }
        let contents = (with_contents && meta.is_file())
            .then(|| std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())));
        let entry = Entry {
            mode: meta.mode(),
            uid: meta.uid(),
            len: if meta.is_dir() { 0 } else { meta.len() },
            mtime: (meta.mtime(), meta.mtime_nsec()),
            contents,
        };
        out.insert(path, entry);
    }
    out
}

fn host_tree() -> BTreeMap<PathBuf, Entry> {
    HOST_PATHS.iter().flat_map(|p| tree(Path::new(p), false)).collect()
}

/// Panics with the differences unless both snapshots are equal.
fn assert_same_tree(before: &BTreeMap<PathBuf, Entry>, after: &BTreeMap<PathBuf, Entry>) {
    let changed: Vec<_> = before
        .keys()
        .chain(after.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|path| before.get(*path) != after.get(*path))
        .map(|path| match (before.get(path), after.get(path)) {
            (None, _) => format!("new: {}", path.display()),
            (_, None) => format!("gone: {}", path.display()),
            _ => format!("changed: {}", path.display()),
        })
        .collect();
    assert!(changed.is_empty(), "file system changes:\n{}", changed.join("\n"));
}

/// `net.ipv4.ip_forward` in the namespace `ns`, or in the host's when `None`.
fn ip_forward(ns: Option<&str>) -> String {
    match ns {
        Some(ns) => support::netns_run(ns, &["cat", "/proc/sys/net/ipv4/ip_forward"]),
        None => std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("read ip_forward"),
    }
    .trim()
    .to_owned()
}

/// `nft list table inet ovpn_mfa_server` in `ns` (or the host): its listing, if it exists.
fn nat_table(ns: Option<&str>) -> Option<String> {
    let args = ["nft", "list", "table", "inet", "ovpn_mfa_server"];
    let out = match ns {
        Some(ns) => support::netns_exec(ns, &args),
        None => Command::new(args[0]).args(&args[1..]).output().expect("run nft"),
    };
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One command on OpenVPN's management unix socket; returns the answer up to `END` or the
/// `SUCCESS:`/`ERROR:` line. The socket is a path, so it works from any network namespace.
fn management(socket: &Path, command: &str) -> String {
    let stream = UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("connect to {}: {e}", socket.display()));
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("socket timeout");
    let mut writer = stream.try_clone().expect("clone socket");
    writeln!(writer, "{command}").expect("send to management");
    let mut answer = String::new();
    for line in BufReader::new(stream).lines() {
        let line = line.expect("read from management");
        if line.starts_with('>') {
            continue;
        }
        answer.push_str(&line);
        answer.push('\n');
        if line == "END" || line.starts_with("SUCCESS:") || line.starts_with("ERROR:") {
            break;
        }
    }
    let _ = writeln!(writer, "quit");
    answer
}

fn assert_pings(lab: &Lab, client: &Client) {
    let ping = lab.ping_from_client(client, 3);
    assert_eq!(ping.transmitted, 3, "{}", ping.output);
    assert!(ping.received >= 2, "pings lost in the tunnel:\n{}", ping.output);
}

// ---------------------------------------------------------------------------------------
// A server made by `server init`.

/// The paths of a lab's `server init`: root T, data directory D, and what it made there.
struct InitServer {
    root: PathBuf,
    dir: PathBuf,
    args: Vec<String>,
}

impl InitServer {
    /// Arguments for the lab: its veth address and port, its own tunnel subnet (so the
    /// server's tunnel address is `lab.server_tunnel_ip()`), everything else default.
    fn new(lab: &Lab) -> InitServer {
        // init's default front end is the plugin next to this binary: have it built.
        support::plugin_so();
        let root = lab.path("root");
        let args = vec![
            "server".to_owned(),
            "init".into(),
            "--endpoint".into(),
            format!("{}:{}", lab.server_addr(), lab.port()),
            "--root".into(),
            root.display().to_string(),
            "--subnet".into(),
            format!("{}/24", lab.tunnel_net()),
        ];
        InitServer { root, dir: lab.path("mfa"), args }
    }

    /// `server init` inside the server namespace, with `extra` arguments.
    fn run(&self, lab: &Lab, extra: &[&str]) -> String {
        let mut args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        args.extend(extra);
        run(Some(lab.server_ns()), &self.dir, &args).0
    }

    fn conf(&self) -> PathBuf {
        self.root.join("etc/openvpn/server/server.conf")
    }

    fn pki_dir(&self) -> String {
        self.root.join("etc/openvpn/server/server").display().to_string()
    }

    fn socket(&self) -> PathBuf {
        self.root.join("run/openvpn-server/server.sock")
    }
}

/// `server init`, `user add alice`, OpenVPN on the generated config, and alice connected
/// with her generated profile and a code. Returns her secret and a copy of her profile (the
/// file she was sent; `user remove` deletes the server's).
fn init_and_connect_alice(lab: &mut Lab, setup: &InitServer) -> (Client, String, PathBuf) {
    let out = setup.run(lab, &[]);
    assert!(out.contains("Server server is set up"), "{out}");
    assert!(!out.contains("systemctl"), "systemctl run with --root:\n{out}");

    let enrolment = add_user(&setup.dir, "alice");
    let secret = enrolment["secret"].as_str().expect("secret in the JSON").to_owned();
    let profile = PathBuf::from(enrolment["profile"].as_str().expect("profile in the JSON"));
    assert_eq!(profile, setup.dir.join("profiles/alice.ovpn"));
    assert_eq!(std::fs::metadata(&profile).unwrap().permissions().mode() & 0o777, 0o600);
    let copy = lab.path("alice-sent.ovpn");
    std::fs::copy(&profile, &copy).expect("copy the profile");

    lab.start_server_with_config(&setup.conf(), &[]);
    let client = lab.start_client_with_config(&copy, ClientOpts::new("alice", code_now(&secret)));
    client.wait_connected(CONNECT).unwrap();
    (client, secret, copy)
}

#[test]
fn a_server_made_by_init_connects_a_user_with_her_profile_and_a_code() {
    let host_before = host_tree();
    let host_forward = ip_forward(None);
    let mut lab = Lab::new();
    let setup = InitServer::new(&lab);

    let (client, _, profile) = init_and_connect_alice(&mut lab, &setup);
    // To the server's own tunnel address, the first host of the --subnet given to init.
    assert_pings(&lab, &client);
    let status = management(&setup.socket(), "status 2");
    assert!(status.contains("CLIENT_LIST,alice,"), "alice not in the status:\n{status}");

    // The profile is self-contained and points at the endpoint given to init.
    let text = std::fs::read_to_string(&profile).unwrap();
    assert!(text.contains(&format!("\nremote {} {}\n", lab.server_addr(), lab.port())), "{text}");
    for needle in ["<ca>", "<cert>", "<key>", "<tls-crypt>", "\nauth-user-pass\n", "auth-nocache"] {
        assert!(text.contains(needle), "no {needle:?} in the profile:\n{text}");
    }

    // The server config names only files under T and D, and the plugin next to this binary
    // as the verifier (init's default front end).
    let conf = std::fs::read_to_string(setup.conf()).unwrap();
    for needle in
        ["plugin \"", "libovpn_mfa_plugin.so\"", "auth-gen-token", "crl-verify", "management "]
    {
        assert!(conf.contains(needle), "no {needle:?} in server.conf:\n{conf}");
    }
    assert!(conf.contains(&format!("management {} unix", setup.socket().display())), "{conf}");
    let status_dir = setup.root.join("var/log/openvpn");
    assert!(conf.contains(&format!("status {}/", status_dir.display())), "{conf}");
    for path in conf.split_whitespace().map(|w| w.trim_matches('"')).filter(|w| w.starts_with('/'))
    {
        let plugin = support::plugin_so();
        let inside = [setup.root.as_path(), setup.dir.as_path(), Path::new(BIN), &plugin]
            .iter()
            .any(|base| Path::new(path).starts_with(base));
        assert!(inside, "server.conf refers to {path}, outside T and D");
    }

    // Forwarding and NAT were applied in the server namespace, and only there.
    assert_eq!(ip_forward(Some(lab.server_ns())), "1");
    let table = nat_table(Some(lab.server_ns())).expect("NAT table in the server namespace");
    assert!(table.contains("masquerade"), "{table}");
    assert!(table.contains(&format!("{}/24", lab.tunnel_net())), "{table}");
    assert_eq!(nat_table(None), None, "the NAT table reached the host's namespace");
    assert_eq!(ip_forward(None), host_forward, "the host's forwarding setting changed");
    assert_same_tree(&host_before, &host_tree());
}

#[test]
fn removing_a_user_ends_her_session_and_her_certificate_is_refused_afterwards() {
    let mut lab = Lab::new();
    let setup = InitServer::new(&lab);
    let (client, secret, profile) = init_and_connect_alice(&mut lab, &setup);

    let (_, stderr) = run(None, &setup.dir, &["user", "remove", "alice", "--yes"]);
    assert!(stderr.contains("Revoked the certificate of alice"), "{stderr}");
    assert!(
        stderr.contains("Ended 1 live session(s) of alice."),
        "no client-kill through the socket:\n{stderr}"
    );

    // The server dropped her session at once and told her client to halt, so it stops
    // instead of retrying with a revoked certificate.
    assert!(client.wait_exit(HALTED), "her client is still running:\n{}", client.log());
    let gone = support::wait_until(HALTED, || {
        !management(&setup.socket(), "status 2").contains("CLIENT_LIST,alice,")
    });
    assert!(gone, "alice still listed:\n{}", management(&setup.socket(), "status 2"));

    // Her copy of the profile and a fresh code no longer get in: the CRL stops the TLS
    // handshake before ovpn-mfa is even asked, and ovpn-mfa no longer knows her.
    let refusals = lab.server_log().matches(REVOKED).count();
    let again = lab.start_client_with_config(&profile, ClientOpts::new("alice", code_now(&secret)));
    lab.wait_server_log(REVOKED, refusals + 1, CONNECT).unwrap();
    assert!(
        !support::wait_until(Duration::from_secs(5), || again.count(support::INIT_DONE) > 0),
        "the revoked certificate got a tunnel:\n{}",
        again.log()
    );
    let out = ovpn_mfa(None, &setup.dir, &["user", "show", "alice"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user alice"));
}

#[test]
fn a_dry_run_writes_nothing_and_a_second_init_has_nothing_to_do() {
    let lab = Lab::new();
    let setup = InitServer::new(&lab);
    let lab_before = tree(lab.dir(), true);
    let host_before = host_tree();

    let out = setup.run(&lab, &["--dry-run"]);
    assert!(out.contains("dry run, nothing written"), "{out}");
    for step in [
        format!("write {}", setup.conf().display()),
        format!("create a CA, server certificate, CRL and tls-crypt key in {}", setup.pki_dir()),
        "create the ovpn-mfa configuration and store".into(),
        "turn on forwarding: sysctl".into(),
        "apply the NAT rules: nft -f".into(),
    ] {
        assert!(out.contains(&step), "the dry run does not list {step:?}:\n{out}");
    }
    assert!(!out.contains("systemctl"), "systemctl planned with --root:\n{out}");
    assert!(!setup.root.exists() && !setup.dir.exists());
    assert_same_tree(&lab_before, &tree(lab.dir(), true));
    assert_same_tree(&host_before, &host_tree());
    assert_eq!(ip_forward(Some(lab.server_ns())), "0");
    assert_eq!(nat_table(Some(lab.server_ns())), None);

    let out = setup.run(&lab, &[]);
    assert!(out.contains("Server server is set up"), "{out}");
    let made = [tree(&setup.root, true), tree(&setup.dir, true)];
    assert!(made[0].len() > 10 && made[1].len() > 3, "{made:#?}");

    let out = setup.run(&lab, &[]);
    assert!(out.contains("Nothing to do"), "{out}");
    let out = setup.run(&lab, &["--dry-run"]);
    assert!(out.contains("Nothing to do"), "{out}");
    assert_same_tree(&made[0], &tree(&setup.root, true));
    assert_same_tree(&made[1], &tree(&setup.dir, true));
    assert_same_tree(&host_before, &host_tree());
}

// ---------------------------------------------------------------------------------------
// `server adopt`.

/// A server configuration in the style of the common road-warrior installers, for the
/// lab's port, tunnel subnet and PKI, with every file in `dir`.
fn installer_style_conf(lab: &Lab, dir: &Path) -> String {
    let pki = lab.pki();
    let (cert, key) = pki.server();
    let files = [
        (pki.ca(), "ca.crt"),
        (cert, "server.crt"),
        (key, "server.key"),
        (pki.tls_crypt(), "tls-crypt.key"),
        (pki.empty_crl(), "crl.pem"),
    ];
    for (from, name) in files {
        std::fs::copy(&from, dir.join(name)).expect("copy PKI file");
    }
    let d = dir.display();
    format!(
        "port {port}\nproto udp\ndev tun\nuser nobody\ngroup nogroup\npersist-key\npersist-tun\n\
         keepalive 10 120\ntopology subnet\nserver {net} 255.255.255.0\n\
         ifconfig-pool-persist {d}/ipp.txt\npush \"redirect-gateway def1 bypass-dhcp\"\n\
         dh none\necdh-curve prime256v1\ntls-crypt {d}/tls-crypt.key\ncrl-verify {d}/crl.pem\n\
         ca {d}/ca.crt\ncert {d}/server.crt\nkey {d}/server.key\nauth SHA256\n\
         cipher AES-128-GCM\ntls-server\ntls-version-min 1.2\nstatus {d}/openvpn-status.log\n\
         verb 3\nreneg-sec 0\n",
        port = lab.port(),
        net = lab.tunnel_net(),
    )
}

fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().expect("run id");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a uid from id -u")
}

#[test]
fn adopting_an_installer_style_server_adds_mfa_that_works_as_nobody() {
    // The script front end: the one that must write the store as `nobody` on every login
    // (the plugin opens it before the privilege drop; tests/e2e_plugin.rs covers that).
    // The server drops to nobody, which must reach the CRL, the store and the tmp-dir: like
    // /etc/openvpn/server, this directory is world-readable, unlike the lab's. Declared
    // first, it outlives the lab and so the server using it.
    let shared = tempfile::Builder::new().prefix("ovmfa-e2e-adopt-").tempdir().unwrap();
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut lab = Lab::new();
    let server_dir = shared.path().join("server");
    std::fs::create_dir(&server_dir).unwrap();
    let conf = server_dir.join("server.conf");
    let original = installer_style_conf(&lab, &server_dir);
    std::fs::write(&conf, &original).unwrap();
    let dir = shared.path().join("mfa");

    let (out, err) = run(
        None,
        &dir,
        &["server", "adopt", conf.to_str().unwrap(), "--dry-run", "--verifier", "script"],
    );
    assert!(out.contains("dry run, nothing written"), "{out}");
    // Certificates the installer named otherwise would be refused: adopt says how to allow it.
    assert!(err.contains("note: ") && err.contains("bind_certificate"), "{err}");
    assert!(out.contains("reneg-sec 0"), "{out}");
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), original);
    assert!(!dir.exists(), "the dry run created {}", dir.display());

    let (out, _) =
        run(None, &dir, &["server", "adopt", conf.to_str().unwrap(), "--verifier", "script"]);
    assert!(out.contains("commented out `reneg-sec 0`"), "{out}");
    let adopted = std::fs::read_to_string(&conf).unwrap();
    assert!(adopted.contains(&format!("auth-user-pass-verify \"{BIN} --dir {}", dir.display())));
    assert!(adopted.contains("auth-gen-token"), "{adopted}");
    assert!(!adopted.lines().any(|l| l.trim() == "reneg-sec 0"), "{adopted}");
    let backups: Vec<_> = std::fs::read_dir(&server_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".ovpn-mfa-backup-"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(std::fs::read_to_string(backups[0].path()).unwrap(), original);
    let nobody = uid_of("nobody");
    assert_eq!(std::fs::metadata(&dir).unwrap().uid(), nobody, "the data dir is not nobody's");
    assert_eq!(std::fs::metadata(dir.join("auth-token.key")).unwrap().uid(), 0);

    // Twice changes nothing, neither the server's files nor the data directory.
    let before = [tree(&server_dir, true), tree(&dir, true)];
    let (out, _) =
        run(None, &dir, &["server", "adopt", conf.to_str().unwrap(), "--verifier", "script"]);
    assert!(out.contains("nothing changed"), "{out}");
    assert_same_tree(&before[0], &tree(&server_dir, true));
    assert_same_tree(&before[1], &tree(&dir, true));

    // The admin enrols alice after adopting, as root; no server.toml, so no profile.
    let enrolment = add_user(&dir, "alice");
    assert!(enrolment.get("profile").is_none(), "{enrolment}");
    let secret = enrolment["secret"].as_str().unwrap().to_owned();

    lab.start_server_with_config(&conf, &[]);
    assert!(lab.server_log().contains("UID set to nobody"), "{}", lab.server_log());

    // A plain certificate profile (the harness's own client config), not one of ovpn-mfa's.
    let client = lab.start_client(ClientOpts::new("alice", code_now(&secret)));
    client.wait_connected(CONNECT).unwrap();
    assert_pings(&lab, &client);
    assert!(has_row(&dir, "alice", "accepted"), "{:#?}", auth_rows(&dir));

    let wrong = lab.start_client(ClientOpts::new("alice", wrong_code(&secret)));
    wrong.wait_auth_failed(CONNECT).unwrap();
    assert!(wrong.wait_exit(Duration::from_secs(10)), "client still running after AUTH_FAILED");
    assert_eq!(wrong.count(support::INIT_DONE), 0);
    assert!(has_row(&dir, "alice", "refused"), "{:#?}", auth_rows(&dir));
    assert!(client.is_running(), "the refused login ended alice's session");
}
