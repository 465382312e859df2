//! The verdict scale shared by providers, indicators and alerts (spec `providers.md` §1.3).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A verdict. The derived order makes the worst verdict the maximum:
/// `Pending < Benign < Suspicious < Malicious`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Malice {
    /// No verdict (not found, not analysed, identity providers, no results).
    #[default]
    Pending,
    Benign,
    Suspicious,
    Malicious,
}

impl Malice {
    pub const ALL: [Malice; 4] = [Malice::Pending, Malice::Benign, Malice::Suspicious, Malice::Malicious];

    pub fn as_str(&self) -> &'static str {
        match self {
            Malice::Pending => "Pending",
            Malice::Benign => "Benign",
            Malice::Suspicious => "Suspicious",
            Malice::Malicious => "Malicious",
        }
    }

    /// The worst of a set of verdicts; `Pending` when there are none.
    pub fn worst<I: IntoIterator<Item = Malice>>(verdicts: I) -> Malice {
        verdicts.into_iter().max().unwrap_or_default()
    }
}

impl fmt::Display for Malice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an unknown verdict name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown malice value: {0:?}")]
pub struct UnknownMalice(pub String);

impl FromStr for Malice {
    type Err = UnknownMalice;

    /// Accepts the canonical spellings case-insensitively (`"malicious"` → `Malicious`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        Malice::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| UnknownMalice(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_makes_worst_the_max() {
        assert!(Malice::Pending < Malice::Benign);
        assert!(Malice::Benign < Malice::Suspicious);
        assert!(Malice::Suspicious < Malice::Malicious);
        assert_eq!(
            Malice::worst([Malice::Benign, Malice::Malicious, Malice::Pending]),
            Malice::Malicious
        );
        assert_eq!(Malice::worst([]), Malice::Pending);
    }

    #[test]
    fn serde_and_parse_round_trip() {
        for m in Malice::ALL {
            let s = serde_json::to_string(&m).unwrap();
            assert_eq!(s, format!("\"{}\"", m.as_str()));
            assert_eq!(serde_json::from_str::<Malice>(&s).unwrap(), m);
            assert_eq!(m.as_str().parse::<Malice>().unwrap(), m);
            assert_eq!(m.as_str().to_lowercase().parse::<Malice>().unwrap(), m);
        }
        assert!("evil".parse::<Malice>().is_err());
    }
}
