//! The password field in every form: code alone, password+code, SCRV1.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for has_password in [false, true] {
        for digits in [6, 8] {
            if let Ok(p) = ovpn_mfa::auth::input::split(text, has_password, digits) {
                assert!(!p.code.is_empty());
                assert_eq!(p.password.is_some(), has_password);
            }
        }
    }
    let _ = ovpn_mfa::auth::SessionState::from_env(Some(text));
});
