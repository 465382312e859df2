//! The quota governor (providers spec §1.5): per-provider budgets shared by every instance,
//! kept in `provider_quotas` and taken atomically by `calseta_take_provider_token`.
//!
//! - A call that would exceed the budget is not sent; the caller learns how long to wait.
//! - A 429 pauses the provider for every instance until its `Retry-After`.
//! - Five consecutive 5xx/timeouts open the circuit for 60 s (calls fail fast meanwhile).
//! - A 401/403 marks the provider misconfigured (shown by `/health`); no call is made for the
//!   cool-down, after which one call probes whether the credentials were fixed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio_postgres::types::Type;

use crate::db::stmt::{self, Cached};
use crate::db::DbError;

/// Consecutive 5xx/timeouts that open the circuit, and for how long.
pub(crate) const CIRCUIT_THRESHOLD: i32 = 5;
pub(crate) const CIRCUIT_OPEN: Duration = Duration::from_secs(60);
/// How long a 401/403 keeps a provider switched off before one probing call.
pub(crate) const MISCONFIGURED_COOLDOWN: Duration = Duration::from_secs(300);
/// How long an unlimited provider's pause/misconfigured state is reused in-process.
const SNAPSHOT_TTL: Duration = Duration::from_millis(500);

/// A provider's request budget. `None` = no such limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Budget {
    pub per_minute: Option<u32>,
    pub per_day: Option<u32>,
}

impl Budget {
    pub const UNLIMITED: Budget = Budget {
        per_minute: None,
        per_day: None,
    };

    /// The free/default plan of each provider (spec §8). Paid plans set their own with
    /// `CALSETA_BUDGET_<PROVIDER>`.
    pub fn default_for(provider: &str) -> Budget {
        match provider {
            "virustotal" => Budget {
                per_minute: Some(4),
                per_day: Some(500),
            },
            "abuseipdb" => Budget {
                per_minute: None,
                per_day: Some(1_000),
            },
            "greynoise" => Budget {
                per_minute: None,
                per_day: Some(50),
            },
            "okta" => Budget {
                per_minute: Some(600),
                per_day: None,
            },
            _ => Budget::UNLIMITED,
        }
    }

    /// Parses `"4/min,500/day"`, `"1000/day"`, `"600/min"`, or `"unlimited"` / `"none"`.
    pub fn parse(s: &str) -> Result<Budget, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("unlimited") || s.eq_ignore_ascii_case("none") || s.is_empty() {
            return Ok(Budget::UNLIMITED);
        }
        let mut b = Budget::UNLIMITED;
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (n, unit) = part
                .split_once('/')
                .ok_or_else(|| format!("{part:?}: expected <n>/min or <n>/day"))?;
            let n: u32 = n
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: {n:?} is not a whole number"))?;
            if n == 0 {
                return Err(format!("{part:?}: a budget must be at least 1"));
            }
            match unit.trim().to_ascii_lowercase().as_str() {
                "min" | "minute" | "m" => b.per_minute = Some(n),
                "day" | "d" => b.per_day = Some(n),
                other => return Err(format!("{part:?}: unknown unit {other:?} (min or day)")),
            }
        }
        Ok(b)
    }

    pub fn is_unlimited(&self) -> bool {
        self.per_minute.is_none() && self.per_day.is_none()
    }
}

/// The governor's answer for one intended call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A token was taken: make the call.
    Granted,
    /// No token now; one is expected after this wait.
    Wait(Duration),
    /// A recent 401/403 stands.
    Misconfigured,
    /// Repeated 5xx/timeouts opened the circuit.
    CircuitOpen,
}

#[derive(Debug, Clone, Copy)]
struct Snapshot {
    at: Instant,
    pause: Option<Duration>,
    misconfigured: bool,
    circuit_open: bool,
    troubled: bool,
}

/// Budgets per provider plus a short in-process view of unlimited providers' state.
#[derive(Debug, Default)]
pub(crate) struct Governor {
    budgets: HashMap<String, Budget>,
    snapshots: Mutex<HashMap<String, Snapshot>>,
}

impl Governor {
    pub fn new(budgets: HashMap<String, Budget>) -> Self {
        Governor {
            budgets,
            snapshots: Mutex::new(HashMap::new()),
        }
    }

    pub fn budget(&self, provider: &str) -> Budget {
        self.budgets.get(provider).copied().unwrap_or(Budget::UNLIMITED)
    }

    fn snapshots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Snapshot>> {
        self.snapshots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn forget(&self, provider: &str) {
        self.snapshots().remove(provider);
    }

    /// Asks for one call. Limited providers always go to the database (the budget is shared);
    /// unlimited ones only read their pause state, reused for half a second (no connection is
    /// taken from the pool while it is fresh).
    pub async fn admit(&self, pool: &Pool, provider: &str) -> Result<Admission, DbError> {
        let budget = self.budget(provider);
        if budget.is_unlimited() {
            let cached = self.snapshots().get(provider).copied();
            let snap = match cached {
                Some(s) if s.at.elapsed() < SNAPSHOT_TTL => s,
                _ => {
                    let client = pool.get().await?;
                    let row = stmt::query_opt(
                        &*client,
                        "SELECT EXTRACT(EPOCH FROM retry_after - clock_timestamp())::float8,
                                misconfigured_at > clock_timestamp() - make_interval(secs => $2),
                                circuit_open_until > clock_timestamp(),
                                consecutive_failures > 0 OR misconfigured_at IS NOT NULL
                         FROM provider_quotas WHERE provider = $1",
                        &[
                            (&provider, Type::TEXT),
                            (&MISCONFIGURED_COOLDOWN.as_secs_f64(), Type::FLOAT8),
                        ],
                    )
                    .await?;
                    let s = match row {
                        Some(r) => Snapshot {
                            at: Instant::now(),
                            pause: r
                                .get::<_, Option<f64>>(0)
                                .filter(|w| *w > 0.0)
                                .map(Duration::from_secs_f64),
                            misconfigured: r.get::<_, Option<bool>>(1).unwrap_or(false),
                            circuit_open: r.get::<_, Option<bool>>(2).unwrap_or(false),
                            troubled: r.get::<_, Option<bool>>(3).unwrap_or(false),
                        },
                        None => Snapshot {
                            at: Instant::now(),
                            pause: None,
                            misconfigured: false,
                            circuit_open: false,
                            troubled: false,
                        },
                    };
                    self.snapshots().insert(provider.to_string(), s);
                    s
                }
            };
            return Ok(if snap.misconfigured {
                Admission::Misconfigured
            } else if snap.circuit_open {
                Admission::CircuitOpen
            } else {
                match snap.pause.and_then(|p| p.checked_sub(snap.at.elapsed())) {
                    Some(w) if !w.is_zero() => Admission::Wait(w),
                    _ => Admission::Granted,
                }
            });
        }
        let per_minute = budget.per_minute.map(|n| n as i32);
        let per_day = budget.per_day.map(|n| n as i32);
        let client = pool.get().await?;
        let row = stmt::query_opt(
            &*client,
            "SELECT wait_seconds, misconfigured, circuit_open FROM calseta_take_provider_token($1, $2, $3, $4)",
            &[
                (&provider, Type::TEXT),
                (&per_minute, Type::INT4),
                (&per_day, Type::INT4),
                (&MISCONFIGURED_COOLDOWN.as_secs_f64(), Type::FLOAT8),
            ],
        )
        .await?;
        let Some(r) = row else {
            return Ok(Admission::Granted);
        };
        let wait: f64 = r.try_get("wait_seconds")?;
        let misconfigured: bool = r.try_get("misconfigured")?;
        let circuit: bool = r.try_get("circuit_open")?;
        Ok(if misconfigured {
            Admission::Misconfigured
        } else if circuit {
            Admission::CircuitOpen
        } else if wait > 0.0 {
            // Round up so the retry does not land a hair before the slot frees.
            Admission::Wait(Duration::from_secs_f64(wait.ceil().max(1.0)))
        } else {
            Admission::Granted
        })
    }

    /// A 429 (or a provider's own "stop until" rule): pause the provider for everyone.
    pub async fn rate_limited(&self, client: &impl Cached, provider: &str, wait: Duration) -> Result<(), DbError> {
        self.forget(provider);
        stmt::execute(
            client,
            "INSERT INTO provider_quotas (provider, retry_after, last_error, updated_at)
             VALUES ($1, clock_timestamp() + make_interval(secs => $2), 'rate_limited', now())
             ON CONFLICT (provider) DO UPDATE SET
                retry_after = GREATEST(COALESCE(provider_quotas.retry_after, EXCLUDED.retry_after), EXCLUDED.retry_after),
                last_error = 'rate_limited', updated_at = now()",
            &[(&provider, Type::TEXT), (&wait.as_secs_f64(), Type::FLOAT8)],
        )
        .await?;
        Ok(())
    }

    /// A 401/403: the credentials are wrong. Recorded once; `/health` shows it.
    pub async fn auth_failed(&self, client: &impl Cached, provider: &str, message: &str) -> Result<(), DbError> {
        self.forget(provider);
        stmt::execute(
            client,
            "INSERT INTO provider_quotas (provider, misconfigured_at, last_error, updated_at)
             VALUES ($1, clock_timestamp(), $2, now())
             ON CONFLICT (provider) DO UPDATE SET misconfigured_at = clock_timestamp(), last_error = $2, updated_at = now()",
            &[(&provider, Type::TEXT), (&message, Type::TEXT)],
        )
        .await?;
        Ok(())
    }

    /// A 5xx or timeout that survived its retries: counts toward opening the circuit.
    pub async fn transient_failure(&self, client: &impl Cached, provider: &str, message: &str) -> Result<(), DbError> {
        self.forget(provider);
        stmt::execute(
            client,
            "INSERT INTO provider_quotas (provider, consecutive_failures, last_error, updated_at)
             VALUES ($1, 1, $2, now())
             ON CONFLICT (provider) DO UPDATE SET
                consecutive_failures = CASE WHEN provider_quotas.consecutive_failures + 1 >= $3 THEN 0
                                            ELSE provider_quotas.consecutive_failures + 1 END,
                circuit_open_until = CASE WHEN provider_quotas.consecutive_failures + 1 >= $3
                                          THEN clock_timestamp() + make_interval(secs => $4)
                                          ELSE provider_quotas.circuit_open_until END,
                last_error = $2, updated_at = now()",
            &[
                (&provider, Type::TEXT),
                (&message, Type::TEXT),
                (&CIRCUIT_THRESHOLD, Type::INT4),
                (&CIRCUIT_OPEN.as_secs_f64(), Type::FLOAT8),
            ],
        )
        .await?;
        Ok(())
    }

    /// A successful answer clears failure counts and the misconfigured mark. Skips the write
    /// when this instance last saw the provider healthy.
    pub async fn succeeded(&self, pool: &Pool, provider: &str) -> Result<(), DbError> {
        let clean = self
            .snapshots()
            .get(provider)
            .is_some_and(|s| !s.troubled && s.at.elapsed() < Duration::from_secs(30));
        if clean {
            return Ok(());
        }
        let client = pool.get().await?;
        stmt::execute(
            &*client,
            "UPDATE provider_quotas SET consecutive_failures = 0, misconfigured_at = NULL, last_error = NULL,
                                        updated_at = now()
             WHERE provider = $1 AND (consecutive_failures <> 0 OR misconfigured_at IS NOT NULL)",
            &[(&provider, Type::TEXT)],
        )
        .await?;
        self.snapshots().insert(
            provider.to_string(),
            Snapshot {
                at: Instant::now(),
                pause: None,
                misconfigured: false,
                circuit_open: false,
                troubled: false,
            },
        );
        Ok(())
    }
}

/// Providers currently marked misconfigured (a 401/403 within the cool-down), for `/health`.
pub async fn misconfigured(client: &impl Cached) -> Result<Vec<String>, DbError> {
    let rows = stmt::query(
        client,
        "SELECT provider FROM provider_quotas
         WHERE misconfigured_at > clock_timestamp() - make_interval(secs => $1) ORDER BY provider",
        &[(&MISCONFIGURED_COOLDOWN.as_secs_f64(), Type::FLOAT8)],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get("provider"))
        .collect::<Result<_, tokio_postgres::Error>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_budgets() {
        assert_eq!(
            Budget::parse("4/min,500/day").unwrap(),
            Budget {
                per_minute: Some(4),
                per_day: Some(500)
            }
        );
        assert_eq!(
            Budget::parse(" 1000/day ").unwrap(),
            Budget {
                per_minute: None,
                per_day: Some(1000)
            }
        );
        assert_eq!(Budget::parse("unlimited").unwrap(), Budget::UNLIMITED);
        assert!(Budget::parse("4/hour").is_err());
        assert!(Budget::parse("0/min").is_err());
        assert!(Budget::parse("many/min").is_err());
        assert!(Budget::default_for("virustotal").per_minute == Some(4));
        assert!(Budget::default_for("entra").is_unlimited());
    }
}
