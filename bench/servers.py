"""The contenders and their helpers, each started from a config written to a temp directory:
the mock Entra ID, the fast upstream (nginx), nginx as a plain reverse proxy, Apache with
mod_auth_openidc, and azure-auth-proxy itself. All of them listen on 127.0.0.1 only."""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from proxy.mock_entra import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TENANT_ID

from .common import (
    HOST,
    BenchError,
    Proc,
    Procs,
    free_port,
    proxy_env,
    python,
    sign_in,
    wait_http,
    which,
)
from .mock_idp import APACHE_CLIENT_ID, APACHE_CLIENT_SECRET

USER = "alice@contoso.example"
APACHE_MODULES = Path("/usr/lib/apache2/modules")
# What azure-auth-proxy prints when this build refuses `[server] workers > 1`.
WORKERS_UNSUPPORTED = "n/a (workers > 1 not supported by this build)"

NGINX_COMMON = """
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
"""
NGINX_TEMP = """
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
"""

UPSTREAM_NGINX = NGINX_COMMON + """
worker_processes auto;
http {{
  access_log off;
  keepalive_requests 10000000;
""" + NGINX_TEMP + """
  server {{
    listen {host}:{port};
    location / {{ default_type text/plain; return 200 "hello\\n"; }}
  }}
}}
"""

# nginx in front of the same upstream without any authentication: the ceiling for a proxy
# hop. /redirect and /auth-check are its answers for the redirect and forward-auth rows: a
# 302 and a 202 produced without any work, the ceiling for those shapes of response.
PLAIN_NGINX = NGINX_COMMON + """
worker_processes auto;
http {{
  access_log off;
  keepalive_requests 10000000;
""" + NGINX_TEMP + """
  upstream fast {{ server {host}:{upstream_port}; keepalive 128; keepalive_requests 10000000; }}
  server {{
    listen {host}:{port};
    location / {{
      proxy_pass http://fast;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
    location = /redirect {{ return 302 {mock}/; }}
    location = /auth-check {{ return 202; }}
  }}
}}
"""

# Apache httpd 2.4 (mpm_event, Debian's thread counts) with mod_auth_openidc protecting
# everything and proxying to the same upstream; /auth is a tiny static file behind the same
# check, its answer for the forward-auth row. The process pool starts at 3 children and never
# shrinks (MaxSpareThreads = MaxRequestWorkers): with Debian's MaxSpareThreads 75 it killed
# children between runs, dropping their keep-alive connections mid-measurement.
APACHE_CONF = """
ServerRoot {dir}
ServerName {host}
PidFile {dir}/httpd.pid
Mutex file:{dir} default
DefaultRuntimeDir {dir}
ErrorLog {dir}/apache-error.log
LogLevel warn
Listen {host}:{port}
{user}
LoadModule mpm_event_module {mods}/mod_mpm_event.so
LoadModule authn_core_module {mods}/mod_authn_core.so
LoadModule authz_core_module {mods}/mod_authz_core.so
LoadModule authz_user_module {mods}/mod_authz_user.so
LoadModule headers_module {mods}/mod_headers.so
LoadModule proxy_module {mods}/mod_proxy.so
LoadModule proxy_http_module {mods}/mod_proxy_http.so
LoadModule auth_openidc_module {mods}/mod_auth_openidc.so

StartServers 3
MinSpareThreads 25
MaxSpareThreads 150
ThreadLimit 64
ThreadsPerChild 25
MaxRequestWorkers 150
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 30

DocumentRoot {dir}/htdocs
<Directory {dir}/htdocs>
  Require all granted
</Directory>

OIDCProviderMetadataURL {mock}/{tenant}/v2.0/.well-known/openid-configuration
OIDCClientID {client_id}
OIDCClientSecret {client_secret}
OIDCRedirectURI http://{host}:{port}/callback/azuread
OIDCCryptoPassphrase {passphrase}
OIDCScope "openid profile email"
OIDCPKCEMethod S256
OIDCSessionType server-cache
OIDCCacheType shm
OIDCSessionInactivityTimeout 3600
OIDCPassClaimsAs headers
OIDCSSLValidateServer Off

<Location />
  AuthType openid-connect
  Require valid-user
</Location>
ProxyPass /auth !
ProxyPass /callback/azuread !
ProxyPass / http://{host}:{upstream_port}/
"""


def apache_available() -> bool:
    return which("apache2") is not None and (APACHE_MODULES / "mod_auth_openidc.so").exists()


def _apache_user() -> str:
    if os.geteuid() != 0:
        return ""  # User/Group only matter when started as root
    for user, group in (("www-data", "www-data"), ("nobody", "nogroup"), ("nobody", "nobody")):
        try:
            pwd.getpwnam(user)
            grp.getgrnam(group)
        except KeyError:
            continue
        return f"User {user}\nGroup {group}"
    raise BenchError("no unprivileged user for Apache's children (www-data or nobody)")


def assertion_key(path: Path) -> None:
    """An EC P-256 key for X-Auth-Assertion, shared by every worker of a proxy."""
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def proxy_config(*, port: int, mock: str, upstream: str, secret: str, store: str,
                 redis_url: str, workers: int, key_file: Path, routes: int = 1) -> str:
    redis_line = f'redis_url = "{redis_url}"\n' if store == "redis" else ""
    public = 'public = ["^/public/"]\n' if routes > 1 or store == "routes" else ""
    store = "cookie" if store == "routes" else store
    return f"""
[server]
listen = "{HOST}:{port}"
public_url = "http://{HOST}:{port}"
workers = {workers}
log_level = "warning"
[azure]
client_id = "{DEFAULT_CLIENT_ID}"
client_secret = "{DEFAULT_CLIENT_SECRET}"
tenant_id = "{DEFAULT_TENANT_ID}"
cloud_instance = "{mock}/"
[session]
secret = "{secret}"
secure = false
store = "{store}"
{redis_line}[identity]
assertion_key_file = "{key_file}"
[[upstreams]]
path = "/"
url = "{upstream}"
{public}""" + extra_routes(routes - 1, upstream)


def extra_routes(count: int, upstream: str) -> str:
    """A central gateway's table: half host routes, half path routes (each public), in
    front of the measured host-less `/` route (which a table scan reached last)."""
    tables = []
    for i in range(count):
        where = f'host = "app{i}.gateway.test"' if i % 2 else f'path = "/app{i}"'
        tables.append(f'[[upstreams]]\n{where}\nurl = "{upstream}"\npublic = ["^/"]\n')
    return "".join(tables)


@dataclass
class ProxyHandle:
    name: str
    proc: Proc
    url: str
    cookie: str


class WorkersUnsupported(BenchError):
    """This build of the proxy refuses `[server] workers > 1`."""


class Stack:
    """Starts and stops the contenders; owns the ports and the temp directory."""

    def __init__(self, procs: Procs) -> None:
        self.procs = procs
        self.dir = procs.workdir
        self.mock_port = free_port()
        self.mock = f"http://{HOST}:{self.mock_port}"
        self.apache_port = free_port()
        self.secret = secrets.token_urlsafe(32)
        self.key_file = self.dir / "assertion.pem"
        assertion_key(self.key_file)

    async def start_mock(self) -> None:
        redirect = f"http://{HOST}:{self.apache_port}/callback/azuread"
        proc = self.procs.start("mock-entra", [python(), "-m", "bench.mock_idp", "--port",
                                               str(self.mock_port), "--apache-redirect",
                                               redirect], env=proxy_env())
        await wait_http(f"{self.mock}/{DEFAULT_TENANT_ID}/v2.0/.well-known/openid-configuration",
                        proc)

    async def start_python_upstream(self) -> tuple[Proc, str]:
        port = free_port()
        proc = self.procs.start(f"upstream-py-{port}", [python(), "-m", "bench.upstream",
                                                        "--port", str(port)], env=proxy_env())
        url = f"http://{HOST}:{port}"
        await wait_http(url + "/", proc)
        return proc, url

    async def start_nginx(self, name: str, template: str, **values: object) -> tuple[Proc, str]:
        nginx = which("nginx")
        if nginx is None:
            raise BenchError("nginx is not installed")
        directory = self.dir / name
        directory.mkdir()
        port = free_port()
        conf = directory / "nginx.conf"
        conf.write_text(template.format(dir=directory, host=HOST, port=port, **values))
        proc = self.procs.start(name, [nginx, "-c", str(conf), "-p", str(directory)])
        url = f"http://{HOST}:{port}"
        await wait_http(url + "/", proc, ok=(200, 302, 401, 404))
        return proc, url

    async def start_fast_upstream(self) -> tuple[Proc, str, str]:
        """nginx returning a fixed 6-byte body, or the Python upstream when nginx is missing."""
        if which("nginx"):
            proc, url = await self.start_nginx("upstream-nginx", UPSTREAM_NGINX)
            return proc, url, "nginx"
        proc, url = await self.start_python_upstream()
        return proc, url, "python (nginx not installed)"

    async def start_plain_nginx(self, upstream: str) -> tuple[Proc, str]:
        return await self.start_nginx("plain-nginx", PLAIN_NGINX, mock=self.mock,
                                      upstream_port=_port(upstream))

    async def start_apache(self, upstream: str) -> tuple[Proc, str, str]:
        """Apache + mod_auth_openidc, signed in as USER; returns (proc, url, cookie)."""
        apache = which("apache2")
        if apache is None or not apache_available():
            raise BenchError("apache2 / libapache2-mod-auth-openidc not installed")
        directory = self.dir / "apache"
        (directory / "htdocs").mkdir(parents=True)
        (directory / "htdocs" / "auth").write_text("ok\n")
        conf = directory / "httpd.conf"
        conf.write_text(APACHE_CONF.format(
            dir=directory, host=HOST, port=self.apache_port, user=_apache_user(),
            mods=APACHE_MODULES, mock=self.mock, tenant=DEFAULT_TENANT_ID,
            client_id=APACHE_CLIENT_ID, client_secret=APACHE_CLIENT_SECRET,
            passphrase=secrets.token_urlsafe(32), upstream_port=_port(upstream)))
        for path in (self.dir, directory, directory / "htdocs"):
            path.chmod(0o755)  # Apache's children run as www-data
        proc = self.procs.start("apache", [apache, "-f", str(conf), "-DFOREGROUND"])
        url = f"http://{HOST}:{self.apache_port}"
        await wait_http(url + "/", proc, ok=(302,))
        cookie = await sign_in(url + "/", USER)
        return proc, url, cookie

    async def start_proxy(self, name: str, *, upstream: str, store: str = "cookie",
                          workers: int = 1, redis_url: str = "",
                          routes: int = 0) -> ProxyHandle:
        """azure-auth-proxy as its own process, signed in as USER through the mock's page.
        `routes`: a table of that many routes, `/public/` open on the measured one."""
        port = free_port()
        conf = self.dir / f"{name}.toml"
        conf.write_text(proxy_config(port=port, mock=self.mock, upstream=upstream,
                                     secret=self.secret, store="routes" if routes else store,
                                     redis_url=redis_url, workers=workers,
                                     key_file=self.key_file, routes=max(routes, 1)))
        proc = self.procs.start(name, [python(), "-m", "proxy", "run", "-c", str(conf)],
                                env=proxy_env())
        url = f"http://{HOST}:{port}"
        try:
            await wait_http(url + "/ready", proc)
        except BenchError as exc:
            if workers > 1 and not proc.alive() and "server.workers" in proc.log_tail():
                raise WorkersUnsupported(WORKERS_UNSUPPORTED) from exc
            raise
        cookie = await sign_in(url + "/", USER)
        return ProxyHandle(name, proc, url, cookie)

    def stop(self, proc: Proc) -> None:
        self.procs.stop(proc)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def redis_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False
