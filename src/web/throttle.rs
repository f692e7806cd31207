//! Login throttling: too many failed logins from one client address, or against one account,
//! and further attempts are refused for a while without even checking the password.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Failures counted over this window.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failures allowed per client address and per account within the window.
pub const MAX_PER_CLIENT: usize = 10;
pub const MAX_PER_ACCOUNT: usize = 5;
/// Keys remembered at most (each with at most MAX_* instants): memory stays bounded.
const MAX_KEYS: usize = 10_000;

#[derive(Debug, Default)]
pub struct Throttle {
    failures: HashMap<String, Vec<Instant>>,
}

impl Throttle {
    /// `Some(wait)` when this client or this account must wait before trying again.
    pub fn blocked(&mut self, now: Instant, client: &str, account: &str) -> Option<Duration> {
        let c = self.wait(now, &format!("ip:{client}"), MAX_PER_CLIENT);
        let a = self.wait(
            now,
            &format!("user:{}", account.to_lowercase()),
            MAX_PER_ACCOUNT,
        );
        c.max(a)
    }

    fn wait(&mut self, now: Instant, key: &str, max: usize) -> Option<Duration> {
        let list = self.failures.get_mut(key)?;
        list.retain(|t| now.duration_since(*t) < WINDOW);
        if list.len() < max {
            return None;
        }
        let oldest = list.iter().min().copied()?;
        Some(WINDOW.saturating_sub(now.duration_since(oldest)))
    }

    pub fn failed(&mut self, now: Instant, client: &str, account: &str) {
        if self.failures.len() >= MAX_KEYS {
            self.failures
                .retain(|_, l| l.last().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        for (key, max) in [
            (format!("ip:{client}"), MAX_PER_CLIENT),
            (format!("user:{}", account.to_lowercase()), MAX_PER_ACCOUNT),
        ] {
            if self.failures.len() >= MAX_KEYS && !self.failures.contains_key(&key) {
                continue; // full of recent failures: the existing keys still block
            }
            let list = self.failures.entry(key).or_default();
            list.retain(|t| now.duration_since(*t) < WINDOW);
            if list.len() < max {
                list.push(now);
            }
        }
    }

    /// A successful login clears the account's failures (not the client's).
    pub fn succeeded(&mut self, account: &str) {
        self.failures
            .remove(&format!("user:{}", account.to_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_locked_after_five_failures_then_released() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for i in 0..MAX_PER_ACCOUNT {
            assert_eq!(t.blocked(t0, &format!("10.0.0.{i}"), "Alice@x.test"), None);
            t.failed(t0, &format!("10.0.0.{i}"), "alice@x.test");
        }
        let wait = t.blocked(t0, "10.9.9.9", "alice@X.test").unwrap();
        assert_eq!(wait, WINDOW);
        assert_eq!(t.blocked(t0, "10.9.9.9", "bob@x.test"), None);
        assert_eq!(t.blocked(t0 + WINDOW, "10.9.9.9", "alice@x.test"), None);
    }

    #[test]
    fn a_client_is_locked_after_ten_failures_on_any_accounts() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for i in 0..MAX_PER_CLIENT {
            t.failed(t0, "192.0.2.1", &format!("u{i}@x.test"));
        }
        assert!(t.blocked(t0, "192.0.2.1", "new@x.test").is_some());
        assert!(t.blocked(t0, "192.0.2.2", "new@x.test").is_none());
        t.succeeded("u1@x.test");
        assert!(t.blocked(t0, "192.0.2.1", "new@x.test").is_some());
    }
}
