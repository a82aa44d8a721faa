#!/usr/bin/env bash
# `make test`: checks formatting (scripts/lint.sh), builds twice (normal, then AddressSanitizer +
# UndefinedBehaviorSanitizer) and runs the whole ctest suite in each, then runs each libFuzzer
# target for about a minute (scripts/fuzz.sh). ctest's `services` fixture starts a real
# redis-server and mariadbd on ports of their own under <build>/testvar and stops them afterwards.
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-2}
status=0

echo "==> lint (scripts/lint.sh)"
bash scripts/lint.sh || status=1

run_suite() { # build-dir extra-cmake-args...
    local dir=$1; shift
    echo "==> configure $dir $*"
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
    echo "==> build $dir"
    cmake --build "$dir" -j"$jobs"
    echo "==> test $dir"
    (cd "$dir" && ctest --output-on-failure --timeout 900) || status=1
}

run_suite build
run_suite build-asan -DSL_SANITIZE=ON -DSL_TEST_REDIS_PORT=26479 -DSL_TEST_MARIADB_PORT=23406 -DSL_TEST_HTTP_PORT=28180

# libFuzzer: each target about a minute (SL_FUZZ_SECONDS), figures in build-fuzz/fuzz-summary.txt
echo "==> fuzz (scripts/fuzz.sh)"
bash scripts/fuzz.sh || status=1

if [ $status -ne 0 ]; then
    echo "make test: FAILED" >&2
else
    echo "make test: all suites passed (normal and ASan+UBSan)"
fi
exit $status
