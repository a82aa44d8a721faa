#!/usr/bin/env bash
# The long tail refills without a stampede: 20 public sessions whose Redis entries are gone (a
# restart, an eviction) read 2,000 times by 32 HTTP/2 connections at once. Each is rebuilt once
# (one fill per session: the lease rule, docs/invalidation.md), every read answers 200 with the
# document, and MariaDB is asked far fewer times than there are reads. Node memory is off so that
# every read reaches Redis.
source "$(dirname "$0")/lib.sh"
export SHARELINE_NODE_MEMORY=0
setup_server refiller
rcli() { redis-cli -h 127.0.0.1 -p "$SHARELINE_REDIS_PORT" --no-auth-warning "$@"; }
N=20
for i in $(seq 1 $N); do
    sync_fixture "$TOKEN" "$OWN_FIXTURES/codex-cli-v21.md" "cold-$$-$i" >/dev/null
    rpc "$TOKEN" SetVisibility "{\"session_id\":\"cold-$$-$i\",\"public\":true}" >/dev/null
done
check "$N public sessions" eq "$(status)" 200
for i in $(seq 1 $N); do rcli DEL "${SHARELINE_REDIS_PREFIX}p:cold-$$-$i" >/dev/null; done
check "their Redis entries are gone" eq "$(for i in $(seq 1 $N); do rcli EXISTS "${SHARELINE_REDIS_PREFIX}p:cold-$$-$i"; done | sort -u)" 0

fills0=$(metric shareline_public_fills_total)
reads0=$(metric shareline_public_store_reads_total)
for r in $(seq 1 100); do for i in $(seq 1 $N); do echo "$URL/api/v1/share/cold-$$-$i"; done; done >"$WORK/urls"
h2load -n 2000 -c 32 -m 4 -i "$WORK/urls" >"$WORK/h2load.out" 2>&1
check "2,000 reads by 32 connections: all 200" grep -qE 'status codes: 2000 2xx' "$WORK/h2load.out"
fills=$(( $(metric shareline_public_fills_total) - fills0 ))
reads=$(( $(metric shareline_public_store_reads_total) - reads0 ))
echo "     fills: $fills, MariaDB reads: $reads for 2,000 GETs of $N cold sessions"
check "one rebuild per session ($fills fills for $N sessions)" eq "$fills" "$N"
check "no stampede: MariaDB read far fewer times than the GETs ($reads < 400)" test "$reads" -lt 400
check "every session is back in Redis" eq "$(for i in $(seq 1 $N); do rcli EXISTS "${SHARELINE_REDIS_PREFIX}p:cold-$$-$i"; done | sort -u)" 1
check "the documents are whole" bash -c 'curl -sS --http2-prior-knowledge "$1" | jq -e ".exchanges | length > 0" >/dev/null' _ "$URL/api/v1/share/cold-$$-7"
