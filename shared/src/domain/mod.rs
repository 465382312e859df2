//! Domain types shared by the alert source parsers.

pub mod indicator;
pub mod malice;
pub mod mitre;
pub mod payload;
pub mod severity;
pub mod timestamp;
