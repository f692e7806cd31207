#!/usr/bin/env python3
"""Runs inside the e2e container: backups must not interrupt mail, and must bring it back.

usage:
  backupcheck.py during [--gap-ms N] [--exit CODE] [--every SECONDS] COMMAND...
                                     run COMMAND while mail is sent to alice on port 25 without
                                     pause and ports 25 and 993 are probed every 100 ms; fails
                                     on any SMTP or probe error and on any message not delivered.
                                     With --gap-ms (an upgrade restarts Postfix): refused sends are
                                     retried as a sending MTA would, probe errors are counted, and
                                     it fails when the longest gap on port 25 passes N ms. COMMAND
                                     must exit with CODE (default 0). --every: the pause between
                                     two messages (default 0.1 s).
  backupcheck.py sums HOME FILE      write the SHA-256 of every message of a mailbox home
  backupcheck.py compare FILE HOME   every message of FILE is in HOME with the same SHA-256
  backupcheck.py imap USER PASSWORD FILE
                                     over IMAPS as USER: every INBOX message of FILE is served,
                                     byte for byte (line ends aside), with the same SHA-256
"""
import glob
import hashlib
import imaplib
import json
import os
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time

from outside import SENDER  # an outside sender whose domain resolves here (see outside.py)

# From the loopback address: Postfix limits each outside client to 60 connections a minute
# (smtpd_client_connection_rate_limit), and this loop and the probes open about 15 a second.
SOURCE = "127.0.0.1"
ALICE = "alice@example.test"
MAILDIR = "/srv/vmail/example.test/alice/Maildir"


def messages(home):
    """{unique name: sha256} of every message under a mailbox home (all folders)."""
    out = {}
    for root, dirs, files in os.walk(home):
        if os.path.basename(root) not in ("cur", "new"):
            continue
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            folder = os.path.relpath(os.path.dirname(root), home)
            out[f"{folder}/{name.split(':')[0]}"] = digest
    return out


def during(command, gap_ms=None, want_exit=0, every=0.1):
    stop = threading.Event()
    sent, errors, probes = [], [], {"25": 0, "993": 0}
    worst_gap = {"25": 0.0, "993": 0.0}

    def sender():
        n = 0
        while not stop.is_set():
            n += 1
            token = f"backup-loop-{time.time_ns()}-{n}"
            msg = f"From: <{SENDER}>\r\nTo: <{ALICE}>\r\nSubject: during the backup {n}\r\n\r\n{token}\r\n"
            while True:
                try:
                    with smtplib.SMTP(SOURCE, 25, local_hostname="client.e2e.test", timeout=20) as s:
                        s.sendmail(SENDER, [ALICE], msg)
                    sent.append(token)
                    break
                except Exception as e:  # any refusal or broken connection is downtime
                    errors.append(f"SMTP send {n}: {e!r}")
                    if gap_ms is None or stop.is_set():
                        break
                    time.sleep(0.2)  # a sending MTA tries again later
            time.sleep(every)

    def probe(port):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        last_ok = time.monotonic()
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                with socket.create_connection((SOURCE, int(port)), timeout=5) as raw:
                    if port == "993":
                        with ctx.wrap_socket(raw, server_hostname="mail.example.test") as s:
                            banner = s.recv(200)
                            ok = banner.startswith(b"* OK")
                    else:
                        banner = raw.recv(200)
                        ok = banner.startswith(b"220")
                        raw.sendall(b"QUIT\r\n")
                if not ok:
                    errors.append(f"port {port}: banner {banner!r}")
                else:
                    probes[port] += 1
                    worst_gap[port] = max(worst_gap[port], time.monotonic() - last_ok)
                    last_ok = time.monotonic()
            except Exception as e:
                errors.append(f"port {port}: {e!r}")
            time.sleep(max(0.0, 0.1 - (time.monotonic() - t0)))

    threads = [threading.Thread(target=sender)] + [
        threading.Thread(target=probe, args=(p,)) for p in ("25", "993")
    ]
    for t in threads:
        t.start()
    time.sleep(1)  # the loop is running before the command starts
    t0 = time.monotonic()
    result = subprocess.run(command)
    took = time.monotonic() - t0
    time.sleep(1)
    stop.set()
    for t in threads:
        t.join()
    if result.returncode != want_exit:
        sys.exit(f"FAIL: {' '.join(command)} exited {result.returncode}, not {want_exit}")
    # Every message sent is delivered (Amavis and ClamAV take a few seconds each).
    deadline = time.time() + 180
    missing = list(sent)
    while missing and time.time() < deadline:
        text = b""
        for path in glob.glob(f"{MAILDIR}/new/*") + glob.glob(f"{MAILDIR}/cur/*"):
            with open(path, "rb") as f:
                text += f.read()
        missing = [t for t in missing if t.encode() not in text]
        if missing:
            time.sleep(2)
    print(
        f"command took {took:.1f} s; mail sent during it: {len(sent)}, lost: {len(missing)}; "
        f"probes ok: 25 x{probes['25']}, 993 x{probes['993']}; longest gap between good probes: "
        f"25 {worst_gap['25'] * 1000:.0f} ms, 993 {worst_gap['993'] * 1000:.0f} ms; errors: {len(errors)}",
        flush=True,
    )
    for e in errors[:10]:
        print(f"  {e}")
    if missing or not sent:
        sys.exit("FAIL: mail was lost during the command")
    if gap_ms is not None:
        if worst_gap["25"] * 1000 > gap_ms:
            sys.exit(f"FAIL: port 25 was down longer than {gap_ms} ms")
        print(f"ok: 0 messages lost, port 25 down at most {worst_gap['25'] * 1000:.0f} ms")
        return
    if errors:
        sys.exit("FAIL: mail was interrupted during the command")
    print("ok: mail downtime 0 s during the command")


if sys.argv[1] == "during":
    args, gap, code, every = sys.argv[2:], None, 0, 0.1
    while args and args[0] in ("--gap-ms", "--exit", "--every"):
        if args[0] == "--gap-ms":
            gap = int(args[1])
        elif args[0] == "--every":
            every = float(args[1])
        else:
            code = int(args[1])
        args = args[2:]
    during(args, gap, code, every)
elif sys.argv[1] == "sums":
    sums = messages(sys.argv[2])
    with open(sys.argv[3], "w") as f:
        json.dump(sums, f)
    print(f"{len(sums)} messages recorded")
elif sys.argv[1] == "compare":
    with open(sys.argv[2]) as f:
        want = json.load(f)
    have = messages(sys.argv[3])
    lost = [k for k in want if k not in have]
    changed = [k for k in want if k in have and have[k] != want[k]]
    if lost or changed:
        sys.exit(f"FAIL: {len(lost)} messages missing ({lost[:3]}), {len(changed)} changed ({changed[:3]})")
    print(f"ok: all {len(want)} messages back with the same SHA-256")
elif sys.argv[1] == "imap":
    user, password = sys.argv[2], sys.argv[3]
    with open(sys.argv[4]) as f:
        want = {v for k, v in json.load(f).items() if k.rsplit("/", 1)[0] == "Maildir"}
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    imap = imaplib.IMAP4_SSL(SOURCE, 993, ssl_context=ctx, timeout=30)
    imap.login(user, password)
    typ, data = imap.select("INBOX", readonly=True)
    count = int(data[0])
    served = set()
    if count:
        typ, data = imap.fetch(f"1:{count}", "(BODY.PEEK[])")
        for part in data:
            if isinstance(part, tuple):
                # Dovecot stores LF and serves CRLF.
                served.add(hashlib.sha256(part[1].replace(b"\r\n", b"\n")).hexdigest())
    imap.logout()
    missing = want - served
    if missing or not want:
        sys.exit(f"FAIL: IMAP INBOX of {user}: {count} messages, {len(missing)} of the backup's {len(want)} not served")
    print(f"ok: IMAP serves all {len(want)} INBOX messages of the backup to {user} ({count} in INBOX)")
else:
    sys.exit(__doc__)
