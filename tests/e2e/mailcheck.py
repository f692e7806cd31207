#!/usr/bin/env python3
"""Runs inside the e2e container after `modobox install`: proves that real mail flows.

usage: mailcheck.py PASSWORD DKIM_PUBLIC_KEY_B64
Prints one line per check; exits 1 at the first failure (with what was seen).
"""
import email
import glob
import imaplib
import os
import smtplib
import ssl
import subprocess
import sys
import time

import dkim  # python3-dkim (dkimpy)

if sys.argv[1:2] == ["--flow"]:
    # After a repair: one message on port 25 must reach alice's Maildir again.
    RUN = str(time.time_ns())
    sys.argv = sys.argv[:1] + ["-", "-"]
HOST = "mail.example.test"
EXTERNAL = "10.0.2.100"  # the container's own tap0 address: not in Postfix's mynetworks
FLOW_ONLY = sys.argv[1] == "-"
PASSWORD, DKIM_PUBLIC = sys.argv[1], sys.argv[2]
RUN = str(time.time_ns())  # tokens unique to this run
ALICE = "alice@example.test"
from outside import SENDER  # an outside sender whose domain resolves here (see outside.py)
MAILDIR = "/srv/vmail/example.test/alice/Maildir"
EICAR = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def ok(what):
    print(f"ok: {what}", flush=True)


def fail(what):
    print(f"FAIL: {what}", flush=True)
    subprocess.run(["sh", "-c", "postqueue -p; tail -n 60 /var/log/mail.log 2>/dev/null || journalctl -n 80 --no-pager"])
    sys.exit(1)


def message(sender, rcpt, subject, body, extra=""):
    return (
        f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}.{time.time()}@e2e.test>\r\n{extra}\r\n{body}\r\n"
    )


def delivered(token, timeout=60, root=MAILDIR):
    """The message of alice's Maildir whose body holds token (None after timeout)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for path in glob.glob(f"{root}/new/*") + glob.glob(f"{root}/cur/*"):
            with open(path, "rb") as f:
                data = f.read()
            if token.encode() in data:
                return data
        time.sleep(1)
    return None


def send_external(rcpt, subject, body):
    with smtplib.SMTP(EXTERNAL, 25, local_hostname="client.e2e.test", timeout=30) as s:
        s.sendmail(SENDER, [rcpt], message(SENDER, rcpt, subject, body))


if FLOW_ONLY:
    send_external(ALICE, "after repair", f"flow-token-{RUN}")
    if delivered(f"flow-token-{RUN}", timeout=90) is None:
        fail("mail did not flow after the repair")
    ok("mail flows: port 25 to alice's Maildir")
    sys.exit(0)

# 1. Port 25: a mailbox, an alias, a catch-all and a domain alias all reach alice.
for rcpt, token in [
    (ALICE, f"direct-token-{RUN}"),
    ("info@example.test", f"alias-token-{RUN}"),
    ("anything@other.test", f"catchall-token-{RUN}"),
    ("alice@alias.test", f"domainalias-token-{RUN}"),
]:
    send_external(rcpt, f"to {rcpt}", token)
    if delivered(token) is None:
        fail(f"mail to {rcpt} did not reach {MAILDIR}")
    ok(f"port 25: mail to {rcpt} delivered to alice's Maildir")

# 2. An unknown recipient is refused at RCPT time.
with smtplib.SMTP(EXTERNAL, 25, local_hostname="client.e2e.test", timeout=30) as s:
    s.ehlo()
    s.mail(SENDER)
    code, text = s.rcpt("nobody@example.test")
    if code < 500:
        fail(f"unknown recipient accepted: {code} {text}")
    ok(f"unknown recipient refused: {code} {text.decode()[:60]}")

# 2b. Port 25 without login: no address of a hosted domain as sender, owned or not.
for spoofed in [ALICE, "ceo@example.test", "boss@alias.test"]:
    with smtplib.SMTP(EXTERNAL, 25, local_hostname="client.e2e.test", timeout=30) as s:
        s.ehlo()
        s.mail(spoofed)
        code, text = s.rcpt(ALICE)
        if code < 500:
            fail(f"port 25 accepted MAIL FROM:<{spoofed}> without login: {code} {text}")
        ok(f"port 25: hosted sender {spoofed} without login refused ({code} {text.decode()[:50]})")

# 3. Submission: STARTTLS + AUTH; sending as someone else is refused; our own mail is signed.
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with smtplib.SMTP(EXTERNAL, 587, local_hostname="client.e2e.test", timeout=30) as s:
    s.starttls(context=ctx)
    s.login(ALICE, PASSWORD)
    try:
        s.sendmail("bob@example.test", [ALICE], message("bob@example.test", ALICE, "spoof", f"spoof-token-{RUN}"))
        fail("sending as bob@example.test while logged in as alice was accepted")
    except smtplib.SMTPRecipientsRefused as e:
        ok(f"submission: sending as another address refused ({list(e.recipients.values())[0][0]})")
    except smtplib.SMTPSenderRefused as e:
        ok(f"submission: sending as another address refused ({e.smtp_code})")
    s.rset()
    # The From: header is the login's too (modobox's milter, before OpenDKIM signs): another
    # hosted address, alone or next to alice's own, is refused with 550 5.7.1.
    for forged in ["ceo@example.test", '"Alice" <alice@example.test>, ceo@example.test', "Boss <boss@alias.test>"]:
        body = f"From: {forged}\r\nTo: <{ALICE}>\r\nSubject: forged\r\n\r\nforged-token-{RUN}\r\n"
        try:
            s.sendmail(ALICE, [ALICE], body)
            fail(f"From: {forged} accepted on submission for alice")
        except smtplib.SMTPDataError as e:
            text = e.smtp_error.decode(errors="replace")
            if e.smtp_code != 550 or "5.7.1" not in text or "From: header" not in text:
                fail(f"From: {forged}: unexpected answer {e.smtp_code} {text}")
            ok(f"submission: From: {forged} refused ({e.smtp_code} {text[:70]})")
        s.rset()
    s.sendmail(ALICE, [ALICE], message(ALICE, ALICE, "signed", f"dkim-token-{RUN}"))
    # Sending as an extra sender address of alice's mailbox, and as the alias that delivers to
    # her: accepted, and signed for the domain.
    s.sendmail("sales@example.test", [ALICE], message("sales@example.test", ALICE, "send-as", f"senderaddr-token-{RUN}"))
    s.sendmail("info@example.test", [ALICE], message("info@example.test", ALICE, "alias send-as", f"viaalias-token-{RUN}"))
    # Her own address at the domain alias (no DKIM key for alias.test: delivered unsigned).
    s.sendmail("alice@alias.test", [ALICE], message("alice@alias.test", ALICE, "domain alias send-as", f"atdomainalias-token-{RUN}"))
ok("submission on 587 with STARTTLS and AUTH accepted alice's mail, as herself, her sender address, her alias and at the domain alias")
record = f"v=DKIM1; k=rsa; p={DKIM_PUBLIC}".encode()
for token in [f"dkim-token-{RUN}", f"senderaddr-token-{RUN}", f"viaalias-token-{RUN}"]:
    signed = delivered(token)
    if signed is None:
        fail(f"the submitted message {token} was not delivered")
    if b"DKIM-Signature:" not in signed or b"d=example.test" not in signed:
        fail("no DKIM-Signature for example.test on the submitted message:\n" + signed.decode(errors="replace")[:1500])
    if not dkim.verify(signed, dnsfunc=lambda name, timeout=5: record):
        fail("the DKIM signature does not verify against the published key")
if delivered(f"atdomainalias-token-{RUN}") is None:
    fail("the message sent as alice@alias.test was not delivered")
if delivered(f"forged-token-{RUN}", timeout=5) is not None:
    fail("a message with a forged From: reached alice")
ok("outgoing mail (own address, sender address, alias) carries a DKIM signature that verifies against the published key")

# 4. IMAP: login, fetch the delivered message; the quota Dovecot reports.
with imaplib.IMAP4(EXTERNAL, 143) as m:
    m.starttls(ssl_context=ctx)
    m.login(ALICE, PASSWORD)
    m.select("INBOX")
    typ, data = m.search(None, "BODY", f"direct-token-{RUN}")
    if typ != "OK" or not data[0]:
        fail(f"IMAP search found nothing: {typ} {data}")
    typ, msg = m.fetch(data[0].split()[0], "(RFC822)")
    if f"direct-token-{RUN}".encode() not in msg[0][1]:
        fail("IMAP fetch returned another message")
    ok("IMAP login and fetch of the delivered message")
    typ, quota = m.getquotaroot("INBOX")
    text = b" ".join(x if isinstance(x, bytes) else b"" for x in sum(quota, []))
    if b"STORAGE" not in text or b"102400" not in text:
        fail(f"IMAP quota does not show the 100 MB limit: {quota}")
    ok(f"IMAP GETQUOTAROOT: {text.decode()}")

# 5. Amavis: GTUBE tagged as spam, EICAR blocked.
send_external(ALICE, "gtube", f"gtube-token-{RUN}\r\n{GTUBE}")
spam = delivered(f"gtube-token-{RUN}", timeout=120)
if spam is None:
    fail("GTUBE message not delivered (final_spam_destiny is D_PASS)")
headers = email.message_from_bytes(spam)
if headers.get("X-Spam-Flag", "").strip().upper() != "YES":
    fail("GTUBE message not tagged:\n" + spam.decode(errors="replace")[:1500])
ok("GTUBE tagged as spam (X-Spam-Flag: YES)")
# The test signature database matches the 68-byte EICAR file itself: send it as an attachment.
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
eicar = MIMEMultipart()
eicar["From"], eicar["To"], eicar["Subject"] = SENDER, ALICE, "eicar"
eicar.attach(MIMEText(f"eicar-token-{RUN}"))
eicar.attach(MIMEApplication(EICAR.encode(), Name="eicar.com"))
with smtplib.SMTP(EXTERNAL, 25, local_hostname="client.e2e.test", timeout=30) as s:
    s.sendmail(SENDER, [ALICE], eicar.as_string())
if delivered(f"eicar-token-{RUN}", timeout=45) is not None:
    fail("EICAR was delivered")
ok("EICAR blocked (not delivered)")

print("mailcheck: all passed", flush=True)
