//! Dispatch: agent matching, signing and delivery of the agent payload.

pub mod deliver;
pub mod matching;
pub mod signing;

pub use deliver::{DispatchSettings, Dispatcher};
