#!/usr/bin/env python3
"""Runs inside the e2e container: mail with known counts for the statistics.

usage: statscheck.py send N       N messages each to a mailbox, an alias (both count-a.test) and
                                  a catch-all (count-b.test), and one refused recipient
       statscheck.py scheduled ROUNDS N
                                  waits (up to 150 s) until `modobox stats show --period day
                                  --json` of both domains holds exactly ROUNDS sends of N:
                                  count-a.test recv 2N, reject 1; count-b.test recv N, reject 0
                                  (each times ROUNDS), and the last logparser run is the
                                  scheduler's
       statscheck.py by-hand ROUNDS N
                                  `modobox task run logparser`, then the counts must not change
Exits 1 (saying what was seen) when a message is refused or a count differs.
"""
import json
import smtplib
import subprocess
import sys
import time

from outside import SENDER  # an outside sender whose domain resolves here (see outside.py)

EXTERNAL = "10.0.2.100"  # the container's own tap0 address: mail from outside mynetworks
ACCEPTED = ["box@count-a.test", "info@count-a.test", "anyone@count-b.test"]
REFUSED = "nobody@count-a.test"


def send(n):
    for rcpt in ACCEPTED:
        for i in range(n):
            with smtplib.SMTP(EXTERNAL, 25, local_hostname="client.e2e.test", timeout=30) as s:
                s.sendmail(SENDER, [rcpt],
                           f"From: {SENDER}\r\nTo: {rcpt}\r\n"
                           f"Subject: statistics {i}\r\n\r\ncounted once\r\n")
    with smtplib.SMTP(EXTERNAL, 25, local_hostname="client.e2e.test", timeout=30) as s:
        try:
            s.sendmail(SENDER, [REFUSED], "Subject: x\r\n\r\nx\r\n")
        except smtplib.SMTPRecipientsRefused:
            pass
        else:
            sys.exit(f"FAIL: {REFUSED} was accepted")
    print(f"sent {n} messages to each of {', '.join(ACCEPTED)}; {REFUSED} refused", flush=True)


def totals(domain):
    out = subprocess.run(["modobox", "stats", "show", domain, "--period", "day", "--json"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip()}
    t = json.loads(out.stdout)["totals"]
    return {"recv": t["recv"], "reject": t["reject"]}


def counts_are(rounds, n):
    want = {"count-a.test": {"recv": 2 * n * rounds, "reject": rounds},
            "count-b.test": {"recv": n * rounds, "reject": 0}}
    got = {d: totals(d) for d in want}
    return got == want, f"want {want}, got {got}"


def scheduled(rounds, n):
    deadline = time.time() + 150
    while True:
        same, text = counts_are(rounds, n)
        if same:
            jobs = json.loads(subprocess.run(["modobox", "task", "list", "--json"],
                                             capture_output=True, text=True).stdout)
            last = next(j["last_run"] for j in jobs if j["job"] == "logparser")
            if not last or not last.get("slot"):
                sys.exit(f"the last logparser run is not the scheduler's: {last}")
            print(f"ok: the scheduler's logparser ({last['message']}) counted exactly: {text}",
                  flush=True)
            return
        if time.time() > deadline:
            sys.exit(f"statistics not counted by the scheduler within 150 s: {text}")
        time.sleep(2)


def by_hand(rounds, n):
    # A run by hand while the scheduler's own run holds the lock is skipped: try again.
    for _ in range(30):
        run = subprocess.run(["modobox", "task", "run", "logparser"], capture_output=True, text=True)
        if run.returncode == 0:
            print(run.stdout.strip(), flush=True)
            break
        time.sleep(2)
    else:
        sys.exit(f"modobox task run logparser failed: {run.stdout}{run.stderr}")
    same, text = counts_are(rounds, n)
    if not same:
        sys.exit(f"statistics changed after a run by hand: {text}")
    print("ok: a run by hand counted nothing twice", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(int(sys.argv[2]))
    elif sys.argv[1] == "scheduled":
        scheduled(int(sys.argv[2]), int(sys.argv[3]))
    elif sys.argv[1] == "by-hand":
        by_hand(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sys.exit(__doc__)
