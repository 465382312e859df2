//! The source parsers: every golden fixture parses to its expected alerts
//! (`BLESS=1 cargo test -p calseta --test sources` rewrites the expected files), and no input
//! makes a parser panic.

mod sources_golden;
mod sources_no_panic;
