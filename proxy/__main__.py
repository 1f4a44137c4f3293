"""Command line: run | demo | check-config | mock-entra. Exit 0 ok, 1 bad config, 2 bad usage."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence

from . import __version__, logs
from .config import Config
from .config_load import load, redacted
from .errors import ConfigError


def _config_path(path: str | None) -> str:
    return path or os.environ.get("PROXY_CONFIG") or "proxy.toml"


def _config(path: str | None) -> Config:
    from .app import check_files

    config = load(_config_path(path), os.environ)
    check_files(config)  # a bad certificate or key file fails check-config too
    return config


def _run(args: argparse.Namespace) -> int:
    from .workers import serve, supervise

    config = _config(args.config)
    logs.setup(config.server.log_format, config.server.log_level)
    print(f"azure-auth-proxy {__version__} listening on {config.server.listen} "
          f"for {config.server.public_url} ({config.server.workers} worker(s))",
          file=sys.stderr, flush=True)
    if config.server.workers > 1:
        return supervise(config, _config_path(args.config))
    serve(config, _config_path(args.config))
    return 0


def _check(args: argparse.Namespace) -> int:
    config = _config(args.config)
    print(json.dumps(redacted(config), indent=2))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    logs.setup("text", "info")
    try:
        asyncio.run(run_demo(args.port))
    except KeyboardInterrupt:
        pass
    return 0


def _mock(args: argparse.Namespace) -> int:
    from .mock_entra import MockEntra, run_mock

    async def serve() -> None:
        await run_mock(MockEntra(), args.host, args.port)
        print(f"mock Entra ID on http://{args.host}:{args.port}/", flush=True)
        await asyncio.Event().wait()

    logs.setup("text", "info")
    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="azure-auth-proxy", description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="serve (config: -c, else $PROXY_CONFIG, else ./proxy.toml)")
    run.add_argument("-c", "--config")
    run.set_defaults(func=_run)
    check = sub.add_parser("check-config", help="validate and print the effective config")
    check.add_argument("-c", "--config")
    check.set_defaults(func=_check)
    demo = sub.add_parser("demo", help="mock Entra ID + demo app + proxy on loopback")
    demo.add_argument("--port", type=int, default=4180)
    demo.set_defaults(func=_demo)
    mock = sub.add_parser("mock-entra", help="run the mock Entra ID alone (loopback only)")
    mock.add_argument("--port", type=int, default=9100)
    mock.add_argument("--host", default="127.0.0.1")
    mock.set_defaults(func=_mock)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f"azure-auth-proxy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
