"""The release artefacts: `make dist`'s sdist and wheel, the one version source, the image labels.

The sdist and wheel are built for real (`python -m build`, which fetches the build backend
from PyPI), checked with `twine check --strict`, and the wheel is installed with its
dependencies from PyPI into an empty virtualenv, where `azure-auth-proxy --version` must
print the version. The container image itself is built and run by scripts/image-smoke.sh
(`make image-smoke`, a CI step); here the Dockerfile's labels are checked statically.
"""

from __future__ import annotations

import email.parser
import os
import re
import subprocess
import sys
import tarfile
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

import proxy
from tests.test_deploy import final_stage

ROOT = Path(__file__).resolve().parents[1]
VERSION = proxy.__version__
NAME = "azure_auth_proxy"
# Building (~1 min) and installing with dependencies from PyPI (~1 min here) take longer
# than the suite's 120 s per-test default allows on a loaded machine.
pytestmark = pytest.mark.timeout(600)


def run(*args: str | Path, cwd: Path = ROOT, timeout: float = 600) -> str:
    # Without PYTHONPATH: what runs must find the installed package, not this checkout's.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout}\n" \
                                   f"{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, ROOT)
    built = sorted(out.iterdir())
    assert [p.name for p in built] == [f"{NAME}-{VERSION}-py3-none-any.whl",
                                       f"{NAME}-{VERSION}.tar.gz"], built
    return {"wheel": built[0], "sdist": built[1]}


def wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as z:
        text = z.read(f"{NAME}-{VERSION}.dist-info/METADATA").decode()
    return email.parser.Parser().parsestr(text)


def test_twine_check_is_clean(dist: dict[str, Path]) -> None:
    out = run(sys.executable, "-m", "twine", "check", "--strict", dist["sdist"], dist["wheel"])
    assert out.count("PASSED") == 2, out


def test_metadata_has_the_version_and_an_spdx_licence(dist: dict[str, Path]) -> None:
    meta = wheel_metadata(dist["wheel"])
    assert meta["Name"] == "azure-auth-proxy"
    assert meta["Version"] == VERSION
    assert meta["License-Expression"] == "MIT"
    assert meta["License"] is None  # the deprecated free-text field is gone
    assert meta.get_all("License-File") == ["LICENSE"]
    assert meta["Requires-Python"] == ">=3.11"


def test_the_licence_and_typing_marker_ship(dist: dict[str, Path]) -> None:
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License")
    with zipfile.ZipFile(dist["wheel"]) as z:
        names = set(z.namelist())
        assert z.read(f"{NAME}-{VERSION}.dist-info/licenses/LICENSE").decode() == licence
    assert "proxy/py.typed" in names and "proxy/mock_entra/__init__.py" in names
    assert not any(n.startswith("tests/") for n in names), "tests are not part of the wheel"
    with tarfile.open(dist["sdist"]) as t:
        members = set(t.getnames())
    top = f"{NAME}-{VERSION}"
    assert {f"{top}/LICENSE", f"{top}/README.md", f"{top}/pyproject.toml",
            f"{top}/proxy/__init__.py"} <= members


def test_wheel_installs_into_an_empty_venv_and_prints_its_version(
        dist: dict[str, Path], tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    # No pip inside (Debian may lack ensurepip): this interpreter's pip installs into it.
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    assert run(python, "-c", "import sys; print(sys.prefix != sys.base_prefix)") == "True\n"
    empty = run(python, "-c", "import importlib.util as u; print(u.find_spec('aiohttp'))",
                cwd=tmp_path)
    assert empty == "None\n", "the new venv must start without the dependencies"
    # Dependencies from PyPI, as a user's `pip install` gets them.
    run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet",
        "--disable-pip-version-check", dist["wheel"], cwd=tmp_path)
    run(sys.executable, "-m", "pip", "--python", python, "check", cwd=tmp_path)

    version = run(env_dir / "bin" / "azure-auth-proxy", "--version", cwd=tmp_path)
    assert version == f"azure-auth-proxy {VERSION}\n"
    where = run(python, "-c", "import importlib.metadata as m, proxy; "
                              "print(proxy.__file__); print(m.version('azure-auth-proxy'))",
                cwd=tmp_path).splitlines()
    assert Path(where[0]).is_relative_to(env_dir), where  # the installed copy, not this tree
    assert where[1] == VERSION
    # The installed command works beyond --version: check-config reads a config.
    config = tmp_path / "proxy.toml"
    config.write_text(
        '[server]\npublic_url = "https://tools.example.com"\n'
        '[azure]\nclient_id = "c0ffee00-1234-4abc-8def-0123456789ab"\n'
        'tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47"\n'
        'client_secret = "dist-test-client-secret"\n'
        '[session]\nsecret = "dist-test-session-secret-0123456789abcdef"\n'
        '[[upstreams]]\nurl = "http://127.0.0.1:8080"\n')
    checked = run(env_dir / "bin" / "azure-auth-proxy", "check-config", "-c", config,
                  cwd=tmp_path)
    assert "tools.example.com" in checked and "dist-test-client-secret" not in checked


# --- one version source -------------------------------------------------------------------


def test_the_version_has_one_source() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"], "pyproject.toml must not repeat the version"
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "proxy.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?", VERSION), VERSION
    # No other file of the package spells the version out.
    for path in (ROOT / "proxy").rglob("*.py"):
        if path.name != "__init__.py" or path.parent != ROOT / "proxy":
            assert f'"{VERSION}"' not in path.read_text(), path


def test_the_changelog_has_the_current_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "https://keepachangelog.com/en/1.1.0/" in text
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, re.M)
    assert headings[0] == ("Unreleased", "")
    assert headings[1][0] == VERSION and headings[1][1], headings
    # Every version heading has a link reference at the bottom.
    for name, _ in headings:
        assert re.search(rf"^\[{re.escape(name)}\]: \S+$", text, re.M), name


# --- container image labels (the build itself: scripts/image-smoke.sh) -------------------


def oci_labels() -> dict[str, str]:
    labels: dict[str, str] = {}
    for word, rest in final_stage():
        if word == "LABEL":
            for key, value in re.findall(r'(\S+?)="([^"]*)"', rest):
                labels[key] = value
    return labels


def test_image_has_the_oci_labels() -> None:
    labels = oci_labels()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert labels["org.opencontainers.image.licenses"] == project["license"] == "MIT"
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.description"]
    assert labels["org.opencontainers.image.title"] == project["name"]
    # The version is the VERSION build argument, never a literal that could drift...
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert ("ARG", 'VERSION=""') in final_stage()
    # ...and the wheel installed is the one of exactly that version, when it is given.
    (install,) = [rest for w, rest in final_stage() if w == "RUN" and "pip install" in rest]
    assert "/wheels/azure_auth_proxy-${VERSION:-*}-py3-none-any.whl" in install


def test_make_image_passes_the_package_version() -> None:
    out = run("make", "-n", "image", "CONTAINER=docker")
    assert f"docker build --build-arg VERSION={VERSION} -t azure-auth-proxy:{VERSION}" in out
