"""header_budget.py's pieces, and the [identity] keys that set it (check-config lines)."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.config_load import from_dict
from proxy.easy_auth import PRINCIPAL, principal_headers
from proxy.errors import ConfigError
from proxy.header_budget import (
    MAX_LINES,
    GroupsFilter,
    fit_identity_headers,
    line_bytes,
    split_list,
)
from proxy.headers import clean_value
from proxy.identity import Identity, join_list
from tests.test_config import base_dict

GUIDS = tuple(f"{n:08x}-0000-4000-8000-000000000000" for n in range(500))
HEADERS = {"X-User": "preferred_username", "X-Groups": "groups", "X-Roles": "roles"}


def parse(values: list[str]) -> list[str]:
    """What an app reads from repeated lines a server joined with ", " (RFC 9110 §5.3)."""
    return [unquote(item.strip()) for item in ", ".join(values).split(",")]


@pytest.mark.parametrize("limit", [60, 200, 4096])
def test_split_lines_stay_within_the_limit_and_read_back(limit: int) -> None:
    items = [*GUIDS[:50], "Sales, EMEA", " padded ", "100%", "\tx"]
    values = split_list("X-Groups", items, limit)
    assert values is not None
    assert all(line_bytes("X-Groups", v) <= limit for v in values)
    assert parse(values) == items
    assert (len(values) == 1) == (limit == 4096)


def test_join_list_encodes_edge_spaces_only() -> None:
    assert join_list((" a b ", "c")) == "%20a b%20,c"
    assert join_list(("  ",)) == "%20%20"
    assert parse([join_list(("a", " b", "c, d "))]) == ["a", " b", "c, d "]


def test_an_item_longer_than_a_line_cannot_be_split() -> None:
    assert split_list("X-Groups", ["x" * 100], 100) is None
    assert split_list("X-Groups", ["x" * 90], 100) == ["x" * 90]


def fit(identity: Identity, limit: int = 4096, budget: int = 16384) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in fit_identity_headers(identity, HEADERS, limit=limit,
                                            budget=budget).pairs:
        out.setdefault(name, []).append(value)
    return out


def test_a_list_over_budget_is_left_out_and_marked() -> None:
    user = Identity(oid="o", tid="t", preferred_username="u@x", groups=GUIDS, roles=("r",))
    sent = fit(user)
    assert sent["X-Groups-Overflow"] == ["true"] and "X-Groups" not in sent
    assert sent["X-User"] == ["u@x"] and sent["X-Roles"] == ["r"]
    assert sent["X-Forwarded-Principal-Type"] == ["user"]
    fits = fit(user, budget=65536)
    assert parse(fits["X-Groups"]) == list(GUIDS) and "X-Groups-Overflow" not in fits


def test_no_more_lines_than_max_lines() -> None:
    user = Identity(oid="o", tid="t", groups=GUIDS[:100])
    sent = fit(user, limit=100, budget=65536)  # 2 GUIDs a line: 50 lines
    assert "X-Groups" not in sent and sent["X-Groups-Overflow"] == ["true"]
    assert len(fit(Identity(oid="o", tid="t", groups=GUIDS[:60]), 100, 65536)["X-Groups"]) \
        == 30 < MAX_LINES


def test_a_scalar_too_long_for_a_line_is_left_out_and_marked() -> None:
    sent = fit(Identity(oid="o", tid="t", preferred_username="u" * 5000))
    assert "X-User" not in sent and sent["X-User-Overflow"] == ["true"]


def test_groups_filter_entries() -> None:
    groups = ("AAA-1", "bbb-2", "app-x", "other")
    assert GroupsFilter.from_config((), ()).apply(groups) == groups
    assert GroupsFilter.from_config(("aaa-1",), ()).apply(groups) == ("AAA-1",)
    assert GroupsFilter.from_config(("re:^app-",), ()).apply(groups) == ("app-x",)
    assert GroupsFilter.from_config(("policy",), ("BBB-2",)).apply(groups) == ("bbb-2",)
    assert GroupsFilter.from_config(("policy",), ()).apply(groups) == ()


def test_a_principal_too_long_goes_without_groups_then_not_at_all() -> None:
    user = Identity(oid="o", tid="t", email="u@x", groups=GUIDS[:150])
    value = dict(principal_headers(user, None, with_tokens=False, max_line=4096))[PRINCIPAL]
    claims = json.loads(base64.b64decode(value))["claims"]
    assert {"typ": "_claim_names", "val": '{"groups":"src1"}'} in claims
    assert not [c for c in claims if c["typ"] == "groups"]
    assert line_bytes(PRINCIPAL, value) <= 4096
    huge = Identity(oid="o", tid="t", email="u@x", name="n" * 5000)
    assert PRINCIPAL not in dict(principal_headers(huge, None, with_tokens=False,
                                                   max_line=4096))


def problems(identity: dict[str, Any], **extra: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        from_dict({**base_dict(), "identity": identity, **extra})
    return info.value.problems


@pytest.mark.parametrize(("identity", "key"), [
    ({"max_header_bytes": 512}, "identity.max_header_bytes"),
    ({"max_header_bytes": 9000}, "identity.max_header_bytes"),
    ({"max_total_header_bytes": 2048}, "identity.max_total_header_bytes"),
    ({"max_total_header_bytes": 100_000}, "identity.max_total_header_bytes"),
    ({"groups_filter": ["re:("]}, "identity.groups_filter"),
    ({"groups_filter": [" padded"]}, "identity.groups_filter"),
    ({"groups_filter": ["policy"]}, "identity.groups_filter"),  # no policy names a group
    ({"groups_filter": "policy"}, "identity.groups_filter"),  # a list, not a string
])
def test_bad_budget_keys_are_named(identity: dict[str, Any], key: str) -> None:
    found = problems(identity)
    assert len(found) == 1 and found[0].startswith(f"{key}:"), found


def test_good_budget_keys_load() -> None:
    config = from_dict({**base_dict(), "access": {"groups": [GUIDS[0]]}, "identity": {
        "max_header_bytes": 6144, "max_total_header_bytes": 24576,
        "groups_filter": ["policy", "re:^app-", GUIDS[1]]}})
    assert config.identity.groups_filter == ("policy", "re:^app-", GUIDS[1])
    assert config.policy_groups == {GUIDS[0]}


def test_split_values_cannot_inject_lines() -> None:
    evil = Identity(oid="o", tid="t", name="Eve\r\nX-User: admin" + "e" * 200,
                    groups=tuple(f"g{n}\r\nX-User: admin" for n in range(40)))
    pairs = fit_identity_headers(evil, {"X-Name": "name", "X-Groups": "groups"}, limit=120,
                                 budget=16384).pairs
    assert len([n for n, _ in pairs if n == "X-Groups"]) > 1  # the split path
    assert not [v for _, v in pairs if "\r" in v or "\n" in v]
    assert parse([v for n, v in pairs if n == "X-Groups"])[0] == "g0X-User: admin"


# Printable items (identity values are cleaned of control characters before this).
ITEM = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)


@settings(max_examples=300, deadline=None, database=None)
@given(items=st.lists(ITEM, min_size=1, max_size=60), limit=st.integers(60, 600))
def test_any_list_splits_within_the_limit_and_reads_back(items: list[str], limit: int) -> None:
    values = split_list("X-Groups", items, limit)
    if values is None:  # only when one item cannot fit a line alone
        assert any(line_bytes("X-Groups", join_list((i,))) > limit for i in items)
        return
    assert all(line_bytes("X-Groups", v) <= limit for v in values)
    assert parse(values) == items


# Any text, control characters included: what a group's display name may hold.
RAW = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)


@settings(max_examples=300, deadline=None, database=None)
@given(groups=st.lists(RAW, min_size=1, max_size=8), limit=st.sampled_from([60, 4096]))
def test_a_control_character_cannot_change_what_a_group_reads_back_as(
        groups: list[str], limit: int) -> None:
    # The one-line path (4096) cleaned after encoding: "Admins \x00" read back as "Admins".
    cleaned = [g for g in (clean_value(g) for g in groups) if g]
    sent = fit(Identity(oid="o", tid="t", groups=tuple(groups)), limit=limit)
    if "X-Groups-Overflow" in sent:
        return
    assert parse(sent.get("X-Groups", [])) == (cleaned or [""])


def test_an_edge_space_behind_a_control_character_stays_encoded() -> None:
    sent = fit(Identity(oid="o", tid="t", groups=("Admins \x00", "\x00 Admins", "\t")))
    assert sent["X-Groups"] == ["Admins%20,%20Admins"]
    assert parse(sent["X-Groups"]) == ["Admins ", " Admins"]
