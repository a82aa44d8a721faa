#!/usr/bin/env bash
# Redis under maxmemory (README "Redis memory"): with the documented policy (volatile-lru) Redis
# evicts projection entries and blobs of pieces, never the coherence and trust keys; an evicted
# entry, or an entry whose blob was evicted, is a miss (rebuilt from MariaDB), never a stale hit. 30 public sessions of ~20 KB of incompressible text,
# each with a canary exchange, in a Redis capped below what they need; the canary is hidden in
# every other session; every representation of every session then shows exactly what MariaDB says.
source "$(dirname "$0")/lib.sh"
rcli() { redis-cli -h 127.0.0.1 -p "$SHARELINE_REDIS_PORT" --no-auth-warning "$@"; }
before_finish() { rcli CONFIG SET maxmemory 0 >/dev/null; rcli CONFIG SET maxmemory-policy noeviction >/dev/null; }
export SHARELINE_NODE_MEMORY=0 # every GET asks Redis: the entries themselves are under test
export SHARELINE_PIECES_CACHE_BYTES=1048576 # the least: 1 MiB, less than the 30 sessions hold, read in
# turn (least recently used out first): readers fetch blobs of pieces from Redis, so those are under test too
setup_server evictor
P="${SHARELINE_REDIS_PREFIX}"
# a node that meets a Redis of another entry format (or another run_id) empties it before trusting
# it, and reads go to MariaDB without filling meanwhile: the fills counted below need a trusted Redis
# (a local run right after the entry format changed counted 0 fills while the flush ran)
for _ in $(seq 1 600); do [ "$(metric shareline_cache_up)" = 1 ] && break; sleep 0.1; done
check "the node trusts its Redis" eq "$(metric shareline_cache_up)" 1

N=30
declare -A CANARY_EID
for i in $(seq 1 $N); do
    sid="ev-$$-$i"
    sync_fixture "$TOKEN" "$SL_SOURCE_DIR/tests/fixtures/demo-session.md" "$sid" >/dev/null
    filler=$(head -c 15000 /dev/urandom | base64 -w0)
    out=$(rpc "$TOKEN" AppendExchanges "{\"session_id\":\"$sid\",\"exchanges\":[{\"prompt\":\"canary EVC-$$-$i\",\"response\":\"$filler\"}]}")
    CANARY_EID[$i]=$(jq -r '.exchange_ids[0]' <<<"$out")
    rpc "$TOKEN" SetVisibility "{\"session_id\":\"$sid\",\"public\":true}" >/dev/null
done
check "$N public sessions with a canary exchange each" eq "$(status)" 200

# every representation of every session
read_all() {
    local i sid
    for i in $(seq 1 $N); do
        sid="ev-$$-$i"
        curl -sS --http2-prior-knowledge -o "$WORK/r.$i.json" "$URL/api/v1/share/$sid"
        curl -sS --http2-prior-knowledge -H 'Accept-Encoding: gzip' "$URL/api/v1/share/$sid" | gzip -dc >"$WORK/r.$i.jz"
        curl -sS --http2-prior-knowledge -o "$WORK/r.$i.html" "$URL/share/$sid"
        curl -sS --http2-prior-knowledge -H 'Accept: text/markdown' -o "$WORK/r.$i.md" "$URL/api/v1/share/$sid"
    done
}
# Redis loses every blob of pieces (what eviction does to some of them, whichever LRU picks): the
# entries that name them are dropped by the readers that need them and rebuilt
nblobs=$(rcli --scan --pattern "${P}x:*" | wc -l)
rcli --scan --pattern "${P}x:*" | xargs -r -n 100 redis-cli -h 127.0.0.1 -p "$SHARELINE_REDIS_PORT" --no-auth-warning DEL >/dev/null
check "every blob of pieces deleted from Redis ($nblobs)" eq "$(rcli --scan --pattern "${P}x:*" | wc -l)" 0
drops0=$(metric shareline_recipe_drops_total)
read_all
drops=$(( $(metric shareline_recipe_drops_total) - drops0 ))
check "entries whose blobs were gone were dropped by their readers ($drops)" test "$drops" -gt 0

# only this test's keys: what earlier tests left in the shared test Redis (other prefixes) would be
# the least recently used, and evicted instead of the entries and blobs under test
rcli --scan | grep -v "^$P" | while read -r k; do rcli DEL "$k" >/dev/null; done
check "the test Redis holds this test's keys only" eq "$(rcli --scan | grep -vc "^$P")" 0
# the keys without a TTL (the trust marker; the node lease set when node memory is on): volatile-lru
# may not evict them
persistent=$(rcli --scan --pattern "${P}*" | while read -r k; do [ "$(rcli TTL "$k")" = -1 ] && echo "$k"; done)
# cap Redis below what it holds now: the 30 entries (~45 KB each) cannot all stay
used=$(rcli INFO memory | awk -F: '/^used_memory:/ {print $2+0}')
ev0=$(rcli INFO stats | awk -F: '/^evicted_keys:/ {print $2+0}')
fills0=$(metric shareline_public_fills_total)
rcli CONFIG SET maxmemory-policy volatile-lru >/dev/null
rcli CONFIG SET maxmemory $((used - 700000)) >/dev/null

read_all
read_all
ev1=$(rcli INFO stats | awk -F: '/^evicted_keys:/ {print $2+0}')
check "Redis evicted keys: entries and blobs of pieces ($((ev1 - ev0)))" test "$((ev1 - ev0))" -gt 0
check "the trust marker was not evicted" test "$(rcli EXISTS "${P}trusted:5")" = 1
check "no key without a TTL was evicted ($(wc -w <<<"$persistent") of them)" \
    bash -c 'for k in $1; do [ "$(redis-cli -p "$2" EXISTS "$k")" = 1 ] || exit 1; done' _ "$persistent" "$SHARELINE_REDIS_PORT"

# hide the canary in every other session; each answer is checked right after its call returned
leaks=0 wrong=0
for i in $(seq 1 $N); do
    [ $((i % 2)) -eq 0 ] || continue
    rpc "$TOKEN" SetExchangesHidden "{\"session_id\":\"ev-$$-$i\",\"exchange_ids\":[${CANARY_EID[$i]}],\"hidden\":true}" >/dev/null
    [ "$(status)" = 200 ] || wrong=$((wrong + 1))
    for h in "" "Accept: text/markdown"; do
        curl -sS --http2-prior-knowledge ${h:+-H "$h"} "$URL/api/v1/share/ev-$$-$i" | grep -qF "EVC-$$-$i" && leaks=$((leaks + 1))
    done
    curl -sS --http2-prior-knowledge "$URL/share/ev-$$-$i" | grep -qF "EVC-$$-$i" && leaks=$((leaks + 1))
done
check "every hide answered 200" eq "$wrong" 0
check "no hidden canary served right after its hide" eq "$leaks" 0
read_all
read_all
stale=0 missing=0
for i in $(seq 1 $N); do
    for f in json jz html md; do
        if [ $((i % 2)) -eq 0 ]; then
            grep -qF "EVC-$$-$i" "$WORK/r.$i.$f" && stale=$((stale + 1))
        else
            grep -qF "EVC-$$-$i" "$WORK/r.$i.$f" || missing=$((missing + 1))
        fi
    done
done
fills=$(( $(metric shareline_public_fills_total) - fills0 ))
echo "     entries dropped by readers in all: $(( $(metric shareline_recipe_drops_total) - drops0 ))"
check "evicted entries and blobs were rebuilt from MariaDB ($fills fills)" test "$fills" -gt 0
check "no hidden canary in any representation (stale hits: 0)" eq "$stale" 0
check "every visible canary in every representation (misses rebuilt)" eq "$missing" 0
check "the JSON documents are whole" bash -c 'for f in "$@"; do jq -e .exchanges "$f" >/dev/null || exit 1; done' _ "$WORK"/r.*.json

# an entry whose recipe is damaged (not one of ours): dropped by its reader and rebuilt, never served
rcli CONFIG SET maxmemory 0 >/dev/null
sid="ev-$$-1"
key="${P}p:$sid"
curl -sS --http2-prior-knowledge -o /dev/null "$URL/api/v1/share/$sid" # an entry to damage
line=$(rcli GETRANGE "$key" 0 511 | head -n 1)
check "the entry of $sid is PUBLIC" eq "${line:0:1}" P
read -r v _ _ _ meta <<<"$line"
# another content tag than the node's copies carry, so that the reader reads the recipe
printf '%s 00000000000000%02x 1 7 %s\ngarbage' "$v" "$((RANDOM % 200))" "$meta" | redis-cli -h 127.0.0.1 -p "$SHARELINE_REDIS_PORT" --no-auth-warning -x SET "$key" >/dev/null
check "the recipe is damaged (7 bytes of garbage)" eq "$(rcli GETRANGE "$key" -7 -1)" garbage
d0=$(metric shareline_recipe_drops_total)
check "a damaged recipe: the page is rebuilt and served (200, the canary)" \
    grep -qF "EVC-$$-1" <(curl -sS --http2-prior-knowledge "$URL/api/v1/share/$sid")
check "... by dropping the entry" eq "$(( $(metric shareline_recipe_drops_total) - d0 ))" 1
check "... and filling it again" test "$(rcli GETRANGE "$key" -7 -1)" != garbage
