//! Outbound network safety.

pub mod cidr;
pub mod ssrf;

/// The `User-Agent` of every outbound request (providers, agent deliveries).
pub const USER_AGENT: &str = concat!("calseta/", env!("CARGO_PKG_VERSION"));
