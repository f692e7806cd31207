#!/usr/bin/env python3
"""Port 25's inbound protection, end to end, inside an installed container (run by inbound-test).

Clients connect from test addresses (192.0.2.x, added to lo by inbound-test) to the real
Postfix; DNS is a local test zone served by pebble-challtestsrv on 127.0.0.1:53 (management
API on 127.0.0.1:8055): DNS blocklists, SPF, DKIM and DMARC records of test sending domains.
Checks: postscreen drops a client that talks before the banner; a client listed at the
threshold is refused, one below it accepted; SPF -all and DMARC p=reject failures are refused
at the end of DATA; a forwarded message (SPF fails) whose DKIM signature passes DMARC is
delivered; delivered mail carries this server's Authentication-Results and no forged one.
"""
import base64
import glob
import json
import re
import smtplib
import socket
import subprocess
import sys
import time
import urllib.request

import dkim

RCPT = "alice@example.test"
MAILDIR = "/srv/vmail/example.test/alice/Maildir"
HOST = "mail.example.test"


def dns(command, body):
    req = urllib.request.Request(f"http://127.0.0.1:8055/{command}", data=json.dumps(body).encode())
    urllib.request.urlopen(req, timeout=5).read()


def txt(host, value):
    dns("clear-txt", {"host": host})
    dns("set-txt", {"host": host, "value": value})


def listed(ip, zone):
    rev = ".".join(reversed(ip.split(".")))
    dns("add-a", {"host": f"{rev}.{zone}.", "addresses": ["127.0.0.2"]})


def message(sender, subject, extra=""):
    return (
        f"From: <{sender}>\r\nTo: <{RCPT}>\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@{sender.split('@')[1]}>\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\n"
        f"{extra}\r\nHello from the inbound check.\r\n"
    ).encode()


def client(ip, helo):
    s = smtplib.SMTP(timeout=60, local_hostname=helo, source_address=(ip, 0))
    s.connect("127.0.0.1", 25)
    return s


def send(ip, sender, raw, helo="client.pass.test"):
    """(code, text) of the end of DATA, or of the first refusal before it."""
    s = client(ip, helo)
    try:
        s.ehlo()
        code, text = s.mail(sender)
        if code != 250:
            return code, text.decode()
        code, text = s.rcpt(RCPT)
        if code != 250:
            return code, text.decode()
        code, text = s.data(raw)
        return code, text.decode()
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            pass


def delivered(subject, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for path in glob.glob(f"{MAILDIR}/new/*") + glob.glob(f"{MAILDIR}/cur/*"):
            try:
                data = open(path, "rb").read()
            except OSError:
                continue
            # (Amavis tags the subject of spam: "Subject: ***SPAM*** inb-...")
            if re.search(rb"(?m)^Subject: .*\b" + subject.encode() + rb"\r?$", data):
                return data.decode("utf-8", "replace")
        time.sleep(1)
    raise SystemExit(f"{subject}: not delivered within {timeout} s")


def headers_of(text):
    head = text.split("\n\n", 1)[0]
    return head.replace("\n\t", " ").replace("\n ", " ")


def journal(ident, needle):
    """Postfix's log lines of one program that mention `needle`."""
    out = subprocess.run(["journalctl", "-q", "--no-pager", "-t", ident, "--since", "-10min"],
                         capture_output=True, text=True).stdout
    return "\n".join(l for l in out.splitlines() if needle in l)


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def main():
    t0 = time.time()
    # The zone: blocklists, and three sending domains.
    listed("192.0.2.66", "bl.test")       # weight 3: the threshold
    listed("192.0.2.67", "weak.test")     # weight 1: below it
    txt("spffail.test.", "v=spf1 ip4:192.0.2.20 -all")
    txt("dmarc.test.", "v=spf1 ip4:192.0.2.20 -all")
    txt("_dmarc.dmarc.test.", "v=DMARC1; p=reject")
    txt("pass.test.", "v=spf1 ip4:192.0.2.0/24 -all")
    txt("quar.test.", "v=spf1 ip4:192.0.2.20 ~all")
    txt("_dmarc.quar.test.", "v=DMARC1; p=quarantine")
    key = subprocess.run(["openssl", "genrsa", "-traditional", "1024"], capture_output=True, check=True).stdout
    pub = subprocess.run(["openssl", "rsa", "-pubout", "-outform", "DER"], input=key,
                         capture_output=True, check=True).stdout
    txt("sel._domainkey.dmarc.test.", "v=DKIM1; k=rsa; p=" + base64.b64encode(pub).decode())

    # 1. Talking before the banner: dropped by postscreen.
    sock = socket.socket()
    sock.bind(("192.0.2.50", 0))
    sock.settimeout(30)
    sock.connect(("127.0.0.1", 25))
    first = sock.recv(1000)
    check(first.startswith(b"220-"), f"postscreen's multi-line banner first ({first!r})")
    sock.sendall(b"EHLO early.test\r\n")
    rest = b""
    try:
        while True:
            chunk = sock.recv(1000)
            if not chunk:
                break
            rest += chunk
    except ConnectionResetError:
        # postscreen answers 521 and closes at once; our unread line makes the kernel reset
        # the connection, which can overtake the 521.
        pass
    sock.close()
    check(rest == b"" or b"521" in rest, f"a client talking before the banner: 521 or cut ({rest!r})")
    check(b"250" not in rest, "the early talker got no SMTP service")
    log = journal("postfix/postscreen", "192.0.2.50")
    check("PREGREET" in log and "DISCONNECT [192.0.2.50]" in log,
          "postscreen logged the pregreet and dropped the connection")
    check("connect from" not in journal("postfix/smtpd", "192.0.2.50"), "smtpd never saw it")

    # 2. DNS blocklists: at the threshold refused, below it accepted.
    code, text = send("192.0.2.66", "a@pass.test", message("a@pass.test", "inb-listed"))
    check(code == 550 and "bl.test" in text, f"listed at the threshold: {code} {text}")
    code, text = send("192.0.2.67", "a@pass.test", message("a@pass.test", "inb-weak"))
    check(code == 250, f"listed below the threshold: accepted ({code} {text})")

    # 3. SPF -all failure, no DKIM: refused.
    code, text = send("192.0.2.30", "x@spffail.test", message("x@spffail.test", "inb-spffail"))
    check(code == 550 and "5.7.23" in text, f"SPF -all failure refused: {code} {text}")

    # 4. DMARC p=reject failure (SPF fails, no signature): refused.
    code, text = send("192.0.2.30", "x@dmarc.test", message("x@dmarc.test", "inb-dmarcfail"))
    check(code == 550 and "5.7.1" in text and "DMARC" in text, f"DMARC p=reject failure refused: {code} {text}")

    # 5. Forwarded: SPF fails (another server's address) but the author's DKIM signature passes.
    raw = message("x@dmarc.test", "inb-forwarded")
    sig = dkim.sign(raw, b"sel", b"dmarc.test", key, include_headers=[b"from", b"to", b"subject", b"message-id", b"date"])
    code, text = send("192.0.2.30", "x@dmarc.test", sig + raw)
    check(code == 250, f"forwarded with a passing DKIM signature: accepted ({code} {text})")

    # 6. A direct sender (SPF passes), with forged results of this server in its headers.
    forged = (f"Authentication-Results: {HOST}; dmarc=pass (forged)\r\n"
              "X-Modobox-DMARC: none (forged)\r\n")
    code, text = send("192.0.2.20", "y@dmarc.test", message("y@dmarc.test", "inb-direct", forged))
    check(code == 250, f"SPF pass: accepted ({code} {text})")

    # 7. p=quarantine, failed: delivered, marked, and scored as spam by SpamAssassin.
    code, text = send("192.0.2.30", "q@quar.test", message("q@quar.test", "inb-quarantine"))
    check(code == 250, f"DMARC p=quarantine failure: accepted for the spam quarantine ({code} {text})")

    h = headers_of(delivered("inb-forwarded"))
    check(f"Authentication-Results: {HOST};" in h, "forwarded: this server's Authentication-Results")
    check("dmarc=pass" in h and "spf=fail" in h and "dkim=pass" in h,
          "forwarded: spf=fail, dkim=pass, dmarc=pass recorded")
    h = headers_of(delivered("inb-direct"))
    check("spf=pass" in h and "dmarc=pass" in h, "direct: spf=pass and dmarc=pass recorded")
    check("(forged)" not in h, "direct: the forged results and mark are gone")
    h = headers_of(delivered("inb-quarantine"))
    check("X-Modobox-DMARC: quarantine" in h, "p=quarantine: marked by the milter")
    check("MODOBOX_DMARC_QUARANTINE" in h and "X-Spam-Flag: YES" in h and "***SPAM***" in h,
          "p=quarantine: SpamAssassin scored the mark, the message is spam")
    h = headers_of(delivered("inb-weak"))
    check(f"Authentication-Results: {HOST};" in h, "below the threshold: delivered and checked")
    # Refused ones never arrive: checked after the last accepted one was delivered.
    all_mail = b"".join(open(p, "rb").read()
                        for p in glob.glob(f"{MAILDIR}/new/*") + glob.glob(f"{MAILDIR}/cur/*"))
    for subject in ("inb-listed", "inb-spffail", "inb-dmarcfail"):
        check(f"Subject: {subject}".encode() not in all_mail, f"{subject} was not delivered")
    print(f"inbound checks passed in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
