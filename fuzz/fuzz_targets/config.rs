//! The configuration file.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(config) = ovpn_mfa::config::Config::parse(text) {
        assert!(config.validate().is_ok());
    }
});
