"""docs/configuration.md is generated from the config dataclasses and must not rot.

Every config field needs a description in scripts/gen_config_reference.py, the committed
reference must equal the generator's output, and what the reference claims about each key
(its environment variable, whether `<key>_file` works, what is not available yet) must be
what proxy/config_load.py and proxy/config_check.py actually do.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from proxy.config_load import from_dict
from proxy.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gen_config_reference.py"
REFERENCE = ROOT / "docs" / "configuration.md"
REGENERATE = "run: python scripts/gen_config_reference.py > docs/configuration.md"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_config_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


def minimal() -> dict[str, Any]:
    return {
        "server": {"public_url": "https://tools.example.com"},
        "azure": {"client_id": "00000000-0000-0000-0000-000000000001",
                  "client_secret": "s3cret",
                  "tenant_id": "11111111-1111-1111-1111-111111111111"},
        "session": {"secret": "x" * 32},
        "upstreams": [{"url": "http://127.0.0.1:8080"}],
    }


def problems_of(data: dict[str, Any], environ: dict[str, str] | None = None) -> list[str]:
    try:
        from_dict(data, environ or {})
    except ConfigError as exc:
        return exc.problems
    return []


def test_every_config_key_has_a_description() -> None:
    assert gen.problems() == [], "fix scripts/gen_config_reference.py: " + "; ".join(
        gen.problems())


def test_reference_matches_the_generator() -> None:
    assert REFERENCE.exists(), f"docs/configuration.md is missing; {REGENERATE}"
    assert REFERENCE.read_text(encoding="utf-8") == gen.render(), (
        f"docs/configuration.md is out of date; {REGENERATE}")


def test_every_key_appears_in_the_reference() -> None:
    text = gen.render()
    for key in gen.keys():
        assert f"| `{key.name}` |" in text, key.dotted
        if key.env:
            assert f"`{key.env}`" in text


def test_check_mode_passes_on_the_committed_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert gen.main(["--check"]) == 0, capsys.readouterr().err


def test_check_mode_fails_on_a_stale_reference(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(gen.render().replace("azp_session", "oauth2_proxy"), encoding="utf-8")
    monkeypatch.setattr(gen, "OUTPUT", stale)
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    assert gen.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().err


def test_a_missing_description_fails_loudly(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    descriptions = dict(gen.DESCRIPTIONS)
    del descriptions["session.store"]
    descriptions["session.no_such_key"] = "stale"
    monkeypatch.setattr(gen, "DESCRIPTIONS", descriptions)
    assert gen.main([]) == 1
    err = capsys.readouterr().err
    assert "session.store: no description" in err
    assert "session.no_such_key: described, but no such config field" in err


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert gen.main(["--frobnicate"]) == 2


def test_documented_environment_variables_are_accepted() -> None:
    for key in gen.keys():
        if not key.env:
            continue
        found = problems_of(minimal(), {key.env: "x"})
        # A type error names the key ("section.key: ..."); only an unknown variable names it.
        assert not [p for p in found if p.startswith(f"{key.env}:")], (key.env, found)


def test_an_unknown_variable_under_a_section_prefix_is_an_error() -> None:
    found = problems_of(minimal(), {"PROXY_SESSION_SECERT": "x"})
    assert any(p.startswith("PROXY_SESSION_SECERT:") for p in found)


def test_file_column_is_what_the_loader_does(tmp_path: Path) -> None:
    secret = tmp_path / "value"
    secret.write_text("redis://127.0.0.1:6379/0\n", encoding="utf-8")
    for key in gen.keys():
        if key.section.startswith("upstreams"):
            continue
        data = minimal()
        data[key.section] = {**data.get(key.section, {}), f"{key.name}_file": str(secret)}
        data[key.section].pop(key.name, None)
        unknown = [p for p in problems_of(data)
                   if p.startswith(f"{key.section}.{key.name}_file: unknown key")]
        assert bool(unknown) != key.accepts_file, (key.dotted, unknown)


def test_upstream_keys_have_no_environment_variable() -> None:
    for key in gen.keys():
        if key.section.startswith("upstreams"):
            assert key.env == ""
            assert not key.accepts_file


def test_probes_are_otherwise_valid_values() -> None:
    # A probe value must only ever be refused as "not in this release"; if config_check
    # starts refusing it for another reason, the probe (not the docs) needs fixing.
    base = gen.Config()
    baseline = set(gen.config_check.check(base))
    for dotted, value in gen.PROBES.items():
        section, name = dotted.split(".")
        changed = gen.dataclasses.replace(getattr(base, section), **{name: value})
        config = gen.dataclasses.replace(base, **{section: changed})
        new = set(gen.config_check.check(config)) - baseline
        assert all(gen.NOT_YET_MARKER in p for p in new if p.startswith(dotted)), new


def test_not_available_keys_are_refused_by_the_loader() -> None:
    for dotted in gen.not_available():
        section, name = dotted.split(".")
        data = minimal()
        data[section] = {**data.get(section, {}), name: gen.PROBES[dotted]}
        assert any(p.startswith(f"{dotted}:") for p in problems_of(data)), dotted


def test_easy_auth_migration_guide_tells_the_truth() -> None:
    guide = (ROOT / "docs" / "migrating-from-easy-auth.md").read_text(encoding="utf-8")
    says_unavailable = "not available in this release" in guide.lower()
    is_unavailable = "identity.easy_auth" in gen.not_available()
    assert says_unavailable == is_unavailable, (
        "docs/migrating-from-easy-auth.md must say whether [identity] easy_auth is available; "
        f"config_check currently {'refuses' if is_unavailable else 'accepts'} it")


@pytest.mark.parametrize(("seconds", "text"), [
    (0, '"0"'), (10, '"10s"'), (60, '"60s"'), (90, '"90s"'), (300, '"5m"'), (3600, '"1h"'),
    (28800, '"8h"'), (86400, '"1d"'), (0.5, '"0.5s"'),
])
def test_durations_render_as_proxy_toml_writes_them(seconds: float, text: str) -> None:
    assert gen._duration(seconds) == text
