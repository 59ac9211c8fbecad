//! The in-process OpenVPN plugin front end of ovpn-mfa (work in progress).
