#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -fsanitize=fuzzer,address,undefined) in build-fuzz and runs
# each for SL_FUZZ_SECONDS (default 60) on a scratch copy of its seed corpus plus the crash
# regressions (tests/fuzz/corpus/<t>, tests/fuzz/regressions/<t>). `make test` runs it with the
# default; `make fuzz FUZZ_SECONDS=3600` is the long run. A crash, leak, timeout (10 s per input; 2 s
# for the renderer and the importer, whose inputs go up to 256 KB) or
# out-of-memory (2 GiB) fails it and prints the input's path; see tests/fuzz/README.md.
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${SL_FUZZ_SECONDS:-60}
jobs=${JOBS:-2}
dir=build-fuzz
targets=${SL_FUZZ_TARGETS:-"msgpack json specstory route render"}
status=0
echo "==> configure $dir (clang, libFuzzer)"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DSL_FUZZ=ON >/dev/null || exit 1
echo "==> build $dir"
cmake --build "$dir" -j"$jobs" || exit 1
: >"$dir/fuzz-summary.txt"
for t in $targets; do
    work="$dir/run-$t"
    rm -rf "$work"
    mkdir -p "$work/corpus" "$work/artifacts"
    cp tests/fuzz/corpus/"$t"/* "$work/corpus/"
    cp tests/fuzz/regressions/"$t"/* "$work/corpus/" 2>/dev/null || true
    echo "==> fuzz_$t for $secs s"
    # The renderer and the importer get inputs up to 256 KB and 2 s each: a super-linear construct
    # (256 KB of unclosed openers took 3.8 s in the old renderer) is a timeout, hence a failure.
    limits="-timeout=10"
    case $t in render | specstory) limits="-timeout=2 -max_len=262144" ;; esac
    "$dir/tests/fuzz/fuzz_$t" -max_total_time="$secs" -rss_limit_mb=2048 $limits -print_final_stats=1 \
        -artifact_prefix="$work/artifacts/" "$work/corpus" >"$work/log" 2>&1
    rc=$?
    execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$work/log")
    cov=$(grep -o 'cov: [0-9]*' "$work/log" | tail -1 | awk '{print $2}')
    line="fuzz_$t: ${execs:-0} executions in $secs s, coverage ${cov:-?} edges, corpus $(ls "$work/corpus" | wc -l) inputs"
    if [ $rc -ne 0 ] || [ -n "$(ls -A "$work/artifacts")" ]; then
        status=1
        line="$line: FAILED (exit $rc)"
        tail -40 "$work/log"
        for a in "$work"/artifacts/*; do [ -e "$a" ] && echo "crash input: $a (copy it into tests/fuzz/regressions/$t/)"; done
    fi
    echo "$line" | tee -a "$dir/fuzz-summary.txt"
done
exit $status
