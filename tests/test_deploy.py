"""The deployment artefacts cannot rot: the Dockerfile, deploy/ configs and manifests.

No Docker engine or cluster is needed: the Dockerfile is parsed, every example config is
loaded with the project's own loader, and the manifests are checked for what the proxy
relies on. Schema validation and linting are in scripts/lint-deploy.sh (`make lint`).
"""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import re
import secrets
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.__main__ import parser
from proxy.config import ServerConfig
from proxy.config_load import load

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
K8S = DEPLOY / "kubernetes"
CONFIG_PATH = "/etc/azure-auth-proxy/proxy.toml"
PORT = 4180
FORWARD_AUTH_HEADERS = (
    "X-Auth-Request-User",
    "X-Auth-Request-Email",
    "X-Auth-Request-Groups",
    "X-Auth-Request-Preferred-Username",
    "X-Auth-Request-Groups-Overflow",  # groups too long for a line: left out, marked
)


# --- Dockerfile -----------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may sit inside a continued instruction too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return out


def stages() -> list[dict[str, Any]]:
    """Each build stage: its resolved base image, name and instructions."""
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    global_args: dict[str, str] = {}
    result: list[dict[str, Any]] = []
    for word, rest in instructions:
        if word == "FROM":
            parts = [p for p in rest.split() if not p.startswith("--")]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m[1], m[0]), parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            result.append({"image": image, "name": name, "instructions": []})
        elif not result and word == "ARG":
            key, _, default = rest.partition("=")
            global_args[key.strip()] = default.strip().strip('"')
        elif result:
            result[-1]["instructions"].append((word, rest))
    return result


def final_stage() -> list[tuple[str, str]]:
    instructions: list[tuple[str, str]] = stages()[-1]["instructions"]
    return instructions


def last(word: str) -> str:
    values = [rest for w, rest in final_stage() if w == word]
    assert values, f"the final stage has no {word}"
    return values[-1]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_image_is_multi_stage_on_a_pinned_slim_python() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2, "builder + final stage"
    names = {s["name"] for s in all_stages if s["name"]}
    for stage in all_stages:
        if stage["image"] in names:
            continue
        # A patch release, never a floating tag: python:3.12.12-slim-trixie and the like.
        assert re.fullmatch(r"python:3\.1[1-9]\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?",
                            stage["image"]), stage["image"]
    # Wheels built in one stage install in the other: the same Python, the same ABI.
    assert all_stages[0]["image"] == all_stages[-1]["image"]


def test_builder_builds_a_wheel_and_the_final_stage_installs_only_wheels() -> None:
    builder = stages()[0]["instructions"]
    assert any(w == "RUN" and "pip wheel" in rest for w, rest in builder)
    runs = [rest for w, rest in final_stage() if w == "RUN"]
    installs = [r for r in runs if "pip install" in r]
    assert len(installs) == 1, installs
    assert "--no-index" in installs[0] and ".whl" in installs[0]
    # No compiler, no source tree, no package manager installs in the final image.
    for r in runs:
        assert not re.search(r"apt-get|apk add|gcc|build-essential|python3-dev", r), r
    copies = [rest for w, rest in final_stage() if w in ("COPY", "ADD")]
    assert not copies, f"the final stage copies {copies}; it should only install wheels"


def test_entrypoint_is_the_installed_console_script() -> None:
    scripts = pyproject()["project"]["scripts"]
    entrypoint = exec_form(last("ENTRYPOINT"))
    assert len(entrypoint) == 1 and entrypoint[0] in scripts, (entrypoint, scripts)
    name = entrypoint[0]
    # The script is really installed by this package (the image installs the same wheel)...
    (installed,) = importlib.metadata.entry_points(group="console_scripts", name=name)
    assert installed.value == scripts[name]
    assert callable(installed.load())
    # ...and runs.
    script = Path(sys.prefix) / "bin" / name
    assert script.is_file(), f"{script} missing: pip install -e '.[dev]'"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "run" in done.stdout


def test_cmd_runs_the_mounted_config() -> None:
    cmd = exec_form(last("CMD"))
    assert cmd == ["run", "-c", CONFIG_PATH]
    args = parser().parse_args(cmd)
    assert (args.command, args.config) == ("run", CONFIG_PATH)


def test_runs_as_a_numeric_non_root_user() -> None:
    user = last("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, user
    assert not gid or (gid.isdigit() and int(gid) != 0), user


def test_exposes_and_health_checks_the_default_port() -> None:
    default_listen = ServerConfig.__dataclass_fields__["listen"].default
    assert str(default_listen).endswith(f":{PORT}")
    assert str(PORT) in last("EXPOSE").split()
    healthcheck = last("HEALTHCHECK")
    assert f"http://127.0.0.1:{PORT}/ping" in healthcheck
    assert "urllib" in healthcheck
    assert not re.search(r"\b(curl|wget)\b", healthcheck), "slim images have neither"
    command = exec_form(healthcheck.split("CMD", 1)[1].strip())
    assert command[0] == "python"


def test_dockerignore_sends_only_what_the_build_needs() -> None:
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert {"pyproject.toml", "README.md", "proxy"} <= allowed
    assert not allowed & {".venv", ".git", "tests", "deploy"}


# --- example configs ------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


def k8s_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


def find(kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in k8s_docs()
            if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def proxy_deployment() -> dict[str, Any]:
    (deployment,) = find("Deployment", "azure-auth-proxy")
    return deployment


def proxy_container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = proxy_deployment()["spec"]["template"]["spec"][
        "containers"]
    (container,) = [c for c in containers if c["name"] == "azure-auth-proxy"]
    return container


def configmap_toml() -> str:
    (configmap,) = find("ConfigMap", "azure-auth-proxy")
    text: str = configmap["data"]["proxy.toml"]
    return text


def secret_files(text: str) -> dict[str, str]:
    """The secret files a config names: "section.key_file" -> path."""
    data = tomllib.loads(text)
    return {f"{section}.{key}": value for section, table in data.items()
            if isinstance(table, dict) for key, value in table.items()
            if key.endswith("_file") and isinstance(value, str) and value}


def fake_secret(key: str) -> str:
    if key.startswith("redis_url"):
        return "redis://:fake-password@azure-auth-proxy-redis:6379/0"
    return secrets.token_urlsafe(48)


def fake_secret_env(text: str, tmp_path: Path) -> dict[str, str]:
    """Point every *_file key at a temporary file holding a fake secret (via the env)."""
    env: dict[str, str] = {}
    for dotted in secret_files(text):
        section, key = dotted.split(".")
        path = tmp_path / f"{section}_{key}"
        path.write_text(fake_secret(key) + "\n")
        env[f"PROXY_{section.upper()}_{key.upper()}"] = str(path)
    return env


def example_configs() -> Iterator[tuple[str, str]]:
    for path in sorted(DEPLOY.rglob("*.toml")):
        yield str(path.relative_to(ROOT)), path.read_text()
    yield "deploy/kubernetes/configmap.yaml:proxy.toml", configmap_toml()


def container_env(container: Mapping[str, Any]) -> dict[str, str]:
    return {e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e}


@pytest.mark.parametrize("where,text", list(example_configs()), ids=lambda v: str(v)[:60])
def test_example_config_loads(where: str, text: str, tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text(text)
    config = load(path, fake_secret_env(text, tmp_path))
    assert config.server.listen.endswith(f":{PORT}"), where
    assert config.upstreams, where


def test_compose_config_loads_with_the_compose_environment(tmp_path: Path) -> None:
    text = (DEPLOY / "proxy.toml").read_text()
    env = {**compose()["services"]["proxy"].get("environment", {}),
           **fake_secret_env(text, tmp_path)}
    config = load(DEPLOY / "proxy.toml", {k: str(v) for k, v in env.items()})
    assert config.session.store == "redis"


def test_kubernetes_config_loads_with_the_deployment_environment(tmp_path: Path) -> None:
    text = configmap_toml()
    env = {**container_env(proxy_container()), **fake_secret_env(text, tmp_path)}
    path = tmp_path / "proxy.toml"
    path.write_text(text)
    config = load(path, env)
    assert config.session.store == "redis"


def test_image_brings_the_redis_client_the_deploy_configs_need() -> None:
    """The image installs only the wheel: a store = "redis" config needs redis declared."""
    stores = {tomllib.loads(text).get("session", {}).get("store") for _, text in
              example_configs()}
    if "redis" in stores:
        deps = [re.split(r"[\s<>=!~\[;]", d, maxsplit=1)[0].lower()
                for d in pyproject()["project"]["dependencies"]]
        assert "redis" in deps, (
            "deploy/ configs use store = \"redis\" but pyproject.toml [project] dependencies "
            "lack redis: the image (pip install of the wheel) could not import proxy.app")


# --- docker compose -------------------------------------------------------------------------


def test_compose_runs_proxy_redis_and_an_upstream() -> None:
    services = compose()["services"]
    assert {"proxy", "redis"} <= set(services) and len(services) >= 3
    proxy = services["proxy"]
    build = proxy["build"]
    assert (DEPLOY / build["context"] / build.get("dockerfile", "Dockerfile")).resolve() \
        == DOCKERFILE
    assert any(v.split(":")[1] == CONFIG_PATH and v.split(":")[0] == "./proxy.toml"
               for v in proxy["volumes"])
    assert services["redis"]["image"].startswith(("redis:", "valkey/valkey:"))
    text = (DEPLOY / "proxy.toml").read_text()
    data = tomllib.loads(text)
    assert data["session"]["store"] == "redis"
    host = re.match(r"rediss?://(?:[^@/]*@)?([^:/]+)", data["session"]["redis_url"])
    assert host and host[1] == "redis"
    upstream_host = re.match(r"https?://([^:/]+)", data["upstreams"][0]["url"])
    assert upstream_host and upstream_host[1] in services


def test_compose_secrets_are_the_files_the_config_reads() -> None:
    spec = compose()
    mounted = {f"/run/secrets/{name}" for name in spec["services"]["proxy"]["secrets"]}
    assert set(spec["secrets"]) >= set(spec["services"]["proxy"]["secrets"])
    paths = set(secret_files((DEPLOY / "proxy.toml").read_text()).values())
    assert paths and paths <= mounted, (paths, mounted)


# --- Kubernetes -----------------------------------------------------------------------------


def test_manifests_parse_and_are_namespace_less() -> None:
    docs = k8s_docs()
    assert docs
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
        assert "namespace" not in doc["metadata"], doc["metadata"]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "Secret", "ConfigMap", "HorizontalPodAutoscaler",
            "PodDisruptionBudget"} <= kinds


def pod_labels(deployment: Mapping[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def port_number(container: Mapping[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return int(number)


def test_proxy_deployment_replicas_probes_and_hardening() -> None:
    deployment = proxy_deployment()
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    container = proxy_container()
    assert port_number(container, "http") == PORT
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/ping")):
        get = container[probe]["httpGet"]
        assert get["path"] == path and port_number(container, get["port"]) == PORT
    assert pod["securityContext"]["runAsNonRoot"] is True
    uid = last("USER").partition(":")[0]
    assert str(pod["securityContext"]["runAsUser"]) == uid, "same uid as the image"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert {"requests", "limits"} <= set(container["resources"])


def test_proxy_reads_the_configmap_and_secret_files() -> None:
    container = proxy_container()
    pod = proxy_deployment()["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    # The config file at the path the container is told to read.
    args = container.get("args") or exec_form(last("CMD"))
    assert parser().parse_args(args).config == CONFIG_PATH
    config_dir, _, filename = CONFIG_PATH.rpartition("/")
    configmap_volume = mounts[config_dir]["configMap"]
    assert configmap_volume["name"] == find("ConfigMap")[0]["metadata"]["name"]
    assert any(i["key"] == "proxy.toml" and i["path"] == filename
               for i in configmap_volume["items"])
    # Every *_file secret in the ConfigMap's proxy.toml is a mounted key of the Secret.
    (secret,) = find("Secret", "azure-auth-proxy")
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    for dotted, path in secret_files(configmap_toml()).items():
        directory, _, name = path.rpartition("/")
        assert directory in mounts, f"{dotted}: {directory} is not mounted"
        volume = mounts[directory]["secret"]
        assert volume["secretName"] == secret["metadata"]["name"]
        assert name in keys and any(i["key"] == name and i["path"] == name
                                    for i in volume.get("items", [{"key": name, "path": name}]))
        assert volume["defaultMode"] == 0o440


def test_every_replica_signs_with_the_one_key_from_the_secret() -> None:
    """Without assertion_key_file each pod generates its own key, and an upstream that
    fetched /oauth2/jwks from one pod rejects the assertions of the others (issue 12).
    tests/test_helm_chart.py runs three such replicas and cross-verifies them."""
    identity = tomllib.loads(configmap_toml()).get("identity", {})
    assert identity.get("assertion_header") != "", "the assertion is on"
    path = identity.get("assertion_key_file", "")
    assert path.startswith("/run/secrets/azure-auth-proxy/"), path
    (secret,) = find("Secret", "azure-auth-proxy")
    assert path.rpartition("/")[2] in secret["stringData"]
    assert "openssl genpkey" in (K8S / "secret.yaml").read_text(), "say how to make the key"


def test_service_hpa_and_pdb_target_the_proxy() -> None:
    labels = pod_labels(proxy_deployment())
    services = [s for s in find("Service") if selects(s["spec"]["selector"], labels)]
    assert len(services) == 1
    (port,) = services[0]["spec"]["ports"]
    assert port_number(proxy_container(), port["targetPort"]) == PORT
    (hpa,) = find("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "azure-auth-proxy"
    assert hpa["spec"]["minReplicas"] == 3 <= hpa["spec"]["maxReplicas"]
    (pdb,) = find("PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 2
    assert selects(pdb["spec"]["selector"]["matchLabels"], labels)


def test_redis_session_store_runs_alongside() -> None:
    redis = [d for d in find("Deployment")
             if any(c["image"].startswith(("redis:", "valkey/valkey:"))
                    for c in d["spec"]["template"]["spec"]["containers"])]
    assert len(redis) == 1
    labels = pod_labels(redis[0])
    assert not selects(proxy_deployment()["spec"]["selector"]["matchLabels"], labels)
    services = [s for s in find("Service") if selects(s["spec"]["selector"], labels)]
    assert len(services) == 1 and services[0]["spec"]["ports"][0]["port"] == 6379
    (secret,) = find("Secret", "azure-auth-proxy")
    for container in redis[0]["spec"]["template"]["spec"]["containers"]:
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == secret["metadata"]["name"]
                assert ref["key"] in secret.get("stringData", {}) | secret.get("data", {})


# --- reverse-proxy examples (the /oauth2/auth forward-auth contract) --------------------------


def test_nginx_example_uses_auth_request() -> None:
    text = (DEPLOY / "nginx" / "azure-auth-proxy.conf").read_text()
    assert re.search(r"^\s*auth_request /oauth2/auth;", text, re.M)
    assert re.search(r"^\s*error_page 401 = /oauth2/start\?rd=\S+;", text, re.M)
    assert re.search(r"proxy_set_header X-Forwarded-Uri \$request_uri;", text)
    for header in FORWARD_AUTH_HEADERS:
        variable = "$upstream_http_" + header.lower().replace("-", "_")
        match = re.search(rf"auth_request_set \$(\w+)\s+{re.escape(variable)};", text)
        assert match, header
        assert re.search(rf"proxy_set_header {header}\s+\${match[1]};", text), header
    assert "callback" in text, "the OIDC redirect URI must reach the proxy"


def test_traefik_example_uses_forward_auth() -> None:
    data = yaml.safe_load((DEPLOY / "traefik" / "dynamic.yml").read_text())
    middlewares = data["http"]["middlewares"]
    (forward,) = [m["forwardAuth"] for m in middlewares.values() if "forwardAuth" in m]
    assert forward["address"].endswith("/oauth2/auth")
    assert set(forward["authResponseHeaders"]) == set(FORWARD_AUTH_HEADERS)
    # Traefik strips request headers matching this before copying the answer's (no traefik
    # binary here: Go's RE2 reads this pattern as Python does): every spelling goes.
    strip = re.compile(forward["authResponseHeadersRegex"])
    for header in FORWARD_AUTH_HEADERS:
        for spelling in (header, header.replace("-", "_"), header.lower().replace("-", "_", 1)):
            assert strip.search(spelling), spelling
    assert not strip.search("X-Forwarded-Authorization")
    (errors,) = [m["errors"] for m in middlewares.values() if "errors" in m]
    assert "401" in errors["status"] and errors["query"].startswith("/oauth2/start?rd=")
    assert any("/callback/" in r["rule"] for r in data["http"]["routers"].values())


def test_caddy_example_uses_forward_auth() -> None:
    # tests/flows/test_caddy_forward_auth.py runs this file in a real Caddy; this pins the
    # parts each of those tests relies on, so a failure there points here first.
    text = (DEPLOY / "caddy" / "Caddyfile").read_text()
    assert re.search(r"^\s*forward_auth \S+ \{", text, re.M)
    assert re.search(r"^\s*uri /oauth2/auth$", text, re.M)
    assert re.search(r"^\s*respond /oauth2/auth 404$", text, re.M)
    # Not copy_headers: Caddy 2.6 sets a header the answer lacks to the placeholder's text.
    assert not re.search(r"^\s*copy_headers", text, re.M)
    # The client's copies go in every spelling of X-Auth-Request-* ("_" reads as "-" in CGI).
    for a, b, c in itertools.product("-_", repeat=3):
        assert re.search(rf"^\s*request_header -X{a}Auth{b}Request{c}\*$", text, re.M)
    for header in FORWARD_AUTH_HEADERS:
        assert header.startswith("X-Auth-Request-"), header
        placeholder = re.escape(f"{{http.reverse_proxy.header.{header}}}")
        guard = re.search(rf"^\s*(@\w+) expression `{placeholder} != null`$", text, re.M)
        assert guard, header
        assert re.search(rf"^\s*request_header {guard[1]} {header} {placeholder}$",
                         text, re.M), header
    assert "/oauth2/start?rd=" in text and "/callback/" in text


def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file()
                  and p.name not in ("README.md", ".gitignore")
                  and not p.relative_to(DEPLOY).parts[0] == "secrets")


def test_every_example_starts_with_a_comment_header() -> None:
    for path in deploy_files():
        if path.suffix == ".json":  # JSON has no comments; its "description" says what it is
            assert json.loads(path.read_text())["description"]
            continue
        first = path.read_text().lstrip("-\n").splitlines()[0]
        # Helm templates are Go templates: a "#" line would be rendered, so they open with a
        # template comment instead.
        headers = ("#", "{{/*", "{{- /*") if path.parent.name == "templates" else ("#",)
        assert first.startswith(headers), f"{path.relative_to(ROOT)} needs a comment header"


def test_deploy_readme_describes_every_file() -> None:
    readme = (DEPLOY / "README.md").read_text()
    missing = [str(p.relative_to(DEPLOY)) for p in deploy_files()
               if str(p.relative_to(DEPLOY)) not in readme]
    assert not missing, f"deploy/README.md does not mention {missing}"
