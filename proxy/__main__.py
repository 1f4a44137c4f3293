"""Command line: run | demo | check-config | doctor | mock-entra | sessions.

Exit 0 ok, 1 bad config (doctor: a check failed; sessions: a store that cannot be
administered), 2 bad usage."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__, logs
from .config_load import ConfigSource, Loaded, redacted
from .errors import ConfigError

log = logging.getLogger("proxy")

# Flags for the settings people pass most; each overrides env and file (see `source`).
FLAGS = {
    "--listen": ("server.listen", "host:port to listen on"),
    "--public-url": ("server.public_url", "external origin, e.g. https://tools.example.com"),
    "--client-id": ("azure.client_id", "the app registration's Application (client) ID"),
    "--tenant-id": ("azure.tenant_id", "tenant GUID, domain, organizations or common"),
    "--cloud-instance": ("azure.cloud_instance", "Entra login origin of the cloud"),
    "--log-format": ("server.log_format", "text or json"),
}


def _upstream(text: str) -> dict[str, str]:
    """--upstream URL, or PATH=URL to serve URL under the path prefix PATH."""
    path, sep, url = text.partition("=")
    if sep and path.startswith("/"):
        return {"path": path, "url": url}
    return {"url": text}


def source(args: argparse.Namespace) -> ConfigSource:
    """The file (-c, else $PROXY_CONFIG, else ./proxy.toml, which may then be missing) and
    the flags given; workers and SIGHUP reloads re-read it with the same flags."""
    named = args.config or os.environ.get("PROXY_CONFIG")
    flags = [(key, value, flag) for flag, (key, _) in FLAGS.items()
             if (value := getattr(args, flag[2:].replace("-", "_"))) is not None]
    if args.upstream:
        upstreams = json.dumps([_upstream(u) for u in args.upstream])
        flags.append(("upstreams", upstreams, "--upstream"))
    return ConfigSource(named or "proxy.toml", required=bool(named), flags=tuple(flags))


def _config(args: argparse.Namespace, *, files: bool = True, report: bool = True) -> Loaded:
    loaded = source(args).read(os.environ)
    if files:  # a bad certificate or key file fails check-config too
        from .app import check_files

        check_files(loaded.config)
    for warning in loaded.warnings if report else ():
        print(f"config warning: {warning}", file=sys.stderr)
    return loaded


def _run(args: argparse.Namespace) -> int:
    # With several workers this process only supervises: it must not import the app (the
    # memory of every module the workers need). Each worker checks the files and reports a
    # bad one as its one line, which ends the command.
    loaded = _config(args, files=False, report=False)
    config = loaded.config
    supervised = config.server.workers > 1
    if supervised:
        from .supervisor import probe_listen

        listens = [(config.server.listen, *config.server.host_port)]
        if redirect := config.server.http_redirect_listen:
            r_host, _, r_port = redirect.rpartition(":")
            listens.append((redirect, r_host.strip("[]"), int(r_port)))
        for listen, host, port in listens:
            if problem := probe_listen(listen, host, port):
                print(f"azure-auth-proxy: {problem}", file=sys.stderr)  # before any worker
                return 1
    else:
        from .app import check_files

        check_files(config)
    # From here on every line on stderr is a log event (one JSON object each in json).
    logs.setup(config.server.log_format, config.server.log_level)
    log.info("started", extra=logs.fields(
        version=__version__, listen=config.server.listen, public_url=config.server.public_url,
        workers=config.server.workers))
    for warning in loaded.warnings:
        log.warning("config warning: %s", warning)
    if supervised:
        from .supervisor import supervise

        return supervise(config, source(args))
    from .workers import serve

    serve(config, source(args))
    return 0


def _check(args: argparse.Namespace) -> int:
    loaded = _config(args)
    # The effective config, plus "sources": where each value came from (default, file, env
    # VAR, flag --x). Secrets are masked; their sources are names, never values.
    print(json.dumps({**redacted(loaded.config), "sources": dict(loaded.sources)}, indent=2))
    return 0


def _doctor(args: argparse.Namespace) -> int:
    import asyncio

    from .doctor import passed, report, run_checks

    checks = asyncio.run(run_checks(_config(args).config, tenant=args.tenant or ""))
    print(report(checks, args.json))
    return 0 if passed(checks) else 1


def _sessions(args: argparse.Namespace) -> int:
    from .sessions_cli import run

    if args.user == "" or args.oid == "":  # "" would mean every session
        print("sessions: --user and --oid need a value", file=sys.stderr)
        return 2
    loaded = _config(args, files=False, report=False)
    return run(loaded.config, args.action, args.user or "", args.oid or "",
               bool(getattr(args, "all", False)), args.json)


def _demo(args: argparse.Namespace) -> int:
    import asyncio

    from .demo import run_demo

    logs.setup("text", "info")
    try:
        asyncio.run(run_demo(args.port))
    except KeyboardInterrupt:
        pass
    return 0


def _mock(args: argparse.Namespace) -> int:
    import asyncio

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
    run.set_defaults(func=_run)
    check = sub.add_parser("check-config", help="validate and print the effective config "
                           "and where each value came from")
    check.set_defaults(func=_check)
    doctor = sub.add_parser("doctor", help="check the tenant setup from the outside: "
                            "discovery, keys, clock, credential, redirect URI, Graph")
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    doctor.add_argument("--tenant", metavar="GUID", help="tenant to probe the credential in "
                        "when tenant_id is common/organizations (the app's home tenant)")
    doctor.set_defaults(func=_doctor)
    for command in (run, check, doctor):
        _config_options(command)
    _sessions_parser(sub)
    demo = sub.add_parser("demo", help="mock Entra ID + demo app + proxy on loopback")
    demo.add_argument("--port", type=int, default=4180)
    demo.set_defaults(func=_demo)
    mock = sub.add_parser("mock-entra", help="run the mock Entra ID alone (loopback only)")
    mock.add_argument("--port", type=int, default=9100)
    mock.add_argument("--host", default="127.0.0.1")
    mock.set_defaults(func=_mock)
    return p


def _sessions_parser(sub: Any) -> None:
    sessions = sub.add_parser("sessions", help="list or revoke server-side sessions "
                              "(offboarding; [session] store = \"redis\")")
    actions = sessions.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="sessions of a user, of an oid, or all")
    revoke = actions.add_parser("revoke", help="end the sessions of a user, of an oid, or all, "
                                "on every replica")
    for action in (listing, revoke):
        _config_options(action)
        action.add_argument("--json", action="store_true", help="print JSON")
        which = action.add_mutually_exclusive_group(required=action is revoke)
        which.add_argument("--user", metavar="UPN", help="preferred_username (else email), "
                           "any case")
        which.add_argument("--oid", metavar="ID", help="the user's object id")
        if action is revoke:
            which.add_argument("--all", action="store_true", help="every session")
        action.set_defaults(func=_sessions)


def _config_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="proxy.toml to read (else $PROXY_CONFIG, else "
                   "./proxy.toml if present)")
    p.add_argument("--version", action="version", version=f"azure-auth-proxy {__version__}")
    for flag, (key, text) in FLAGS.items():
        p.add_argument(flag, metavar=key.split(".")[1].upper(), help=f"{text} ({key})")
    p.add_argument("--upstream", action="append", metavar="[PATH=]URL",
                   help="route PATH (default /) to URL; repeat for more; replaces the "
                   "[[upstreams]] of file and env")


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
        if logs.configured():  # e.g. the port is taken: still one event in the chosen format
            log.error("cannot serve: %s", exc)
        else:
            print(f"azure-auth-proxy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
