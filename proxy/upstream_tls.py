"""TLS to an https:// upstream, per route: a private CA, a client certificate (mTLS), the
name to verify and send as SNI, and, only when set explicitly, no verification at all."""

from __future__ import annotations

import logging
import ssl

from .config import UpstreamConfig
from .errors import ConfigError

log = logging.getLogger("proxy.upstream")

TLS_KEYS = ("ca_file", "client_cert_file", "client_key_file", "server_name",
            "tls_insecure_skip_verify")


def tls_settings(u: UpstreamConfig) -> tuple[str, str, str, str, bool]:
    """What distinguishes one upstream's TLS from another's (routes sharing an origin share
    its pooled connections, so they must agree on it)."""
    return (u.ca_file, u.client_cert_file, u.client_key_file, u.server_name,
            u.tls_insecure_skip_verify)


def tls_context(u: UpstreamConfig, where: str) -> ssl.SSLContext | None:
    """The context for this upstream's connections; None for the pool's default (system
    trust, full verification). ConfigError (one line naming the key) if a file is unusable."""
    if not any(tls_settings(u)[:3]) and not u.tls_insecure_skip_verify:
        return None
    try:
        context = ssl.create_default_context(cafile=u.ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"{where}.ca_file: cannot load {u.ca_file!r} "
                           f"({type(exc).__name__}: {exc})"]) from None
    if u.client_cert_file:
        try:
            context.load_cert_chain(u.client_cert_file, u.client_key_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError([f"{where}.client_cert_file: cannot load the certificate and "
                               f"key ({type(exc).__name__})"]) from None  # no key material
    if u.tls_insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def warn_insecure(upstreams: tuple[UpstreamConfig, ...]) -> None:
    """Loudly, at every start and reload: verification switched off is a man-in-the-middle
    waiting to happen, and must never go unnoticed."""
    for i, u in enumerate(upstreams):
        if u.tls_insecure_skip_verify:
            log.warning("upstreams[%d].tls_insecure_skip_verify = true: the certificate of %s "
                        "is NOT verified; anyone on the path can read and change its traffic",
                        i, u.url)
