"""After `modo import` of modobox's CSV export into a new Modoboa 2.x: Modoboa holds modobox's
objects, and the passwords in it verify. Prints "imported ok"; exits non-zero naming what not."""
import sys

import django

django.setup()

from modoboa.admin import models as admin_models  # noqa: E402
from modoboa.core import models as core_models  # noqa: E402

problems = []


def expect(what, got, wanted):
    if got != wanted:
        problems.append(f"{what}: {got!r}, expected {wanted!r}")


def user(name):
    return core_models.User.objects.filter(username=name).first()


eve = user("eve@new.test")
expect("eve imported", eve is not None, True)
if eve:
    expect("eve's password (SHA512-CRYPT) verifies", eve.check_password("Eve-secret-2x"), True)
    expect("eve's mailbox quota", eve.mailbox.quota, 10)
carol = user("carol@example.org")
expect("carol imported", carol is not None, True)
if carol:
    expect("carol's password (ARGON2ID) verifies", carol.check_password("Modoboa-2x-Secret!"), True)
boss = user("boss@new.test")
expect("boss imported", boss is not None and boss.role, "DomainAdmins")
for name in ("example.org", "new.test", "relay2.test"):
    expect(f"domain {name}", admin_models.Domain.objects.filter(name=name).exists(), True)
relay = admin_models.Domain.objects.filter(name="relay2.test").first()
if relay:
    expect("relay2.test is a relay domain", relay.type, "relaydomain")
alias = admin_models.DomainAlias.objects.filter(name="alias-of-new.test").first()
expect("alias-of-new.test's target", alias and alias.target.name, "new.test")
team = admin_models.Alias.objects.filter(address="team@new.test").first()
expect("team@new.test's recipients", team and sorted(team.aliasrecipient_set.values_list("address", flat=True)), ["eve@new.test"])

if problems:
    sys.exit("Modoboa imported modobox's export differently:\n  " + "\n  ".join(problems))
print("imported ok")
