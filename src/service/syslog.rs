//! A minimal syslog socket for machines without a syslog daemon (the direct manager's
//! containers): what Postfix, Dovecot, Amavis and OpenDKIM send to /dev/log goes into modobox's
//! own log instead of nowhere.

use std::path::{Path, PathBuf};

use tokio::net::UnixDatagram;
use tokio::task::JoinHandle;

/// Listens on each path nobody else listens on; the tasks end when the handles are dropped.
pub fn listen(paths: &[PathBuf]) -> Vec<Listener> {
    let mut out = Vec::new();
    for path in paths {
        match bind(path) {
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

fn bind(path: &Path) -> std::io::Result<Option<Listener>> {
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
        while let Ok(n) = socket.recv(&mut buf).await {
            let line = String::from_utf8_lossy(&buf[..n]);
            tracing::info!(target: "modobox::syslog", "{}", message(&line));
        }
    });
    Ok(Some(Listener {
        path: path.to_path_buf(),
        task,
    }))
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
        let first = listen(std::slice::from_ref(&path));
        assert_eq!(first.len(), 1);
        // Someone listens: a second listener leaves it alone.
        assert!(listen(std::slice::from_ref(&path)).is_empty());
        let sender = std::os::unix::net::UnixDatagram::unbound().unwrap();
        sender.send_to(b"<13>test: hello", &path).unwrap();
        drop(first);
        assert!(!path.exists(), "the socket is removed with its listener");
        // A socket file left by a dead daemon is replaced.
        let stale = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        drop(stale);
        assert_eq!(listen(std::slice::from_ref(&path)).len(), 1);
    }
}
