#!/usr/bin/env bash
# `make bench`: the bench suite, bounded in time, against its own Redis, MariaDB and server on ports
# of their own (17379, 14306, 18080), writing a Markdown report to build/bench/report.md.
# Measures SpecStory import, then the serving workloads of bench/serve.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out="$root/build/bench"
var="$root/build/benchvar"
mkdir -p "$out"
# a long Claude Code session (314 KB, 7,684 lines, 12 exchanges), one of our own fixtures
FIX="$root/tests/fixtures/specstory/claude-code-large.md"
RUNS=${SL_BENCH_IMPORT_RUNS:-20}

scripts/services.sh start "$var" 17379 14306 >/dev/null
set -a; . "$var/services.env"; set +a
export SHARELINE_CONFIG=/dev/null SHARELINE_PORT=18080 SHARELINE_REDIS_PREFIX="bench:"
url=http://127.0.0.1:18080
build/shareline admin migrate >/dev/null
build/shareline serve >"$out/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; scripts/services.sh stop "$var" >/dev/null' EXIT
for _ in $(seq 1 100); do curl -fsS "$url/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
t=$(build/shareline admin tenant create bench); u=$(build/shareline admin user create --tenant "$t" --handle bench --name Bench)
token=$(build/shareline admin token create --user "$u")

parse=$(build/bench/import_bench "$FIX" 200)
jq -n --rawfile md "$FIX" '{session_id:"bench-import", project:{name:"bench"}, markdown:$md}' >"$out/sync.json"
times=()
for i in $(seq 1 "$RUNS"); do
    # a new session each time (a first import), then the same again (a re-sync that matches every exchange)
    jq --arg sid "bench-import-$i-$$" '.session_id = $sid' "$out/sync.json" >"$out/sync-i.json"
    times+=("$(curl -sS --http2-prior-knowledge -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' --data-binary @"$out/sync-i.json" "$url/rpc/shareline.v1.Sessions/SyncSession")")
done
resync=()
for i in $(seq 1 "$RUNS"); do
    resync+=("$(curl -sS --http2-prior-knowledge -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $token" \
        -H 'Content-Type: application/json' --data-binary @"$out/sync-i.json" "$url/rpc/shareline.v1.Sessions/SyncSession")")
done
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "median %.1f ms, p90 %.1f ms, min %.1f ms, max %.1f ms", a[int((NR+1)/2)]*1000, a[int(NR*0.9+0.5)]*1000, a[1]*1000, a[NR]*1000}'; }
{
    echo "# Shareline bench report"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo
    echo "## SpecStory import ($(basename "$FIX"), $(wc -c <"$FIX") bytes)"
    echo
    echo "- importer alone (build/bench/import_bench, 200 parses): \`$parse\`"
    echo "- SyncSession end to end over HTTP/2 (JSON body, new session: parse, $RUNS runs): $(stats "${times[@]}")"
    echo "- SyncSession re-sync of the same file ($RUNS runs): $(stats "${resync[@]}")"
} >"$out/report.md"
# Secret scanning throughput on realistic session text (our fixtures, and ../shared's when present),
# one core, all rules (docs/secrets.md). Target: >= 200 MB/s.
scan_files=("$root"/tests/fixtures/specstory/*.md)
for f in "$root"/../shared/fixtures/specstory/*.md; do [ -e "$f" ] && scan_files+=("$f"); done
scan=$(taskset -c 1 build/tests/core/secrets_corpus speed 3 "${scan_files[@]}")
{
    echo
    echo "## Secret scanning (${#scan_files[@]} SpecStory files, one core)"
    echo
    echo "- build/tests/core/secrets_corpus speed: \`$scan\` (target >= 200 MB/s: $(awk -v r="${scan%% *}" 'BEGIN {print (r >= 200) ? "met" : "MISSED"}'))"
} >>"$out/report.md"
URL=$url TOKEN=$token OUT=$out SERVER_PID=$server bash bench/serve.sh
URL=$url TOKEN=$token OUT=$out SERVER_PID=$server REDIS_PORT=17379 REDIS_PREFIX=bench: bash bench/workloads.sh
[ "${SL_BENCH_OPS:-1}" = 0 ] || URL=$url TOKEN=$token OUT=$out REDIS_PORT=17379 SERVER_PID=$server \
    MARIADB_PID=$(cat "$var/mariadb.pid") REDIS_PID=$(cat "$var/redis.pid") bash bench/owner_ops.sh
[ "${SL_BENCH_EVENTS:-1}" = 0 ] || URL=$url TOKEN=$token OUT=$out SERVER_PID=$server bash bench/events.sh
[ "${SL_BENCH_MANY:-1000 10000 100000}" = 0 ] || TOKEN=$token OUT=$out bash bench/many.sh
cat "$out/report.md"
