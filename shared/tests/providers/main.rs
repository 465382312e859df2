//! Provider clients against local HTTP servers that answer like the real APIs, and against the
//! demo simulator.

// Tests: a failed step fails the test; a scenario reads best as one function.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

mod common;

mod abuseipdb;
mod entra;
mod greynoise;
mod okta;
mod simulator;
mod virustotal;
