//! RHEL family only: the SELinux booleans and file contexts the stack needs, and the firewalld
//! services to open. (Debian and Ubuntu ship neither enabled by default.)

use super::{Check, Ctx, Step, StepResult};
use crate::system::cmd::Cmd;

/// (boolean, why). nginx proxies the admin UI to modobox on loopback.
pub const SELINUX_BOOLEANS: &[(&str, &str)] = &[(
    "httpd_can_network_connect",
    "nginx forwards the admin UI to modobox on 127.0.0.1",
)];

/// (path pattern, type) for directories outside the distribution's defaults.
pub fn file_contexts(ctx: &Ctx) -> Vec<(String, &'static str)> {
    let mut out = vec![(
        format!("{}(/.*)?", ctx.config.paths.mail_root),
        "mail_spool_t",
    )];
    if ctx.config.components.opendkim {
        out.push((
            format!("{}(/.*)?", ctx.config.paths.dkim_keys),
            "dkim_milter_private_key_t",
        ));
    }
    out
}

fn selinux_enabled() -> bool {
    Cmd::new("selinuxenabled").output().is_ok_and(|o| o.success)
}

#[derive(Debug)]
pub struct Selinux;

impl Step for Selinux {
    fn name(&self) -> &'static str {
        "selinux"
    }

    fn check(&self, ctx: &mut Ctx) -> StepResult<Check> {
        if !selinux_enabled() {
            return Ok(Check::Done);
        }
        let mut changes = Vec::new();
        for (b, why) in SELINUX_BOOLEANS {
            let on = Cmd::new("getsebool")
                .arg(*b)
                .output()
                .is_ok_and(|o| o.stdout.trim_end().ends_with("--> on"));
            if !on {
                changes.push(format!("setsebool -P {b} on ({why})"));
            }
        }
        let listed = Cmd::new("semanage")
            .args(["fcontext", "-l", "-C"])
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        for (pattern, t) in file_contexts(ctx) {
            if !listed
                .lines()
                .any(|l| l.starts_with(&pattern) && l.contains(t))
            {
                changes.push(format!("label {pattern} as {t}"));
            }
        }
        Ok(Check::from_changes(changes))
    }

    fn apply(&self, ctx: &mut Ctx) -> StepResult<()> {
        for (b, _) in SELINUX_BOOLEANS {
            Cmd::new("setsebool").args(["-P", b, "on"]).run()?;
        }
        for (pattern, t) in file_contexts(ctx) {
            Cmd::new("semanage")
                .args(["fcontext", "-a", "-t", t, &pattern])
                .run()?;
            let dir = pattern.trim_end_matches("(/.*)?");
            Cmd::new("restorecon").args(["-R", dir]).run()?;
        }
        Ok(())
    }
}

/// firewalld services for the ports the stack serves.
pub fn firewall_services(ctx: &Ctx) -> Vec<&'static str> {
    let mut out = vec![
        "smtp",
        "smtps",
        "smtp-submission",
        "imap",
        "imaps",
        "http",
        "https",
    ];
    if ctx.config.components.pop3 {
        out.extend(["pop3", "pop3s"]);
    }
    if ctx.config.components.managesieve {
        out.push("managesieve");
    }
    out
}

#[derive(Debug)]
pub struct Firewall;

fn firewalld_running() -> bool {
    Cmd::new("firewall-cmd")
        .arg("--state")
        .output()
        .is_ok_and(|o| o.success)
}

impl Step for Firewall {
    fn name(&self) -> &'static str {
        "firewall"
    }

    fn check(&self, ctx: &mut Ctx) -> StepResult<Check> {
        if !firewalld_running() {
            return Ok(Check::Done);
        }
        let open = Cmd::new("firewall-cmd")
            .args(["--permanent", "--list-services"])
            .run()?
            .stdout;
        let open: Vec<&str> = open.split_whitespace().collect();
        Ok(Check::from_changes(
            firewall_services(ctx)
                .into_iter()
                .filter(|s| !open.contains(s))
                .map(|s| format!("open the firewalld service {s}"))
                .collect(),
        ))
    }

    fn apply(&self, ctx: &mut Ctx) -> StepResult<()> {
        for s in firewall_services(ctx) {
            Cmd::new("firewall-cmd")
                .args(["--permanent", &format!("--add-service={s}")])
                .run()?;
        }
        Cmd::new("firewall-cmd").arg("--reload").run()?;
        Ok(())
    }
}
