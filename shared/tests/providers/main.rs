//! Provider clients against local HTTP servers that answer like the real APIs, and against the
//! demo simulator.

mod common;

mod abuseipdb;
mod entra;
mod greynoise;
mod okta;
mod simulator;
mod virustotal;
