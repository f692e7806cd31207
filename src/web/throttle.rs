//! Password-guessing limits for the login form, the own-password page and the API's password
//! endpoint. An attempt is reserved *before* the password is hashed (so concurrent guesses all
//! count) and given back when it succeeds. Two limits: per (client, account) — the lockout, which
//! nobody else can trigger for you — and per client across accounts, against password spraying.
//! IPv6 clients count by their /64 (one host commonly holds the whole prefix).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Attempts counted over this window.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Failed attempts allowed per client over all accounts, and per client on one account.
pub const MAX_PER_CLIENT: usize = 10;
pub const MAX_PER_ACCOUNT: usize = 5;
/// Audit-log lines about failed or refused logins per client and window: an unauthenticated
/// client cannot fill the log (past this, one line says the rest were left out).
pub const MAX_LOG_LINES: usize = 20;
/// Keys remembered at most (each with at most MAX_* instants): memory stays bounded.
const MAX_KEYS: usize = 10_000;

#[derive(Debug, Default)]
pub struct Throttle {
    attempts: HashMap<String, Vec<Instant>>,
}

/// What a reservation holds, to give back on success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    client: String,
    pair: String,
    at: Instant,
}

/// The key a client counts under: the address, or its /64 for IPv6.
pub fn client_key(client: &str) -> String {
    match client.parse::<IpAddr>() {
        Ok(IpAddr::V6(a)) if a.to_ipv4_mapped().is_none() => {
            let s = a.segments();
            format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(IpAddr::V6(a)) => format!(
            "ip:{}",
            a.to_ipv4_mapped().map_or(a.to_string(), |v| v.to_string())
        ),
        _ => format!("ip:{client}"),
    }
}

fn pair_key(client: &str, account: &str) -> String {
    format!("{}|{}", client_key(client), account.trim().to_lowercase())
}

impl Throttle {
    /// Reserves one attempt of `client` on `account`: `Err(wait)` when either limit is reached
    /// (nothing is recorded then), else the attempt counts as failed until `succeeded`.
    pub fn reserve(
        &mut self,
        now: Instant,
        client: &str,
        account: &str,
    ) -> Result<Reservation, Duration> {
        let client_k = client_key(client);
        let pair = pair_key(client, account);
        let wait =
            self.wait(now, &client_k, MAX_PER_CLIENT)
                .max(self.wait(now, &pair, MAX_PER_ACCOUNT));
        if let Some(w) = wait {
            return Err(w);
        }
        if self.attempts.len() + 2 > MAX_KEYS {
            self.attempts
                .retain(|_, l| l.last().is_some_and(|t| now.duration_since(*t) < WINDOW));
            if self.attempts.len() + 2 > MAX_KEYS {
                // Full of recent attempts from as many clients: refuse new ones for a while
                // rather than forget the old ones (which would lift their limits).
                return Err(WINDOW);
            }
        }
        for key in [&client_k, &pair] {
            self.attempts.entry(key.clone()).or_default().push(now);
        }
        Ok(Reservation {
            client: client_k,
            pair,
            at: now,
        })
    }

    /// The attempt succeeded: it does not count, and the pair's earlier failures are forgotten
    /// (the client's are not: a right password does not reset spraying).
    pub fn succeeded(&mut self, r: &Reservation) {
        self.attempts.remove(&r.pair);
        if let Some(list) = self.attempts.get_mut(&r.client) {
            if let Some(i) = list.iter().rposition(|t| *t == r.at) {
                list.remove(i);
            }
        }
    }

    /// Whether one more audit line about `client`'s failures fits in its budget: `Some(true)`
    /// for a line, `Some(false)` for the last one (saying further lines are left out), `None`
    /// for nothing.
    pub fn log_budget(&mut self, now: Instant, client: &str) -> Option<bool> {
        let key = format!("log:{}", client_key(client));
        let list = self.attempts.entry(key).or_default();
        list.retain(|t| now.duration_since(*t) < WINDOW);
        if list.len() >= MAX_LOG_LINES {
            return None;
        }
        list.push(now);
        Some(list.len() < MAX_LOG_LINES)
    }

    fn wait(&mut self, now: Instant, key: &str, max: usize) -> Option<Duration> {
        let list = self.attempts.get_mut(key)?;
        list.retain(|t| now.duration_since(*t) < WINDOW);
        if list.len() < max {
            return None;
        }
        let oldest = list.iter().min().copied()?;
        Some(WINDOW.saturating_sub(now.duration_since(oldest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_locked_out_of_an_account_after_five_failures_then_released() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..MAX_PER_ACCOUNT {
            t.reserve(t0, "10.0.0.1", "Alice@x.test").unwrap();
        }
        let wait = t.reserve(t0, "10.0.0.1", "alice@X.test").unwrap_err();
        assert_eq!(wait, WINDOW);
        // Another client is not locked out of the account by the first one's guesses.
        assert!(t.reserve(t0, "10.9.9.9", "alice@x.test").is_ok());
        assert!(t.reserve(t0, "10.0.0.1", "bob@x.test").is_ok());
        assert!(t.reserve(t0 + WINDOW, "10.0.0.1", "alice@x.test").is_ok());
    }

    #[test]
    fn a_client_spraying_accounts_is_stopped_at_ten() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for i in 0..MAX_PER_CLIENT {
            t.reserve(t0, "192.0.2.1", &format!("u{i}@x.test")).unwrap();
        }
        assert!(t.reserve(t0, "192.0.2.1", "new@x.test").is_err());
        assert!(t.reserve(t0, "192.0.2.2", "new@x.test").is_ok());
    }

    #[test]
    fn a_success_gives_its_attempt_back_and_clears_the_pair() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..MAX_PER_ACCOUNT - 1 {
            t.reserve(t0, "192.0.2.1", "a@x.test").unwrap();
        }
        let r = t.reserve(t0, "192.0.2.1", "a@x.test").unwrap();
        t.succeeded(&r);
        for _ in 0..MAX_PER_ACCOUNT {
            t.reserve(t0, "192.0.2.1", "a@x.test").unwrap();
        }
        // 4 failures + 5 = 9 of the client's 10: one more, then none.
        assert!(t.reserve(t0, "192.0.2.1", "b@x.test").is_ok());
        assert!(t.reserve(t0, "192.0.2.1", "c@x.test").is_err());
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        for i in 0..MAX_PER_CLIENT {
            t.reserve(t0, &format!("2001:db8:1:2::{i:x}"), &format!("u{i}@x.test"))
                .unwrap();
        }
        assert!(t.reserve(t0, "2001:db8:1:2:ffff::1", "v@x.test").is_err());
        assert!(t.reserve(t0, "2001:db8:1:3::1", "v@x.test").is_ok());
        assert_eq!(client_key("::ffff:192.0.2.7"), "ip:192.0.2.7");
    }

    #[test]
    fn the_audit_budget_is_bounded_per_client() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        let lines: Vec<_> = (0..MAX_LOG_LINES + 5)
            .map(|_| t.log_budget(t0, "192.0.2.1"))
            .collect();
        assert!(lines[..MAX_LOG_LINES - 1].iter().all(|l| *l == Some(true)));
        assert_eq!(lines[MAX_LOG_LINES - 1], Some(false));
        assert!(lines[MAX_LOG_LINES..].iter().all(|l| l.is_none()));
        assert_eq!(t.log_budget(t0, "192.0.2.2"), Some(true));
        assert_eq!(t.log_budget(t0 + WINDOW, "192.0.2.1"), Some(true));
    }
}
