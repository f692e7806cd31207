# fingerprint.sh [ROOT] — "item hash" lines (16 hex digits of sha256, or "absent") for every
# per-machine secret of a system: run with `sh -s` inside a container, or on a root directory
# from the host (then the database cannot be asked: "-"). Used by image-test.
r=${1:-}
h() {  # h ITEM FILE...: the hash of the files' contents together, or absent
  item=$1; shift
  found=""
  for f in "$@"; do [ -f "$f" ] && found="$found $f"; done
  if [ -z "$found" ]; then echo "$item absent"; else echo "$item $(cat $found | sha256sum | cut -c1-16)"; fi
}
secret() {  # secret ITEM KEY: one value of the secrets file
  f=$r/etc/modobox/secrets.toml
  if [ -f "$f" ]; then echo "$1 $(sed -n "s/^$2 = //p" "$f" | sha256sum | cut -c1-16)"; else echo "$1 absent"; fi
}
h ssh-ed25519 "$r/etc/ssh/ssh_host_ed25519_key"
h ssh-ecdsa "$r/etc/ssh/ssh_host_ecdsa_key"
h ssh-rsa "$r/etc/ssh/ssh_host_rsa_key"
h tls-key "$r"/etc/ssl/private/modobox-*.key
h snakeoil-key "$r/etc/ssl/private/ssl-cert-snakeoil.key"
h dkim-keys "$r"/var/lib/dkim/*
h machine-id "$r/etc/machine-id"
secret db-password database_password
secret db-role-postfix postfix_db_password
secret session-key session_key
secret backup-password backup_password
if [ -z "$r" ]; then
  hash=$(runuser -u postgres -- psql -d modobox -tAc "SELECT password FROM core_user WHERE is_superuser ORDER BY id LIMIT 1" 2>/dev/null)
  if [ -n "$hash" ]; then echo "admin-password-hash $(printf %s "$hash" | sha256sum | cut -c1-16)"; else echo "admin-password-hash absent"; fi
else
  echo "admin-password-hash -"
fi
