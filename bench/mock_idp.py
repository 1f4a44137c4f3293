"""The mock Entra ID for the benchmark, as its own process (loopback only).

Two app registrations: the demo client the proxy uses (loopback redirect URIs, any port) and
one for Apache + mod_auth_openidc with exactly the redirect URI its OIDCRedirectURI names.

    python -m bench.mock_idp --port 9100 --apache-redirect http://127.0.0.1:8081/callback/azuread
"""

from __future__ import annotations

import argparse
import asyncio

from proxy.mock_entra import MockClient, MockEntra, run_mock
from proxy.mock_entra.users import default_clients

APACHE_CLIENT_ID = "00000000-0000-0000-0000-0000000a9ac4"
APACHE_CLIENT_SECRET = "apache-mock-secret"


def build_mock(apache_redirects: list[str]) -> MockEntra:
    clients = default_clients()
    clients.append(MockClient(APACHE_CLIENT_ID, APACHE_CLIENT_SECRET,
                              redirect_uris=list(apache_redirects)))
    return MockEntra(clients=clients)


async def serve(port: int, apache_redirects: list[str]) -> None:
    runner = await run_mock(build_mock(apache_redirects), "127.0.0.1", port)
    print(f"mock Entra ID on http://127.0.0.1:{port}/", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--apache-redirect", action="append", default=[])
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port, args.apache_redirect))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
