//! The lab: a server namespace and a client namespace joined by a veth pair, the OpenVPN
//! processes started in them, and a temp dir for their PKI, configs and logs.
//!
//! Layout of lab number `n` in test process `pid` (the `slot` mixes both):
//!
//! ```text
//!   ovmfa-e2e-<pid>-<n>-srv                      ovmfa-e2e-<pid>-<n>-cli
//!   om<pid hex>-<n>s  10.213.a.b+1/30  <--veth-->  10.213.a.b+2/30  om<pid hex>-<n>c
//!   tun0 10.214.<slot>.1/24, udp <port>           tun1, tun2, ... one per client
//!   management 127.0.0.1:<mgmt port>
//! ```
//!
//! Namespaces alone already keep parallel labs apart; addresses and ports are still made
//! distinct so that logs from different labs are never confused.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::netns::{self, NS_PREFIX};
use super::pki::{self, Pki};
use super::{log_tail, require_root};

/// Log line OpenVPN writes once a server is listening or a client's tunnel is up.
pub const INIT_DONE: &str = "Initialization Sequence Completed";

const DATA_CIPHERS: &str = "AES-256-GCM:CHACHA20-POLY1305";
const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

/// Set this variable to keep each lab's temp dir (configs, logs, keys) after the test.
pub const KEEP_ENV: &str = "OVMFA_E2E_KEEP";

static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// Extra configuration and environment for the server.
#[derive(Debug, Clone, Default)]
pub struct ServerOpts {
    /// Lines appended verbatim to the base config, e.g. `reneg-sec 20`.
    pub extra: Vec<String>,
    /// Environment variables for the OpenVPN process. Each is also added as a `setenv`
    /// line, because OpenVPN does not pass its process environment on to scripts; plugins
    /// see them both through `getenv` and in their `envp`.
    pub env: Vec<(String, String)>,
}

impl ServerOpts {
    pub fn new() -> ServerOpts {
        ServerOpts::default()
    }

    pub fn line(mut self, line: impl Into<String>) -> ServerOpts {
        self.extra.push(line.into());
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> ServerOpts {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// How a client treats its tun device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TunMode {
    /// `Configure` unless another running client of the lab already has a configured
    /// tunnel, then `NoExec`. The first client gets the working tunnel.
    #[default]
    Auto,
    /// OpenVPN assigns the pushed address and routes: the tunnel carries traffic.
    Configure,
    /// `ifconfig-noexec` and `route-noexec`: the device gets no address and no route, so
    /// any number of such clients can share the client namespace. No ping.
    ///
    /// The harness creates the device (`ip tuntap add`) and sets it up before OpenVPN opens
    /// it, because a tun device left down stalls its client. The kernel reports a tun
    /// device writable only while it is up (`tun_chr_poll`), and OpenVPN, holding a packet
    /// for the device, reads nothing from its socket until it has written that packet. The
    /// server sends such packets unasked: it forwards multicast from its own tun device, such
    /// as the kernel's IPv6 router solicitations, to every client. A client whose device is
    /// down stops reading at the first one, misses the server's keepalives, and restarts
    /// with `Inactivity timeout (--ping-restart)` 10 s later (the server pushes
    /// `ping-restart 10`), then reconnects with its auth token if it has one.
    NoExec,
}

/// Credentials and extra configuration for one client.
#[derive(Debug, Clone)]
pub struct ClientOpts {
    pub username: String,
    /// Sent as is; to test a static challenge, pass a ready-made `SCRV1:...` string.
    /// It goes through a 0600 file for `auth-user-pass`, so it must not contain a newline.
    pub password: String,
    /// Certificate common name. Defaults to the username when that is a valid certificate
    /// name (`[A-Za-z0-9_-]+`), else `client`. Two clients with the same certificate kick
    /// each other out unless the server has `duplicate-cn`.
    pub cert: Option<String>,
    /// Lines appended verbatim to the base config.
    pub extra: Vec<String>,
    pub env: Vec<(String, String)>,
    pub tun: TunMode,
}

impl ClientOpts {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> ClientOpts {
        ClientOpts {
            username: username.into(),
            password: password.into(),
            cert: None,
            extra: Vec::new(),
            env: Vec::new(),
            tun: TunMode::Auto,
        }
    }

    pub fn cert(mut self, name: impl Into<String>) -> ClientOpts {
        self.cert = Some(name.into());
        self
    }

    pub fn line(mut self, line: impl Into<String>) -> ClientOpts {
        self.extra.push(line.into());
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> ClientOpts {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn tun(mut self, mode: TunMode) -> ClientOpts {
        self.tun = mode;
        self
    }

    fn cert_name(&self) -> &str {
        match &self.cert {
            Some(name) => name,
            None if pki::is_valid_name(&self.username) => &self.username,
            None => "client",
        }
    }
}

/// Outcome of [`Lab::ping_from_client`].
#[derive(Debug, Clone)]
pub struct PingResult {
    pub transmitted: u32,
    pub received: u32,
    /// Full output of ping, for failure messages.
    pub output: String,
}

pub struct Lab {
    n: u32,
    server_ns: String,
    client_ns: String,
    server_veth: String,
    client_veth: String,
    server_addr: Ipv4Addr,
    client_addr: Ipv4Addr,
    tunnel_net: Ipv4Addr,
    port: u16,
    mgmt_port: u16,
    server: Option<Proc>,
    server_starts: u32,
    clients: Vec<(Arc<Proc>, bool)>,
    pki: Pki,
    dir: TempDir,
}

impl Lab {
    /// Creates both namespaces, the veth pair and the PKI. Panics with the reason if any
    /// step fails; whatever was already created is removed by `Drop`.
    pub fn new() -> Lab {
        require_root();
        netns::sweep_stale();

        let n = NEXT_LAB.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let slot = pid.wrapping_mul(97).wrapping_add(n) % 16384;
        let (a, b) = ((slot / 64) as u8, (slot % 64 * 4) as u8);
        let dir = tempfile::Builder::new().prefix("ovmfa-e2e-").tempdir().expect("temp dir");
        let lab = Lab {
            n,
            server_ns: format!("{NS_PREFIX}{pid}-{n}-srv"),
            client_ns: format!("{NS_PREFIX}{pid}-{n}-cli"),
            server_veth: format!("om{pid:x}-{n}s"),
            client_veth: format!("om{pid:x}-{n}c"),
            server_addr: Ipv4Addr::new(10, 213, a, b + 1),
            client_addr: Ipv4Addr::new(10, 213, a, b + 2),
            tunnel_net: Ipv4Addr::new(10, 214, (slot % 256) as u8, 0),
            port: 20000 + slot as u16,
            mgmt_port: 40000 + slot as u16,
            server: None,
            server_starts: 0,
            clients: Vec::new(),
            pki: Pki::generate(dir.path()),
            dir,
        };
        assert!(lab.server_veth.len() <= 15, "veth name {} too long", lab.server_veth);

        // Our own names from an earlier process that had the same pid.
        netns::destroy(&lab.server_ns);
        netns::destroy(&lab.client_ns);

        netns::ip(&["netns", "add", &lab.server_ns]);
        netns::ip(&["netns", "add", &lab.client_ns]);
        #[rustfmt::skip]
        netns::ip(&[
            "link", "add", &lab.server_veth, "netns", &lab.server_ns, "type", "veth",
            "peer", "name", &lab.client_veth, "netns", &lab.client_ns,
        ]);
        for (ns, veth, addr) in [
            (&lab.server_ns, &lab.server_veth, lab.server_addr),
            (&lab.client_ns, &lab.client_veth, lab.client_addr),
        ] {
            netns::netns_run(ns, &["ip", "link", "set", "lo", "up"]);
            netns::netns_run(ns, &["ip", "addr", "add", &format!("{addr}/30"), "dev", veth]);
            netns::netns_run(ns, &["ip", "link", "set", veth, "up"]);
        }
        lab
    }

    /// Writes the server config and starts OpenVPN in the server namespace, then waits
    /// for it to finish initialising. Panics with the log tail if it does not.
    pub fn start_server(&mut self, opts: ServerOpts) {
        let stem = self.next_server_stem();
        let (cert, key) = self.pki.server();
        let status = self.path(&format!("{stem}.status"));
        let mut lines = vec![
            "# written by the ovpn-mfa e2e harness".to_owned(),
            format!("server {} 255.255.255.0", self.tunnel_net),
            "topology subnet".into(),
            "dev tun0".into(),
            "proto udp".into(),
            format!("local {}", self.server_addr),
            format!("port {}", self.port),
            format!("ca {}", self.pki.ca().display()),
            format!("cert {}", cert.display()),
            format!("key {}", key.display()),
            "dh none".into(),
            format!("tls-crypt {}", self.pki.tls_crypt().display()),
            "remote-cert-tls client".into(),
            format!("data-ciphers {DATA_CIPHERS}"),
            // Same data path on every machine, whether or not the ovpn-dco module exists.
            "disable-dco".into(),
            "keepalive 2 10".into(),
            "verb 4".into(),
            format!("status {} 1", status.display()),
            format!("management 127.0.0.1 {}", self.mgmt_port),
        ];
        // OpenVPN hands scripts its own environment set, not the process environment.
        for (key, value) in &opts.env {
            lines.push(format!("setenv {key} {}", quote(value)));
        }
        lines.extend(opts.extra.iter().cloned());
        let config = lines.join("\n") + "\n";
        self.launch_server(&stem, &config, &opts.env);
    }

    /// Starts OpenVPN in the server namespace with a configuration made elsewhere (by
    /// `ovpn-mfa server init`, say) and waits for it to initialise, like
    /// [`Lab::start_server`]. The file is used unchanged: a small wrapper includes it with a
    /// `config` line and adds `disable-dco` (as in the harness's own configs) and `extra`,
    /// which override what the file says. Paths in the file should be absolute.
    pub fn start_server_with_config(&mut self, config: &Path, extra: &[&str]) {
        let stem = self.next_server_stem();
        let mut lines = vec![
            "# written by the ovpn-mfa e2e harness around a configuration made elsewhere"
                .to_owned(),
            format!("config {}", quote(&config.display().to_string())),
            "disable-dco".into(),
        ];
        lines.extend(extra.iter().map(|line| line.to_string()));
        self.launch_server(&stem, &(lines.join("\n") + "\n"), &[]);
    }

    fn next_server_stem(&mut self) -> String {
        assert!(self.server.is_none(), "server already running; call stop_server first");
        self.server_starts += 1;
        match self.server_starts {
            1 => "server".to_owned(),
            k => format!("server-{k}"),
        }
    }

    fn launch_server(&mut self, stem: &str, config: &str, env: &[(String, String)]) {
        let proc = Proc::spawn(stem, &self.server_ns, self.dir.path(), config, env);
        let ready = proc.wait_for(INIT_DONE, 1, SERVER_READY_TIMEOUT);
        self.server = Some(proc);
        if let Err(e) = ready {
            panic!("server did not start: {e}");
        }
    }

    /// Kills the server (SIGKILL) so that it can be started again with other options.
    /// Stops the server and whatever it forked: the server namespace holds nothing else.
    pub fn stop_server(&mut self) {
        if let Some(server) = self.server.take() {
            server.kill();
            netns::kill_all(&self.server_ns);
        }
    }

    /// Starts a client in the client namespace. Returns at once; use
    /// [`Client::wait_connected`] or [`Client::wait_auth_failed`] to see how it went.
    pub fn start_client(&mut self, opts: ClientOpts) -> Client {
        let (stem, dev, tunnel, auth_file) = self.prepare_client(&opts);
        let (cert, key) = self.pki.client(opts.cert_name());
        let mut lines = vec![
            "# written by the ovpn-mfa e2e harness".to_owned(),
            "client".into(),
            format!("dev {dev}"),
            "proto udp".into(),
            format!("remote {} {}", self.server_addr, self.port),
            "nobind".into(),
            format!("ca {}", self.pki.ca().display()),
            format!("cert {}", cert.display()),
            format!("key {}", key.display()),
            format!("tls-crypt {}", self.pki.tls_crypt().display()),
            "remote-cert-tls server".into(),
            format!("verify-x509-name {} name", pki::SERVER_CN),
            format!("data-ciphers {DATA_CIPHERS}"),
            "disable-dco".into(),
            format!("auth-user-pass {}", auth_file.display()),
            "auth-retry none".into(),
            "verb 4".into(),
        ];
        if !tunnel {
            lines.extend(["ifconfig-noexec".into(), "route-noexec".into()]);
        }
        lines.extend(opts.extra.iter().cloned());
        let config = lines.join("\n") + "\n";

        self.launch_client(&stem, dev, tunnel, &config, &opts.env)
    }

    /// Starts a client in the client namespace with a configuration made elsewhere (a
    /// profile from `ovpn-mfa user add`, say); returns at once, like [`Lab::start_client`].
    /// The file is used unchanged: a small wrapper includes it with a `config` line, then
    /// names the device `tunN` like every client of the lab, adds `disable-dco`, an
    /// `auth-user-pass` file with `opts.username` and `opts.password`, the `opts.tun`
    /// lines and `opts.extra`. `opts.cert` is ignored: the profile brings its own.
    pub fn start_client_with_config(&mut self, config: &Path, opts: ClientOpts) -> Client {
        let (stem, dev, tunnel, auth_file) = self.prepare_client(&opts);
        let mut lines = vec![
            "# written by the ovpn-mfa e2e harness around a configuration made elsewhere"
                .to_owned(),
            format!("config {}", quote(&config.display().to_string())),
            format!("dev {dev}"),
            "disable-dco".into(),
            format!("auth-user-pass {}", quote(&auth_file.display().to_string())),
        ];
        if !tunnel {
            lines.extend(["ifconfig-noexec".into(), "route-noexec".into()]);
        }
        lines.extend(opts.extra.iter().cloned());
        let config = lines.join("\n") + "\n";
        self.launch_client(&stem, dev, tunnel, &config, &opts.env)
    }

    /// The next client's file stem, device, whether it gets a configured tunnel, and its
    /// `auth-user-pass` file, written 0600.
    fn prepare_client(&self, opts: &ClientOpts) -> (String, String, bool, PathBuf) {
        let index = self.clients.len() + 1;
        let stem = format!("client{index}");
        let dev = format!("tun{index}");
        let tunnel = match opts.tun {
            TunMode::Configure => true,
            TunMode::NoExec => false,
            TunMode::Auto => !self.clients.iter().any(|(p, tunnel)| *tunnel && p.is_running()),
        };
        if !tunnel {
            // Up without an address; see `TunMode::NoExec` for why it must be up.
            netns::ip(&["-n", &self.client_ns, "tuntap", "add", "dev", &dev, "mode", "tun"]);
            netns::ip(&["-n", &self.client_ns, "link", "set", "dev", &dev, "up"]);
        }
        let auth_file = self.path(&format!("{stem}.auth"));
        pki::write_file(&auth_file, &format!("{}\n{}\n", opts.username, opts.password), 0o600);
        (stem, dev, tunnel, auth_file)
    }

    fn launch_client(
        &mut self,
        stem: &str,
        dev: String,
        tunnel: bool,
        config: &str,
        env: &[(String, String)],
    ) -> Client {
        let proc = Arc::new(Proc::spawn(stem, &self.client_ns, self.dir.path(), config, env));
        self.clients.push((Arc::clone(&proc), tunnel));
        Client { proc, dev, tunnel }
    }

    /// Pings the server's tunnel address from the client namespace, bound to `client`'s
    /// tun device. The client must have a configured tunnel (see [`TunMode`]).
    pub fn ping_from_client(&self, client: &Client, count: u32) -> PingResult {
        assert!(client.tunnel, "{} was started without a configured tunnel", client.dev);
        let target = self.server_tunnel_ip().to_string();
        let count = count.to_string();
        let mut args = vec!["ping", "-n", "-q", "-i", "0.2", "-W", "2"];
        args.extend(["-c", &count, "-I", &client.dev, &target]);
        let out = netns::netns_exec(&self.client_ns, &args);
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let (transmitted, received) = parse_ping_summary(&output).unwrap_or((0, 0));
        PingResult { transmitted, received, output }
    }

    /// Sends one command to the server's management interface and returns the answer:
    /// the lines up to `END` (for `status`) or the `SUCCESS:`/`ERROR:` line.
    /// Real-time notifications (lines starting with `>`) are skipped.
    pub fn management(&self, command: &str) -> Result<String, String> {
        let port = self.mgmt_port;
        netns::in_netns(&self.server_ns, || {
            let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .map_err(|e| format!("connect to management port {port}: {e}"))?;
            stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
            let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
            writeln!(writer, "{command}").map_err(|e| format!("send {command:?}: {e}"))?;

            let mut answer = String::new();
            for line in BufReader::new(stream).lines() {
                let line = line.map_err(|e| format!("read answer to {command:?}: {e}"))?;
                if line.starts_with('>') {
                    continue;
                }
                if line == "END" || line.starts_with("SUCCESS:") || line.starts_with("ERROR:") {
                    answer.push_str(&line);
                    let _ = writeln!(writer, "quit");
                    return Ok(answer);
                }
                answer.push_str(&line);
                answer.push('\n');
            }
            Err(format!("management connection closed; partial answer: {answer}"))
        })
    }

    /// The server's log as written so far (empty before the first start).
    pub fn server_log(&self) -> String {
        self.server.as_ref().map(Proc::log).unwrap_or_default()
    }

    pub fn server_log_path(&self) -> Option<PathBuf> {
        self.server.as_ref().map(|s| s.log.clone())
    }

    /// Waits until the server log contains `needle` at least `min_count` times.
    pub fn wait_server_log(
        &self,
        needle: &str,
        min_count: usize,
        timeout: Duration,
    ) -> Result<(), String> {
        let server = self.server.as_ref().ok_or("no server running")?;
        server.wait_for(needle, min_count, timeout)
    }

    pub fn is_server_running(&self) -> bool {
        self.server.as_ref().is_some_and(Proc::is_running)
    }

    /// Writes an executable file (mode 0755) into the lab's temp dir and returns its path.
    pub fn write_script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path(name);
        pki::write_file(&path, body, 0o755);
        path
    }

    /// `path(name)` is `name` inside the lab's temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    pub fn server_ns(&self) -> &str {
        &self.server_ns
    }

    pub fn client_ns(&self) -> &str {
        &self.client_ns
    }

    /// Address the server listens on (its end of the veth pair).
    pub fn server_addr(&self) -> Ipv4Addr {
        self.server_addr
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn management_port(&self) -> u16 {
        self.mgmt_port
    }

    /// Network address of the tunnel subnet (a /24).
    pub fn tunnel_net(&self) -> Ipv4Addr {
        self.tunnel_net
    }

    /// The server's own address in the tunnel: the first host of the tunnel subnet.
    pub fn server_tunnel_ip(&self) -> Ipv4Addr {
        let [a, b, c, _] = self.tunnel_net.octets();
        Ipv4Addr::new(a, b, c, 1)
    }

    /// Number of this lab inside the test process (it is part of every name).
    pub fn number(&self) -> u32 {
        self.n
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (client, _) in &self.clients {
            client.kill();
        }
        if let Some(server) = &self.server {
            server.kill();
        }
        netns::destroy(&self.client_ns);
        netns::destroy(&self.server_ns);

        if std::env::var_os(KEEP_ENV).is_some() {
            self.dir.disable_cleanup(true);
            eprintln!("lab {}: kept {}", self.n, self.dir.path().display());
        } else if std::thread::panicking() {
            eprintln!("lab {}: set {KEEP_ENV}=1 to keep configs and logs", self.n);
        }
    }
}

/// A client process. Dropping the handle does not stop it; the lab does on drop.
pub struct Client {
    proc: Arc<Proc>,
    dev: String,
    tunnel: bool,
}

impl Client {
    /// Waits for the tunnel to come up; fails early if the process exits.
    pub fn wait_connected(&self, timeout: Duration) -> Result<(), String> {
        self.proc.wait_for(INIT_DONE, 1, timeout)
    }

    /// Waits for the server's `AUTH_FAILED`, at connect or at any later renegotiation.
    pub fn wait_auth_failed(&self, timeout: Duration) -> Result<(), String> {
        self.proc.wait_for("AUTH_FAILED", 1, timeout)
    }

    /// Waits until the log contains `needle` at least `min_count` times.
    pub fn wait_for(
        &self,
        needle: &str,
        min_count: usize,
        timeout: Duration,
    ) -> Result<(), String> {
        self.proc.wait_for(needle, min_count, timeout)
    }

    /// Waits for the process to exit and returns whether it did within `timeout`.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        super::wait_until(timeout, || !self.is_running())
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }

    pub fn log_path(&self) -> &Path {
        &self.proc.log
    }

    /// How often `needle` occurs in the log so far.
    pub fn count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// The tunnel address the server pushed (`ifconfig A M` in the last `PUSH_REPLY`), in
    /// both tun modes.
    pub fn tunnel_ip(&self) -> Option<Ipv4Addr> {
        let log = self.log();
        let reply = log.lines().rev().find(|line| line.contains("PUSH_REPLY"))?;
        let (_, rest) = reply.split_once(",ifconfig ")?;
        rest.split([' ', ',', '\'']).next()?.parse().ok()
    }

    /// Name of the client's tun device in the client namespace.
    pub fn dev(&self) -> &str {
        &self.dev
    }

    /// Whether OpenVPN configured the tun device (see [`TunMode`]).
    pub fn has_tunnel(&self) -> bool {
        self.tunnel
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid
    }

    pub fn is_running(&self) -> bool {
        self.proc.is_running()
    }

    /// SIGKILL and reap; the server notices through its keepalive timeout.
    pub fn kill(&self) {
        self.proc.kill();
    }
}

/// One OpenVPN process: `ip netns exec NS openvpn --config FILE`. `ip netns exec` execs
/// OpenVPN in place, so the child's pid is OpenVPN's own.
struct Proc {
    pid: u32,
    child: Mutex<Child>,
    log: PathBuf,
    /// stdout and stderr, for errors printed before the log file is open.
    out: PathBuf,
}

impl Proc {
    fn spawn(stem: &str, ns: &str, dir: &Path, config: &str, env: &[(String, String)]) -> Proc {
        let log = dir.join(format!("{stem}.log"));
        let out = dir.join(format!("{stem}.out"));
        let config_path = dir.join(format!("{stem}.conf"));
        fs::write(&config_path, config).expect("write openvpn config");

        let out_file = fs::File::create(&out).expect("create output file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "openvpn", "--config"])
            .arg(&config_path)
            .arg("--log")
            .arg(&log)
            .arg("--writepid")
            .arg(dir.join(format!("{stem}.pid")))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out_file.try_clone().expect("clone output file"))
            .stderr(out_file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn openvpn for {stem}: {e}"));
        Proc { pid: child.id(), child: Mutex::new(child), log, out }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn is_running(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        matches!(child.try_wait(), Ok(None))
    }

    fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Polls the log until `needle` occurs `min_count` times. Gives up early when the
    /// process has exited, after one last look at the log it left.
    fn wait_for(&self, needle: &str, min_count: usize, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let running = self.is_running();
            let log = self.log();
            if log.matches(needle).count() >= min_count {
                return Ok(());
            }
            let why = if !running {
                "the process exited"
            } else if start.elapsed() >= timeout {
                "timed out"
            } else {
                std::thread::sleep(POLL);
                continue;
            };
            let out = fs::read_to_string(&self.out).unwrap_or_default();
            return Err(format!(
                "waiting for {min_count} x {needle:?} in {}: {why} after {:?}\n\
                 --- log tail ---\n{}\n--- stdout/stderr ---\n{}",
                self.log.display(),
                start.elapsed(),
                log_tail(&log, 40),
                log_tail(&out, 10),
            ));
        }
    }
}

/// Quotes `value` for an OpenVPN config line.
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Reads `N packets transmitted, M received` from ping's summary.
fn parse_ping_summary(output: &str) -> Option<(u32, u32)> {
    let line = output.lines().find(|line| line.contains("packets transmitted"))?;
    let mut numbers = line.split(',').map(|part| part.split_whitespace().next());
    let transmitted = numbers.next()??.parse().ok()?;
    let received = numbers.next()??.parse().ok()?;
    Some((transmitted, received))
}
