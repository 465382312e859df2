//! Dispatch: agent matching, signing and delivery of the agent payload.

pub mod signing;
