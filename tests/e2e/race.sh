#!/usr/bin/env bash
# Concurrent public GETs (HTTP/2) while the owner hides, shows, deletes and
# revokes thousands of times, each toggled exchange carrying a unique canary (tests/race/race_check.c).
source "$(dirname "$0")/lib.sh"
setup_server racer
SID="race-$$"
sync_fixture "$TOKEN" "$SL_SOURCE_DIR/tests/fixtures/demo-session.md" "$SID" '{"project": {"name": "race"}}' >/dev/null
check "session synced" eq "$(status)" 200
CYCLES=${SL_RACE_CYCLES:-1000}
READERS=${SL_RACE_READERS:-3}
out=$("$SL_BUILD_DIR/tests/race/race_check" "$URL" "$TOKEN" "$SID" "$CYCLES" "$READERS")
rc=$?
echo "$out"
check "race check: $CYCLES cycles, zero violations" eq "$rc" 0
check "the server is still alive" kill -0 "$SERVER_PID"
