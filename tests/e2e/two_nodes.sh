#!/usr/bin/env bash
# Two nodes on one Redis and one MariaDB, each answering public GETs from its own memory
# (cache/cache.h, "node memory"): owner calls go to node A, viewers read from node B.
#  1. the race check of race.sh with every reader on B (no GET that starts after an owner call
#     returned on A shows what it removed), while B answers from memory;
#  2. B frozen (SIGSTOP) during an owner call on A: the call waits B's lease out and returns; the
#     first GET on B after it is thawed already shows the change;
#  3. SHARELINE_NODE_MEMORY=0 on B: B asks Redis every time and still agrees.
source "$(dirname "$0")/lib.sh"
before_finish() { stop_b; }
bmetric() { curl -sS "$B_URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
coherent_b() { for _ in $(seq 1 100); do [ "$(bmetric shareline_node_coherent)" = 1 ] && return 0; sleep 0.05; done; return 1; }

setup_server twonodes # node A
start_b || { not_ok "node B starts"; exit 1; }
check "node B trusts its memory (lease confirmed)" coherent_b
SID="two-$$"
sync_fixture "$TOKEN" "$SL_SOURCE_DIR/tests/fixtures/demo-session.md" "$SID" '{"project": {"name": "two"}}' >/dev/null
check "session synced on A" eq "$(status)" 200

# ---- 1. race: owner on A, readers on B ----
hits0=$(bmetric shareline_public_memory_hits_total)
CYCLES=${SL_RACE_CYCLES:-600}
out=$(SL_RACE_READ_URL=$B_URL "$SL_BUILD_DIR/tests/race/race_check" "$URL" "$TOKEN" "$SID" "$CYCLES" "${SL_RACE_READERS:-3}")
rc=$?
echo "$out"
check "race check across nodes: $CYCLES cycles, zero violations" eq "$rc" 0
hits1=$(bmetric shareline_public_memory_hits_total)
echo "     node B: $((hits1 - hits0)) GETs answered from memory, $(bmetric shareline_node_invalidations_received_total) invalidations received"
check "node B answered from its memory during the race" test "$((hits1 - hits0))" -gt 0
check "node B received A's invalidations" test "$(bmetric shareline_node_invalidations_received_total)" -gt 0
check "node A received B's acknowledgements" test "$(metric shareline_node_acks_received_total)" -gt 0
check "no lease was waited out while both nodes were up" eq "$(metric shareline_node_lease_waits_total)" 0

# ---- 2. B frozen during an owner call ----
rpc "$TOKEN" SetVisibility "{\"session_id\":\"$SID\",\"public\":true}" >/dev/null
doc=$(curl -sS --http2-prior-knowledge "$B_URL/api/v1/share/$SID")
curl -sS --http2-prior-knowledge -o /dev/null "$B_URL/api/v1/share/$SID" # now from B's memory
n_before=$(jq -r .exchange_count <<<"$doc")
HID=$(jq -r '.exchanges[0].id' <<<"$doc")
CANARY=$(jq -r '.exchanges[0].prompt' <<<"$doc" | head -c 40)
check "B serves the session ($n_before exchanges)" test "$n_before" -gt 1
kill -STOP "$B_PID"
t0=$(date +%s%N)
rpc "$TOKEN" SetExchangesHidden "{\"session_id\":\"$SID\",\"exchange_ids\":[$HID],\"hidden\":true}" >/dev/null
st=$(status)
t1=$(date +%s%N)
kill -CONT "$B_PID"
after=$(curl -sS --http2-prior-knowledge -m 5 "$B_URL/api/v1/share/$SID")
check "hide on A returned 200 while B was frozen" eq "$st" 200
echo "     the call waited $(( (t1 - t0) / 1000000 )) ms for B's lease to lapse"
check "A waited B's lease out" test "$(metric shareline_node_lease_waits_total)" -ge 1
check "first GET on B after thawing: one exchange fewer" eq "$(jq -r .exchange_count <<<"$after")" "$((n_before - 1))"
check "first GET on B after thawing: hidden prompt absent" bash -c '! grep -qF -- "$1" <<<"$2"' _ "$CANARY" "$after"
check "B trusts its memory again" coherent_b

# ---- 3. B without node memory ----
stop_b
start_b SHARELINE_NODE_MEMORY=0 || { not_ok "node B restarts without memory"; exit 1; }
rpc "$TOKEN" SetExchangesHidden "{\"session_id\":\"$SID\",\"exchange_ids\":[$HID],\"hidden\":false}" >/dev/null
check "B without memory: the shown exchange is back" eq "$(curl -sS --http2-prior-knowledge "$B_URL/api/v1/share/$SID" | jq -r .exchange_count)" "$n_before"
check "B without memory exports no node metrics" eq "$(bmetric shareline_node_coherent)" ""
check "B without memory: no memory hits" eq "$(bmetric shareline_public_memory_hits_total)" 0
stop_b
if grep -qE 'AddressSanitizer|runtime error' "$WORK/server-b.log"; then not_ok "node B log has sanitizer reports"; cat "$WORK/server-b.log"; fi
