//! google-authenticator-libpam files and their names.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ovpn_mfa::import::google_authenticator::{parse, user_from_file_name};

fuzz_target!(|data: &[u8]| {
    let _ = parse(data);
    if let Ok(name) = std::str::from_utf8(data) {
        let _ = user_from_file_name(name);
    }
});
