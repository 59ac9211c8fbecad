//! The boundary with OpenVPN: the `verify` script front end, its control files, and the
//! configuration lines for servers and clients.

pub mod control;
pub mod snippets;
pub mod verify;
