"""The outside sender of the e2e mail checks (imported by mailcheck.py and statscheck.py).

Port 25 refuses senders of this server's own domains without login, and Postfix checks that an
outside sender's domain exists in DNS. The only names the test machine's DNS answers are the
package mirror's, so the sender is an address at the mirror host apt uses in this container.
"""
import glob
import re


def mirror_host():
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*")):
        try:
            text = open(path, encoding="utf-8").read()
        except OSError:
            continue
        m = re.search(r"https?://([A-Za-z0-9.-]+\.[A-Za-z]{2,})[/:]", text)
        if m:
            return m.group(1).lower()
    raise SystemExit("no package mirror host in the apt sources: no outside sender domain")


SENDER = f"e2e-sender@{mirror_host()}"
