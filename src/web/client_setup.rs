//! What mail clients fetch to set themselves up, and what sending servers fetch to know how to
//! reach us: Thunderbird's autoconfig document, Outlook's autodiscover (the POX request and
//! the v2 JSON redirect), and the MTA-STS policy. Unauthenticated by nature: each answers only
//! for a hosted domain (or domain alias) and says nothing about who has a mailbox.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use super::Web;
use crate::names::{DomainName, EmailAddress};
use crate::store::domains;

/// Largest autodiscover request read: Outlook's is well under 1 KiB.
pub const MAX_AUTODISCOVER_BYTES: usize = 16 * 1024;

pub fn routes() -> Router<Web> {
    Router::new()
        .route("/mail/config-v1.1.xml", get(autoconfig))
        .route(
            "/.well-known/autoconfig/mail/config-v1.1.xml",
            get(autoconfig),
        )
        // Outlook writes the path in either case.
        .route("/autodiscover/autodiscover.xml", post(autodiscover))
        .route("/Autodiscover/Autodiscover.xml", post(autodiscover))
        .route("/autodiscover/autodiscover.json", get(autodiscover_json))
        .route(
            "/autodiscover/autodiscover.json/v1.0/{email}",
            get(autodiscover_json_v1),
        )
        .route("/.well-known/mta-sts.txt", get(mta_sts))
}

/// An answer of this module: a body of a type, or a plain refusal.
fn answer(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut res = (status, body).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

fn refuse(status: StatusCode, why: &str) -> Response {
    answer(status, "text/plain; charset=utf-8", format!("{why}\n"))
}

/// The domain the request is about: the address's, else the `Host` the client asked
/// (`autoconfig.example.org`, `mta-sts.example.org`) without that first label.
fn domain_asked(
    address: Option<&EmailAddress>,
    headers: &HeaderMap,
    label: &str,
) -> Option<DomainName> {
    if let Some(a) = address {
        return Some(a.domain_name());
    }
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let rest = host.to_ascii_lowercase();
    let rest = rest.strip_prefix(&format!("{label}."))?;
    DomainName::parse("host", rest).ok()
}

/// The mail domain behind `name` and whether `name` is a domain alias of it; None when the
/// server does not host it (or on a database error, logged: clients then try elsewhere).
async fn mail_domain(web: &Web, name: &DomainName) -> Option<(DomainName, bool)> {
    let found = async {
        let mut tx = web.store.begin_read().await?;
        domains::mail_domain_of(&mut tx, name).await
    }
    .await;
    match found {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("client setup: looking up {name}: {e}");
            None
        }
    }
}

/// The servers a client uses: IMAP, POP3 when it is on, submission.
struct Servers<'a> {
    host: &'a str,
    pop3: bool,
}

/// Thunderbird's autoconfig document (format 1.1) for `domain`; the login is the address,
/// or for a domain alias the same local part at the domain it is an alias of.
fn autoconfig_xml(s: &Servers, domain: &DomainName, target: &DomainName, alias: bool) -> String {
    let login = if alias {
        format!("%EMAILLOCALPART%@{target}")
    } else {
        "%EMAILADDRESS%".to_string()
    };
    let host = crate::system::text::xml_escape(s.host);
    let server = |kind: &str, tag: &str, port: u16, socket: &str| {
        format!(
            "    <{tag} type=\"{kind}\">\n      <hostname>{host}</hostname>\n      <port>{port}</port>\n      <socketType>{socket}</socketType>\n      <authentication>password-cleartext</authentication>\n      <username>{login}</username>\n    </{tag}>\n"
        )
    };
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n",
    );
    x.push_str(&format!(
        "  <emailProvider id=\"{domain}\">\n    <domain>{domain}</domain>\n    <displayName>{domain} mail</displayName>\n    <displayShortName>{domain}</displayShortName>\n"
    ));
    x.push_str(&server("imap", "incomingServer", 993, "SSL"));
    x.push_str(&server("imap", "incomingServer", 143, "STARTTLS"));
    if s.pop3 {
        x.push_str(&server("pop3", "incomingServer", 995, "SSL"));
        x.push_str(&server("pop3", "incomingServer", 110, "STARTTLS"));
    }
    x.push_str(&server("smtp", "outgoingServer", 465, "SSL"));
    x.push_str(&server("smtp", "outgoingServer", 587, "STARTTLS"));
    x.push_str("  </emailProvider>\n</clientConfig>\n");
    x
}

fn servers(web: &Web) -> Servers<'_> {
    Servers {
        host: web.config.hostname.as_str(),
        pop3: web.config.components.pop3,
    }
}

/// `GET /mail/config-v1.1.xml?emailaddress=…` (and its `.well-known` twin).
async fn autoconfig(State(web): State<Web>, headers: HeaderMap, q: super::api::Query) -> Response {
    let address = match q.get("emailaddress") {
        Some(a) => match EmailAddress::parse("emailaddress", a.trim()) {
            Ok(a) => Some(a),
            Err(_) => return refuse(StatusCode::BAD_REQUEST, "emailaddress: not an address"),
        },
        None => None,
    };
    let Some(domain) = domain_asked(address.as_ref(), &headers, "autoconfig") else {
        return refuse(StatusCode::NOT_FOUND, "no hosted domain named");
    };
    let Some((target, alias)) = mail_domain(&web, &domain).await else {
        return refuse(StatusCode::NOT_FOUND, "not a domain of this server");
    };
    let xml = autoconfig_xml(&servers(&web), &domain, &target, alias);
    answer(StatusCode::OK, "application/xml; charset=utf-8", xml)
}

/// Why an autodiscover request is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum RequestError {
    /// Not XML, a DTD (entities are never expanded: the document is refused), or no
    /// `EMailAddress`.
    Malformed(&'static str),
}

/// The `EMailAddress` of Outlook's POX request. A DOCTYPE (the door to entity expansion and
/// external entities) refuses the document; so do entity or character references inside the
/// address, which no address needs.
pub fn autodiscover_address(body: &[u8]) -> Result<String, RequestError> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut buf = Vec::new();
    let mut inside = false;
    let mut found: Option<String> = None;
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|_| RequestError::Malformed("not well-formed XML"))?;
        match event {
            Event::DocType(_) => return Err(RequestError::Malformed("a DTD is not accepted")),
            Event::Eof => break,
            Event::Start(e) => {
                if inside {
                    return Err(RequestError::Malformed("EMailAddress holds elements"));
                }
                inside = AsRef::<str>::as_ref(&e.local_name()) == "EMailAddress";
                if inside && found.is_some() {
                    return Err(RequestError::Malformed("more than one EMailAddress"));
                }
                if inside {
                    found = Some(String::new());
                }
            }
            Event::End(_) => inside = false,
            Event::Text(t) if inside => {
                let text: &str = t.as_ref();
                if text.contains('&') {
                    return Err(RequestError::Malformed("references in EMailAddress"));
                }
                if let Some(f) = found.as_mut() {
                    f.push_str(text);
                }
            }
            _ if inside => {
                return Err(RequestError::Malformed("EMailAddress holds more than text"))
            }
            _ => {}
        }
        buf.clear();
    }
    match found {
        Some(a) if !a.trim().is_empty() => Ok(a.trim().to_string()),
        _ => Err(RequestError::Malformed("no EMailAddress")),
    }
}

/// Outlook's POX answer: IMAP and SMTP with implicit TLS, the login being the address (for a
/// domain alias, the same local part at its target).
fn autodiscover_xml(s: &Servers, login: &str) -> String {
    let host = crate::system::text::xml_escape(s.host);
    let login = crate::system::text::xml_escape(login);
    let protocol = |kind: &str, port: u16, extra: &str| {
        format!(
            "      <Protocol>\n        <Type>{kind}</Type>\n        <Server>{host}</Server>\n        <Port>{port}</Port>\n        <DomainRequired>off</DomainRequired>\n        <LoginName>{login}</LoginName>\n        <SPA>off</SPA>\n        <SSL>on</SSL>\n        <AuthRequired>on</AuthRequired>\n{extra}      </Protocol>\n"
        )
    };
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">\n  <Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\">\n    <Account>\n      <AccountType>email</AccountType>\n      <Action>settings</Action>\n",
    );
    x.push_str(&protocol("IMAP", 993, ""));
    if s.pop3 {
        x.push_str(&protocol("POP3", 995, ""));
    }
    x.push_str(&protocol(
        "SMTP",
        465,
        "        <UsePOPAuth>on</UsePOPAuth>\n        <SMTPLast>off</SMTPLast>\n",
    ));
    x.push_str("    </Account>\n  </Response>\n</Autodiscover>\n");
    x
}

/// The login of `address` for a client: itself, or for a domain alias its local part at the
/// aliased domain.
async fn login_of(web: &Web, address: &EmailAddress) -> Option<String> {
    let (target, alias) = mail_domain(web, &address.domain_name()).await?;
    Some(if alias {
        format!("{}@{target}", address.local_part())
    } else {
        address.to_string()
    })
}

/// `POST /autodiscover/autodiscover.xml`.
async fn autodiscover(State(web): State<Web>, body: Bytes) -> Response {
    if body.len() > MAX_AUTODISCOVER_BYTES {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "request too large");
    }
    let address = match autodiscover_address(&body) {
        Ok(a) => a,
        Err(RequestError::Malformed(why)) => return refuse(StatusCode::BAD_REQUEST, why),
    };
    let Ok(address) = EmailAddress::parse("EMailAddress", &address) else {
        return refuse(StatusCode::BAD_REQUEST, "EMailAddress: not an address");
    };
    let Some(login) = login_of(&web, &address).await else {
        return refuse(StatusCode::NOT_FOUND, "not a domain of this server");
    };
    answer(
        StatusCode::OK,
        "application/xml; charset=utf-8",
        autodiscover_xml(&servers(&web), &login),
    )
}

/// Autodiscover v2's JSON answer for `address`: where the v1 (POX) service is. Only the
/// `AutodiscoverV1` protocol is served (no Exchange here).
async fn autodiscover_json_for(web: &Web, address: &str, protocol: Option<&str>) -> Response {
    if !protocol.is_some_and(|p| p.eq_ignore_ascii_case("autodiscoverv1")) {
        return refuse(
            StatusCode::NOT_FOUND,
            "only the AutodiscoverV1 protocol is served",
        );
    }
    let Ok(address) = EmailAddress::parse("Email", address.trim()) else {
        return refuse(StatusCode::BAD_REQUEST, "Email: not an address");
    };
    if login_of(web, &address).await.is_none() {
        return refuse(StatusCode::NOT_FOUND, "not a domain of this server");
    }
    let body = serde_json::json!({
        "Protocol": "AutodiscoverV1",
        "Url": format!("https://{}/autodiscover/autodiscover.xml", web.config.hostname),
    });
    answer(StatusCode::OK, "application/json", body.to_string())
}

/// `GET /autodiscover/autodiscover.json?Email=…&Protocol=AutodiscoverV1`.
async fn autodiscover_json(State(web): State<Web>, q: super::api::Query) -> Response {
    let Some(email) = q.get("Email") else {
        return refuse(StatusCode::BAD_REQUEST, "Email: missing");
    };
    autodiscover_json_for(&web, email, q.get("Protocol")).await
}

/// `GET /autodiscover/autodiscover.json/v1.0/{address}?Protocol=AutodiscoverV1`.
async fn autodiscover_json_v1(
    State(web): State<Web>,
    Path(email): Path<String>,
    q: super::api::Query,
) -> Response {
    autodiscover_json_for(&web, &email, q.get("Protocol")).await
}

/// `GET https://mta-sts.<domain>/.well-known/mta-sts.txt`: the policy `dns records --mta-sts`
/// publishes the id of. HTTPS only (RFC 8461): a request nginx received over plain HTTP is
/// refused.
async fn mta_sts(State(web): State<Web>, headers: HeaderMap) -> Response {
    let plain = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("http"));
    if plain {
        return refuse(
            StatusCode::NOT_FOUND,
            "MTA-STS policies are served over HTTPS only",
        );
    }
    let Some(domain) = domain_asked(None, &headers, "mta-sts") else {
        return refuse(StatusCode::NOT_FOUND, "ask mta-sts.<your domain>");
    };
    // A domain alias has its own MX records and policy; a relay domain's mail goes elsewhere.
    match mail_domain(&web, &domain).await {
        Some((_, false)) => {}
        _ => return refuse(StatusCode::NOT_FOUND, "not a domain of this server"),
    }
    let policy =
        crate::dns::records::mta_sts_policy_for(&web.config.hostname, web.config.mail.mta_sts_mode);
    answer(StatusCode::OK, "text/plain; charset=utf-8", policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_of_outlooks_request_is_read_and_nothing_else_is_expanded() {
        let ok = br#"<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>alice@example.org</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>"#;
        assert_eq!(autodiscover_address(ok).unwrap(), "alice@example.org");
        let prefixed = br#"<a:Autodiscover xmlns:a="urn:x"><a:Request><a:EMailAddress> bob@example.org </a:EMailAddress></a:Request></a:Autodiscover>"#;
        assert_eq!(autodiscover_address(prefixed).unwrap(), "bob@example.org");
        let refused: [&[u8]; 7] = [
            br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><Autodiscover><Request><EMailAddress>&lol2;</EMailAddress></Request></Autodiscover>"#,
            br#"<?xml version="1.0"?><!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><Autodiscover><Request><EMailAddress>&xxe;</EMailAddress></Request></Autodiscover>"#,
            br#"<Autodiscover><Request><EMailAddress>alice&#64;example.org</EMailAddress></Request></Autodiscover>"#,
            br#"<Autodiscover><Request><EMailAddress><b>x</b></EMailAddress></Request></Autodiscover>"#,
            br#"<Autodiscover><Request></Request></Autodiscover>"#,
            br#"<Autodiscover><Request><EMailAddress>a@b.c</EMailAddress><EMailAddress>d@e.f</EMailAddress></Request></Autodiscover>"#,
            b"not xml at all <<<",
        ];
        for body in refused {
            assert!(
                autodiscover_address(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn documents_escape_what_they_carry() {
        assert_eq!(
            crate::system::text::xml_escape("a<b>&\"'"),
            "a&lt;b&gt;&amp;&quot;&apos;"
        );
        let d = DomainName::parse("d", "example.org").unwrap();
        let s = Servers {
            host: "mail.example.org",
            pop3: false,
        };
        let x = autoconfig_xml(&s, &d, &d, false);
        assert!(x.contains("<username>%EMAILADDRESS%</username>"), "{x}");
        assert!(!x.contains("pop3"), "{x}");
        let alias = DomainName::parse("d", "alias.example").unwrap();
        let x = autoconfig_xml(&s, &alias, &d, true);
        assert!(
            x.contains("<username>%EMAILLOCALPART%@example.org</username>"),
            "{x}"
        );
    }
}
