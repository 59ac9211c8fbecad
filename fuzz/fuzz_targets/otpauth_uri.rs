//! otpauth:// URIs; one that parses must survive being built and parsed again.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ovpn_mfa::otp::{otpauth_uri, parse_otpauth_uri};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(parsed) = parse_otpauth_uri(text) {
        let issuer = parsed.issuer.clone().unwrap_or_default();
        let again = otpauth_uri(&issuer, &parsed.account, &parsed.key, &parsed.params);
        let reparsed = parse_otpauth_uri(&again).expect("a built URI parses");
        assert_eq!(reparsed.key, parsed.key);
        assert_eq!(reparsed.params, parsed.params);
    }
});
