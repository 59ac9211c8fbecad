//! `ovpn-mfa`: parses the command line, runs it, and is the one place that turns an error
//! into a message and an exit code.

use clap::Parser;
use ovpn_mfa::cli::output::{OutputError, BROKEN_PIPE_EXIT};
use ovpn_mfa::cli::{run, Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = Cli::parse();
    init_logging(&cli);
    let code = match run(cli) {
        Ok(code) => code,
        // A reader that went away (`ovpn-mfa audit | head -1`) ends the command quietly, as it
        // would end a C program. Commands with something at stake (a secret shown once) say
        // what happened in an error of their own instead.
        Err(error) if reader_went_away(&error) => BROKEN_PIPE_EXIT,
        Err(error) => {
            let mut message = format!("{error:#}");
            message.retain(|c| c != '\n');
            eprintln!("ovpn-mfa: error: {message}");
            if let Some(hint) = hint(&error) {
                eprintln!("ovpn-mfa: hint: {hint}");
            }
            1
        }
    };
    std::process::exit(code);
}

/// Log lines go to stderr, which OpenVPN copies into its own log for `verify`. No colours or
/// timestamps: OpenVPN and journald add their own. `OVPN_MFA_LOG` overrides the level.
fn init_logging(cli: &Cli) {
    let default = match (cli.verbose, &cli.command) {
        (0, Command::Verify(_) | Command::VerifyWorker) => "info",
        (0, _) => "warn",
        (1, _) => "debug",
        _ => "trace",
    };
    let filter =
        EnvFilter::try_from_env("OVPN_MFA_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .init();
}

/// Whether the error is only that standard output's reader went away.
fn reader_went_away(error: &anyhow::Error) -> bool {
    let outermost = error.chain().next();
    outermost.and_then(|e| e.downcast_ref::<OutputError>()).is_some_and(|e| e.is_broken_pipe())
}

fn hint(error: &anyhow::Error) -> Option<&'static str> {
    let io = error.chain().find_map(|e| e.downcast_ref::<std::io::Error>());
    // EACCES and EPERM. Root gets them too, from an immutable file or a read-only mount:
    // telling root to run as root helps no one.
    if io.is_some_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied) {
        return Some(if euid_is_root() {
            "even root may not change it: check for an immutable attribute (`lsattr`, \
             `chattr -i`), a read-only mount, or a security module"
        } else {
            "run as root, or pass --dir to use a directory you own"
        });
    }
    let text = format!("{error:#}");
    if text.contains("readonly") || text.contains("read-only") {
        return Some("the data directory or store is read-only; check its mode and mount");
    }
    None
}

fn euid_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
