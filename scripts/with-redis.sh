#!/bin/sh
# Run a command with PROXY_TEST_REDIS_URL pointing at a Redis: the one already set, one
# answering on 127.0.0.1:6379, or a throwaway redis-server on a free port (stopped after).
set -eu
ping_redis() {  # $1 host, $2 port: true when a Redis answers PING
  python3 - "$1" "$2" <<'PY'
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1) as s:
        s.sendall(b"PING\r\n")
        sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}
if [ -z "${PROXY_TEST_REDIS_URL:-}" ]; then
  if ping_redis 127.0.0.1 6379; then
    PROXY_TEST_REDIS_URL=redis://127.0.0.1:6379/15
  elif command -v redis-server >/dev/null 2>&1; then
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
      >/dev/null 2>&1 &
    pid=$!
    trap 'kill $pid 2>/dev/null || true' EXIT INT TERM
    i=0; until ping_redis 127.0.0.1 "$port" || [ $i -ge 50 ]; do i=$((i+1)); sleep 0.1; done
    PROXY_TEST_REDIS_URL=redis://127.0.0.1:$port/0
  else
    echo "with-redis: no Redis on 127.0.0.1:6379 and no redis-server binary; Redis tests will fail" >&2
  fi
fi
export PROXY_TEST_REDIS_URL="${PROXY_TEST_REDIS_URL:-}"
"$@"
