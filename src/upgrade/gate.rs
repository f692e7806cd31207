//! What an upgrade must pass before it is kept: real lookups through the daemons' own SQL maps
//! (Postfix's `postmap -q`, Dovecot's `doveadm user`) and the health gate — every probe of
//! every watched service green for several consecutive rounds within a deadline.

use std::time::{Duration, Instant};

use crate::config::Config;
use crate::distro::Distro;
use crate::store::Store;
use crate::supervisor;
use crate::system::cmd::Cmd;

/// Consecutive all-green rounds the gate needs after an upgrade or a rollback.
pub const ROUNDS: u32 = 3;
/// How long the gate waits for them.
pub const DEADLINE: Duration = Duration::from_secs(120);
const BETWEEN_ROUNDS: Duration = Duration::from_secs(2);
/// Generous: Amavis (whose processes Postfix keeps busy while a queue drains) greets late.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// One round: every failing probe, as "service: probe: reason", of the stack as modobox
/// `running` serves it.
async fn round(
    config: &Config,
    distro: &Distro,
    store: Option<&Store>,
    running: &str,
) -> Vec<String> {
    let mut failures = Vec::new();
    for w in supervisor::watched(config, distro) {
        let host = config.hostname.as_str();
        if let Err(e) = supervisor::probe_of_version(&w, store, host, PROBE_TIMEOUT, running).await
        {
            failures.push(format!("{}: {e}", w.name));
        }
    }
    failures
}

/// How the gate went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Passed {
    pub rounds: u32,
    pub seconds: f64,
}

/// Waits until `needed` consecutive rounds are green, for at most `deadline`; the error names
/// what was still failing. `running`: the modobox version serving the stack (the installed
/// one before an upgrade and after a rollback). `fault`: the name of the fault point that,
/// armed, makes every round fail (a probe that never turns green).
pub async fn health_gate(
    config: &Config,
    distro: &Distro,
    store: Option<&Store>,
    running: &str,
    needed: u32,
    deadline: Duration,
    fault: &str,
) -> Result<Passed, String> {
    let started = Instant::now();
    let mut green = 0;
    let mut rounds = 0;
    loop {
        rounds += 1;
        let mut failures = round(config, distro, store, running).await;
        if let Err(e) = crate::fault::point(fault) {
            failures.push(format!("injected: {e}"));
        }
        if failures.is_empty() {
            green += 1;
            if green >= needed {
                return Ok(Passed {
                    rounds,
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
        } else {
            green = 0;
            if started.elapsed() + BETWEEN_ROUNDS > deadline {
                return Err(format!(
                    "not healthy after {:.0} s: {}",
                    started.elapsed().as_secs_f64(),
                    failures.join("; ")
                ));
            }
        }
        tokio::time::sleep(BETWEEN_ROUNDS).await;
    }
}

/// Lookups through the daemons themselves: the primary domain in Postfix's domains map, a
/// mailbox in its aliases map and in Dovecot's user database. Returns what was checked.
pub async fn lookups(
    config: &Config,
    distro: &Distro,
    store: &Store,
) -> Result<Vec<String>, String> {
    let mut tx = store.begin_read().await.map_err(|e| e.to_string())?;
    let address = crate::store::accounts::list::some_active_mailbox(&mut tx)
        .await
        .map_err(|e| e.to_string())?;
    drop(tx);
    let Some(address) = address else {
        return Ok(vec!["no mailbox yet: no lookup to make".into()]);
    };
    let domain = address.rsplit('@').next().unwrap_or_default().to_string();
    let driver = crate::render::context::sql_driver(config.database.engine);
    let postfix = distro.facts.paths.postfix.as_path();
    let mut checked = Vec::new();
    for (map, key) in [("sql-domains.cf", &domain), ("sql-aliases.cf", &address)] {
        let table = format!("{driver}:{}", postfix.join(map).display());
        let out = Cmd::new("postmap")
            .args(["-q", key.as_str(), table.as_str()])
            .run()
            .map_err(|e| format!("postmap -q {key} {table}: {e}"))?;
        if out.stdout.trim().is_empty() {
            return Err(format!("postmap -q {key} {table} found nothing"));
        }
        checked.push(format!("postmap -q {key} {table}: {}", out.stdout.trim()));
    }
    let out = Cmd::new("doveadm")
        .args(["user", address.as_str()])
        .run()
        .map_err(|e| format!("doveadm user {address}: {e}"))?;
    if !out.stdout.contains("home") {
        return Err(format!(
            "doveadm user {address} said {:?}",
            out.stdout.trim()
        ));
    }
    checked.push(format!("doveadm user {address}: found"));
    Ok(checked)
}
