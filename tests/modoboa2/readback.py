"""After modobox adopted, wrote and deleted: Modoboa 2.x reads modobox's objects as its own
(ORM and API v1). Prints "readback ok" when everything holds; exits non-zero naming what not."""
import json
import sys

import django

django.setup()

from django.test import Client  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from modoboa.admin import models as admin_models  # noqa: E402
from modoboa.core import models as core_models  # noqa: E402
from modoboa.transport import models as transport_models  # noqa: E402

problems = []


def expect(what, got, wanted):
    if got != wanted:
        problems.append(f"{what}: {got!r}, expected {wanted!r}")


eve = core_models.User.objects.get(username="eve@new.test")
expect("eve's password verifies", eve.check_password("Eve-secret-2x"), True)
expect("eve's role", eve.role, "SimpleUsers")
expect("eve's TOTP flag", eve.totp_enabled, False)
mailbox = eve.mailbox
expect("eve's mailbox", mailbox.full_address, "eve@new.test")
expect("eve's quota", mailbox.quota, 10)
expect("eve's send-only flag", mailbox.is_send_only, False)
expect("eve's self alias", admin_models.Alias.objects.filter(address="eve@new.test", internal=True).count(), 1)
boss = core_models.User.objects.get(username="boss@new.test")
expect("boss's role", boss.role, "DomainAdmins")
new = admin_models.Domain.objects.get(name="new.test")
expect("boss administers new.test", new in admin_models.Domain.objects.get_for_admin(boss), True)
expect("alias-of-new.test", admin_models.DomainAlias.objects.get(name="alias-of-new.test").target.name, "new.test")
settings = transport_models.Transport.objects.get(pattern="relay2.test")._settings
if isinstance(settings, str):  # a text column (1.x) holds the JSON as text
    settings = json.loads(settings)
expect("relay2.test's port", settings.get("relay_target_port"), 2526)
expect("relay2.test verifies recipients", settings.get("relay_verify_recipients"), True)
# carol logged in to modobox, which stored her password again in the adopted scheme.
carol = core_models.User.objects.get(username="carol@example.org")
expect("carol's password rehashed to ARGON2ID", carol.password.startswith("{ARGON2ID}"), True)
expect("carol's rehashed password verifies", carol.check_password("Modoboa-2x-Secret!"), True)
team = admin_models.Alias.objects.get(address="team@new.test")
# alice was deleted after team@new.test was made: she left its recipients.
expect("team's recipients", sorted(team.aliasrecipient_set.values_list("address", flat=True)), ["eve@new.test"])
expect("alice is gone", core_models.User.objects.filter(username="alice@example.org").exists(), False)
expect("example.net is gone", admin_models.Domain.objects.filter(name="example.net").exists(), False)

# Modoboa's API v1 lists them, with the admin's old token.
admin = core_models.User.objects.get(username="admin")
client = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.get(user=admin).key}")
resp = client.get("/api/v1/domains/")
expect("GET /api/v1/domains/", resp.status_code, 200)
names = sorted(d["name"] for d in resp.json())
for name in ("new.test", "relay2.test", "example.org"):
    expect(f"{name} listed by API v1", name in names, True)
resp = client.get("/api/v1/accounts/")
expect("GET /api/v1/accounts/", resp.status_code, 200)
expect("eve listed by API v1", "eve@new.test" in [a["username"] for a in resp.json()], True)

if problems:
    sys.exit("Modoboa reads modobox's writes differently:\n  " + "\n  ".join(problems))
print("readback ok")
