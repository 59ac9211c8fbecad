//! ovpn-mfa as an OpenVPN plugin (API v3): the login decision runs inside OpenVPN instead of
//! in a script process per login.
//!
//! ```text
//! plugin /usr/local/lib/ovpn-mfa/libovpn_mfa_plugin.so "/etc/ovpn-mfa-dir"
//! ```
//!
//! The argument is the directory `--dir` would name (config.toml and the store inside); with
//! none, the system paths are used. The plugin registers for `AUTH_USER_PASS_VERIFY` only.
//!
//! - [`ffi`]: the C structs and constants, written from `openvpn-plugin.h`.
//! - [`verifier`]: the decision for one call, the same as the `verify` script's.
//! - [`pool`]: worker threads for deferred logins, and the deadline that refuses late ones.
//! - [`log`]: the library's log events, written through OpenVPN's `plugin_log`.
//!
//! No panic crosses into OpenVPN: every entry point catches it, logs it and refuses.
//! See docs/plugin.md for the setup, privilege drop, signals and the tests.

pub mod ffi;
pub mod log;
pub mod pool;
pub mod verifier;

pub use verifier::decide_on;

use ffi::{FuncArgs, FuncReturn, OpenArgs, OpenReturn, StringArray};
use std::ffi::{c_int, c_void, CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Instant;
use verifier::Verifier;

/// The plugin interface version this plugin needs: OpenVPN 2.3 and later.
#[no_mangle]
pub extern "C" fn openvpn_plugin_min_version_required_v1() -> c_int {
    ffi::PLUGIN_INTERFACE_VERSION
}

/// Asks to be opened after OpenVPN has become a daemon (our threads and store connections
/// would not survive its fork) and before it drops privileges (so the store can be opened
/// whoever owns it).
#[no_mangle]
pub extern "C" fn openvpn_plugin_select_initialization_point_v1() -> c_int {
    ffi::INIT_POST_DAEMON
}

/// Loads the configuration, opens the store connections and starts the workers.
///
/// # Safety
/// OpenVPN's contract: `args` and `ret` are valid for the call, `argv` and `envp` are
/// NULL-terminated string arrays, `callbacks` is null or valid for the process lifetime.
#[no_mangle]
pub unsafe extern "C" fn openvpn_plugin_open_v3(
    version: c_int,
    args: *const OpenArgs,
    ret: *mut OpenReturn,
) -> c_int {
    entry_point("open", || {
        // SAFETY: OpenVPN's contract, above; null is checked.
        let (Some(args), Some(ret)) = (unsafe { args.as_ref() }, unsafe { ret.as_mut() }) else {
            return ffi::FUNC_ERROR;
        };
        // SAFETY: `callbacks` is null or valid; `plugin_log` is its first member in every
        // struct version.
        let plugin_log = unsafe { args.callbacks.as_ref() }.and_then(|c| c.plugin_log);
        log::set_plugin_log(plugin_log);
        log::init();

        if version < 1 || args.type_mask & ffi::mask(ffi::AUTH_USER_PASS_VERIFY) == 0 {
            tracing::error!("this OpenVPN offers no AUTH_USER_PASS_VERIFY plugin call");
            return ffi::FUNC_ERROR;
        }
        // SAFETY: OpenVPN's contract for argv.
        let argv = unsafe { StringArray::new(args.argv) };
        let dir = plugin_dir(argv);
        match Verifier::open(dir.as_deref()) {
            Ok(verifier) => {
                ret.type_mask = ffi::mask(ffi::AUTH_USER_PASS_VERIFY);
                ret.handle = Box::into_raw(Box::new(verifier)).cast::<c_void>();
                ffi::FUNC_SUCCESS
            }
            Err(e) => {
                tracing::error!("cannot start: {e}");
                ffi::FUNC_ERROR
            }
        }
    })
}

/// One login or renegotiation: `FUNC_SUCCESS` accepts, `FUNC_ERROR` refuses, and
/// `FUNC_DEFERRED` means a worker writes the answer into `auth_control_file`.
///
/// # Safety
/// OpenVPN's contract: `args` is valid for the call, its `handle` is one `open_v3` returned
/// and `close_v1` has not been called for, `envp` is a NULL-terminated string array.
#[no_mangle]
pub unsafe extern "C" fn openvpn_plugin_func_v3(
    _version: c_int,
    args: *const FuncArgs,
    _ret: *mut FuncReturn,
) -> c_int {
    let called_at = Instant::now();
    entry_point("login", || {
        // SAFETY: OpenVPN's contract, above; null is checked.
        let Some(args) = (unsafe { args.as_ref() }) else { return ffi::FUNC_ERROR };
        // SAFETY: the handle is a live Verifier from open_v3 (OpenVPN's contract).
        let Some(verifier) = (unsafe { args.handle.cast::<Verifier>().as_ref() }) else {
            return ffi::FUNC_ERROR;
        };
        if args.plugin_type != ffi::AUTH_USER_PASS_VERIFY {
            // Never registered for; refusing is the safe answer for a call we do not know.
            tracing::warn!("unexpected plugin call type {}", args.plugin_type);
            return ffi::FUNC_ERROR;
        }
        // SAFETY: OpenVPN's contract for envp.
        let env = unsafe { StringArray::new(args.envp) };
        verifier.verify(env, called_at)
    })
}

/// Stops the workers (queued logins are refused), joins every thread and closes the store.
/// OpenVPN calls it at exit and on SIGHUP (before opening the plugin again); SIGUSR1 keeps
/// the plugin open.
///
/// # Safety
/// `handle` is null or one `open_v3` returned, not yet closed.
#[no_mangle]
pub unsafe extern "C" fn openvpn_plugin_close_v1(handle: *mut c_void) {
    entry_point("close", || {
        if !handle.is_null() {
            // SAFETY: made by Box::into_raw in open_v3 and closed only once.
            let verifier = unsafe { Box::from_raw(handle.cast::<Verifier>()) };
            verifier.close();
        }
        ffi::FUNC_SUCCESS
    });
}

/// The plugin's arguments after the module path, as a directory. OpenVPN splits a single
/// quoted argument at spaces, so the parts are joined again with one space.
fn plugin_dir(argv: StringArray<'_>) -> Option<PathBuf> {
    let parts: Vec<&CStr> = argv.iter().skip(1).collect();
    if parts.is_empty() {
        return None;
    }
    let joined = parts.iter().map(|p| p.to_bytes()).collect::<Vec<_>>().join(&b' ');
    Some(PathBuf::from(OsStr::from_bytes(&joined)))
}

/// Runs an entry point as OpenVPN's thread (see [`log`]), turning a panic into a logged
/// `FUNC_ERROR`: a login is refused, never accepted, when something of ours breaks. Even a
/// panic while logging that stays on this side.
fn entry_point(during: &str, body: impl FnOnce() -> c_int) -> c_int {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let _call = log::OpenVpnCall::enter();
        body()
    }));
    result.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("unknown panic")
            .to_owned();
        let _ = catch_unwind(AssertUnwindSafe(|| {
            let _call = log::OpenVpnCall::enter();
            tracing::error!("internal error during {during}, refusing: {what}");
        }));
        ffi::FUNC_ERROR
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_of(args: &[&CStr]) -> Option<PathBuf> {
        let mut ptrs: Vec<*const std::ffi::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        // SAFETY: a null-terminated array of live C strings.
        plugin_dir(unsafe { StringArray::new(ptrs.as_ptr()) })
    }

    #[test]
    fn the_directory_is_the_argument_after_the_module() {
        assert_eq!(dir_of(&[c"/lib/p.so"]), None);
        assert_eq!(dir_of(&[c"/lib/p.so", c"/srv/mfa"]), Some("/srv/mfa".into()));
        assert_eq!(dir_of(&[c"/lib/p.so", c"/srv/my", c"mfa"]), Some("/srv/my mfa".into()));
    }

    #[test]
    fn a_panic_becomes_a_logged_refusal() {
        assert_eq!(entry_point("test", || panic!("boom")), ffi::FUNC_ERROR);
        assert_eq!(entry_point("test", || ffi::FUNC_DEFERRED), ffi::FUNC_DEFERRED);
    }

    #[test]
    fn null_arguments_are_refused_not_followed() {
        // SAFETY: null pointers are what is being tested.
        unsafe {
            let mut ret = OpenReturn {
                type_mask: 0,
                handle: std::ptr::null_mut(),
                return_list: std::ptr::null_mut(),
            };
            assert_eq!(openvpn_plugin_open_v3(5, std::ptr::null(), &mut ret), ffi::FUNC_ERROR);
            let args = FuncArgs {
                plugin_type: ffi::AUTH_USER_PASS_VERIFY,
                argv: std::ptr::null(),
                envp: std::ptr::null(),
                handle: std::ptr::null_mut(),
                per_client_context: std::ptr::null_mut(),
                current_cert_depth: -1,
                current_cert: std::ptr::null_mut(),
            };
            let mut out = FuncReturn { return_list: std::ptr::null_mut() };
            assert_eq!(openvpn_plugin_func_v3(5, &args, &mut out), ffi::FUNC_ERROR);
            assert_eq!(openvpn_plugin_func_v3(5, std::ptr::null(), &mut out), ffi::FUNC_ERROR);
            openvpn_plugin_close_v1(std::ptr::null_mut());
        }
    }
}
