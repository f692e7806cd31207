#!/usr/bin/env python3
"""Runs inside the e2e container: the superadmin downloads an account's Apple profile through
nginx; it must come signed (the web process asks the supervisor's signer), the signature must
verify, its signer must be the certificate the server serves, and the document must be a
property list for that account.

usage: profilecheck.py ADMIN_PASSWORD ADDRESS SERVED_CERT_PEM
"""
import http.client
import plistlib
import re
import ssl
import subprocess
import sys
import tempfile
import urllib.parse

PASSWORD, ADDRESS, SERVED = sys.argv[1], sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE


def request(method, path, cookies=(), form=None):
    c = http.client.HTTPSConnection("127.0.0.1", 443, context=ctx, timeout=30)
    headers = {"Host": "mail.example.test"}
    if cookies:
        headers["Cookie"] = "; ".join(cookies)
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    set_cookies = [v.split(";")[0] for k, v in r.getheaders() if k.lower() == "set-cookie"]
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), set_cookies, data


status, _, cookies, page = request("GET", "/login")
csrf = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
login = [c for c in cookies if c.startswith("modobox_login=")]
status, _, cookies, _ = request("POST", "/login", login, {"csrf": csrf, "next": "/", "username": "admin", "password": PASSWORD})
session = [c for c in cookies if c.startswith("modobox_session=")]
if status != 303 or not session:
    sys.exit(f"FAIL: login: {status}")
status, headers, _, profile = request("GET", f"/accounts/{ADDRESS}/mobileconfig", session)
if status != 200 or headers.get("x-modobox-profile") != "signed":
    sys.exit(f"FAIL: profile: {status} {headers.get('x-modobox-profile')}: {profile[:300]!r}")
with tempfile.TemporaryDirectory() as d:
    open(f"{d}/p.der", "wb").write(profile)
    # The chain is pebble's (a test CA): check the signature, not the trust.
    subprocess.run(["openssl", "cms", "-verify", "-inform", "DER", "-in", f"{d}/p.der", "-noverify",
                    "-signer", f"{d}/signer.pem", "-out", f"{d}/p.xml"], check=True, capture_output=True)
    fp = lambda f: subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", f],
                                  check=True, capture_output=True, text=True).stdout
    if fp(f"{d}/signer.pem") != fp(SERVED):
        sys.exit("FAIL: the profile is not signed with the served certificate")
    doc = plistlib.load(open(f"{d}/p.xml", "rb"))
account = doc["PayloadContent"][0]
if account["EmailAddress"] != ADDRESS or account["IncomingMailServerHostName"] != "mail.example.test":
    sys.exit(f"FAIL: profile content: {account}")
if "IncomingPassword" in account:
    sys.exit("FAIL: a password in a profile nobody asked one for")
print(f"ok: the Apple profile of {ADDRESS} is signed by the supervisor with the served certificate")
