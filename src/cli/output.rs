//! Standard output for every command. `println!` panics when standard output cannot be
//! written (a reader that went away, a full disk); [`outln!`] returns an [`OutputError`]
//! instead, which `main` renders like any other error, or, for a reader that went away in the
//! middle of a listing, ends quietly.
//!
//! Commands that show a secret once (`user add`, `user reset-otp`, `user recovery-codes`)
//! write it and [`flush`] before they commit: if it could not be written, nothing is stored.

use std::io::Write;

/// Standard output could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to standard output")]
pub struct OutputError(#[source] pub std::io::Error);

impl OutputError {
    /// The reader went away (`| head`, `| true`): for output nobody needs to see, a normal
    /// way for a command to end.
    pub fn is_broken_pipe(&self) -> bool {
        self.0.kind() == std::io::ErrorKind::BrokenPipe
    }
}

/// The exit code of a command whose reader went away: what a shell reports for a program
/// ended by SIGPIPE (128 + 13).
pub const BROKEN_PIPE_EXIT: i32 = 141;

/// Writes `args` to standard output. Use [`out!`] and [`outln!`].
pub fn write_fmt(args: std::fmt::Arguments<'_>, newline: bool) -> Result<(), OutputError> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args).map_err(OutputError)?;
    if newline {
        out.write_all(b"\n").map_err(OutputError)?;
    }
    Ok(())
}

/// Pushes out what is still buffered, so that a failure shows before anything is committed.
pub fn flush() -> Result<(), OutputError> {
    std::io::stdout().lock().flush().map_err(OutputError)
}

/// `print!` that returns `Result<(), OutputError>` instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write_fmt(format_args!($($arg)*), false)
    };
}

/// `println!` that returns `Result<(), OutputError>` instead of panicking.
macro_rules! outln {
    () => {
        $crate::cli::output::write_fmt(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write_fmt(format_args!($($arg)*), true)
    };
}

pub(crate) use {out, outln};
