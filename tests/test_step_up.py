"""Step-up parts (proxy/step_up.py) without a network: what a token proves, what a stored
session keeps, what a route asks, the login cookie's copy and the config checks. The flows
over real sockets are in tests/flows/test_step_up.py."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from proxy.config import SessionConfig
from proxy.identity import Identity
from proxy.session.login_state import LoginState, LoginStates
from proxy.step_up import LEEWAY, Proof, StepUp
from tests.test_config import names, problems_of, render

NOW = 1_800_000_000
C1 = StepUp(auth_context=("c1",))


def test_a_token_proves_its_contexts_mfa_and_auth_time() -> None:
    proof = Proof.from_token({"iat": NOW, "auth_time": NOW - 60, "acrs": ["c2", "c1"],
                              "amr": ["pwd", "mfa"]})
    assert proof == Proof(NOW - 60, NOW - 60, (("c1", NOW - 60), ("c2", NOW - 60)))


@pytest.mark.parametrize("acrs", [["C1"], ["c1 "], ["c0"], ["c100"], ["c01"], "c1", [1], [["c1"]],
                                  {"c1": 1}, ["urn:c1"]])
def test_hostile_or_malformed_acrs_prove_nothing(acrs: object) -> None:
    proof = Proof.from_token({"iat": NOW, "acrs": acrs})
    assert proof.acrs == () and C1.missing(proof, NOW) == "acrs"


@pytest.mark.parametrize("amr", ["mfa", ["MFA"], ["pwd"], None, {"mfa": 1}])
def test_only_an_amr_list_holding_mfa_proves_mfa(amr: object) -> None:
    assert Proof.from_token({"iat": NOW, "amr": amr}).mfa_time == 0
    assert StepUp(mfa=True).missing(Proof.from_token({"iat": NOW, "amr": amr}), NOW) == "amr"


def test_without_auth_time_an_mfa_is_proven_but_never_recent() -> None:
    # A token issued now (SSO, refresh) repeats the amr of an authentication of any age.
    proof = Proof.from_token({"iat": NOW, "amr": ["pwd", "mfa"], "acrs": ["c1"]})
    assert proof.mfa_time and proof.mfa_time < NOW - 10**6
    assert StepUp(mfa=True).missing(proof, NOW) is None
    assert C1.missing(proof, NOW) is None
    fresh_sign_in = Proof.from_token({"iat": NOW, "auth_time": NOW, "amr": ["pwd"]})
    assert StepUp(max_age=900, mfa=True).missing(proof.merge(fresh_sign_in), NOW) == "amr"


def test_auth_time_is_never_later_than_the_token_was_issued() -> None:
    # An auth_time in the future would pass every max_auth_age until then.
    proof = Proof.from_token({"iat": NOW - 3600, "auth_time": NOW + 10**6})
    assert proof.auth_time == NOW - 3600
    assert StepUp(max_age=900).missing(proof, NOW) == "auth_time"


@pytest.mark.parametrize("auth_time", [True, "1800000000", 1.8e9, -5, 0, None])
def test_an_auth_time_that_is_not_a_positive_integer_is_unknown(auth_time: object) -> None:
    proof = Proof.from_token({"iat": NOW, "auth_time": auth_time})
    assert proof.auth_time == 0 and StepUp(max_age=900).missing(proof, NOW) == "auth_time"


def test_max_auth_age_allows_the_clock_leeway_and_no_more() -> None:
    step = StepUp(max_age=900)
    assert step.missing(Proof(auth_time=NOW - 900 - LEEWAY), NOW) is None
    assert step.missing(Proof(auth_time=NOW - 900 - LEEWAY - 1), NOW) == "auth_time"
    assert step.missing(Proof(auth_time=NOW + LEEWAY + 1), NOW) == "auth_time"


def test_with_max_auth_age_an_old_mfa_does_not_count() -> None:
    step = StepUp(max_age=900, mfa=True)
    assert step.missing(Proof(auth_time=NOW, mfa_time=NOW - 7200), NOW) == "amr"
    assert step.missing(Proof(auth_time=NOW, mfa_time=NOW), NOW) is None
    assert StepUp(mfa=True).missing(Proof(mfa_time=NOW - 7200), NOW) is None


def test_every_context_is_needed() -> None:
    step = StepUp(auth_context=("c1", "c2"))
    assert step.missing(Proof(acrs=(("c1", NOW),)), NOW) == "acrs"
    assert step.missing(Proof(acrs=(("c1", NOW), ("c2", NOW))), NOW) is None


def test_merge_keeps_the_strongest_proof() -> None:
    old = Proof(NOW - 100, NOW - 100, (("c1", NOW - 100),))
    new = Proof(NOW, 0, (("c2", NOW),))
    assert old.merge(new) == Proof(NOW, NOW - 100, (("c1", NOW - 100), ("c2", NOW)))


def test_a_stored_session_keeps_its_proof_and_a_token_claim_cannot_forge_one() -> None:
    proof = Proof(NOW, NOW, (("c1", NOW),))
    stored = Identity(oid="o", tid="t", proof=proof).to_dict()
    assert Identity.from_stored(stored).proof == proof
    # Tokens are read by from_claims: a claim named like the stored form proves nothing.
    forged = {"oid": "o", "tid": "t", "proof": {"auth": NOW, "mfa": NOW, "acrs": {"c1": NOW}}}
    assert Identity.from_claims(forged).proof == Proof()
    assert "proof" not in Identity(oid="o", tid="t", proof=proof).public_dict()


@pytest.mark.parametrize("stored", [None, [], "x", {"auth": "1", "acrs": {"C1": NOW}},
                                    {"acrs": ["c1"]}, {"acrs": {"c1": True}}])
def test_a_malformed_stored_proof_proves_nothing(stored: object) -> None:
    assert C1.missing(Proof.from_stored(stored), NOW) == "acrs"


def test_the_authorize_parameters_and_the_challenge() -> None:
    step = StepUp(("c1", "c7"), 900, True)
    params = step.authorize_params()
    assert json.loads(params["claims"]) == {
        "id_token": {"acrs": {"essential": True, "values": ["c1", "c7"]}}}
    assert params["max_age"] == "900"
    header = step.challenge("acrs")
    assert 'error="insufficient_claims"' in header and "step-up required: acrs" in header
    match = re.search(r'claims="([A-Za-z0-9+/=]+)"', header)
    assert match is not None
    claims = json.loads(base64.b64decode(match.group(1)))
    assert claims["access_token"]["acrs"] == {"essential": True, "values": ["c1", "c7"]}
    assert StepUp(max_age=60).authorize_params() == {"max_age": "60"}


def test_the_login_cookie_carries_what_the_sign_in_asked_for() -> None:
    logins = LoginStates(SessionConfig(), app="t")
    login = LoginState.new("/secure", StepUp(("c1",), 900, True))
    cookie = logins.start(login, {})[-1]
    back = logins.finish(login.state, {cookie.name: cookie.value})
    assert back.step_up == StepUp(("c1",), 900, True)
    plain = LoginState.new("/")
    cookie = logins.start(plain, {})[-1]
    assert not logins.finish(plain.state, {cookie.name: cookie.value}).step_up


@pytest.mark.parametrize("value", [None, [], [["c1"], 900], [["x1"], -5, 1], "c1"])
def test_a_malformed_login_step_up_asks_nothing_unvalidated(value: object) -> None:
    step = StepUp.from_login(value)
    assert all(re.fullmatch(r"c[1-9][0-9]?", c) for c in step.auth_context)
    assert step.max_age >= 0


@pytest.mark.parametrize(("literal", "key"), [
    ('auth_context = ["C1"]', "upstreams[0].access.auth_context"),
    ('auth_context = ["c100"]', "upstreams[0].access.auth_context"),
    ('max_auth_age = "10s"', "upstreams[0].access.max_auth_age"),
])
def test_bad_step_up_config_is_named(tmp_path: Path, literal: str, key: str) -> None:
    text = render() + f"\n[upstreams.access]\n{literal}\n"
    assert names(problems_of(tmp_path, text), key)


def test_global_access_step_up_is_checked_too(tmp_path: Path) -> None:
    text = render({"access": {"auth_context": '["ca"]'}})
    assert names(problems_of(tmp_path, text), "access.auth_context")
