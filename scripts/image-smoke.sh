#!/bin/sh
# Build the container image with podman and check it keeps the Dockerfile's promises:
#   - the OCI labels are set, org.opencontainers.image.version = proxy.__version__, and a
#     VERSION that differs from the package's fails the build;
#   - it starts with a read-only root filesystem (no tmpfs on /tmp either, as in
#     deploy/kubernetes/deployment.yaml apart from its /tmp emptyDir) and a config mounted
#     read-only;
#   - the server runs as uid/gid 10001, GET /ping answers 200 "OK", and the image's
#     HEALTHCHECK passes.
# Called by `make image-smoke` and the CI (.ci/run). Needs root (rootful podman, debootstrap);
# installs podman, runc and debootstrap from Debian when missing.
#
# The base image. The Dockerfile's base, python:3.12-slim from Docker Hub, cannot be pulled
# where Docker Hub is unreachable (the CI machine). Set PYTHON_IMAGE to use a reachable one
# (PYTHON_IMAGE=python:3.12.12-slim-trixie sh scripts/image-smoke.sh); by default this script
# makes a stand-in once and keeps it in podman's storage: Debian bookworm (python3 3.11,
# which the project supports) bootstrapped from the Debian mirror, with what the official
# python image provides that the Dockerfile relies on: `python`, pip, and no
# EXTERNALLY-MANAGED marker (pip installs into the system Python there, as in python:slim).
# Certificate authorities added to this machine (/usr/local/share/ca-certificates) are
# added to the stand-in too, so its `pip wheel` reaches PyPI the way this machine's pip does
# (through a TLS-inspecting egress proxy, for instance). The stand-in never leaves the host.
#
# Why runc and explicit ulimits: Debian bookworm's crun (1.8) refuses hosts with cgroup v1
# and v2 mounted side by side ("cgroups in hybrid mode not supported"); runc runs there. And
# podman's default RLIMIT_NOFILE/NPROC (1048576) are above this machine's hard limits, which
# even root may not raise, so the run asks for modest limits. The build uses chroot
# isolation (no OCI runtime, no cgroups) for the same reason.
set -eu
cd "$(dirname "$0")/.."

BASE=${PYTHON_IMAGE:-localhost/azure-auth-proxy-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
IMAGE=${SMOKE_IMAGE:-localhost/azure-auth-proxy:smoke}
RUNTIME=${SMOKE_RUNTIME:-runc}
PY=${PYTHON:-python3}
VERSION=$("$PY" -c 'import proxy; print(proxy.__version__)')

say() { echo "image-smoke: $*" >&2; }
die() { say "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (rootful podman and debootstrap)"
sh scripts/ensure-debs.sh podman:podman runc:runc debootstrap:debootstrap

work=$(mktemp -d /tmp/azp-image-smoke.XXXXXX)
name="azp-smoke-$$"
cleanup() {
  podman rm -f --time 2 "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# --- the stand-in base ---------------------------------------------------------------------
if [ -z "${PYTHON_IMAGE:-}" ] && ! podman image exists "$BASE"; then
  say "making $BASE with debootstrap from $MIRROR (once; a few minutes)"
  root="$work/rootfs"
  debootstrap --variant=minbase \
    --include=python3,python3-pip,python-is-python3,ca-certificates \
    bookworm "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap"; }
  rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
  if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null 2>&1
  fi
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" -c . | podman import --quiet --change 'CMD ["python3"]' - "$BASE" >/dev/null
  rm -rf "$root"
fi

# --- build ---------------------------------------------------------------------------------
say "building $IMAGE (VERSION=$VERSION) on $BASE"
podman build --isolation chroot --format docker \
  --build-arg "PYTHON_IMAGE=$BASE" --build-arg "VERSION=$VERSION" \
  -t "$IMAGE" . >"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log" >&2; die "build"; }

label() { podman image inspect --format "{{index .Labels \"org.opencontainers.image.$1\"}}" "$IMAGE"; }
[ "$(label version)" = "$VERSION" ] || die "label version is '$(label version)', not $VERSION"
for key in source licenses description; do
  [ -n "$(label "$key")" ] || die "label org.opencontainers.image.$key is missing"
done
say "labels: version=$(label version) licenses=$(label licenses) source=$(label source)"
# Fail closed: a VERSION that is not the package's must not produce an image (the builder
# stage comes from the layer cache, so this costs seconds).
if podman build --isolation chroot --format docker \
     --build-arg "PYTHON_IMAGE=$BASE" --build-arg "VERSION=0.0.0.dev0" \
     -t localhost/azure-auth-proxy:smoke-mismatch . >"$work/mismatch.log" 2>&1; then
  podman rmi -f localhost/azure-auth-proxy:smoke-mismatch >/dev/null 2>&1 || true
  die "VERSION=0.0.0.dev0 (not the package's $VERSION) built an image anyway"
fi
grep -q "azure_auth_proxy-0.0.0.dev0-py3-none-any.whl" "$work/mismatch.log" \
  || { tail -n 20 "$work/mismatch.log" >&2; die "VERSION=0.0.0.dev0 failed for another reason"; }
say "VERSION=0.0.0.dev0: the build fails, as it must"

# --- run: read-only root, the image's own user, published on loopback only ----------------
# Inside its own network namespace the proxy listens on 0.0.0.0:4180, as deployed (EXPOSE,
# HEALTHCHECK); the host reaches it only at 127.0.0.1:$port.
port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Secrets here are throwaway values for this run; cloud_instance points at a closed loopback
# port: /ping needs no identity provider, and nothing may reach a real cloud endpoint.
cat >"$work/proxy.toml" <<EOF
[server]
listen = "0.0.0.0:4180"
public_url = "http://127.0.0.1:$port"

[azure]
client_id = "c0ffee00-1234-4abc-8def-0123456789ab"
tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47"
client_secret = "$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')"
cloud_instance = "http://127.0.0.1:9/"

[session]
secret = "$("$PY" -c 'import secrets; print(secrets.token_urlsafe(32))')"
secure = false

[[upstreams]]
url = "http://127.0.0.1:9"
EOF
chmod 0755 "$work"
chmod 0644 "$work/proxy.toml"  # readable by uid 10001

# --health-interval disable: no timer for the HEALTHCHECK (podman wants systemd for it, and
# still complains on stderr where there is none); it is run once by hand below.
podman --runtime "$RUNTIME" run -d --name "$name" -p "127.0.0.1:$port:4180" \
  --health-interval disable --read-only --read-only-tmpfs=false \
  --ulimit nofile=4096:4096 --ulimit nproc=4096:4096 \
  -v "$work/proxy.toml:/etc/azure-auth-proxy/proxy.toml:ro" "$IMAGE" \
  >/dev/null 2>"$work/run.err" || { cat "$work/run.err" >&2; die "podman run"; }

if ! "$PY" - "$port" <<'PY'; then
import sys, time, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/ping"
deadline = time.monotonic() + 60
while True:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            body = r.read()
            if r.status == 200 and body == b"OK":
                break
            sys.exit(f"/ping answered {r.status} {body!r}")
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("/ping did not answer within 60 s")
        time.sleep(0.5)
PY
  podman logs "$name" >&2 || true
  die "GET /ping"
fi
say "GET /ping: 200 OK"

pid=$(podman inspect --format '{{.State.Pid}}' "$name")
uid=$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$pid/status")
gid=$(awk '/^Gid:/ {print $2, $3, $4, $5}' "/proc/$pid/status")
[ "$uid" = "10001 10001 10001 10001" ] || die "runs as uid $uid, not 10001"
[ "$gid" = "10001 10001 10001 10001" ] || die "runs as gid $gid, not 10001"
say "process $pid: uid 10001, gid 10001"

[ "$(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$name")" = true ] \
  || die "the root filesystem is not read-only"
# Even root inside cannot write anywhere on the root filesystem, /tmp included.
for path in /probe /tmp/probe /etc/azure-auth-proxy/probe; do
  if podman exec --user 0 "$name" touch "$path" 2>/dev/null; then
    die "$path is writable"
  fi
done
say "read-only root filesystem: /, /tmp and /etc/azure-auth-proxy refuse writes"

# The Dockerfile's HEALTHCHECK (Python's urllib on /ping) passes inside the image.
podman healthcheck run "$name" >/dev/null || die "the image's HEALTHCHECK fails"
say "HEALTHCHECK: healthy"

# The startup event names the version it runs (text: `started version=X`; JSON:
# `"event": "started", ... "version": "X"`).
podman logs "$name" 2>&1 | grep -E 'started|"event": "started"' \
  | grep -Eq "version=$VERSION( |\$)|\"version\": \"$VERSION\"" \
  || die "no 'started' event with version $VERSION in the logs"
say "startup event: started, version $VERSION"
say "ok: $IMAGE ($VERSION)"
