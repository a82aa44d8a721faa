# Shared helpers of the end-to-end scripts: start the real server against the test services,
# call RPCs over HTTP/2, and count checks. Sourced, not run.
set -uo pipefail

: "${SL_BUILD_DIR:?run through ctest}" "${SL_SOURCE_DIR:?}" "${SL_TEST_HTTP_PORT:?}"
BIN="$SL_BUILD_DIR/shareline"
URL="http://127.0.0.1:$SL_TEST_HTTP_PORT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sl-e2e.XXXXXX")
PASSED=0
FAILED=0
SERVER_PID=""

export SHARELINE_CONFIG=/dev/null # nothing but the environment
export SHARELINE_PORT=$SL_TEST_HTTP_PORT
export SHARELINE_REDIS_PREFIX="e2e$$:"

ok() { PASSED=$((PASSED + 1)); echo "ok   - $*"; }
not_ok() { FAILED=$((FAILED + 1)); echo "FAIL - $*"; }
check() { # description command...
    local d=$1; shift
    if "$@"; then ok "$d"; else not_ok "$d"; fi
}
eq() { [ "$1" = "$2" ] || { echo "     expected [$2], got [$1]" >&2; return 1; }; }

start_server() {
    if curl -fsS -m 2 "$URL/healthz" >/dev/null 2>&1; then
        echo "port $SL_TEST_HTTP_PORT is already served by another process; stop it first" >&2
        return 1
    fi
    # Leak checking is for the unit tests: a server stopped by a signal still holds live connections.
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 "$BIN" serve >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 200); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        curl -fsS "$URL/healthz" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "server did not start:" >&2
    cat "$WORK/server.log" >&2
    return 1
}

stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
    SERVER_PID=""
}

finish() {
    stop_server
    if grep -qE 'AddressSanitizer|runtime error|LeakSanitizer' "$WORK/server.log" 2>/dev/null; then
        not_ok "server log has sanitizer reports"
        cat "$WORK/server.log"
    fi
    echo
    echo "$PASSED passed, $FAILED failed"
    rm -rf "$WORK"
    [ "$FAILED" -eq 0 ]
}

# new_owner NAME -> prints a token for a new tenant+user
new_owner() {
    local t u
    t=$("$BIN" admin tenant create "tenant-$1-$$") || return 1
    u=$("$BIN" admin user create --tenant "$t" --handle "$1" --name "User $1") || return 1
    "$BIN" admin token create --user "$u"
}

# rpc TOKEN METHOD JSON -> body on stdout, HTTP status in $WORK/status (HTTP/2)
rpc() {
    curl -sS --http2-prior-knowledge -o "$WORK/body" -w '%{http_code}' \
        ${1:+-H "Authorization: Bearer $1"} -H 'Content-Type: application/json' \
        --data-binary "$3" "$URL/rpc/shareline.v1.Sessions/$2" >"$WORK/status"
    cat "$WORK/body"
}
status() { cat "$WORK/status"; }

# get PATH [curl args...] -> body to $WORK/get.body, headers to $WORK/get.headers, prints status
get() {
    local p=$1; shift
    curl -sS --http2-prior-knowledge -o "$WORK/get.body" -D "$WORK/get.headers" -w '%{http_code}' "$@" "$URL$p"
}
header() { grep -i "^$1:" "$WORK/get.headers" | head -1 | sed 's/^[^:]*: *//' | tr -d '\r'; }
metric() { curl -sS "$URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
