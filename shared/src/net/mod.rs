//! Outbound network safety: the special-address table and the outbound URL guard.

pub mod special;
pub mod ssrf;
