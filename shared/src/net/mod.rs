//! Network safety: the special-address table, the outbound URL guard, and the bounded HTTP
//! server for the ports we listen on ourselves.

pub mod server;
pub mod special;
pub mod ssrf;
