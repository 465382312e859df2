//! Short-lived per-instance copies of what every ingest request reads: the API key row of a
//! prefix, whether a client address is over its failed-authentication limit, and a source's
//! settings. Without them each request paid one more round trip before its transaction.
//!
//! Bound on staleness: an entry is trusted for [`AUTH_CACHE_TTL`] after it was read. A key
//! revoked, expired early or re-scoped, or a source reconfigured, through another instance or
//! directly in the database, is seen here at most that long after the change. Changes made
//! through this instance's API clear the caches at once. Wrong keys are never cached (every
//! failed attempt still goes to Postgres and is counted there).

use std::{
    collections::HashMap,
    hash::Hash,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::{db::sources::SourceSettings, sources::SourceName};

/// How long a cached key row, address state or source setting is trusted.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(2);

/// Entries kept per cache; past it stale entries are dropped, then everything (the cost is
/// one more lookup per entry, never a wrong answer).
const MAX_ENTRIES: usize = 10_000;

/// A map whose entries expire `ttl` after insertion.
pub struct TtlCache<K, V> {
    ttl: Duration,
    map: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The value, if it was stored less than `ttl` ago.
    pub fn get(&self, k: &K) -> Option<V> {
        if self.ttl.is_zero() {
            return None;
        }
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(k)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    pub fn put(&self, k: K, v: V) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            map.retain(|_, (at, _)| at.elapsed() < ttl);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(k, (Instant::now(), v));
    }

    pub fn clear(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// The parts of an API key row authentication needs.
#[derive(Debug, Clone)]
pub struct CachedKey {
    pub id: i64,
    pub key_hash: Vec<u8>,
    pub scopes: Vec<String>,
    pub allowed_sources: Option<Vec<String>>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The caches of one process (shared by clones of its `AppState`).
pub struct AuthCache {
    /// Key rows by lookup prefix; only keys that were just presented correctly.
    pub keys: TtlCache<String, CachedKey>,
    /// Client address → over its failed-authentication limit (as last read or counted).
    pub addresses: TtlCache<IpAddr, bool>,
    pub sources: TtlCache<SourceName, SourceSettings>,
}

impl AuthCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            keys: TtlCache::new(ttl),
            addresses: TtlCache::new(ttl),
            sources: TtlCache::new(ttl),
        }
    }

    /// After a key or source change through this instance: forget everything.
    pub fn clear(&self) {
        self.keys.clear();
        self.addresses.clear();
        self.sources.clear();
    }
}

impl Default for AuthCache {
    fn default() -> Self {
        Self::new(AUTH_CACHE_TTL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_zero_ttl_caches_nothing() {
        let c = TtlCache::new(Duration::from_millis(30));
        c.put("a", 1);
        assert_eq!(c.get(&"a"), Some(1));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.get(&"a"), None);
        let off = TtlCache::new(Duration::ZERO);
        off.put("a", 1);
        assert_eq!(off.get(&"a"), None);
    }

    #[test]
    fn a_full_cache_stays_bounded() {
        let c = TtlCache::new(Duration::from_secs(60));
        for i in 0..MAX_ENTRIES + 5 {
            c.put(i, i);
        }
        assert!(c.map.lock().unwrap().len() <= MAX_ENTRIES);
        assert_eq!(c.get(&(MAX_ENTRIES + 4)), Some(MAX_ENTRIES + 4));
    }
}
