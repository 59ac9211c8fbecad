//! The boundary with OpenVPN: what a login looks like to us, the `verify` script front end,
//! its control files, and the configuration lines for servers and clients.

pub mod control;
pub mod login;
pub mod snippets;
pub mod verify;
