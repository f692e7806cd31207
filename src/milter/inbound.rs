//! The inbound authentication milter: port 25's smtpd asks it about every message from
//! outside. It checks SPF (HELO and MAIL FROM), every DKIM signature and the sender domain's
//! DMARC policy with `mail-auth` (Stalwart's maintained library), writes the results into an
//! `Authentication-Results` header of this server, and applies `[antispam]`'s policy:
//!
//! - DMARC fails under `p=reject`: refused (550 5.7.1), or marked for quarantine when
//!   `dmarc_reject_action = "quarantine"`; under `p=quarantine`: marked (SpamAssassin scores
//!   the mark, see templates/amavis/modobox-auth.cf).
//! - SPF fails (`-all`): refused (550 5.7.23) unless DMARC passes or a DKIM signature of the
//!   envelope sender's domain passes — forwarded mail breaks SPF, not DKIM.
//! - A DNS failure never refuses: the header says `temperror` and the message goes on.
//!
//! Loopback clients and logged-in senders are not checked. Headers of the same names that
//! claim to come from this server are deleted first (RFC 8601 section 5), so downstream
//! filters only ever see this server's results.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mail_auth::dmarc::Policy;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, MessageAuthenticator,
    SpfResult,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::protocol::{self, *};
use crate::config::{Antispam, DmarcRejectAction};

/// Where it listens (loopback; main.cf names it for port 25).
pub const PORT: u16 = 8895;

pub fn address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], PORT))
}

/// The header SpamAssassin's rule reads (and the milter removes from senders).
pub const MARK_HEADER: &str = "X-Modobox-DMARC";

/// At most this many MTA connections at once.
const MAX_SESSIONS: usize = 256;
/// Messages larger than this are not DKIM-checked (kept in memory meanwhile); they are never
/// refused for DMARC, only for SPF.
const MAX_CHECKED_BYTES: usize = 32 << 20;
/// All DNS work for one message; past it the message goes on with `temperror`.
const CHECK_DEADLINE: Duration = Duration::from_secs(40);

/// What port 25 does with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Accept, marked for the spam quarantine (why).
    Quarantine(String),
    /// 550 with this enhanced code and text.
    Refuse(String),
}

/// DMARC's outcome as the policy needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcView {
    /// The From: header domain; empty when DMARC did not apply (no record, several domains).
    pub domain: String,
    pub has_policy: bool,
    pub policy: Policy,
    pub pass: bool,
    /// A DNS failure on the way: neither pass nor fail can be said.
    pub temporary: bool,
}

/// The policy, apart from the DNS work (unit-tested on its own).
pub fn judge(
    settings: &Antispam,
    client: IpAddr,
    spf: SpfResult,
    spf_domain: &str,
    dkim_pass_domains: &[String],
    dmarc: &DmarcView,
    exempt: bool,
) -> Verdict {
    if exempt {
        return Verdict::Accept;
    }
    let dmarc_fails = dmarc.has_policy && !dmarc.pass && !dmarc.temporary;
    if settings.dmarc && dmarc_fails {
        let why = format!(
            "the DMARC policy of {} ({}) is not met: neither SPF nor DKIM authenticates \
             the message for that domain",
            dmarc.domain,
            policy_name(dmarc.policy)
        );
        match dmarc.policy {
            Policy::Reject if settings.dmarc_reject_action == DmarcRejectAction::Reject => {
                return Verdict::Refuse(format!("5.7.1 {why}"));
            }
            Policy::Reject | Policy::Quarantine => return Verdict::Quarantine(why),
            _ => {}
        }
    }
    if settings.spf_reject && spf == SpfResult::Fail && !dmarc.pass {
        let rescued = dkim_pass_domains
            .iter()
            .any(|d| same_or_parent(d, spf_domain));
        if !rescued {
            return Verdict::Refuse(format!(
                "5.7.23 the SPF record of {spf_domain} does not allow {client} to send its mail"
            ));
        }
    }
    Verdict::Accept
}

fn policy_name(p: Policy) -> &'static str {
    match p {
        Policy::Reject => "p=reject",
        Policy::Quarantine => "p=quarantine",
        _ => "p=none",
    }
}

/// `signer` is `domain` or one of its parents (a DKIM signature by example.org vouches for
/// mail.example.org's envelope sender, as DMARC's relaxed alignment would).
fn same_or_parent(signer: &str, domain: &str) -> bool {
    let (s, d) = (signer.to_ascii_lowercase(), domain.to_ascii_lowercase());
    s.contains('.') && (d == s || d.ends_with(&format!(".{s}")))
}

fn domain_of(address: &str) -> Option<&str> {
    address
        .rsplit_once('@')
        .map(|(_, d)| d)
        .filter(|d| !d.is_empty())
}

/// The checks and the settings they answer to, shared by every session.
pub struct Checker {
    auth: MessageAuthenticator,
    hostname: String,
    settings: Antispam,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Checker({})", self.hostname)
    }
}

impl Checker {
    pub fn new(hostname: &str, settings: &Antispam) -> anyhow::Result<Self> {
        let resolver = crate::dns::resolver::hickory(settings.resolver, Duration::from_secs(10))
            .map_err(|e| anyhow::anyhow!("inbound milter resolver: {e}"))?;
        Ok(Checker {
            auth: MessageAuthenticator(resolver),
            hostname: hostname.to_ascii_lowercase(),
            settings: settings.clone(),
        })
    }

    fn exempt(&self, sender_domain: &str, from_domain: &str, recipients: &[String]) -> bool {
        let listed = |d: &str| {
            self.settings
                .exempt_sender_domains
                .iter()
                .any(|e| same_or_parent(e.as_str(), d))
        };
        if (!sender_domain.is_empty() && listed(sender_domain))
            || (!from_domain.is_empty() && listed(from_domain))
        {
            return true;
        }
        // A refusal at the end of the message refuses it for every recipient: one recipient of
        // an exempt domain keeps it.
        recipients.iter().any(|r| {
            domain_of(r).is_some_and(|d| {
                self.settings
                    .exempt_recipient_domains
                    .iter()
                    .any(|e| e.as_str().eq_ignore_ascii_case(d))
            })
        })
    }

    /// Checks one message; returns the verdict and the Authentication-Results value.
    pub async fn check(&self, m: &Envelope, raw: Option<&[u8]>) -> (Verdict, String) {
        let Some(ip) = m.client else {
            return (Verdict::Accept, format!("{}; none", self.hostname));
        };
        let sender = m.mail_from.as_str();
        let helo = if m.helo.is_empty() {
            "unknown"
        } else {
            m.helo.as_str()
        };
        let spf = self
            .auth
            .verify_spf(mail_auth::spf::verify::SpfParameters::verify(
                ip,
                helo,
                &self.hostname,
                sender,
            ))
            .await;
        let spf_domain = domain_of(sender).unwrap_or(helo).to_ascii_lowercase();
        let message = raw.and_then(AuthenticatedMessage::parse);
        let Some(message) = message else {
            // Too large to check DKIM, or not a message mail-auth can read: SPF alone.
            let results = AuthenticationResults::new(&self.hostname)
                .with_spf_mailfrom_result(&spf, ip, sender, helo)
                .to_string();
            let view = DmarcView {
                domain: String::new(),
                has_policy: false,
                policy: Policy::Unspecified,
                pass: false,
                temporary: false,
            };
            let exempt = self.exempt(&spf_domain, "", &m.recipients);
            let v = judge(
                &self.settings,
                ip,
                spf.result(),
                &spf_domain,
                &[],
                &view,
                exempt,
            );
            return (v, results);
        };
        let dkim = self.auth.verify_dkim(&message).await;
        let dmarc = self
            .auth
            .verify_dmarc(mail_auth::dmarc::verify::DmarcParameters::new(
                &message,
                &dkim,
                &spf_domain,
                &spf,
            ))
            .await;
        let from_domain = message
            .from
            .first()
            .and_then(|f| domain_of(f))
            .unwrap_or("")
            .to_ascii_lowercase();
        let results = AuthenticationResults::new(&self.hostname)
            .with_spf_mailfrom_result(&spf, ip, sender, helo)
            .with_dkim_results(&dkim, &from_domain)
            .with_dmarc_result(&dmarc)
            .to_string();
        let dkim_pass: Vec<String> = dkim
            .iter()
            .filter(|o| o.result() == &DkimResult::Pass)
            .filter_map(|o| o.signature().map(|s| s.d.to_ascii_lowercase()))
            .collect();
        let overall = dmarc.result();
        let view = DmarcView {
            domain: dmarc.domain().to_string(),
            has_policy: !matches!(overall, DmarcResult::None)
                && !matches!(dmarc.policy(), Policy::Unspecified),
            policy: dmarc.policy(),
            pass: overall == DmarcResult::Pass,
            temporary: matches!(overall, DmarcResult::TempError(_)),
        };
        let exempt = self.exempt(&spf_domain, &from_domain, &m.recipients);
        let v = judge(
            &self.settings,
            ip,
            spf.result(),
            &spf_domain,
            &dkim_pass,
            &view,
            exempt,
        );
        (v, results)
    }
}

/// One message as the MTA shows it.
#[derive(Debug, Default)]
pub struct Envelope {
    pub client: Option<IpAddr>,
    pub helo: String,
    pub mail_from: String,
    pub recipients: Vec<String>,
    /// Header fields as received: name, value (with its leading space), in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub too_large: bool,
}

impl Envelope {
    /// The message as it came in (CRLF line ends), for DKIM.
    pub fn raw(&self) -> Option<Vec<u8>> {
        if self.too_large {
            return None;
        }
        let mut out = Vec::with_capacity(self.body.len() + 4096);
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            out.extend_from_slice(value.replace("\r\n", "\n").replace('\n', "\r\n").as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        Some(out)
    }

    /// 1-based positions, among fields of the same name, of the fields to delete: this
    /// server's Authentication-Results (by its authserv-id) and every mark header.
    pub fn forged(&self, hostname: &str) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        let (mut ar, mut mark) = (0u32, 0u32);
        for (name, value) in &self.headers {
            if name.eq_ignore_ascii_case("Authentication-Results") {
                ar += 1;
                let id = value
                    .trim_start()
                    .split([';', ' ', '\t', '\r', '\n'])
                    .next();
                if id.is_some_and(|id| id.eq_ignore_ascii_case(hostname)) {
                    out.push((name.clone(), ar));
                }
            } else if name.eq_ignore_ascii_case(MARK_HEADER) {
                mark += 1;
                out.push((name.clone(), mark));
            }
        }
        out
    }
}

pub async fn serve(
    listener: TcpListener,
    checker: Arc<Checker>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    crate::system::net::serve_connections(
        "inbound milter",
        listener,
        MAX_SESSIONS,
        move |stream| {
            let checker = checker.clone();
            async move { session(stream, &checker).await }
        },
        shutdown,
    )
    .await
}

/// The client address of a CONNECT packet: hostname, family, port, address.
fn connect_address(data: &[u8]) -> Option<IpAddr> {
    let nul = data.iter().position(|b| *b == 0)?;
    let rest = data.get(nul + 1..)?;
    let family = *rest.first()?;
    if family != b'4' && family != b'6' {
        return None;
    }
    let addr = strings(rest.get(3..)?).into_iter().next()?;
    addr.trim_start_matches("IPv6:").parse().ok()
}

fn unbracket(arg: &str) -> String {
    arg.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_ascii_lowercase()
}

/// One MTA connection: any number of messages, until QUIT.
pub async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    checker: &Checker,
) -> std::io::Result<()> {
    let mut leading_space = false;
    let mut client: Option<IpAddr> = None;
    let mut helo = String::new();
    let mut authenticated = false;
    let mut m = Envelope::default();
    while let Some(p) = read(&mut stream).await? {
        match p.command {
            OPTNEG => {
                let reply = negotiate(
                    &p.data,
                    ACTION_ADD_HEADERS | ACTION_CHANGE_HEADERS,
                    NO_UNKNOWN | NO_DATA | HEADER_LEADING_SPACE,
                );
                leading_space = negotiated(&reply, HEADER_LEADING_SPACE);
                write(&mut stream, OPTNEG, &reply).await?;
            }
            MACRO => {
                for (name, value) in macros(&p.data) {
                    if name == "{auth_authen}" && !value.is_empty() {
                        authenticated = true;
                    }
                }
            }
            CONNECT => {
                client = connect_address(&p.data);
                if client.is_none_or(|ip| ip.is_loopback()) {
                    // Loopback (this machine's own mail) and local sockets: not checked.
                    write(&mut stream, ACCEPT, &[]).await?;
                } else {
                    write(&mut stream, CONTINUE, &[]).await?;
                }
            }
            protocol::HELO => {
                helo = strings(&p.data).into_iter().next().unwrap_or_default();
                write(&mut stream, CONTINUE, &[]).await?;
            }
            MAIL => {
                m = Envelope {
                    client,
                    helo: helo.clone(),
                    mail_from: strings(&p.data)
                        .first()
                        .map(|s| unbracket(s))
                        .unwrap_or_default(),
                    ..Envelope::default()
                };
                if authenticated {
                    write(&mut stream, ACCEPT, &[]).await?;
                } else {
                    write(&mut stream, CONTINUE, &[]).await?;
                }
            }
            RCPT => {
                if let Some(r) = strings(&p.data).first() {
                    if m.recipients.len() < 1000 {
                        m.recipients.push(unbracket(r));
                    }
                }
                write(&mut stream, CONTINUE, &[]).await?;
            }
            HEADER => {
                let f = strings(&p.data);
                let name = f.first().cloned().unwrap_or_default();
                let mut value = f.get(1).cloned().unwrap_or_default();
                if !leading_space {
                    value.insert(0, ' ');
                }
                m.body_room(name.len() + value.len());
                if !m.too_large {
                    m.headers.push((name, value));
                }
                write(&mut stream, CONTINUE, &[]).await?;
            }
            BODY => {
                m.body_room(p.data.len());
                if !m.too_large {
                    m.body.extend_from_slice(&p.data);
                }
                write(&mut stream, CONTINUE, &[]).await?;
            }
            EOH => write(&mut stream, CONTINUE, &[]).await?,
            BODYEOB => {
                let raw = m.raw();
                let checked =
                    tokio::time::timeout(CHECK_DEADLINE, checker.check(&m, raw.as_deref())).await;
                let (verdict, results) = match checked {
                    Ok(r) => r,
                    Err(_) => (
                        Verdict::Accept,
                        format!(
                            "{}; dmarc=temperror (checks took over {} s)",
                            checker.hostname,
                            CHECK_DEADLINE.as_secs()
                        ),
                    ),
                };
                let id = m.mail_from.clone();
                match verdict {
                    Verdict::Refuse(text) => {
                        tracing::info!(
                            "inbound milter: refused <{id}> from {}: {text}",
                            client.map(|c| c.to_string()).unwrap_or_default()
                        );
                        write(&mut stream, REPLYCODE, &reply_code("550", &text)).await?;
                    }
                    v => {
                        for (name, index) in m.forged(&checker.hostname).into_iter().rev() {
                            write(&mut stream, CHGHEADER, &header_change(index, &name, "")).await?;
                        }
                        // Folded as mail-auth folds it, with the MTA's line ends; the leading
                        // space is ours to give when the MTA keeps header spaces as sent.
                        let space = if leading_space { " " } else { "" };
                        let value = format!("{space}{}", results.replace("\r\n", "\n"));
                        write(
                            &mut stream,
                            INSHEADER,
                            &header_change(0, "Authentication-Results", &value),
                        )
                        .await?;
                        if let Verdict::Quarantine(why) = v {
                            tracing::info!("inbound milter: marked <{id}> for quarantine: {why}");
                            let mark = format!("{space}quarantine ({why})");
                            write(
                                &mut stream,
                                INSHEADER,
                                &header_change(0, MARK_HEADER, &mark),
                            )
                            .await?;
                        }
                        write(&mut stream, ACCEPT, &[]).await?;
                    }
                }
                m = Envelope::default();
            }
            ABORT => m = Envelope::default(),
            QUIT => return Ok(()),
            QUIT_NC => {
                client = None;
                helo.clear();
                authenticated = false;
                m = Envelope::default();
            }
            _ => write(&mut stream, CONTINUE, &[]).await?,
        }
    }
    Ok(())
}

impl Envelope {
    /// Past the size that is checked, the message is no longer kept.
    fn body_room(&mut self, more: usize) {
        let kept = self.body.len()
            + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 3)
                .sum::<usize>();
        if kept + more > MAX_CHECKED_BYTES {
            self.too_large = true;
            self.body = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(policy: Policy, pass: bool, temporary: bool) -> DmarcView {
        DmarcView {
            domain: "sender.test".into(),
            has_policy: true,
            policy,
            pass,
            temporary,
        }
    }

    fn none() -> DmarcView {
        DmarcView {
            domain: String::new(),
            has_policy: false,
            policy: Policy::Unspecified,
            pass: false,
            temporary: false,
        }
    }

    #[test]
    fn the_policy_refuses_only_what_it_should() {
        let s = Antispam::default();
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let j = |spf, dkim: &[&str], d: &DmarcView, exempt| {
            let dkim: Vec<String> = dkim.iter().map(|s| s.to_string()).collect();
            judge(&s, ip, spf, "sender.test", &dkim, d, exempt)
        };
        // DMARC p=reject, nothing aligned: refused.
        assert!(matches!(
            j(SpfResult::Fail, &[], &view(Policy::Reject, false, false), false),
            Verdict::Refuse(t) if t.starts_with("5.7.1") && t.contains("sender.test")
        ));
        // Forwarded: SPF fails but DMARC passes through DKIM.
        assert_eq!(
            j(
                SpfResult::Fail,
                &["sender.test"],
                &view(Policy::Reject, true, false),
                false
            ),
            Verdict::Accept
        );
        // No DMARC record: SPF -all refuses, unless the sender's domain signed.
        assert!(matches!(
            j(SpfResult::Fail, &[], &none(), false),
            Verdict::Refuse(t) if t.starts_with("5.7.23") && t.contains("192.0.2.9")
        ));
        assert_eq!(
            j(SpfResult::Fail, &["sender.test"], &none(), false),
            Verdict::Accept
        );
        assert!(matches!(
            j(SpfResult::Fail, &["other.test"], &none(), false),
            Verdict::Refuse(_)
        ));
        // Soft failures and DNS trouble never refuse.
        assert_eq!(j(SpfResult::SoftFail, &[], &none(), false), Verdict::Accept);
        assert_eq!(
            j(SpfResult::TempError, &[], &none(), false),
            Verdict::Accept
        );
        assert_eq!(
            j(
                SpfResult::TempError,
                &[],
                &view(Policy::Reject, false, true),
                false
            ),
            Verdict::Accept
        );
        // p=quarantine marks; p=none only records.
        assert!(matches!(
            j(
                SpfResult::Pass,
                &[],
                &view(Policy::Quarantine, false, false),
                false
            ),
            Verdict::Quarantine(_)
        ));
        assert_eq!(
            j(
                SpfResult::SoftFail,
                &[],
                &view(Policy::None, false, false),
                false
            ),
            Verdict::Accept
        );
        // Exempt: everything goes.
        assert_eq!(
            j(
                SpfResult::Fail,
                &[],
                &view(Policy::Reject, false, false),
                true
            ),
            Verdict::Accept
        );
        // The admin prefers quarantine to refusal.
        let q = Antispam {
            dmarc_reject_action: DmarcRejectAction::Quarantine,
            ..Antispam::default()
        };
        assert!(matches!(
            judge(
                &q,
                ip,
                SpfResult::Pass,
                "sender.test",
                &[],
                &view(Policy::Reject, false, false),
                false
            ),
            Verdict::Quarantine(_)
        ));
        // Checks turned off.
        let off = Antispam {
            dmarc: false,
            spf_reject: false,
            ..Antispam::default()
        };
        assert_eq!(
            judge(
                &off,
                ip,
                SpfResult::Fail,
                "sender.test",
                &[],
                &view(Policy::Reject, false, false),
                false
            ),
            Verdict::Accept
        );
    }

    #[test]
    fn forged_results_of_this_server_are_found() {
        let m = Envelope {
            headers: vec![
                (
                    "Authentication-Results".into(),
                    " mx.other.test; spf=pass".into(),
                ),
                ("Subject".into(), " hi".into()),
                (
                    "authentication-results".into(),
                    " MAIL.example.test;\n\tdmarc=pass".into(),
                ),
                ("X-Modobox-DMARC".into(), " none".into()),
            ],
            ..Envelope::default()
        };
        assert_eq!(
            m.forged("mail.example.test"),
            vec![
                ("authentication-results".to_string(), 2),
                ("X-Modobox-DMARC".to_string(), 1)
            ]
        );
        let raw = String::from_utf8(m.raw().unwrap()).unwrap();
        assert!(
            raw.starts_with("Authentication-Results: mx.other.test; spf=pass\r\nSubject: hi\r\n")
        );
        assert!(raw.contains("MAIL.example.test;\r\n\tdmarc=pass\r\n"));
        assert!(same_or_parent("example.org", "mail.example.org"));
        assert!(!same_or_parent("ample.org", "example.org"));
        assert!(!same_or_parent("org", "example.org"));
    }

    #[test]
    fn connect_packets_give_the_client_address() {
        let mut d = b"client.test\0".to_vec();
        d.push(b'4');
        d.extend_from_slice(&25u16.to_be_bytes());
        d.extend_from_slice(b"192.0.2.7\0");
        assert_eq!(connect_address(&d), Some("192.0.2.7".parse().unwrap()));
        let mut d = b"c\0".to_vec();
        d.push(b'6');
        d.extend_from_slice(&25u16.to_be_bytes());
        d.extend_from_slice(b"IPv6:2001:db8::1\0");
        assert_eq!(connect_address(&d), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(connect_address(b"localhost\0U"), None);
    }
}
