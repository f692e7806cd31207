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
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, MessageAuthenticator,
    SpfOutput, SpfResult,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
/// Header fields kept of one message (past it, the message is not checked whole).
const MAX_HEADERS: usize = 2000;
/// Bookkeeping a header field costs beyond its bytes (what `kept` counts it as).
const HEADER_OVERHEAD: usize = 64;
/// All messages being checked at once may hold this much memory; past it a message is
/// answered "try again later" rather than accepted unchecked.
const BUDGET_MIB: usize = 512;
/// Time for each group of DNS work (SPF, DKIM, DMARC) and for the whole message.
const PHASE_DEADLINE: Duration = Duration::from_secs(15);
const CHECK_DEADLINE: Duration = Duration::from_secs(50);
/// DKIM signatures checked per message: those of the From: or envelope domain, first ones.
const MAX_SIGNATURES: usize = 5;

/// What port 25 does with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Accept, marked for the spam quarantine (why).
    Quarantine(String),
    /// 550 with this enhanced code and text.
    Refuse(String),
    /// 451 with this enhanced code and text: the sender tries again later.
    Later(String),
}

/// DMARC's outcome as the policy needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcView {
    /// The From: header domain; empty when DMARC did not apply (no record).
    pub domain: String,
    pub has_policy: bool,
    pub policy: Policy,
    pub pass: bool,
    /// A DNS failure on the way: neither pass nor fail can be said.
    pub temporary: bool,
}

impl DmarcView {
    pub fn none() -> Self {
        DmarcView {
            domain: String::new(),
            has_policy: false,
            policy: Policy::Unspecified,
            pass: false,
            temporary: false,
        }
    }
}

/// What the checks found, as the policy reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Findings {
    pub client: IpAddr,
    /// The envelope sender's SPF result (the HELO name's for a null sender) and its domain.
    pub spf: SpfResult,
    pub spf_domain: String,
    /// Domains of DKIM signatures that passed, and of those that met a DNS failure.
    pub dkim_pass: Vec<String>,
    pub dkim_temporary: Vec<String>,
    pub dmarc: DmarcView,
    /// The From: header: how many fields, and the domains they name.
    pub from_fields: usize,
    pub from_domains: Vec<String>,
    /// The From: domain and the envelope domain are exempt (each for its own check).
    pub from_exempt: bool,
    pub sender_exempt: bool,
    /// Recipients of exempt hosted domains: none, some or all of them.
    pub exempt_recipients: Share,
    /// The whole message could not be kept (too large, or too much mail at once): DKIM not
    /// checked, DMARC judged on SPF alone.
    pub partial: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    None,
    Some,
    All,
}

/// The policy, apart from the DNS work (unit-tested on its own).
pub fn judge(settings: &Antispam, f: &Findings) -> Verdict {
    if f.exempt_recipients == Share::All {
        return Verdict::Accept;
    }
    // RFC 5322: one From: field; DMARC cannot say whose policy applies otherwise, and such a
    // message is the classic way around it.
    if f.from_fields != 1 {
        return soften(
            f,
            Verdict::Refuse(format!(
                "5.7.1 the message has {} From: header fields; exactly one is required",
                f.from_fields
            )),
        );
    }
    if f.from_domains.len() != 1 {
        let why = if f.from_domains.is_empty() {
            "the From: header names no address".to_string()
        } else {
            format!(
                "the From: header names addresses of {} domains",
                f.from_domains.len()
            )
        };
        return soften(f, Verdict::Refuse(format!("5.7.1 {why}")));
    }
    let d = &f.dmarc;
    if settings.dmarc && !f.from_exempt && d.has_policy && !d.pass && !d.temporary {
        let why = format!(
            "the DMARC policy of {} ({}) is not met: neither SPF nor DKIM authenticates \
             the message for that domain",
            d.domain,
            policy_name(d.policy)
        );
        match d.policy {
            // A partly kept message had no DKIM check: marked, never refused for it.
            Policy::Reject
                if settings.dmarc_reject_action == DmarcRejectAction::Reject && !f.partial =>
            {
                return soften(f, Verdict::Refuse(format!("5.7.1 {why}")));
            }
            Policy::Reject | Policy::Quarantine => return Verdict::Quarantine(why),
            _ => {}
        }
    }
    if settings.spf_reject && !f.sender_exempt && f.spf == SpfResult::Fail && !d.pass {
        let rescued = f.dkim_pass.iter().any(|s| same_or_parent(s, &f.spf_domain));
        if !rescued {
            if f.dkim_temporary
                .iter()
                .any(|s| same_or_parent(s, &f.spf_domain))
            {
                return Verdict::Later(format!(
                    "4.7.0 the DKIM key of {} could not be looked up; try again later",
                    f.spf_domain
                ));
            }
            if f.partial {
                return Verdict::Quarantine(format!(
                    "the SPF record of {} does not allow {}",
                    f.spf_domain, f.client
                ));
            }
            return soften(
                f,
                Verdict::Refuse(format!(
                    "5.7.23 the SPF record of {} does not allow {} to send its mail",
                    f.spf_domain, f.client
                )),
            );
        }
    }
    Verdict::Accept
}

/// One answer serves every recipient: when some belong to exempt domains, a refusal becomes
/// the quarantine mark.
fn soften(f: &Findings, v: Verdict) -> Verdict {
    match v {
        Verdict::Refuse(text) if f.exempt_recipients == Share::Some => Verdict::Quarantine(
            text.split_once(' ')
                .map_or(text.clone(), |(_, t)| t.to_string()),
        ),
        v => v,
    }
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

/// Either is the other or a parent of it.
fn related(a: &str, b: &str) -> bool {
    same_or_parent(a, b) || same_or_parent(b, a)
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
    budget: Arc<Semaphore>,
}

impl std::fmt::Debug for Checker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Checker({})", self.hostname)
    }
}

impl Checker {
    /// A resolver that cannot be set up (a broken /etc/resolv.conf) is replaced by one asking
    /// 127.0.0.1: the milter process also serves submission and the sending limits, which
    /// must not stop over it.
    pub fn new(hostname: &str, settings: &Antispam) -> anyhow::Result<Self> {
        let timeout = Duration::from_secs(10);
        let resolver = crate::dns::resolver::hickory(settings.resolver, timeout).or_else(|e| {
            tracing::error!("inbound milter: {e}; asking 127.0.0.1:53 instead");
            crate::dns::resolver::hickory(Some(SocketAddr::from(([127, 0, 0, 1], 53))), timeout)
        });
        let resolver = resolver.map_err(|e| anyhow::anyhow!("inbound milter resolver: {e}"))?;
        Ok(Checker {
            auth: MessageAuthenticator(resolver),
            hostname: hostname.to_ascii_lowercase(),
            settings: settings.clone(),
            budget: Arc::new(Semaphore::new(BUDGET_MIB)),
        })
    }

    fn domain_listed(list: &[crate::names::DomainName], d: &str) -> bool {
        !d.is_empty() && list.iter().any(|e| same_or_parent(e.as_str(), d))
    }

    fn recipients_exempt(&self, recipients: &[String]) -> Share {
        let exempt = recipients
            .iter()
            .filter(|r| {
                domain_of(r).is_some_and(|d| {
                    self.settings
                        .exempt_recipient_domains
                        .iter()
                        .any(|e| e.as_str().eq_ignore_ascii_case(d))
                })
            })
            .count();
        match exempt {
            0 => Share::None,
            n if n == recipients.len() => Share::All,
            _ => Share::Some,
        }
    }

    /// Checks one message; returns the verdict and the Authentication-Results value.
    pub async fn check(&self, m: &Envelope) -> (Verdict, String) {
        let Some(ip) = m.client else {
            return (Verdict::Accept, format!("{}; none", self.hostname));
        };
        let sender = m.mail_from.as_str();
        let helo = if m.helo.is_empty() {
            "unknown"
        } else {
            m.helo.as_str()
        };
        let timed_spf = |r: Option<SpfOutput>, domain: &str| {
            r.unwrap_or_else(|| {
                SpfOutput::new(domain.to_string()).with_result(SpfResult::TempError)
            })
        };
        // HELO and MAIL FROM apart: a HELO name's failure never stands in for the sender's.
        let helo_spf = timed_spf(
            tokio::time::timeout(
                PHASE_DEADLINE,
                self.auth
                    .verify_spf(SpfParameters::verify_ehlo(ip, helo, &self.hostname)),
            )
            .await
            .ok(),
            helo,
        );
        let mail_spf = if sender.is_empty() {
            helo_spf.clone()
        } else {
            timed_spf(
                tokio::time::timeout(
                    PHASE_DEADLINE,
                    self.auth.verify_spf(SpfParameters::verify_mail_from(
                        ip,
                        helo,
                        &self.hostname,
                        sender,
                    )),
                )
                .await
                .ok(),
                domain_of(sender).unwrap_or(helo),
            )
        };
        let spf_domain = domain_of(sender).unwrap_or(helo).to_ascii_lowercase();
        let raw = m.raw();
        let mut message = raw.as_deref().and_then(AuthenticatedMessage::parse);
        let from_domains = from_domains(message.as_ref(), &m.headers);
        let from_domain = from_domains.first().cloned().unwrap_or_default();
        let mut results =
            AuthenticationResults::new(&self.hostname).with_spf_ehlo_result(&helo_spf, ip, helo);
        if !sender.is_empty() {
            results = results.with_spf_mailfrom_result(&mail_spf, ip, sender, helo);
        }
        let mut dkim_pass = Vec::new();
        let mut dkim_temporary = Vec::new();
        let mut view = DmarcView::none();
        if let Some(message) = message.as_mut() {
            // Only signatures that can matter (the From: or envelope domain's), and a few:
            // a sender's own slow DNS for many signatures must not run out the clock.
            message.dkim_headers.retain(|h| {
                related(&h.header.d, &from_domain) || related(&h.header.d, &spf_domain)
            });
            message.dkim_headers.truncate(MAX_SIGNATURES);
            let message: &AuthenticatedMessage = message;
            let dkim = tokio::time::timeout(PHASE_DEADLINE, self.auth.verify_dkim(message))
                .await
                .unwrap_or_default();
            for o in &dkim {
                let d = o
                    .signature()
                    .map(|s| s.d.to_ascii_lowercase())
                    .unwrap_or_default();
                match o.result() {
                    DkimResult::Pass => dkim_pass.push(d),
                    DkimResult::TempError(_) => dkim_temporary.push(d),
                    _ => {}
                }
            }
            let dmarc = tokio::time::timeout(
                PHASE_DEADLINE,
                self.auth
                    .verify_dmarc(mail_auth::dmarc::verify::DmarcParameters::new(
                        message,
                        &dkim,
                        &spf_domain,
                        &mail_spf,
                    )),
            )
            .await;
            results = results.with_dkim_results(&dkim, &from_domain);
            match dmarc {
                Ok(dmarc) => {
                    results = results.with_dmarc_result(&dmarc);
                    let overall = dmarc.result();
                    view = DmarcView {
                        domain: dmarc.domain().to_string(),
                        has_policy: !matches!(overall, DmarcResult::None)
                            && !matches!(dmarc.policy(), Policy::Unspecified),
                        policy: dmarc.policy(),
                        pass: overall == DmarcResult::Pass,
                        temporary: matches!(overall, DmarcResult::TempError(_)),
                    };
                }
                Err(_) => {
                    view.domain = from_domain.clone();
                    view.temporary = true;
                }
            }
        }
        let exempt = &self.settings;
        let findings = Findings {
            client: ip,
            spf: mail_spf.result(),
            spf_domain: spf_domain.clone(),
            dkim_pass,
            dkim_temporary,
            dmarc: view,
            from_fields: m.from_fields,
            from_domains,
            from_exempt: Self::domain_listed(&exempt.exempt_sender_domains, &from_domain),
            sender_exempt: Self::domain_listed(&exempt.exempt_sender_domains, &spf_domain),
            exempt_recipients: self.recipients_exempt(&m.recipients),
            partial: m.partial(),
        };
        (judge(&self.settings, &findings), results.to_string())
    }
}

/// The domains of the From: addresses: mail-auth's reading when it read the message, else the
/// raw fields' (a message kept only in part).
fn from_domains(
    message: Option<&AuthenticatedMessage>,
    headers: &[(String, Vec<u8>)],
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |d: &str| {
        let d = d.trim_end_matches('.').to_ascii_lowercase();
        if !d.is_empty() && !out.contains(&d) {
            out.push(d);
        }
    };
    match message {
        Some(m) => {
            for f in &m.from {
                if let Some(d) = domain_of(f) {
                    add(d);
                }
            }
        }
        None => {
            for (name, value) in headers {
                if name.eq_ignore_ascii_case("from") {
                    let text = String::from_utf8_lossy(value).replace(['\r', '\n'], "");
                    if let Ok(list) = mailparse::addrparse(&text) {
                        for a in list.iter() {
                            if let mailparse::MailAddr::Single(s) = a {
                                if let Some(d) = domain_of(&s.addr) {
                                    add(d);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// One message as the MTA shows it.
#[derive(Debug, Default)]
pub struct Envelope {
    pub client: Option<IpAddr>,
    pub helo: String,
    pub mail_from: String,
    pub recipients: Vec<String>,
    /// Header fields as received: name, value bytes (with its leading space), in order.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Bytes held (headers with their overhead, body).
    pub kept: usize,
    /// More than one message may hold, or than the budget allowed: no longer kept.
    pub too_large: bool,
    pub over_budget: bool,
    /// From: fields seen (all of them, kept or not).
    pub from_fields: usize,
    /// Fields to delete, by name and 1-based position among fields of that name: this
    /// server's Authentication-Results and every mark (counted whether kept or not).
    pub forged: Vec<(String, u32)>,
    counts: (u32, u32),
    permits: Vec<OwnedSemaphorePermit>,
}

impl Envelope {
    pub fn partial(&self) -> bool {
        self.too_large || self.over_budget
    }

    /// The message as it came in (CRLF line ends), for DKIM; the headers alone when the body
    /// could not be kept (DMARC still reads the From: field).
    pub fn raw(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(self.body.len() + 4096);
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.push(b':');
            let mut prev = 0u8;
            for &b in value {
                if b == b'\n' && prev != b'\r' {
                    out.push(b'\r');
                }
                out.push(b);
                prev = b;
            }
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !self.partial() {
            out.extend_from_slice(&self.body);
        }
        Some(out)
    }

    /// Notes a header field: counted always, kept while there is room.
    pub fn add_header(
        &mut self,
        name: String,
        value: Vec<u8>,
        hostname: &str,
        room: &Arc<Semaphore>,
    ) {
        if name.eq_ignore_ascii_case("from") {
            self.from_fields += 1;
        }
        if name.eq_ignore_ascii_case("Authentication-Results") {
            self.counts.0 += 1;
            if authserv_id(&value).is_some_and(|id| id.eq_ignore_ascii_case(hostname)) {
                self.forged.push((name.clone(), self.counts.0));
            }
        } else if name.eq_ignore_ascii_case(MARK_HEADER) {
            self.counts.1 += 1;
            self.forged.push((name.clone(), self.counts.1));
        }
        if self.headers.len() >= MAX_HEADERS {
            self.too_large = true;
            return;
        }
        // Headers are kept even past the body's limit: From: and the signatures are in them.
        let cost = name.len() + value.len() + HEADER_OVERHEAD;
        if self.reserve(cost, room) {
            self.headers.push((name, value));
        } else {
            self.too_large = true;
        }
    }

    pub fn add_body(&mut self, chunk: &[u8], limit: usize, room: &Arc<Semaphore>) {
        if self.partial() {
            return;
        }
        if self.kept + chunk.len() > limit || !self.reserve(chunk.len(), room) {
            if self.kept + chunk.len() > limit {
                self.too_large = true;
            }
            self.body = Vec::new();
            return;
        }
        self.body.extend_from_slice(chunk);
    }

    /// Takes `bytes` more of the shared budget (in MiB steps); false when it is spent.
    fn reserve(&mut self, bytes: usize, room: &Arc<Semaphore>) -> bool {
        let needed_mib = (self.kept + bytes).div_ceil(1 << 20);
        while self.permits.len() < needed_mib {
            match room.clone().try_acquire_owned() {
                Ok(p) => self.permits.push(p),
                Err(_) => {
                    self.over_budget = true;
                    return false;
                }
            }
        }
        self.kept += bytes;
        true
    }
}

/// The authserv-id of an Authentication-Results value: comments and quotes taken off.
fn authserv_id(value: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(value);
    let mut out = String::new();
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ';' if depth == 0 => break,
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    let id = out.trim().trim_matches('"').trim().to_string();
    (!id.is_empty()).then_some(id)
}

pub async fn serve(
    listener: TcpListener,
    checker: Arc<Checker>,
    message_limit: usize,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    crate::system::net::serve_connections(
        "inbound milter",
        listener,
        MAX_SESSIONS,
        move |stream| {
            let checker = checker.clone();
            async move { session(stream, &checker, message_limit).await }
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

/// A HEADER packet: the name, and the value's bytes as sent (8-bit text kept for DKIM).
fn header_fields(data: &[u8]) -> (String, Vec<u8>) {
    let mut parts = data.splitn(2, |b| *b == 0);
    let name = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let value = parts.next().unwrap_or_default();
    let value = value.strip_suffix(&[0]).unwrap_or(value).to_vec();
    (name, value)
}

fn unbracket(arg: &str) -> String {
    arg.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_ascii_lowercase()
}

/// One MTA connection: any number of messages, until QUIT. `message_limit`: the most of one
/// message kept for its DKIM check (Postfix's message_size_limit).
pub async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    checker: &Checker,
    message_limit: usize,
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
                    // Postfix's own limit (smtpd_recipient_limit) is 1000.
                    if m.recipients.len() < 1000 {
                        m.recipients.push(unbracket(r));
                    }
                }
                write(&mut stream, CONTINUE, &[]).await?;
            }
            HEADER => {
                let (name, mut value) = header_fields(&p.data);
                if !leading_space {
                    value.insert(0, b' ');
                }
                m.add_header(name, value, &checker.hostname, &checker.budget);
                write(&mut stream, CONTINUE, &[]).await?;
            }
            BODY => {
                m.add_body(&p.data, message_limit, &checker.budget);
                write(&mut stream, CONTINUE, &[]).await?;
            }
            EOH => write(&mut stream, CONTINUE, &[]).await?,
            BODYEOB => {
                let verdict = if m.over_budget && !m.too_large {
                    // Too much mail in checking at once: this one later, rather than unchecked.
                    (
                        Verdict::Later(
                            "4.3.2 too many messages being checked; try again later".into(),
                        ),
                        String::new(),
                    )
                } else {
                    tokio::time::timeout(CHECK_DEADLINE, checker.check(&m))
                        .await
                        .unwrap_or_else(|_| {
                            (
                                Verdict::Later(format!(
                                    "4.4.3 the sender's authentication could not be checked \
                                     within {} s; try again later",
                                    CHECK_DEADLINE.as_secs()
                                )),
                                String::new(),
                            )
                        })
                };
                let (verdict, results) = verdict;
                let id = m.mail_from.clone();
                let from = client.map(|c| c.to_string()).unwrap_or_default();
                match verdict {
                    Verdict::Refuse(text) => {
                        tracing::info!("inbound milter: refused <{id}> from {from}: {text}");
                        write(&mut stream, REPLYCODE, &reply_code("550", &text)).await?;
                    }
                    Verdict::Later(text) => {
                        tracing::warn!("inbound milter: deferred <{id}> from {from}: {text}");
                        write(&mut stream, REPLYCODE, &reply_code("451", &text)).await?;
                    }
                    v => {
                        for (name, index) in m.forged.iter().rev() {
                            write(&mut stream, CHGHEADER, &header_change(*index, name, "")).await?;
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

    fn findings(spf: SpfResult, dkim: &[&str], dmarc: DmarcView) -> Findings {
        Findings {
            client: "192.0.2.9".parse().unwrap(),
            spf,
            spf_domain: "sender.test".into(),
            dkim_pass: dkim.iter().map(|s| s.to_string()).collect(),
            dkim_temporary: vec![],
            dmarc,
            from_fields: 1,
            from_domains: vec!["sender.test".into()],
            from_exempt: false,
            sender_exempt: false,
            exempt_recipients: Share::None,
            partial: false,
        }
    }

    fn refused(v: &Verdict, code: &str) -> bool {
        matches!(v, Verdict::Refuse(t) if t.starts_with(code))
    }

    #[test]
    fn the_policy_refuses_only_what_it_should() {
        let s = Antispam::default();
        let j = |f: &Findings| judge(&s, f);
        // DMARC p=reject, nothing aligned: refused.
        let reject = findings(SpfResult::Fail, &[], view(Policy::Reject, false, false));
        assert!(refused(&j(&reject), "5.7.1"));
        // Forwarded: SPF fails but DMARC passes through DKIM.
        let fwd = findings(
            SpfResult::Fail,
            &["sender.test"],
            view(Policy::Reject, true, false),
        );
        assert_eq!(j(&fwd), Verdict::Accept);
        // No DMARC record: SPF -all refuses, unless the sender's domain (or a parent) signed.
        let none = findings(SpfResult::Fail, &[], DmarcView::none());
        assert!(
            matches!(j(&none), Verdict::Refuse(t) if t.starts_with("5.7.23") && t.contains("192.0.2.9"))
        );
        let mut signed = none.clone();
        signed.dkim_pass = vec!["sender.test".into()];
        assert_eq!(j(&signed), Verdict::Accept);
        signed.dkim_pass = vec!["other.test".into()];
        assert!(refused(&j(&signed), "5.7.23"));
        // A DNS failure on the rescuing key: later, never a refusal.
        let mut temp = none.clone();
        temp.dkim_temporary = vec!["sender.test".into()];
        assert!(matches!(j(&temp), Verdict::Later(t) if t.starts_with("4.7.0")));
        // Soft failures and DNS trouble never refuse.
        assert_eq!(
            j(&findings(SpfResult::SoftFail, &[], DmarcView::none())),
            Verdict::Accept
        );
        assert_eq!(
            j(&findings(SpfResult::TempError, &[], DmarcView::none())),
            Verdict::Accept
        );
        assert_eq!(
            j(&findings(
                SpfResult::TempError,
                &[],
                view(Policy::Reject, false, true)
            )),
            Verdict::Accept
        );
        // p=quarantine marks; p=none only records.
        assert!(matches!(
            j(&findings(
                SpfResult::Pass,
                &[],
                view(Policy::Quarantine, false, false)
            )),
            Verdict::Quarantine(_)
        ));
        assert_eq!(
            j(&findings(
                SpfResult::SoftFail,
                &[],
                view(Policy::None, false, false)
            )),
            Verdict::Accept
        );
        // A message kept only in part (no DKIM check): marked, never refused.
        let mut partial = reject.clone();
        partial.partial = true;
        assert!(matches!(j(&partial), Verdict::Quarantine(_)));
        let mut partial_spf = none.clone();
        partial_spf.partial = true;
        assert!(matches!(j(&partial_spf), Verdict::Quarantine(_)));
    }

    #[test]
    fn from_fields_and_exemptions_answer_for_their_own_identity() {
        let s = Antispam::default();
        let reject = findings(SpfResult::Fail, &[], view(Policy::Reject, false, false));
        // Two From: fields, or two domains in one, or none: refused whatever DMARC says.
        let mut two = findings(SpfResult::Pass, &[], view(Policy::None, true, false));
        two.from_fields = 2;
        assert!(matches!(judge(&s, &two), Verdict::Refuse(t) if t.contains("2 From:")));
        let mut mixed = findings(SpfResult::Pass, &[], view(Policy::None, true, false));
        mixed.from_domains = vec!["victim.test".into(), "sender.test".into()];
        assert!(matches!(judge(&s, &mixed), Verdict::Refuse(t) if t.contains("2 domains")));
        mixed.from_domains.clear();
        assert!(matches!(judge(&s, &mixed), Verdict::Refuse(t) if t.contains("no address")));
        // An exempt envelope domain does not lift the From: domain's DMARC policy...
        let mut env = reject.clone();
        env.sender_exempt = true;
        assert!(refused(&judge(&s, &env), "5.7.1"));
        // ...an exempt From: domain does, and SPF still answers for the envelope.
        let mut from = reject.clone();
        from.from_exempt = true;
        assert!(refused(&judge(&s, &from), "5.7.23"));
        from.sender_exempt = true;
        assert_eq!(judge(&s, &from), Verdict::Accept);
        // Recipients of exempt domains: all of them get it; some of them turn a refusal into
        // the mark (one answer serves all).
        let mut all = reject.clone();
        all.exempt_recipients = Share::All;
        assert_eq!(judge(&s, &all), Verdict::Accept);
        let mut some = reject.clone();
        some.exempt_recipients = Share::Some;
        assert!(matches!(judge(&s, &some), Verdict::Quarantine(t) if !t.starts_with("5.7")));
        // The admin prefers quarantine to refusal; or turns the checks off.
        let q = Antispam {
            dmarc_reject_action: DmarcRejectAction::Quarantine,
            ..Antispam::default()
        };
        assert!(matches!(judge(&q, &reject), Verdict::Quarantine(_)));
        let off = Antispam {
            dmarc: false,
            spf_reject: false,
            ..Antispam::default()
        };
        assert_eq!(judge(&off, &reject), Verdict::Accept);
    }

    #[test]
    fn headers_are_kept_as_bytes_counted_and_forged_ones_found_past_the_cut() {
        let room = Arc::new(Semaphore::new(4));
        let mut m = Envelope::default();
        let host = "mail.example.test";
        m.add_header(
            "Authentication-Results".into(),
            b" mx.other.test; spf=pass".to_vec(),
            host,
            &room,
        );
        m.add_header("Subject8".into(), b" caf\xe9".to_vec(), host, &room);
        m.add_header(
            "authentication-results".into(),
            b" (comment) \"MAIL.example.test\";\n\tdmarc=pass".to_vec(),
            host,
            &room,
        );
        m.add_header("From".into(), b" a@sender.test".to_vec(), host, &room);
        let raw = m.raw().unwrap();
        assert!(raw.starts_with(b"Authentication-Results: mx.other.test; spf=pass\r\n"));
        assert!(
            raw.windows(6).any(|w| w == b" caf\xe9\r"),
            "8-bit bytes kept as sent"
        );
        assert!(raw.windows(14).any(|w| w == b";\r\n\tdmarc=pass"));
        // Past the budget (4 MiB here): no longer kept, still counted and still found.
        m.add_body(&vec![b'x'; 5 << 20], 50 << 20, &room);
        assert!(m.over_budget && m.body.is_empty());
        m.add_header("X-Modobox-DMARC".into(), b" none".to_vec(), host, &room);
        m.add_header("From".into(), b" b@other.test".to_vec(), host, &room);
        assert_eq!(m.from_fields, 2);
        assert_eq!(
            m.forged,
            vec![
                ("authentication-results".to_string(), 2),
                ("X-Modobox-DMARC".to_string(), 1)
            ]
        );
        drop(m);
        assert_eq!(
            room.available_permits(),
            4,
            "the budget comes back with the message"
        );
        // Over the message limit: too large, the body dropped.
        let mut big = Envelope::default();
        big.add_body(&[b'y'; 100], 50, &Arc::new(Semaphore::new(4)));
        assert!(big.too_large && big.partial());
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
        assert_eq!(
            header_fields(b"Subject\0 caf\xe9\0"),
            ("Subject".to_string(), b" caf\xe9".to_vec())
        );
    }
}
