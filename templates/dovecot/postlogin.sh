#!/bin/sh
# Dovecot post-login hook written by modobox: records core_user.last_login, then
# continues the session. A failure here never blocks the login.
{% if db.engine != "sqlite" -%}
# Credentials come from a file readable by {{ mail.owner }} only, never from the command line.
{% endif -%}
case "$USER" in
  ""|*[!a-z0-9._+=@-]*) exec "$@" ;;
esac
{% if db.engine == "postgres" -%}
PGPASSFILE={{ distro.paths.dovecot }}/modobox-postlogin.pgpass \
  psql -X -q -h {{ db.host }} -p {{ db.port }} -U {{ db.roles.dovecot.user }} -d {{ db.name }} -v ON_ERROR_STOP=1 >/dev/null 2>&1 <<SQL || true
UPDATE core_user SET last_login = now() WHERE username = '$USER';
SQL
{%- elif db.engine == "mysql" -%}
mysql --defaults-extra-file={{ distro.paths.dovecot }}/modobox-postlogin.cnf {{ db.name }} >/dev/null 2>&1 <<SQL || true
UPDATE core_user SET last_login = NOW() WHERE username = '$USER';
SQL
{%- else -%}
sqlite3 -cmd ".timeout 2000" {{ db.sqlite_path }} >/dev/null 2>&1 <<SQL || true
UPDATE core_user SET last_login = datetime('now') WHERE username = '$USER';
SQL
{%- endif %}
exec "$@"
