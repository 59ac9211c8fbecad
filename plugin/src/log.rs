//! The library's `tracing` events, written to OpenVPN's log through `plugin_log`.
//!
//! OpenVPN's logger is single-threaded: each line is also copied into the management
//! interface's history, without a lock. So only OpenVPN's own thread, while it is inside a
//! call into the plugin, hands lines to `plugin_log`. Lines from our worker and deadline
//! threads wait in a bounded queue and are written by OpenVPN's thread at the start and the
//! end of its next call into the plugin. Every decision is also in the store's audit log the
//! moment it is made (`ovpn-mfa audit`), so a delayed log line never hides one.
//!
//! Lines never contain secrets: the library logs decisions through `Decision`'s `Display`,
//! which shows the user, the source, the method and the reason only.

use crate::ffi::{PluginLog, PLOG_DEBUG, PLOG_ERR, PLOG_NOTE, PLOG_WARN};
use std::cell::Cell;
use std::collections::VecDeque;
use std::ffi::{c_int, CStr, CString};
use std::sync::{Mutex, MutexGuard, PoisonError};
use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;

/// How OpenVPN's log names us: `PLUGIN ovpn-mfa: ...`.
const NAME: &CStr = c"ovpn-mfa";

/// Lines from other threads kept until OpenVPN's thread comes back; older ones are dropped
/// (and counted) beyond this.
const MAX_PENDING: usize = 1024;

static LOG_FN: Mutex<Option<PluginLog>> = Mutex::new(None);
static PENDING: Mutex<Pending> = Mutex::new(Pending { lines: VecDeque::new(), dropped: 0 });

thread_local! {
    /// True while OpenVPN's thread is inside one of our entry points.
    static IN_OPENVPN_CALL: Cell<bool> = const { Cell::new(false) };
}

struct Pending {
    lines: VecDeque<(c_int, CString)>,
    dropped: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Uses OpenVPN's `plugin_log` from now on (`None`: standard error).
pub fn set_plugin_log(log: Option<PluginLog>) {
    *lock(&LOG_FN) = log;
}

/// Installs the subscriber that sends events here. Once per process; if another global
/// subscriber is already set (the rlib linked into a program with its own), it is kept.
pub fn init() {
    let subscriber = tracing_subscriber::fmt()
        .with_writer(OpenVpnLog)
        .with_max_level(Level::DEBUG)
        .with_ansi(false)
        .without_time()
        .with_level(false)
        .with_target(false)
        .finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Marks the current thread as OpenVPN's for the length of an entry point, and writes out
/// what other threads logged in the meantime.
pub struct OpenVpnCall {
    was_inside: bool,
}

impl OpenVpnCall {
    pub fn enter() -> OpenVpnCall {
        let was_inside = IN_OPENVPN_CALL.with(|c| c.replace(true));
        flush_pending();
        OpenVpnCall { was_inside }
    }
}

impl Drop for OpenVpnCall {
    fn drop(&mut self) {
        flush_pending();
        IN_OPENVPN_CALL.with(|c| c.set(self.was_inside));
    }
}

fn flags_for(level: Level) -> c_int {
    match level {
        Level::ERROR => PLOG_ERR,
        Level::WARN => PLOG_WARN,
        Level::INFO => PLOG_NOTE,
        _ => PLOG_DEBUG,
    }
}

/// One log line, made safe for C: no NUL, no line breaks.
fn c_line(text: &[u8]) -> CString {
    let text = String::from_utf8_lossy(text);
    let line: String = text
        .trim_end()
        .chars()
        .map(|c| match c {
            '\0' => ' ',
            '\n' | '\r' => ' ',
            c => c,
        })
        .collect();
    CString::new(line).unwrap_or_default()
}

fn emit(flags: c_int, line: CString) {
    let log_fn = *lock(&LOG_FN);
    let Some(log_fn) = log_fn else {
        eprintln!("ovpn-mfa: {}", line.to_string_lossy());
        return;
    };
    if IN_OPENVPN_CALL.with(Cell::get) {
        write(log_fn, flags, &line);
        return;
    }
    let mut pending = lock(&PENDING);
    if pending.lines.len() >= MAX_PENDING {
        pending.lines.pop_front();
        pending.dropped += 1;
    }
    pending.lines.push_back((flags, line));
}

fn write(log_fn: PluginLog, flags: c_int, line: &CStr) {
    // SAFETY: `log_fn` is OpenVPN's plugin_log, called on OpenVPN's thread (the caller
    // checked) with a constant "%s" format and one NUL-terminated string for it.
    unsafe { log_fn(flags, NAME.as_ptr(), c"%s".as_ptr(), line.as_ptr()) }
}

/// Writes the queued lines; only on OpenVPN's thread, inside an entry point.
fn flush_pending() {
    let Some(log_fn) = *lock(&LOG_FN) else { return };
    let (lines, dropped) = {
        let mut pending = lock(&PENDING);
        (std::mem::take(&mut pending.lines), std::mem::take(&mut pending.dropped))
    };
    if dropped > 0 {
        let note = format!("{dropped} log lines from worker threads were dropped (queue full)");
        write(log_fn, PLOG_WARN, &c_line(note.as_bytes()));
    }
    for (flags, line) in lines {
        write(log_fn, flags, &line);
    }
}

/// The subscriber's writer: collects one formatted event and emits it when dropped.
struct OpenVpnLog;

struct EventLine {
    level: Level,
    text: Vec<u8>,
}

impl std::io::Write for EventLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventLine {
    fn drop(&mut self) {
        if !self.text.iter().all(u8::is_ascii_whitespace) {
            emit(flags_for(self.level), c_line(&self.text));
        }
    }
}

impl<'a> MakeWriter<'a> for OpenVpnLog {
    type Writer = EventLine;

    fn make_writer(&'a self) -> EventLine {
        EventLine { level: Level::INFO, text: Vec::new() }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> EventLine {
        EventLine { level: *meta.level(), text: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_single_and_nul_free() {
        let line = c_line(b"auth refused user=\"a\\0b\"\nmore\0text\r\n");
        assert_eq!(line.to_str().unwrap(), "auth refused user=\"a\\0b\" more text");
        assert_eq!(c_line(b"caf\xc3\xa9 \xff").to_str().unwrap(), "caf\u{e9} \u{fffd}");
    }

    #[test]
    fn levels_map_to_plugin_log_flags() {
        assert_eq!(flags_for(Level::ERROR), PLOG_ERR);
        assert_eq!(flags_for(Level::WARN), PLOG_WARN);
        assert_eq!(flags_for(Level::INFO), PLOG_NOTE);
        assert_eq!(flags_for(Level::DEBUG), PLOG_DEBUG);
    }
}
