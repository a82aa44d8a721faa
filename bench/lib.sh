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

# bench_pairs LABEL TOOL A B [ARGS...] -> "rps-a p99-a rps-b p99-b ratio p99-ratio": REPEATS pairs of
# runs of `TOOL A ARGS` (shareline) and `TOOL B ARGS` (the reference), back to back within a pair,
# the order alternating (A B, B A, ...). The ratios are medians of the per-pair ratios: this
# machine's speed drifts by tens of percent within seconds, and a pair's two runs share the drift
# where medians taken over each server's runs separately do not. Every run goes to
# $OUT/serve-runs.log.
bench_pairs() {
    local label=$1 tool=$2 a=$3 b=$4 ra=() pa=() rb=() pb=() rr=() pr=() i r p r2 p2
    shift 4
    for i in $(seq 1 "$REPEATS"); do
        if [ $((i % 2)) -eq 1 ]; then
            read -r r p < <("$tool" "$a" "$@"); read -r r2 p2 < <("$tool" "$b" "$@")
        else
            read -r r2 p2 < <("$tool" "$b" "$@"); read -r r p < <("$tool" "$a" "$@")
        fi
        ra+=("$r"); pa+=("$p"); rb+=("$r2"); pb+=("$p2")
        rr+=("$(awk -v a="$r" -v b="$r2" 'BEGIN {printf "%.4f", (b > 0 ? a / b : 0)}')")
        pr+=("$(awk -v a="$p" -v b="$p2" 'BEGIN {printf "%.4f", (b > 0 ? a / b : 0)}')")
        echo "$label pair $i: shareline $r req/s p99 $p ms, h2o $r2 req/s p99 $p2 ms" >>"$OUT/serve-runs.log"
    done
    echo "$(printf '%s\n' "${ra[@]}" | median) $(printf '%s\n' "${pa[@]}" | median)" \
        "$(printf '%s\n' "${rb[@]}" | median) $(printf '%s\n' "${pb[@]}" | median)" \
        "$(printf '%s\n' "${rr[@]}" | median) $(printf '%s\n' "${pr[@]}" | median)"
}

# h2o_conf FILE PORT DIR ERRLOG: h2o serving DIR under /api/v1/share on 127.0.0.1:PORT, one thread
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
        file.mime.addtypes:
          application/json: .json
access-log: /dev/null
error-log: $4
CONF
}
