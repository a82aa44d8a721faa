#!/usr/bin/env bash
# A reader's projection build of version N, delayed on purpose before its
# cache fill, is rejected after the owner's version N+1 is stored; viewers never get N back.
source "$(dirname "$0")/lib.sh"
export SHARELINE_TEST_FILL_DELAY_MS=1500
setup_server stale
SID="stale-$$"
sync_fixture "$TOKEN" "$SL_SOURCE_DIR/tests/fixtures/demo-session.md" "$SID" '{"project": {"name": "stale"}}' >/dev/null
rpc "$TOKEN" SetVisibility "{\"session_id\":\"$SID\",\"public\":true}" >/dev/null
V=$(jq -r .version "$WORK/body")
check "shared at version $V" eq "$(status)" 200
KEY="${SHARELINE_REDIS_PREFIX}p:$SID"
rcli() { redis-cli -h 127.0.0.1 -p "$SHARELINE_REDIS_PORT" --no-auth-warning "$@"; }
CANARY=$(rpc "$TOKEN" GetSession "{\"session_id\":\"$SID\"}" | jq -r '.exchanges[0].prompt' | head -c 40)
rcli DEL "$KEY" >/dev/null   # a cold cache: the next GET leases and rebuilds
refused0=$(metric shareline_public_fills_refused_total)
fills0=$(metric shareline_public_fills_total)

get /api/v1/share/$SID >/dev/null     # answered at once with version V, fill of V delayed 1.5 s
check "the cold GET answered (version $V)" grep -qF -- "$CANARY" "$WORK/get.body"
check "its lease is in Redis" grep -q '^L' <<<"$(rcli GET "$KEY")"
rpc "$TOKEN" SetExchangesHidden "{\"session_id\":\"$SID\",\"exchange_ids\":[1],\"hidden\":true}" >/dev/null
check "owner hides exchange 1 (version $((V + 1)))" eq "$(status)/$(jq -r .version "$WORK/body")" "200/$((V + 1))"
check "Redis holds version $((V + 1)) right after the call" grep -qE "^P$((V + 1)) [0-9a-f]{16} 1 " <<<"$(rcli GET "$KEY" | head -1)"
sleep 2.5                             # the delayed fill of version V has been attempted by now
check "the delayed fill of version $V was refused" eq "$(( $(metric shareline_public_fills_refused_total) - refused0 ))" 1
check "... and not stored" eq "$(( $(metric shareline_public_fills_total) - fills0 ))" 0
check "Redis still holds version $((V + 1))" grep -qE "^P$((V + 1)) [0-9a-f]{16} 1 " <<<"$(rcli GET "$KEY" | head -1)"
get /api/v1/share/$SID >/dev/null
check "viewers get version $((V + 1)) without the hidden prompt" bash -c '! grep -qF -- "$1" "$2"' _ "$CANARY" "$WORK/get.body"
