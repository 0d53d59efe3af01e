#!/usr/bin/env bash
# Checks the container image (in CI): builds it, then checks what it is made
# of and runs it. `podman run` needs what a CI sandbox may not give (user
# namespaces, cgroups); so the image's own file system is exported and its
# binary run in a chroot of it, as the image's user: nothing but /upecho,
# no /etc/hosts, no NSS modules, as in the container.
#
#   contrib/container/check.sh
#
# Needs podman, python3, and root (for chroot). Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

fail() { echo "container check failed: $*" >&2; exit 1; }

tag="upecho-check:$$"
root="$(mktemp -d)"
chmod 755 "$root"  # the image's user must reach /upecho
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  podman rmi -f "$tag" >/dev/null 2>&1 || true
  rm -rf "$root"
}
trap cleanup EXIT

contrib/container/build.sh "$tag"

# The image: a non-root user, and a default command that binds every address.
user="$(podman image inspect "$tag" --format '{{.Config.User}}')"
cmd="$(podman image inspect "$tag" --format '{{json .Config.Cmd}}')"
[ -n "$user" ] && [ "${user%%:*}" != 0 ] && [ "${user%%:*}" != root ] || fail "runs as '$user'"
case "$cmd" in *'"0.0.0.0:8080"'*) ;; *) fail "the default command binds no 0.0.0.0: $cmd" ;; esac
echo "image: user $user, command $cmd"

# Its file system: the static binary and nothing else.
container="$(podman create "$tag")"
podman export "$container" | tar -x -C "$root"
podman rm "$container" >/dev/null
files="$(cd "$root" && find . -type f | sort)"
[ "$files" = "./upecho" ] || fail "the image holds more than /upecho: $files"
# Static: no program interpreter to load it, no shared library it needs.
if readelf --program-headers "$root/upecho" | grep -q INTERP ||
  readelf --dynamic "$root/upecho" | grep -q NEEDED; then
  fail "/upecho needs a dynamic loader: $(readelf --dynamic "$root/upecho" | grep NEEDED)"
fi
echo "image: /upecho alone, $(du -h "$root/upecho" | cut -f1), static"

# Run it as the image would: in its file system, as its user, naming
# `localhost`, which no resolver is there to answer. Stricter than a
# container: no /dev and no /proc either.
as_image() { timeout 30 chroot --userspec="$user" "$root" /upecho "$@"; }
ready="$root/ready"
mkfifo "$ready"
# chroot itself, not the function: $! must be the server's own PID (chroot
# execs it), which SIGTERM then reaches.
chroot --userspec="$user" "$root" /upecho serve --tcp localhost:0 --ws localhost:0 --metrics localhost:0 \
  >"$ready" 2>"$root/log" &
server=$!
exec 3<"$ready"
lines=()
for _ in 1 2 3; do
  read -r -t 30 line <&3 || fail "no readiness line; log: $(cat "$root/log")"
  lines+=("$line")
done
printf 'ready: %s\n' "${lines[@]}"
port_of() { printf '%s\n' "${lines[@]}" | sed -n "s/^listening $1 127\.0\.0\.1:\([0-9]*\)$/\1/p"; }
tcp="$(port_of tcp)"; ws="$(port_of ws)"; metrics="$(port_of metrics)"
[ -n "$tcp" ] && [ -n "$ws" ] && [ -n "$metrics" ] || fail "localhost did not bind 127.0.0.1: ${lines[*]}"

reply="$(printf 'hello, image\n' | as_image connect "localhost:$tcp")"
[ "$reply" = "HELLO, IMAGE" ] || fail "tcp reply '$reply'"
reply="$(printf 'over websocket\n' | as_image connect --ws "ws://localhost:$ws/")"
[ "$reply" = "OVER WEBSOCKET" ] || fail "ws reply '$reply'"
health="$(python3 -c 'import sys, urllib.request; r = urllib.request.urlopen(sys.argv[1], timeout=10); print(r.status, r.read().decode().strip())' "http://127.0.0.1:$metrics/healthz")"
[ "$health" = "200 ok" ] || fail "/healthz answered '$health'"
kill -TERM "$server"
# Bounded: past 30 s the server is killed, and the check fails.
( sleep 30; kill -KILL "$server" 2>/dev/null ) &
watchdog=$!
status=0
wait "$server" || status=$?
kill "$watchdog" 2>/dev/null || true
[ "$status" = 0 ] || fail "the server did not stop cleanly on SIGTERM (status $status); log: $(tail -5 "$root/log")"
server=""
echo "container check: passed (tcp, ws and /healthz through localhost, as user $user, in the image's file system)"

# podman run itself, where this machine allows it (not required).
if out="$(timeout 60 podman run --rm --network host "$tag" --version 2>&1)"; then
  echo "podman run: $out"
else
  echo "podman run is not available here (${out##*$'\n'}); checked by chroot above"
fi
