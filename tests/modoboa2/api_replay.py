"""Replays API cases (tests/modoboa2/api-v1-cases.json) against Modoboa's own API v1, in order,
on the database populate.py filled, and prints Modoboa's answers as one JSON list: for each
case its status and its JSON body (null when empty). tests/modoboa2.rs replays the same cases
against modobox on a copy of that database and compares the two.

Placeholders: a string "{domain:NAME}", "{domainalias:NAME}", "{account:USERNAME}",
"{mailbox:ADDRESS}", "{alias:ADDRESS}" or "{sender:ADDRESS}" (in the URL or as a whole JSON
string in the body) is the pk of that object at the time of the case (999999 when it does not
exist). Run by tests/modoboa2.rs with tests/modoboa2/settings.py."""
import json
import re
import sys

import django

django.setup()

from django.test import Client  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from modoboa.admin import models as admin_models  # noqa: E402
from modoboa.core import models as core_models  # noqa: E402

PLACEHOLDER = re.compile(r"\{(domain|domainalias|account|mailbox|alias|sender):([^}]*)\}")
MISSING = 999999


def pk_of(kind, name):
    try:
        if kind == "domain":
            return admin_models.Domain.objects.get(name=name).pk
        if kind == "domainalias":
            return admin_models.DomainAlias.objects.get(name=name).pk
        if kind == "account":
            return core_models.User.objects.get(username=name).pk
        if kind == "mailbox":
            local, domain = name.split("@")
            return admin_models.Mailbox.objects.get(address=local, domain__name=domain).pk
        if kind == "alias":
            return admin_models.Alias.objects.get(address=name, internal=False).pk
        if kind == "sender":
            return admin_models.SenderAddress.objects.get(address=name).pk
    except Exception:  # noqa: BLE001  (absent: a pk nothing has)
        return MISSING
    raise ValueError(kind)


def fill(value):
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value)
        if whole:
            return pk_of(*whole.groups())
        return PLACEHOLDER.sub(lambda m: str(pk_of(*m.groups())), value)
    if isinstance(value, list):
        return [fill(v) for v in value]
    if isinstance(value, dict):
        return {k: fill(v) for k, v in value.items()}
    return value


clients = {}


def client_of(username):
    if username not in clients:
        user = core_models.User.objects.get(username=username)
        token, _ = Token.objects.get_or_create(user=user)
        clients[username] = Client(HTTP_AUTHORIZATION=f"Token {token.key}")
    return clients[username]


answers = []
for case in json.load(open(sys.argv[1])):
    client = client_of(case["as"])
    method = getattr(client, case["method"].lower())
    url = fill(case["url"])
    if "body" in case:
        resp = method(url, data=json.dumps(fill(case["body"])), content_type="application/json")
    else:
        resp = method(url)
    try:
        body = resp.json() if resp.content else None
    except ValueError:
        body = {"not json": resp.content.decode(errors="replace")[:400]}
    answers.append({"status": resp.status_code, "body": body})
print(json.dumps(answers))
