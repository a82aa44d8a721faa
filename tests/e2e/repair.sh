#!/usr/bin/env bash
# A publish that fails after the commit must not leave Redis showing what the owner removed
# (docs/invalidation.md, "Repair"). The test hook SHARELINE_TEST_FAIL_PUBLISH=N makes the publish
# after the Nth commit fail (as if Redis were unreachable for the whole retry window); the test then
# writes back the entry Redis held before the change (what a reader fill from a pre-commit read would
# leave if Redis had lost the MARK) and checks that
#   A. the owner's retry (which changes nothing) republishes before it answers 200;
#   B. without any owner call, the repair timer republishes within seconds;
#   C. a revoke whose publish failed is repaired by the next change of the (now private) session.
source "$(dirname "$0")/lib.sh"
rcli() { redis-cli -h 127.0.0.1 -p "$SHARELINE_REDIS_PORT" --no-auth-warning "$@"; }
sql() { mariadb --no-defaults -h 127.0.0.1 -P "$SHARELINE_DB_PORT" -u "$SHARELINE_DB_USER" \
    -p"$SHARELINE_DB_PASSWORD" "$SHARELINE_DB_NAME" -N -B -e "$1"; }
export SHARELINE_TEST_FAIL_PUBLISH=2
setup_server repairer

# new_public SID -> a public session of two exchanges, the second with canary SID-CANARY (publish 1)
new_public() {
    local md
    md=$(printf '_**User**_\n\nfirst prompt\n\n---\n\n_**Agent**_\n\nfine\n\n---\n\n_**User**_\n\nsecond %s-CANARY\n\n---\n\n_**Agent**_\n\nok\n' "$1")
    rpc "$TOKEN" SyncSession "$(jq -n --arg sid "$1" --arg md "$md" '{session_id:$sid, project:{name:"repair"}, markdown:$md}')" >/dev/null
    rpc "$TOKEN" SetVisibility "{\"session_id\":\"$1\",\"public\":true}" >/dev/null
    [ "$(status)" = 200 ]
}
shows() { get "/api/v1/share/$1" >/dev/null; grep -q "$1-CANARY" "$WORK/get.body"; }
hides() { get "/api/v1/share/$1" >/dev/null && ! grep -q "$1-CANARY" "$WORK/get.body"; }
second_id() { rpc "$TOKEN" GetSession "{\"session_id\":\"$1\"}" | jq -r '.exchanges[1].id'; }
save_entry() { rcli --raw GET "${SHARELINE_REDIS_PREFIX}p:$1" | head -c -1 >"$WORK/entry.$1"; }
restore_entry() { rcli -x SET "${SHARELINE_REDIS_PREFIX}p:$1" <"$WORK/entry.$1" >/dev/null; }
dirty() { sql "SELECT cache_dirty FROM sessions WHERE id = '$1'"; }

# ---- A: the retry repairs ----
A="repair-a-$$"
check "A: public session" new_public "$A"
check "A: the canary is public" shows "$A"
save_entry "$A"
check "A: Redis holds the entry (P...)" test "$(head -c 1 "$WORK/entry.$A")" = P
EX=$(second_id "$A")
rpc "$TOKEN" SetExchangesHidden "{\"session_id\":\"$A\",\"exchange_ids\":[$EX],\"hidden\":true}" >/dev/null
check "A: hide with a failing publish answers 503" eq "$(status)" 503
check "A: ... saying the change was saved" grep -q "saved" "$WORK/body"
check "A: the session is marked dirty in MariaDB" eq "$(dirty "$A")" 1
check "A: the MARK keeps readers on MariaDB: canary not shown" hides "$A"
restore_entry "$A"
check "A: with the old entry written back, the canary shows (the hazard is real)" shows "$A"
rpc "$TOKEN" SetExchangesHidden "{\"session_id\":\"$A\",\"exchange_ids\":[$EX],\"hidden\":true}" >/dev/null
check "A: the retry answers 200" eq "$(status)" 200
check "A: right after the retry returned, the canary is not shown" hides "$A"
check "A: no longer dirty" eq "$(dirty "$A")" 0
get "/share/$A" >/dev/null
check "A: not in the HTML page either" bash -c "! grep -q '$A-CANARY' '$WORK/get.body'"

# ---- B: the repair timer, no owner call ----
stop_server
start_server || { not_ok "server restarts"; exit 1; }
B="repair-b-$$"
check "B: public session" new_public "$B"
check "B: the canary is public" shows "$B"
save_entry "$B"
EX=$(second_id "$B")
before=$(metric shareline_cache_repairs_total)
rpc "$TOKEN" SetExchangesHidden "{\"session_id\":\"$B\",\"exchange_ids\":[$EX],\"hidden\":true}" >/dev/null
check "B: hide with a failing publish answers 503" eq "$(status)" 503
restore_entry "$B"
check "B: with the old entry written back, the canary shows" shows "$B"
t0=$(date +%s%N)
gone=0
for _ in $(seq 1 150); do
    shows "$B" || { gone=1; break; }
    sleep 0.1
done
secs=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
echo "     repaired $secs s after the stale entry was written back"
check "B: the repair removed the canary within 15 s, no owner call" eq "$gone" 1
check "B: shareline_cache_repairs_total counted it" test "$(metric shareline_cache_repairs_total)" -gt "${before:-0}"
check "B: no longer dirty" eq "$(dirty "$B")" 0

# ---- C: a failed revoke, repaired by the next change of the private session ----
stop_server
start_server || { not_ok "server restarts"; exit 1; }
C="repair-c-$$"
check "C: public session" new_public "$C"
check "C: the canary is public" shows "$C"
save_entry "$C"
rpc "$TOKEN" SetVisibility "{\"session_id\":\"$C\",\"public\":false}" >/dev/null
check "C: revoke with a failing publish answers 503" eq "$(status)" 503
restore_entry "$C"
check "C: with the old entry written back, the revoked session shows" shows "$C"
EX=$(second_id "$C")
rpc "$TOKEN" UpdateExchangeTitle "{\"session_id\":\"$C\",\"exchange_id\":$EX,\"title\":\"renamed\"}" >/dev/null
check "C: a change of the private session answers 200" eq "$(status)" 200
code=$(get "/api/v1/share/$C")
check "C: right after it returned, the session is 404" eq "$code" 404
check "C: no longer dirty" eq "$(dirty "$C")" 0
