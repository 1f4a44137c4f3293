#!/bin/sh
# Install the Debian packages the test suite drives for real (nginx for the auth_request
# test, caddy for the forward_auth recipe, redis-server for Redis topologies), when their
# binary is missing. Fails loudly when it cannot: these tests are never skipped.
set -eu
missing=""
for pair in "$@"; do  # package:binary
  pkg=${pair%%:*}
  bin=${pair#*:}
  if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$bin" ]; then
    missing="$missing $pkg"
  fi
done
[ -z "$missing" ] && exit 0
echo "ensure-debs: installing$missing" >&2
if [ "$(id -u)" = 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "ensure-debs: need root (or passwordless sudo) to apt-get install$missing" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
