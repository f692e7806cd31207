//! The distribution's packages for the chosen components and database engine: apt with Postfix
//! preseeded, the existing conffiles kept and services held back until modobox has written
//! their configuration; dnf with EPEL and CRB on the RHEL family.

use std::path::Path;

use super::{io_error, Check, Ctx, Step, StepResult};
use crate::config::{Config, DbLocation, Engine};
use crate::distro::{Distro, PackageManager};
use crate::system::cmd::Cmd;
use crate::system::fs::write_atomic;

/// Every package the configuration needs, in a stable order without duplicates.
pub fn wanted(config: &Config, distro: &Distro) -> Vec<String> {
    let p = &distro.facts.packages;
    let c = &config.components;
    let engine = match config.database.engine {
        Engine::Postgres => &p.postgres,
        Engine::Mysql => &p.mysql,
        Engine::Sqlite => &p.sqlite,
    };
    let mut groups: Vec<&Vec<String>> = vec![&p.base, &p.postfix, &p.dovecot, &p.nginx, &p.stats];
    groups.extend([&engine.client, &engine.postfix, &engine.dovecot]);
    if config.database.location == DbLocation::Local {
        groups.push(&engine.server);
    }
    if c.pop3 {
        groups.push(&p.pop3);
    }
    if c.managesieve {
        groups.push(&p.managesieve);
    }
    if c.opendkim {
        groups.extend([&p.opendkim, &engine.opendkim]);
    }
    if c.amavis {
        groups.extend([&p.amavis, &engine.amavis]);
    }
    if c.spamassassin {
        groups.push(&p.spamassassin);
    }
    if c.clamav {
        groups.push(&p.clamav);
    }
    let mut out: Vec<String> = Vec::new();
    for name in groups.into_iter().flatten() {
        if !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

/// The packages of `names` that are not installed.
fn missing(distro: &Distro, names: &[String]) -> StepResult<Vec<String>> {
    match distro.facts.package_manager {
        PackageManager::Apt => {
            // Unknown packages make dpkg-query exit 1; they are simply not installed.
            let out = Cmd::new("dpkg-query")
                .args(["-W", "-f", "${Package} ${db:Status-Abbrev}\\n"])
                .args(names.iter().cloned())
                .output()?;
            let installed: Vec<&str> = out
                .stdout
                .lines()
                .filter_map(|l| {
                    let (name, status) = l.split_once(' ')?;
                    status.starts_with("ii").then_some(name)
                })
                .collect();
            Ok(names
                .iter()
                .filter(|n| !installed.contains(&n.as_str()))
                .cloned()
                .collect())
        }
        PackageManager::Dnf => {
            let mut out = Vec::new();
            for n in names {
                // rpm -q also answers for a capability another package provides.
                if !Cmd::new("rpm")
                    .args(["-q", "--whatprovides", n])
                    .output()?
                    .success
                {
                    out.push(n.clone());
                }
            }
            Ok(out)
        }
    }
}

/// apt's "don't start services" switch (policy-rc.d exiting 101), marked as ours so that a
/// copy left by a killed install is recognised and removed.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";
const POLICY_MARK: &str = "# modobox: services held back while packages install";

/// dpkg leaves files in its `updates` directory when it was interrupted (an install killed in
/// the middle of the packages step); apt refuses to work until `dpkg --configure -a` ran.
const DPKG_UPDATES: &str = "/var/lib/dpkg/updates";

fn dpkg_interrupted() -> bool {
    std::fs::read_dir(DPKG_UPDATES).is_ok_and(|mut d| d.next().is_some())
}

fn our_policy_left() -> bool {
    std::fs::read_to_string(POLICY_RC_D).is_ok_and(|t| t.contains(POLICY_MARK))
}

/// The commands `apply` runs, for the plan and the RHEL tests.
pub fn commands(config: &Config, distro: &Distro, missing: &[String]) -> Vec<Cmd> {
    let mut cmds = Vec::new();
    if distro.facts.package_manager == PackageManager::Apt {
        cmds.push(Cmd::new("debconf-set-selections").stdin(format!(
            "postfix postfix/main_mailer_type select No configuration\n\
             postfix postfix/mailname string {}\n",
            config.hostname
        )));
    }
    cmds.extend(install_commands(distro, missing));
    cmds
}

/// The commands that install `packages` from the distribution (its extra repositories
/// enabled first), without preseeding: also run before an install, to get restic for
/// `install --restore`.
pub fn install_commands(distro: &Distro, packages: &[String]) -> Vec<Cmd> {
    match distro.facts.package_manager {
        PackageManager::Apt => vec![
            Cmd::new("apt-get").args(["-q", "update"]),
            Cmd::new("apt-get")
                .args([
                    "-q",
                    "-y",
                    "--no-install-recommends",
                    // Another apt (unattended-upgrades) may hold the lock for a while.
                    "-o",
                    "DPkg::Lock::Timeout=300",
                    "-o",
                    "Dpkg::Options::=--force-confdef",
                    "-o",
                    "Dpkg::Options::=--force-confold",
                    "install",
                ])
                .args(packages.iter().cloned())
                .env("DEBIAN_FRONTEND", "noninteractive"),
        ],
        PackageManager::Dnf => {
            let mut cmds = Vec::new();
            let repos = &distro.facts.repositories;
            if repos.iter().any(|r| r == "epel") {
                cmds.push(Cmd::new("dnf").args(["-y", "install", "epel-release"]));
            }
            // The others are repositories the release ships disabled (CRB on 9, PowerTools on 8).
            let others: Vec<&String> = repos.iter().filter(|r| *r != "epel").collect();
            if !others.is_empty() {
                cmds.push(Cmd::new("dnf").args(["-y", "install", "dnf-plugins-core"]));
            }
            for r in others {
                cmds.push(Cmd::new("dnf").args(["config-manager", "--set-enabled", r]));
            }
            cmds.push(
                Cmd::new("dnf")
                    .args(["-y", "install"])
                    .args(packages.iter().cloned()),
            );
            cmds
        }
    }
}

#[derive(Debug)]
pub struct Packages;

impl Step for Packages {
    fn name(&self) -> &'static str {
        "packages"
    }

    fn check(&self, ctx: &mut Ctx) -> StepResult<Check> {
        let mut changes = Vec::new();
        let missing = missing(&ctx.distro, &wanted(&ctx.config, &ctx.distro))?;
        if !missing.is_empty() {
            changes.push(format!("install {}", missing.join(" ")));
        }
        if our_policy_left() {
            changes.push(format!(
                "remove {POLICY_RC_D} left by an interrupted install"
            ));
        }
        if ctx.distro.facts.package_manager == PackageManager::Apt && dpkg_interrupted() {
            changes.push("finish the interrupted dpkg run (dpkg --configure -a)".into());
        }
        Ok(Check::from_changes(changes))
    }

    fn apply(&self, ctx: &mut Ctx) -> StepResult<()> {
        let missing = missing(&ctx.distro, &wanted(&ctx.config, &ctx.distro))?;
        let apt = ctx.distro.facts.package_manager == PackageManager::Apt;
        let policy = Path::new(POLICY_RC_D);
        let hold = apt && (!missing.is_empty() || dpkg_interrupted()) && !policy.exists();
        if hold {
            // Daemons would start with the distribution's configuration (and Postfix as an
            // open relay candidate); modobox starts them once its own files are in place.
            write_atomic(
                policy,
                format!("#!/bin/sh\n{POLICY_MARK}\nexit 101\n").as_bytes(),
                0o755,
                None,
            )
            .map_err(io_error(policy))?;
        }
        let result = (|| {
            if apt && dpkg_interrupted() {
                Cmd::new("dpkg")
                    .args(["--configure", "-a", "--force-confdef", "--force-confold"])
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .run()?;
            }
            if !missing.is_empty() {
                for cmd in commands(&ctx.config, &ctx.distro, &missing) {
                    cmd.run()?;
                }
            }
            Ok(())
        })();
        if our_policy_left() {
            std::fs::remove_file(policy).map_err(io_error(policy))?;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distro::DistroId;
    use crate::names::Hostname;

    fn setup(id: &str) -> (Config, Distro) {
        let config = Config::new(Hostname::parse("hostname", "mail.example.com").unwrap());
        let distro = Distro::load(&id.parse::<DistroId>().unwrap()).unwrap();
        (config, distro)
    }

    #[test]
    fn debian_packages_follow_components_and_engine() {
        let (mut config, distro) = setup("debian:12");
        let all = wanted(&config, &distro);
        for p in [
            "postfix-pgsql",
            "dovecot-pgsql",
            "postgresql",
            "amavisd-new",
            "clamav-daemon",
            "libopendbx1-pgsql",
            "dovecot-pop3d",
            "nginx",
        ] {
            assert!(all.iter().any(|x| x == p), "{p} missing from {all:?}");
        }
        config.components.clamav = false;
        config.components.pop3 = false;
        config.database.engine = Engine::Mysql;
        config.database.location = DbLocation::External;
        let fewer = wanted(&config, &distro);
        assert!(fewer.iter().any(|x| x == "postfix-mysql"));
        for p in [
            "clamav-daemon",
            "dovecot-pop3d",
            "mariadb-server",
            "postgresql",
        ] {
            assert!(!fewer.iter().any(|x| x == p), "{p} in {fewer:?}");
        }
        let apt = commands(&config, &distro, &fewer);
        assert!(apt[2].shown().contains("--force-confold"));
        assert!(apt[2].shown().contains(" postfix-mysql "));
        assert!(apt[0].shown() == "debconf-set-selections");
    }

    #[test]
    fn rhel_goes_through_dnf_with_epel_and_crb() {
        for (id, crb) in [("rocky:9", "crb"), ("almalinux:8", "powertools")] {
            let (config, distro) = setup(id);
            let all = wanted(&config, &distro);
            assert!(all.iter().any(|x| x == "postgresql-server"), "{all:?}");
            assert!(all.iter().any(|x| x == "clamd"));
            let cmds: Vec<String> = commands(&config, &distro, &all)
                .iter()
                .map(Cmd::shown)
                .collect();
            assert_eq!(cmds[0], "dnf -y install epel-release");
            assert_eq!(cmds[2], format!("dnf config-manager --set-enabled {crb}"));
            assert!(cmds[3].starts_with("dnf -y install "), "{cmds:?}");
            assert!(cmds[3].contains(" postfix-pgsql "));
        }
    }
}
