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
ne() { [ "$1" != "$2" ] || { echo "     expected anything but [$2]" >&2; return 1; }; }

start_server() {
    if curl -fsS -m 2 "$URL/healthz" >/dev/null 2>&1; then
        echo "port $SL_TEST_HTTP_PORT is already served by another process; stop it first" >&2
        return 1
    fi
    # Leak checking is for the unit tests: a server stopped by a signal still holds live connections.
    # SL_TEST_SERVER_WRAP runs the server under a debugger, e.g. a script that runs gdb -batch -ex run -ex bt --args "$@"
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 ${SL_TEST_SERVER_WRAP:-} "$BIN" serve >"$WORK/server.log" 2>&1 &
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
    if [ "$FAILED" -gt 0 ] && [ -s "$WORK/server.log" ]; then
        echo "---- last lines of the server log ----"
        tail -n 40 "$WORK/server.log"
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

# before_finish: a script's own clean-up, run on exit just before finish; scripts redefine it.
before_finish() { :; }

# setup_server [OWNER]: the prologue of every script that starts a server. On exit: before_finish,
# then finish (the summary; the exit status says whether every check passed). Migrates the schema,
# starts the server, and with OWNER creates a tenant, user and token for OWNER into $TOKEN. Exports
# the script wants the server to see must come before it.
setup_server() {
    trap 'before_finish; finish; exit $?' EXIT
    "$BIN" admin migrate >"$WORK/migrate.log" 2>&1 || { cat "$WORK/migrate.log"; not_ok "admin migrate"; exit 1; }
    ok "admin migrate"
    start_server || { not_ok "server starts"; exit 1; }
    ok "server starts"
    if [ $# -gt 0 ]; then
        TOKEN=$(new_owner "$1") && [ -n "$TOKEN" ] || { not_ok "$1's tenant, user and token"; exit 1; }
        ok "$1's tenant, user and token"
    fi
}

# Our own SpecStory fixtures (tests/fixtures/specstory, see generate.py there). The real files of
# ../shared/fixtures/specstory are never needed; scripts may add them as extra cases when present.
OWN_FIXTURES="$SL_SOURCE_DIR/tests/fixtures/specstory"
SHARED_FIXTURES="$SL_SOURCE_DIR/../shared/fixtures/specstory"

# sync_fixture TOKEN FILE [SESSION_ID [EXTRA]] -> SyncSession of FILE as SESSION_ID (default: from
# the file's name) in project "fixtures"; EXTRA, a JSON object, is merged over the request (e.g.
# '{"project":{"name":"x"}}'). Answer on stdout, HTTP status in $WORK/status, like rpc. The request
# goes through a file: a large fixture exceeds what one argument may hold.
sync_fixture() {
    local token=$1 file=$2 sid=${3:-} extra='{}'
    [ $# -ge 4 ] && extra=$4
    [ -n "$sid" ] || sid="fx-$$-$(basename "$file" .md | tr -c 'A-Za-z0-9_-' _ | tail -c 40)"
    jq -n --rawfile md "$file" --arg sid "$sid" --argjson extra "$extra" \
        '{session_id: $sid, project: {name: "fixtures"}, markdown: $md} * $extra' >"$WORK/sync.json" || return 1
    curl -sS --http2-prior-knowledge -o "$WORK/body" -w '%{http_code}' -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' --data-binary @"$WORK/sync.json" \
        "$URL/rpc/shareline.v1.Sessions/SyncSession" >"$WORK/status"
    cat "$WORK/body"
}

# count_exchanges FILE -> how many exchanges the importer makes of FILE (docs/specstory.md): one per
# non-sidechain user turn, plus a leading one when an agent turn comes before the first user turn.
count_exchanges() {
    awk '/^_\*\*User( \([^)]*\))?\*\*_$/ && !/sidechain/ { users++; next }
         /^_\*\*(Agent|Assistant)( [^*]*)?\*\*_$/ && users == 0 { lead = 1 }
         END { print users + lead }' "$1"
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
# wait_coherent BASE_URL -> 0 once that node may answer from its memory (its coherence subscription
# is up), 1 after 20 s; a slow (sanitizer) build subscribes well after /healthz answers
wait_coherent() {
    local v
    for _ in $(seq 1 400); do
        v=$(curl -sS "$1/metrics" 2>/dev/null | awk '$1 == "shareline_node_coherent" { print $2 }')
        [ "$v" = 1 ] && return 0
        sleep 0.05
    done
    return 1
}
# entry_head KEY [PORT] -> "P<version> <tag>" (or "T<v>", "M<v>", "L<token>", "" when absent): what a
# Redis projection entry is. A PUBLIC entry holds a recipe (core/recipe.c): the session's fields and
# the keys of its pieces, not the documents; its version and content tag name the bytes served.
entry_head() {
    redis-cli -h 127.0.0.1 -p "${2:-$SHARELINE_REDIS_PORT}" --no-auth-warning --raw GETRANGE "$1" 0 47 |
        head -n 1 | awk '{ if (substr($1, 1, 1) == "P") print $1, $2; else print $1 }'
}
# A second node ("B") on SL_TEST_HTTP_PORT + 1, same Redis and MariaDB. start_b [VAR=value...]
# starts it (extra environment for it only) and waits until it is ready; stop_b stops it (thawing it
# first if a test froze it). Scripts that use it call stop_b from their before_finish.
B_PORT=$((SL_TEST_HTTP_PORT + 1))
B_URL="http://127.0.0.1:$B_PORT"
B_PID=""
stop_b() { [ -n "$B_PID" ] && { kill -CONT "$B_PID" 2>/dev/null; kill "$B_PID" 2>/dev/null; wait "$B_PID" 2>/dev/null; }; B_PID=""; }
start_b() {
    env "$@" SHARELINE_PORT=$B_PORT ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 "$BIN" serve >>"$WORK/server-b.log" 2>&1 &
    B_PID=$!
    for _ in $(seq 1 200); do curl -fsS "$B_URL/readyz" >/dev/null 2>&1 && return 0; sleep 0.05; done
    cat "$WORK/server-b.log" >&2
    return 1
}
