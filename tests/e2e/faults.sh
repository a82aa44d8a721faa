#!/usr/bin/env bash
# Fault injection. Readers hammer the public endpoints (HTTP/2, JSON and HTML) while the
# owner appends, hides, shows, deletes and revokes, every removed exchange carrying a unique canary;
# meanwhile Redis is restarted twice (SIGKILL), frozen once (SIGSTOP, 3 s) and MariaDB is killed
# (SIGKILL) and restarted once. tests/race/race_check.c (fault mode) drives it and checks: no canary
# served after the call that removed it returned, every acknowledged write present afterwards,
# public reads answered from MariaDB while Redis was down, /readyz 503 while MariaDB was down and
# 200 after. This script also checks that the server never crashed and that the services are back.
#
# `faults.sh --inject ACTION` is the fault command race_check runs (redis-kill, redis-start,
# redis-stop, redis-cont, mariadb-kill, mariadb-start) against the test services under $SL_TEST_VAR.
set -uo pipefail

if [ "${1:-}" = "--inject" ]; then
    : "${SL_TEST_VAR:?}" "${SL_SOURCE_DIR:?}" "${SHARELINE_REDIS_PORT:?}" "${SHARELINE_DB_PORT:?}"
    pidof_file() { cat "$SL_TEST_VAR/$1.pid" 2>/dev/null; }
    # gone = no process or a zombie (a container's init may reap late)
    gone() { ! grep -qv '^State:.*Z' <(grep '^State:' "/proc/$1/status" 2>/dev/null); }
    wait_gone() { for _ in $(seq 1 100); do gone "$1" && return 0; sleep 0.05; done; return 1; }
    start() { "$SL_SOURCE_DIR/scripts/services.sh" start "$SL_TEST_VAR" "$SHARELINE_REDIS_PORT" "$SHARELINE_DB_PORT" >/dev/null; }
    case "${2:-}" in
    redis-kill) p=$(pidof_file redis) && kill -KILL "$p" && wait_gone "$p" ;;
    redis-start) start ;;
    redis-stop) kill -STOP "$(pidof_file redis)" ;;
    redis-cont) kill -CONT "$(pidof_file redis)" ;;
    mariadb-kill) p=$(pidof_file mariadb) && kill -KILL "$p" && wait_gone "$p" ;;
    mariadb-start) start ;;
    *) echo "faults.sh: unknown action ${2:-}" >&2; exit 2 ;;
    esac
    exit
fi

source "$(dirname "$0")/lib.sh"
before_finish() {
    # never leave a frozen or dead service behind for the next test
    [ -f "$SL_TEST_VAR/redis.pid" ] && kill -CONT "$(cat "$SL_TEST_VAR/redis.pid")" 2>/dev/null
    "$SL_SOURCE_DIR/scripts/services.sh" start "$SL_TEST_VAR" "$SHARELINE_REDIS_PORT" "$SHARELINE_DB_PORT" >/dev/null
}
setup_server faulty
SID="faults-$$"
sync_fixture "$TOKEN" "$SL_SOURCE_DIR/tests/fixtures/demo-session.md" "$SID" '{"project": {"name": "faults"}}' >/dev/null
check "session synced" eq "$(status)" 200
# A second public session nobody edits: it must be served from Redis while MariaDB is down.
STEADY="faults-steady-$$"
sync_fixture "$TOKEN" "$SL_SOURCE_DIR/tests/fixtures/demo-session.md" "$STEADY" '{"project": {"name": "faults"}}' >/dev/null
rpc "$TOKEN" SetVisibility "{\"session_id\":\"$STEADY\",\"public\":true}" >/dev/null
check "steady session public" eq "$(status)" 200
export SL_FAULT_STEADY_URL="$URL/api/v1/share/$STEADY"

t0=$(date +%s)
out=$(SL_FAULT_CMD="bash $0 --inject" "$SL_BUILD_DIR/tests/race/race_check" "$URL" "$TOKEN" "$SID" \
    "${SL_FAULT_MAX_CYCLES:-20000}" "${SL_RACE_READERS:-3}")
rc=$?
echo "$out"
echo "fault run took $(( $(date +%s) - t0 )) s"
check "fault run: no canary leaked, no acknowledged write lost, reads and /readyz followed the faults" eq "$rc" 0
check "the server never crashed" kill -0 "$SERVER_PID"
check "/healthz 200 after the faults" eq "$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz")" 200
check "/readyz 200 after the faults" eq "$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")" 200
code=$(curl -s --http2-prior-knowledge -o /dev/null -w '%{http_code}' "$URL/api/v1/share/$SID")
check "the session is still served after the faults" eq "$code" 200
restarts=$(grep -c 'shareline: signal' "$WORK/server.log")
check "one server process all along (no restart)" eq "$restarts" 0
grep -E '^shareline_(cache_(timeouts|repairs)|public_store_reads|publishes|node_coherence_lost)' <(curl -s "$URL/metrics") || true
