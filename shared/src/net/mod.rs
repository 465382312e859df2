//! Network safety: the special-address table, the outbound URL guard, and the bounded HTTP
//! server for the ports we listen on ourselves.

pub mod server;
pub mod special;
pub mod ssrf;
pub mod tls;

/// The `User-Agent` of every outbound request (providers, agent webhooks).
pub(crate) const USER_AGENT: &str = concat!("calseta/", env!("CARGO_PKG_VERSION"));
