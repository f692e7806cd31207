use super::*;

fn parser() -> Parser {
    let now = chrono::DateTime::parse_from_rfc3339("2026-12-02T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    Parser::new(
        Domains::new(["example.test", "other.test", "relay.test", "alias.test"]),
        Zone::Fixed(0),
        now,
    )
}

fn run(lines: &str) -> std::collections::BTreeMap<String, Counters> {
    let mut p = parser();
    p.feed(lines.as_bytes());
    p.finish();
    p.totals()
}

fn get(t: &std::collections::BTreeMap<String, Counters>, name: &str, c: Counter) -> u64 {
    t.get(name).map_or(0, |x| x.get(c))
}

const H: &str = "Dec  1 16:38:15 mail.example.test";

#[test]
fn content_filter_hop_is_not_a_delivery() {
    let t = run(&format!(
        "{H} postfix/smtpd[1]: AAAAA1: client=localhost[127.0.0.1]\n\
         {H} postfix/qmgr[2]: AAAAA1: from=<sender@outside.test>, size=420, nrcpt=1 (queue active)\n\
         {H} postfix/10025/smtpd[3]: BBBBB1: client=localhost[127.0.0.1]\n\
         {H} postfix/qmgr[2]: BBBBB1: from=<sender@outside.test>, size=1060, nrcpt=1 (queue active)\n\
         {H} postfix/amavis/smtp[4]: AAAAA1: to=<alice@example.test>, relay=127.0.0.1[127.0.0.1]:10024, delay=0.6, dsn=2.0.0, status=sent (250 2.0.0 from MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: queued as BBBBB1)\n\
         {H} postfix/qmgr[2]: AAAAA1: removed\n\
         {H} postfix/lmtp[5]: BBBBB1: to=<alice@example.test>, relay=mail.example.test[private/dovecot-lmtp], delay=0.1, dsn=2.0.0, status=sent (250 2.0.0 <alice@example.test> x Saved)\n\
         {H} postfix/qmgr[2]: BBBBB1: removed\n"
    ));
    assert_eq!(get(&t, "example.test", Counter::Recv), 1);
    assert_eq!(get(&t, "example.test", Counter::SizeRecv), 1060);
    assert_eq!(get(&t, "global", Counter::Recv), 1);
    assert_eq!(get(&t, "global", Counter::Sent), 0);
}

#[test]
fn orig_to_of_the_hop_line_names_the_alias() {
    // Address mapping before the filter: the final LMTP line has no orig_to; the hop line has it.
    // The final line comes first here (lines of different processes are not in causal order).
    let t = run(&format!(
        "{H} postfix/10025/smtpd[3]: BBBBB2: client=localhost[127.0.0.1]\n\
         {H} postfix/qmgr[2]: BBBBB2: from=<sender@outside.test>, size=900, nrcpt=1 (queue active)\n\
         {H} postfix/lmtp[5]: BBBBB2: to=<alice@example.test>, relay=mail.example.test[private/dovecot-lmtp], delay=0.1, dsn=2.0.0, status=sent (250 2.0.0 Saved)\n\
         {H} postfix/qmgr[2]: BBBBB2: removed\n\
         {H} postfix/amavis/smtp[4]: AAAAA2: to=<alice@example.test>, orig_to=<anyone@other.test>, relay=127.0.0.1[127.0.0.1]:10024, delay=0.6, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as BBBBB2)\n"
    ));
    assert_eq!(get(&t, "other.test", Counter::Recv), 1);
    assert_eq!(get(&t, "example.test", Counter::Recv), 0);
}

#[test]
fn orig_to_on_the_final_line_wins() {
    let t = run(&format!(
        "{H} postfix/qmgr[2]: CCCCC1: from=<sender@outside.test>, size=500, nrcpt=1 (queue active)\n\
         {H} postfix/relay/smtp[6]: CCCCC1: to=<dest@relay.test>, orig_to=<fwd@example.test>, relay=127.0.0.1[127.0.0.1]:2525, delay=0.1, dsn=2.0.0, status=sent (250 2.0.0 Ok accepted)\n"
    ));
    assert_eq!(get(&t, "example.test", Counter::Recv), 1);
    assert_eq!(get(&t, "relay.test", Counter::Recv), 0);
}

#[test]
fn discarded_by_amavis_is_spam_not_a_delivery() {
    let t = run(&format!(
        "{H} postfix/qmgr[2]: DDDDD1: from=<sender@outside.test>, size=479, nrcpt=1 (queue active)\n\
         {H} amavis[1036]: (01036-03-5) Blocked SPAM {{DiscardedInbound}}, [127.0.0.1]:58832 <sender@outside.test> -> <alice@example.test>, Queue-ID: DDDDD1, Hits: 999.8, size: 445, 722 ms\n\
         {H} postfix/amavis/smtp[1048]: DDDDD1: to=<alice@example.test>, relay=127.0.0.1[127.0.0.1]:10024, delay=2.8, dsn=2.7.0, status=sent (250 2.7.0 Ok, discarded, id=01036-03-5 - spam)\n\
         {H} amavis[1]: (01226-03-7) Blocked INFECTED (Eicar-Test-Signature.UNOFFICIAL) {{DiscardedInbound,Quarantined}}, [127.0.0.1]:1 <sender@outside.test> -> <alice@example.test>, quarantine: x, Queue-ID: EEEEE1\n"
    ));
    assert_eq!(get(&t, "example.test", Counter::Spam), 1);
    assert_eq!(get(&t, "example.test", Counter::Virus), 1);
    assert_eq!(get(&t, "example.test", Counter::Recv), 0);
    assert_eq!(get(&t, "global", Counter::Recv), 0);
}

#[test]
fn amavis_lines_count_each_recipient_domain() {
    let t = run(&format!(
        "{H} amavis[1035]: (01035-03-6) Blocked SPAM {{DiscardedInbound,RelayedTaggedInbound}}, [127.0.0.1]:58852 <sender@outside.test> -> <alice@example.test>,<x@other.test>,<y@nowhere.test>, Queue-ID: 991652C4362, Hits: 999.8\n\
         {H} amavis[1035]: (01035-03-6) Passed SPAMMY {{RelayedTaggedInbound}}, [127.0.0.1]:58852 <sender@outside.test> -> <bob@example.test>, Queue-ID: 991652C4362\n\
         {H} amavis[1035]: (01035-03-6) Passed CLEAN {{RelayedInbound}}, [127.0.0.1]:58852 <sender@outside.test> -> <bob@example.test>, Queue-ID: 991652C4363\n"
    ));
    assert_eq!(get(&t, "example.test", Counter::Spam), 2);
    assert_eq!(get(&t, "other.test", Counter::Spam), 1);
    assert_eq!(get(&t, "global", Counter::Spam), 3);
}

#[test]
fn rejects_with_and_without_queue_id() {
    let t = run(&format!(
        "{H} postfix/smtpd[1006]: NOQUEUE: reject: RCPT from localhost[127.0.0.1]: 550 5.1.1 <nobody2@example.test>: Recipient address rejected: User unknown in virtual mailbox table; from=<sender@outside.test> to=<nobody2@example.test> proto=ESMTP helo=<client.outside.test>\n\
         {H} postfix/smtpd[1006]: 86A5C2C4343: reject: RCPT from localhost[127.0.0.1]: 550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in virtual mailbox table; from=<sender@outside.test> to=<nobody@example.test> proto=ESMTP helo=<client.outside.test>\n\
         {H} postfix/smtpd[1006]: NOQUEUE: reject: RCPT from x[10.0.0.1]: 454 4.7.1 <a@nowhere.test>: Relay access denied; from=<s@outside.test> to=<a@nowhere.test> proto=ESMTP helo=<x>\n\
         {H} postfix/smtpd[1006]: NOQUEUE: reject: RCPT from x[10.0.0.1]: 450 4.2.0 <a@other.test>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/other.test.html; from=<s@outside.test> to=<a@other.test> proto=ESMTP helo=<x>\n\
         {H} postfix/postscreen[9]: NOQUEUE: reject: RCPT from [10.0.0.2]:4711: 550 5.7.1 Service unavailable; client [10.0.0.2] blocked using zen.spamhaus.org; from=<s@outside.test>, to=<b@other.test>, proto=ESMTP, helo=<x>\n\
         {H} postfix/smtpd[1006]: NOQUEUE: reject_warning: RCPT from x[10.0.0.1]: 550 nope; from=<s@outside.test> to=<c@other.test> proto=ESMTP helo=<x>\n"
    ));
    assert_eq!(get(&t, "example.test", Counter::Reject), 2);
    assert_eq!(get(&t, "other.test", Counter::Reject), 1);
    assert_eq!(get(&t, "other.test", Counter::Greylist), 1);
    // The whole server's: the relay attempt to a domain hosted nowhere here counts too.
    assert_eq!(get(&t, "global", Counter::Reject), 4);
    assert_eq!(get(&t, "global", Counter::Greylist), 1);
}

#[test]
fn global_counts_the_whole_server() {
    // Mail out of the server and a bounce between two outside domains (a backscatter of a
    // forward) belong to no hosted domain, and are the server's traffic all the same.
    let t = run(&format!(
        "{H} postfix/qmgr[2]: OUT001: from=<someone@outside.test>, size=500, nrcpt=1 (queue active)\n\
         {H} postfix/smtp[3]: OUT001: to=<friend@elsewhere.test>, relay=mx.elsewhere.test[192.0.2.9]:25, delay=1, dsn=2.0.0, status=sent (250 ok)\n\
         {H} postfix/qmgr[2]: OUT002: from=<a@outside.test>, size=300, nrcpt=1 (queue active)\n\
         {H} postfix/smtp[3]: OUT002: to=<b@elsewhere.test>, relay=mx.elsewhere.test[192.0.2.9]:25, delay=1, dsn=5.1.1, status=bounced (550 no)\n\
         {H} postfix/qmgr[2]: OUT003: from=<c@outside.test>, status=expired, returned to sender\n"
    ));
    assert_eq!(get(&t, "global", Counter::Recv), 1);
    assert_eq!(get(&t, "global", Counter::SizeRecv), 500);
    assert_eq!(get(&t, "global", Counter::Bounced), 2);
    assert_eq!(get(&t, "global", Counter::Sent), 0);
}

#[test]
fn deferred_then_sent_is_one_delivery() {
    let mut lines = format!(
        "{H} postfix/qmgr[2]: FFFFF1: from=<alice@example.test>, size=1000, nrcpt=1 (queue active)\n"
    );
    for _ in 0..3 {
        lines += &format!("{H} postfix/relay/smtp[1]: FFFFF1: to=<later1@relay.test>, relay=127.0.0.1[127.0.0.1]:2525, delay=0.05, dsn=4.3.0, status=deferred (host 127.0.0.1[127.0.0.1] said: 451 4.3.0 try again later (in reply to RCPT TO command))\n");
        lines += &format!("{H} postfix/qmgr[2]: FFFFF1: from=<alice@example.test>, size=1000, nrcpt=1 (queue active)\n");
    }
    lines += &format!("{H} postfix/relay/smtp[1]: FFFFF1: to=<later1@relay.test>, relay=127.0.0.1[127.0.0.1]:2525, delay=5.5, dsn=2.0.0, status=sent (250 2.0.0 Ok accepted)\n");
    let t = run(&lines);
    assert_eq!(get(&t, "relay.test", Counter::Recv), 1);
    assert_eq!(get(&t, "example.test", Counter::Sent), 1);
    assert_eq!(get(&t, "example.test", Counter::SizeSent), 1000);
    assert_eq!(get(&t, "global", Counter::Sent), 1);
    assert_eq!(get(&t, "global", Counter::Recv), 1);
}

#[test]
fn bounce_counts_once_per_hosted_domain_and_once_globally() {
    let t = run(&format!(
        "{H} postfix/qmgr[2]: GGGGG1: from=<alice@example.test>, size=1762, nrcpt=1 (queue active)\n\
         {H} postfix/relay/smtp[1074]: GGGGG1: to=<bounce1@relay.test>, relay=127.0.0.1[127.0.0.1]:2525, delay=0.05, dsn=5.1.1, status=bounced (host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <bounce1@relay.test>: no such user here (in reply to RCPT TO command))\n\
         {H} postfix/qmgr[2]: HHHHH1: from=<alice@example.test>, status=expired, returned to sender\n"
    ));
    assert_eq!(get(&t, "relay.test", Counter::Bounced), 1);
    assert_eq!(get(&t, "example.test", Counter::Bounced), 2);
    assert_eq!(get(&t, "global", Counter::Bounced), 2);
    assert_eq!(get(&t, "example.test", Counter::Sent), 0);
}

#[test]
fn srs_senders_are_reversed() {
    assert_eq!(
        sender_domain(b"SRS0=HHH=TT=example.test=alice@fwd.outside.test"),
        b"example.test"
    );
    assert_eq!(
        sender_domain(b"SRS1=HHH=fwd.test==HHH=TT=other.test=bob@fwd2.test"),
        b"other.test"
    );
    assert_eq!(sender_domain(b"srs0+x@outside.test"), b"outside.test");
    // A message forwarded with SRS from an outside sender is not "sent" by the forwarder.
    let t = run(&format!(
        "{H} postfix/qmgr[2]: JJJJJ1: from=<SRS0=ab=12=outside.test=joe@example.test>, size=10, nrcpt=1 (queue active)\n\
         {H} postfix/smtp[1]: JJJJJ1: to=<x@far.test>, relay=mx.far.test[192.0.2.1]:25, delay=1, dsn=2.0.0, status=sent (250 ok queued as ZZZZZZ1)\n"
    ));
    assert_eq!(get(&t, "example.test", Counter::Sent), 0);
}

#[test]
fn timestamps_classic_rfc3339_and_journal_iso() {
    let mut p = parser();
    let l1 = b"Dec  1 16:38:15 mail postfix/smtpd[1]: connect from x";
    let l2 = b"2026-12-01T16:38:15.123456+00:00 mail postfix/smtpd[1]: connect from x";
    let l3 = b"2026-12-01T17:38:15+0100 mail postfix/smtpd[1]: connect from x";
    let l4 = b"2026-12-01T16:38:59Z mail postfix/smtpd[1]: connect from x";
    let l5 = b"Dec  1 16:38:15.123456 mail postfix/smtpd[1]: connect from x";
    let expect = days_from_civil(2026, 12, 1) * 1440 + 16 * 60 + 38;
    for l in [&l1[..], &l2[..], &l3[..], &l4[..], &l5[..]] {
        assert_eq!(
            p.timestamp(l).map(|x| x.0),
            Some(expect),
            "{}",
            String::from_utf8_lossy(l)
        );
    }
    // After "tomorrow": last year.
    let l = b"Dec 25 10:00:00 mail postfix/smtpd[1]: x";
    assert_eq!(
        p.timestamp(l).map(|x| x.0),
        Some(days_from_civil(2025, 12, 25) * 1440 + 600)
    );
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(days_from_civil(2000, 3, 1), 11017);
}

#[test]
fn garbage_and_truncated_lines_are_skipped() {
    let mut p = parser();
    let mut junk: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    junk.extend_from_slice(b"\nDec  1 16:3\nDec  1 16:38:15 mail postfix/qmgr[2]: AB\n");
    junk.extend_from_slice(b"Dec  1 16:38:15 mail postfix/lmtp[2]: ABCDE1: to=<alice@exa\n");
    junk.extend_from_slice(
        b"Dec  1 16:38:15 mail postfix/lmtp[2]: ABCDE1: to=<alice@example.test>, status=\n",
    );
    junk.extend_from_slice(b"2026-13-45T99:99:99Z mail postfix/smtpd[1]: x\n\xff\xfe\n");
    junk.extend_from_slice(
        b"Dec  1 16:38:15 mail amavis[1]: (x) Passed SPAM -> <a@example.test>,<\n",
    );
    p.feed(&junk);
    p.finish();
    assert!(p.input.skipped > 0);
    let t = p.totals();
    assert_eq!(get(&t, "example.test", Counter::Recv), 0);
    assert_eq!(get(&t, "example.test", Counter::Spam), 1);
}

#[test]
fn carry_over_keeps_messages_in_flight() {
    let mut p = parser();
    p.feed(format!("{H} postfix/qmgr[2]: KKKKK1: from=<alice@example.test>, size=77, nrcpt=1 (queue active)\n").as_bytes());
    let carry = p.export();
    let json = serde_json::to_string(&carry).unwrap();
    let mut q = parser();
    q.import(serde_json::from_str(&json).unwrap());
    q.feed(format!("{H} postfix/smtp[1]: KKKKK1: to=<x@far.test>, relay=mx.far.test[192.0.2.1]:25, delay=1, dsn=2.0.0, status=sent (250 ok)\n").as_bytes());
    let t = q.totals();
    assert_eq!(get(&t, "example.test", Counter::Sent), 1);
    assert_eq!(get(&t, "example.test", Counter::SizeSent), 77);
}

#[test]
fn memory_is_bounded_by_expiry() {
    let mut p = parser();
    let mut buf = String::new();
    for i in 0..3000u32 {
        let minute = i / 10;
        let (h, m) = (minute / 60, minute % 60);
        buf += &format!(
            "Dec  1 {h:02}:{m:02}:00 mail postfix/qmgr[2]: Q{i:08X}: from=<a@outside.test>, size=1, nrcpt=1 (queue active)\n"
        );
    }
    p.feed(buf.as_bytes());
    // 300 minutes of messages never removed: only the last EXPIRE_MINUTES are kept.
    assert!(
        p.in_flight() <= (EXPIRE_MINUTES as usize + 1) * 10,
        "{}",
        p.in_flight()
    );
}

#[test]
fn take_before_hands_out_complete_minutes_once() {
    let mut p = parser();
    p.feed(format!("{H} postfix/smtpd[1]: NOQUEUE: reject: RCPT from x[1.2.3.4]: 550 no; from=<s@o.test> to=<a@example.test> proto=ESMTP\n").as_bytes());
    let m = p.latest_minute().unwrap();
    assert!(p.take_before(m).is_empty());
    let out = p.take_before(m + 1);
    assert_eq!(out.len(), 2); // example.test and global
                              // A late line for an already handed-out minute is counted in the next minute.
    p.feed(format!("{H} postfix/smtpd[1]: NOQUEUE: reject: RCPT from x[1.2.3.4]: 550 no; from=<s@o.test> to=<a@example.test> proto=ESMTP\n").as_bytes());
    let out = p.take_before(m + 2);
    assert!(out.iter().all(|(min, _, _)| *min == m + 1));
}
