//! A minimal syslog socket for machines without a syslog daemon (the direct manager's
//! containers): what Postfix, Dovecot, Amavis and OpenDKIM send to /dev/log goes into modobox's
//! own log instead of nowhere, and the mail facility's lines also into the mail log file (as a
//! syslog daemon would write it), where the statistics' log parser reads them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::net::UnixDatagram;
use tokio::task::JoinHandle;

/// The mail facility (RFC 5424: 2).
const MAIL: u32 = 2;
/// The mail log is rotated to `<file>.1` past this size (the parser finishes `.1` first).
const MAX_MAIL_LOG: u64 = 64 << 20;

/// The mail log file the listeners append the mail facility's lines to.
#[derive(Debug)]
pub struct MailLog {
    path: PathBuf,
    hostname: String,
    file: Option<File>,
    max: u64,
}

impl MailLog {
    pub fn new(path: PathBuf, hostname: &str) -> Self {
        MailLog {
            path,
            hostname: hostname.to_string(),
            file: None,
            max: MAX_MAIL_LOG,
        }
    }

    /// One line, `2026-12-06T04:11:42.123456+00:00 HOST prog[pid]: text`: the time of arrival
    /// in UTC (the sender's classic timestamp has no year and no zone).
    fn append(&mut self, message: &str) -> std::io::Result<()> {
        let text = without_classic_timestamp(message);
        let line = format!(
            "{} {} {}\n",
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6f+00:00"),
            self.hostname,
            text.replace('\n', " ")
        );
        if self
            .file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .is_some_and(|m| m.len() + line.len() as u64 > self.max)
        {
            self.file = None;
            let mut old = self.path.as_os_str().to_owned();
            old.push(".1");
            std::fs::rename(&self.path, old)?;
        }
        if self.file.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o640)
                    .open(&self.path)?,
            );
        }
        match self.file.as_mut() {
            Some(f) => f.write_all(line.as_bytes()),
            None => Ok(()),
        }
    }
}

/// Listens on each path nobody else listens on; the tasks end when the handles are dropped.
/// With `mail_log`, the mail facility's lines are also appended to that file.
pub fn listen(paths: &[PathBuf], mail_log: Option<MailLog>) -> Vec<Listener> {
    let mail_log = mail_log.map(|m| Arc::new(Mutex::new(m)));
    let mut out = Vec::new();
    for path in paths {
        match bind(path, mail_log.clone()) {
            Ok(Some(l)) => out.push(l),
            Ok(None) => tracing::debug!("{}: a syslog daemon listens there", path.display()),
            Err(e) => tracing::warn!("{}: cannot listen for syslog: {e}", path.display()),
        }
    }
    out
}

/// A bound socket and its reader; unbound and removed on drop.
#[derive(Debug)]
pub struct Listener {
    path: PathBuf,
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn bind(path: &Path, mail_log: Option<Arc<Mutex<MailLog>>>) -> std::io::Result<Option<Listener>> {
    if path.exists() {
        // A socket someone answers on belongs to a running syslog daemon.
        let probe = std::os::unix::net::UnixDatagram::unbound()?;
        if probe.connect(path).is_ok() {
            return Ok(None);
        }
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let socket = UnixDatagram::bind(path)?;
    // Every daemon, whatever its user, may log.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        let mut failed = false;
        while let Ok(n) = socket.recv(&mut buf).await {
            let line = String::from_utf8_lossy(&buf[..n]);
            let text = message(&line);
            tracing::info!(target: "modobox::syslog", "{text}");
            let Some(log) = mail_log.as_ref().filter(|_| facility(&line) == Some(MAIL)) else {
                continue;
            };
            let Ok(mut log) = log.lock() else { continue };
            match log.append(text) {
                Ok(()) => failed = false,
                // Said once per failure streak, not once per line.
                Err(e) if !failed => {
                    failed = true;
                    tracing::warn!("{}: cannot write the mail log: {e}", log.path.display());
                }
                Err(_) => {}
            }
        }
    });
    Ok(Some(Listener {
        path: path.to_path_buf(),
        task,
    }))
}

/// The facility of a `<PRI>`-prefixed message.
fn facility(raw: &str) -> Option<u32> {
    let (pri, _) = raw.strip_prefix('<')?.split_once('>')?;
    pri.parse::<u32>().ok().map(|p| p >> 3)
}

/// "Dec  6 04:11:42 postfix/smtpd[1]: x" → "postfix/smtpd[1]: x" (what syslog(3) sends).
fn without_classic_timestamp(text: &str) -> &str {
    let b = text.as_bytes();
    let classic = b.len() > 16
        && b[3] == b' '
        && b[6] == b' '
        && b[9] == b':'
        && b[12] == b':'
        && b[15] == b' '
        && b[..3].iter().all(u8::is_ascii_alphabetic);
    if classic {
        &text[16..]
    } else {
        text
    }
}

/// Strips the `<PRI>` and the trailing newline: "<22>May  3 10:00:00 postfix/smtpd[42]: x"
/// becomes "May  3 10:00:00 postfix/smtpd[42]: x".
fn message(raw: &str) -> &str {
    let raw = raw.trim_end_matches(['\n', '\0']);
    match raw.strip_prefix('<').and_then(|r| r.split_once('>')) {
        Some((pri, rest)) if pri.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_priority_is_stripped() {
        assert_eq!(
            message("<22>postfix/smtpd[1]: hi\n"),
            "postfix/smtpd[1]: hi"
        );
        assert_eq!(message("no priority"), "no priority");
        assert_eq!(message("<x>odd"), "<x>odd");
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_live_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev/log");
        let first = listen(std::slice::from_ref(&path), None);
        assert_eq!(first.len(), 1);
        // Someone listens: a second listener leaves it alone.
        assert!(listen(std::slice::from_ref(&path), None).is_empty());
        let sender = std::os::unix::net::UnixDatagram::unbound().unwrap();
        sender.send_to(b"<13>test: hello", &path).unwrap();
        drop(first);
        assert!(!path.exists(), "the socket is removed with its listener");
        // A socket file left by a dead daemon is replaced.
        let stale = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        drop(stale);
        assert_eq!(listen(std::slice::from_ref(&path), None).len(), 1);
    }

    #[tokio::test]
    async fn mail_lines_go_to_the_mail_log_in_a_format_the_parser_reads() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("log");
        let log_path = dir.path().join("var/log/mail.log");
        let mut mail_log = MailLog::new(log_path.clone(), "mail.example.test");
        mail_log.max = 700;
        let _l = listen(std::slice::from_ref(&sock), Some(mail_log));
        let sender = std::os::unix::net::UnixDatagram::unbound().unwrap();
        // mail.info (2*8+6 = 22) twice, then daemon.info (30): only the mail lines are written.
        sender
            .send_to(
                b"<22>Dec  6 04:11:42 postfix/smtpd[7]: connect from x[192.0.2.1]\n",
                &sock,
            )
            .unwrap();
        sender
            .send_to(
                b"<22>amavis[9]: (09-01) Passed CLEAN {RelayedInbound}",
                &sock,
            )
            .unwrap();
        sender.send_to(b"<30>sshd[3]: not mail", &sock).unwrap();
        let text = wait_for(&log_path, 2).await;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].ends_with(" mail.example.test postfix/smtpd[7]: connect from x[192.0.2.1]")
        );
        assert!(lines[1]
            .ends_with(" mail.example.test amavis[9]: (09-01) Passed CLEAN {RelayedInbound}"));
        // RFC 3339 in UTC with microseconds, which the statistics' parser reads and counts.
        assert_eq!(&lines[0][10..11], "T");
        assert_eq!(&lines[0][26..33], "+00:00 ");
        sender
            .send_to(b"<22>Dec  6 04:11:43 postfix/smtpd[7]: NOQUEUE: reject: RCPT from x[192.0.2.1]: 550 5.1.1 <no@example.test>: Recipient address rejected: User unknown; from=<a@b.test> to=<no@example.test> proto=ESMTP helo=<x>", &sock)
            .unwrap();
        let text = wait_for(&log_path, 3).await;
        use crate::stats::parser::{Counter, Domains, Parser, Zone};
        let mut parser = Parser::new(
            Domains::new(["example.test"]),
            Zone::Fixed(0),
            chrono::Utc::now(),
        );
        parser.feed(text.as_bytes());
        assert_eq!(parser.input.skipped, 0, "{text}");
        assert_eq!(parser.totals()["example.test"].get(Counter::Reject), 1);
        // Past its size the file is rotated to .1, as the parser expects.
        for i in 0..5 {
            sender
                .send_to(
                    format!("<22>postfix/qmgr[8]: line {i} of some length to fill the file")
                        .as_bytes(),
                    &sock,
                )
                .unwrap();
        }
        let mut rotated = log_path.as_os_str().to_owned();
        rotated.push(".1");
        let rotated = PathBuf::from(rotated);
        for _ in 0..100 {
            if rotated.exists()
                && std::fs::read_to_string(&log_path)
                    .unwrap_or_default()
                    .contains("line 4")
            {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&log_path).unwrap();
        assert!(old.contains("connect from") && !new.contains("connect from"));
        assert!(new.contains("line 4"));
        assert!(old.len() <= 700 && new.len() <= 700);
    }

    async fn wait_for(path: &Path, lines: usize) -> String {
        for _ in 0..100 {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.lines().count() >= lines {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                return std::fs::read_to_string(path).unwrap();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("{} did not get {lines} lines", path.display());
    }
}
