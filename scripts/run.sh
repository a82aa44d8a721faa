#!/usr/bin/env bash
# `make run` (after the build): local services under var/, migrations, a demo tenant/user/token and
# one public demo session, then the server in the foreground. Ctrl-C stops the server (the local
# Redis and MariaDB keep running for the next `make run`; `make stop` stops them).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
var="$root/var"
port=${SHARELINE_PORT:-8080}
mkdir -p "$var"
# With a certificate (SHARELINE_TLS_CERT and _KEY in the environment) the server speaks TLS, and the
# share URLs it prints and answers say https.
scheme=http; h2=--http2-prior-knowledge
if [ -n "${SHARELINE_TLS_CERT:-}" ] && [ -n "${SHARELINE_TLS_KEY:-}" ]; then
    scheme=https; h2="--http2 --insecure"
fi

scripts/services.sh start "$var/services" "${SHARELINE_REDIS_PORT:-16379}" "${SHARELINE_DB_PORT:-13306}"

# The server's configuration (read by build/shareline from var/shareline.env, run from the repo root).
{
    echo "# written by scripts/run.sh; environment variables override these"
    grep -v '^SHARELINE_DB_SOCKET=' "$var/services/services.env"
    echo "SHARELINE_LISTEN_HOST=127.0.0.1"
    echo "SHARELINE_PORT=$port"
    echo "SHARELINE_PUBLIC_URL=$scheme://127.0.0.1:$port"
} >"$var/shareline.env"

build/shareline admin migrate

# A server left over from an earlier run (terminal closed without Ctrl-C) is stopped first.
if [ -f "$var/shareline.pid" ] && kill -0 "$(cat "$var/shareline.pid")" 2>/dev/null; then
    kill "$(cat "$var/shareline.pid")" || true
    sleep 0.5
fi

build/shareline serve &
server=$!
echo $server >"$var/shareline.pid"
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$var/shareline.pid"; exit 0' INT TERM
for _ in $(seq 1 100); do
    curl -fsS --insecure "$scheme://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    kill -0 $server 2>/dev/null || { echo "make run: the server exited; see the messages above" >&2; exit 1; }
    sleep 0.1
done

url="$scheme://127.0.0.1:$port"
rpc() { # method json-body
    curl -sS $h2 -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        --data-binary @- "$url/rpc/shareline.v1.Sessions/$1"
}

# Reuse the demo token of an earlier run when it still works; else make a new tenant/user/token.
token=""
if [ -f "$var/demo.env" ]; then
    token=$(sed -n 's/^SHARELINE_TOKEN=//p' "$var/demo.env")
    code=$(echo '{"session_id":"shareline-demo"}' | curl -s -o /dev/null -w '%{http_code}' $h2 \
        -H "Authorization: Bearer $token" -H 'Content-Type: application/json' --data-binary @- \
        "$url/rpc/shareline.v1.Sessions/GetShareSettings")
    [ "$code" = 200 ] || token=""
fi
if [ -z "$token" ]; then
    tenant=$(build/shareline admin tenant create "Demo workspace")
    user=$(build/shareline admin user create --tenant "$tenant" --handle ada --name "Ada Example")
    token=$(build/shareline admin token create --user "$user")
fi

jq -n --rawfile md tests/fixtures/demo-session.md \
    '{session_id: "shareline-demo", project: {id: "edge-gateway", name: "edge-gateway", icon: "Rocket", color: "blue"},
      markdown: $md}' | rpc SyncSession >/dev/null
echo '{"session_id":"shareline-demo","public":true}' | rpc SetVisibility >/dev/null

# the owner token is a credential: readable by this user only
(umask 077 && : >"$var/demo.env")
chmod 600 "$var/demo.env"
cat >"$var/demo.env" <<ENV
SHARELINE_URL=$url/api/v1/share/shareline-demo
SHARELINE_TOKEN=$token
SHARELINE_SESSION=shareline-demo
ENV
echo
echo "Shareline is serving on $url (HTTP/1.1 and HTTP/2). Ctrl-C stops it."
echo "  demo owner token:  $token"
echo "  public share page: $url/share/shareline-demo"
echo "  public JSON:       $url/api/v1/share/shareline-demo"
# a one-time sign-in link to the owner console (10 minutes, once; `sharectl login-link` makes more)
link=$(curl -sS $h2 -X POST -H "Authorization: Bearer $token" "$url/console/login-link" | jq -r '.url // empty')
[ -n "$link" ] && echo "  owner console:     $link"
echo "  (also written to var/demo.env)"
echo
wait $server
