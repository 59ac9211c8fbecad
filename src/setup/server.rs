//! `ovpn-mfa server init`: a complete road-warrior server with MFA in one command.
//!
//! Every change is planned first, as a list of steps, so `--dry-run` prints exactly what a
//! real run would do and a second run can see that nothing needs doing.

use super::files::{write_file, Mode};
use super::pki::{self, Pki};
use super::{under, ServerState};
use crate::cli::output::outln;
use crate::cli::Context;
use crate::config::Config;
use anyhow::{bail, Context as _, Result};
use clap::Args;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct InitArgs {
    /// The address clients connect to, as HOST or HOST:PORT (default port 1194).
    #[arg(long)]
    pub endpoint: String,
    #[arg(long, value_parser = ["udp", "tcp"], default_value = "udp")]
    pub proto: String,
    /// The tunnel's IPv4 subnet.
    #[arg(long, default_value = "10.8.0.0/24")]
    pub subnet: String,
    /// Also give clients IPv6 addresses (a private fd00::/8 subnet, NAT66).
    #[arg(long)]
    pub ipv6: bool,
    /// DNS servers pushed to clients (repeat for several).
    #[arg(long = "dns", default_values = ["1.1.1.1", "9.9.9.9"])]
    pub dns: Vec<String>,
    /// The OpenVPN instance name: /etc/openvpn/server/NAME.conf, openvpn-server@NAME.
    #[arg(long, default_value = "server")]
    pub name: String,
    /// Write the system files under ROOT instead of / (for tests and image builds). Not
    /// confined: --dir, and sysctl and nft (see --no-system).
    ///
    /// ROOT prefixes the system paths this command writes and names in the server config:
    /// /etc/openvpn/server (config, PKI), /etc/ovpn-mfa/nat-*.nft,
    /// /etc/sysctl.d, the systemd drop-in, /run/openvpn-server and /var/log/openvpn. It does
    /// not confine the rest: the ovpn-mfa config, store and profiles go to --dir (default
    /// /etc/ovpn-mfa and /var/lib/ovpn-mfa, outside ROOT); forwarding (sysctl) and NAT (nft)
    /// are still applied to the running system unless --no-system is given; only systemctl is
    /// skipped when ROOT is not /.
    #[arg(long, default_value = "/", value_name = "ROOT")]
    pub root: PathBuf,
    /// Print every file and system change without making any.
    #[arg(long)]
    pub dry_run: bool,
    /// Rewrite the server configuration, NAT rules and server.toml for these parameters,
    /// also when they differ from what an earlier run (or a hand edit) left.
    #[arg(long)]
    pub force: bool,
    /// Touch nothing on the running system: do not apply forwarding (sysctl) or NAT (nft),
    /// and do not enable or start the service. Only files are written.
    #[arg(long)]
    pub no_system: bool,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub yes: bool,
    #[command(flatten)]
    pub verifier: VerifierArgs,
}

/// How OpenVPN checks logins: the in-process plugin (fast: no process per login), or the
/// `verify` script (simplest to debug).
#[derive(clap::Args, Debug)]
pub struct VerifierArgs {
    #[arg(long, value_parser = ["plugin", "script"], default_value = "plugin")]
    pub verifier: String,
    /// Path of libovpn_mfa_plugin.so as OpenVPN should load it (default: next to this binary
    /// if it is there, else /usr/local/lib/ovpn-mfa/libovpn_mfa_plugin.so).
    #[arg(long, value_name = "PATH")]
    pub plugin_path: Option<PathBuf>,
}

impl VerifierArgs {
    /// The chosen front end; the plugin must exist, since OpenVPN would not start without it.
    pub fn resolve(&self) -> Result<crate::openvpn::snippets::Verifier> {
        use crate::openvpn::snippets::{plugin_path, Verifier};
        if self.verifier == "script" {
            return Ok(Verifier::Script(None));
        }
        let verifier = Verifier::Plugin(self.plugin_path.clone());
        let path = plugin_path(&verifier).expect("a plugin verifier has a path");
        anyhow::ensure!(
            path.exists(),
            "the ovpn-mfa plugin is not at {} (build it with `cargo build --release -p \
             ovpn-mfa-plugin` and install it there, pass --plugin-path, or use --verifier script)",
            path.display()
        );
        Ok(verifier)
    }
}

/// A parsed IPv4 subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn parse(text: &str) -> Result<Subnet> {
        let (addr, prefix) =
            text.split_once('/').context("the subnet must look like 10.8.0.0/24")?;
        let addr: Ipv4Addr = addr.parse().context("the subnet address is not IPv4")?;
        let prefix: u8 = prefix.parse().context("the subnet prefix is not a number")?;
        if !(16..=29).contains(&prefix) {
            bail!("the subnet prefix must be between /16 and /29");
        }
        let mask = u32::MAX << (32 - prefix);
        if u32::from(addr) & !mask != 0 {
            bail!(
                "{text} has host bits set; did you mean {}/{prefix}?",
                Ipv4Addr::from(u32::from(addr) & mask)
            );
        }
        Ok(Subnet { network: addr, prefix })
    }

    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::MAX << (32 - self.prefix))
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Splits `HOST[:PORT]`, accepting `[v6]:port`.
pub fn parse_endpoint(text: &str) -> Result<(String, u16)> {
    let bad = || anyhow::anyhow!("the endpoint {text:?} must be HOST or HOST:PORT");
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        (host.to_owned(), after.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_owned(), Some(p)),
            _ => (text.to_owned(), None),
        }
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':');
    if host.is_empty() || !host.chars().all(valid) {
        return Err(bad());
    }
    let port = match port {
        Some(p) => p.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?,
        None => 1194,
    };
    Ok((host, port))
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    anyhow::ensure!(ok, "the instance name must be 1 to 32 letters, digits, - or _");
    Ok(())
}

/// The first line of the server configuration `server init` writes.
const CONF_HEADER: &str = "# OpenVPN road-warrior server made by `ovpn-mfa server init`.";

/// The server configuration file's text.
#[allow(clippy::too_many_arguments)]
fn server_conf(
    args: &InitArgs,
    port: u16,
    subnet: &Subnet,
    pki_dir: &Path,
    state: &ServerState,
    mfa_lines: &str,
    status: &Path,
) -> String {
    let p = pki::Paths(pki_dir);
    let mut text = format!(
        "{CONF_HEADER}\n\
         # Every client needs its certificate AND a TOTP code (and a password if it has one).\n\
         port {port}\n\
         proto {proto}\n\
         dev tun\n\
         topology subnet\n\
         server {net} {mask}\n\
         ca {ca}\n\
         cert {cert}\n\
         key {key}\n\
         dh none\n\
         ecdh-curve prime256v1\n\
         tls-crypt {tc}\n\
         tls-version-min 1.2\n\
         verify-client-cert require\n\
         remote-cert-tls client\n\
         crl-verify {crl}\n\
         keepalive 10 60\n\
         persist-key\n\
         persist-tun\n\
         push \"redirect-gateway def1 bypass-dhcp\"\n",
        proto = if args.proto == "tcp" { "tcp-server" } else { "udp" },
        net = subnet.network,
        mask = subnet.netmask(),
        ca = p.ca_cert().display(),
        cert = p.server_cert().display(),
        key = p.server_key().display(),
        tc = p.tls_crypt().display(),
        crl = p.crl().display(),
    );
    if args.proto == "udp" {
        text.push_str("explicit-exit-notify 1\n");
    }
    if args.ipv6 {
        text.push_str("server-ipv6 fd42:6f76:706e::/64\npush \"redirect-gateway ipv6\"\n");
        text.push_str("push \"route-ipv6 2000::/3\"\n");
    }
    for dns in &args.dns {
        text.push_str(&format!("push \"dhcp-option DNS {dns}\"\n"));
    }
    text.push_str(&format!(
        "management {} unix\nstatus {}\nverb 3\n\n{mfa_lines}",
        state.management_socket.display(),
        status.display()
    ));
    text
}

fn nat_rules(name: &str, subnet: &Subnet, ipv6: bool) -> String {
    let table = format!("ovpn_mfa_{}", name.replace('-', "_"));
    let mut rules = format!(
        "# NAT for OpenVPN instance {name}, made by ovpn-mfa. Applied with nft -f.\n\
         table inet {table}\n\
         delete table inet {table}\n\
         table inet {table} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {subnet} ip daddr != {subnet} masquerade\n"
    );
    if ipv6 {
        rules.push_str(
            "\t\tip6 saddr fd42:6f76:706e::/64 ip6 daddr != fd42:6f76:706e::/64 masquerade\n",
        );
    }
    rules.push_str("\t}\n}\n");
    rules
}

/// One planned change.
enum Step {
    Dir(PathBuf),
    File { path: PathBuf, contents: Vec<u8>, mode: Mode },
    Pki(PathBuf),
    TokenSecret(PathBuf),
    MfaStore,
    Run { what: String, program: String, args: Vec<String> },
}

impl Step {
    fn describe(&self) -> String {
        match self {
            Step::Dir(p) => format!("create directory {}", p.display()),
            Step::File { path, mode, .. } => {
                format!("write {} (mode {:o})", path.display(), mode.bits())
            }
            Step::Pki(dir) => format!(
                "create a CA, server certificate, CRL and tls-crypt key in {}",
                dir.display()
            ),
            Step::TokenSecret(p) => format!("create the auth-token secret {}", p.display()),
            Step::MfaStore => "create the ovpn-mfa configuration and store".into(),
            Step::Run { what, program, args } => format!("{what}: {program} {}", args.join(" ")),
        }
    }
}

pub fn init(ctx: &Context, args: &InitArgs) -> Result<i32> {
    check_name(&args.name)?;
    let (host, port) = parse_endpoint(&args.endpoint)?;
    let subnet = Subnet::parse(&args.subnet)?;
    for dns in &args.dns {
        dns.parse::<std::net::IpAddr>()
            .with_context(|| format!("--dns {dns:?} is not an IP address"))?;
    }
    let root = &args.root;
    let openvpn_dir = under(root, "/etc/openvpn/server");
    let pki_dir = openvpn_dir.join(&args.name);
    let conf_path = openvpn_dir.join(format!("{}.conf", args.name));
    let run_dir = under(root, "/run/openvpn-server");
    let state = ServerState {
        name: args.name.clone(),
        endpoint: host,
        port,
        proto: args.proto.clone(),
        config_file: conf_path.clone(),
        pki_dir: pki_dir.clone(),
        profiles_dir: ctx.paths.data_dir.join("profiles"),
        management_socket: run_dir.join(format!("{}.sock", args.name)),
    };

    // The MFA lines come from the same code as `openvpn server-config`.
    let config = Config::load(&ctx.paths.config_file).unwrap_or_default();
    let verifier = args.verifier.resolve()?;
    // As the plugin line names it: mfa_lines makes the path absolute too.
    let plugin = crate::openvpn::snippets::plugin_path(&verifier)
        .map(std::path::absolute)
        .transpose()
        .context("cannot resolve the plugin path")?;
    let mfa_lines = crate::openvpn::snippets::mfa_lines(ctx, &config, &verifier)?;
    let status = under(root, &format!("/var/log/openvpn/{}-status.log", args.name));
    let conf = server_conf(args, port, &subnet, &pki_dir, &state, &mfa_lines, &status);

    let mut steps = Vec::new();
    if !ctx.paths.store().exists() || !ctx.paths.config_file.exists() {
        steps.push(Step::MfaStore);
    }
    for dir in [&pki_dir, &run_dir, &state.profiles_dir, &ctx.paths.openvpn_tmp_dir()] {
        if !dir.exists() {
            steps.push(Step::Dir(dir.clone()));
        }
    }
    if let Some(dir) = status.parent().filter(|d| !d.exists()) {
        steps.push(Step::Dir(dir.to_owned()));
    }
    if !pki::Paths(&pki_dir).ca_key().exists() {
        steps.push(Step::Pki(pki_dir.clone()));
    }
    if !ctx.paths.auth_token_secret().exists() {
        steps.push(Step::TokenSecret(ctx.paths.auth_token_secret()));
    }
    let existing_conf = std::fs::read_to_string(&conf_path).ok();
    let mut kept_conf = false;
    match &existing_conf {
        Some(existing) if *existing == conf => {}
        Some(_) if !args.force => kept_conf = true,
        _ => steps.push(Step::File {
            path: conf_path.clone(),
            contents: conf.into_bytes(),
            mode: Mode::Public,
        }),
    }
    let state_text = toml::to_string(&state)?;
    let existing_state = std::fs::read_to_string(ServerState::path(&ctx.paths.data_dir)).ok();
    if existing_state.as_deref() != Some(&state_text) {
        steps.push(Step::File {
            path: ServerState::path(&ctx.paths.data_dir),
            contents: state_text.into_bytes(),
            mode: Mode::Public,
        });
    }
    let sysctl_path = under(root, "/etc/sysctl.d/60-ovpn-mfa.conf");
    let mut sysctl = String::from(
        "# Forwarding for OpenVPN clients, made by ovpn-mfa.\nnet.ipv4.ip_forward = 1\n",
    );
    if args.ipv6 {
        sysctl.push_str("net.ipv6.conf.all.forwarding = 1\n");
    }
    let nft_path = under(root, &format!("/etc/ovpn-mfa/nat-{}.nft", args.name));
    let nft = nat_rules(&args.name, &subnet, args.ipv6);
    // The unit re-applies the NAT rules at every start, so they survive reboots.
    let dropin_path = under(
        root,
        &format!("/etc/systemd/system/openvpn-server@{}.service.d/ovpn-mfa.conf", args.name),
    );
    let dropin = format!(
        "# Made by ovpn-mfa: NAT for the VPN subnet before OpenVPN starts.\n[Service]\nExecStartPre=/usr/sbin/nft -f {}\n",
        under(Path::new("/"), &format!("/etc/ovpn-mfa/nat-{}.nft", args.name)).display()
    );
    for (path, text) in [(&sysctl_path, &sysctl), (&nft_path, &nft), (&dropin_path, &dropin)] {
        if std::fs::read_to_string(path).ok().as_deref() != Some(text.as_str()) {
            steps.push(Step::File {
                path: path.clone(),
                contents: text.clone().into_bytes(),
                mode: Mode::Public,
            });
        }
    }
    // An earlier run with other parameters: rewriting some files for the new ones and
    // keeping others would leave a server whose NAT, config and profiles disagree.
    if !args.force {
        let asked = Written::asked(args, &subnet, &state, plugin.as_deref());
        let ours = |text: &&str| text.starts_with(CONF_HEADER);
        let mut before =
            existing_conf.as_deref().filter(ours).map(Written::from_conf).unwrap_or_default();
        if let Some(earlier) = existing_state.as_deref().and_then(|t| toml::from_str(t).ok()) {
            before.merge_state(&earlier);
        } else if existing_state.is_some() {
            before
                .other
                .push(format!("{} is not valid", ServerState::path(&ctx.paths.data_dir).display()));
        }
        let mut differences = before.differences(&asked);
        let nft_before = std::fs::read_to_string(&nft_path).ok();
        if differences.is_empty() && nft_before.is_some_and(|text| text != nft) {
            differences
                .push(format!("{} was written for another --subnet or --ipv6", nft_path.display()));
        }
        if !differences.is_empty() {
            bail!(
                "server init was run here before with other parameters, so nothing was \
                 changed: {}. Run it again with the earlier values to keep that setup, or add \
                 --force to rewrite {}, {} and {} for the new ones (and, if the endpoint, port \
                 or protocol changed, give each user a new profile with `ovpn-mfa user profile \
                 NAME`)",
                differences.join("; "),
                conf_path.display(),
                nft_path.display(),
                ServerState::path(&ctx.paths.data_dir).display(),
            );
        }
    }
    if kept_conf {
        eprintln!(
            "{} exists and differs from what would be generated; kept it (pass --force to \
             rewrite it, or `server adopt` to add MFA to a config of your own)",
            conf_path.display()
        );
    }
    // Why the service is not started, when it is not and --no-system did not ask for that.
    let mut unit_note: Option<String> = None;
    if !args.no_system {
        if !forwarding_on(args.ipv6) {
            let mut sysctl_args =
                vec!["-q".to_owned(), "-w".into(), "net.ipv4.ip_forward=1".into()];
            if args.ipv6 {
                sysctl_args.push("net.ipv6.conf.all.forwarding=1".into());
            }
            steps.push(Step::Run {
                what: "turn on forwarding".into(),
                program: "sysctl".into(),
                args: sysctl_args,
            });
        }
        if !nat_table_present(&args.name) {
            steps.push(Step::Run {
                what: "apply the NAT rules".into(),
                program: "nft".into(),
                args: vec!["-f".into(), nft_path.display().to_string()],
            });
        }
        let systemd = Path::new("/run/systemd/system").exists();
        unit_note = service_not_started(root, systemd, &args.name, &conf_path);
        if unit_note.is_none() {
            steps.push(Step::Run {
                what: "start OpenVPN now and at boot".into(),
                program: "systemctl".into(),
                args: vec![
                    "enable".into(),
                    "--now".into(),
                    format!("openvpn-server@{}", args.name),
                ],
            });
        }
    }

    if steps.is_empty() {
        outln!("Nothing to do: the server {} is set up as asked.", args.name)?;
        return Ok(0);
    }
    if args.dry_run {
        outln!("Would make these changes (dry run, nothing written):")?;
        for step in &steps {
            outln!("  - {}", step.describe())?;
        }
        if let Some(note) = &unit_note {
            eprintln!("note: {}", note.replace(VERB, "would not be"));
        }
        return Ok(0);
    }
    for step in &steps {
        outln!("- {}", step.describe())?;
        apply(ctx, step)?;
    }
    outln!(
        "\nServer {} is set up. Next: `ovpn-mfa user add NAME` enrols a user and writes their \
         profile to {}.",
        args.name,
        state.profiles_dir.display()
    )?;
    if let Some(note) = &unit_note {
        eprintln!("note: {}", note.replace(VERB, "was not"));
    }
    Ok(0)
}

/// Stands for "was not" or "would not be" in [`service_not_started`]'s note.
const VERB: &str = "\u{0}";

/// Why `systemctl enable --now` is not run for the instance, and what to run instead; `None`
/// when it is run.
fn service_not_started(root: &Path, systemd: bool, name: &str, conf: &Path) -> Option<String> {
    let unit = format!("openvpn-server@{name}");
    let start = format!("`systemctl enable --now {unit}`");
    if root != Path::new("/") {
        Some(format!(
            "with --root, {unit} {VERB} enabled or started (systemctl would act on this system, \
             not on {}); on the system the tree is for, run {start}",
            root.display()
        ))
    } else if !systemd {
        Some(format!(
            "systemd is not running here, so {unit} {VERB} enabled or started; start OpenVPN \
             with `openvpn --config {}`, or where systemd runs, with {start}",
            conf.display()
        ))
    } else {
        None
    }
}

/// The parameters of a setup, as far as its files tell them: what an earlier run wrote into
/// server.conf and server.toml, or what this run asks for. `None` is "not known".
#[derive(Default)]
struct Written {
    /// (flag, value) in the order they are reported.
    values: Vec<(&'static str, String)>,
    /// Differences that are not one flag's value.
    other: Vec<String>,
}

impl Written {
    fn set(&mut self, flag: &'static str, value: String) {
        if !self.values.iter().any(|(f, _)| *f == flag) {
            self.values.push((flag, value));
        }
    }

    fn get(&self, flag: &str) -> Option<&str> {
        self.values.iter().find(|(f, _)| *f == flag).map(|(_, v)| v.as_str())
    }

    fn asked(
        args: &InitArgs,
        subnet: &Subnet,
        state: &ServerState,
        plugin: Option<&Path>,
    ) -> Written {
        let mut w = Written::default();
        w.set("--name", args.name.clone());
        w.set("--endpoint", format!("{}:{}", state.endpoint, state.port));
        w.set("--proto", args.proto.clone());
        w.set("--subnet", subnet.to_string());
        w.set("--ipv6", if args.ipv6 { "on" } else { "off" }.into());
        w.set("--dns", args.dns.join(","));
        w.set("--root", state.config_file.display().to_string());
        match plugin {
            Some(path) => {
                w.set("--verifier", "plugin".into());
                w.set("--plugin-path", path.display().to_string());
            }
            None => w.set("--verifier", "script".into()),
        }
        w
    }

    /// What `server_conf` wrote: port, proto, server, server-ipv6, the pushed DNS and the
    /// verifier (the `verify` script, or the plugin and its path).
    fn from_conf(text: &str) -> Written {
        let mut w = Written::default();
        let mut dns = Vec::new();
        let mut port = None;
        let mut script = false;
        let mut plugin = None;
        for line in text.lines() {
            let words = crate::doctor::ovpn_conf::split_words(line);
            match words.first().map(String::as_str) {
                Some("auth-user-pass-verify") => script = true,
                Some("plugin") if plugin.is_none() => plugin = words.get(1).cloned(),
                _ => {}
            }
            match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["port", p] => port = Some(p.to_string()),
                ["proto", p] => w.set("--proto", p.trim_end_matches("-server").to_owned()),
                ["server", net, mask] => {
                    if let Ok(mask) = mask.parse::<Ipv4Addr>() {
                        w.set("--subnet", format!("{net}/{}", u32::from(mask).leading_ones()));
                    }
                }
                ["server-ipv6", ..] => w.set("--ipv6", "on".into()),
                ["push", "\"dhcp-option", "DNS", ip] => dns.push(ip.trim_end_matches('"')),
                _ => {}
            }
        }
        if w.get("--subnet").is_some() {
            w.set("--ipv6", "off".into());
            w.set("--dns", dns.join(","));
        }
        if let Some(port) = port {
            w.set("--port", port);
        }
        if script {
            w.set("--verifier", "script".into());
        } else if let Some(path) = plugin {
            w.set("--verifier", "plugin".into());
            w.set("--plugin-path", path);
        }
        w
    }

    fn merge_state(&mut self, state: &ServerState) {
        self.set("--name", state.name.clone());
        self.set("--endpoint", format!("{}:{}", state.endpoint, state.port));
        self.set("--proto", state.proto.clone());
        self.set("--root", state.config_file.display().to_string());
    }

    /// "--subnet: the existing setup has A, this run asks for B", for each known difference.
    fn differences(&self, asked: &Written) -> Vec<String> {
        let mut out = self.other.clone();
        let differs = |flag: &str| {
            let before = self.get(flag);
            before.is_some() && before != asked.get(flag)
        };
        for (flag, before) in &self.values {
            // Said already, by the difference that implies this one.
            if (*flag == "--root" && differs("--name"))
                || (*flag == "--port" && differs("--endpoint"))
                || (*flag == "--plugin-path" && differs("--verifier"))
            {
                continue;
            }
            let now = match *flag {
                // The port alone is known from server.conf; the endpoint carries it.
                "--port" => asked.get("--endpoint").and_then(|e| e.rsplit_once(':')).map(|p| p.1),
                _ => asked.get(flag),
            };
            let Some(now) = now.filter(|now| now != before) else { continue };
            out.push(match *flag {
                "--root" => format!(
                    "--root or --name: the existing setup's configuration is {before}, this \
                     run's would be {now}"
                ),
                "--port" => format!(
                    "--endpoint: the existing setup listens on port {before}, this run asks for \
                     {now}"
                ),
                _ => format!("{flag}: the existing setup has {before}, this run asks for {now}"),
            });
        }
        out
    }
}

fn apply(ctx: &Context, step: &Step) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match step {
        Step::Dir(path) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("cannot create {}", path.display())),
        Step::File { path, contents, mode } => write_file(path, contents, *mode),
        Step::Pki(dir) => Pki::create(dir).map(|_| ()),
        Step::TokenSecret(path) => crate::openvpn::snippets::create_token_secret(path),
        Step::MfaStore => {
            crate::cli::admin_init(ctx)?;
            Ok(())
        }
        Step::Run { program, args, .. } => {
            let output = std::process::Command::new(program)
                .args(args)
                .output()
                .with_context(|| format!("cannot run {program} (is it installed?)"))?;
            anyhow::ensure!(
                output.status.success(),
                "{program} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
            Ok(())
        }
    }
}

fn forwarding_on(ipv6: bool) -> bool {
    let on = |p: &str| std::fs::read_to_string(p).map(|v| v.trim() == "1").unwrap_or(false);
    on("/proc/sys/net/ipv4/ip_forward") && (!ipv6 || on("/proc/sys/net/ipv6/conf/all/forwarding"))
}

fn nat_table_present(name: &str) -> bool {
    let table = format!("ovpn_mfa_{}", name.replace('-', "_"));
    std::process::Command::new("nft")
        .args(["list", "table", "inet", &table])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_and_without_ports() {
        assert_eq!(parse_endpoint("vpn.example.com").unwrap(), ("vpn.example.com".into(), 1194));
        assert_eq!(parse_endpoint("203.0.113.5:443").unwrap(), ("203.0.113.5".into(), 443));
        assert_eq!(parse_endpoint("[2001:db8::1]:1195").unwrap(), ("2001:db8::1".into(), 1195));
        for bad in ["", ":1194", "host:0", "host:99999", "a b", "host;rm", "host:x"] {
            assert!(parse_endpoint(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subnets_are_checked() {
        let s = Subnet::parse("10.8.0.0/24").unwrap();
        assert_eq!(s.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(Subnet::parse("10.8.0.1/24").unwrap_err().to_string().contains("10.8.0.0/24"));
        assert!(Subnet::parse("10.8.0.0/8").is_err());
        assert!(Subnet::parse("10.8.0.0").is_err());
    }

    #[test]
    fn without_systemd_or_with_a_root_the_note_says_the_unit_was_not_enabled() {
        let conf = Path::new("/etc/openvpn/server/server.conf");
        assert_eq!(service_not_started(Path::new("/"), true, "server", conf), None);
        let note = service_not_started(Path::new("/"), false, "server", conf).unwrap();
        let note = note.replace(VERB, "was not");
        assert!(note.starts_with("systemd is not running here"), "{note}");
        assert!(note.contains("openvpn-server@server was not enabled or started"), "{note}");
        assert!(note.contains("`systemctl enable --now openvpn-server@server`"), "{note}");
        assert!(note.contains("`openvpn --config /etc/openvpn/server/server.conf`"), "{note}");
        let note = service_not_started(Path::new("/img"), true, "vpn", conf).unwrap();
        assert!(note.contains("`systemctl enable --now openvpn-server@vpn`"), "{note}");
    }

    #[test]
    fn nat_rules_replace_their_own_table_only() {
        let rules = nat_rules("server", &Subnet::parse("10.8.0.0/24").unwrap(), false);
        assert!(rules.contains("delete table inet ovpn_mfa_server"));
        assert!(rules.contains("ip saddr 10.8.0.0/24 ip daddr != 10.8.0.0/24 masquerade"));
    }
}
