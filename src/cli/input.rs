//! What the commands read from the operator: confirmations, passwords (prompt or standard
//! input, never an argument), domain names and expiry dates.

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Duration, Utc};

use crate::cli::PasswordSource;
use crate::names::{DomainName, Username};
use crate::secrets::Secret;
use crate::store::accounts::Password;

pub(super) fn confirm(yes: bool, question: &str) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("{question} Refusing without a terminal: add --yes");
    }
    if inquire::Confirm::new(question)
        .with_default(false)
        .prompt()?
    {
        Ok(())
    } else {
        bail!("cancelled")
    }
}

/// A new password: generated and printed once, typed twice at a prompt, or the first line of
/// standard input. Never an argument (it would show in `ps` and shell history).
pub(super) fn read_password(source: &PasswordSource, who: &str) -> Result<Password> {
    if source.generate_password {
        let p = Secret::generate(20);
        println!("password for {who}: {}", p.expose());
        return Ok(Password::Clear(p.expose().to_string()));
    }
    if std::io::stdin().is_terminal() {
        let p = inquire::Password::new(&format!("Password for {who}:"))
            .with_display_mode(inquire::PasswordDisplayMode::Masked)
            .with_custom_confirmation_message("Again:")
            .prompt()?;
        return Ok(Password::Clear(p));
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let p = line.trim_end_matches(['\n', '\r']).to_string();
    if p.is_empty() {
        bail!("password: nothing on standard input (or use --generate-password)");
    }
    Ok(Password::Clear(p))
}

/// An account named on the command line, in any case, as the store finds it.
pub(super) fn account_name(v: &str) -> Username {
    Username::existing(&v.to_lowercase())
}

pub(super) fn parse_domain(field: &str, v: &str) -> Result<DomainName> {
    Ok(DomainName::parse(field, v)?)
}

pub(super) fn parse_expiry(v: &str) -> Result<Option<DateTime<Utc>>> {
    if v.eq_ignore_ascii_case("never") {
        return Ok(None);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    let (n, unit) = v.split_at(v.len().saturating_sub(1));
    let n: i64 = n
        .parse()
        .ok()
        .filter(|n| *n > 0 && *n < 100_000)
        .with_context(|| {
            format!(
                "expires: {v:?} is neither an RFC 3339 date-time, a duration (12h, 7d) nor `never`"
            )
        })?;
    let d = match unit {
        "m" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        "w" => Duration::weeks(n),
        _ => bail!("expires: the unit of {v:?} must be m, h, d or w"),
    };
    Ok(Some(Utc::now() + d))
}
