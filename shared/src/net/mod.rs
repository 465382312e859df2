//! Outbound network safety.

pub mod ssrf;
