#!/usr/bin/env bash
# Part of `make bench` (called by bench/run.sh after bench/serve.sh, server up):
#  - sessions of 1, 10, 100 and 1,000 exchanges built from the SpecStory fixtures of tests/fixtures
#    (every agent's format; each prompt and response cut to 1,000 characters), and for each: document sizes, Redis memory of the
#    projection, cold GET p50/p99 (the Redis entry deleted before each GET, on a second node without
#    node memory, so every GET rebuilds from MariaDB), owner RPC latency and throughput
#    (SetExchangesHidden toggles on public sessions, bench/rpc_bench.c);
#  - a mixed workload: h2load readers on the ~30 KB document while the race checker of the tests
#    hides/shows/deletes canaries and revokes on another session, readers checking every answer;
#  - server RSS across a million requests.
# Needs: URL TOKEN OUT SERVER_PID REDIS_PORT REDIS_PREFIX in the environment. Bounded: ~3 minutes.
set -euo pipefail
: "${URL:?}" "${TOKEN:?}" "${OUT:?}" "${SERVER_PID:?}" "${REDIS_PORT:?}" "${REDIS_PREFIX:?}"
root=$(cd "$(dirname "$0")/.." && pwd)
B_PORT=18081
B_URL=http://127.0.0.1:$B_PORT
SIZES=${SL_BENCH_SIZES:-"1 10 100 1000"}
MILLION=${SL_BENCH_RSS_REQUESTS:-1000000}
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }
rpc() { curl -sS --http2-prior-knowledge -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        --data-binary @- "$URL/rpc/shareline.v1.Sessions/$1"; }
pct() { sort -g | awk -v p="$1" '{a[NR]=$1} END {i=int(NR*p+0.999999); if (i<1) i=1; if (i>NR) i=NR; printf "%.1f", a[i]}'; }

# ---- a pool of exchanges: every fixture of tests/fixtures ----
pool="$OUT/pool.json"
echo '[]' >"$pool"
k=0
for fx in "$root"/tests/fixtures/specstory/*.md "$root"/tests/fixtures/*.md; do
    [ -f "$fx" ] || continue
    k=$((k + 1))
    jq -n --rawfile md "$fx" --arg sid "pool-$k-$$" '{session_id:$sid, project:{name:"bench-pool"}, markdown:$md}' | rpc SyncSession >/dev/null || continue
    echo "{\"session_id\":\"pool-$k-$$\",\"public\":true}" | rpc SetVisibility >/dev/null
    curl -sS --http2-prior-knowledge "$URL/api/v1/share/pool-$k-$$" |
        jq --slurpfile p "$pool" '$p[0] + [.exchanges[]? | {prompt: (.prompt[0:1000]), response: (.response[0:1000])}]' >"$pool.new" &&
        mv "$pool.new" "$pool"
done
npool=$(jq length "$pool")

seed_n() { # id n: a public session of n exchanges from the pool
    local id=$1 n=$2
    printf '_**User**_\n\nSeed.\n' | jq -Rs --arg id "$id" '{session_id:$id, project:{name:"bench"}, markdown:.}' | rpc SyncSession >/dev/null
    if [ "$n" -gt 1 ]; then
        jq --arg id "$id" --argjson n "$((n - 1))" '. as $p | {session_id:$id, exchanges:[range(0;$n) | $p[. % ($p|length)]]}' "$pool" |
            rpc AppendExchanges >/dev/null
    fi
    echo "{\"session_id\":\"$id\",\"public\":true}" | rpc SetVisibility >/dev/null
}

# ---- a second node without node memory, for cold reads ----
SHARELINE_PORT=$B_PORT SHARELINE_NODE_MEMORY=0 taskset -c 0 "$root/build/shareline" serve >"$OUT/server-b.log" 2>&1 &
b_pid=$!
trap 'kill $b_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fsS "$B_URL/healthz" >/dev/null 2>&1 && break; sleep 0.05; done

trend="$OUT/trend.tsv"
printf 'exchanges\tjson_bytes\thtml_bytes\tredis_bytes\tcold_p50_ms\tcold_p99_ms\trpc_p50_ms\trpc_p99_ms\trpc_per_s\n' >"$trend"
for n in $SIZES; do
    id="trend-$n-$$"
    seed_n "$id" "$n"
    json=$(curl -sS --http2-prior-knowledge -o /dev/null -w '%{size_download}' "$URL/api/v1/share/$id")
    html=$(curl -sS --http2-prior-knowledge -o /dev/null -w '%{size_download}' "$URL/share/$id")
    # the entry (a recipe) and the blobs of pieces it names (bench/redis_bytes.py)
    mem=$(python3 "$root/bench/redis_bytes.py" "$REDIS_PORT" "$REDIS_PREFIX" "$id" | awk '{print $2 + $3}')
    cold=()
    for _ in $(seq 1 "${SL_BENCH_COLD_RUNS:-25}"); do
        rcli DEL "${REDIS_PREFIX}p:$id" >/dev/null
        cold+=("$(curl -sS --http2-prior-knowledge -o /dev/null -w '%{time_total}' "$B_URL/api/v1/share/$id" | awk '{print $1 * 1000}')")
    done
    c50=$(printf '%s\n' "${cold[@]}" | pct 0.5); c99=$(printf '%s\n' "${cold[@]}" | pct 0.99)
    # owner RPC: 4 clients, each toggling an exchange of its own public session of n exchanges
    ids=()
    for t in 0 1 2 3; do
        seed_n "rpc-$n-$$-$t" "$n"
        ids+=("$(curl -sS --http2-prior-knowledge "$URL/api/v1/share/rpc-$n-$$-$t" | jq -r '.exchanges[0].id')")
    done
    calls=$([ "$n" -ge 1000 ] && echo 10 || echo 50)
    r=$(SL_BENCH_EXCHANGE_IDS="${ids[*]}" "$root/build/bench/rpc_bench" "$URL" "$TOKEN" "rpc-$n-$$" 0 4 "$calls")
    rp50=$(sed -n 's/.*p50_ms=\([0-9.]*\).*/\1/p' <<<"$r"); rp99=$(sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p' <<<"$r")
    rps=$(sed -n 's/.*calls_per_s=\([0-9.]*\).*/\1/p' <<<"$r")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$json" "$html" "$mem" "$c50" "$c99" "$rp50" "$rp99" "$rps" >>"$trend"
done
kill $b_pid 2>/dev/null || true

{
    echo
    echo "## Sessions of 1 to 1,000 exchanges (fixture exchanges of tests/fixtures, $npool in the pool, each field cut to 1,000 characters)"
    echo
    echo "Cold GET: the Redis entry deleted before each of ${SL_BENCH_COLD_RUNS:-25} GETs, on a second node without node memory: lease, MariaDB read through the public views, projection build (JSON, HTML, Markdown and their gzip), fill. Owner RPC: SetExchangesHidden toggles (each a real change of a public session: MARK, transaction, rebuild, publish, node invalidations), 4 clients on 4 sessions, msgpack over HTTP/1.1 keep-alive."
    echo
    echo "| exchanges | JSON bytes | HTML bytes | Redis bytes per projection | cold GET p50 ms | cold GET p99 ms | owner RPC p50 ms | owner RPC p99 ms | owner RPC calls/s |"
    echo "|---|---|---|---|---|---|---|---|---|"
    tail -n +2 "$trend" | awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9}'
} >>"$OUT/report.md"

# ---- mixed: readers under load while an owner edits (with canaries) ----
mixed_sid="mixed-$$"
jq -n --rawfile md "$root/tests/fixtures/demo-session.md" --arg sid "$mixed_sid" \
    '{session_id:$sid, project:{name:"mixed"}, markdown:$md}' | rpc SyncSession >/dev/null
taskset -c 1 h2load -c 16 -m 1 -t 1 -D "${SL_BENCH_MIXED_S:-15}" "$URL/api/v1/share/bench-30k" >"$OUT/mixed-h2load.out" 2>&1 &
h2_pid=$!
race=$("$root/build/tests/race/race_check" "$URL" "$TOKEN" "$mixed_sid" "${SL_BENCH_MIXED_CYCLES:-150}" 2 2>&1) || true
wait $h2_pid || true
mixed_rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' "$OUT/mixed-h2load.out")
{
    echo
    echo "## Mixed workload"
    echo
    echo "h2load (HTTP/2, 16 connections, ${SL_BENCH_MIXED_S:-15} s) on the ~30 KB document while the race checker of the tests edits another public session (append a canary, hide, show, delete; revoke and re-share every 10 cycles) and its 2 HTTP/2 readers check every answer:"
    echo
    echo "- readers under load: ${mixed_rps:-?} req/s"
    echo "- edits and checks: \`$race\`"
} >>"$OUT/report.md"

# ---- RSS across a million requests ----
rss() { awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }
half=$((MILLION / 2))
rss0=$(rss)
taskset -c 1 h2load -n "$half" -c 16 -m 4 -t 1 "$URL/api/v1/share/bench-2k" >"$OUT/rss-h2load.out" 2>&1 || true
rss1=$(rss)
taskset -c 1 h2load -n "$half" -c 16 -m 4 -t 1 "$URL/api/v1/share/bench-2k" >>"$OUT/rss-h2load.out" 2>&1 || true
rss2=$(rss)
ok=$(grep -c "succeeded, 0 failed" "$OUT/rss-h2load.out" || true)
{
    echo
    echo "## Server memory across $MILLION requests"
    echo
    echo "VmRSS of the server (h2load, HTTP/2, 16 connections × 4 streams, the ~2 KB document; $ok of 2 runs without a failed request): before ${rss0} kB, after $half requests ${rss1} kB, after $MILLION requests ${rss2} kB (growth over the second half: $((rss2 - rss1)) kB)."
} >>"$OUT/report.md"

# ---- chart ----
if command -v gnuplot >/dev/null; then
    gnuplot <<GP 2>"$OUT/gnuplot.err" || true
set terminal pngcairo size 1000,420 noenhanced
set output "$OUT/bench.png"
set multiplot layout 1,2
set title "Latency by session size (ms)"
set logscale xy
set xlabel "exchanges"
set key top left
set datafile separator "\t"
plot "$trend" using 1:5 skip 1 with linespoints title "cold GET p50", \
     "$trend" using 1:6 skip 1 with linespoints title "cold GET p99", \
     "$trend" using 1:7 skip 1 with linespoints title "owner RPC p50", \
     "$trend" using 1:8 skip 1 with linespoints title "owner RPC p99"
unset logscale
set logscale x
set title "Redis bytes per projection"
plot "$trend" using 1:4 skip 1 with linespoints title "Redis", "$trend" using 1:2 skip 1 with linespoints title "JSON document"
unset multiplot
GP
    [ -s "$OUT/bench.png" ] && printf '\n![latency and memory by session size](bench.png)\n' >>"$OUT/report.md"
fi
