#!/usr/bin/env bash
# A project renamed by SyncSession or by the SpecStory PUT's projectName: every public page of the
# project shows the new name once the call returned, on both nodes, although both had the old pages
# in their memory (node memory and the gateway's copies), in JSON, HTML and Markdown.
source "$(dirname "$0")/lib.sh"
before_finish() { stop_b; }
wait_both_coherent() { wait_coherent "$URL" && wait_coherent "$B_URL"; }
setup_server renamer
start_b || { not_ok "node B starts"; exit 1; }
ok "node B starts"
check "both nodes may answer from their memory" wait_both_coherent

P="rn-$$"
S1="rn-$$-1"; S2="rn-$$-2"; S3="rn-$$-3"
FIX="$OWN_FIXTURES/sidechain-v21.md"
for s in "$S1" "$S2" "$S3"; do
    sync_fixture "$TOKEN" "$FIX" "$s" "{\"project\": {\"id\": \"$P\", \"name\": \"Codename OLDNAME-$$\"}}" >/dev/null
done
rpc "$TOKEN" SetVisibility "{\"session_id\":\"$S2\",\"public\":true}" >/dev/null
rpc "$TOKEN" SetVisibility "{\"session_id\":\"$S3\",\"public\":true}" >/dev/null
check "two public sessions in the project" eq "$(status)" 200

# warm NODE SID: every representation, twice (the second from the node's memory and its copies)
warm() {
    local u=$1 s=$2 h
    for h in "" "Accept: text/markdown" "Accept-Encoding: gzip"; do
        curl -sS --http2-prior-knowledge -o /dev/null ${h:+-H "$h"} "$u/api/v1/share/$s"
        curl -sS --http2-prior-knowledge -o /dev/null ${h:+-H "$h"} "$u/api/v1/share/$s"
    done
    curl -sS --http2-prior-knowledge -o /dev/null "$u/share/$s"
    curl -sS --http2-prior-knowledge -o /dev/null "$u/share/$s"
}
# shows NODE SID NAME -> JSON, Markdown and HTML of SID on NODE name the project NAME, and none
# of them holds OLDNAME
shows() {
    local u=$1 s=$2 name=$3 j m h
    j=$(curl -sS --http2-prior-knowledge "$u/api/v1/share/$s")
    m=$(curl -sS --http2-prior-knowledge -H 'Accept: text/markdown' "$u/api/v1/share/$s")
    h=$(curl -sS --http2-prior-knowledge "$u/share/$s")
    [ "$(jq -r .project.name <<<"$j")" = "$name" ] || { echo "     JSON names $(jq -r .project.name <<<"$j")" >&2; return 1; }
    grep -qF "$name" <<<"$m" || { echo "     Markdown lacks $name" >&2; return 1; }
    grep -qF "$name" <<<"$h" || { echo "     HTML lacks $name" >&2; return 1; }
    ! grep -qF "OLDNAME-$$" <<<"$j$m$h" || { echo "     the old name is still served" >&2; return 1; }
}
for u in "$URL" "$B_URL"; do warm "$u" "$S2"; warm "$u" "$S3"; done
check "both nodes serve the old name" eq "$(curl -sS --http2-prior-knowledge "$B_URL/api/v1/share/$S2" | jq -r .project.name)" "Codename OLDNAME-$$"
mem0=$(curl -sS "$B_URL/metrics" | awk '$1 == "shareline_public_memory_hits_total" { print $2 }')
check "node B answered from its memory" test "${mem0:-0}" -gt 0

# ---- rename by SyncSession of a private session of the project ----
sync_fixture "$TOKEN" "$FIX" "$S1" "{\"project\": {\"id\": \"$P\", \"name\": \"Renamed by sync $$\"}}" >/dev/null
check "SyncSession with a new project name: 200" eq "$(status)" 200
for u in "$URL" "$B_URL"; do
    for s in "$S2" "$S3"; do
        check "$( [ "$u" = "$URL" ] && echo A || echo B ): $s shows the name given by SyncSession" shows "$u" "$s" "Renamed by sync $$"
    done
done

# ---- rename by the SpecStory PUT's projectName ----
for u in "$URL" "$B_URL"; do warm "$u" "$S2"; warm "$u" "$S3"; done
jq -n --rawfile md "$FIX" --arg p "$P" --arg n "Renamed by PUT $$" \
    '{projectId:$p, projectName:$n, name:"x.md", markdown:$md}' | gzip -c >"$WORK/put.json.gz"
code=$(curl -sS --http2-prior-knowledge -X PUT -o "$WORK/body" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -H 'Content-Encoding: gzip' --data-binary @"$WORK/put.json.gz" \
    "$URL/api/v1/projects/$P/sessions/$S1")
check "SpecStory PUT with a new projectName: 200" eq "$code" 200
for u in "$URL" "$B_URL"; do
    for s in "$S2" "$S3"; do
        check "$( [ "$u" = "$URL" ] && echo A || echo B ): $s shows the name given by the PUT" shows "$u" "$s" "Renamed by PUT $$"
    done
done

# ---- the same name again changes nothing else: no republish, versions stay ----
v0=$(rpc "$TOKEN" GetShareSettings "{\"session_id\":\"$S2\"}" >/dev/null; curl -sS --http2-prior-knowledge -D - -o /dev/null "$URL/api/v1/share/$S2" | grep -i '^etag' | tr -d '\r')
sync_fixture "$TOKEN" "$FIX" "$S1" "{\"project\": {\"id\": \"$P\", \"name\": \"Renamed by PUT $$\"}}" >/dev/null
v1=$(curl -sS --http2-prior-knowledge -D - -o /dev/null "$URL/api/v1/share/$S2" | grep -i '^etag' | tr -d '\r')
check "an unchanged project name leaves the other pages alone (same ETag)" eq "$v1" "$v0"
