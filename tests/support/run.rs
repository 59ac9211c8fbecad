//! Running a program to the end and keeping what it printed: the CLI and hardening tests'
//! view of the `ovpn-mfa` binary.

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Output, Stdio};

/// What one run of a program left behind.
#[derive(Debug)]
pub struct Run {
    /// The command, as `Command`'s Debug output shows it.
    pub what: String,
    /// `None` when the process was killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(what: String, output: Output) -> Self {
        Run {
            what,
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts exit 0 and returns the run for chaining.
    pub fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "{self}");
        self
    }

    /// Asserts that `check` refused (exit 1) with exactly this reason as its only stderr line.
    pub fn refused(self, reason: &str) -> Self {
        assert_eq!(self.code, Some(1), "{self}");
        assert_eq!(self.stderr.trim_end(), format!("refused: {reason}"), "{self}");
        self
    }

    /// Asserts a clean failure: a non-zero exit, one `ovpn-mfa: error:` line on stderr and at
    /// most one `ovpn-mfa: hint:` line after it, nothing else, and no sign of a panic.
    pub fn fails_cleanly(self) -> Self {
        assert!(matches!(self.code, Some(c) if c != 0), "{self}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert!(!lines.is_empty() && lines[0].starts_with("ovpn-mfa: error: "), "{self}");
        assert!(
            lines.len() == 1 || (lines.len() == 2 && lines[1].starts_with("ovpn-mfa: hint: ")),
            "{self}"
        );
        for bad in ["panicked", "RUST_BACKTRACE"] {
            assert!(!self.printed().contains(bad), "{self}");
        }
        self
    }

    /// Standard output as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self}"))
    }

    /// Everything the run printed, both streams.
    pub fn printed(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// The first line on stderr (where `ovpn-mfa: error: ...` goes).
    pub fn error_line(&self) -> &str {
        self.stderr.lines().next().unwrap_or_default()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited {:?}\n--- stdout\n{}--- stderr\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }
}

/// Runs a prepared command to the end with both streams captured, feeding it `stdin` if
/// given (and an empty stdin otherwise).
pub fn output(command: &mut Command, stdin: Option<&str>) -> Output {
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(text.as_bytes()).unwrap_or_else(|e| panic!("write to {command:?}: {e}"));
    }
    child.wait_with_output().unwrap_or_else(|e| panic!("wait for {command:?}: {e}"))
}

/// [`output`], kept as a [`Run`].
pub fn run(mut command: Command, stdin: Option<&str>) -> Run {
    let what = format!("{command:?}");
    let output = output(&mut command, stdin);
    Run::from_output(what, output)
}
