#!/bin/sh
# Install what `make bench` drives, when missing: nginx (upstream and plain reverse proxy),
# Apache + mod_auth_openidc, wrk, curl (streaming client) and redis-server (Redis store rows).
# Debian's postinst scripts would start apache2/nginx/redis as services listening on every
# interface: a temporary policy-rc.d forbids that (the harness runs its own, on 127.0.0.1).
set -eu
missing=""
need() {  # $1 package, $2 file that proves it is installed
  [ -e "$2" ] || missing="$missing $1"
}
need nginx /usr/sbin/nginx
need apache2 /usr/sbin/apache2
need libapache2-mod-auth-openidc /usr/lib/apache2/modules/mod_auth_openidc.so
need wrk /usr/bin/wrk
need curl /usr/bin/curl
need redis-server /usr/bin/redis-server
[ -z "$missing" ] && exit 0
echo "bench: installing$missing" >&2
if [ "$(id -u)" = 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "bench: need root (or passwordless sudo) to apt-get install$missing" >&2
  exit 1
fi
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  trap '$SUDO rm -f "$policy"' EXIT INT TERM
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
# shellcheck disable=SC2086
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing \
  >/dev/null
