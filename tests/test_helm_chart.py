"""The Helm chart (deploy/helm/azure-auth-proxy), rendered by a real helm binary.

`make test` and `make lint` install the pinned helm into the venv (scripts/ensure-helm.sh).
These tests check what the rendered manifests promise; schema validation of the same output
runs in scripts/lint-deploy.sh. The last tests run proxy replicas from the chart's own
ConfigMap and Secret and check that they sign interchangeable identity assertions.
"""

from __future__ import annotations

import base64
import secrets
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
import yaml
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from proxy.app import build_app
from proxy.config_load import from_dict, load
from proxy.mock_entra import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID, MockEntra
from tests.conftest import ALICE, HTML, free_port
from tests.test_deploy import (
    FORWARD_AUTH_HEADERS,
    PORT,
    configmap_toml,
    fake_secret_env,
    find,
    last,
)

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "azure-auth-proxy"
MINIMAL = CHART / "ci" / "minimal-values.yaml"
FULL = CHART / "ci" / "full-values.yaml"
EXAMPLE = CHART / "examples" / "ingress-nginx-forward-auth.yaml"
RELEASE = "azp"
NAME = "azp-azure-auth-proxy"
SECRET_DIR = "/run/secrets/azure-auth-proxy"


def helm_binary() -> str:
    venv_helm = Path(sys.prefix) / "bin" / "helm"
    found = str(venv_helm) if venv_helm.is_file() else shutil.which("helm")
    assert found, "helm is missing: `sh scripts/ensure-helm.sh .venv` (make test runs it)"
    return found


def pem_key() -> str:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()


def helm_template(*args: str, key: str | None = None,
                  tmp_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra: list[str] = []
    if key is not None:
        assert tmp_path is not None
        key_file = tmp_path / "assertion-key.pem"
        key_file.write_text(key)
        extra = ["--set-file", f"secrets.assertionKey={key_file}"]
    return subprocess.run(
        [helm_binary(), "template", RELEASE, str(CHART), "--namespace", "auth",
         "-f", str(MINIMAL), *extra, *args],
        capture_output=True, text=True, timeout=60)


def render(*args: str, key: str | None = None,
           tmp_path: Path | None = None) -> list[dict[str, Any]]:
    done = helm_template(*args, key=key, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def one(docs: Sequence[Mapping[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return dict(doc)


def kinds(docs: Sequence[Mapping[str, Any]]) -> set[str]:
    return {d["kind"] for d in docs}


def pod_spec(docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    (c,) = pod_spec(docs)["containers"]
    return dict(c)


def proxy_toml(docs: Sequence[Mapping[str, Any]]) -> str:
    text: str = one(docs, "ConfigMap")["data"]["proxy.toml"]
    return text


def secret_mount(docs: Sequence[Mapping[str, Any]]) -> tuple[str, dict[str, str]]:
    """The mounted Secret's name and its key -> mounted file path."""
    pod = pod_spec(docs)
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = [m for m in container(docs)["volumeMounts"] if "secret" in volumes[m["name"]]]
    volume = volumes[mount["name"]]["secret"]
    assert volume["defaultMode"] == 0o440
    files = {i["key"]: f"{mount['mountPath']}/{i['path']}" for i in volume["items"]}
    return volume["secretName"], files


# --- the default install ------------------------------------------------------------------


def test_default_install_renders_the_proxy_and_its_guards() -> None:
    docs = render()
    assert kinds(docs) == {"ConfigMap", "Secret", "ServiceAccount", "Service", "Deployment",
                           "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    hpa = one(docs, "HorizontalPodAutoscaler")
    # The HPA owns the count (3 by default); a replicas field would reset it on upgrade.
    assert "replicas" not in one(docs, "Deployment")["spec"]
    assert hpa["spec"]["minReplicas"] == 3 and hpa["spec"]["scaleTargetRef"]["name"] == NAME
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 2
    fixed = render("--set", "hpa.enabled=false")
    assert "HorizontalPodAutoscaler" not in kinds(fixed)
    assert one(fixed, "Deployment")["spec"]["replicas"] == 3


def test_pods_are_non_root_read_only_and_probed() -> None:
    docs = render()
    pod, c = pod_spec(docs), container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == last("USER").partition(":")[0]
    assert pod["automountServiceAccountToken"] is False
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    (http,) = [p for p in c["ports"] if p["name"] == "http"]
    assert http["containerPort"] == PORT
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/ping", "port": "http"}
    assert c["image"] == "ghcr.io/example/azure-auth-proxy:0.1.0"  # appVersion
    service = one(docs, "Service")
    assert service["spec"]["selector"].items() <= one(docs, "Deployment")["spec"][
        "template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_every_replica_mounts_the_one_assertion_key(tmp_path: Path) -> None:
    key = pem_key()
    docs = render(key=key, tmp_path=tmp_path)
    secret = one(docs, "Secret")
    assert base64.b64decode(secret["data"]["assertion_key"]).decode() == key
    name, files = secret_mount(docs)
    assert name == secret["metadata"]["name"]
    config = tomllib.loads(proxy_toml(docs))
    assert config["identity"]["assertion_key_file"] == files["assertion_key"]
    # Every *_file the config reads is a key of the Secret, mounted where the config says.
    for section, table in config.items():
        for k, path in table.items() if isinstance(table, dict) else ():
            if k.endswith("_file"):
                (key_name,) = [n for n, p in files.items() if p == path]
                assert key_name in secret["data"], (section, k)


def test_rendered_config_loads_with_the_proxys_loader(tmp_path: Path) -> None:
    for values in ([], ["-f", str(FULL)]):
        text = proxy_toml(render(*values))
        path = tmp_path / "proxy.toml"
        path.write_text(text)
        config = load(path, fake_secret_env(text, tmp_path))
        assert config.server.listen == f"0.0.0.0:{PORT}"
        assert config.upstreams
    assert config.session.store == "redis" and config.server.workers == 2
    assert config.server.metrics_listen == "0.0.0.0:9090"


def test_a_config_change_rolls_the_pods() -> None:
    def checksum(*args: str) -> str:
        annotations = one(render(*args), "Deployment")["spec"]["template"]["metadata"][
            "annotations"]
        value: str = annotations["checksum/config"]
        return value
    assert checksum() != checksum("--set", "config.server.log_level=debug")


# --- what a bad install is told -----------------------------------------------------------


@pytest.mark.parametrize("args,names", [
    (["--set", "config.server.public_url="], "config.server.public_url"),
    (["--set", "config.azure.client_id="], "config.azure.client_id"),
    (["--set", "config.azure.tenant_id="], "config.azure.tenant_id"),
    (["--set", "config.upstreams=null"], "config.upstreams"),
    (["--set", "secrets.clientSecret="], "secrets.clientSecret"),
    (["--set", "secrets.sessionSecret=too-short"], "secrets.sessionSecret"),
    (["--set", "secrets.assertionKey=not-a-key"], "secrets.assertionKey"),
    (["--set", "redis.enabled=true"], "redis.url"),
    (["--set", "redis.url=http://redis:6379"], "redis.url"),
    (["--set", "config.session.secret_file=/tmp/x"], "config.session.secret_file"),
    (["--set", "config.identity.assertion_key_file=/tmp/k"],
     "config.identity.assertion_key_file"),
    (["--set", "config.server.listen=0.0.0.0:80"], "config.server.listen"),
    (["--set", "workloadIdentity.enabled=true"], "workloadIdentity.clientId"),
    (["--set", "workloadIdentity.signIn=true", "--set", "secrets.clientSecret="],
     "workloadIdentity.enabled"),
    (["--set", "workloadIdentity.enabled=true", "--set", "workloadIdentity.clientId=x",
      "--set", "workloadIdentity.signIn=true"], "secrets.clientSecret"),
    (["--set", "config.azure.client_credential=managed_identity"],
     "config.azure.client_credential"),
    (["--set", "metrics.serviceMonitor.enabled=true"], "metrics.serviceMonitor.enabled"),
    (["--set", "pdb.minAvailable=3"], "pdb.minAvailable"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_a_bad_install_is_refused_naming_the_value(args: list[str], names: str) -> None:
    done = helm_template(*args)
    assert done.returncode != 0, done.stdout[:500]
    # One error line naming the value (helm adds a "Use --debug" hint after it).
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and names in errors[0], done.stderr


def test_the_shipped_minimal_values_carry_no_usable_key() -> None:
    """Lint renders with a placeholder: a real key in the repo would be everybody's key."""
    values = yaml.safe_load(MINIMAL.read_text())
    assert "\n-----END" in values["secrets"]["assertionKey"]
    with pytest.raises(ValueError):
        serialization.load_pem_private_key(values["secrets"]["assertionKey"].encode(), None)


# --- optional features ----------------------------------------------------------------------


def test_existing_secret_replaces_the_charts_secret() -> None:
    docs = render("--set", "secrets.existingSecret=mine", "--set", "secrets.clientSecret=",
                  "--set", "secrets.sessionSecret=", "--set", "secrets.assertionKey=",
                  "--set", "redis.enabled=true")
    assert "Secret" not in kinds(docs)
    name, files = secret_mount(docs)
    assert name == "mine"
    assert set(files) == {"client_secret", "session_secret", "assertion_key", "redis_url"}
    session = tomllib.loads(proxy_toml(docs))["session"]
    assert session["store"] == "redis" and session["redis_url_file"] == files["redis_url"]


def test_redis_by_url_goes_into_the_secret_not_the_configmap() -> None:
    url = "rediss://:pa55word@cache.redis.cache.windows.net:6380/0"
    docs = render("--set", "redis.enabled=true", "--set", f"redis.url={url}")
    assert base64.b64decode(one(docs, "Secret")["data"]["redis_url"]).decode() == url
    assert "pa55word" not in proxy_toml(docs)
    assert tomllib.loads(proxy_toml(docs))["session"]["store"] == "redis"
    assert tomllib.loads(proxy_toml(render()))["session"]["store"] == "cookie"


def test_every_optional_feature_on() -> None:
    docs = render("-f", str(FULL))
    assert {"Ingress", "ServiceMonitor"} <= kinds(docs)
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels["azure.workload.identity/use"] == "true"
    account = one(docs, "ServiceAccount")
    assert account["metadata"]["annotations"]["azure.workload.identity/client-id"] == \
        "22222222-2222-2222-2222-222222222222"
    assert pod_spec(docs)["serviceAccountName"] == account["metadata"]["name"]
    # Ingress -> Service port "http"; ServiceMonitor -> Service port "metrics" -> container.
    ingress = one(docs, "Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = one(docs, "Service")
    assert backend == {"name": service["metadata"]["name"], "port": {"name": "http"}}
    assert ingress["spec"]["tls"][0]["hosts"] == ["tools.example.com"]
    monitor = one(docs, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    (metrics,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    (container_port,) = [p for p in container(docs)["ports"] if p["name"] == "metrics"]
    assert metrics["targetPort"] == "metrics" and container_port["containerPort"] == 9090
    assert monitor["metadata"]["labels"]["release"] == "prometheus"


def test_optional_features_are_off_by_default() -> None:
    docs = render()
    assert not {"Ingress", "ServiceMonitor"} & kinds(docs)
    assert "azure.workload.identity/use" not in one(docs, "Deployment")["spec"]["template"][
        "metadata"]["labels"]
    assert "annotations" not in one(docs, "ServiceAccount")["metadata"]
    assert "metrics_listen" not in tomllib.loads(proxy_toml(docs))["server"]
    assert [p["name"] for p in one(docs, "Service")["spec"]["ports"]] == ["http"]


def test_workload_identity_sign_in_needs_and_mounts_no_client_secret(tmp_path: Path) -> None:
    docs = render("--set", "workloadIdentity.enabled=true", "--set",
                  f"workloadIdentity.clientId={DEFAULT_CLIENT_ID}", "--set",
                  "workloadIdentity.signIn=true", "--set", "secrets.clientSecret=")
    assert "client_secret" not in one(docs, "Secret")["data"]
    assert "client_secret" not in secret_mount(docs)[1]
    text = proxy_toml(docs)
    azure = tomllib.loads(text)["azure"]
    assert azure["client_credential"] == "workload_identity" and "client_secret_file" not in azure
    path = tmp_path / "proxy.toml"
    path.write_text(text)
    # The webhook sets AZURE_FEDERATED_TOKEN_FILE in the pod; the proxy takes it from there.
    env = {**fake_secret_env(text, tmp_path),
           "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token"}
    config = load(path, env)
    assert config.azure.federated_token_file == env["AZURE_FEDERATED_TOKEN_FILE"]
    assert not config.azure.client_secret


def test_ingress_nginx_forward_auth_example_points_at_the_chart() -> None:
    (ingress,) = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    annotations = ingress["metadata"]["annotations"]
    service = one(render(), "Service")
    assert annotations["nginx.ingress.kubernetes.io/auth-url"] == (
        f"http://{service['metadata']['name']}.auth.svc.cluster.local:"
        f"{service['spec']['ports'][0]['port']}/oauth2/auth")
    assert annotations["nginx.ingress.kubernetes.io/auth-signin"].endswith(
        "/oauth2/start?rd=$escaped_request_uri")
    headers = annotations["nginx.ingress.kubernetes.io/auth-response-headers"].split(",")
    assert set(headers) == set(FORWARD_AUTH_HEADERS)


# --- replicas from the chart's own ConfigMap and Secret, for real ----------------------------


PodFiles = tuple[dict[str, Any], dict[str, bytes]]


def chart_pod_files(tmp_path: Path) -> PodFiles:
    """The chart's proxy.toml and the files its Secret puts under SECRET_DIR."""
    docs = render("--set", f"config.azure.client_id={DEFAULT_CLIENT_ID}",
                  "--set", f"config.azure.tenant_id={DEFAULT_TENANT_ID}",
                  "--set", f"secrets.clientSecret={DEFAULT_CLIENT_SECRET}",
                  key=pem_key(), tmp_path=tmp_path)
    files = {name: base64.b64decode(value)
             for name, value in one(docs, "Secret")["data"].items()}
    return tomllib.loads(proxy_toml(docs)), files


def plain_pod_files(redis_url: str) -> PodFiles:
    """deploy/kubernetes' proxy.toml and its Secret's keys, filled in as its header says."""
    (secret,) = find("Secret", "azure-auth-proxy")
    files = {name: b"" for name in secret["stringData"]}
    files.update(client_secret=DEFAULT_CLIENT_SECRET.encode(),
                 session_secret=secrets.token_urlsafe(48).encode(),
                 redis_url=redis_url.encode(), assertion_key=pem_key().encode())
    data = tomllib.loads(configmap_toml())
    data["azure"].update(client_id=DEFAULT_CLIENT_ID, tenant_id=DEFAULT_TENANT_ID)
    return data, files


async def start_replicas(tmp_path: Path, pod_files: PodFiles, idp: str,
                         upstream: str, count: int,
                         shared_key: bool = True) -> list[tuple[TestServer, str]]:
    """`count` proxies run from one ConfigMap and Secret, as a Deployment's pods would."""
    config, files = pod_files
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir()
    for name, value in files.items():
        (secret_dir / name).write_bytes(value)
    # Each pod reads the Secret's files where the config says; here they are in secret_dir.
    data = {section: {k: v.replace(SECRET_DIR, str(secret_dir))
                      if k.endswith("_file") and isinstance(v, str) else v
                      for k, v in table.items()} if isinstance(table, dict) else table
            for section, table in config.items()}
    ports = [free_port() for _ in range(count)]
    public_url = f"http://127.0.0.1:{ports[0]}"  # one site, several pods behind it
    servers = []
    for index, port in enumerate(ports):
        pod = {**data, "server": {**data["server"], "listen": f"127.0.0.1:{port}",
                                  "public_url": public_url, "trusted_proxies": []},
               "azure": {**data["azure"], "cloud_instance": idp + "/"},
               "session": {**data["session"], "secure": False},
               "upstreams": [{"path": "/", "url": upstream}]}
        if not shared_key and index == count - 1:
            pod["identity"] = {}  # what deploy/kubernetes did before: a key per pod
        server = TestServer(build_app(from_dict(pod)), host="127.0.0.1", port=port)
        await server.start_server()
        servers.append((server, f"http://127.0.0.1:{port}"))
    return servers


async def assertions_and_jwks(servers: list[tuple[TestServer, str]], mock: MockEntra
                              ) -> tuple[list[str], list[dict[str, Any]]]:
    """Sign in on the first pod, then the assertion each pod sends and each pod's JWKS."""
    mock.auto_user = ALICE
    tokens, jwks = [], []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        async with browser.get(servers[0][1] + "/", headers=HTML) as resp:
            assert resp.status == 200
        for _, url in servers:  # the session cookie is valid on every pod
            async with browser.get(url + "/app") as resp:
                assert resp.status == 200
                tokens.append((await resp.json())["headers"]["X-Auth-Assertion"][0])
            async with browser.get(url + "/oauth2/jwks") as resp:
                jwks.append(await resp.json())
    return tokens, jwks


def verifies(token: str, jwks: dict[str, Any], issuer: str, audience: str) -> bool:
    keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(jwks).keys}
    key = keys.get(jwt.get_unverified_header(token)["kid"])
    if key is None:
        return False
    claims = jwt.decode(token, key.key, algorithms=["ES256"], audience=audience,
                        issuer=issuer)
    return bool(claims["preferred_username"] == ALICE)


@pytest.mark.parametrize("source", ["helm", "kubernetes"])
async def test_replicas_verify_each_others_assertions(
        source: str, request: pytest.FixtureRequest, tmp_path: Path,
        mock_server: tuple[MockEntra, str], upstream_url: str) -> None:
    """Three pods of the chart (cookie store) or of deploy/kubernetes (Redis store)."""
    mock, idp = mock_server
    pod_files = (chart_pod_files(tmp_path) if source == "helm"
                 else plain_pod_files(request.getfixturevalue("redis_url")))
    servers = await start_replicas(tmp_path, pod_files, idp, upstream_url, 3)
    try:
        tokens, jwks = await assertions_and_jwks(servers, mock)
    finally:
        for server, _ in servers:
            await server.close()
    issuer = servers[0][1]
    assert len(tokens) == len(jwks) == 3
    for token in tokens:  # an upstream may fetch /oauth2/jwks from any pod
        for document in jwks:
            assert verifies(token, document, issuer, upstream_url)


async def test_a_pod_with_its_own_key_fails_upstream_verification(
        tmp_path: Path, mock_server: tuple[MockEntra, str], upstream_url: str) -> None:
    """The failure the shared key prevents: without it, other pods' JWKS reject the token."""
    mock, idp = mock_server
    servers = await start_replicas(tmp_path, chart_pod_files(tmp_path), idp, upstream_url, 2,
                                   shared_key=False)
    try:
        tokens, jwks = await assertions_and_jwks(servers, mock)
    finally:
        for server, _ in servers:
            await server.close()
    issuer = servers[0][1]
    assert verifies(tokens[0], jwks[0], issuer, upstream_url)
    assert not verifies(tokens[1], jwks[0], issuer, upstream_url)
    assert not verifies(tokens[0], jwks[1], issuer, upstream_url)
