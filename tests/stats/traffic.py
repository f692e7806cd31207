#!/usr/bin/env python3
"""Sends known traffic through a real modobox install (Postfix + Amavis + Dovecot) so the
statistics parser can be checked against what really happened.

Runs inside an e2e container (see tests/stats/README.md). usage: traffic.py EXPECTED.json
Sets up domains/accounts/aliases and a local SMTP sink (tests/stats/smtp_sink.py on port 2525,
the relay domain's target), sends every case, waits until the queue is empty, then writes the
counts each case implies to EXPECTED.json. The counts come from what was sent, never from a
parser.

Counting rules (the same as STATS-README.md):
- a final delivery (status=sent) counts `recv` for the domain of orig_to (else to) and `sent`
  for the sender's domain, each when the domain is hosted here (domains, relay domains, domain
  aliases); the content-filter hop to Amavis is never a delivery;
- status=bounced counts `bounced` once for each hosted domain among sender and recipient;
- a rejected recipient counts `reject` for its domain;
- Amavis SPAM / INFECTED count `spam` / `virus` per recipient;
- only events of hosted domains count; global counts each of them once (a bounce between two
  hosted domains is one global bounce).
"""
import json
import os
import smtplib
import ssl
import subprocess
import sys
import time

OUT = sys.argv[1]
HOSTED = {"example.test", "other.test", "relay.test", "alias.test"}
SINK_LOG = "/tmp/sink.log"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
COUNTERS = ["sent", "recv", "bounced", "reject", "spam", "virus", "size_sent", "size_recv", "greylist"]

expected = {}
cases = []


def count(domain, counter, n=1):
    """One event of a hosted domain: its counter and the global one."""
    if domain not in HOSTED:
        return
    d = expected.setdefault(domain, {c: 0 for c in COUNTERS})
    d[counter] += n
    g = expected.setdefault("global", {c: 0 for c in COUNTERS})
    g[counter] += n


def dom(addr):
    return addr.rsplit("@", 1)[1].lower() if "@" in addr else ""


def sh(cmd, stdin=None, exists_ok=False):
    r = subprocess.run(cmd, shell=True, input=stdin, capture_output=True, text=True)
    if exists_ok and "already exists" in r.stdout + r.stderr:
        return r.stdout
    if r.returncode != 0:
        print(f"FAIL: {cmd}: {r.stdout}{r.stderr}", flush=True)
        sys.exit(1)
    return r.stdout


def message(sender, rcpts, subject, body):
    return (
        f"From: <{sender}>\r\nTo: {', '.join('<%s>' % r for r in rcpts)}\r\n"
        f"Subject: {subject}\r\nMessage-ID: <{subject.replace(' ', '-')}.{time.time_ns()}@traffic.test>\r\n"
        f"\r\n{body}\r\n"
    )


def send(sender, rcpts, subject, body, port=25, login=None, expect_refused=(), raw=None):
    """One SMTP transaction; returns the size of the message sent."""
    msg = raw or message(sender, rcpts, subject, body)
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.outside.test", timeout=60) as s:
        if login:
            s.starttls(context=ssl._create_unverified_context())
            s.login(*login)
        try:
            refused = s.sendmail(sender, rcpts, msg)
        except smtplib.SMTPRecipientsRefused as e:
            refused = e.recipients
    refused = set(refused)
    if refused != set(expect_refused):
        print(f"FAIL: {subject}: refused {sorted(refused)}, expected {sorted(expect_refused)}", flush=True)
        sys.exit(1)
    cases.append({"subject": subject, "from": sender, "to": rcpts, "refused": sorted(refused), "bytes": len(msg)})
    print(f"sent: {subject}", flush=True)
    return len(msg)


def setup():
    sh("modobox mailbox add bob@example.test", stdin="bob-Secret-1234\n", exists_ok=True)
    sh("modobox relaydomain add relay.test --target-host 127.0.0.1 --target-port 2525", exists_ok=True)
    sh("modobox domainalias add alias.test example.test", exists_ok=True)
    sh("modobox alias add fwd@example.test dest@relay.test", exists_ok=True)
    # Retry deferred mail quickly so defer-then-deliver finishes within the test.
    sh("postconf -e minimal_backoff_time=5s maximal_backoff_time=10s queue_run_delay=5s")
    # The container has no DNS for relay.test: the unknown-domain check would refuse it.
    rr = sh("postconf -h smtpd_recipient_restrictions").strip()
    rr = ", ".join(p.strip() for p in rr.split(",") if p.strip() != "reject_unknown_recipient_domain")
    sh(f"postconf -e 'smtpd_recipient_restrictions = {rr}' && postfix reload")
    # Spam above the kill level is discarded, except for bob (a spam lover: passed, tagged).
    with open("/etc/amavis/conf.d/99-stats-traffic", "w") as f:
        f.write("$final_spam_destiny = D_DISCARD;\n@spam_lovers_maps = (['bob@example.test']);\n1;\n")
    sh("systemctl restart amavis")
    here = os.path.dirname(os.path.abspath(__file__))
    global SINK
    SINK = subprocess.Popen(
        ["python3", os.path.join(here, "smtp_sink.py"), "2525", SINK_LOG],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            smtplib.SMTP("127.0.0.1", 10024, timeout=5).quit()
            smtplib.SMTP("127.0.0.1", 2525, timeout=5).quit()
            return
        except OSError:
            time.sleep(1)
    print("FAIL: amavis or the sink did not come up", flush=True)
    sys.exit(1)


def delivered(sender, rcpt, final=None):
    """A final delivery of a message from sender to rcpt (final = the address after aliases)."""
    count(dom(sender), "sent")
    count(dom(rcpt), "recv")


def main():
    setup()
    out = "sender@outside.test"
    alice, bob = "alice@example.test", "bob@example.test"

    send(out, [alice], "inbound plain", "hello alice")
    delivered(out, alice)
    send(out, ["info@example.test"], "inbound alias", "to the info alias")
    delivered(out, "info@example.test")
    send(out, ["anyone@other.test"], "inbound catchall", "to the catch-all")
    delivered(out, "anyone@other.test")
    send(out, ["alice@alias.test"], "inbound domain alias", "to the domain alias")
    delivered(out, "alice@alias.test")
    send(out, ["fwd@example.test"], "inbound forward", "forwarded to dest@relay.test")
    delivered(out, "fwd@example.test")
    send(alice, [bob], "local to local", "alice writes to bob")
    delivered(alice, bob)
    send(alice, ["r1@relay.test"], "outbound relay", "alice writes to the relay domain")
    delivered(alice, "r1@relay.test")
    send(out, ["r2@relay.test"], "inbound relay", "outside writes to the relay domain")
    delivered(out, "r2@relay.test")
    # The sink refuses bounce1: a bounce, and the DSN (from <>) delivered to alice.
    send(alice, ["bounce1@relay.test"], "bounce", "this one bounces")
    count("relay.test", "bounced")
    expected["example.test"]["bounced"] += 1
    delivered("", alice)
    # The sink answers 451 twice, then accepts: one delivery, whatever the attempts.
    send(out, ["later1@relay.test"], "defer then deliver", "deferred twice")
    delivered(out, "later1@relay.test")
    # One good recipient, then an unknown one: the reject is logged with the queue id.
    send(out, [alice, "nobody@example.test"], "reject after accepted", "half rejected",
         expect_refused=["nobody@example.test"])
    delivered(out, alice)
    count("example.test", "reject")
    # Only an unknown recipient: NOQUEUE reject.
    send(out, ["nobody2@example.test"], "noqueue reject", "refused", expect_refused=["nobody2@example.test"])
    count("example.test", "reject")
    send(out, [alice], "spam discarded", GTUBE)
    count("example.test", "spam")
    send(out, [bob], "spam passed", GTUBE)
    count("example.test", "spam")
    delivered(out, bob)
    # Amavis lists several recipients on one line: spam counted per recipient domain.
    send(out, [alice, bob, "x@other.test"], "spam three recipients", GTUBE)
    count("example.test", "spam", 2)
    count("other.test", "spam")
    delivered(out, bob)
    # The test signature database matches the 68-byte EICAR file itself: an attachment.
    from email.mime.application import MIMEApplication
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText
    eicar = MIMEMultipart()
    eicar["From"], eicar["To"], eicar["Subject"] = out, alice, "virus"
    eicar.attach(MIMEText("an attachment"))
    eicar.attach(MIMEApplication(EICAR.encode(), Name="eicar.com"))
    send(out, [alice], "virus", None, raw=eicar.as_string())
    count("example.test", "virus")
    send(out, [bob, "info@example.test", "r3@relay.test"], "clean three recipients", "three at once")
    delivered(out, bob)
    delivered(out, "info@example.test")
    delivered(out, "r3@relay.test")
    # Authenticated submission by bob: sent for example.test.
    send(bob, [alice, "r4@relay.test"], "submission", "bob submits", port=587, login=(bob, "bob-Secret-1234"))
    delivered(bob, alice)
    delivered(bob, "r4@relay.test")

    # Wait for the queue to drain (defers are retried every few seconds).
    deadline = time.time() + 300
    while time.time() < deadline:
        subprocess.run("postqueue -f", shell=True)
        q = subprocess.run("postqueue -j", shell=True, capture_output=True, text=True).stdout.strip()
        if not q:
            break
        time.sleep(3)
    else:
        print("FAIL: the queue did not drain:\n" + sh("postqueue -p"), flush=True)
        sys.exit(1)
    time.sleep(3)  # the last log lines (qmgr removed) reach the journal
    SINK.terminate()
    with open(OUT, "w") as f:
        json.dump({"counts": expected, "cases": cases}, f, indent=2, sort_keys=True)
    print("ok: wrote", OUT, flush=True)


if __name__ == "__main__":
    main()
