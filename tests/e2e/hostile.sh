#!/usr/bin/env bash
# Hostile HTTP: oversized headers and bodies, slowloris, 10,000 idle connections (plain TCP
# and HTTP/2), HTTP/2 stream and RST_STREAM ("rapid reset") floods, a PING flood, clients that never
# read, and the connection cap. After each: the server is alive, /healthz answers, a public share is
# served byte-exact over a fresh HTTP/2 connection, and its RSS (sampled every 100 ms during the
# attack) stays under a bound. The attacks come from tests/hostile/hostile.c; limits in README.md.
source "$(dirname "$0")/lib.sh"
H="$SL_BUILD_DIR/tests/hostile/hostile"
PORT=$SL_TEST_HTTP_PORT
# the sanitizer build needs more memory per connection
if grep -q '^SL_SANITIZE:BOOL=ON' "$SL_BUILD_DIR/CMakeCache.txt"; then BOUND_MB=${SL_HOSTILE_BOUND_MB:-1200}; else BOUND_MB=${SL_HOSTILE_BOUND_MB:-300}; fi
export SHARELINE_SEND_TIMEOUT_MS=5000 # 30 s by default; shorter here so the test is short
setup_server hostile
SID="hostile-$$"
# a 53 KB Claude Code session: its page is large enough that clients which never read fill their
# socket buffers
sync_fixture "$TOKEN" "$OWN_FIXTURES/claude-code-v21.md" "$SID" '{"project": {"name": "hostile"}}' >/dev/null
check "session synced" eq "$(status)" 200
rpc "$TOKEN" SetVisibility "{\"session_id\":\"$SID\",\"public\":true}" >/dev/null
check "public session" eq "$(status)" 200
curl -sS --http2-prior-knowledge -o "$WORK/ref.json" "$URL/api/v1/share/$SID"
echo "     share document: $(wc -c <"$WORK/ref.json") bytes"
PAGE_KB=$(( $(curl -sS --http2-prior-knowledge "$URL/share/$SID" | wc -c) / 1024 ))

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }
sample_start() { # samples VmRSS every 100 ms into $WORK/peak until sample_stop
    rm -f "$WORK/sampling"; touch "$WORK/sampling"; echo 0 >"$WORK/peak"
    ( peak=0; while [ -f "$WORK/sampling" ]; do r=$(rss_kb); [ "${r:-0}" -gt "$peak" ] && { peak=$r; echo "$peak" >"$WORK/peak"; }; sleep 0.1; done ) &
    SAMPLER=$!
}
sample_stop() { rm -f "$WORK/sampling"; wait "$SAMPLER" 2>/dev/null; cat "$WORK/peak"; }
serving() { # still alive, /healthz, the share byte-exact over a fresh HTTP/2 connection
    kill -0 "$SERVER_PID" 2>/dev/null &&
        [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$URL/healthz")" = 200 ] &&
        curl -sS -m 5 --http2-prior-knowledge -o "$WORK/now.json" "$URL/api/v1/share/$SID" &&
        cmp -s "$WORK/now.json" "$WORK/ref.json"
}
BASE=$(rss_kb)
echo "     server RSS at start: $BASE kB; bound during attacks: start + $BOUND_MB MB"
attack() { # name command... : runs it while sampling RSS, then checks the server
    local name=$1; shift
    sample_start
    local out; out=$("$@" 2>&1); local rc=$?
    local peak; peak=$(sample_stop)
    echo "     $out"
    echo "     peak RSS during $name: $peak kB"
    echo "$name|$peak" >>"$WORK/peaks"
    check "$name: the attack ran" eq "$rc" 0
    check "$name: server alive and serving afterwards" serving
    check "$name: peak RSS within start + $BOUND_MB MB" test "$peak" -le $((BASE + BOUND_MB * 1024))
    LAST="$out"
}

# ---- oversized ----
attack "1 MiB HTTP/1.1 header" "$H" "$PORT" bigheader1
check "1 MiB header: answered 400 (or closed)" bash -c "grep -qE 'answer: (HTTP/1.1 4[0-9][0-9]|none)' <<<'$LAST'"
attack "2 MiB HTTP/2 header block" "$H" "$PORT" bigheader2
check "2 MiB header block: stream or connection refused" bash -c "grep -qE 'RST_STREAM|GOAWAY \\(error [1-9]|closed by the server' <<<'$LAST' && ! grep -q '[1-9][0-9]* HEADERS' <<<'$LAST'"
code=$(head -c $((40 << 20)) /dev/zero | curl -sS --http2-prior-knowledge -o "$WORK/big.body" -w '%{http_code}' \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/msgpack' --data-binary @- \
    "$URL/rpc/shareline.v1.Sessions/SyncSession" 2>/dev/null)
check "40 MiB body: refused (413 or stream reset), server serving" bash -c "[ '$code' = 413 ] || [ '$code' = 000 ]"
check "40 MiB body: server serving afterwards" serving

# ---- slow and idle clients ----
attack "slowloris (200 connections, one header byte per 200 ms)" "$H" "$PORT" slowloris 200 16
check "slowloris: every connection closed by the server (request head timeout 10 s)" \
    bash -c "grep -q '200 closed by the server' <<<'$LAST' && grep -q '0 still open' <<<'$LAST'"
idle_get() { # a GET on a fresh connection while the flood holds its connections
    sleep 3
    curl -sS -m 5 --http2-prior-knowledge -o "$WORK/during.json" -w '%{http_code} %{time_total}' "$URL/api/v1/share/$SID" >"$WORK/during"
}
idle_get & G=$!
attack "10,000 idle TCP connections" "$H" "$PORT" idle 10000 6
wait $G
check "10,000 idle TCP: all 10,000 opened" bash -c "grep -q 'opened 10000 of 10000' <<<'$LAST'"
check "10,000 idle TCP: a fresh GET meanwhile answered 200, byte-exact ($(cat "$WORK/during"))" \
    bash -c "grep -q '^200 ' '$WORK/during' && cmp -s '$WORK/during.json' '$WORK/ref.json'"
open_now=$(metric shareline_connections_open)
check "after the idle flood the connections are gone (open: $open_now)" test "${open_now:-99}" -le 5
idle_get & G=$!
attack "10,000 idle HTTP/2 connections" "$H" "$PORT" h2idle 10000 6
wait $G
check "10,000 idle HTTP/2: all 10,000 opened" bash -c "grep -q 'opened 10000 of 10000' <<<'$LAST'"
check "10,000 idle HTTP/2: a fresh GET meanwhile answered 200 ($(cat "$WORK/during"))" grep -q '^200 ' "$WORK/during"
attack "200 clients that never read (50 pipelined $PAGE_KB KB pages each)" "$H" "$PORT" noread "/share/$SID" 200 12
check "never-reading clients disconnected (send timeout ${SHARELINE_SEND_TIMEOUT_MS} ms)" \
    bash -c "grep -q '200 closed by the server' <<<'$LAST'"

# ---- HTTP/2 floods ----
attack "1,000 streams at once on one HTTP/2 connection" "$H" "$PORT" streams "/api/v1/share/$SID" 1000
check "stream flood: streams beyond 100 refused (RST_STREAM)" bash -c "grep -qE '[1-9][0-9]* RST_STREAM' <<<'$LAST'"
attack "rapid reset: 100,000 HEADERS + RST_STREAM" "$H" "$PORT" rapidreset "/api/v1/share/$SID" 100000
attack "PING flood: 300,000 PINGs, acks never read" "$H" "$PORT" pingflood 300000

# ---- the connection cap ----
stop_server
export SHARELINE_MAX_CONNECTIONS=300
start_server || { not_ok "server restarts with SHARELINE_MAX_CONNECTIONS=300"; exit 1; }
attack "600 connections against a cap of 300" "$H" "$PORT" idle 600 2
check "cap: 300 kept, the rest closed at once" bash -c "grep -q '300 still open' <<<'$LAST'"
check "cap: shareline_connections_refused_total counts them" test "$(metric shareline_connections_refused_total)" -ge 300
unset SHARELINE_MAX_CONNECTIONS

echo "     RSS: start $BASE kB, end $(rss_kb) kB (of the restarted server); peaks:"
sed 's/^/       /; s/|/: /; s/$/ kB/' "$WORK/peaks"
