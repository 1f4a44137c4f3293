"""check-config for pass_authorization_header and [azure] upstream_scopes: one line naming
the key for each problem."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.config_load import from_dict
from tests.test_config import base_dict, dict_problems

KEY = "upstreams[0].pass_authorization_header"
SCOPE = "api://grafana.contoso.example/.default"


def config(store: str = "memory", upstream: list[str] | None = None,
           **azure: Any) -> dict[str, Any]:
    data = base_dict()
    data["session"]["store"] = store
    data["azure"] |= {"upstream_scopes": [SCOPE] if upstream is None else upstream, **azure}
    data["upstreams"][0]["pass_authorization_header"] = True
    return data


def test_a_valid_setup_loads() -> None:
    loaded = from_dict(config())
    assert loaded.upstreams[0].pass_authorization_header
    assert loaded.azure.upstream_scopes == (SCOPE,)
    assert from_dict(config(store="redis")).session.store == "redis"


def test_the_cookie_store_is_refused_in_one_line_naming_the_key() -> None:
    lines = [p for p in dict_problems(config(store="cookie")) if p.startswith(KEY)]
    assert len(lines) == 1 and "server-side session store" in lines[0], lines


@pytest.mark.parametrize(("data", "key", "words"), [
    (config(upstream=[]), KEY, "needs azure.upstream_scopes"),
    (config(scopes=["openid", "profile"]), KEY, "offline_access"),
    (config(upstream=["User.Read"]), "azure.upstream_scopes", "must name its API"),
    (config(upstream=["openid"]), "azure.upstream_scopes", "sign-in scope"),
    (config(upstream=[SCOPE, "https://graph.microsoft.com/User.Read"]),
     "azure.upstream_scopes", "2 APIs"),
    (config(upstream=["api://x/ a"]), "azure.upstream_scopes", "must name its API"),
], ids=["no-scopes", "no-offline-access", "no-resource", "oidc", "two-apis", "space"])
def test_problems_name_their_key(data: dict[str, Any], key: str, words: str) -> None:
    lines = [p for p in dict_problems(data) if p.startswith(key + ":")]
    assert len(lines) == 1 and words in lines[0], lines
