//! The `tls_reports` job on the three engines: TLS reports (RFC 8460) mailed to the reports
//! mailbox are read from its Maildir (gzipped, as senders attach them), each policy about a
//! hosted domain stored once (a second delivery of the same report changes nothing, a report
//! about a domain not hosted here is ignored, a broken attachment is named and the rest
//! kept), nothing read twice; the domain page shows them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::Path;

use base64::Engine;
use common::web::{http, login, start_with};
use modobox::config::Config;
use modobox::distro::{Distro, DistroId};
use modobox::jobs::{self, JobContext, JobError};
use modobox::names::{DomainName, EmailAddress, Hostname, SafePath};
use modobox::store::access::{Actor, Role};
use modobox::store::domains::{self, DomainSpec};
use modobox::store::migrate;

const REPORT: &str = r#"{
  "organization-name": "Company-X",
  "date-range": {"start-datetime": "DAY-1T00:00:00Z", "end-datetime": "DAY-1T23:59:59Z"},
  "contact-info": "sts-reporting@company-x.example",
  "report-id": "ID",
  "policies": [{
    "policy": {"policy-type": "sts", "policy-string": ["version: STSv1", "mode: testing", "mx: mail.example.com", "max_age: 604800"],
               "policy-domain": "example.com", "mx-host": ["mail.example.com"]},
    "summary": {"total-successful-session-count": 5326, "total-failure-session-count": 303},
    "failure-details": [
      {"result-type": "certificate-expired", "sending-mta-ip": "2001:db8:abcd:12::1",
       "receiving-mx-hostname": "mail.example.com", "failed-session-count": 100},
      {"result-type": "starttls-not-supported", "sending-mta-ip": "203.0.113.9",
       "receiving-mx-hostname": "mail.example.com", "failed-session-count": 203}
    ]
  }, {
    "policy": {"policy-type": "no-policy-found", "policy-domain": "foreign.example"},
    "summary": {"total-successful-session-count": 1, "total-failure-session-count": 0}
  }]
}"#;

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A report mail as RFC 8460 §5.3 describes it, its attachment `attachment` (base64).
fn report_mail(attachment: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(attachment);
    format!(
        "From: noreply-smtp-tls-reporting@company-x.example\r\nTo: tlsrpt@example.com\r\n\
         Subject: Report Domain: example.com Submitter: company-x.example Report-ID: <ID>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nTLS report.\r\n\
         --b\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"company-x.example!example.com!1!2.json.gz\"\r\n\r\n\
         {b64}\r\n--b--\r\n"
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
    config.mail.tls_reports_mailbox = Some(EmailAddress::parse("m", "tlsrpt@example.com").unwrap());
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
        async move { jobs::run_job("tls_reports", &ctx).await }
    };

    // No mailbox yet: said so, nothing fails.
    let m = run(&ctx).await.unwrap();
    assert!(m.contains("has no mailbox on this server"), "{m}");

    let maildir = root.join("vmail/example.com/tlsrpt/Maildir");
    let day = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let json = REPORT
        .replace("DAY-1", &day)
        .replace("\"ID\"", "\"2026-report-1\"");
    deliver(&maildir, "1.M1.host", &report_mail(&gz(json.as_bytes())));
    deliver(
        &maildir,
        "2.M2.host",
        "From: a@b.example\r\nSubject: hello\r\n\r\nnot a report\r\n",
    );
    // A sender whose attachment is not gzip at all.
    deliver(&maildir, "3.M3.host", &report_mail(b"\x1f\x8bgarbage"));
    match run(&ctx).await {
        Err(JobError::NotOk { message, .. }) => {
            assert!(message.contains("3 new message(s)"), "{message}");
            assert!(message.contains("1 report policies stored"), "{message}");
            assert!(
                message.contains("1 about domains not hosted here ignored"),
                "{message}"
            );
            assert!(message.contains("3.M3.host: not gzip"), "{message}");
        }
        other => panic!("want a partial run naming the broken report, got {other:?}"),
    }
    let rows = db.query(
        "SELECT organization, report_id, policy_type, successful, failed FROM modobox_tls_report",
    );
    assert_eq!(
        rows.trim().replace('\t', "|"),
        "Company-X|2026-report-1|sts|5326|303",
        "{rows}"
    );

    // Nothing is read twice; the same report delivered again is known.
    std::fs::rename(
        maildir.join("new/1.M1.host"),
        maildir.join("cur/1.M1.host:2,S"),
    )
    .unwrap();
    let m = run(&ctx).await.unwrap();
    assert!(m.starts_with("0 new message(s)"), "{m}");
    deliver(&maildir, "4.M4.host", &report_mail(&gz(json.as_bytes())));
    let m = run(&ctx).await.unwrap();
    assert!(
        m.contains("0 report policies stored, 1 already known"),
        "{m}"
    );
    assert_eq!(
        db.query("SELECT COUNT(*) FROM modobox_tls_report").trim(),
        "1"
    );

    // The domain page shows them.
    let port = start_with(&store, config).await;
    let (session, _) = login(port, "admin").await;
    let page = http(port, "GET", "/domains/example.com", &[&session], None).await;
    assert_eq!(page.status, 200);
    for want in [
        "TLS reports",
        "Company-X",
        "starttls-not-supported (203) at mail.example.com from 203.0.113.9",
        "certificate-expired (100)",
        "tlsrpt@example.com",
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
