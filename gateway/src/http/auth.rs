//! API keys, roles and per-key throttling.
//!
//! A request names its key in `Authorization: Bearer <key>` or `X-API-Key: <key>`. A trader key
//! may touch only its own accounts; an operator key may touch every account and the admin
//! endpoints. Each key has a token bucket: `burst` requests at once, refilled at `rate_per_second`;
//! a request that finds it empty gets 429 with the whole seconds until the next token in
//! `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use engine::AccountId;

/// What a key may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Wallet and order queries and transfers for these accounts only.
    Trader { accounts: Vec<AccountId> },
    /// Everything: deposits, withdrawals, any account, halt and resume.
    Operator,
}

/// A token bucket's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Tokens added per second.
    pub rate_per_second: u32,
    /// Bucket size: requests allowed at once after a quiet spell.
    pub burst: u32,
}

/// One API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    /// The secret the client sends.
    pub key: String,
    /// A name for logs and metrics; never the key itself.
    pub name: String,
    pub role: Role,
    pub throttle: ThrottleConfig,
}

impl ApiKey {
    /// Whether this key may act on `account`.
    pub fn owns(&self, account: u32) -> bool {
        match &self.role {
            Role::Operator => true,
            Role::Trader { accounts } => accounts.contains(&AccountId(account)),
        }
    }

    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }
}

/// Refuses configurations that would make keys ambiguous or useless.
pub(super) fn check_keys(keys: &[ApiKey]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for key in keys {
        if key.key.is_empty() {
            return Err(format!("API key {:?} is empty", key.name));
        }
        if !seen.insert(key.key.as_str()) {
            return Err(format!("API key {:?} is configured twice", key.name));
        }
        if key.throttle.rate_per_second == 0 || key.throttle.burst == 0 {
            return Err(format!(
                "API key {:?}: throttle rate and burst must be positive",
                key.name
            ));
        }
    }
    Ok(())
}

/// A token bucket counted in nanoseconds of refill, so it needs no floats: a token costs
/// `1e9 / rate` nanoseconds and the bucket holds at most `burst` of them.
#[derive(Debug)]
struct Bucket {
    /// Nanoseconds of credit at `updated`.
    credit_ns: u128,
    updated: Instant,
}

/// The keys and their buckets.
#[derive(Debug)]
pub(super) struct Keys {
    keys: HashMap<String, ApiKey>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Keys {
    pub(super) fn new(keys: Vec<ApiKey>) -> Keys {
        let now = Instant::now();
        let buckets = keys
            .iter()
            .map(|key| {
                let full = token_ns(key.throttle) * u128::from(key.throttle.burst);
                (key.key.clone(), Bucket { credit_ns: full, updated: now })
            })
            .collect();
        let keys = keys.into_iter().map(|key| (key.key.clone(), key)).collect();
        Keys { keys, buckets: Mutex::new(buckets) }
    }

    pub(super) fn find(&self, key: &str) -> Option<&ApiKey> {
        self.keys.get(key)
    }

    /// Takes a token for `key`, or says how long until one is there.
    pub(super) fn take(&self, key: &ApiKey, now: Instant) -> Result<(), Duration> {
        let cost = token_ns(key.throttle);
        let full = cost * u128::from(key.throttle.burst);
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket =
            buckets.entry(key.key.clone()).or_insert(Bucket { credit_ns: full, updated: now });
        let elapsed = now.saturating_duration_since(bucket.updated).as_nanos();
        bucket.credit_ns = bucket.credit_ns.saturating_add(elapsed).min(full);
        bucket.updated = now;
        if bucket.credit_ns >= cost {
            bucket.credit_ns -= cost;
            return Ok(());
        }
        let wait_ns = u64::try_from(cost - bucket.credit_ns).unwrap_or(u64::MAX);
        Err(Duration::from_nanos(wait_ns))
    }
}

/// Nanoseconds of refill one token costs.
fn token_ns(throttle: ThrottleConfig) -> u128 {
    1_000_000_000 / u128::from(throttle.rate_per_second.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let key = ApiKey {
            key: "k".to_owned(),
            name: "k".to_owned(),
            role: Role::Operator,
            throttle: ThrottleConfig { rate_per_second: 10, burst: 3 },
        };
        let keys = Keys::new(vec![key.clone()]);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(keys.take(&key, start), Ok(()));
        }
        assert_eq!(keys.take(&key, start), Err(Duration::from_millis(100)));
        let later = start + Duration::from_millis(100);
        assert_eq!(keys.take(&key, later), Ok(()));
        assert!(keys.take(&key, later).is_err());
    }
}
