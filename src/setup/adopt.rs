//! `ovpn-mfa server adopt`: adds MFA to an existing server configuration, such as one made by
//! the common road-warrior installers.
//!
//! The lines go into one marked block at the end of the file, so a second run finds the block
//! and changes nothing, and a human can see what was added. Directives the file already has
//! (hand-window, data-ciphers, script-security...) are not repeated. `reneg-sec 0`, which
//! OpenVPN refuses together with auth-gen-token, is commented out.

use crate::cli::output::outln;
use crate::cli::Context;
use crate::config::Config;
use anyhow::{Context as _, Result};
use clap::Args;
use std::path::{Path, PathBuf};

pub const BEGIN: &str = "# --- ovpn-mfa begin: managed by `ovpn-mfa server adopt` ---";
pub const END: &str = "# --- ovpn-mfa end ---";
/// How every begin marker starts, whatever text an older version put after it.
const BEGIN_PREFIX: &str = "# --- ovpn-mfa begin";

#[derive(Args, Debug)]
pub struct AdoptArgs {
    /// The server configuration to change.
    pub config: PathBuf,
    /// Print the changes without making them.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub verifier: super::server::VerifierArgs,
}

/// The first word of a config line, if it is a directive.
fn directive(line: &str) -> Option<&str> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
        return None;
    }
    line.split_whitespace().next()
}

fn args_of(line: &str) -> Vec<&str> {
    line.split_whitespace().skip(1).collect()
}

/// What adopting `original` produces, and a human-readable list of the changes. A block
/// whose end marker is missing is refused: where it ends, and so which lines are ours to
/// replace, is anyone's guess.
pub fn adopt_text(original: &str, mfa_lines: &str) -> Result<(String, Vec<String>)> {
    let mut changes = Vec::new();
    let mut kept = Vec::new();
    // The line number of the begin marker of the block being read.
    let mut in_block: Option<usize> = None;
    let mut old_block = Vec::new();
    let mut reneg_sec_0 = Vec::new();
    for (number, line) in (1..).zip(original.lines()) {
        if line.trim().starts_with(BEGIN_PREFIX) {
            if let Some(begin) = in_block {
                return Err(unterminated(begin));
            }
            in_block = Some(number);
            continue;
        }
        if in_block.is_some() {
            if line.trim() == END {
                in_block = None;
            } else {
                old_block.push((number, line));
            }
            continue;
        }
        if directive(line) == Some("reneg-sec") && args_of(line).first() == Some(&"0") {
            kept.push(format!(
                "# {line}  # disabled by ovpn-mfa: auth-gen-token keeps sessions across renegotiation"
            ));
            reneg_sec_0.push(number);
            continue;
        }
        if directive(line) == Some("auth-user-pass-verify") {
            kept.push(format!(
                "# {line}  # disabled by ovpn-mfa: its own verifier in the block below replaces it"
            ));
            changes.push(format!(
                "commented out `{}` on line {number}: OpenVPN would run it as well as ovpn-mfa \
                 (or instead of it), and it would get the code as the password",
                line.trim()
            ));
            continue;
        }
        kept.push(line.to_owned());
    }
    if !reneg_sec_0.is_empty() {
        changes.insert(
            0,
            format!(
                "commented out `reneg-sec 0` on {} (key renegotiation stays on)",
                line_list(&reneg_sec_0)
            ),
        );
    }

    // Settings the file already makes are not repeated, where the file's value serves us as
    // well. Everything else in the block comes last, and OpenVPN's last value wins.
    let keeps_its_own = |d: &str| {
        kept.iter().any(|l| match (directive(l), d) {
            (Some("script-security"), "script-security") => {
                args_of(l).first().and_then(|v| v.parse::<u8>().ok()).is_some_and(|v| v >= 2)
            }
            (Some(found), "tmp-dir" | "data-ciphers") => found == d,
            _ => false,
        })
    };
    let block: Vec<&str> =
        mfa_lines.lines().filter(|l| directive(l).is_none_or(|d| !keeps_its_own(d))).collect();
    if block != old_block.iter().map(|(_, l)| *l).collect::<Vec<_>>() {
        changes.push(if old_block.is_empty() {
            "added the ovpn-mfa block (verifier, auth-gen-token external-auth)".into()
        } else {
            "updated the ovpn-mfa block".into()
        });
        // The block is rewritten whole: lines someone added to it are lost, and say so.
        for (number, line) in &old_block {
            if !block.contains(line) && !is_ours(line) {
                changes.push(format!(
                    "dropped line {number} `{}`, which is inside the ovpn-mfa block: the block \
                     is rewritten by every adopt; put your own lines outside the markers",
                    line.trim()
                ));
            }
        }
    }
    let mut text = kept.join("\n");
    while text.ends_with('\n') {
        text.pop();
    }
    if let Some(begin) = in_block {
        return Err(unterminated(begin));
    }
    text.push_str(&format!("\n\n{BEGIN}\n{}\n{END}\n", block.join("\n")));
    Ok((text, changes))
}

/// Whether a line of an old block is one ovpn-mfa writes there (in this version or with the
/// other verifier or other settings): comments, blank lines and the directives of the block.
fn is_ours(line: &str) -> bool {
    match directive(line) {
        None => true,
        Some("plugin") => line.contains(crate::openvpn::snippets::PLUGIN_FILE),
        Some(d) => [
            "script-security",
            "auth-user-pass-verify",
            "tmp-dir",
            "auth-gen-token",
            "auth-gen-token-secret",
            "hand-window",
            "data-ciphers",
        ]
        .contains(&d),
    }
}

/// "line 3" or "lines 3, 9 and 12".
fn line_list(numbers: &[usize]) -> String {
    match numbers {
        [one] => format!("line {one}"),
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(|n| n.to_string()).collect();
            format!("lines {} and {last}", init.join(", "))
        }
        [] => String::new(),
    }
}

fn unterminated(line: usize) -> anyhow::Error {
    anyhow::anyhow!(
        "line {line} begins an ovpn-mfa block (`{BEGIN_PREFIX} ...`) that has no `{END}` line \
         before the next block or the end of the file; nothing changed. Add the `{END}` line \
         after the block's last line (or delete the block) and run again"
    )
}

/// An existing PKI may name its client certificates otherwise than the users.
pub const BIND_CERTIFICATE_NOTE: &str =
    "logins are refused unless the client certificate's common name is the user name \
     (`bind_certificate` in the [openvpn] section of config.toml); if this server's \
     certificates are named otherwise, set it to false or issue new ones";

/// Warnings about the existing file that adopting does not change.
pub fn warnings(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        match (directive(line), args_of(line).first().copied()) {
            (Some("verify-client-cert"), Some("none" | "optional")) => out.push(format!(
                "`{}`: without a required client certificate the code is the only factor",
                line.trim()
            )),
            (Some("plugin"), _) if line.contains("auth-pam") => out.push(
                "an auth-pam plugin is still loaded: OpenVPN requires it AND ovpn-mfa to accept; \
                 remove it once users are imported"
                    .into(),
            ),
            (Some("duplicate-cn"), _) => out.push(
                "`duplicate-cn` lets one certificate connect many times; consider removing it"
                    .into(),
            ),
            _ => {}
        }
    }
    out
}

/// The user the server drops privileges to, if any.
pub fn run_as_user(text: &str) -> Option<String> {
    text.lines()
        .filter(|l| directive(l) == Some("user"))
        .find_map(|l| args_of(l).first().map(|s| s.to_string()))
}

pub fn adopt(ctx: &Context, args: &AdoptArgs) -> Result<i32> {
    // A symlinked config is adopted where it points: replacing the link with a file would
    // leave the real configuration, the one other tools and links may name, unchanged.
    let link = std::fs::symlink_metadata(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let resolved;
    let path = if link.file_type().is_symlink() {
        resolved = std::fs::canonicalize(&args.config)
            .with_context(|| format!("cannot resolve the symlink {}", args.config.display()))?;
        &resolved
    } else {
        &args.config
    };
    let metadata =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    anyhow::ensure!(metadata.is_file(), "{} is not a regular file", path.display());
    let original =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let config = Config::load(&ctx.paths.config_file).unwrap_or_default();
    let verifier = args.verifier.resolve()?;
    let mfa_lines = crate::openvpn::snippets::mfa_lines(ctx, &config, &verifier)?;
    let (text, mut changes) =
        adopt_text(&original, &mfa_lines).with_context(|| format!("{}", path.display()))?;
    let needs_store = !ctx.paths.store().exists();
    let needs_secret = !ctx.paths.auth_token_secret().exists();
    let run_as = run_as_user(&original);
    // Also when only the `user` line changed since the last adopt.
    let needs_owner = run_as.as_deref().is_some_and(|user| {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(&ctx.paths.data_dir).map(|m| m.uid()).ok();
        owner.is_none() || owner != uid_of(user).ok()
    });

    if path != &args.config {
        eprintln!(
            "{} is a symlink: adopting its target {} (the link stays as it is)",
            args.config.display(),
            path.display()
        );
    }
    for warning in warnings(&original) {
        eprintln!("warning: {warning}");
    }
    if run_as.as_deref() == Some("nobody") {
        eprintln!("warning: {}", nobody_warning(&ctx.paths.data_dir));
    }
    if config.openvpn.bind_certificate {
        eprintln!("note: {BIND_CERTIFICATE_NOTE}");
    }
    if changes.is_empty() && !needs_store && !needs_secret && !needs_owner {
        outln!("{}: already has MFA; nothing changed.", path.display())?;
        return Ok(0);
    }
    if needs_store {
        changes.push("create the ovpn-mfa configuration and store".into());
    }
    if needs_secret {
        changes.push(format!(
            "create the auth-token secret {}",
            ctx.paths.auth_token_secret().display()
        ));
    }
    if let Some(user) = run_as.as_ref().filter(|_| needs_owner) {
        changes.push(format!(
            "give `{user}` (the server's `user`) ownership of {} so the verifier can write the store",
            ctx.paths.data_dir.display()
        ));
    }
    if args.dry_run {
        outln!("Would change {} (dry run, nothing written):", path.display())?;
        for change in &changes {
            outln!("  - {change}")?;
        }
        return Ok(0);
    }

    if needs_store {
        crate::cli::admin_init(ctx)?;
    }
    if needs_secret || !ctx.paths.openvpn_tmp_dir().exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(ctx.paths.openvpn_tmp_dir())?;
        if needs_secret {
            crate::openvpn::snippets::create_token_secret(&ctx.paths.auth_token_secret())?;
        }
    }
    if text != original {
        // The backup and the new file keep the original's mode, owner and group: the file
        // may hold an inline <key>.
        let backup = backup_path(path);
        super::files::write_file_like(&backup, original.as_bytes(), &metadata).with_context(
            || format!("cannot back up {} to {}", path.display(), backup.display()),
        )?;
        super::files::write_file_like(path, text.as_bytes(), &metadata)?;
        outln!("Backed up the original to {}", backup.display())?;
    }
    if let Some(user) = run_as.as_ref().filter(|_| needs_owner) {
        give_to(user, &ctx.paths.data_dir)?;
    }
    outln!("Changed {}:", path.display())?;
    for change in &changes {
        outln!("  - {change}")?;
    }
    outln!("Restart the OpenVPN server to apply.")?;
    Ok(0)
}

/// Why a server running as `nobody` should get a user of its own.
fn nobody_warning(data_dir: &Path) -> String {
    format!(
        "the server runs as `nobody`, so adopt gives {} (the store with every user's OTP \
         secret) to `nobody`: any other service running as `nobody` can read the secrets. \
         Create a dedicated user for OpenVPN (e.g. `useradd --system --no-create-home \
         --shell /usr/sbin/nologin openvpn`), set `user openvpn` in the server config and \
         run adopt again",
        data_dir.display()
    )
}

fn uid_of(user: &str) -> Result<u32> {
    let output = std::process::Command::new("id").args(["-u", user]).output()?;
    anyhow::ensure!(output.status.success(), "the server's `user {user}` does not exist here");
    Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
}

fn backup_path(path: &Path) -> PathBuf {
    let stamp = crate::unix_now();
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".ovpn-mfa-backup-{stamp}"));
    path.with_file_name(name)
}

/// Hands the data directory (store, tmp-dir) to the unprivileged user OpenVPN runs as, keeping
/// the auth-token secret, which OpenVPN reads before dropping privileges, with root.
fn give_to(user: &str, data_dir: &Path) -> Result<()> {
    let uid = uid_of(user)?;
    let token = data_dir.join("auth-token.key");
    for entry in walk(data_dir)? {
        if entry == token {
            continue;
        }
        std::os::unix::fs::lchown(&entry, Some(uid), None)
            .with_context(|| format!("cannot change the owner of {}", entry.display()))?;
    }
    Ok(())
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![dir.to_owned()];
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            out.extend(walk(&entry.path())?);
        } else {
            out.push(entry.path());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSTALLER_STYLE: &str = "port 1194\nproto udp\ndev tun\nuser nobody\ngroup nogroup\n\
        persist-key\npersist-tun\nkeepalive 10 120\ntopology subnet\nserver 10.8.0.0 255.255.255.0\n\
        dh none\ntls-crypt tls-crypt.key\ncrl-verify crl.pem\nca ca.crt\ncert server.crt\nkey server.key\n\
        cipher AES-128-GCM\nreneg-sec 0\nstatus /var/log/openvpn/status.log\nverb 3\n";

    const MFA: &str =
        "# ovpn-mfa\nscript-security 2\nauth-user-pass-verify \"/x verify\" via-file\n\
        auth-gen-token 43200 3600 external-auth\nhand-window 60\nverb 3\n";

    #[test]
    fn adopting_adds_one_block_and_disables_reneg_sec_0() {
        let (text, changes) = adopt_text(INSTALLER_STYLE, MFA).unwrap();
        assert!(text.contains(BEGIN) && text.contains(END));
        assert!(text.contains("auth-gen-token 43200 3600 external-auth"));
        assert!(text.contains("# reneg-sec 0"));
        assert!(!text.lines().any(|l| l.trim() == "reneg-sec 0"));
        assert_eq!(changes.len(), 2, "{changes:?}");
    }

    #[test]
    fn settings_the_file_has_are_kept_but_verifier_lines_always_go_in() {
        let original = "script-security 3\nplugin /usr/lib/openvpn/openvpn-plugin-auth-pam.so x\n\
                        data-ciphers AES-128-GCM\n";
        let mfa = "script-security 2\nplugin \"/lib/libovpn_mfa_plugin.so\"\n\
                   data-ciphers AES-256-GCM\nhand-window 60\n";
        let (text, _) = adopt_text(original, mfa).unwrap();
        let count = |d: &str| text.lines().filter(|l| directive(l) == Some(d)).count();
        assert_eq!(count("script-security"), 1, "{text}");
        assert_eq!(count("data-ciphers"), 1, "{text}");
        assert_eq!(count("plugin"), 2, "{text}");
        assert!(text.contains("libovpn_mfa_plugin.so"));
        assert_eq!(count("hand-window"), 1);
    }

    #[test]
    fn adopting_twice_changes_nothing() {
        let (once, _) = adopt_text(INSTALLER_STYLE, MFA).unwrap();
        let (twice, changes) = adopt_text(&once, MFA).unwrap();
        assert_eq!(once, twice);
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn a_block_without_its_end_marker_is_refused_with_its_line() {
        let (once, _) = adopt_text(INSTALLER_STYLE, MFA).unwrap();
        let cut: String =
            once.lines().filter(|l| l.trim() != END).map(|l| l.to_owned() + "\n").collect();
        let line = cut.lines().position(|l| l.trim() == BEGIN).unwrap() + 1;
        let error = adopt_text(&(cut.clone() + "verb 4\n"), MFA).unwrap_err().to_string();
        assert!(error.contains(&format!("line {line} ")), "{error}");
        // A second begin before the first one's end is the same mistake.
        let twice = format!("{cut}{BEGIN}\nverb 4\n{END}\n");
        assert!(adopt_text(&twice, MFA)
            .unwrap_err()
            .to_string()
            .contains(&format!("line {line} ")));
    }

    #[test]
    fn an_earlier_verify_script_is_commented_out_and_reported() {
        let original = "port 1\nauth-user-pass-verify /etc/openvpn/check.sh via-file\n";
        let (text, changes) = adopt_text(original, MFA).unwrap();
        let verifiers: Vec<&str> =
            text.lines().filter(|l| directive(l) == Some("auth-user-pass-verify")).collect();
        assert_eq!(verifiers, ["auth-user-pass-verify \"/x verify\" via-file"], "{text}");
        assert!(text.contains("# auth-user-pass-verify /etc/openvpn/check.sh via-file"));
        let change = changes.iter().find(|c| c.contains("check.sh")).expect("reported");
        assert!(change.contains("line 2"), "{change}");
        let (twice, changes) = adopt_text(&text, MFA).unwrap();
        assert_eq!(text, twice);
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn lines_added_inside_the_block_are_named_when_dropped() {
        let (once, _) = adopt_text(INSTALLER_STYLE, MFA).unwrap();
        let edited = once.replace(END, &format!("push \"route 10.1.0.0 255.255.0.0\"\n{END}"));
        let line = edited.lines().position(|l| l.starts_with("push")).unwrap() + 1;
        let (text, changes) = adopt_text(&edited, MFA).unwrap();
        assert_eq!(text, once);
        let dropped: Vec<_> = changes.iter().filter(|c| c.contains("dropped")).collect();
        assert_eq!(dropped.len(), 1, "{changes:?}");
        assert!(dropped[0].contains(&format!("line {line} `push \"route")), "{dropped:?}");
        assert!(dropped[0].contains("outside the markers"), "{dropped:?}");
        // The block's own lines, from another verifier or version, are not named.
        let other = MFA.replace("\"/x verify\"", "\"/y verify\"");
        let (_, changes) = adopt_text(&once, &other).unwrap();
        assert_eq!(changes, ["updated the ovpn-mfa block"]);
    }

    #[test]
    fn several_reneg_sec_0_lines_are_reported_once_with_their_lines() {
        let original = "reneg-sec 0\nport 1\nreneg-sec 0\nreneg-sec  0\n";
        let (_, changes) = adopt_text(original, MFA).unwrap();
        let reneg: Vec<_> = changes.iter().filter(|c| c.contains("reneg-sec")).collect();
        assert_eq!(reneg.len(), 1, "{changes:?}");
        assert!(reneg[0].contains("lines 1, 3 and 4"), "{reneg:?}");
    }

    #[test]
    fn the_server_user_is_found() {
        assert_eq!(run_as_user(INSTALLER_STYLE).as_deref(), Some("nobody"));
        assert_eq!(run_as_user("port 1\n"), None);
    }
}
