#!/usr/bin/env bash
# Live events (part of `make bench`, called by bench/run.sh with the server up): 1,000 and 10,000
# open event streams of one public session on one node (HTTP/1.1, bench/events_load.c), the time
# from an owner call's return to its event on every stream (p50/p99), and the server's RSS per idle
# stream. Needs: URL TOKEN OUT SERVER_PID in the environment.
set -euo pipefail
: "${URL:?}" "${TOKEN:?}" "${OUT:?}" "${SERVER_PID:?}"
COUNTS=${SL_BENCH_EVENT_STREAMS:-"1000 10000"}
CHANGES=${SL_BENCH_EVENT_CHANGES:-10}
port=${URL##*:}
BENCH_BIN=${BENCH_BIN:-$(cd "$(dirname "$0")/.." && pwd)/build/bench}
rpc() { curl -sS --http2-prior-knowledge -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        --data-binary @- "$URL/rpc/shareline.v1.Sessions/$1"; }
sid="bench-events-$$"
printf '_**User**_\n\nFollow me.\n\n---\n\n_**Agent**_\n\nFollowing.\n' | jq -Rs --arg id "$sid" '{session_id:$id, project:{name:"bench"}, markdown:.}' | rpc SyncSession >/dev/null
echo "{\"session_id\":\"$sid\",\"public\":true}" | rpc SetVisibility >/dev/null
ulimit -n "$(ulimit -Hn)"
{
    echo
    echo "## Live events: streams of one session on one node (HTTP/1.1), $CHANGES owner calls each"
    echo
    echo "Fan-out: from the return of an owner call (UpdateSessionTitle) to its event on each stream;"
    echo "an event that arrived before the call returned counts as 0. RSS per stream: the server's RSS"
    echo "with every stream open and idle, minus before, divided by the streams. Targets: fan-out p99"
    echo "<= 500 ms, RSS per idle stream <= 16 KB."
    echo
    echo "| streams | connected in | events received | fan-out p50 | fan-out p99 | slowest stream (max) | RSS per idle stream | target |"
    echo "|---|---|---|---|---|---|---|---|"
} >>"$OUT/report.md"
for n in $COUNTS; do
    r=$(taskset -c 1 "$BENCH_BIN/events_load" "$port" "$sid" "$TOKEN" "$n" "$CHANGES" "$SERVER_PID") || r="{}"
    echo "$r" >>"$OUT/events-runs.log"
    jq -r --argjson n "$n" '"| \($n) | \(.connect_seconds) s | \(.events_received) of \(.events_expected) | \(.fanout_ms_p50) ms | \(.fanout_ms_p99) ms | \(.last_stream_ms_max) ms | \(.rss_bytes_per_stream) B | " +
        (if (.fanout_ms_p99 // 1e9) <= 500 and (.rss_bytes_per_stream // 1e9) <= 16384 and .events_received == .events_expected then "met" else "MISSED" end) + " |"' <<<"$r" >>"$OUT/report.md"
    sleep 2 # the streams of the run close
done
