//! Outbound network safety.

pub mod ssrf;
pub mod tls;
