//! The checks themselves. Each returns one [`Finding`] that says what was found and, when it
//! is not ok, how to fix it.

use super::ovpn_conf::{split_words, OvpnConf};
use super::system::{self, Identity, System, READ, SEARCH, WRITE};
use super::Finding;
use crate::config::{Config, STORE_FILE};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long an outside program may take before it is given up on.
const PROGRAM_LIMIT: Duration = Duration::from_secs(5);

/// Below this OpenVPN cannot run ovpn-mfa as designed: HMAC auth tokens with
/// `auth-gen-token-secret` and `external-auth` arrived in 2.5, deferred answers from
/// `auth-user-pass-verify` scripts in 2.6.
const MIN_OPENVPN: (u32, u32) = (2, 6);

/// OpenVPN's defaults for the options checked here.
const DEFAULT_RENEG_SEC: u64 = 3600;
const DEFAULT_HAND_WINDOW: u64 = 60;

/// A CRL this close to its nextUpdate is warned about.
const CRL_WARN_SECS: u64 = 30 * 86_400;

pub fn clock(sys: &System) -> Finding {
    const CHECK: &str = "clock";
    if let Some(timedatectl) = sys.program("timedatectl") {
        let args = ["show", "-p", "NTPSynchronized", "--value"];
        let answer = system::run(&timedatectl, &args, PROGRAM_LIMIT)
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        match answer.as_deref() {
            Some("yes") => return Finding::ok(CHECK, "synchronised (timedatectl)"),
            Some("no") => {
                return Finding::fail(
                    CHECK,
                    "not synchronised (timedatectl: NTPSynchronized=no); codes from phones, \
                     which keep good time, are refused once the clock is a step off",
                    "enable time synchronisation: `timedatectl set-ntp true`, or install \
                     chrony (`apt install chrony`)",
                );
            }
            _ => {} // no systemd (a container): ask otherwise
        }
    }
    if sys.is_live() && system::kernel_clock_synchronised() {
        return Finding::ok(CHECK, "synchronised (the kernel's clock status)");
    }
    if sys.path("/run/systemd/timesync/synchronized").exists() {
        return Finding::ok(CHECK, "synchronised (systemd-timesyncd)");
    }
    let daemons = ["chronyd", "ntpd", "openntpd"];
    let timesyncd = ["/lib/systemd/systemd-timesyncd", "/usr/lib/systemd/systemd-timesyncd"];
    let found =
        daemons.iter().find(|d| sys.program(d).is_some()).copied().or_else(|| {
            timesyncd.iter().any(|p| sys.path(p).exists()).then_some("systemd-timesyncd")
        });
    match found {
        Some(daemon) => Finding::warn(
            CHECK,
            format!("unknown: {daemon} is installed, but whether the clock is synchronised could not be read"),
            "check it by hand (`chronyc tracking`, `ntpq -p` or `timedatectl`); TOTP needs the \
             clock within otp.window steps of the phones'",
        ),
        None => Finding::warn(
            CHECK,
            "unknown: no time synchronisation was found (in a container the host may keep the \
             time)",
            "make sure something keeps the clock right: `apt install chrony` on the host",
        ),
    }
}

pub fn openvpn_version(sys: &System) -> Finding {
    const CHECK: &str = "openvpn-version";
    let fix = "install OpenVPN 2.6 or later (Debian 12 has 2.6; on older releases use \
               OpenVPN's own apt repository)";
    let Some(openvpn) = sys.program("openvpn") else {
        return Finding::fail(CHECK, "openvpn was not found", fix);
    };
    let output = system::run(&openvpn, &["--version"], PROGRAM_LIMIT);
    let text = output.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let Some((major, minor, full)) = parse_openvpn_version(&text) else {
        return Finding::fail(CHECK, "`openvpn --version` did not say which version it is", fix);
    };
    if (major, minor) < MIN_OPENVPN {
        return Finding::fail(
            CHECK,
            format!(
                "OpenVPN {full} is too old: HMAC auth tokens with external-auth need 2.5, \
                 deferred answers from the verifier need 2.6"
            ),
            fix,
        );
    }
    Finding::ok(CHECK, format!("OpenVPN {full}"))
}

/// `OpenVPN 2.6.14 x86_64-pc-linux-gnu ...` gives `(2, 6, "2.6.14")`.
pub fn parse_openvpn_version(text: &str) -> Option<(u32, u32, String)> {
    let line = text.lines().find(|l| l.starts_with("OpenVPN "))?;
    let version = line.split_whitespace().nth(1)?;
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor, version.to_owned()))
}

/// How this server checks logins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verifier {
    /// `auth-user-pass-verify "ovpn-mfa ... verify" METHOD`: the words of the command.
    Script {
        words: Vec<String>,
        method: String,
    },
    /// `plugin .../libovpn_mfa_plugin.so ARGS...`.
    Plugin {
        path: String,
        args: Vec<String>,
    },
    /// `auth-user-pass-verify` running something else.
    Other(String),
    None,
}

pub const PLUGIN_FILE: &str = "libovpn_mfa_plugin.so";

impl Verifier {
    pub fn of(conf: &OvpnConf) -> Verifier {
        let plugin =
            conf.all("plugin").find(|d| d.arg(0).is_some_and(|p| p.ends_with(PLUGIN_FILE)));
        if let Some(d) = plugin {
            return Verifier::Plugin { path: d.args[0].clone(), args: d.args[1..].to_vec() };
        }
        let Some(d) = conf.last("auth-user-pass-verify") else { return Verifier::None };
        let command = d.arg(0).unwrap_or("");
        let words = split_words(command);
        let ours = words.first().is_some_and(|w| {
            Path::new(w).file_name().is_some_and(|n| n.to_string_lossy().starts_with("ovpn-mfa"))
        }) && words.iter().any(|w| w == "verify");
        if ours {
            Verifier::Script { words, method: d.arg(1).unwrap_or("").to_owned() }
        } else {
            Verifier::Other(command.to_owned())
        }
    }

    /// The directory the verifier is given, if any: the script's `--dir`, or the plugin's
    /// argument (which the plugin, like OpenVPN, sees split at spaces and joins again).
    pub fn dir(&self) -> Option<String> {
        let words = match self {
            Verifier::Script { words, .. } => words,
            Verifier::Plugin { args, .. } if args.is_empty() => return None,
            Verifier::Plugin { args, .. } => return Some(args.join(" ")),
            _ => return None,
        };
        words.iter().enumerate().find_map(|(i, w)| {
            w.strip_prefix("--dir=")
                .map(str::to_owned)
                .or_else(|| (w == "--dir").then(|| words.get(i + 1).cloned()).flatten())
        })
    }
}

/// Where the ovpn-mfa this server uses keeps its configuration and store.
#[derive(Clone, Debug)]
pub struct MfaPaths {
    pub config_file: PathBuf,
    pub data_dir: PathBuf,
}

impl MfaPaths {
    pub fn store(&self) -> PathBuf {
        self.data_dir.join(STORE_FILE)
    }
}

/// One server configuration and what it implies.
pub struct Server<'a> {
    pub sys: &'a System,
    pub path: PathBuf,
    pub conf: OvpnConf,
    pub verifier: Verifier,
    pub mfa: MfaPaths,
    /// `None` when OpenVPN keeps running as root; an error when its `user` is unknown.
    pub identity: Option<Result<Identity, String>>,
}

impl Server<'_> {
    /// A path named in the configuration, resolved like OpenVPN does (relative to its
    /// working directory: `cd`, or the unit's, which is the file's directory) and put under
    /// the root.
    pub fn resolve(&self, named: &str) -> PathBuf {
        let named = Path::new(named);
        if named.is_absolute() {
            return self.sys.path(named);
        }
        let base = match self.conf.last("cd").and_then(|d| d.arg(0)) {
            Some(cd) => self.sys.path(cd),
            None => self.path.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        base.join(named)
    }

    pub fn shown(&self, path: &Path) -> String {
        self.sys.shown(path)
    }

    fn hand_window(&self) -> u64 {
        self.conf.number("hand-window").unwrap_or(DEFAULT_HAND_WINDOW)
    }
}

pub fn verifier(s: &Server<'_>) -> Finding {
    const CHECK: &str = "verifier";
    let fix = "add the lines `ovpn-mfa openvpn server-config` prints (or run `ovpn-mfa server \
               adopt FILE`), then restart OpenVPN";
    match &s.verifier {
        Verifier::None => Finding::fail(
            CHECK,
            "no MFA: neither `auth-user-pass-verify \"ovpn-mfa ... verify\" via-file` nor a \
             `plugin` line loading libovpn_mfa_plugin.so",
            fix,
        ),
        Verifier::Other(command) => Finding::fail(
            CHECK,
            format!(
                "auth-user-pass-verify runs {}, not `ovpn-mfa verify`",
                crate::username::printable(command)
            ),
            fix,
        ),
        Verifier::Plugin { path, .. } => {
            let file = s.resolve(path);
            if Path::new(path).is_absolute() && !file.exists() {
                return Finding::fail(
                    CHECK,
                    format!("the plugin {} does not exist", s.shown(&file)),
                    "install the plugin there, or correct the `plugin` line",
                );
            }
            Finding::ok(CHECK, format!("the ovpn-mfa plugin {path}"))
        }
        Verifier::Script { words, method } => {
            let binary = s.resolve(&words[0]);
            let level = s.conf.number("script-security").unwrap_or(1);
            if !binary.is_file() {
                return Finding::fail(
                    CHECK,
                    format!("the verifier {} does not exist", s.shown(&binary)),
                    "install ovpn-mfa there, or correct the path in auth-user-pass-verify",
                );
            }
            if level < 2 {
                return Finding::fail(
                    CHECK,
                    format!("script-security is {level}; OpenVPN runs no scripts below 2"),
                    "add `script-security 2`",
                );
            }
            if method == "via-env" && level < 3 {
                return Finding::fail(
                    CHECK,
                    "via-env passes the password only with script-security 3",
                    "use `via-file` (recommended), or `script-security 3`",
                );
            }
            Finding::ok(CHECK, format!("{} ... verify ({method})", s.shown(&binary)))
        }
    }
}

pub fn auth_gen_token(s: &Server<'_>) -> Finding {
    const CHECK: &str = "auth-gen-token";
    let fix = "add `auth-gen-token LIFETIME RENEWAL external-auth` (see `ovpn-mfa openvpn \
               server-config`)";
    let Some(d) = s.conf.last("auth-gen-token") else {
        return Finding::fail(
            CHECK,
            "missing: every renegotiation (hourly by default) asks for the old code again and \
             the client is disconnected",
            fix,
        );
    };
    if !d.args.iter().skip(1).any(|a| a == "external-auth") {
        return Finding::fail(
            CHECK,
            "without external-auth a valid token skips ovpn-mfa: a disabled user stays \
             connected until the token expires",
            fix,
        );
    }
    Finding::ok(CHECK, format!("auth-gen-token {}", d.args.join(" ")))
}

pub fn auth_token_secret(s: &Server<'_>) -> Finding {
    const CHECK: &str = "auth-token-secret";
    let Some(named) = s.conf.last("auth-gen-token-secret").and_then(|d| d.arg(0)) else {
        return Finding::warn(
            CHECK,
            "no auth-gen-token-secret: tokens die when OpenVPN restarts, and every user must \
             enter a new code",
            "`openvpn --genkey auth-token FILE`, mode 0600, and add `auth-gen-token-secret \
             FILE`",
        );
    };
    let file = s.resolve(named);
    match std::fs::metadata(&file) {
        Err(e) => Finding::fail(
            CHECK,
            format!("{} cannot be read ({e}); OpenVPN will not start", s.shown(&file)),
            format!("`openvpn --genkey auth-token {}` and `chmod 600` it", s.shown(&file)),
        ),
        Ok(meta) => secret_mode(
            CHECK,
            &s.shown(&file),
            &meta,
            "anyone who reads it can forge \
                                                               session tokens",
        ),
    }
}

/// The mode check for a file holding secrets: 0600 or narrower is ok, readable by the group
/// is a warning, readable by everyone or writable by others fails.
fn secret_mode(check: &'static str, shown: &str, meta: &std::fs::Metadata, risk: &str) -> Finding {
    let mode = system::mode(meta);
    let fix = format!("chmod 600 {shown}");
    if mode & 0o006 != 0 || mode & 0o020 != 0 {
        let detail = format!("{shown} is mode {mode:04o}, open to every local user: {risk}");
        return Finding::fail(check, detail, fix);
    }
    if mode & 0o077 != 0 {
        let detail = format!("{shown} is mode {mode:04o}, readable by its group: {risk}");
        return Finding::warn(check, detail, fix);
    }
    Finding::ok(check, format!("{shown} is mode {mode:04o}"))
}

pub fn reneg_sec(s: &Server<'_>) -> Finding {
    const CHECK: &str = "reneg-sec";
    match s.conf.last("reneg-sec") {
        Some(d) if d.arg(0) == Some("0") => Finding::fail(
            CHECK,
            format!(
                "line {}: reneg-sec 0 turns key renegotiation off; OpenVPN refuses it together \
                 with auth-gen-token, and keys then live as long as the connection",
                d.line
            ),
            "remove the reneg-sec line (the default is 3600 s): auth-gen-token keeps sessions \
             alive through renegotiations",
        ),
        Some(d) => Finding::ok(CHECK, format!("reneg-sec {}", d.args.join(" "))),
        None => Finding::ok(CHECK, format!("default ({DEFAULT_RENEG_SEC} s)")),
    }
}

pub fn token_renewal(s: &Server<'_>) -> Finding {
    const CHECK: &str = "token-renewal";
    let Some(d) = s.conf.last("auth-gen-token") else {
        return Finding::ok(CHECK, "nothing to check without auth-gen-token");
    };
    let reneg = s.conf.number("reneg-sec").filter(|r| *r > 0).unwrap_or(DEFAULT_RENEG_SEC);
    let renewal = d.arg(1).and_then(|v| v.parse::<u64>().ok()).filter(|r| *r > 0);
    let (renewal, from) = match renewal {
        Some(r) => (r, "auth-gen-token's renewal time"),
        None => (reneg, "reneg-sec, as auth-gen-token sets no renewal time"),
    };
    let hand_window = s.hand_window();
    if renewal < 2 * hand_window {
        return Finding::fail(
            CHECK,
            format!(
                "token renewal {renewal} s ({from}) is less than 2 x hand-window \
                 ({hand_window} s); OpenVPN refuses to start"
            ),
            format!("make the renewal time at least {} s, or lower hand-window", 2 * hand_window),
        );
    }
    Finding::ok(CHECK, format!("renewal {renewal} s >= 2 x hand-window {hand_window} s"))
}

pub fn store_mode(sys: &System, mfa: &MfaPaths) -> Finding {
    const CHECK: &str = "store-mode";
    let store = mfa.store();
    let shown = sys.shown(&store);
    let meta = match std::fs::metadata(&store) {
        Ok(meta) => meta,
        Err(e) => {
            return Finding::fail(
                CHECK,
                format!("no store at {shown} ({e}): every login fails"),
                "run `ovpn-mfa init` (with the --dir the server's verifier uses)",
            )
        }
    };
    let risk = "it holds every user's OTP secret";
    let mut worst = secret_mode(CHECK, &shown, &meta, risk);
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", store.display()));
        if let Ok(meta) = std::fs::metadata(&side) {
            let finding = secret_mode(CHECK, &sys.shown(&side), &meta, risk);
            if finding.status > worst.status {
                worst = finding;
            }
        }
    }
    worst
}

pub fn store_integrity(sys: &System, mfa: &MfaPaths) -> Finding {
    const CHECK: &str = "store-integrity";
    let store = mfa.store();
    let shown = sys.shown(&store);
    if !store.exists() {
        return Finding::fail(
            CHECK,
            format!("no store at {shown}"),
            "run `ovpn-mfa init` (with the --dir the server's verifier uses)",
        );
    }
    match crate::store::Store::check_file(&store) {
        Ok(()) => Finding::ok(
            CHECK,
            format!("{shown} passes SQLite's quick_check and has every table of its schema"),
        ),
        Err(problem) => Finding::fail(
            CHECK,
            format!("{shown} is damaged: {problem}"),
            "stop OpenVPN and restore the store from a backup (`sqlite3 FILE .recover` may \
             save what is left)",
        ),
    }
}

pub fn store_access(s: &Server<'_>) -> Finding {
    const CHECK: &str = "store-access";
    let who = match &s.identity {
        None => return Finding::ok(CHECK, "OpenVPN runs as root (no `user` line)"),
        Some(Err(e)) => {
            return Finding::fail(CHECK, e.clone(), "create the user, or correct the `user` line")
        }
        Some(Ok(who)) => *who,
    };
    let user = s.conf.last("user").and_then(|d| d.arg(0)).unwrap_or("?").to_owned();
    let store = s.mfa.store();
    let dir = &s.mfa.data_dir;
    let mut missing = Vec::new();
    let mut need = |path: &Path, want: u32, what: &str| match std::fs::metadata(path) {
        Ok(meta) if system::allows(&meta, who, want) => {}
        Ok(meta) => missing.push(format!(
            "{what} {} (owner uid {}, mode {:04o})",
            s.shown(path),
            meta.uid(),
            system::mode(&meta)
        )),
        Err(e) => missing.push(format!("{what} {} ({e})", s.shown(path))),
    };
    need(&store, READ | WRITE, "cannot read and write the store");
    need(dir, WRITE | SEARCH, "cannot create files (the -wal and -shm files) in");
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", store.display()));
        if side.exists() {
            need(&side, READ | WRITE, "cannot read and write");
        }
    }
    if let Some(config_dir) = s.mfa.config_file.parent() {
        need(config_dir, SEARCH, "cannot enter the directory of the configuration,");
    }
    need(&s.mfa.config_file, READ, "cannot read the configuration");
    if missing.is_empty() {
        return Finding::ok(
            CHECK,
            format!("`{user}` (uid {}) can use the store and the configuration", who.uid),
        );
    }
    Finding::fail(
        CHECK,
        format!("OpenVPN drops to `{user}` (uid {}), which {}", who.uid, missing.join("; ")),
        format!(
            "chown {user} {dir} {dir}/{STORE_FILE}* (the auth-token secret may stay root's: \
             OpenVPN reads it before dropping privileges), and make the configuration \
             readable to it",
            dir = s.shown(dir)
        ),
    )
}

pub fn mfa_config(s: &Server<'_>) -> Finding {
    const CHECK: &str = "mfa-config";
    let shown = s.shown(&s.mfa.config_file);
    let config = match Config::load(&s.mfa.config_file) {
        Ok(config) => config,
        Err(e) => {
            return Finding::fail(
                CHECK,
                format!("{shown}: {}", crate::username::printable(&e.to_string())),
                "run `ovpn-mfa init` (with the --dir the verifier uses), or fix the file",
            )
        }
    };
    let hand_window = s.hand_window();
    if config.openvpn.hand_window_secs != hand_window {
        return Finding::warn(
            CHECK,
            format!(
                "{shown} says hand_window_secs = {}, the server's hand-window is {hand_window}: \
                 deferred answers are timed for the wrong window",
                config.openvpn.hand_window_secs
            ),
            format!("set hand_window_secs = {hand_window} in {shown}"),
        );
    }
    Finding::ok(CHECK, format!("{shown} loads; hand-window {hand_window} s matches"))
}

/// Key files the server configuration names, and whether only their owner can read them.
pub fn key_modes(s: &Server<'_>) -> Finding {
    const CHECK: &str = "key-modes";
    const KEY_OPTIONS: [&str; 6] =
        ["key", "tls-auth", "tls-crypt", "tls-crypt-v2", "secret", "pkcs12"];
    let mut files = Vec::new();
    for name in KEY_OPTIONS {
        for d in s.conf.all(name) {
            if let Some(arg) = d.arg(0).filter(|a| *a != "[inline]") {
                files.push(s.resolve(arg));
            }
        }
    }
    if s.conf.inline_blocks.iter().any(|t| KEY_OPTIONS.contains(&t.as_str())) {
        files.push(s.path.clone());
    }
    let mut open = Vec::new();
    for file in &files {
        match std::fs::metadata(file) {
            Ok(meta) if system::mode(&meta) & 0o077 != 0 => {
                open.push(format!("{} ({:04o})", s.shown(file), system::mode(&meta)));
            }
            Ok(_) => {}
            Err(e) => open.push(format!("{} ({e})", s.shown(file))),
        }
    }
    if open.is_empty() {
        return Finding::ok(CHECK, format!("{} key file(s), none readable by others", files.len()));
    }
    Finding::warn(
        CHECK,
        format!("private keys readable beyond their owner, or missing: {}", open.join(", ")),
        "chmod 600 each of them",
    )
}

/// The verifier reads the credentials file OpenVPN writes in `tmp-dir`. Under systemd's
/// PrivateTmp, /tmp is the unit's own: fine for a verifier OpenVPN starts (a child shares
/// it), but a directory *inside* /tmp does not exist there when the unit starts.
pub fn tmp_dir(s: &Server<'_>) -> Finding {
    const CHECK: &str = "tmp-dir";
    match &s.verifier {
        Verifier::Script { .. } => {}
        Verifier::Plugin { .. } => {
            return Finding::ok(CHECK, "not used: the plugin gets the credentials in memory")
        }
        _ => return Finding::ok(CHECK, "nothing to check without the ovpn-mfa verifier"),
    }
    let private = private_tmp(s);
    let assumed = if private.is_none() { " (assumed, as in Debian's units)" } else { "" };
    let named = s.conf.last("tmp-dir").and_then(|d| d.arg(0)).map(str::to_owned);
    let shared = "the verifier works there because OpenVPN starts it as a child, which shares \
                  the unit's private /tmp; nothing outside the unit sees those files";
    let Some(named) = named else {
        return Finding::ok(
            CHECK,
            format!("none set: OpenVPN uses $TMPDIR or /tmp; with PrivateTmp{assumed} {shared}"),
        );
    };
    // Judged by where the directory is on the system, not under the tree's root.
    let dir = s.resolve(&named);
    let shown = s.shown(&dir);
    let clean = shown.trim_end_matches('/');
    let in_tmp = ["/tmp", "/var/tmp"];
    if in_tmp.contains(&clean) {
        return Finding::ok(CHECK, format!("{shown}; with PrivateTmp{assumed} {shared}"));
    }
    if private != Some(false) && in_tmp.iter().any(|t| clean.starts_with(&format!("{t}/"))) {
        return Finding::warn(
            CHECK,
            format!(
                "{shown} is inside /tmp; with PrivateTmp{assumed} the unit starts with an empty \
                 private /tmp, so this directory does not exist there unless something in the \
                 unit creates it, and OpenVPN then cannot write the credentials file"
            ),
            "use a directory outside /tmp, owned by OpenVPN's user, mode 0700, such as \
             /var/lib/ovpn-mfa/tmp (`ovpn-mfa openvpn server-config` creates it)",
        );
    }
    let meta = match std::fs::metadata(&dir) {
        Ok(meta) if meta.is_dir() => meta,
        _ => {
            return Finding::fail(
                CHECK,
                format!(
                    "{} does not exist: OpenVPN cannot write the credentials file",
                    s.shown(&dir)
                ),
                format!("mkdir -m 700 {} (owned by OpenVPN's user)", s.shown(&dir)),
            )
        }
    };
    if let Some(Ok(who)) = &s.identity {
        if !system::allows(&meta, *who, WRITE | SEARCH) {
            return Finding::fail(
                CHECK,
                format!(
                    "OpenVPN's user (uid {}) cannot create files in {}",
                    who.uid,
                    s.shown(&dir)
                ),
                format!("chown it to OpenVPN's user: chown USER {}", s.shown(&dir)),
            );
        }
    }
    let mode = system::mode(&meta);
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Finding::warn(
            CHECK,
            format!("{} is world-writable without the sticky bit", s.shown(&dir)),
            format!("chmod 700 {}", s.shown(&dir)),
        );
    }
    Finding::ok(CHECK, format!("{} exists and is writable by OpenVPN", s.shown(&dir)))
}

/// `PrivateTmp=` of the systemd unit that runs this configuration, if the unit is found.
fn private_tmp(s: &Server<'_>) -> Option<bool> {
    let parent = s.path.parent()?;
    let instance = s.path.file_stem()?.to_string_lossy().into_owned();
    let template = if parent == s.sys.path("/etc/openvpn/server") {
        "openvpn-server@"
    } else if parent == s.sys.path("/etc/openvpn") {
        "openvpn@"
    } else {
        return None;
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["/lib/systemd/system", "/usr/lib/systemd/system", "/etc/systemd/system"] {
        files.push(s.sys.path(dir).join(format!("{template}.service")));
        for unit in [format!("{template}.service.d"), format!("{template}{instance}.service.d")] {
            let mut dropins: Vec<PathBuf> = std::fs::read_dir(s.sys.path(dir).join(unit))
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                .collect();
            dropins.sort();
            files.extend(dropins);
        }
    }
    let mut value = None;
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        for line in text.lines() {
            if let Some(v) = line.trim().strip_prefix("PrivateTmp=") {
                value = Some(matches!(v.trim(), "yes" | "true" | "1" | "on"));
            }
        }
    }
    value
}

pub fn crl(s: &Server<'_>) -> Finding {
    const CHECK: &str = "crl";
    let Some(d) = s.conf.last("crl-verify") else {
        return Finding::ok(CHECK, "no crl-verify: revoked certificates are not checked");
    };
    let Some(named) = d.arg(0) else {
        return Finding::fail(CHECK, "crl-verify names no file", "name the CRL file");
    };
    if d.arg(1) == Some("dir") {
        return Finding::ok(CHECK, format!("{named} is a directory of CRLs, not checked"));
    }
    let file = s.resolve(named);
    let shown = s.shown(&file);
    let regenerate = "re-sign the CRL (on a server made by `ovpn-mfa server init`, issuing or \
                      revoking a certificate does; with easy-rsa, `easyrsa gen-crl`), put it \
                      where crl-verify points, and do it well before its nextUpdate";
    if !file.is_file() {
        return Finding::fail(
            CHECK,
            format!("{shown} does not exist: OpenVPN will not start"),
            regenerate,
        );
    }
    let Some(openssl) = System::new(Path::new("/")).program("openssl") else {
        return Finding::warn(
            CHECK,
            "openssl was not found to read the CRL",
            "apt install openssl",
        );
    };
    let args = ["crl", "-noout", "-nextupdate", "-in"];
    let file_arg = file.to_string_lossy().into_owned();
    let mut all: Vec<&str> = args.to_vec();
    all.push(&file_arg);
    let output = system::run(&openssl, &all, PROGRAM_LIMIT).filter(|o| o.status.success());
    let text = output.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let Some(value) = text.trim().strip_prefix("nextUpdate=") else {
        return Finding::fail(
            CHECK,
            format!("{shown} is not a readable PEM CRL: OpenVPN refuses every client"),
            regenerate,
        );
    };
    // A CRL from another CA is worse than an expired one: OpenVPN logs "unable to get
    // certificate CRL" and lets revoked certificates in.
    let signature = crl_signature(s, &openssl, &file, &shown);
    if signature.status == super::Status::Fail {
        return signature;
    }
    let expiry = crl_expiry(&shown, value, regenerate);
    if expiry.status != super::Status::Ok {
        return expiry;
    }
    if signature.status != super::Status::Ok {
        return signature;
    }
    Finding::ok(CHECK, format!("{}, signed by {}", expiry.detail, signature.detail))
}

/// Whether the CRL's nextUpdate (as `openssl crl -nextupdate` gives it) is far enough off.
fn crl_expiry(shown: &str, value: &str, regenerate: &str) -> Finding {
    const CHECK: &str = "crl";
    if value == "NONE" {
        return Finding::ok(CHECK, format!("{shown} has no nextUpdate"));
    }
    let Some(next) = parse_openssl_time(value) else {
        return Finding::warn(
            CHECK,
            format!("{shown}: cannot read its nextUpdate {value:?}"),
            regenerate,
        );
    };
    let now = crate::unix_now();
    let when = crate::cli::time_text(next);
    if next <= now {
        return Finding::fail(
            CHECK,
            format!("{shown} expired at {when}: OpenVPN refuses every client certificate"),
            regenerate,
        );
    }
    if next - now < CRL_WARN_SECS {
        return Finding::warn(
            CHECK,
            format!("{shown} expires at {when}, within 30 days"),
            regenerate,
        );
    }
    Finding::ok(CHECK, format!("{shown} is valid until {when}"))
}

/// Whether the CRL is signed by the CA the server's `ca` names; when ok, the detail is that
/// CA file as shown.
fn crl_signature(s: &Server<'_>, openssl: &Path, crl: &Path, shown: &str) -> Finding {
    const CHECK: &str = "crl";
    let cannot = |why: String| {
        Finding::warn(
            CHECK,
            format!("cannot verify the signature of {shown}: {why}"),
            "check by hand that the CRL is signed by the CA that issued the client \
             certificates: `openssl crl -in CRL -CAfile CA -noout` says \"verify OK\"",
        )
    };
    let ca = match s.conf.last("ca").and_then(|d| d.arg(0)) {
        Some(named) => s.resolve(named),
        None if s.conf.inline_blocks.iter().any(|b| b == "ca") => {
            return cannot("the CA is inline (<ca>) in the configuration".into())
        }
        None => return cannot("the configuration names no `ca`".into()),
    };
    let ca_shown = s.shown(&ca);
    if !ca.is_file() {
        return cannot(format!("the CA file {ca_shown} does not exist"));
    }
    let crl_arg = crl.to_string_lossy().into_owned();
    let ca_arg = ca.to_string_lossy().into_owned();
    let args = ["crl", "-noout", "-in", &crl_arg, "-CAfile", &ca_arg];
    let Some(output) = system::run(openssl, &args, PROGRAM_LIMIT) else {
        return cannot("openssl did not answer".into());
    };
    // OpenSSL 3 exits 0 after "verify failure" (a wrong signature), 1 when it finds no
    // issuer: only "verify OK" is trusted.
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() && said.lines().any(|l| l.trim() == "verify OK") {
        return Finding::ok(CHECK, ca_shown);
    }
    if said.contains("Error loading file") {
        return cannot(format!("openssl cannot read the CA file {ca_shown}"));
    }
    Finding::fail(
        CHECK,
        format!(
            "{shown} is not signed by the CA in {ca_shown}: OpenVPN logs \"unable to get \
             certificate CRL\" and does not check revocations"
        ),
        format!(
            "sign the CRL with the key of the CA in {ca_shown} (the CA that issued the client \
             certificates; with easy-rsa, `easyrsa gen-crl` in that CA's directory), or point \
             crl-verify at that CA's CRL"
        ),
    )
}

/// OpenSSL's default time format, `Jan  2 03:04:05 2030 GMT`, as Unix seconds.
pub fn parse_openssl_time(text: &str) -> Option<u64> {
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let words: Vec<&str> = text.split_whitespace().collect();
    let [month, day, time, year, "GMT"] = words.as_slice() else { return None };
    let month = MONTHS.iter().position(|m| m == month)? as u64 + 1;
    let day: u64 = day.parse().ok()?;
    let year: u64 = year.parse().ok()?;
    let hms: Vec<u64> = time.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else { return None };
    if !(1..=31).contains(&day) || *h > 23 || *m > 59 || *s > 60 || year < 1970 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (year >= 1970).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openvpn_versions_are_read_from_the_first_line() {
        let text = "OpenVPN 2.6.14 x86_64-pc-linux-gnu [SSL (OpenSSL)]\nlibrary versions: x\n";
        assert_eq!(parse_openvpn_version(text), Some((2, 6, "2.6.14".into())));
        assert_eq!(parse_openvpn_version("OpenVPN 2.5_git x\n").map(|v| v.1), Some(5));
        assert_eq!(parse_openvpn_version("nothing\n"), None);
    }

    #[test]
    fn openssl_times_convert_to_unix_seconds() {
        assert_eq!(parse_openssl_time("Jan  1 00:00:00 1970 GMT"), Some(0));
        assert_eq!(parse_openssl_time("Mar  1 00:00:00 2000 GMT"), Some(951_868_800));
        assert_eq!(parse_openssl_time("Jan 15 08:30:01 2030 GMT"), Some(1_894_696_201));
        assert_eq!(parse_openssl_time("Feb 30 00:00:00 2030 UTC"), None);
        assert_eq!(parse_openssl_time("garbage"), None);
    }

    #[test]
    fn the_verifier_and_its_dir_are_recognised() {
        let conf = OvpnConf::parse(
            "auth-user-pass-verify \"/usr/local/bin/ovpn-mfa --dir /srv/mfa verify\" via-file\n",
        );
        let v = Verifier::of(&conf);
        assert!(matches!(v, Verifier::Script { ref method, .. } if method == "via-file"));
        assert_eq!(v.dir().as_deref(), Some("/srv/mfa"));
        let conf = OvpnConf::parse("auth-user-pass-verify /etc/openvpn/check.sh via-env\n");
        assert!(matches!(Verifier::of(&conf), Verifier::Other(_)));
        let conf =
            OvpnConf::parse("plugin /usr/lib/openvpn/libovpn_mfa_plugin.so \"/srv/my mfa\"\n");
        let v = Verifier::of(&conf);
        assert!(matches!(v, Verifier::Plugin { .. }));
        assert_eq!(v.dir().as_deref(), Some("/srv/my mfa"));
        let conf = OvpnConf::parse("plugin /usr/lib/openvpn/libovpn_mfa_plugin.so\n");
        assert_eq!(Verifier::of(&conf).dir(), None);
        assert_eq!(Verifier::of(&OvpnConf::parse("port 1\n")), Verifier::None);
    }
}
