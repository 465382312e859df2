//! Enrichment: provider clients and the rules around them (spec `providers.md`).

pub mod cache;
pub mod engine;
pub mod geo;
pub mod governor;
pub mod never_send;
pub mod provider;
pub mod providers;
pub mod registry;
#[cfg(feature = "local")]
pub mod simulator;

use crate::domain::indicator::IndicatorType;

/// Whether ingest should queue this indicator for enrichment: no built-in provider takes
/// `email`, and values the never-send policy catches never leave (providers spec §1.1). Such
/// indicators are still stored and linked, with their link marked `skipped`.
pub(crate) fn wants_enrichment(policy: &never_send::NeverSendPolicy, kind: IndicatorType, value: &str) -> bool {
    kind != IndicatorType::Email && policy.check(kind, value).is_none()
}
