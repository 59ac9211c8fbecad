//! The C side of OpenVPN's plugin API v3, written by hand from
//! `/usr/include/openvpn/openvpn-plugin.h` (OpenVPN 2.6, `OPENVPN_PLUGINv3_STRUCTVER` 5).
//!
//! Only what this plugin reads or writes is typed; pointers it never follows are `*const
//! c_void`. The layout tests at the bottom pin every size and offset to the values a C
//! compiler gives for the header on x86_64 and aarch64 Linux.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};

/// `OPENVPN_PLUGIN_VERSION`: the plugin interface this plugin needs (open/func v3).
pub const PLUGIN_INTERFACE_VERSION: c_int = 3;

/// `OPENVPN_PLUGIN_AUTH_USER_PASS_VERIFY`, the only call this plugin registers for.
pub const AUTH_USER_PASS_VERIFY: c_int = 5;

/// `OPENVPN_PLUGIN_MASK(x)`.
pub const fn mask(plugin_type: c_int) -> c_int {
    1 << plugin_type
}

pub const FUNC_SUCCESS: c_int = 0;
pub const FUNC_ERROR: c_int = 1;
pub const FUNC_DEFERRED: c_int = 2;

/// `OPENVPN_PLUGIN_INIT_POST_DAEMON`: opened after any `daemon` fork (threads and SQLite
/// connections do not survive a fork) and before `user`/`group` drop privileges.
pub const INIT_POST_DAEMON: c_int = 3;

/// `openvpn_plugin_log_flags_t`.
pub const PLOG_ERR: c_int = 1 << 0;
pub const PLOG_WARN: c_int = 1 << 1;
pub const PLOG_NOTE: c_int = 1 << 2;
pub const PLOG_DEBUG: c_int = 1 << 3;

/// `plugin_log_t`: printf-style and variadic. We always pass the format `"%s"` and one
/// string, so no text of ours is ever read as a format.
pub type PluginLog =
    unsafe extern "C" fn(flags: c_int, plugin_name: *const c_char, format: *const c_char, ...);

/// `struct openvpn_plugin_callbacks` (struct version 5 has all five members; older versions
/// fewer, but `plugin_log` is first in all of them).
#[repr(C)]
pub struct Callbacks {
    pub plugin_log: Option<PluginLog>,
    pub plugin_vlog: *const c_void,
    pub plugin_secure_memzero: *const c_void,
    pub plugin_base64_encode: *const c_void,
    pub plugin_base64_decode: *const c_void,
}

/// `struct openvpn_plugin_args_open_in`. Members after `callbacks` exist from struct
/// version 2 (`ssl_api`) and 3 (the version strings) on.
#[repr(C)]
pub struct OpenArgs {
    pub type_mask: c_int,
    pub argv: *const *const c_char,
    pub envp: *const *const c_char,
    pub callbacks: *const Callbacks,
    pub ssl_api: c_int,
    pub ovpn_version: *const c_char,
    pub ovpn_version_major: c_uint,
    pub ovpn_version_minor: c_uint,
    pub ovpn_version_patch: *const c_char,
}

/// `struct openvpn_plugin_args_open_return`.
#[repr(C)]
pub struct OpenReturn {
    pub type_mask: c_int,
    pub handle: *mut c_void,
    pub return_list: *mut c_void,
}

/// `struct openvpn_plugin_args_func_in`.
#[repr(C)]
pub struct FuncArgs {
    pub plugin_type: c_int,
    pub argv: *const *const c_char,
    pub envp: *const *const c_char,
    pub handle: *mut c_void,
    pub per_client_context: *mut c_void,
    pub current_cert_depth: c_int,
    pub current_cert: *mut c_void,
}

/// `struct openvpn_plugin_args_func_return`. We return nothing through it.
#[repr(C)]
pub struct FuncReturn {
    pub return_list: *mut c_void,
}

/// A NULL-terminated array of C strings, as OpenVPN passes `argv` and `envp`.
#[derive(Clone, Copy)]
pub struct StringArray<'a> {
    first: *const *const c_char,
    _lifetime: std::marker::PhantomData<&'a CStr>,
}

impl<'a> StringArray<'a> {
    /// # Safety
    /// `first` is null, or points to an array of pointers to NUL-terminated strings that ends
    /// with a null pointer, all valid for `'a`.
    pub unsafe fn new(first: *const *const c_char) -> Self {
        StringArray { first, _lifetime: std::marker::PhantomData }
    }

    pub fn iter(self) -> impl Iterator<Item = &'a CStr> {
        let mut next = self.first;
        std::iter::from_fn(move || {
            if next.is_null() {
                return None;
            }
            // SAFETY: `new`'s contract: `next` points into the array, which ends with null
            // before we step past it.
            let item = unsafe { *next };
            if item.is_null() {
                next = std::ptr::null();
                return None;
            }
            // SAFETY: as above; items are NUL-terminated strings valid for 'a.
            unsafe {
                next = next.add(1);
                Some(CStr::from_ptr(item))
            }
        })
    }

    /// The value of `name` in a `name=value` array (the first one, as `getenv` does), with
    /// bytes that are not UTF-8 replaced.
    pub fn var(self, name: &str) -> Option<String> {
        self.iter().find_map(|entry| {
            let bytes = entry.to_bytes();
            let value = bytes.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
            Some(String::from_utf8_lossy(value).into_owned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    // The numbers are what gcc reports for openvpn-plugin.h from OpenVPN 2.6.14 on x86_64
    // (offsetof/sizeof); aarch64 Linux has the same LP64 layout.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn structs_have_the_header_layout() {
        assert_eq!(size_of::<Callbacks>(), 40);
        assert_eq!(offset_of!(Callbacks, plugin_log), 0);
        assert_eq!(offset_of!(Callbacks, plugin_base64_decode), 32);

        assert_eq!(size_of::<OpenArgs>(), 64);
        assert_eq!(offset_of!(OpenArgs, type_mask), 0);
        assert_eq!(offset_of!(OpenArgs, argv), 8);
        assert_eq!(offset_of!(OpenArgs, envp), 16);
        assert_eq!(offset_of!(OpenArgs, callbacks), 24);
        assert_eq!(offset_of!(OpenArgs, ssl_api), 32);
        assert_eq!(offset_of!(OpenArgs, ovpn_version), 40);
        assert_eq!(offset_of!(OpenArgs, ovpn_version_major), 48);
        assert_eq!(offset_of!(OpenArgs, ovpn_version_minor), 52);
        assert_eq!(offset_of!(OpenArgs, ovpn_version_patch), 56);

        assert_eq!(size_of::<OpenReturn>(), 24);
        assert_eq!(offset_of!(OpenReturn, type_mask), 0);
        assert_eq!(offset_of!(OpenReturn, handle), 8);
        assert_eq!(offset_of!(OpenReturn, return_list), 16);

        assert_eq!(size_of::<FuncArgs>(), 56);
        assert_eq!(offset_of!(FuncArgs, plugin_type), 0);
        assert_eq!(offset_of!(FuncArgs, argv), 8);
        assert_eq!(offset_of!(FuncArgs, envp), 16);
        assert_eq!(offset_of!(FuncArgs, handle), 24);
        assert_eq!(offset_of!(FuncArgs, per_client_context), 32);
        assert_eq!(offset_of!(FuncArgs, current_cert_depth), 40);
        assert_eq!(offset_of!(FuncArgs, current_cert), 48);

        assert_eq!(size_of::<FuncReturn>(), 8);
        assert_eq!(size_of::<Option<PluginLog>>(), size_of::<*const c_void>());
    }

    #[test]
    fn the_auth_call_has_the_header_numbers() {
        assert_eq!(mask(AUTH_USER_PASS_VERIFY), 0x20);
        assert_eq!((FUNC_SUCCESS, FUNC_ERROR, FUNC_DEFERRED), (0, 1, 2));
        assert_eq!((PLOG_ERR, PLOG_WARN, PLOG_NOTE, PLOG_DEBUG), (1, 2, 4, 8));
    }

    #[test]
    fn variables_are_found_by_exact_name() {
        let entries = [
            c"username_x=nope".as_ptr(),
            c"username=alice".as_ptr(),
            c"password=a=b".as_ptr(),
            c"noequals".as_ptr(),
            c"username=second".as_ptr(),
            std::ptr::null(),
        ];
        // SAFETY: a null-terminated array of string literals.
        let env = unsafe { StringArray::new(entries.as_ptr()) };
        assert_eq!(env.var("username").as_deref(), Some("alice"));
        assert_eq!(env.var("password").as_deref(), Some("a=b"));
        assert_eq!(env.var("noequals"), None);
        assert_eq!(env.var("missing"), None);
        assert_eq!(env.iter().count(), 5);
        // SAFETY: null is allowed and means empty.
        assert_eq!(unsafe { StringArray::new(std::ptr::null()) }.iter().count(), 0);
    }
}
