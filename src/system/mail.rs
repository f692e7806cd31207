//! Alert mail: one plain-text message handed to the local `sendmail -t -oi`, so it is queued
//! even while Postfix is down. Recipients are validated addresses; the subject is flattened to
//! one line so that no value can add a header.

use super::cmd::{Cmd, CmdError};
use crate::names::{EmailAddress, Hostname};

/// The sendmail every Postfix install provides (also Exim's and OpenSMTPD's compatibility path).
pub const SENDMAIL: &str = "/usr/sbin/sendmail";

/// One message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: Vec<EmailAddress>,
    pub subject: String,
    pub body: String,
}

impl Mail {
    /// The message text as sendmail reads it (`-t`: recipients from the headers).
    pub fn render(&self, from: &str) -> String {
        let to: Vec<&str> = self.to.iter().map(EmailAddress::as_str).collect();
        format!(
            "To: {to}\nFrom: {from}\nSubject: {subject}\nContent-Type: text/plain; charset=utf-8\n\n{body}\n",
            to = to.join(", "),
            subject = one_line(&self.subject),
            body = self.body.trim_end(),
        )
    }
}

/// A header value on one line: control characters (CR, LF, tabs) become spaces.
fn one_line(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    flat.trim().chars().take(200).collect()
}

/// `modobox <root@hostname>`: the sender of every alert.
pub fn sender(hostname: &Hostname) -> String {
    format!("modobox <root@{hostname}>")
}

/// Sends through the local sendmail. Blocking: async callers use `spawn_blocking`.
pub fn send(hostname: &Hostname, mail: &Mail) -> Result<(), CmdError> {
    if mail.to.is_empty() {
        return Ok(());
    }
    Cmd::new(SENDMAIL)
        .args(["-t", "-oi"])
        .stdin(mail.render(&sender(hostname)))
        .run()
        .map(drop)
}

/// The daemon's alert: to the admin address (none configured: nothing sent), subject = first
/// line of the text.
pub fn alert_admin(
    admin: Option<EmailAddress>,
    hostname: &Hostname,
    text: &str,
) -> Result<(), CmdError> {
    let Some(to) = admin else {
        return Ok(());
    };
    let mail = Mail {
        to: vec![to],
        subject: format!(
            "[modobox] {host}: {first}",
            host = hostname,
            first = text.lines().next().unwrap_or_default()
        ),
        body: format!(
            "{text}\n\n`modobox status` on {host} shows the current state.",
            host = hostname
        ),
    };
    send(hostname, &mail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_cannot_add_headers() {
        let mail = Mail {
            to: vec![EmailAddress::parse("to", "admin@example.com").unwrap()],
            subject: "listed\r\nBcc: victim@example.org".into(),
            body: "text\n".into(),
        };
        let text = mail.render("modobox <root@mail.example.com>");
        assert!(text.starts_with("To: admin@example.com\nFrom: modobox <root@mail.example.com>\n"));
        assert!(text.contains("Subject: listed  Bcc: victim@example.org\n"));
        assert_eq!(text.lines().filter(|l| l.starts_with("Bcc:")).count(), 0);
        assert!(text.ends_with("\n\ntext\n"));
    }
}
