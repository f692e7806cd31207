#!/bin/sh
# usage: privcheck.sh USER   (inside the e2e container)
# modobox's own daemons (the web UI, the milter) run as their own user, with no capability in
# any set and no_new_privs, and cannot read what root keeps (issue 15). Prints what it saw.
set -eu
user=$1
pid=$(pgrep -u "$user" -x modobox | head -n 1 || true)
[ -n "$pid" ] || { echo "FAIL: no modobox process of $user"; exit 1; }
st=/proc/$pid/status
uid=$(awk '/^Uid:/ {print $2}' "$st")
[ "$(id -nu "$uid")" = "$user" ] || { echo "FAIL: pid $pid runs as uid $uid"; exit 1; }
for cap in CapInh CapPrm CapEff CapBnd CapAmb; do
  v=$(awk -v c="$cap:" '$1 == c {print $2}' "$st")
  [ "$v" = 0000000000000000 ] || { echo "FAIL: $user (pid $pid) $cap=$v"; exit 1; }
done
[ "$(awk '$1 == "NoNewPrivs:" {print $2}' "$st")" = 1 ] || { echo "FAIL: $user (pid $pid) may gain privileges"; exit 1; }
if runuser -u "$user" -- cat /etc/modobox/secrets.toml >/dev/null 2>&1; then
  echo "FAIL: $user can read the secrets file"; exit 1
fi
echo "ok: $user: pid $pid, $(grep -E '^Uid:' "$st" | tr -s '\t ' ' '), CapPrm/CapEff/CapBnd/CapAmb all 0, NoNewPrivs 1, secrets file unreadable"
