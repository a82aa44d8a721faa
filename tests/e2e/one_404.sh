#!/usr/bin/env bash
# One 404 for unknown, private, revoked and deleted ids (DESIGN.md invariant 5), in status, body
# and cost: each first asks MariaDB once on a node (then the node remembers the answer), and while
# MariaDB is down each answers the same 503 — a revoked link cannot be told from one that never
# existed by its answer, its timing class, or by taking MariaDB away.
source "$(dirname "$0")/lib.sh"
: "${SL_TEST_VAR:?}"
before_finish() {
    "$SL_SOURCE_DIR/scripts/services.sh" start "$SL_TEST_VAR" "$SHARELINE_REDIS_PORT" "$SHARELINE_DB_PORT" >/dev/null
}
setup_server oner
FIX="$OWN_FIXTURES/sidechain-v21.md"
UNKNOWN="never-$$-$RANDOM"; PRIV="o4-$$-private"; REV="o4-$$-revoked"; DEL="o4-$$-deleted"
for s in "$PRIV" "$REV" "$DEL"; do sync_fixture "$TOKEN" "$FIX" "$s" >/dev/null; done
for s in "$REV" "$DEL"; do
    rpc "$TOKEN" SetVisibility "{\"session_id\":\"$s\",\"public\":true}" >/dev/null
    get "/api/v1/share/$s" >/dev/null; get "/share/$s" >/dev/null # served and cached first
done
check "revoked and deleted were public" eq "$(get "/api/v1/share/$REV")/$(get "/api/v1/share/$DEL")" "200/200"
rpc "$TOKEN" SetVisibility "{\"session_id\":\"$REV\",\"public\":false}" >/dev/null
rpc "$TOKEN" DeleteSession "{\"session_id\":\"$DEL\"}" >/dev/null
check "revoke and delete: 200" eq "$(status)" 200

coherent() { for _ in $(seq 1 100); do [ "$(metric shareline_node_coherent)" = 1 ] && return 0; sleep 0.05; done; return 1; }
# a fresh node: nothing remembered yet (its memory usable once its lease is confirmed)
stop_server; start_server || { not_ok "server restarts"; exit 1; }
check "the node trusts its memory" coherent
for kind in UNKNOWN PRIV REV DEL; do
    id=${!kind}
    r0=$(metric shareline_public_store_reads_total)
    st=$(get "/api/v1/share/$id"); cp "$WORK/get.body" "$WORK/$kind.json"
    r1=$(metric shareline_public_store_reads_total)
    st2=$(get "/api/v1/share/$id")
    r2=$(metric shareline_public_store_reads_total)
    sth=$(get "/share/$id"); cp "$WORK/get.body" "$WORK/$kind.html"
    check "$kind: 404 (JSON and HTML)" eq "$st/$st2/$sth" "404/404/404"
    check "$kind: the first answer on the node asked MariaDB once, the second not at all" eq "$((r1 - r0))/$((r2 - r1))" "1/0"
done
for kind in PRIV REV DEL; do
    check "$kind: JSON body byte-identical to an unknown id's" cmp -s "$WORK/$kind.json" "$WORK/UNKNOWN.json"
    check "$kind: HTML body byte-identical to an unknown id's" cmp -s "$WORK/$kind.html" "$WORK/UNKNOWN.html"
done

# MariaDB down, a fresh node: the same answer for all four
stop_server; start_server || { not_ok "server restarts"; exit 1; }
MPID=$(cat "$SL_TEST_VAR/mariadb.pid")
kill -KILL "$MPID"
for _ in $(seq 1 200); do [ -e "/proc/$MPID" ] || break; sleep 0.05; done
answers=""
for kind in UNKNOWN PRIV REV DEL; do
    id=${!kind}
    answers+="$kind:$(get "/api/v1/share/$id")/$(get "/share/$id") "
done
echo "     with MariaDB down: $answers"
check "with MariaDB down, unknown, private, revoked and deleted answer alike" eq \
    "$(tr ' ' '\n' <<<"$answers" | sed 's/^[A-Z]*://' | sort -u | grep -c .)" 1
"$SL_SOURCE_DIR/scripts/services.sh" start "$SL_TEST_VAR" "$SHARELINE_REDIS_PORT" "$SHARELINE_DB_PORT" >/dev/null
check "MariaDB back" bash -c 'for _ in $(seq 1 100); do [ "$(curl -s -o /dev/null -w "%{http_code}" "$1/api/v1/share/$2")" = 404 ] && exit 0; sleep 0.1; done; exit 1' _ "$URL" "$REV"
