//! OpenVPN boundary.
