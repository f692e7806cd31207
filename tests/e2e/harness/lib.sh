# lib.sh — shared helpers for the modobox e2e harness; sourced by the scripts here, never executed.
# Logging, deadlines, the per-container state directory, process-identity checks, cgroup setup and
# cleanup, and discovery of the host's Debian mirrors from /etc/apt/sources.list*.
# shellcheck shell=bash

export LC_ALL=C
# shellcheck disable=SC2034 # used by the scripts that source this file
E2E_STATE_BASE=${MODOBOX_E2E_STATE:-/run/modobox-e2e}
# shellcheck disable=SC2034
E2E_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# shellcheck disable=SC2034
E2E_HOSTNAME=mail.example.test
PROG=${PROG:-$(basename "$0")}

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "must be run as root"; }

check_name() {
  case $1 in
    ''|.*|*[!A-Za-z0-9_.-]*) die "invalid container name '$1' (allowed: [A-Za-z0-9_.-], not starting with '.')" ;;
  esac
  [ ${#1} -le 64 ] || die "container name '$1' is longer than 64 characters"
}
state_dir() { printf '%s/%s\n' "$E2E_STATE_BASE" "$1"; }

# wall-clock helpers (bash 5 EPOCHREALTIME, seconds with microseconds)
now() { printf '%s\n' "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
# deadline_left DEADLINE: whole seconds left (>= 0)
deadline_at() { awk -v n="$EPOCHREALTIME" -v s="$1" 'BEGIN { printf "%.3f", n + s }'; }
deadline_left() { awk -v n="$EPOCHREALTIME" -v d="$1" 'BEGIN { l = d - n; if (l < 0) l = 0; printf "%d", l + 0.999 }'; }
deadline_passed() { awk -v n="$EPOCHREALTIME" -v d="$1" 'BEGIN { exit !(n >= d) }'; }

# wait_for SECONDS CMD... : poll CMD every 0.1 s until it succeeds (0) or the deadline passes (1)
wait_for() {
  local dl; dl=$(deadline_at "$1"); shift
  while :; do
    "$@" && return 0
    deadline_passed "$dl" && return 1
    sleep 0.1
  done
}

# alive PID: the process exists and is not a zombie
alive() {
  local st
  case ${1:-} in ''|*[!0-9]*) return 1 ;; esac
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
  case ${st%% *} in ''|Z|X|x) return 1 ;; esac
  return 0
}
dead() { ! alive "$1"; }

# children_of PID: direct children (host pids)
children_of() {
  if [ -r "/proc/$1/task/$1/children" ]; then
    tr ' ' '\n' < "/proc/$1/task/$1/children" 2>/dev/null | sed '/^$/d'
  else
    ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' '
  fi
}

# is_ns_init PID PIDNS: PID is alive, is PID 1 of its namespace, and that namespace is PIDNS
is_ns_init() {
  alive "$1" || return 1
  [ "$(readlink "/proc/$1/ns/pid" 2>/dev/null)" = "$2" ] || return 1
  awk '$1 == "NSpid:" { exit !($NF == 1) }' "/proc/$1/status" 2>/dev/null
}

# procs_in_pidns PIDNS: host pids of all live processes in that pid namespace
procs_in_pidns() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$1" ] || continue
    alive "${p#/proc/}" && echo "${p#/proc/}"
  done
  return 0
}

# stop_pid PID SIGNAL SECONDS: send SIGNAL, wait up to SECONDS, then SIGKILL and wait 5 s more.
stop_pid() {
  alive "$1" || return 0
  kill -s "$2" "$1" 2>/dev/null || true
  wait_for "$3" dead "$1" && return 0
  log "pid $1 still alive after ${3}s, sending SIGKILL"
  kill -s KILL "$1" 2>/dev/null || true
  wait_for 5 dead "$1" || { log "pid $1 survived SIGKILL"; return 1; }
}

# ---------------------------------------------------------------- cgroups
# cg_dirs_of PID: "v1 DIR" / "v2 DIR" for every mounted hierarchy: the cgroup PID is in now.
cg_dirs_of() {
  awk '
    FNR == NR {
      split($0, a, " - "); split(a[1], f, " "); split(a[2], g, " ")
      if (g[1] == "cgroup2") { mp2 = f[5]; rt2 = f[4] }
      else if (g[1] == "cgroup") { m = split(g[3], o, ","); for (i = 1; i <= m; i++) mp[o[i]] = f[5]; rt[f[5]] = f[4] }
      next
    }
    {
      i1 = index($0, ":"); rest = substr($0, i1 + 1); i2 = index(rest, ":")
      ctrls = substr(rest, 1, i2 - 1); path = substr(rest, i2 + 1)
      if (ctrls == "") { if (mp2 == "") next; d = mp2; r = rt2; t = "v2" }
      else { split(ctrls, c, ","); d = mp[c[1]]; if (d == "") next; r = rt[d]; t = "v1" }
      if (r != "/" && index(path, r) == 1) path = substr(path, length(r) + 1)
      if (path == "/") path = ""
      if (!seen[d]++) print t, d path
    }' /proc/self/mountinfo "/proc/$1/cgroup"
}

# cg_create CGNAME PID STATEFILE: create CGNAME below PID's current cgroup in every hierarchy,
# record "v1|v2 DIR" lines in STATEFILE. Nested under the caller, so the caller's limits still apply.
cg_create() {
  local t d
  : > "$3"
  cg_dirs_of "$2" | while read -r t d; do
    [ -d "$d" ] || continue
    mkdir -p "$d/$1" || die "cannot create cgroup $d/$1"
    if [ -f "$d/$1/cpuset.cpus" ]; then   # v1 cpuset: a new group is empty and refuses tasks
      [ -n "$(cat "$d/$1/cpuset.cpus")" ] || cat "$d/cpuset.cpus" > "$d/$1/cpuset.cpus"
      [ -n "$(cat "$d/$1/cpuset.mems")" ] || cat "$d/cpuset.mems" > "$d/$1/cpuset.mems"
    fi
    echo "$t $d/$1" >> "$3"
  done
  [ -s "$3" ] || die "no cgroup hierarchy found under /sys/fs/cgroup"
}

# cg_join STATEFILE PID: move PID into every cgroup listed in STATEFILE
cg_join() {
  local t d
  while read -r t d; do
    echo "$2" > "$d/cgroup.procs" || die "cannot move pid $2 into cgroup $d"
  done < "$1"
}

# cg_remove STATEFILE: kill whatever is left in the listed cgroups and rmdir them (depth first)
cg_remove() {
  local t d p rc=0
  [ -f "$1" ] || return 0
  while read -r t d; do
    [ -d "$d" ] || continue
    find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r p; do
      kill -s KILL "$p" 2>/dev/null || true
    done
    if ! wait_for 5 _cg_rmdir_tree "$d"; then
      log "could not remove cgroup $d"; rc=1
    fi
  done < "$1"
  return $rc
}
_cg_rmdir_tree() {
  find "$1" -depth -type d -exec rmdir {} + 2>/dev/null || true
  [ ! -d "$1" ]
}

# ---------------------------------------------------------------- apt sources of the host
# host_apt_entries: "URI SUITE" for every enabled deb entry in the host's apt configuration
host_apt_entries() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -e 's/#.*//' "$f" | awk '$1 == "deb" {
      i = 2
      if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
      if (i + 1 <= NF) print $i, $(i + 1) }'
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '
      function flush(   i, j, nu, ns, u, s) {
        if (types ~ /(^| )deb( |$)/ && tolower(enabled) != "no") {
          nu = split(uris, u, " "); ns = split(suites, s, " ")
          for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print u[i], s[j]
        }
        types = uris = suites = enabled = ""; key = ""
      }
      /^#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]/ { v = $0; sub(/^[ \t]+/, "", v)
                 if (key == "uris") uris = uris " " v; else if (key == "suites") suites = suites " " v; next }
      {
        k = tolower($0); sub(/:.*/, "", k); v = $0; sub(/^[^:]*:[ \t]*/, "", v); key = k
        if (k == "types") types = v; else if (k == "uris") uris = v
        else if (k == "suites") suites = v; else if (k == "enabled") enabled = v
      }
      END { flush() }' "$f"
  done
}

_DEBIAN_SUITES='buster|bullseye|bookworm|trixie|forky|duke|sid|oldoldstable|oldstable|stable|testing|unstable'

# debian_mirror: the host's Debian archive URL ($MODOBOX_E2E_MIRROR overrides)
debian_mirror() {
  local m=${MODOBOX_E2E_MIRROR:-}
  [ -n "$m" ] || m=$(host_apt_entries | awk -v re="^($_DEBIAN_SUITES)(-updates|-backports|-proposed-updates)?\$" \
                       '$2 ~ re && $1 !~ /security/ { print $1; exit }')
  [ -n "$m" ] || die "no Debian archive found in /etc/apt/sources.list*; set MODOBOX_E2E_MIRROR=http://<mirror>/debian"
  printf '%s\n' "${m%/}"
}

# debian_security_mirror: the host's Debian security URL ($MODOBOX_E2E_SECURITY_MIRROR overrides)
debian_security_mirror() {
  local m=${MODOBOX_E2E_SECURITY_MIRROR:-}
  [ -n "$m" ] || m=$(host_apt_entries | awk -v re="^($_DEBIAN_SUITES)(-security|/updates)\$" \
                       '$2 ~ re { print $1; exit }')
  [ -n "$m" ] || die "no Debian security archive found in /etc/apt/sources.list*; set MODOBOX_E2E_SECURITY_MIRROR=http://<mirror>/debian-security"
  printf '%s\n' "${m%/}"
}

# ---------------------------------------------------------------- containers
# close_fds_above N: close every fd > N of the current shell (do not leak the caller's pipes)
close_fds_above() {
  local fd
  for fd in /proc/$$/fd/*; do
    fd=${fd##*/}
    [ "$fd" -gt "$1" ] 2>/dev/null && eval "exec $fd>&-"
  done
  return 0
}

# load_state NAME: sets S, C_KIND, C_ROOT, C_PID, C_PIDNS (empty when unknown); fails if no state
load_state() {
  S=$(state_dir "$1")
  [ -d "$S" ] || return 1
  # shellcheck disable=SC2034
  C_KIND=$(cat "$S/kind" 2>/dev/null || true)
  # shellcheck disable=SC2034
  C_ROOT=$(cat "$S/root" 2>/dev/null || true)
  C_PID=$(cat "$S/pid" 2>/dev/null || true)
  C_PIDNS=$(cat "$S/pidns" 2>/dev/null || true)
  return 0
}

_start_failed() {
  local rc=$?
  trap - EXIT
  if [ $rc -ne 0 ] && [ -n "${_START_NAME:-}" ]; then
    if [ -s "$S/console.log" ]; then log "--- last lines of the container console ($S/console.log):"; tail -n 30 "$S/console.log" >&2; fi
    if [ -s "$S/slirp.log" ]; then log "--- slirp4netns log:"; tail -n 10 "$S/slirp.log" >&2; fi
    log "boot of '$_START_NAME' failed; tearing it down"
    "$HERE/teardown" "$_START_NAME" >&2 || true
  fi
  exit $rc
}

# container_start KIND ROOT NAME CMD...
#   Starts CMD as PID 1 of new mount/net/uts/ipc/pid/cgroup namespaces, pivot_root'ed into ROOT, with
#   outbound NAT by slirp4netns. Sets S (state dir) and C_PID (host pid of the container's PID 1).
#   Returns once CMD has been exec'd; on failure tears everything down and exits non-zero.
container_start() {
  local kind=$1 root=$2 name=$3 u dl exe0 t d
  shift 3
  need_root
  check_name "$name"
  for c in unshare nsenter setsid setpriv slirp4netns ip; do command -v "$c" >/dev/null || die "$c is not installed"; done
  [ -d "$root" ] || die "ROOT '$root' is not a directory"
  root=$(readlink -f "$root")
  [ "$root" != / ] || die "ROOT must not be /"
  for d in etc proc sys dev run tmp usr/bin; do [ -d "$root/$d" ] || die "ROOT '$root' has no /$d: not a Debian root (use mkroot)"; done
  [ -x "$root/usr/bin/env" ] || die "ROOT '$root' has no /usr/bin/env"
  [ -e /dev/net/tun ] || die "/dev/net/tun is missing (slirp4netns needs it)"

  S=$(state_dir "$name")
  if load_state "$name"; then
    if [ -n "$C_PID" ] && is_ns_init "$C_PID" "$C_PIDNS"; then
      die "container '$name' is already running (pid $C_PID); run: teardown $name"
    fi
    log "removing stale state of '$name'"
    "$HERE/teardown" "$name" >&2 || die "could not clean the stale state of '$name' ($S)"
  fi
  mkdir -p "$S"
  _START_NAME=$name
  trap _start_failed EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  echo "$kind" > "$S/kind"
  echo "$root" > "$S/root"
  echo "nameserver 10.0.2.3" > "$S/resolv.conf"
  : > "$S/ready"
  mkfifo "$S/lifeline"
  # the bind mount of resolv.conf needs a plain file to land on (a symlink would be followed on the host)
  if [ -L "$root/etc/resolv.conf" ] || [ ! -f "$root/etc/resolv.conf" ]; then
    rm -f "$root/etc/resolv.conf"; echo "nameserver 10.0.2.3" > "$root/etc/resolv.conf"
  fi
  cg_create "modobox-e2e-$name" $$ "$S/cgroups"

  setsid "$HERE/ns-setup" launch "$S" "$root" "$kind" -- "$@" \
    < /dev/null > "$S/console.log" 2>&1 3> "$S/ready" &

  # 1. namespaces and mounts are set up
  dl=$(deadline_at 30)
  until grep -q ready "$S/ready" 2>/dev/null; do
    u=$(cat "$S/unshare.pid" 2>/dev/null || true)
    if [ -n "$u" ] && dead "$u"; then die "the namespace setup failed"; fi
    deadline_passed "$dl" && die "the namespace setup did not finish within 30 s"
    sleep 0.05
  done
  u=$(cat "$S/unshare.pid")
  wait_for 5 _has_child "$u" || die "no PID 1 under unshare (pid $u)"
  C_PID=$(children_of "$u" | head -n 1)
  echo "$C_PID" > "$S/pid"
  readlink "/proc/$C_PID/ns/pid" > "$S/pidns"
  exe0=$(stat -L -c %d:%i "/proc/$C_PID/exe")

  # 2. unshare itself leaves the cgroup v2 group, so the container's systemd may delegate controllers
  while read -r t d; do
    if [ "$t" = v2 ]; then echo "$u" > "$(dirname "$d")/cgroup.procs" || true; fi
  done < "$S/cgroups"

  # 3. outbound network: slirp4netns NAT on tap0 (10.0.2.100/24, gw 10.0.2.2, dns 10.0.2.3);
  #    --exit-fd: it also exits by itself when the container is gone (the lifeline FIFO reaches EOF)
  # shellcheck disable=SC2016
  setsid bash -c '. "$1"; close_fds_above 2; exec 5< "$2"; echo $$ > "$3"; shift 3; exec "$@"' \
    sh "$HERE/lib.sh" "$S/lifeline" "$S/slirp.pid" \
    slirp4netns --configure --mtu=65520 --disable-host-loopback --exit-fd=5 "$C_PID" tap0 \
    < /dev/null > "$S/slirp.log" 2>&1 &
  wait_for 10 _tap0_up || die "slirp4netns did not configure tap0 within 10 s"

  # 4. let PID 1 pivot_root and exec CMD; wait until it has
  touch "$S/go"
  wait_for 15 _exec_done "$exe0" || die "PID 1 did not start '$*' within 15 s"
  rm -f "$S/go"
}
_has_child() { [ -n "$(children_of "$1")" ]; }
_tap0_up() {
  local sp; sp=$(cat "$S/slirp.pid" 2>/dev/null || true)
  [ -n "$sp" ] || return 1
  alive "$sp" || die "slirp4netns exited"
  nsenter -t "$C_PID" -n ip -4 -o addr show dev tap0 2>/dev/null | grep -q 'inet 10\.0\.2\.'
}
_exec_done() {
  alive "$C_PID" || die "the container's PID 1 exited during startup"
  [ "$(stat -L -c %d:%i "/proc/$C_PID/exe" 2>/dev/null)" != "$1" ]
}
# container_started: call at the very end of a successful boot (disarms the failure trap)
container_started() {
  trap - EXIT INT TERM
  _START_NAME=""
}
