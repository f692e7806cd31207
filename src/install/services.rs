//! The stack's services, enabled and running with the configuration on disk: a service that
//! started before one of its files was written is restarted, so a re-run after an install
//! killed between "write" and "restart" still restarts it.

use crate::system::cmd::Cmd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{files, Check, Ctx, Step, StepError, StepResult};
use crate::config::{DbLocation, Engine};
use crate::render::context::tls_paths;
use crate::service::systemd::Systemd;

/// A unit and the files it reads at start.
#[derive(Debug, Clone)]
pub struct Service {
    pub unit: String,
    pub files: Vec<PathBuf>,
    /// A loopback TCP port it serves once ready (systemd's "active" only means started:
    /// Amavis needs up to a minute to load SpamAssassin before it listens).
    pub port: Option<u16>,
}

/// The units to run, in start order, each with the files whose change needs a restart.
pub fn services(ctx: &Ctx) -> StepResult<Vec<Service>> {
    let f = &ctx.distro.facts;
    let c = &ctx.config.components;
    let rendered = files::rendered(ctx)?;
    let (cert, key) = tls_paths(&ctx.config, &ctx.distro);
    let mut tls = vec![cert.as_path().to_path_buf(), key.as_path().to_path_buf()];
    // A renewal reloaded the daemons after writing the pair: they serve it without a restart.
    let state = crate::jobs::tls_renew::RenewalState::load(&crate::jobs::tls_renew::state_path(
        &ctx.config,
    ));
    if ctx.config.tls.mode == crate::config::TlsMode::Acme
        && newest_mtime(&tls).is_some_and(|written| state.reloaded_since(written))
    {
        tls.clear();
    }
    let under = |dirs: &[&Path], extra: &[PathBuf]| -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = rendered
            .iter()
            .map(|r| r.path.clone())
            .filter(|p| dirs.iter().any(|d| p.starts_with(d)))
            .collect();
        out.extend(extra.iter().cloned());
        out
    };
    let unit_dropins = |name: &str| -> PathBuf {
        f.paths
            .systemd_units
            .as_path()
            .join(format!("{name}.service.d"))
    };
    let mut out = Vec::new();
    let db = &ctx.config.database;
    if db.location == DbLocation::Local {
        match db.engine {
            Engine::Postgres => out.push(Service {
                unit: f.services.postgres.clone(),
                files: Vec::new(),
                port: None,
            }),
            Engine::Mysql => out.push(Service {
                unit: f.services.mysql.clone(),
                files: Vec::new(),
                port: None,
            }),
            Engine::Sqlite => {}
        }
    }
    if c.opendkim {
        out.push(Service {
            unit: f.services.opendkim.clone(),
            files: under(
                &[
                    f.paths.opendkim_conf.as_path(),
                    &unit_dropins(&f.services.opendkim),
                ],
                &[],
            ),
            port: Some(8891),
        });
    }
    if c.clamav {
        out.push(Service {
            unit: f.services.freshclam.clone(),
            files: Vec::new(),
            port: None,
        });
        out.push(Service {
            unit: f.services.clamav.clone(),
            files: Vec::new(),
            port: None,
        });
    }
    if c.amavis {
        out.push(Service {
            unit: f.services.amavis.clone(),
            files: under(&[f.amavis.config.as_path()], &[]),
            port: Some(10024),
        });
    }
    out.push(Service {
        unit: f.services.dovecot.clone(),
        files: under(&[f.paths.dovecot.as_path()], &tls),
        port: Some(143),
    });
    out.push(Service {
        unit: f.services.postfix.clone(),
        files: under(&[f.paths.postfix.as_path()], &tls),
        port: Some(25),
    });
    let nginx_dirs: Vec<&Path> = [Some(f.nginx.sites.as_path()), Some(Path::new("/etc/nginx"))]
        .into_iter()
        .flatten()
        .collect();
    out.push(Service {
        unit: f.services.nginx.clone(),
        files: under(&nginx_dirs, &tls),
        port: Some(443),
    });
    // modobox's own daemons and then the supervisor, each restarted when its binary,
    // configuration, secrets or unit changed (an upgrade is `install` with the new binary).
    for d in crate::service::own::ALL {
        out.push(Service {
            unit: d.unit.into(),
            files: vec![
                PathBuf::from(crate::render::context::BINARY_PATH),
                ctx.config_path.clone(),
                ctx.config.paths.secrets.as_path().to_path_buf(),
                f.paths
                    .systemd_units
                    .as_path()
                    .join(format!("{}.service", d.unit)),
            ],
            port: Some(if d == crate::service::own::WEB {
                ctx.config.web.listen.port()
            } else {
                crate::milter::PORT
            }),
        });
    }
    out.push(Service {
        unit: "modobox".into(),
        files: vec![
            PathBuf::from(crate::render::context::BINARY_PATH),
            ctx.config_path.clone(),
            f.paths.systemd_units.as_path().join("modobox.service"),
        ],
        port: None,
    });
    Ok(out)
}

fn newest_mtime(files: &[PathBuf]) -> Option<DateTime<Utc>> {
    files
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
        .map(DateTime::<Utc>::from)
}

/// What is wrong with one service: not enabled, not running, or older than its files.
async fn problems(sd: &Systemd, s: &Service) -> StepResult<Vec<String>> {
    let st = sd.status(&s.unit).await?;
    let mut out = Vec::new();
    if st.load != "loaded" {
        out.push(format!("{}: not installed ({})", s.unit, st.load));
        return Ok(out);
    }
    if !matches!(
        st.unit_file.as_str(),
        "enabled" | "static" | "generated" | "alias"
    ) {
        out.push(format!("enable {}", s.unit));
    }
    if st.active != "active" {
        out.push(format!("start {} (now {}/{})", s.unit, st.active, st.sub));
    } else if let (Some(since), Some(changed)) = (st.since, newest_mtime(&s.files)) {
        if changed > since {
            out.push(format!(
                "restart {}: its configuration changed after it started",
                s.unit
            ));
        }
    }
    Ok(out)
}

/// The virus signatures clamd needs before its unit agrees to start.
fn clamav_signatures_present() -> bool {
    std::fs::read_dir("/var/lib/clamav").is_ok_and(|rd| {
        rd.flatten().any(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            [".cvd", ".cld", ".hdb", ".ndb", ".cud"]
                .iter()
                .any(|ext| n.ends_with(ext))
        })
    })
}

#[derive(Debug)]
pub struct Services;

impl Step for Services {
    fn name(&self) -> &'static str {
        "services"
    }

    fn check(&self, ctx: &mut Ctx) -> StepResult<Check> {
        let list = services(ctx)?;
        let found = ctx.rt.block_on(async {
            let sd = match Systemd::connect().await {
                Ok(sd) => sd,
                Err(e) if ctx.dry_run => {
                    return Ok(vec![format!("enable and start the services ({e})")])
                }
                Err(e) => return Err(StepError::from(e)),
            };
            let mut all = Vec::new();
            for s in &list {
                let found = problems(&sd, s).await?;
                if found.is_empty() && ctx.dry_run {
                    // A plan writes nothing: what the earlier steps would write counts.
                    let writes: Vec<String> = s
                        .files
                        .iter()
                        .filter(|f| ctx.planned_writes.contains(f))
                        .map(|f| f.display().to_string())
                        .collect();
                    if !writes.is_empty() {
                        all.push(format!(
                            "restart {}: its files will change ({})",
                            s.unit,
                            writes.join(", ")
                        ));
                    }
                }
                all.extend(found);
            }
            Ok(all)
        })?;
        Ok(Check::from_changes(found))
    }

    fn apply(&self, ctx: &mut Ctx) -> StepResult<()> {
        let list = services(ctx)?;
        let clamav_unit = ctx.distro.facts.services.clamav.clone();
        let clamav = ctx.config.components.clamav;
        ctx.rt.block_on(async {
            let sd = Systemd::connect().await?;
            // Drop-ins (OpenDKIM's) were written by the config-files step.
            sd.daemon_reload().await?;
            let postfix_unit = ctx.distro.facts.services.postfix.clone();
            let amavis_unit = ctx.distro.facts.services.amavis.clone();
            let mut restarted = Vec::new();
            for s in &list {
                let found = problems(&sd, s).await?;
                if found.is_empty() {
                    continue;
                }
                restarted.push(s.unit.clone());
                if found.iter().any(|p| p.starts_with("enable ")) {
                    sd.enable(&[s.unit.as_str()]).await?;
                }
                if clamav && s.unit == clamav_unit {
                    wait_for_signatures().await?;
                }
                let st = sd.status(&s.unit).await?;
                if st.active == "active" {
                    sd.restart(&s.unit).await?;
                } else {
                    sd.reset_failed(&s.unit).await.ok();
                    sd.start(&s.unit).await?;
                }
                let st = sd.status(&s.unit).await?;
                if st.active != "active" {
                    return Err(StepError::new(format!(
                        "{} did not stay up ({}/{}): see `journalctl -u {}`",
                        s.unit, st.active, st.sub, s.unit
                    )));
                }
                if let Some(port) = s.port {
                    wait_for_port(&s.unit, port).await?;
                }
            }
            // Amavis keeps its SMTP sessions to Postfix's re-injection port open between
            // messages: after Postfix restarted, the next message would meet a dead session and
            // be deferred for minutes. A fresh Amavis opens new ones.
            let stale = restarted.contains(&postfix_unit) && !restarted.contains(&amavis_unit);
            if let Some(amavis) = list
                .iter()
                .find(|s| s.unit == amavis_unit)
                .filter(|_| stale)
            {
                sd.restart(&amavis.unit).await?;
                if let Some(port) = amavis.port {
                    wait_for_port(&amavis.unit, port).await?;
                }
            }
            // While Amavis reloads its rules (up to a minute), Postfix defers what it hands
            // to it and marks the transport dead; deferred mail would wait for the next queue
            // run (5 minutes). Once Amavis answers, the queue is flushed and the transport
            // revived.
            let filtered = restarted.contains(&postfix_unit) || restarted.contains(&amavis_unit);
            if let Some(amavis) = list
                .iter()
                .find(|s| s.unit == amavis_unit)
                .filter(|_| filtered)
            {
                if let Some(port) = amavis.port {
                    wait_for_banner(&amavis.unit, port, ctx.config.hostname.as_str()).await?;
                }
                Cmd::new("postqueue").arg("-f").run()?;
            }
            Ok(())
        })
    }
}

/// Waits until the service answers an SMTP greeting on its loopback port (Amavis binds its
/// port before it has loaded its rules).
async fn wait_for_banner(unit: &str, port: u16, helo: &str) -> StepResult<()> {
    let limit = Duration::from_secs(180);
    let start = Instant::now();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        match crate::health::probes::smtp(addr, helo, Duration::from_secs(30)).await {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() > limit => {
                return Err(StepError::new(format!(
                    "{unit} did not answer on 127.0.0.1:{port} within {} s ({e}): see \
                     `journalctl -u {unit}`",
                    limit.as_secs()
                )))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Waits until the service accepts connections on its loopback port.
async fn wait_for_port(unit: &str, port: u16) -> StepResult<()> {
    let limit = Duration::from_secs(180);
    let start = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(StepError::new(format!(
                "{unit} is running but did not answer on 127.0.0.1:{port} within {} s: see \
                 `journalctl -u {unit}`",
                limit.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// freshclam downloads the signatures on first start (about 300 MB); clamd refuses to start
/// before they are there.
async fn wait_for_signatures() -> StepResult<()> {
    let limit = Duration::from_secs(600);
    let start = Instant::now();
    let mut said = false;
    while !clamav_signatures_present() {
        if start.elapsed() > limit {
            return Err(StepError::new(
                "no ClamAV signatures in /var/lib/clamav after 10 minutes: see \
                 `journalctl -u clamav-freshclam`, or set components.clamav = false",
            ));
        }
        if !said {
            println!("    waiting for freshclam to download the virus signatures…");
            said = true;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(())
}

/// Enables and starts one unit now (the database server, before the rest of the install
/// needs it).
pub fn start_and_enable(ctx: &Ctx, unit: &str) -> StepResult<()> {
    ctx.rt.block_on(async {
        let sd = Systemd::connect().await?;
        sd.enable(&[unit]).await?;
        sd.start(unit).await?;
        Ok(())
    })
}
