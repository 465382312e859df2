//! Alert severity levels (spec `sources.md` §1).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Normalized alert severity. `Pending` means the source gave no usable level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    Pending,
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// All levels, lowest first.
    pub const ALL: [Severity; 6] = [
        Severity::Pending,
        Severity::Informational,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// Ordering rank: Pending 0 … Critical 5.
    pub fn rank(&self) -> u8 {
        match self {
            Severity::Pending => 0,
            Severity::Informational => 1,
            Severity::Low => 2,
            Severity::Medium => 3,
            Severity::High => 4,
            Severity::Critical => 5,
        }
    }

    /// The canonical name, as serialized.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Pending => "Pending",
            Severity::Informational => "Informational",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned when a string is not one of the canonical severity names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity: {0:?}")]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    /// Case-insensitive on the canonical names only (source-specific aliases such
    /// as `info` are handled by each source's own table).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        Severity::ALL
            .into_iter()
            .find(|sev| sev.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| UnknownSeverity(s.to_string()))
    }
}

/// The common label table (generic §5, Splunk §4): `critical`, `high`, `medium`, `low`,
/// `informational`/`info`, case-insensitive; anything else (including missing) is Pending.
pub(crate) fn from_label(s: Option<&str>) -> Severity {
    match s.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Some("critical") => Severity::Critical,
        Some("high") => Severity::High,
        Some("medium") => Severity::Medium,
        Some("low") => Severity::Low,
        Some("informational" | "info") => Severity::Informational,
        _ => Severity::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_and_names() {
        for (i, s) in Severity::ALL.iter().enumerate() {
            assert_eq!(s.rank() as usize, i);
            assert_eq!(s.as_str().parse::<Severity>().ok(), Some(*s));
            assert_eq!(s.as_str().to_uppercase().parse::<Severity>().ok(), Some(*s));
            let json = serde_json::to_string(s).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert!("info".parse::<Severity>().is_err());
        assert!(Severity::Critical > Severity::High);
    }
}
