#!/usr/bin/env python3
"""Runs inside the e2e container: mail submitted by a mailbox of a domain is signed by OpenDKIM
for that domain, with the key the dkim_keys job generated.

usage: dkimcheck.py SENDER PASSWORD DKIM_PUBLIC_KEY_B64 [RECIPIENT RECIPIENT_PASSWORD]
(default recipient alice@example.test, read from her Maildir; with a recipient's password the
message is also found over IMAPS)
"""
import glob
import imaplib
import re
import smtplib
import ssl
import sys
import time

import dkim  # python3-dkim (dkimpy)

SENDER, PASSWORD, PUBLIC = sys.argv[1:4]
DOMAIN = SENDER.split("@")[1]
ALICE = sys.argv[4] if len(sys.argv) > 4 else "alice@example.test"
ALICE_PASSWORD = sys.argv[5] if len(sys.argv) > 5 else None
MAILDIR = "/srv/vmail/{1}/{0}/Maildir".format(*ALICE.split("@"))
TOKEN = f"dkim2-token-{time.time_ns()}"

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
msg = f"From: {SENDER}\r\nTo: {ALICE}\r\nSubject: signed by {DOMAIN}\r\n\r\n{TOKEN}\r\n"
with smtplib.SMTP("10.0.2.100", 587, local_hostname="client.e2e.test", timeout=30) as s:
    s.starttls(context=ctx)
    s.login(SENDER, PASSWORD)
    s.sendmail(SENDER, [ALICE], msg)

found = None
for _ in range(60):
    for path in glob.glob(f"{MAILDIR}/new/*") + glob.glob(f"{MAILDIR}/cur/*"):
        with open(path, "rb") as f:
            data = f.read()
        if TOKEN.encode() in data:
            found = data
    if found:
        break
    time.sleep(1)
if found is None:
    sys.exit(f"FAIL: the message from {SENDER} was not delivered")
sig = re.search(rb"DKIM-Signature:[^\n]*(?:\n[ \t][^\n]*)*", found)
if not sig or f"d={DOMAIN}".encode() not in sig.group(0).replace(b"\r\n\t", b"").replace(b" ", b""):
    sys.exit(f"FAIL: no DKIM-Signature for d={DOMAIN}:\n" + found.decode(errors="replace")[:1500])
record = f"v=DKIM1; k=rsa; p={PUBLIC}".encode()
if not dkim.verify(found, dnsfunc=lambda name, timeout=5: record):
    sys.exit(f"FAIL: the signature for {DOMAIN} does not verify against the stored key")
if ALICE_PASSWORD:
    imap = imaplib.IMAP4_SSL("127.0.0.1", 993, ssl_context=ctx)
    imap.login(ALICE, ALICE_PASSWORD)
    imap.select("INBOX")
    _, hits = imap.search(None, "BODY", TOKEN)
    imap.logout()
    if not hits[0].split():
        sys.exit(f"FAIL: IMAP: the message is not in {ALICE}'s INBOX")
    print(f"ok: IMAP: {ALICE} sees the message", flush=True)
print(f"ok: mail from {SENDER} signed for d={DOMAIN}; the signature verifies", flush=True)
