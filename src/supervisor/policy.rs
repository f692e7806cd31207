//! What the supervisor does about probe results, as a pure state machine per service: no I/O
//! and no clock of its own (the caller passes `now`), so it is tested with a fake clock.
//!
//! After `failures_before_restart` consecutive failed probes the service is restarted; at most
//! `max_restarts` restarts within `restart_window`, then the supervisor gives up (and says so)
//! until the service recovers by itself or the window has passed. A service down for longer
//! than `alert_after` raises one alert (a mail to the admin) per outage.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::ProbeFailure;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub failures_before_restart: u32,
    pub max_restarts: usize,
    pub restart_window: Duration,
    pub alert_after: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            failures_before_restart: 2,
            max_restarts: 3,
            restart_window: Duration::from_secs(15 * 60),
            alert_after: Duration::from_secs(5 * 60),
        }
    }
}

/// What the supervisor must do now; events are stored and logged, in this order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Restart,
    Event { kind: EventKind, message: String },
    Alert { message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    ProbeFailed,
    Restarted,
    Recovered,
    GaveUp,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ProbeFailed => "probe_failed",
            EventKind::Restarted => "restarted",
            EventKind::Recovered => "recovered",
            EventKind::GaveUp => "gave_up",
        }
    }
}

/// One service's health as the policy sees it.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    consecutive_failures: u32,
    restarts: VecDeque<Instant>,
    /// When the current outage began (first failed probe).
    down_since: Option<Instant>,
    gave_up: bool,
    alerted: bool,
    /// Restarts made by the supervisor since it started (for `status`).
    pub total_restarts: u32,
    pub last_error: Option<String>,
}

impl Tracker {
    pub fn is_up(&self) -> bool {
        self.down_since.is_none()
    }

    pub fn gave_up(&self) -> bool {
        self.gave_up
    }

    /// Feeds one probe result; returns what to do.
    pub fn observe(
        &mut self,
        policy: &Policy,
        now: Instant,
        result: Result<(), ProbeFailure>,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        match result {
            Ok(()) => {
                if let Some(since) = self.down_since.take() {
                    actions.push(Action::Event {
                        kind: EventKind::Recovered,
                        message: format!(
                            "answers again after {} s",
                            now.saturating_duration_since(since).as_secs()
                        ),
                    });
                }
                self.consecutive_failures = 0;
                self.gave_up = false;
                self.alerted = false;
                self.last_error = None;
            }
            Err(failure) => {
                let error = failure.to_string();
                let since = *self.down_since.get_or_insert(now);
                self.consecutive_failures += 1;
                // One event per outage for the probe itself, not one per probe.
                if self.consecutive_failures == 1 {
                    actions.push(Action::Event {
                        kind: EventKind::ProbeFailed,
                        message: error.clone(),
                    });
                }
                self.last_error = Some(error.clone());
                while self
                    .restarts
                    .front()
                    .is_some_and(|t| now.saturating_duration_since(*t) > policy.restart_window)
                {
                    self.restarts.pop_front();
                }
                if self.gave_up && self.restarts.len() < policy.max_restarts {
                    // The window moved on: try again.
                    self.gave_up = false;
                }
                if !self.gave_up && self.consecutive_failures >= policy.failures_before_restart {
                    if self.restarts.len() < policy.max_restarts {
                        self.restarts.push_back(now);
                        self.total_restarts += 1;
                        self.consecutive_failures = 0;
                        actions.push(Action::Restart);
                        actions.push(Action::Event {
                            kind: EventKind::Restarted,
                            message: format!("restarted after failed probes: {error}"),
                        });
                    } else {
                        self.gave_up = true;
                        actions.push(Action::Event {
                            kind: EventKind::GaveUp,
                            message: format!(
                                "{} restarts in {} min did not help; not restarting it again \
                                 before the window passes: {error}",
                                policy.max_restarts,
                                policy.restart_window.as_secs() / 60
                            ),
                        });
                    }
                }
                if !self.alerted && now.saturating_duration_since(since) >= policy.alert_after {
                    self.alerted = true;
                    actions.push(Action::Alert {
                        message: format!(
                            "down for {} min: {error}",
                            now.saturating_duration_since(since).as_secs() / 60
                        ),
                    });
                }
            }
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake clock: probes every 10 s.
    struct Clock(Instant);
    impl Clock {
        fn tick(&mut self, secs: u64) -> Instant {
            self.0 += Duration::from_secs(secs);
            self.0
        }
    }

    fn kinds(actions: &[Action]) -> Vec<&str> {
        actions
            .iter()
            .map(|a| match a {
                Action::Restart => "RESTART",
                Action::Event { kind, .. } => kind.as_str(),
                Action::Alert { .. } => "ALERT",
            })
            .collect()
    }

    #[test]
    fn restarts_after_consecutive_failures_and_reports_recovery() {
        let p = Policy::default();
        let mut t = Tracker::default();
        let mut c = Clock(Instant::now());
        assert!(t.observe(&p, c.tick(10), Ok(())).is_empty());
        assert_eq!(
            kinds(&t.observe(&p, c.tick(10), Err(ProbeFailure::for_test("refused")))),
            ["probe_failed"]
        );
        assert!(!t.is_up());
        assert_eq!(
            kinds(&t.observe(&p, c.tick(10), Err(ProbeFailure::for_test("refused")))),
            ["RESTART", "restarted"]
        );
        let back = t.observe(&p, c.tick(10), Ok(()));
        assert_eq!(kinds(&back), ["recovered"]);
        assert!(
            matches!(&back[0], Action::Event { message, .. } if message == "answers again after 20 s")
        );
        assert!(t.is_up());
        assert_eq!(t.total_restarts, 1);
    }

    #[test]
    fn a_single_failure_is_not_a_restart() {
        let p = Policy::default();
        let mut t = Tracker::default();
        let mut c = Clock(Instant::now());
        t.observe(&p, c.tick(10), Err(ProbeFailure::for_test("slow")));
        assert_eq!(kinds(&t.observe(&p, c.tick(10), Ok(()))), ["recovered"]);
        assert_eq!(t.total_restarts, 0);
    }

    #[test]
    fn gives_up_after_max_restarts_then_retries_when_the_window_passes() {
        let p = Policy::default();
        let mut t = Tracker::default();
        let mut c = Clock(Instant::now());
        let mut restarts = 0;
        let mut gave_up_at = None;
        for i in 0..12 {
            let a = t.observe(&p, c.tick(10), Err(ProbeFailure::for_test("down")));
            restarts += a.iter().filter(|x| **x == Action::Restart).count();
            if kinds(&a).contains(&"gave_up") {
                gave_up_at.get_or_insert(i);
            }
        }
        assert_eq!(restarts, 3, "rate-limited to max_restarts in the window");
        assert!(t.gave_up());
        assert!(gave_up_at.is_some());
        // 15 minutes later the oldest restarts leave the window: one more try.
        c.tick(15 * 60);
        let a = t.observe(&p, c.tick(10), Err(ProbeFailure::for_test("down")));
        assert!(a.contains(&Action::Restart), "{a:?}");
    }

    #[test]
    fn one_alert_per_outage_after_the_delay() {
        let p = Policy {
            alert_after: Duration::from_secs(60),
            ..Policy::default()
        };
        let mut t = Tracker::default();
        let mut c = Clock(Instant::now());
        let mut alerts = 0;
        for _ in 0..20 {
            let a = t.observe(&p, c.tick(10), Err(ProbeFailure::for_test("down")));
            alerts += a
                .iter()
                .filter(|x| matches!(x, Action::Alert { .. }))
                .count();
        }
        assert_eq!(alerts, 1);
        t.observe(&p, c.tick(10), Ok(()));
        for _ in 0..7 {
            let a = t.observe(&p, c.tick(10), Err(ProbeFailure::for_test("down again")));
            alerts += a
                .iter()
                .filter(|x| matches!(x, Action::Alert { .. }))
                .count();
        }
        assert_eq!(alerts, 2, "a new outage alerts again");
    }
}
