//! The resident supervisor: probes every service of the stack at the protocol level, restarts
//! through the service manager what stays down (see `policy`), records every event in
//! `modobox_service_event` (`store::events`), logs it, and mails the admin when a service stays down.

pub mod daemon;
pub mod init;
pub mod notify;
pub mod policy;
pub mod status;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::config::{Config, DbLocation, Engine};
use crate::distro::Distro;
use crate::health::probes;
use crate::service::direct::{Direct, DirectError};
use crate::service::own;
use crate::service::systemd::Systemd;
use crate::service::{ServiceError, UnitStatus};
use crate::store::{events, Store, StoreError};
use policy::{Action, Policy, Tracker};

/// How a service is probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Smtp(SocketAddr),
    Lmtp(PathBuf),
    Imap(SocketAddr, bool),
    ManageSieve(SocketAddr),
    Milter(SocketAddr),
    /// The inbound authentication milter (port 25's SPF, DKIM, DMARC checks).
    InboundMilter(SocketAddr),
    /// A Postfix policy service (modobox's sending limits).
    Policy(SocketAddr),
    Clamd(PathBuf),
    Https(SocketAddr),
    /// Plain HTTP on loopback (the admin web UI), GET /login.
    Http(SocketAddr),
    Database,
}

impl Probe {
    /// The modobox version that began to serve what this probe checks (None: every version).
    /// An older modobox still running (before an upgrade, after a rollback) is not asked for
    /// it: its health is what it serves.
    pub fn since(&self) -> Option<&'static str> {
        match self {
            Probe::Policy(_) | Probe::InboundMilter(_) => Some("0.3.0"),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Probe::Smtp(a) => format!("SMTP EHLO on {a}"),
            Probe::Lmtp(p) => format!("LMTP LHLO on {}", p.display()),
            Probe::Imap(a, tls) => format!("IMAP{} CAPABILITY on {a}", if *tls { "S" } else { "" }),
            Probe::ManageSieve(a) => format!("ManageSieve greeting on {a}"),
            Probe::Milter(a) => format!("milter negotiation on {a}"),
            Probe::InboundMilter(a) => format!("inbound milter negotiation on {a}"),
            Probe::Policy(a) => format!("policy request on {a}"),
            Probe::Clamd(p) => format!("clamd PING on {}", p.display()),
            Probe::Https(a) => format!("HTTPS request on {a}"),
            Probe::Http(a) => format!("HTTP request on {a}"),
            Probe::Database => "database query".into(),
        }
    }
}

/// One supervised service: its unit and its probes (all must pass).
#[derive(Debug, Clone)]
pub struct Watched {
    pub name: &'static str,
    /// The daemon's key in the distro facts (`services`, `direct`).
    pub key: &'static str,
    pub unit: String,
    pub probes: Vec<Probe>,
    /// Services whose failure makes this one's probes fail too (Postfix's smtpd waits for its
    /// milter before the banner): while one of them fails, this one is not blamed.
    pub depends_on: Vec<&'static str>,
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The services of this configuration, in dependency order.
pub fn watched(config: &Config, distro: &Distro) -> Vec<Watched> {
    let f = &distro.facts;
    let c = &config.components;
    let mut out = Vec::new();
    if config.database.location == DbLocation::Local && config.database.engine != Engine::Sqlite {
        let mysql = config.database.engine == Engine::Mysql;
        out.push(Watched {
            name: "database",
            key: if mysql { "mysql" } else { "postgres" },
            unit: if mysql {
                f.services.mysql.clone()
            } else {
                f.services.postgres.clone()
            },
            probes: vec![Probe::Database],
            depends_on: vec![],
        });
    }
    if c.opendkim {
        out.push(Watched {
            name: "opendkim",
            key: "opendkim",
            unit: f.services.opendkim.clone(),
            probes: vec![Probe::Milter(local(8891))],
            depends_on: vec![],
        });
    }
    if c.clamav {
        out.push(Watched {
            name: "clamav",
            key: "clamav",
            unit: f.services.clamav.clone(),
            probes: vec![Probe::Clamd(f.paths.clamd_socket.as_path().to_path_buf())],
            depends_on: vec![],
        });
    }
    if c.amavis {
        out.push(Watched {
            name: "amavis",
            key: "amavis",
            unit: f.services.amavis.clone(),
            probes: vec![Probe::Smtp(local(10024))],
            depends_on: vec![],
        });
    }
    // modobox's own daemons (crate::service::own): the From: header milter before Postfix,
    // whose submission service asks it; the web UI before nginx, which fronts it.
    out.push(Watched {
        name: own::MILTER.name,
        key: own::MILTER.unit,
        unit: own::MILTER.unit.into(),
        probes: vec![
            Probe::Milter(crate::milter::address()),
            Probe::Policy(crate::policy::address()),
            Probe::InboundMilter(crate::milter::inbound::address()),
        ],
        depends_on: vec![],
    });
    let mut dovecot = vec![
        Probe::Imap(local(143), false),
        Probe::Imap(local(993), true),
        Probe::Lmtp(f.paths.postfix_spool.as_path().join("private/dovecot-lmtp")),
    ];
    if c.managesieve {
        dovecot.push(Probe::ManageSieve(local(4190)));
    }
    out.push(Watched {
        name: "dovecot",
        key: "dovecot",
        unit: f.services.dovecot.clone(),
        probes: dovecot,
        depends_on: vec![],
    });
    out.push(Watched {
        name: "postfix",
        key: "postfix",
        unit: f.services.postfix.clone(),
        probes: vec![Probe::Smtp(local(25)), Probe::Smtp(local(587))],
        depends_on: if c.opendkim { vec!["opendkim"] } else { vec![] },
    });
    out.push(Watched {
        name: own::WEB.name,
        key: own::WEB.unit,
        unit: own::WEB.unit.into(),
        probes: vec![Probe::Http(config.web.listen)],
        depends_on: vec![],
    });
    out.push(Watched {
        name: "nginx",
        key: "nginx",
        unit: f.services.nginx.clone(),
        probes: vec![Probe::Https(local(443))],
        depends_on: vec![],
    });
    out
}

/// A probe of a watched service failed: which one, and why.
#[derive(Debug, thiserror::Error)]
#[error("{probe}: {source}")]
pub struct ProbeFailure {
    /// The probe, as [`Probe::describe`] says it.
    pub probe: String,
    #[source]
    pub source: probes::ProbeError,
}

#[cfg(test)]
impl ProbeFailure {
    /// A failure with this reason, for the policy's and the supervisor's tests.
    pub(crate) fn for_test(reason: &str) -> Self {
        ProbeFailure {
            probe: "test probe".into(),
            source: probes::ProbeError::Io {
                during: "probing".into(),
                reason: reason.into(),
            },
        }
    }
}

/// Runs the probes of one service; the first failure is the answer.
pub async fn probe(
    w: &Watched,
    store: Option<&Store>,
    hostname: &str,
    timeout: Duration,
) -> Result<(), ProbeFailure> {
    probe_of_version(w, store, hostname, timeout, env!("CARGO_PKG_VERSION")).await
}

/// `probe` of a service as modobox `running` (another version, during an upgrade) runs it:
/// the probes of what that version does not serve are left out.
pub async fn probe_of_version(
    w: &Watched,
    store: Option<&Store>,
    hostname: &str,
    timeout: Duration,
    running: &str,
) -> Result<(), ProbeFailure> {
    for p in &w.probes {
        if p.since()
            .is_some_and(|since| crate::jobs::public_api::newer(since, running))
        {
            continue;
        }
        let result = match p {
            Probe::Smtp(a) => probes::smtp(*a, hostname, timeout).await.map(|_| ()),
            Probe::Lmtp(path) => probes::lmtp_unix(path, hostname, timeout).await.map(|_| ()),
            Probe::Imap(a, tls) => probes::imap(*a, *tls, timeout).await.map(|_| ()),
            Probe::ManageSieve(a) => probes::managesieve(*a, timeout).await.map(|_| ()),
            Probe::Milter(a) | Probe::InboundMilter(a) => {
                probes::milter(*a, timeout).await.map(|_| ())
            }
            Probe::Policy(a) => probes::policy(*a, timeout).await.map(|_| ()),
            Probe::Clamd(path) => probes::clamd_unix(path, timeout).await.map(|_| ()),
            Probe::Https(a) => probes::https(*a, hostname, timeout).await.map(|_| ()),
            Probe::Http(a) => probes::http(*a, "/login", timeout).await.map(|_| ()),
            Probe::Database => match store {
                Some(s) => probes::database(s, timeout).await.map(|_| ()),
                None => continue,
            },
        };
        result.map_err(|source| ProbeFailure {
            probe: p.describe(),
            source,
        })?;
    }
    Ok(())
}

/// What the supervisor needs from a service manager (systemd over D-Bus; a fake in tests).
pub trait Manager {
    /// Why a restart or a status failed; its text is the `restart_failed` event's message.
    type Error: std::fmt::Display;
    fn restart(&self, unit: &str) -> impl Future<Output = Result<(), Self::Error>> + Send;
    fn status(&self, unit: &str) -> impl Future<Output = Result<UnitStatus, Self::Error>> + Send;
}

impl Manager for Systemd {
    type Error = ServiceError;
    async fn restart(&self, unit: &str) -> Result<(), ServiceError> {
        // A unit stopped by hand is started; a failed one needs its failure cleared first.
        let _ = self.reset_failed(unit).await;
        Systemd::restart(self, unit).await
    }
    async fn status(&self, unit: &str) -> Result<UnitStatus, ServiceError> {
        Systemd::status(self, unit).await
    }
}

impl Manager for &Direct {
    type Error = DirectError;
    async fn restart(&self, unit: &str) -> Result<(), DirectError> {
        Direct::restart(self, unit).await
    }
    async fn status(&self, unit: &str) -> Result<UnitStatus, DirectError> {
        Direct::status(self, unit)
    }
}

/// An event as stored and shown by `modobox status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    pub service: String,
    pub kind: &'static str,
    pub message: String,
}

/// Records an event (`store::events`).
pub async fn store_event(store: &Store, e: &Event) -> Result<(), StoreError> {
    events::record(store, &e.service, e.kind, &e.message).await
}

/// The supervisor's state: one tracker per watched service.
#[derive(Debug)]
pub struct Supervisor<M> {
    pub policy: Policy,
    pub manager: M,
    pub services: Vec<(Watched, Tracker)>,
}

impl<M: Manager> Supervisor<M> {
    pub fn new(policy: Policy, manager: M, services: Vec<Watched>) -> Self {
        Supervisor {
            policy,
            manager,
            services: services
                .into_iter()
                .map(|w| (w, Tracker::default()))
                .collect(),
        }
    }

    /// Feeds one round of probe results (same order as `services`), restarts what the policy
    /// says, and returns the events and alerts to record.
    pub async fn handle(
        &mut self,
        now: Instant,
        results: Vec<Result<(), ProbeFailure>>,
    ) -> (Vec<Event>, Vec<String>) {
        let mut events = Vec::new();
        let mut alerts = Vec::new();
        let failing: Vec<&'static str> = self
            .services
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_err())
            .map(|((w, _), _)| w.name)
            .collect();
        for ((w, tracker), result) in self.services.iter_mut().zip(results) {
            if result.is_err() && w.depends_on.iter().any(|d| failing.contains(d)) {
                tracing::debug!("{}: failing while a service it depends on fails", w.name);
                continue;
            }
            for action in tracker.observe(&self.policy, now, result) {
                match action {
                    Action::Restart => {
                        if let Err(e) = self.manager.restart(&w.unit).await {
                            events.push(Event {
                                service: w.name.to_string(),
                                kind: "restart_failed",
                                message: e.to_string(),
                            });
                        }
                    }
                    Action::Event { kind, message } => events.push(Event {
                        service: w.name.to_string(),
                        kind: kind.as_str(),
                        message,
                    }),
                    Action::Alert { message } => {
                        alerts.push(format!("{} ({}) {message}", w.name, w.unit));
                    }
                }
            }
        }
        (events, alerts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct FakeManager {
        restarted: Mutex<Vec<String>>,
        fail: bool,
    }

    impl Manager for &FakeManager {
        type Error = ServiceError;
        async fn restart(&self, unit: &str) -> Result<(), ServiceError> {
            self.restarted.lock().unwrap().push(unit.to_string());
            if self.fail {
                Err(ServiceError::JobFailed {
                    op: "restart",
                    unit: unit.to_string(),
                    result: "failed".into(),
                })
            } else {
                Ok(())
            }
        }
        async fn status(&self, unit: &str) -> Result<UnitStatus, ServiceError> {
            Err(ServiceError::NoSuchUnit {
                op: "status",
                unit: unit.to_string(),
                detail: "not used".into(),
            })
        }
    }

    fn two() -> Vec<Watched> {
        vec![
            Watched {
                name: "dovecot",
                key: "dovecot",
                unit: "dovecot.service".into(),
                probes: vec![Probe::Imap(local(143), false)],
                depends_on: vec![],
            },
            Watched {
                name: "postfix",
                key: "postfix",
                unit: "postfix.service".into(),
                probes: vec![Probe::Smtp(local(25))],
                depends_on: vec![],
            },
        ]
    }

    #[tokio::test]
    async fn only_the_failing_service_is_restarted_through_the_manager() {
        let m = FakeManager::default();
        let mut s = Supervisor::new(Policy::default(), &m, two());
        let t0 = Instant::now();
        let down = || Err(ProbeFailure::for_test("connection refused"));
        let (e, _) = s.handle(t0, vec![Ok(()), down()]).await;
        assert_eq!(e[0].kind, "probe_failed");
        let (e, _) = s
            .handle(t0 + Duration::from_secs(5), vec![Ok(()), down()])
            .await;
        assert_eq!(e[0].kind, "restarted");
        assert_eq!(*m.restarted.lock().unwrap(), ["postfix.service"]);
        let (e, _) = s
            .handle(t0 + Duration::from_secs(10), vec![Ok(()), Ok(())])
            .await;
        assert_eq!((e[0].service.as_str(), e[0].kind), ("postfix", "recovered"));
    }

    #[tokio::test]
    async fn a_service_failing_with_its_dependency_is_not_restarted() {
        let m = FakeManager::default();
        let mut services = two();
        services[1].depends_on = vec!["dovecot"];
        let mut s = Supervisor::new(Policy::default(), &m, services);
        let t0 = Instant::now();
        let down = || Err(ProbeFailure::for_test("timed out"));
        for i in 0..3 {
            s.handle(t0 + Duration::from_secs(5 * i), vec![down(), down()])
                .await;
        }
        assert_eq!(*m.restarted.lock().unwrap(), ["dovecot.service"]);
        // Once the dependency answers, the dependent's own failures count again.
        for i in 3..5 {
            s.handle(t0 + Duration::from_secs(5 * i), vec![Ok(()), down()])
                .await;
        }
        assert_eq!(
            *m.restarted.lock().unwrap(),
            ["dovecot.service", "postfix.service"]
        );
    }

    #[tokio::test]
    async fn a_failed_restart_is_an_event_too() {
        let m = FakeManager {
            fail: true,
            ..Default::default()
        };
        let mut s = Supervisor::new(Policy::default(), &m, two());
        let t0 = Instant::now();
        let x = || Err(ProbeFailure::for_test("x"));
        s.handle(t0, vec![x(), Ok(())]).await;
        let (e, _) = s
            .handle(t0 + Duration::from_secs(5), vec![x(), Ok(())])
            .await;
        let kinds: Vec<_> = e.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["restart_failed", "restarted"]);
    }

    #[test]
    fn the_stack_is_watched_with_protocol_probes() {
        let config = Config::new(crate::names::Hostname::parse("h", "mail.example.com").unwrap());
        let distro = Distro::load(&"debian:12".parse().unwrap()).unwrap();
        let w = watched(&config, &distro);
        let names: Vec<_> = w.iter().map(|w| w.name).collect();
        assert_eq!(
            names,
            [
                "database", "opendkim", "clamav", "amavis", "milter", "dovecot", "postfix", "web",
                "nginx"
            ]
        );
        let web = w.iter().find(|w| w.name == "web").unwrap();
        assert_eq!(web.probes, [Probe::Http(config.web.listen)]);
        let dovecot = w.iter().find(|w| w.name == "dovecot").unwrap();
        assert!(dovecot.probes.contains(&Probe::Lmtp(PathBuf::from(
            "/var/spool/postfix/private/dovecot-lmtp"
        ))));
    }
}
