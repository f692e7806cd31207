//! The `dmarc_reports` job on the three engines: DMARC aggregate reports in the published
//! format (generated here with mail-auth's writer) mailed to the reports mailbox as plain XML,
//! gzip and zip are stored once each; a malformed one and a 50 MB decompression bomb are named
//! and refused while the rest is kept; a report about a domain not hosted here is ignored;
//! nothing is read twice; the domain page shows the senders and the reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::Path;

use base64::Engine;
use common::web::{http, login, start_with};
use mail_auth::report::{
    ActionDisposition, AuthResult, DKIMAuthResult, Disposition, DkimResult, DmarcResult,
    Identifier, PolicyEvaluated, Record, Report, Row, SPFAuthResult, SPFDomainScope, SpfResult,
};
use modobox::config::Config;
use modobox::distro::{Distro, DistroId};
use modobox::jobs::{self, JobContext, JobError};
use modobox::names::{DomainName, EmailAddress, Hostname, SafePath};
use modobox::store::access::{Actor, Role};
use modobox::store::domains::{self, DomainSpec};
use modobox::store::migrate;

fn record(ip: &str, count: u32, dkim: DmarcResult, disposition: ActionDisposition) -> Record {
    Record {
        row: Row {
            source_ip: Some(ip.parse().unwrap()),
            count,
            policy_evaluated: PolicyEvaluated {
                disposition,
                dkim,
                spf: DmarcResult::Fail,
                reason: vec![],
            },
        },
        identifiers: Identifier {
            envelope_to: None,
            envelope_from: "example.com".into(),
            header_from: "example.com".into(),
        },
        auth_results: AuthResult {
            dkim: vec![DKIMAuthResult {
                domain: "example.com".into(),
                selector: "modoboa".into(),
                result: if dkim == DmarcResult::Pass {
                    DkimResult::Pass
                } else {
                    DkimResult::Fail
                },
                human_result: None,
            }],
            spf: vec![SPFAuthResult {
                domain: "bounces.example.net".into(),
                scope: SPFDomainScope::MailFrom,
                result: SpfResult::Fail,
                human_result: None,
            }],
        },
        extensions: vec![],
    }
}

fn report_xml(domain: &str, id: &str) -> String {
    let now = chrono::Utc::now().timestamp() as u64;
    Report::new()
        .with_org_name("Receiver Corp")
        .with_email("dmarc@receiver.example")
        .with_report_id(id)
        .with_domain(domain)
        .with_date_range_begin(now - 86_400)
        .with_date_range_end(now - 60)
        .with_p(Disposition::Quarantine)
        .with_record(record(
            "192.0.2.1",
            10,
            DmarcResult::Pass,
            ActionDisposition::None,
        ))
        .with_record(record(
            "198.51.100.7",
            3,
            DmarcResult::Fail,
            ActionDisposition::Quarantine,
        ))
        .to_xml()
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn zip(name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut w = mail_auth::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file(name, mail_auth::zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(bytes).unwrap();
    w.finish().unwrap().into_inner()
}

/// A report mail as RFC 7489 section 7.2.1.1 describes it, its attachment base64-encoded.
fn report_mail(content_type: &str, filename: &str, attachment: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(attachment);
    format!(
        "From: dmarc@receiver.example\r\nTo: dmarc-reports@example.com\r\n\
         Subject: Report Domain: example.com Submitter: receiver.example\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nDMARC report.\r\n\
         --b\r\nContent-Type: {content_type}\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"{filename}\"\r\n\r\n{b64}\r\n--b--\r\n"
    )
}

fn deliver(maildir: &Path, name: &str, mail: &str) {
    std::fs::create_dir_all(maildir.join("new")).unwrap();
    std::fs::create_dir_all(maildir.join("cur")).unwrap();
    std::fs::write(maildir.join("new").join(name), mail).unwrap();
}

fn safe(field: &str, p: &Path) -> SafePath {
    SafePath::parse(field, &p.display().to_string()).unwrap()
}

async fn scenario(db: &common::TestDb) {
    let store = db.connect().await;
    migrate::migrate(&store).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut config = Config::new(Hostname::parse("hostname", "mail.example.com").unwrap());
    config.paths.mail_root = safe("paths.mail_root", &root.join("vmail"));
    config.paths.data = safe("paths.data", &root.join("data"));
    config.mail.dmarc_reports_mailbox =
        Some(EmailAddress::parse("m", "dmarc-reports@example.com").unwrap());
    config.validate().unwrap();
    {
        let mut tx = store.begin().await.unwrap();
        let name = DomainName::parse("d", "example.com").unwrap();
        domains::create(&mut tx, Actor::System, &name, &DomainSpec::default(), None)
            .await
            .unwrap();
        common::create_account(
            &mut tx,
            &common::account_spec("admin", Role::SuperAdmins, false, &[]),
        )
        .await;
        tx.commit().await.unwrap();
    }
    let ctx = JobContext {
        config: config.clone(),
        distro: Distro::load(&"debian:12".parse::<DistroId>().unwrap()).unwrap(),
        store: store.clone(),
        node: "node-test".into(),
    };
    let run = |ctx: &JobContext| {
        let ctx = ctx.clone();
        async move { jobs::run_job("dmarc_reports", &ctx).await }
    };

    let m = run(&ctx).await.unwrap();
    assert!(m.contains("has no mailbox on this server"), "{m}");

    let maildir = root.join("vmail/example.com/dmarc-reports/Maildir");
    let plain = report_xml("example.com", "r-plain");
    deliver(
        &maildir,
        "1.M1.host",
        &report_mail(
            "text/xml",
            "receiver.example!example.com!1!2.xml",
            plain.as_bytes(),
        ),
    );
    deliver(
        &maildir,
        "2.M2.host",
        &report_mail(
            "application/gzip",
            "receiver.example!example.com!1!2.xml.gz",
            &gz(report_xml("example.com", "r-gzip").as_bytes()),
        ),
    );
    deliver(
        &maildir,
        "3.M3.host",
        &report_mail(
            "application/zip",
            "receiver.example!example.com!1!2.zip",
            &zip("r.xml", report_xml("example.com", "r-zip").as_bytes()),
        ),
    );
    deliver(
        &maildir,
        "4.M4.host",
        &report_mail(
            "application/gzip",
            "broken.xml.gz",
            &gz(b"<?xml version=\"1.0\"?><feedback><report_metadata><org_name>x"),
        ),
    );
    // 50 MB of XML whitespace, gzipped to a few tens of KiB: refused at 16 MiB, not read whole.
    let mut bomb = b"<?xml version=\"1.0\"?><feedback>".to_vec();
    bomb.resize(50 << 20, b' ');
    deliver(
        &maildir,
        "5.M5.host",
        &report_mail("application/gzip", "bomb.xml.gz", &gz(&bomb)),
    );
    drop(bomb);
    deliver(
        &maildir,
        "6.M6.host",
        &report_mail(
            "application/gzip",
            "foreign.xml.gz",
            &gz(report_xml("foreign.example", "r-foreign").as_bytes()),
        ),
    );
    // Other mail in the mailbox (the admin's, a TLS report): not a DMARC report, no failure.
    deliver(
        &maildir,
        "7.M7.host",
        "From: a@b.example\r\nSubject: hello\r\n\r\nnot a report\r\n",
    );
    deliver(
        &maildir,
        "8.M8.host",
        &report_mail(
            "application/tlsrpt+gzip",
            "x!example.com!1!2.json.gz",
            &gz(b"{}"),
        ),
    );
    // A zip of many entries (each a copy of a report): refused before reading them all.
    let mut w = mail_auth::zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for i in 0..11 {
        w.start_file(
            format!("r{i}.xml"),
            mail_auth::zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        w.write_all(report_xml("example.com", &format!("r-many-{i}")).as_bytes())
            .unwrap();
    }
    let many = w.finish().unwrap().into_inner();
    deliver(
        &maildir,
        "9.M9.host",
        &report_mail("application/zip", "many.zip", &many),
    );
    match run(&ctx).await {
        Err(JobError::NotOk { message, .. }) => {
            assert!(message.contains("9 new message(s)"), "{message}");
            assert!(message.contains("2 without a DMARC report"), "{message}");
            assert!(
                message.contains("9.M9.host: a zip of 11 entries"),
                "{message}"
            );
            assert!(message.contains("3 DMARC reports stored"), "{message}");
            assert!(
                message.contains("1 about domains not hosted here ignored"),
                "{message}"
            );
            assert!(message.contains("4.M4.host: unreadable"), "{message}");
            assert!(
                message.contains("5.M5.host: the report is larger than 16 MiB"),
                "{message}"
            );
        }
        other => panic!("want a partial run naming the broken reports, got {other:?}"),
    }
    assert_eq!(
        db.query("SELECT COUNT(*) FROM modobox_dmarc_report").trim(),
        "3"
    );
    let rows = db.query(
        "SELECT source_ip, SUM(messages), MIN(dkim), MIN(disposition) FROM modobox_dmarc_record \
         GROUP BY source_ip ORDER BY source_ip",
    );
    assert_eq!(
        rows.trim().replace('\t', "|"),
        "192.0.2.1|30|pass|none\n198.51.100.7|9|fail|quarantine",
        "{rows}"
    );

    // Nothing is read twice; the same report delivered again is known.
    let m = run(&ctx).await.unwrap();
    assert!(m.starts_with("0 new message(s)"), "{m}");
    deliver(
        &maildir,
        "10.M10.host",
        &report_mail("text/xml", "again.xml", plain.as_bytes()),
    );
    let m = run(&ctx).await.unwrap();
    assert!(m.contains("0 DMARC reports stored, 1 already known"), "{m}");

    {
        let mut tx = store.begin().await.unwrap();
        let since = chrono::Utc::now() - chrono::Duration::days(30);
        let s = modobox::store::dmarc_reports::sources(&mut tx, "example.com", since)
            .await
            .unwrap();
        assert_eq!(s.len(), 2, "{s:?}");
        let r = modobox::store::dmarc_reports::reports(&mut tx, "example.com", since)
            .await
            .unwrap();
        assert_eq!(r.len(), 3, "{r:?}");
    }
    // The domain page shows who sends as the domain and the reports.
    let port = start_with(&store, config).await;
    let (session, _) = login(port, "admin").await;
    let page = http(port, "GET", "/domains/example.com", &[&session], None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    for want in [
        "DMARC reports",
        "<th scope=\"row\">192.0.2.1</th><td>example.com</td><td>30</td><td>30</td>",
        "<th scope=\"row\">198.51.100.7</th><td>example.com</td><td>9</td><td><span class=\"state down\">0</span>",
        "9 / 0",
        "Receiver Corp",
        "p=quarantine",
        "dmarc-reports@example.com",
    ] {
        assert!(page.body.contains(want), "{want} not on the page");
    }
}

#[tokio::test]
async fn reports_are_read_stored_once_and_shown_on_every_engine() {
    for db in common::all().await {
        scenario(&db).await;
    }
}
