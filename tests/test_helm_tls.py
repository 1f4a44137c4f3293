"""The Helm chart's optional TLS on the pods (tls.secretName), rendered by a real helm."""

from __future__ import annotations

import tomllib

from tests.test_helm_chart import container, helm_template, pod_spec, proxy_toml, render


def test_a_tls_secret_is_mounted_whole_and_served_with_https_probes() -> None:
    docs = render("--set", "tls.secretName=proxy-tls")
    server = tomllib.loads(proxy_toml(docs))["server"]
    assert (server["tls_cert_file"], server["tls_key_file"]) == ("/run/tls/tls.crt",
                                                                "/run/tls/tls.key")
    volumes = {v["name"]: v for v in pod_spec(docs)["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "proxy-tls"
    (mount,) = [m for m in container(docs)["volumeMounts"] if m["name"] == "tls"]
    assert mount["mountPath"] == "/run/tls" and "subPath" not in mount  # renewals arrive
    for probe in ("readinessProbe", "livenessProbe"):
        assert container(docs)[probe]["httpGet"]["scheme"] == "HTTPS"
    plain = render()
    assert "tls_cert_file" not in tomllib.loads(proxy_toml(plain))["server"]
    assert "scheme" not in container(plain)["livenessProbe"]["httpGet"]
    done = helm_template("--set", "tls.secretName=proxy-tls",
                         "--set", "config.server.tls_key_file=/elsewhere.key")
    assert done.returncode != 0
    assert "config.server.tls_key_file is set by the chart (see tls.secretName)" in done.stderr
