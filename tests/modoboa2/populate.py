"""Fills a freshly migrated Modoboa 2.x database the way an admin would: through Modoboa's own
REST API (Django's test client, a DRF token), so that its signals make the internal aliases,
quota rows, object accesses, limits and transports; the few things the API does not do
(DKIM key job, DNS check rows, an alarm, a TOTP device, an auto-reply) through its ORM.
Prints one JSON object last: the tokens and passwords the adoption test logs in with.
Run by tests/modoboa2.rs with tests/modoboa2/settings.py."""
import json
import os
import sys

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from modoboa.admin import models as admin_models  # noqa: E402
from modoboa.core import models as core_models  # noqa: E402

PASSWORD = "Modoboa-2x-Secret!"
admin = core_models.User.objects.get(username="admin", is_superuser=True)
admin_token, _ = Token.objects.get_or_create(user=admin)
client = Client(HTTP_AUTHORIZATION=f"Token {admin_token.key}")


def call(method, url, data=None, c=None):
    c = c or client
    fn = getattr(c, method)
    resp = fn(url) if data is None else fn(url, data=json.dumps(data), content_type="application/json")
    if resp.status_code not in (200, 201, 204):
        sys.exit(f"{method.upper()} {url}: {resp.status_code} {resp.content.decode()[:800]}")
    return resp.json() if resp.content else None


def parameters(app, **changes):
    current = call("get", f"/api/v2/parameters/global/{app}/")["params"]
    current.update(changes)
    call("put", f"/api/v2/parameters/global/{app}/", current)


# Global parameters, saved once (Modoboa then stores them in core_localconfig).
parameters("core", password_scheme="sha512crypt", rounds_number=70000)
parameters(
    "admin",
    dkim_keys_storage_dir=os.environ["MODOBOA_TEST_DKIM_DIR"],
    handle_mailboxes=False,
    enable_mx_checks=False,
    enable_spf_checks=False,
    enable_dkim_checks=False,
    enable_dmarc_checks=False,
    enable_autoconfig_checks=False,
    enable_dnsbl_checks=False,
)
# Count limits default to 0 ("none allowed") in 2.x: -1 is unlimited.
parameters(
    "limits",
    enable_admin_limits=True,
    enable_domain_limits=True,
    **{
        f"deflt_{level}_{name}_limit": -1
        for level, names in (
            ("user", ("domain_admins", "domains", "domain_aliases", "mailboxes", "mailbox_aliases")),
            ("domain", ("domain_admins", "domain_aliases", "mailboxes", "mailbox_aliases")),
        )
        for name in names
    },
)

# A domain with DKIM and a daily message limit, and its domain administrator.
call("post", "/api/v2/domains/", {
    "name": "example.org", "type": "domain", "quota": 0, "default_mailbox_quota": 0,
    "enabled": True, "enable_dkim": True, "dkim_key_selector": "modoboa", "dkim_key_length": 2048,
    "message_limit": 1000, "enable_dns_checks": False,
    "domain_admin": {"username": "admin", "password": PASSWORD, "with_mailbox": True, "with_aliases": True},
})
# Modoboa makes DKIM keys in a queued job: run it here instead of a worker.
call_command("modo", "manage_dkim_keys", "--domain=example.org")
org = admin_models.Domain.objects.get(name="example.org")
call("post", "/api/v2/domains/", {
    "name": "example.net", "type": "domain", "quota": 0, "default_mailbox_quota": 0,
    "enable_dns_checks": False,
})
net = admin_models.Domain.objects.get(name="example.net")
# Domain aliases exist in API v1 only.
call("post", "/api/v1/domainaliases/", {"name": "example-alias.org", "target": org.pk, "enabled": True})
call("post", "/api/v2/domains/", {
    "name": "relay.example", "type": "relaydomain", "quota": 0, "default_mailbox_quota": 0,
    "enable_dns_checks": False,
    "transport": {"service": "relay", "settings": {
        "relay_target_host": "192.0.2.25", "relay_target_port": 2525, "relay_verify_recipients": True}},
})


def account(username, scheme, role="SimpleUsers", **mailbox):
    parameters("core", password_scheme=scheme)
    data = {"username": username, "role": role, "password": PASSWORD, "first_name": "F",
            "last_name": "L", "language": "en", "mailbox": {"use_domain_quota": True, **mailbox}}
    call("post", "/api/v2/accounts/", data)
    user = core_models.User.objects.get(username=username)
    assert user.check_password(PASSWORD), username
    return user


alice = account("alice@example.org", "argon2id", message_limit=50)
bob = account("bob@example.org", "ssha", use_domain_quota=False, quota=100)
account("carol@example.org", "sha512crypt")
account("noreply@example.org", "sha512crypt", is_send_only=True)
dave = account("dave@example.net", "blfcrypt")
# What modobox takes at adoption: the scheme, rounds and rehash setting; a secret it must never
# show; a name server it maps to its own configuration's form.
parameters("core", password_scheme="argon2id", rounds_number=80000, ldap_bind_password="Ldap-S3cret-value")
parameters("admin", custom_dns_server="192.0.2.53")

domain_admin = core_models.User.objects.get(username="admin@example.org")
call("patch", f"/api/v2/accounts/{domain_admin.pk}/", {"resources": [
    {"name": "mailboxes", "max_value": 10}, {"name": "mailbox_aliases", "max_value": 20}]})
call("patch", f"/api/v2/domains/{org.pk}/", {"resources": [{"name": "mailboxes", "max_value": 50}]})

call("post", "/api/v2/aliases/", {"address": "sales@example.org", "enabled": True,
                                  "recipients": ["alice@example.org", "bob@example.org"]})
call("post", "/api/v2/aliases/", {"address": "fwd@example.org", "enabled": True,
                                  "recipients": ["someone@external.test"]})
call("post", "/api/v2/aliases/", {"address": "@example.net", "enabled": True,
                                  "recipients": ["dave@example.net"]})
bob_token, _ = Token.objects.get_or_create(user=bob)
call("post", "/api/v2/account/forward/", {"recipients": "bob.ext@external.test", "keepcopies": True},
     c=Client(HTTP_AUTHORIZATION=f"Token {bob_token.key}"))
alice_mailbox = admin_models.Mailbox.objects.get(user=alice)
call("post", "/api/v1/senderaddresses/", {"address": "alice.other@example.net", "mailbox": alice_mailbox.pk})
call("post", "/api/v1/senderaddresses/", {"address": "@example.net", "mailbox": alice_mailbox.pk})
domain_admin_token, _ = Token.objects.get_or_create(user=domain_admin)

# Rows of Modoboa's other applications that point at accounts, mailboxes and domains.
from django_otp.plugins.otp_totp.models import TOTPDevice  # noqa: E402
from modoboa.autoreply.models import ARmessage  # noqa: E402
from modoboa.dnstools.models import DNSRecord  # noqa: E402

TOTPDevice.objects.create(user=alice, name="phone", confirmed=True)
ARmessage.objects.create(mbox=alice_mailbox, subject="Away", content="Back soon", enabled=True,
                         fromdate=timezone.now())
DNSRecord.objects.create(domain=net, type="spf", value="v=spf1 mx -all", is_valid=True,
                         updated=timezone.now())
admin_models.MXRecord.objects.create(domain=net, name="mx.example.net", address="192.0.2.10",
                                     updated=timezone.now())
admin_models.Alarm.objects.create(domain=net, mailbox=admin_models.Mailbox.objects.get(user=dave),
                                  title="test alarm", internal_name="test")

print(json.dumps({
    "password": PASSWORD,
    "tokens": {"admin": admin_token.key, "admin@example.org": domain_admin_token.key,
               "bob@example.org": bob_token.key},
    "counts": {
        "core_user": core_models.User.objects.count(),
        "admin_domain": admin_models.Domain.objects.count(),
        "admin_mailbox": admin_models.Mailbox.objects.count(),
        "admin_alias": admin_models.Alias.objects.count(),
    },
}))
