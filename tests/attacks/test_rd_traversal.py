"""Path traversal in return targets (rd, post_login_redirect_uri, post_logout_redirect_uri):
whatever the target, the browser ends on the proxy's origin at a path with no dot segments
in any decoding."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit

from yarl import URL

from tests.attacks.conftest import ShieldFactory
from tests.attacks.harness import Upstream, tally
from tests.conftest import ALICE, Browsers, Stack
from tests.flows.test_login_security import at_idp, fetch

FAMILY = "rd-traversal"
TRAVERSALS = [
    "/../../etc/passwd", "/x/../../admin", "/%2e%2e/admin", "/%2E%2E/%2E%2E/admin",
    "/x/..%2f..%2fadmin", "/x/%2e%2e%2f%2e%2e%2fadmin", "/..;/admin", "/x/..;/..;/admin",
    "/..\\admin", "/x/..%5c..%5cadmin", "/%252e%252e/admin", "/%25252e%25252e/admin",
    "/.%2e/admin", "/%2e./admin", "/./../admin", "/x/./../../admin", "/..%00/admin",
    "/..%0d%0a/admin", "/x/../..//evil.example", "/..//evil.example", "/../\\evil.example",
    "/%2e%2e%2f%2e%2e%2fevil.example", "..", "../admin", "./admin", ".%2e/admin",
    "/x%2f..%2f..%2fadmin", "/x?next=/../../admin",
]
DOTS = re.compile(r"(^|[/\\])\.\.?([/\\]|$)")


def decodings(value: str) -> list[str]:
    forms = [value]
    while len(forms) < 8 and unquote(forms[-1]) != forms[-1]:
        forms.append(unquote(forms[-1]))
    return forms


def lands_safely(stack: Stack, location: str) -> bool:
    """On the proxy's origin, a single leading slash, no dot segment in any decoding."""
    if not location:
        return True
    parts = urlsplit(location)
    if parts.scheme or parts.netloc:
        own = urlsplit(stack.url)
        if (parts.scheme, parts.netloc) != (own.scheme, own.netloc):
            return False
    path = parts.path or "/"
    return path.startswith("/") and not path.startswith("//") and not any(
        DOTS.search(form) or "\\" in form for form in decodings(path))


async def test_post_login_target_never_traverses(shield: ShieldFactory, upstream: Upstream,
                                                 browsers: Browsers) -> None:
    stack = await shield()
    bad = []
    for target in TRAVERSALS:
        browser = browsers()
        hop = await fetch(browser, URL(f"{stack.url}/oauth2/start?rd={quote(target, safe='')}",
                                       encoded=True))
        if hop.status != 302:
            tally(FAMILY, refused=400 <= hop.status < 500, crashed=hop.status >= 500)
            if not 400 <= hop.status < 500:
                bad.append(f"{target!r}: start {hop.status}")
            continue
        done = await fetch(browser, await at_idp(stack, browser, hop.location, ALICE))
        ok = done.status == 302 and lands_safely(stack, done.location)
        tally(FAMILY, refused=ok, crashed=done.status >= 500)
        if not ok:
            bad.append(f"{target!r}: callback {done.status} -> {done.location!r}")
    assert bad == []


async def test_sign_out_targets_never_traverse(shield: ShieldFactory, upstream: Upstream,
                                               browsers: Browsers) -> None:
    stack = await shield({"identity": {"easy_auth": True}})
    browser = browsers()
    bad = []
    for target in TRAVERSALS:
        for path, param in (("/oauth2/sign_out", "rd"), ("/.auth/logout",
                                                         "post_logout_redirect_uri")):
            url = URL(f"{stack.url}{path}?{param}={quote(target, safe='')}", encoded=True)
            hop = await fetch(browser, url)
            ok = hop.status < 500 and lands_safely(stack, hop.location)
            tally(FAMILY, refused=ok, crashed=hop.status >= 500)
            if not ok:
                bad.append(f"{path} {target!r}: {hop.status} -> {hop.location!r}")
        hop = await fetch(browser, stack.url + "/oauth2/sign_out", method="POST",
                          data={"rd": target})
        ok = hop.status < 500 and lands_safely(stack, hop.location)
        tally(FAMILY, refused=ok, crashed=hop.status >= 500)
        if not ok:
            bad.append(f"POST sign_out {target!r}: {hop.status} -> {hop.location!r}")
    assert bad == []
    assert upstream.seen == []


async def test_easy_auth_login_target_never_traverses(shield: ShieldFactory,
                                                      browsers: Browsers) -> None:
    stack = await shield({"identity": {"easy_auth": True}})
    bad = []
    for target in TRAVERSALS[:12]:
        browser = browsers()
        url = URL(f"{stack.url}/.auth/login/aad?post_login_redirect_uri="
                  f"{quote(target, safe='')}", encoded=True)
        hop = await fetch(browser, url)
        assert hop.status == 302, hop.status
        done = await fetch(browser, await at_idp(stack, browser, hop.location, ALICE))
        ok = done.status == 302 and lands_safely(stack, done.location)
        tally(FAMILY, refused=ok, crashed=done.status >= 500)
        if not ok:
            bad.append(f"{target!r}: -> {done.location!r}")
    assert bad == []


async def test_safe_targets_are_kept(shield: ShieldFactory, browsers: Browsers) -> None:
    # The control: the checks above are not passing because every target becomes "/".
    stack = await shield()
    browser = browsers()
    hop = await fetch(browser, URL(f"{stack.url}/oauth2/start?rd={quote('/app/x?y=1', safe='')}",
                                   encoded=True))
    done = await fetch(browser, await at_idp(stack, browser, hop.location, ALICE))
    assert done.location == "/app/x?y=1"
    assert lands_safely(stack, "/app/x?y=1")
    assert not lands_safely(stack, "/x/%2e%2e/admin") and not lands_safely(stack, "//evil")
