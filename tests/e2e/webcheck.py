#!/usr/bin/env python3
"""Runs inside the e2e container: the admin UI answers through nginx's HTTPS, a wrong password
is refused, the superadmin logs in and sees the dashboard, logout needs the CSRF token.

usage: webcheck.py ADMIN_PASSWORD
"""
import http.client
import re
import ssl
import sys
import urllib.parse

PASSWORD = sys.argv[1]
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
    text = r.read().decode(errors="replace")
    set_cookies = [v.split(";")[0] for k, v in r.getheaders() if k.lower() == "set-cookie"]
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), set_cookies, text


def fail(what):
    sys.exit(f"FAIL: {what}")


status, headers, cookies, page = request("GET", "/")
if status != 303 or not headers.get("location", "").startswith("/login"):
    fail(f"/ without a session: {status} {headers.get('location')}")
status, headers, cookies, page = request("GET", "/login")
if status != 200 or "Log in" not in page:
    fail(f"login page: {status}")
if "default-src 'self'" not in headers.get("content-security-policy", ""):
    fail("no Content-Security-Policy header")
csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
login = [c for c in cookies if c.startswith("modobox_login=")]
status, _, _, _ = request("POST", "/login", login, {"csrf": csrf, "next": "/", "username": "admin", "password": "wrong"})
if status != 401:
    fail(f"a wrong password answered {status}")
status, headers, cookies, _ = request("POST", "/login", login, {"csrf": csrf, "next": "/", "username": "admin", "password": PASSWORD})
session = [c for c in cookies if c.startswith("modobox_session=")]
if status != 303 or not session:
    fail(f"login as admin: {status}")
status, _, _, page = request("GET", "/", session)
if status != 200 or "Dashboard" not in page or "postfix" not in page or "Health:" not in page:
    fail(f"dashboard: {status}\n{page[:800]}")
# The unprivileged web process shows the status the supervisor published: every service,
# the milter and the web UI itself included.
for service in ["milter", "web", "dovecot", "nginx"]:
    if f'<th scope="row">{service}</th>' not in page:
        fail(f"dashboard: no status line for {service}\n{page[:1500]}")
token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
status, _, _, _ = request("POST", "/logout", session, {"csrf": "forged"})
if status != 403:
    fail(f"logout with a forged token answered {status}")
status, _, _, _ = request("POST", "/logout", session, {"csrf": token})
status2, _, _, _ = request("GET", "/", session)
if status != 303 or status2 != 303:
    fail(f"logout: {status}, then / answered {status2}")
print("ok: admin UI through nginx: login refused then accepted, dashboard, CSRF-checked logout", flush=True)
