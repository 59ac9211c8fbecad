//! The `via-file` credentials file, then the login built from it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (user, password) = ovpn_mfa::openvpn::verify::split_credentials(data);
    let _ = ovpn_mfa::username::Username::parse(&user);
    let _ = ovpn_mfa::username::printable(&user);
    let _ = ovpn_mfa::auth::input::split(password.expose(), true, 6);
});
