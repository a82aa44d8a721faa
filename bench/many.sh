#!/usr/bin/env bash
# Many shares (part of `make bench`, called by bench/run.sh with its services up): the long tail.
# N public sessions of realistic sizes (1,000 / 10,000 / 100,000 by default) read in random order,
# uniform and Zipf(0.99), over HTTP/2 (h2load) and HTTP/1.1 (wrk), against Debian's h2o serving the
# very same JSON bytes as static files, in the same run; the node's memory budget above the working
# set and at a tenth of it. Reports req/s and p99 ratios, node RSS against its budget, and Redis bytes
# per session against the JSON size.
#
# Seeding (the documented bulk path, README "Bench"): four of our SpecStory fixtures are synced
# through the RPCs and made public (the templates); `many-<i>` are copies of template i mod 4 made
# with INSERT ... SELECT in MariaDB (sessions and exchanges rows, nothing else), so they reach Redis
# the way a long tail does after a restart: the first read of each rebuilds it (one rebuild per
# session, the lease rule), here with one h2load pass over every id.
#
# Needs: OUT, TOKEN and the services' environment (SHARELINE_DB_*, SHARELINE_REDIS_PORT) set by
# bench/run.sh; h2load, wrk, h2o, curl, jq, mariadb, redis-cli. Ports: node 18090, h2o 18445.
set -euo pipefail
: "${OUT:?}" "${TOKEN:?}"
root=$(cd "$(dirname "$0")/.." && pwd)
SIZES=${SL_BENCH_MANY:-"1000 10000 100000"}
DUR=${SL_BENCH_MANY_DURATION:-6}
REPEATS=${SL_BENCH_MANY_REPEATS:-3}
PORT=18090
url=http://127.0.0.1:$PORT
REF_PORT=18445
ref=http://127.0.0.1:$REF_PORT
refdir="$OUT/many-ref"
work="$OUT/many"
mkdir -p "$refdir" "$work"
. "$root/bench/lib.sh"
max=0
for n in $SIZES; do [ "$n" -gt "$max" ] && max=$n; done
sql() { mariadb --no-defaults -h 127.0.0.1 -P "$SHARELINE_DB_PORT" -u "$SHARELINE_DB_USER" \
    -p"$SHARELINE_DB_PASSWORD" "$SHARELINE_DB_NAME" -N -B "$@"; }
rcli() { redis-cli -h 127.0.0.1 -p "$SHARELINE_REDIS_PORT" --no-auth-warning "$@"; }

# room in Redis for every entry (about 1x the JSON, bounded above by 20 KB a session here) — the
# local services cap Redis at 512 MB (volatile-lru): the long tail would be evicted and rebuilt
old_maxmemory=$(rcli CONFIG GET maxmemory | tail -1)
rcli CONFIG SET maxmemory $(( (512 << 20) + max * 20480 )) >/dev/null
node=""
stop_node() { [ -n "$node" ] && { kill "$node" 2>/dev/null; wait "$node" 2>/dev/null || true; }; node=""; }
start_node() { # budget-bytes
    stop_node
    SHARELINE_PORT=$PORT SHARELINE_REDIS_PREFIX="many:" SHARELINE_NODE_MEMORY_BYTES=$1 \
        taskset -c 0 "$root/build/shareline" serve >>"$work/server.log" 2>&1 &
    node=$!
    for _ in $(seq 1 200); do curl -fsS -o /dev/null "$url/readyz" 2>/dev/null && break; sleep 0.05; done
    for _ in $(seq 1 200); do
        [ "$(curl -s "$url/metrics" | awk '$1 == "shareline_node_coherent" {print $2}')" = 1 ] && break
        sleep 0.05
    done
}
ref_pid=""
trap 'stop_node; [ -n "$ref_pid" ] && kill "$ref_pid" 2>/dev/null; rcli CONFIG SET maxmemory "$old_maxmemory" >/dev/null; true' EXIT

# ---- templates through the RPCs, then the bulk copies ----
start_node $((256 << 20))
rpc() { curl -sS --http2-prior-knowledge -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        --data-binary @- "$url/rpc/shareline.v1.Sessions/$1"; }
fixtures="codex-cli-v21 gemini-cli-v21 cursor-ide-v21 cursor-cli-v21"
k=0
for f in $fixtures; do
    jq -n --rawfile md "$root/tests/fixtures/specstory/$f.md" --arg id "many-tpl-$k" \
        '{session_id:$id, project:{name:"many"}, markdown:$md}' | rpc SyncSession >/dev/null
    echo "{\"session_id\":\"many-tpl-$k\",\"public\":true}" | rpc SetVisibility >/dev/null
    k=$((k + 1))
done
have=$(sql -e "SELECT COUNT(*) FROM sessions WHERE id LIKE 'many-%' AND id NOT LIKE 'many-tpl-%'")
t0=$(date +%s)
if [ "$have" -lt "$max" ]; then
    cols() { sql -e "SELECT GROUP_CONCAT(column_name ORDER BY ordinal_position) FROM information_schema.columns
                     WHERE table_schema = DATABASE() AND table_name = '$1' AND column_name NOT IN ($2)
                     AND is_generated = 'NEVER'"; } # generated columns (title_md5) are computed by MariaDB
    scols=$(cols sessions "'id'")
    ecols=$(cols exchanges "'session_id'")
    tsel=$(sed 's/\([a-z_0-9]*\)/t.\1/g' <<<"$scols")
    esel=$(sed 's/\([a-z_0-9]*\)/e.\1/g' <<<"$ecols")
    step=10000
    for ((lo = have + 1; lo <= max; lo += step)); do
        hi=$((lo + step - 1)); [ "$hi" -gt "$max" ] && hi=$max
        sql -e "SET SESSION foreign_key_checks = 1;
            INSERT INTO sessions (id, $scols) SELECT CONCAT('many-', s.seq), $tsel
              FROM seq_${lo}_to_${hi} s JOIN sessions t ON t.id = CONCAT('many-tpl-', s.seq % 4);
            INSERT INTO exchanges (session_id, $ecols) SELECT CONCAT('many-', s.seq), $esel
              FROM seq_${lo}_to_${hi} s JOIN exchanges e ON e.session_id = CONCAT('many-tpl-', s.seq % 4);"
    done
fi
seeded_s=$(( $(date +%s) - t0 ))

# ---- warm Redis: one read of every id (each rebuilds once), kept as the reference files. HTTP/1.1
# connections in parallel: curl 7.88 fails multiplexed prior-knowledge HTTP/2 transfers (h2o too) ----
seq 1 "$max" | sed "s|^|/api/v1/share/many-|" >"$work/all.paths"
t0=$(date +%s)
if [ "$(find "$refdir" -maxdepth 1 -name 'many-*' | wc -l)" -lt "$max" ]; then
    awk -v u="$url" -v d="$refdir" '{ id = $0; sub("^/api/v1/share/", "", id)
        printf "url = \"%s%s\"\noutput = \"%s/%s\"\n", u, $0, d, id }' "$work/all.paths" >"$work/curl.cfg"
    taskset -c 1 curl -sS --no-progress-meter -Z --parallel-max 32 -w '%{http_code}\n' -K "$work/curl.cfg" \
        >"$work/warm.codes" || true
else
    # files from an earlier run: read every id once all the same (Redis was emptied with its services)
    awk -v u="$url" '{ printf "url = \"%s%s\"\noutput = \"/dev/null\"\n", u, $0 }' "$work/all.paths" >"$work/curl.cfg"
    taskset -c 1 curl -sS --no-progress-meter -Z --parallel-max 32 -w '%{http_code}\n' -K "$work/curl.cfg" \
        >"$work/warm.codes" || true
fi
warm_s=$(( $(date +%s) - t0 ))
warm_ok=$(grep -c '^200$' "$work/warm.codes" || true)
json_total=$(find "$refdir" -maxdepth 1 -name 'many-*' -printf '%f %s\n' |
    awk -v m="$max" '{ i = substr($1, 6) + 0; if (i >= 1 && i <= m) s += $2 } END {printf "%d", s}')

# Redis bytes per session against its JSON: MEMORY USAGE of a sample of entries (every 97th id) and
# of the blobs of pieces each names (bench/redis_bytes.py)
redis_ratio() { # n -> "avg-redis-bytes avg-json-bytes ratio"
    local i ids=() sid e b rs=0 js=0 c=0 j
    for ((i = 1; i <= $1; i += 97)); do ids+=("many-$i"); done
    while read -r sid e b _; do
        j=$(stat -c %s "$refdir/$sid" 2>/dev/null || echo 0)
        [ "$e" -gt 0 ] && [ "$j" -gt 0 ] || continue
        rs=$((rs + e + b)); js=$((js + j)); c=$((c + 1))
    done < <(python3 "$root/bench/redis_bytes.py" "$SHARELINE_REDIS_PORT" "many:" "${ids[@]}")
    awk -v r="$rs" -v j="$js" -v c="$c" 'BEGIN {if (c && j) printf "%d %d %.2f\n", r / c, j / c, r / j; else print "0 0 nan"}'
}

# ---- the reference: h2o serving the same bytes from files ----
h2o_conf "$work/h2o.conf" "$REF_PORT" "$refdir" "$work/h2o-error.log"
taskset -c 0 h2o -c "$work/h2o.conf" >/dev/null 2>&1 &
ref_pid=$!
for _ in $(seq 1 200); do curl -fsS -o /dev/null "$ref/api/v1/share/many-1" 2>/dev/null && break; sleep 0.1; done
cmp -s <(curl -s "$ref/api/v1/share/many-7") <(curl -s --http2-prior-knowledge "$url/api/v1/share/many-7") \
    || { echo "many: the reference serves other bytes" >&2; exit 1; }
ref_headers_check "$ref/api/v1/share/many-7"
for p in $(pgrep -f "redis-server 127.0.0.1:$SHARELINE_REDIS_PORT") $(pgrep -f "port=$SHARELINE_DB_PORT"); do
    taskset -a -cp 0 "$p" >/dev/null || true
done

# ---- samples: DIST N -> 32 files of 40,000 paths (one per HTTP/2 load process), each its own order ----
LOADERS=32
samples() {
    local dist=$1 n=$2
    awk -v n="$n" -v m=40000 -v dist="$dist" -v files="$LOADERS" -v out="$work/$dist-$n" 'BEGIN {
        srand(n + (dist == "zipf"))
        if (dist == "zipf") for (k = 1; k <= n; k++) { s += 1 / (k ^ 0.99); c[k] = s }
        for (f = 0; f < files; f++) {
            file = out "." f ".paths"
            for (i = 0; i < m; i++) {
                if (dist == "zipf") {
                    x = rand() * s; lo = 1; hi = n
                    while (lo < hi) { mid = int((lo + hi) / 2); if (c[mid] < x) lo = mid + 1; else hi = mid }
                } else lo = 1 + int(rand() * n)
                print "/api/v1/share/many-" lo > file
            }
            close(file)
        }
    }'
}
h2run() { # base dist n -> "rps p99_ms": 32 h2load processes, one connection with 4 streams each, every
    # process its own random order (the clients of one h2load process walk its list in step)
    local i pids=() rps=0 p99 f
    for ((i = 0; i < LOADERS; i++)); do
        sed "s|^|$1|" "$work/$2-$3.$i.paths" >"$work/run.$i.urls"
        rm -f "$work/h2load.$i.log"
        taskset -c 1 h2load -c 1 -m 4 -t 1 -D "$DUR" --warm-up-time=2 --log-file="$work/h2load.$i.log" \
            -i "$work/run.$i.urls" >"$work/h2load.$i.out" 2>&1 &
        pids+=($!)
    done
    wait "${pids[@]}" || true
    for ((i = 0; i < LOADERS; i++)); do
        f=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' "$work/h2load.$i.out")
        rps=$(awk -v a="$rps" -v b="${f:-0}" 'BEGIN {printf "%.1f", a + b}')
    done
    p99=$(cat "$work"/h2load.*.log | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {if (NR) printf "%.3f", a[int(NR*0.99)]/1000; else print "nan"}')
    echo "$rps $p99"
}
h1run() { # base dist n -> "rps p99_ms" (wrk, 32 connections, each request a random line of the sample)
    cat >"$work/pick.lua" <<LUA
paths = {}
for line in io.lines("$work/$2-$3.0.paths") do paths[#paths + 1] = line end
math.randomseed(os.time())
request = function() return wrk.format("GET", paths[math.random(#paths)]) end
LUA
    # wrk has no warm-up option: 2 s of the same load first, not measured (as h2load's --warm-up-time)
    taskset -c 1 wrk -t1 -c 32 -d 2s -s "$work/pick.lua" "$1" >/dev/null 2>&1 || true
    taskset -c 1 wrk -t1 -c 32 -d "${DUR}s" --latency -s "$work/pick.lua" "$1" >"$work/wrk.out" 2>&1 || true
    wrk_figures "$work/wrk.out"
}
metric() { curl -s "$url/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

{
    echo
    echo "## Many shares: the long tail, shareline vs h2o static (same bytes), $REPEATS pairs of ${DUR} s runs per point"
    echo
    echo "Sessions: copies of four SpecStory fixtures ($fixtures), $max in all, $json_total bytes of JSON"
    echo "(seeded in ${seeded_s} s; one read of each to fill Redis took ${warm_s} s, $warm_ok of $max answered 200)."
    echo "HTTP/2: 32 h2load processes x 1 connection x 4 streams, each its own random order; HTTP/1.1: wrk, 32"
    echo "connections, a random path per request. Node budget: SHARELINE_NODE_MEMORY_BYTES; the node is restarted"
    echo "(empty memory) for each budget and fills during the 2 s warm-up of each run. RSS: the node's peak (VmHWM)."
    echo
    echo "| sessions | order | protocol | budget | shareline req/s | h2o req/s | ratio | capacity ratio | shareline p99 ms | h2o p99 ms | p99 ratio | copies hit % | node peak RSS MB | RSS - budget MB | target |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
} >>"$OUT/report.md"

point() { # n dist tool budget-label budget-bytes target
    local n=$1 dist=$2 tool=$3 label=$4 budget=$5 want=$6
    start_node "$budget"
    local h0 m0; h0=$(metric shareline_share_copies_hits_total); m0=$(metric shareline_share_copies_misses_total)
    read -r a ap b bp ratio pr cap _ < <(bench_pairs "many $tool $dist n=$n" "$tool" "$url" "$ref" "$dist" "$n")
    local h1 m1; h1=$(metric shareline_share_copies_hits_total); m1=$(metric shareline_share_copies_misses_total)
    local hit; hit=$(awk -v h=$((h1 - h0)) -v m=$((m1 - m0)) 'BEGIN {printf "%.1f", (h + m) ? 100 * h / (h + m) : 0}')
    local hwm; hwm=$(awk '/^VmHWM/ {printf "%d", $2 / 1024}' "/proc/$node/status")
    local over=$((hwm - budget / 1048576))
    local ok
    case "$want" in
    tail) ok=$(awk -v r="$ratio" -v p="$pr" 'BEGIN {print (r >= 0.9 && p <= 1.5) ? "met (>= 0.9, p99 <= 1.5)" : "MISSED (>= 0.9, p99 <= 1.5)"}') ;;
    zipf) ok=$(awk -v r="$ratio" 'BEGIN {print (r >= 0.5) ? "met (>= 0.5)" : "MISSED (>= 0.5)"}') ;;
    *) ok="-" ;;
    esac
    [ "$over" -le 64 ] || ok="$ok; RSS over budget + 64 MB"
    printf '| %s | %s | %s | %s | %s | %s | %.3f | %.3f | %s | %s | %.2f | %s | %s | %s | %s |\n' "$n" "$dist" \
        "$([ "$tool" = h2run ] && echo HTTP/2 || echo HTTP/1.1)" "$label" "$a" "$b" "$ratio" "$cap" "$ap" "$bp" "$pr" \
        "$hit" "$hwm" "$over" "$ok" >>"$OUT/report.md"
}

for n in $SIZES; do
    samples uniform "$n"
    samples zipf "$n"
    ws=$(find "$refdir" -maxdepth 1 -name 'many-*' -printf '%f %s\n' |
        awk -v m="$n" '{ i = substr($1, 6) + 0; if (i >= 1 && i <= m) s += $2 } END {printf "%d", s}')
    above=$(( ws * 3 + (64 << 20) ))  # JSON of every session, with room
    tenth=$(( ws / 10 > (1 << 20) ? ws / 10 : (1 << 20) ))
    if [ "$n" -le 10000 ]; then
        point "$n" uniform h2run "above ($((above >> 20)) MB)" "$above" tail
        point "$n" uniform h1run "above ($((above >> 20)) MB)" "$above" tail
        point "$n" zipf h2run "above ($((above >> 20)) MB)" "$above" -
        point "$n" uniform h2run "10% ($((tenth >> 20)) MB)" "$tenth" -
    else
        point "$n" zipf h2run "10% ($((tenth >> 20)) MB)" "$tenth" zipf
        point "$n" zipf h1run "10% ($((tenth >> 20)) MB)" "$tenth" zipf
        point "$n" uniform h2run "10% ($((tenth >> 20)) MB)" "$tenth" -
    fi
    read -r rb jb rr < <(redis_ratio "$n")
    echo "$n $rb $jb $rr" >>"$work/redis-ratio.txt"
done
{
    echo
    echo "Redis bytes per session (MEMORY USAGE of every 97th entry and of the blobs of pieces it names): "
    while read -r n rb jb rr; do
        echo "- first $n sessions: $rb bytes per entry for $jb bytes of JSON: $rr x (target <= 2)"
    done <"$work/redis-ratio.txt"
    echo "- Redis used_memory at the end (every prefix: these $max entries and the rest of the bench): $(rcli INFO memory | awk -F: '/^used_memory:/ {printf "%d MB", $2 / 1048576}'), for $((json_total >> 20)) MB of JSON in these sessions"
} >>"$OUT/report.md"
rm -f "$work/redis-ratio.txt"
