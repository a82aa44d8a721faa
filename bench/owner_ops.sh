#!/usr/bin/env bash
# Owner changes by session size (part of `make bench`, called by bench/run.sh after workloads.sh,
# server up; issue "Live at any size"): for public sessions of 1, 10, 100, 1,000 and 10,000
# exchanges (built from the exchange pool of workloads.sh), the latency of one client's owner calls
# that change one thing — append 1 exchange, hide 1 (and show it again), retitle 1 — and of a
# SpecStory re-sync of the whole file with one exchange more; then owner calls/s of 16 clients
# against the rate of bare one-row UPDATE transactions of the same MariaDB (mariadb-slap, same
# concurrency, same run); and the bytes Redis received per append (INFO stats total_net_input_bytes
# around the call: the MARK, the blobs of pieces, the recipe, the invalidations) against the
# appended exchange's rendered size (what the JSON, page and Markdown grew by). With SERVER_PID,
# MARIADB_PID and REDIS_PID it also reports where the CPU of an owner call goes (each process's
# user + system time over the rate run, per call) against MariaDB's per slap transaction. Needs: URL
# TOKEN OUT REDIS_PORT in the environment and $OUT/pool.json.
set -euo pipefail
: "${URL:?}" "${TOKEN:?}" "${OUT:?}" "${REDIS_PORT:?}"
root=$(cd "$(dirname "$0")/.." && pwd)
SIZES=${SL_BENCH_OP_SIZES:-"1 10 100 1000 10000"}
pool="$OUT/pool.json"
[ -s "$pool" ] || { echo "owner_ops.sh: $pool is missing (workloads.sh makes it)" >&2; exit 1; }
rpc() { curl -sS --http2-prior-knowledge -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        --data-binary @- "$URL/rpc/shareline.v1.Sessions/$1"; }
# timed METHOD FILE -> seconds of one call (HTTP/2), or "err"
timed() {
    local code t
    read -r code t < <(curl -sS --http2-prior-knowledge -o "$OUT/op.out" -w '%{http_code} %{time_total}\n' \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' --data-binary @"$2" \
        "$URL/rpc/shareline.v1.Sessions/$1")
    [ "$code" = 200 ] && echo "$t" || { echo "owner_ops.sh: $1 answered $code: $(head -c 300 "$OUT/op.out")" >&2; echo err; }
}
# bytes Redis has received so far
rin() { redis-cli -p "$REDIS_PORT" INFO stats | awk -F: '/^total_net_input_bytes:/ {print $2 + 0}'; }
# the plain JSON, page and Markdown of a public session: their total size
docs() {
    local j h m
    j=$(curl -sS --http2-prior-knowledge -o /dev/null -w '%{size_download}' "$URL/api/v1/share/$1")
    h=$(curl -sS --http2-prior-knowledge -o /dev/null -w '%{size_download}' "$URL/share/$1")
    m=$(curl -sS --http2-prior-knowledge -H 'Accept: text/markdown' -o /dev/null -w '%{size_download}' "$URL/api/v1/share/$1")
    echo $((j + h + m))
}
pct() { grep -v err | sort -g | awk -v p="$1" '{a[NR]=$1} END {i=int(NR*p+0.999999); if (i<1) i=1; if (i>NR) i=NR; if (NR) printf "%.1f", a[i]*1000; else print "n/a"}'; }
# markdown N CUT -> a SpecStory file of the first N exchanges of the pool, each field cut to CUT characters
markdown() {
    jq -r --argjson n "$1" --argjson c "$2" '. as $p | [range(0;$n) | $p[. % ($p|length)]] |
        map("_**User**_\n\n" + .prompt[0:$c] + "\n\n---\n\n_**Agent**_\n\n" + .response[0:$c] + "\n\n---\n\n") | join("")' "$pool"
}

{
    echo
    echo "## Owner changes by session size (one client, HTTP/2, JSON; public sessions from the exchange pool)"
    echo
    echo "p50 / p99 of each call, ms. Re-sync: SyncSession of the whole SpecStory file with one exchange more than"
    echo "the last sync. Runs per point: 15 (5 at 1,000 exchanges, 3 at 10,000). Fields are cut to 1,000 characters"
    echo "(200 at 10,000 exchanges, so that the public page stays within its 16 MiB cap); the sessions of the"
    echo "10,000 point hold 9,997 exchanges before the runs, 10,000 (the per-session limit) after."
    echo
    echo "| exchanges | append 1 | hide 1 | retitle 1 | re-sync + 1 |"
    echo "|---|---|---|---|---|"
} >>"$OUT/report.md"
for n in $SIZES; do
    runs=$([ "$n" -ge 10000 ] && echo 3 || { [ "$n" -ge 1000 ] && echo 5 || echo 15; })
    cut=$([ "$n" -ge 10000 ] && echo 200 || echo 1000)
    base=$([ "$n" -ge 10000 ] && echo $((n - runs)) || echo "$n")
    sid="ops-$n-$$"
    markdown "$base" "$cut" | jq -Rs --arg id "$sid" '{session_id:$id, project:{name:"bench"}, markdown:.}' >"$OUT/op-sync.json"
    rpc SyncSession <"$OUT/op-sync.json" >/dev/null
    echo "{\"session_id\":\"$sid\",\"public\":true}" | rpc SetVisibility >/dev/null
    first=$(echo "{\"session_id\":\"$sid\"}" | rpc GetSession | jq -r '.exchanges[0].id')
    app=() hide=() ret=() resync=() rbytes=() grown=()
    for i in $(seq 1 "$runs"); do
        jq --arg id "$sid" --argjson i "$i" --argjson c "$cut" '{session_id:$id, exchanges:[.[$i % length] | {prompt: .prompt[0:$c], response: .response[0:$c]}]}' "$pool" >"$OUT/op-append.json"
        d0=$(docs "$sid")
        r0=$(rin)
        app+=("$(timed AppendExchanges "$OUT/op-append.json")")
        r1=$(rin)
        rbytes+=($((r1 - r0)))
        grown+=($(($(docs "$sid") - d0)))
        jq -n --arg id "$sid" --argjson e "$first" --argjson h "$([ $((i % 2)) = 1 ] && echo true || echo false)" \
            '{session_id:$id, exchange_ids:[$e], hidden:$h}' >"$OUT/op-hide.json"
        hide+=("$(timed SetExchangesHidden "$OUT/op-hide.json")")
        jq -n --arg id "$sid" --argjson e "$first" --arg t "title $i" '{session_id:$id, exchange_id:$e, title:$t}' >"$OUT/op-title.json"
        ret+=("$(timed UpdateExchangeTitle "$OUT/op-title.json")")
    done
    # re-sync: a session made by SyncSession of n exchanges, then the same file with one more each time
    rsid="resync-$n-$$"
    markdown "$base" "$cut" | jq -Rs --arg id "$rsid" '{session_id:$id, project:{name:"bench"}, markdown:.}' >"$OUT/op-sync.json"
    rpc SyncSession <"$OUT/op-sync.json" >/dev/null
    echo "{\"session_id\":\"$rsid\",\"public\":true}" | rpc SetVisibility >/dev/null
    for i in $(seq 1 "$runs"); do
        markdown "$((base + i))" "$cut" | jq -Rs --arg id "$rsid" '{session_id:$id, project:{name:"bench"}, markdown:.}' >"$OUT/op-sync.json"
        resync+=("$(timed SyncSession "$OUT/op-sync.json")")
    done
    f() { echo "$(printf '%s\n' "$@" | pct 0.5) / $(printf '%s\n' "$@" | pct 0.99)"; }
    echo "| $n | $(f "${app[@]}") | $(f "${hide[@]}") | $(f "${ret[@]}") | $(f "${resync[@]}") |" >>"$OUT/report.md"
    med() { printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
    echo "$n $(med "${rbytes[@]}") $(med "${grown[@]}")" >>"$OUT/op-bytes.txt"
done
{
    echo
    echo "Bytes Redis received per append of one exchange (median; INFO stats total_net_input_bytes around the"
    echo "call: MARK, blobs of pieces, recipe, invalidations) against what the three plain documents grew by:"
    echo
    echo "| exchanges | Redis bytes in per append | documents grew by | ratio (target <= 4 + a constant) |"
    echo "|---|---|---|---|"
    while read -r n rb g; do
        echo "| $n | $rb | $g | $(awk -v a="$rb" -v b="$g" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}') |"
    done <"$OUT/op-bytes.txt"
} >>"$OUT/report.md"
rm -f "$OUT/op-bytes.txt"

# ---- the constant part: owner calls/s of 16 clients vs bare one-row UPDATE transactions ----
ids=()
for t in $(seq 0 15); do
    printf '_**User**_\n\nQ.\n\n---\n\n_**Agent**_\n\nA.\n' | jq -Rs --arg id "rate-$$-$t" '{session_id:$id, project:{name:"bench"}, markdown:.}' | rpc SyncSession >/dev/null
    echo "{\"session_id\":\"rate-$$-$t\",\"public\":true}" | rpc SetVisibility >/dev/null
    ids+=("$(echo "{\"session_id\":\"rate-$$-$t\"}" | rpc GetSession | jq -r '.exchanges[0].id')")
done
# CPU seconds (user + system) a process has used so far; empty when it cannot be read
cpu() { [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] && awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }
c0=("$(cpu "${SERVER_PID:-}")" "$(cpu "${MARIADB_PID:-}")" "$(cpu "${REDIS_PID:-}")")
TIMEFORMAT='%U %S'
{ time r=$(SL_BENCH_EXCHANGE_IDS="${ids[*]}" "$root/build/bench/rpc_bench" "$URL" "$TOKEN" "rate-$$" 0 16 100); } 2>"$OUT/rpc_bench.time" || true
c1=("$(cpu "${SERVER_PID:-}")" "$(cpu "${MARIADB_PID:-}")" "$(cpu "${REDIS_PID:-}")")
cps=$(sed -n 's/.*calls_per_s=\([0-9.]*\).*/\1/p' <<<"$r")
ncalls=$(sed -n 's/.*calls=\([0-9]*\).*/\1/p' <<<"$r")
db=(--host="${SHARELINE_DB_HOST:-127.0.0.1}" --port="${SHARELINE_DB_PORT:-3306}" -u "${SHARELINE_DB_USER:-shareline_owner}" -p"${SHARELINE_DB_PASSWORD:-}")
mariadb "${db[@]}" "${SHARELINE_DB_NAME:-shareline}" -e "CREATE TABLE IF NOT EXISTS bench_slap (id INT PRIMARY KEY, v BIGINT NOT NULL) ENGINE=InnoDB;
    INSERT IGNORE INTO bench_slap VALUES (1,0),(2,0),(3,0),(4,0),(5,0),(6,0),(7,0),(8,0),(9,0),(10,0),(11,0),(12,0),(13,0),(14,0),(15,0),(16,0)"
q=16000
m0=$(cpu "${MARIADB_PID:-}")
s=$(mariadb-slap "${db[@]}" --create-schema="${SHARELINE_DB_NAME:-shareline}" --concurrency=16 --number-of-queries=$q \
    --query="UPDATE bench_slap SET v = v + 1 WHERE id = CONNECTION_ID() % 16 + 1" 2>/dev/null |
    awk '/Average number of seconds/ {print $(NF - 1)}')
m1=$(cpu "${MARIADB_PID:-}")
tps=$(awk -v q=$q -v s="$s" 'BEGIN {if (s > 0) printf "%.0f", q / s; else print 0}')
mariadb "${db[@]}" "${SHARELINE_DB_NAME:-shareline}" -e "DROP TABLE IF EXISTS bench_slap"
{
    echo
    echo "Owner calls/s, 16 clients (SetExchangesHidden toggles on 16 public sessions of 1 exchange, rpc_bench): ${cps:-n/a};"
    echo "bare one-row UPDATE transactions of the same MariaDB, 16 clients (mariadb-slap, $q autocommit UPDATEs): $tps tx/s;"
    echo "ratio $(awk -v a="${cps:-0}" -v b="$tps" 'BEGIN {if (b > 0) printf "%.3f", a / b; else print "n/a"}') (target >= 0.5)."
    if [ -n "${c0[0]}" ] && [ -n "${c0[1]}" ] && [ -n "${c0[2]}" ] && [ -n "$m0" ] && [ "${ncalls:-0}" -gt 0 ]; then
        read -r bu bs < <(tail -n 1 "$OUT/rpc_bench.time")
        per() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN {printf "%.0f", (b - a) * 1e6 / n}'; }
        echo
        echo "CPU per owner call in that run (user + system, µs): shareline $(per "${c0[0]}" "${c1[0]}" "$ncalls"),"
        echo "mariadbd $(per "${c0[1]}" "${c1[1]}" "$ncalls"), redis-server $(per "${c0[2]}" "${c1[2]}" "$ncalls"),"
        echo "the client (rpc_bench) $(per 0 "$(awk -v u="$bu" -v s="$bs" 'BEGIN {print u + s}')" "$ncalls");"
        echo "mariadbd per slap transaction: $(per "$m0" "$m1" "$q") µs. At the target rate the machine's $(nproc) cores"
        echo "leave $(awk -v t="$tps" -v c="$(nproc)" 'BEGIN {printf "%.0f", c * 1e6 / (t / 2)}') µs of CPU per owner call for all four processes together."
    fi
} >>"$OUT/report.md"
