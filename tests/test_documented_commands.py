"""Every command the docs tell a person to type still works: each `make X` names a target the
Makefile has (a dry run succeeds), and each `azure-auth-proxy ...` line parses with the real
command-line parser (subcommand and flags exist). Issue 12: docs say what the code does."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from proxy.__main__ import parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "deploy/README.md", ROOT / "bench/README.md",
        *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(
    r"^(?:[A-Z_][A-Z0-9_]*=\S+\s+)*((?:\S*/)?azure-auth-proxy\s.*|make\s+[a-z].*)$")


def documented() -> list[tuple[str, str]]:
    """(doc, command) for every command in an inline code span or a shell code block."""
    found: list[tuple[str, str]] = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        blocks = re.findall(r"```(?:sh|bash|shell|console)?\n(.*?)```", text, re.S)
        lines = re.findall(r"`([^`\n]+)`", text)
        for block in blocks:
            lines += block.replace("\\\n", " ").splitlines()
        for line in lines:
            line = line.split(" #", 1)[0].strip().removeprefix("$ ").strip()
            match = COMMAND.match(line)
            if match and " [" not in line:  # "[-c FILE] [flags]" is a synopsis, not a command
                found.append((doc.relative_to(ROOT).as_posix(), match.group(1)))
    return sorted(set(found))


COMMANDS = documented()


def test_the_docs_name_commands_at_all() -> None:  # the control: the scan finds them
    assert sum(c.startswith("make ") for _, c in COMMANDS) >= 10
    assert sum("azure-auth-proxy" in c for _, c in COMMANDS) >= 5


@pytest.mark.parametrize(("doc", "command"), [c for c in COMMANDS if c[1].startswith("make ")])
def test_make_targets_exist(doc: str, command: str) -> None:
    words = shlex.split(command)
    result = subprocess.run(["make", "-n", "--no-print-directory", *words[1:]], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{doc}: `{command}`: {result.stderr.strip()}"


@pytest.mark.parametrize(("doc", "command"),
                         [c for c in COMMANDS if "azure-auth-proxy" in c[1]])
def test_cli_lines_parse(doc: str, command: str) -> None:
    words = shlex.split(re.sub(r"<[^>]*>", "x", command))[1:]  # <placeholders> stand for a value
    try:
        parser().parse_args(words)
    except SystemExit as exc:  # --version / --help exit 0; a usage error exits 2
        assert exc.code == 0, f"{doc}: `{command}` does not parse"


def test_a_wrong_command_would_be_caught() -> None:
    with pytest.raises(SystemExit) as info:
        parser().parse_args(["chek-config", "-c", "proxy.toml"])
    assert info.value.code == 2
    assert subprocess.run(["make", "-n", "no-such-target"], cwd=ROOT, capture_output=True,
                          timeout=60).returncode != 0
