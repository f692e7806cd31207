//! Port 25's checks against a DNS server started here (tests/common/dns.rs): the inbound
//! authentication milter spoken to over the milter protocol, as Postfix speaks it, with real
//! SPF, DKIM (a message signed here, its key in the zone) and DMARC lookups; and the
//! `postscreen_allowlist` job expanding SPF records into postscreen's table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::dns::{dns_server, SharedZone};
use mail_auth::common::crypto::{RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use modobox::config::{Antispam, Config};
use modobox::dns::resolver::Resolver;
use modobox::jobs::postscreen_allowlist;
use modobox::milter::inbound::{session, Checker};
use modobox::milter::protocol;
use modobox::names::Hostname;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::PrivateKeyDer;

const HOST: &str = "mail.example.test";

fn settings(server: SocketAddr) -> Antispam {
    Antispam {
        resolver: Some(server),
        ..Antispam::default()
    }
}

async fn packet<S: AsyncWrite + Unpin>(s: &mut S, cmd: u8, data: &[u8]) {
    s.write_all(&protocol::frame(cmd, data)).await.unwrap();
}

async fn reply<S: AsyncRead + Unpin>(s: &mut S) -> (u8, Vec<u8>) {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.unwrap();
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.unwrap();
    (buf[0], buf[1..].to_vec())
}

/// What the milter did with one message: the headers it inserted, the ones it deleted (name,
/// index), and its final answer.
#[derive(Debug, Default)]
struct Outcome {
    inserted: Vec<(String, String)>,
    deleted: Vec<(String, u32)>,
    last: u8,
    text: String,
}

fn nul_strings(data: &[u8]) -> Vec<String> {
    protocol::strings(data)
}

/// One SMTP session's worth of milter packets, as Postfix sends them.
async fn deliver(checker: &Checker, ip: &str, mail_from: &str, message: &[u8]) -> Outcome {
    let (mta, milter) = tokio::io::duplex(1 << 20);
    let (out, served) = tokio::join!(
        mta_side(mta, ip, mail_from, message),
        session(milter, checker, 50 << 20)
    );
    served.unwrap();
    out
}

async fn mta_side(
    mut mta: tokio::io::DuplexStream,
    ip: &str,
    mail_from: &str,
    message: &[u8],
) -> Outcome {
    let mut offer = Vec::new();
    for v in [6u32, 0x1ff, 0x1f_ffff] {
        offer.extend_from_slice(&v.to_be_bytes());
    }
    packet(&mut mta, b'O', &offer).await;
    let (cmd, neg) = reply(&mut mta).await;
    assert_eq!(cmd, b'O');
    let leading_space = protocol::negotiated(&neg, protocol::HEADER_LEADING_SPACE);
    let mut connect = b"client.test\0".to_vec();
    connect.push(b'4');
    connect.extend_from_slice(&25u16.to_be_bytes());
    connect.extend_from_slice(ip.as_bytes());
    connect.push(0);
    packet(&mut mta, b'C', &connect).await;
    assert_eq!(reply(&mut mta).await.0, b'c');
    packet(&mut mta, b'H', b"client.test\0").await;
    assert_eq!(reply(&mut mta).await.0, b'c');
    packet(&mut mta, b'M', format!("<{mail_from}>\0").as_bytes()).await;
    assert_eq!(reply(&mut mta).await.0, b'c');
    packet(&mut mta, b'R', b"<alice@example.test>\0").await;
    assert_eq!(reply(&mut mta).await.0, b'c');
    let text = String::from_utf8(message.to_vec()).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    // Unfold into fields: a continuation line belongs to the field before it.
    let mut fields: Vec<String> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            let last = fields.last_mut().unwrap();
            last.push_str("\r\n");
            last.push_str(line);
        } else {
            fields.push(line.to_string());
        }
    }
    for f in fields {
        let (name, value) = f.split_once(':').unwrap();
        // Postfix sends values without the space after the colon unless asked to keep it.
        let value = if leading_space {
            value.to_string()
        } else {
            value.strip_prefix(' ').unwrap_or(value).to_string()
        };
        let mut data = name.as_bytes().to_vec();
        data.push(0);
        data.extend_from_slice(value.replace("\r\n", "\n").as_bytes());
        data.push(0);
        packet(&mut mta, b'L', &data).await;
        assert_eq!(reply(&mut mta).await.0, b'c');
    }
    packet(&mut mta, b'N', &[]).await;
    assert_eq!(reply(&mut mta).await.0, b'c');
    packet(&mut mta, b'B', body.as_bytes()).await;
    assert_eq!(reply(&mut mta).await.0, b'c');
    packet(&mut mta, b'E', &[]).await;
    let mut out = Outcome::default();
    loop {
        let (cmd, data) = reply(&mut mta).await;
        match cmd {
            b'i' => {
                let s = nul_strings(&data[4..]);
                out.inserted.push((s[0].clone(), s[1].clone()));
            }
            b'm' => {
                let index = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                let s = nul_strings(&data[4..]);
                assert_eq!(s.get(1).map(String::as_str), Some(""), "only deletions");
                out.deleted.push((s[0].clone(), index));
            }
            _ => {
                out.last = cmd;
                out.text = String::from_utf8_lossy(&data)
                    .trim_end_matches('\0')
                    .to_string();
                break;
            }
        }
    }
    packet(&mut mta, b'Q', &[]).await;
    out
}

fn message(from: &str, subject: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: Sender <{from}>\r\nTo: <alice@example.test>\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@test>\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n{extra}\r\n\
         Body line one.\r\n  indented line.\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn the_inbound_milter_checks_spf_dkim_and_dmarc_over_the_milter_protocol() {
    let zone: SharedZone = Arc::default();
    let server = dns_server(zone.clone(), false).await;
    let key = modobox::keys::dkim::generate_key(2048).unwrap();
    {
        let mut z = zone.lock().unwrap();
        z.txt("sender.test", "v=spf1 ip4:192.0.2.20 -all");
        z.txt("_dmarc.sender.test", "v=DMARC1; p=reject");
        z.txt(
            "sel._domainkey.sender.test",
            &modobox::keys::dkim::txt_value(&key.public_b64),
        );
        z.txt("nodmarc.test", "v=spf1 ip4:192.0.2.20 -all");
        z.txt("soft.test", "v=spf1 ip4:192.0.2.20 ~all");
        z.a("sender.test", &["192.0.2.20"]);
        // The HELO name every test client gives fails SPF: that never stands for the sender.
        z.txt("client.test", "v=spf1 -all");
    }
    let checker = Checker::new(HOST, &settings(server)).unwrap();
    let der = PrivateKeyDer::from_pem_slice(key.private_pem.as_bytes()).unwrap();
    let signer = DkimSigner::from_key(RsaKey::<Sha256>::from_key_der(der).unwrap())
        .domain("sender.test")
        .selector("sel")
        .headers(["From", "To", "Subject", "Message-ID", "Date"]);

    // Direct from the sender's own address: SPF passes, DMARC through SPF.
    let raw = message("a@sender.test", "direct", "");
    let o = deliver(&checker, "192.0.2.20", "a@sender.test", &raw).await;
    assert_eq!(o.last, b'a', "{o:?}");
    let (name, value) = &o.inserted[0];
    assert_eq!(name, "Authentication-Results");
    assert!(
        value.trim_start().starts_with(&format!("{HOST};")),
        "{value}"
    );
    assert!(
        value.contains("spf=pass") && value.contains("dmarc=pass"),
        "{value}"
    );

    // Forwarded (another server's address): SPF fails, the author's signature passes DMARC.
    let mut signed = signer.sign(&raw).unwrap().to_header().into_bytes();
    signed.extend_from_slice(&raw);
    let o = deliver(&checker, "198.51.100.9", "a@sender.test", &signed).await;
    assert_eq!(o.last, b'a', "{o:?}");
    let value = &o.inserted[0].1;
    assert!(
        value.contains("spf=fail") && value.contains("dkim=pass") && value.contains("dmarc=pass"),
        "{value}"
    );

    // The same signature over a changed body: DKIM fails, so DMARC p=reject refuses.
    let mut tampered = signed.clone();
    let n = tampered.len();
    tampered[n - 5] = b'X';
    let o = deliver(&checker, "198.51.100.9", "a@sender.test", &tampered).await;
    assert_eq!(o.last, b'y', "{o:?}");
    assert!(
        o.text.starts_with("550 5.7.1") && o.text.contains("sender.test"),
        "{}",
        o.text
    );
    assert!(o.inserted.is_empty());

    // No DMARC record, SPF -all: refused by SPF; with ~all: accepted and recorded.
    let o = deliver(
        &checker,
        "198.51.100.9",
        "b@nodmarc.test",
        &message("b@nodmarc.test", "n", ""),
    )
    .await;
    assert_eq!(o.last, b'y');
    assert!(
        o.text.starts_with("550 5.7.23") && o.text.contains("198.51.100.9"),
        "{}",
        o.text
    );
    let o = deliver(
        &checker,
        "198.51.100.9",
        "c@soft.test",
        &message("c@soft.test", "s", ""),
    )
    .await;
    assert_eq!(o.last, b'a');
    assert!(o.inserted[0].1.contains("spf=softfail"), "{:?}", o.inserted);

    // Two From: fields, or one naming two domains: refused whatever else passes.
    let two = message("a@sender.test", "two", "From: <ceo@victim.test>\r\n");
    let o = deliver(&checker, "192.0.2.20", "a@sender.test", &two).await;
    assert_eq!(o.last, b'y');
    assert!(o.text.contains("2 From: header fields"), "{}", o.text);
    let mixed = String::from_utf8(message("a@sender.test", "mixed", ""))
        .unwrap()
        .replacen(
            "From: Sender <a@sender.test>",
            "From: a@sender.test, ceo@victim.test",
            1,
        )
        .into_bytes();
    let o = deliver(&checker, "192.0.2.20", "a@sender.test", &mixed).await;
    assert_eq!(o.last, b'y');
    assert!(o.text.contains("2 domains"), "{}", o.text);

    // Forged results of this server and the quarantine mark are deleted; others' kept.
    let forged = format!(
        "Authentication-Results: other.test; spf=pass\r\n\
         Authentication-Results: {HOST}; dmarc=pass (forged)\r\n\
         X-Modobox-DMARC: none\r\n"
    );
    let o = deliver(
        &checker,
        "192.0.2.20",
        "a@sender.test",
        &message("a@sender.test", "f", &forged),
    )
    .await;
    assert_eq!(o.last, b'a');
    assert_eq!(
        o.deleted,
        vec![
            ("X-Modobox-DMARC".to_string(), 1),
            ("Authentication-Results".to_string(), 2)
        ]
    );
}

#[tokio::test]
async fn the_allowlist_job_expands_spf_records_and_keeps_what_a_failure_cannot_renew() {
    let zone: SharedZone = Arc::default();
    let server = dns_server(zone.clone(), false).await;
    {
        let mut z = zone.lock().unwrap();
        z.txt(
            "_spf.big.test",
            "v=spf1 include:_a.big.test include:_c.big.test redirect=_b.big.test",
        );
        z.txt(
            "_a.big.test",
            "v=spf1 ip4:192.0.2.0/24 +ip4:198.51.100.7 ip6:2001:db8::/32 include:_a.big.test \
             include:%{i}._m.big.test -all",
        );
        z.txt("_b.big.test", "v=spf1 ip4:203.0.113.0/25 ~all");
        // Only what a record allows, as narrow as a pool: no doubtful or denied range, no
        // carve-out's container, nothing wider than /8, no redirect beside "all".
        z.txt(
            "_c.big.test",
            "v=spf1 -ip4:198.18.0.5 ip4:198.18.0.0/24 ~ip4:198.51.100.64/26 \
             ?include:_d.big.test -include:_d.big.test ip4:10.1.2.3/24 ip4:0.0.0.0/1 \
             ip6:2001:db8:1::/16 a mx exists:%{i}.x.big.test redirect=_d.big.test -all",
        );
        z.txt("_d.big.test", "v=spf1 ip4:192.0.2.200 -all");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(Hostname::parse("hostname", HOST).unwrap());
    config.paths.data =
        modobox::names::SafePath::parse("paths.data", dir.path().to_str().unwrap()).unwrap();
    config.antispam.allow_spf_domains = vec!["_spf.big.test".into(), "broken.test".into()];
    config.antispam.resolver = Some(server);
    let resolver = Resolver::new(Some(server), std::time::Duration::from_secs(2)).unwrap();
    let path = postscreen_allowlist::file(&config);
    postscreen_allowlist::ensure(&config).unwrap();
    assert!(path.exists());

    let r = postscreen_allowlist::refresh(&config, &resolver, &path)
        .await
        .unwrap();
    assert!(r.changed, "{r:?}");
    assert_eq!(r.failures.len(), 1, "{r:?}");
    assert!(r.failures[0].contains("broken.test"), "{r:?}");
    let table = std::fs::read_to_string(&path).unwrap();
    for want in [
        "192.0.2.0/24\tpermit",
        "198.51.100.7/32\tpermit",
        "2001:db8::/32\tpermit",
        "203.0.113.0/25\tpermit",
    ] {
        assert!(table.contains(want), "{want} missing:\n{table}");
    }
    assert!(
        table.contains("10.1.2.0/24\tpermit"),
        "host bits cleared:\n{table}"
    );
    for never in [
        "198.18.0",
        "198.51.100.64",
        "0.0.0.0",
        "192.0.2.200",
        "2001::",
    ] {
        assert!(!table.contains(never), "{never} allowed:\n{table}");
    }
    assert!(r.done.starts_with("5 ranges of 1 domains"), "{}", r.done);

    // Nothing changed: the table is not rewritten (no reload).
    let again = postscreen_allowlist::refresh(&config, &resolver, &path)
        .await
        .unwrap();
    assert!(!again.changed);

    // The redirect target disappears: the domain fails and keeps every range it had.
    zone.lock()
        .unwrap()
        .remove("_b.big.test", hickory_resolver::proto::rr::RecordType::TXT);
    // (A run makes its resolver afresh: no cached answer.)
    let resolver = Resolver::new(Some(server), std::time::Duration::from_secs(2)).unwrap();
    let failed = postscreen_allowlist::refresh(&config, &resolver, &path)
        .await
        .unwrap();
    assert!(
        failed.failures.iter().any(|f| f.contains("_b.big.test")),
        "{failed:?}"
    );
    assert!(!failed.changed);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), table);
}
