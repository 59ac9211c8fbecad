//! Base32 secrets as people paste them; a secret that parses must round-trip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ovpn_mfa::otp::OtpKey;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(key) = OtpKey::from_base32(text) {
        assert_eq!(OtpKey::from_base32(&key.to_base32()).unwrap(), key);
        let params = ovpn_mfa::otp::TotpParams::default();
        let code = ovpn_mfa::otp::totp(key.as_bytes(), 1_700_000_000, &params);
        assert_eq!(code.len(), 6);
    }
});
