# Shared by bench/serve.sh and bench/many.sh (sourced): pairs of runs against the reference, their
# medians, wrk's figures, and the h2o configuration of the reference.

median() { sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else printf "%.10g\n", (a[NR/2]+a[NR/2+1])/2}'; }

# wrk_figures FILE -> "rps p99_ms" from wrk --latency output
wrk_figures() {
    local rps p99
    rps=$(awk '/^Requests\/sec/ {print $2}' "$1")
    p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub("us","",v); v/=1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v*=1000}; printf "%.3f", v}' "$1")
    echo "${rps:-0} ${p99:-nan}"
}

# cores_busy -> "busy0 idle0 busy1 idle1": clock ticks of core 0 (the servers) and core 1 (the load
# generator) from /proc/stat
cores_busy() {
    awk '/^cpu0 / {b0 = $2 + $3 + $4 + $7 + $8; i0 = $5 + $6} /^cpu1 / {b1 = $2 + $3 + $4 + $7 + $8; i1 = $5 + $6}
         END {print b0, i0, b1, i1}' /proc/stat
}

# run_busy TOOL URL ARGS... -> "rps p99_ms server-core-busy load-core-busy" (busy: fractions of the run)
run_busy() {
    local s e r p
    s=$(cores_busy)
    read -r r p < <("$@")
    e=$(cores_busy)
    echo "$r $p $(awk -v s="$s" -v e="$e" 'BEGIN {split(s, a); split(e, b);
        d0 = (b[1] - a[1]) + (b[2] - a[2]); d1 = (b[3] - a[3]) + (b[4] - a[4]);
        printf "%.4f %.4f", (d0 > 0 ? (b[1] - a[1]) / d0 : 0), (d1 > 0 ? (b[3] - a[3]) / d1 : 0)}')"
}

# bench_pairs LABEL TOOL A B [ARGS...] -> "rps-a p99-a rps-b p99-b ratio p99-ratio capacity-ratio
# busy-a busy-b load-a load-b": REPEATS pairs of runs of `TOOL A ARGS` (shareline) and `TOOL B ARGS`
# (the reference), back to back within a pair, the order alternating (A B, B A, ...). The ratios are
# medians of the per-pair ratios: this machine's speed drifts by tens of percent within seconds, and
# a pair's two runs share the drift where medians taken over each server's runs separately do not.
# The capacity ratio is that of requests per second of the server core's time (req/s divided by how
# busy core 0 was): with one core for the load generator, the generator is often the bottleneck
# (its core 97-100% busy, the server's not), and then req/s measures the generator, not the server;
# requests per server-core second rank the servers in both regimes (when the server is the
# bottleneck the two ratios agree). busy-*/load-*: medians of core 0's / core 1's busy fraction.
# Every run goes to $OUT/serve-runs.log.
bench_pairs() {
    local label=$1 tool=$2 a=$3 b=$4 ra=() pa=() rb=() pb=() rr=() pr=() cr=() ba=() bb=() la=() lb=() i
    local r p r2 p2 s s2 l l2
    shift 4
    for i in $(seq 1 "$REPEATS"); do
        if [ $((i % 2)) -eq 1 ]; then
            read -r r p s l < <(run_busy "$tool" "$a" "$@"); read -r r2 p2 s2 l2 < <(run_busy "$tool" "$b" "$@")
        else
            read -r r2 p2 s2 l2 < <(run_busy "$tool" "$b" "$@"); read -r r p s l < <(run_busy "$tool" "$a" "$@")
        fi
        ra+=("$r"); pa+=("$p"); rb+=("$r2"); pb+=("$p2"); ba+=("$s"); bb+=("$s2"); la+=("$l"); lb+=("$l2")
        rr+=("$(awk -v a="$r" -v b="$r2" 'BEGIN {printf "%.4f", (b > 0 ? a / b : 0)}')")
        pr+=("$(awk -v a="$p" -v b="$p2" 'BEGIN {printf "%.4f", (b > 0 ? a / b : 0)}')")
        cr+=("$(awk -v a="$r" -v b="$r2" -v x="$s" -v y="$s2" 'BEGIN {printf "%.4f", (b > 0 && x > 0 && y > 0 ? (a / x) / (b / y) : 0)}')")
        echo "$label pair $i: shareline $r req/s p99 $p ms core0 $s core1 $l, h2o $r2 req/s p99 $p2 ms core0 $s2 core1 $l2" \
            >>"$OUT/serve-runs.log"
    done
    echo "$(printf '%s\n' "${ra[@]}" | median) $(printf '%s\n' "${pa[@]}" | median)" \
        "$(printf '%s\n' "${rb[@]}" | median) $(printf '%s\n' "${pb[@]}" | median)" \
        "$(printf '%s\n' "${rr[@]}" | median) $(printf '%s\n' "${pr[@]}" | median)" \
        "$(printf '%s\n' "${cr[@]}" | median)" \
        "$(printf '%s\n' "${ba[@]}" | median) $(printf '%s\n' "${bb[@]}" | median)" \
        "$(printf '%s\n' "${la[@]}" | median) $(printf '%s\n' "${lb[@]}" | median)"
}

# h2o_conf FILE PORT DIR ERRLOG: h2o serving DIR under /api/v1/share on 127.0.0.1:PORT, one thread.
# The reference answers with the response headers a shareline JSON GET carries (content type,
# cache-control, x-robots-tag, nosniff, referrer-policy, vary) besides its own (last-modified,
# etag, accept-ranges): the load generator has one core, and it parses every header of every
# response, so a reference with fewer headers costs the client less per response and the ratio
# measured the client, not the server (README "Bench", measured there). Duplicate header.add keys
# are how h2o 2.2.5's configuration takes several headers; the bench checks they are all sent.
h2o_conf() {
    cat >"$1" <<CONF
listen:
  host: 127.0.0.1
  port: $2
num-threads: 1
hosts:
  default:
    paths:
      /api/v1/share:
        file.dir: $3
        file.mime.settypes: {}
        file.mime.setdefaulttype: "application/json; charset=utf-8"
        header.set: "cache-control: no-cache"
        header.add: "x-robots-tag: noindex, nofollow"
        header.add: "x-content-type-options: nosniff"
        header.add: "referrer-policy: no-referrer"
        header.add: "vary: Accept, Accept-Encoding"
access-log: /dev/null
error-log: $4
CONF
}

# ref_headers_check URL: the reference sends every header of h2o_conf (else exit 1)
ref_headers_check() {
    local h; h=$(curl -sS -o /dev/null -D - "$1" | tr -d '\r' | tr 'A-Z' 'a-z')
    for want in 'content-type: application/json; charset=utf-8' 'cache-control: no-cache' \
        'x-robots-tag: noindex, nofollow' 'x-content-type-options: nosniff' \
        'referrer-policy: no-referrer' 'vary: accept, accept-encoding'; do
        grep -qxF "$want" <<<"$h" || { echo "the reference does not send '$want'" >&2; exit 1; }
    done
}
