//! ovpn-mfa: TOTP multi-factor authentication for OpenVPN servers.
//!
//! The tree follows the architecture:
//! - [`otp`]: HOTP/TOTP and secrets, pure.
//! - [`auth`]: the login decision shared by every front end; time and store come in.
//! - [`store`]: the SQLite store (users, replay and lockout state, audit log).
//! - [`openvpn`]: the boundary with OpenVPN (the `verify` script, config snippets).
//! - [`setup`]: server setup (PKI, OpenVPN config, NAT), profiles, adopting a server.
//! - [`import`]: bringing users over from other OTP systems (google-authenticator-libpam).
//! - [`doctor`]: checks of the server around ovpn-mfa, each with its fix.
//! - [`cli`]: the admin commands; `main.rs` only parses and dispatches.

pub mod auth;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod import;
pub mod openvpn;
pub mod otp;
pub mod qr;
pub mod secret;
pub mod setup;
pub mod store;
pub mod username;

/// Seconds since the Unix epoch. The only place the core's callers read the clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
