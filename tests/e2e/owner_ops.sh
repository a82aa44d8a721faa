#!/usr/bin/env bash
# Every owner method over HTTP/2, in JSON (curl) and msgpack (sharectl), not_found across users and
# tenants, invalid_argument for bad fields, service tokens, and the public MariaDB account that
# cannot read hidden text.
source "$(dirname "$0")/lib.sh"
CTL="$SL_BUILD_DIR/sharectl"
export SHARELINE_SERVER="$URL"
setup_server

# Two users in one tenant (alice, carol), one in another tenant (bob).
T1=$("$BIN" admin tenant create "t1-$$"); T2=$("$BIN" admin tenant create "t2-$$")
ALICE_ID=$("$BIN" admin user create --tenant "$T1" --handle alice --name "Alice A")
CAROL_ID=$("$BIN" admin user create --tenant "$T1" --handle carol --name "Carol C")
BOB_ID=$("$BIN" admin user create --tenant "$T2" --handle bob --name "Bob B")
ALICE=$("$BIN" admin token create --user "$ALICE_ID"); CAROL=$("$BIN" admin token create --user "$CAROL_ID")
BOB=$("$BIN" admin token create --user "$BOB_ID")
SVC1=$("$BIN" admin token create --service-tenant "$T1")
check "tokens created" test -n "$ALICE" -a -n "$CAROL" -a -n "$BOB" -a -n "$SVC1"

FIX="$OWN_FIXTURES/sidechain-v21.md"
FIX2="$OWN_FIXTURES/claude-code-v21.md" # 53 KB, sidechains, tool uses: the large file for msgpack
S1="own-$$-a"; S2="own-$$-b"

j() { jq -r "$1" "$WORK/body"; }

# ---- SyncSession (JSON) + re-sync keeps edits and appends ----
sync_fixture "$ALICE" "$FIX" "$S1" '{"project": {"id": "p1", "name": "Project One", "icon": "Rocket", "color": "blue"},
    "raw_data": "{\"raw\":true}", "metadata": {"client": "test", "n": 1}}' >/dev/null
check "SyncSession 200" eq "$(status)" 200
check "SyncSession created 2 exchanges" eq "$(j '[.created,.exchange_count]|@csv')" "true,2"
rpc "$ALICE" SetExchangesHidden "{\"session_id\":\"$S1\",\"exchange_ids\":[2],\"hidden\":true}" >/dev/null
rpc "$ALICE" UpdateExchangeTitle "{\"session_id\":\"$S1\",\"exchange_id\":1,\"title\":\"My custom title\"}" >/dev/null
check "UpdateExchangeTitle 200" eq "$(status)" 200
# the agent keeps working: the same file plus one more exchange
{ cat "$FIX"; printf '\n---\n\n_**User (2026-01-05 07:02:00Z)**_\n\nThird question, added later.\n\n---\n\n_**Agent (m 2026-01-05 07:02:01Z)**_\n\nThird answer.\n'; } >"$WORK/grown.md"
sync_fixture "$ALICE" "$WORK/grown.md" "$S1" '{"project": {"id": "p1", "name": "Project One"}}' >/dev/null
check "re-sync: not created, 3 exchanges" eq "$(j '[.created,.exchange_count]|@csv')" "false,3"
rpc "$ALICE" GetSession "{\"session_id\":\"$S1\"}" >/dev/null
check "GetSession 200" eq "$(status)" 200
check "re-sync kept the hidden flag" eq "$(j '[.exchanges[]|.hidden]|@csv')" "false,true,false"
check "re-sync kept the custom title" eq "$(j '.exchanges[0].title')" "My custom title"
check "re-sync appended id 3" eq "$(j '[.exchanges[].id]|@csv')" "1,2,3"
check "GetSession hidden_count" eq "$(j .hidden_count)" 1
check "GetSession project" eq "$(j '.project.name + "/" + .project.icon')" "Project One/Rocket"

# ---- PreviewAsViewer while private, then byte-identical to the public document ----
rpc "$ALICE" PreviewAsViewer "{\"session_id\":\"$S1\"}" >/dev/null
check "PreviewAsViewer 200 while private" eq "$(status)" 200
jq -j .document "$WORK/body" >"$WORK/preview.json"
check "preview leaves out the hidden exchange" eq "$(jq -c '[.exchanges[].id]' "$WORK/preview.json")" "[1,3]"
check "a private session still 404 publicly" eq "$(get /api/v1/share/$S1)" 404
rpc "$ALICE" SetVisibility "{\"session_id\":\"$S1\",\"public\":true}" >/dev/null
rpc "$ALICE" PreviewAsViewer "{\"session_id\":\"$S1\"}" >/dev/null
jq -j .document "$WORK/body" >"$WORK/preview.json"
jq -j .html "$WORK/body" >"$WORK/preview.html"
get /api/v1/share/$S1 >/dev/null
check "preview document byte-identical to the public JSON" cmp -s "$WORK/preview.json" "$WORK/get.body"
get /share/$S1 >/dev/null
check "preview html byte-identical to the public page" cmp -s "$WORK/preview.html" "$WORK/get.body"

# ---- AppendExchanges ----
rpc "$ALICE" AppendExchanges "{\"session_id\":\"$S1\",\"exchanges\":[{\"prompt\":\"Appended prompt\",\"response\":\"Appended answer\",\"created_at\":\"2026-01-06T10:00:00Z\"},{\"prompt\":\"Second appended\",\"response\":\"ok\",\"title\":\"Custom appended\"}]}" >/dev/null
check "AppendExchanges 200" eq "$(status)" 200
check "AppendExchanges ids 4,5" eq "$(j '.exchange_ids|@csv')" "4,5"
get /api/v1/share/$S1 >/dev/null
check "appended exchanges are live on the public link" eq "$(jq -c '[.exchanges[].id]' "$WORK/get.body")" "[1,3,4,5]"
check "appended title" eq "$(jq -r '.exchanges[3].title' "$WORK/get.body")" "Custom appended"
check "appended created_at" eq "$(jq -r '.exchanges[2].created_at' "$WORK/get.body")" "2026-01-06T10:00:00Z"

# ---- titles ----
rpc "$ALICE" UpdateSessionTitle "{\"session_id\":\"$S1\",\"title\":\"Renamed session\"}" >/dev/null
check "UpdateSessionTitle 200" eq "$(status)" 200
get /api/v1/share/$S1 >/dev/null
check "public title follows at once" eq "$(jq -r .title "$WORK/get.body")" "Renamed session"
rpc "$ALICE" UpdateExchangeTitle "{\"session_id\":\"$S1\",\"exchange_id\":1,\"title\":\"\"}" >/dev/null
get /api/v1/share/$S1 >/dev/null
check "an empty exchange title restores the default" eq "$(jq -r .toc[0].title "$WORK/get.body")" "Find every TODO in the repo."

# ---- DeleteExchange: gone, id never reused ----
own() { mariadb --no-defaults -h 127.0.0.1 -P "$SHARELINE_DB_PORT" -u "$SHARELINE_DB_USER" \
        -p"$SHARELINE_DB_PASSWORD" "$SHARELINE_DB_NAME" -N -e "$1" 2>&1; }
rcli() { redis-cli -h 127.0.0.1 -p "$SHARELINE_REDIS_PORT" --no-auth-warning "$@"; }
# the blob of pieces of exchange 4, in Redis under its key (docs/pieces.md "Redis: recipes and blobs")
K4=$(own "SELECT LOWER(HEX(pieces_key)) FROM exchanges WHERE session_id = '$S1' AND id = 4")
check "exchange 4's pieces are in Redis before its delete" eq "$(rcli EXISTS "${SHARELINE_REDIS_PREFIX}x:$K4")" 1
rpc "$ALICE" DeleteExchange "{\"session_id\":\"$S1\",\"exchange_id\":4}" >/dev/null
check "DeleteExchange 200" eq "$(status)" 200
check "deleted exchange's pieces gone from MariaDB" eq "$(own "SELECT COUNT(*) FROM exchanges WHERE session_id = '$S1' AND id = 4 AND (pieces IS NOT NULL OR pieces_key IS NOT NULL)")" 0
check "deleted exchange's pieces gone from Redis" eq "$(rcli EXISTS "${SHARELINE_REDIS_PREFIX}x:$K4")" 0
get /api/v1/share/$S1 >/dev/null
check "deleted exchange gone publicly" eq "$(jq -c '[.exchanges[].id]' "$WORK/get.body")" "[1,3,5]"
check "deleted exchange's text gone" bash -c '! grep -q "Appended prompt" "$1"' _ "$WORK/get.body"
rpc "$ALICE" AppendExchanges "{\"session_id\":\"$S1\",\"exchanges\":[{\"prompt\":\"After delete\",\"response\":\"r\"}]}" >/dev/null
check "ids are never reused" eq "$(j '.exchange_ids|@csv')" "6"
rpc "$ALICE" DeleteExchange "{\"session_id\":\"$S1\",\"exchange_id\":4}" >/dev/null
check "deleting it again: not_found" eq "$(status)" 404

# ---- GetShareSettings ----
rpc "$ALICE" GetShareSettings "{\"session_id\":\"$S1\"}" >/dev/null
check "GetShareSettings: public, 1 hidden of 5" eq "$(j '[.public,.hidden_count,.exchange_count]|@csv')" "true,1,5"

# ---- ExportSession: byte-exact ----
rpc "$ALICE" ExportSession "{\"session_id\":\"$S1\"}" >/dev/null
check "ExportSession 200" eq "$(status)" 200
check "ExportSession markdown byte-exact" eq "$(jq -j .markdown "$WORK/body" | sha256sum)" "$(sha256sum <"$WORK/grown.md")"
# msgpack through sharectl, with a large real file
sync_fixture "$ALICE" "$FIX2" "$S2" '{"project": {"id": "p2", "name": "Project Two"}}' >/dev/null
check "second session synced" eq "$(status)" 200
SHARELINE_TOKEN=$ALICE "$CTL" export "$S2" -o "$WORK/export.md"
check "sharectl export (msgpack) byte-exact" cmp -s "$WORK/export.md" "$FIX2"

# ---- ListSessions, ListProjects, UpdateProject ----
rpc "$ALICE" ListSessions '{}' >/dev/null
check "ListSessions newest first" eq "$(j '[.sessions[].session_id]|@csv')" "\"$S2\",\"$S1\""
rpc "$ALICE" ListSessions '{"page_size":1}' >/dev/null
tok=$(j .next_page_token)
check "page 1 of 1 + next token" eq "$(j '.sessions|length')" 1
rpc "$ALICE" ListSessions "{\"page_size\":1,\"page_token\":\"$tok\"}" >/dev/null
check "page 2 has the other session, no further token" eq "$(j '[.sessions[0].session_id, .next_page_token]|@csv')" "\"$S1\","
rpc "$ALICE" ListProjects '{}' >/dev/null
check "ListProjects" eq "$(j '[.projects[]|.name + ":" + (.session_count|tostring)]|@csv')" '"Project One:1","Project Two:1"'
P1=$(j '.projects[] | select(.name == "Project One") | .project_id')
rpc "$ALICE" ListSessions "{\"project_id\":$P1}" >/dev/null
check "ListSessions by project" eq "$(j '[.sessions[].session_id]|@csv')" "\"$S1\""
rpc "$ALICE" ListSessions '{"query":"Third question, added"}' >/dev/null
check "ListSessions query finds the phrase" eq "$(j '[.sessions[].session_id]|@csv')" "\"$S1\""
check "... with a snippet containing it" grep -q "Third question, added" <<<"$(j '.sessions[0].snippet')"
rpc "$ALICE" UpdateProject "{\"project_id\":$P1,\"name\":\"Renamed project\",\"icon\":\"Star\"}" >/dev/null
check "UpdateProject 200" eq "$(status)" 200
get /api/v1/share/$S1 >/dev/null
check "public document shows the new project at once" eq "$(jq -r '.project.name + "/" + .project.icon' "$WORK/get.body")" "Renamed project/Star"

# ---- tenancy: bob (other tenant) and carol (same tenant) see nothing of alice's ----
calls=(
 "GetSession|{\"session_id\":\"$S1\"}"
 "SetVisibility|{\"session_id\":\"$S1\",\"public\":false}"
 "UpdateSessionTitle|{\"session_id\":\"$S1\",\"title\":\"pwned\"}"
 "UpdateExchangeTitle|{\"session_id\":\"$S1\",\"exchange_id\":1,\"title\":\"pwned\"}"
 "SetExchangesHidden|{\"session_id\":\"$S1\",\"exchange_ids\":[2],\"hidden\":false}"
 "DeleteExchange|{\"session_id\":\"$S1\",\"exchange_id\":1}"
 "GetShareSettings|{\"session_id\":\"$S1\"}"
 "PreviewAsViewer|{\"session_id\":\"$S1\"}"
 "ExportSession|{\"session_id\":\"$S1\"}"
 "AppendExchanges|{\"session_id\":\"$S1\",\"exchanges\":[{\"prompt\":\"x\",\"response\":\"y\"}]}"
 "UpdateProject|{\"project_id\":$P1,\"name\":\"pwned\"}"
 "ListSessions|{\"project_id\":$P1}"
 "SyncSession|{\"session_id\":\"$S1\",\"project\":{\"name\":\"x\"},\"markdown\":\"_**User**_\\n\\nhi\\n\"}"
 "DeleteSession|{\"session_id\":\"$S1\"}"
)
for who in BOB CAROL; do
    for c in "${calls[@]}"; do
        m=${c%%|*}; b=${c#*|}
        rpc "${!who}" "$m" "$b" >/dev/null
        check "$who $m on alice's: 404 not_found" eq "$(status)/$(j .code)" "404/not_found"
    done
done
rpc "$ALICE" GetSession "{\"session_id\":\"$S1\"}" >/dev/null
check "after all that alice's session is unchanged" eq "$(j '[.title,.public,.exchange_count,.hidden_count]|@csv')" '"Renamed session",true,5,1'
rpc "$BOB" ListSessions '{}' >/dev/null
check "bob lists none of alice's" eq "$(j '.sessions|length')" 0
rpc "$BOB" ListProjects '{}' >/dev/null
check "bob sees none of alice's projects" eq "$(j '.projects|length')" 0

# ---- service tokens ----
rpc "$SVC1" GetShareSettings "{\"session_id\":\"$S1\",\"as_user\":$ALICE_ID}" >/dev/null
check "service token acting for alice: 200" eq "$(status)" 200
rpc "$SVC1" GetShareSettings "{\"session_id\":\"$S1\",\"as_user\":$CAROL_ID}" >/dev/null
check "service token acting for carol: alice's session not_found" eq "$(status)" 404
rpc "$SVC1" GetShareSettings "{\"session_id\":\"$S1\",\"as_user\":$BOB_ID}" >/dev/null
check "service token for a user of another tenant: not_found" eq "$(status)/$(j .code)" "404/not_found"
rpc "$SVC1" GetShareSettings "{\"session_id\":\"$S1\"}" >/dev/null
check "service token without as_user: invalid_argument" eq "$(status)/$(j .code)" "400/invalid_argument"
check "sharectl --as-user with a service token" eq "$(SHARELINE_TOKEN=$SVC1 "$CTL" --as-user "$ALICE_ID" status "$S1" | head -1)" "public $URL/share/$S1"

# ---- invalid_argument for bad fields, nothing changed ----
bad=(
 "SyncSession|{\"project\":{\"name\":\"x\"},\"markdown\":\"just text, not SpecStory\"}"
 "SyncSession|{\"session_id\":\"../etc\",\"project\":{\"name\":\"x\"},\"markdown\":\"_**User**_\"}"
 "SyncSession|{\"project\":{\"name\":\"\"},\"markdown\":\"_**User**_\"}"
 "AppendExchanges|{\"session_id\":\"$S1\",\"exchanges\":[]}"
 "AppendExchanges|{\"session_id\":\"$S1\",\"exchanges\":[{\"prompt\":\"x\"}]}"
 "AppendExchanges|{\"session_id\":\"$S1\",\"exchanges\":[{\"prompt\":\"x\",\"response\":\"y\",\"created_at\":\"yesterday\"}]}"
 "GetSession|{\"session_id\":42}"
 "ListSessions|{\"page_size\":0}"
 "ListSessions|{\"page_token\":\"garbage\"}"
 "ListSessions|{\"from\":\"2026-13\"}"
 "SetVisibility|{\"session_id\":\"$S1\"}"
 "UpdateSessionTitle|{\"session_id\":\"$S1\",\"title\":\"line\\nbreak\"}"
 "UpdateExchangeTitle|{\"session_id\":\"$S1\",\"exchange_id\":-1,\"title\":\"t\"}"
 "SetExchangesHidden|{\"session_id\":\"$S1\",\"exchange_ids\":[\"one\"],\"hidden\":true}"
 "DeleteExchange|{\"session_id\":\"$S1\"}"
 "UpdateProject|{\"project_id\":$P1,\"name\":\"\"}"
 "ExportSession|{}"
)
for c in "${bad[@]}"; do
    m=${c%%|*}; b=${c#*|}
    rpc "$ALICE" "$m" "$b" >/dev/null
    check "$m ${b:0:50}: 400 invalid_argument" eq "$(status)/$(j .code)" "400/invalid_argument"
done
rpc "$ALICE" SetExchangesHidden "{\"session_id\":\"$S1\",\"exchange_ids\":[1,999],\"hidden\":true}" >/dev/null
check "an unknown exchange id among known ones: 404, nothing hidden" eq "$(status)" 404
rpc "$ALICE" GetSession "{\"session_id\":\"$S1\"}" >/dev/null
check "after the bad calls nothing changed" eq "$(j '[.title,.public,.exchange_count,.hidden_count]|@csv')" '"Renamed session",true,5,1'

# ---- SetExchangesHidden with many ids: looked up 64 a statement, all or nothing ----
S4="own-$$-many"
rpc "$ALICE" SyncSession "$(jq -nc --arg s "$S4" '{session_id:$s, project:{name:"many"}, markdown:"_**User**_\n\nfirst\n"}')" >/dev/null
rpc "$ALICE" AppendExchanges "$(jq -nc --arg s "$S4" '{session_id:$s, exchanges:[range(1;150)|{prompt:"p\(.)",response:"r\(.)"}]}')" >/dev/null
check "150 exchanges" eq "$(status)/$(j '.exchange_ids|last')" "200/150"
IDS=$(jq -nc '[range(1;151)] + [5,5,140]')
rpc "$ALICE" SetExchangesHidden "{\"session_id\":\"$S4\",\"exchange_ids\":$IDS,\"hidden\":true}" >/dev/null
check "150 ids (3 statements, repeats): 200, 150 hidden" eq "$(status)/$(j .hidden_count)" "200/150"
IDS=$(jq -nc '[range(1;130)] + [9999] + [range(130;151)]')
rpc "$ALICE" SetExchangesHidden "{\"session_id\":\"$S4\",\"exchange_ids\":$IDS,\"hidden\":false}" >/dev/null
check "an unknown id in the third statement: 404 naming it" eq "$(status)/$(j .message)" \
    "404/exchange 9999 not found in this session"
rpc "$ALICE" GetShareSettings "{\"session_id\":\"$S4\"}" >/dev/null
check "... and nothing was shown" eq "$(j .hidden_count)" 150
rpc "$ALICE" SetExchangesHidden "{\"session_id\":\"$S1\",\"exchange_ids\":[1],\"hidden\":true}" >/dev/null
rpc "$ALICE" SetExchangesHidden "{\"session_id\":\"$S4\",\"exchange_ids\":[1,2,3],\"hidden\":false}" >/dev/null
check "ids are per session: 3 shown in S4" eq "$(status)/$(j .hidden_count)" "200/147"
rpc "$ALICE" SetExchangesHidden "{\"session_id\":\"$S1\",\"exchange_ids\":[1],\"hidden\":false}" >/dev/null

# ---- both encodings: every method through sharectl raw (msgpack on the wire) ----
export SHARELINE_TOKEN=$ALICE
for c in "GetSession|{\"session_id\":\"$S1\"}" "ListSessions|{}" "ListProjects|{}" \
         "GetShareSettings|{\"session_id\":\"$S1\"}" "PreviewAsViewer|{\"session_id\":\"$S1\"}" \
         "ExportSession|{\"session_id\":\"$S1\"}" "UpdateSessionTitle|{\"session_id\":\"$S1\",\"title\":\"Renamed session\"}" \
         "UpdateExchangeTitle|{\"session_id\":\"$S1\",\"exchange_id\":3,\"title\":\"Three\"}" \
         "SetExchangesHidden|{\"session_id\":\"$S1\",\"exchange_ids\":[3],\"hidden\":false}" \
         "AppendExchanges|{\"session_id\":\"$S1\",\"exchanges\":[{\"prompt\":\"mp\",\"response\":\"mp\"}]}" \
         "DeleteExchange|{\"session_id\":\"$S1\",\"exchange_id\":7}" \
         "SetVisibility|{\"session_id\":\"$S1\",\"public\":true}" \
         "UpdateProject|{\"project_id\":$P1,\"color\":\"red\"}"; do
    m=${c%%|*}; b=${c#*|}
    check "msgpack $m: 200" "$CTL" raw "$m" "$b"
done
"$CTL" raw GetSession "{\"session_id\":\"$S1\"}" >"$WORK/mp.json"
check "msgpack answer decodes to the same session" eq "$(jq -r '[.title,.exchange_count]|@csv' "$WORK/mp.json")" '"Renamed session",5'
"$CTL" raw GetSession '{"session_id":"nope-nope"}' >/dev/null 2>&1
check "msgpack not_found exits 1" eq "$?" 1

# ---- the public MariaDB account: public views only ----
rpc "$ALICE" GetSession "{\"session_id\":\"$S1\"}" >/dev/null
HIDDEN_PROMPT=$(j '.exchanges[] | select(.hidden) | .prompt' | head -c 40)
check "there is a hidden exchange to probe" test -n "$HIDDEN_PROMPT"
pub() { mariadb --no-defaults -h 127.0.0.1 -P "$SHARELINE_DB_PORT" -u "$SHARELINE_DB_PUBLIC_USER" \
        -p"$SHARELINE_DB_PUBLIC_PASSWORD" "$SHARELINE_DB_NAME" -N -e "$1" 2>&1; }
out=$(pub "SELECT prompt FROM exchanges WHERE session_id = '$S1'")
check "public account: SELECT on exchanges denied" grep -q "denied" <<<"$out"
out=$(pub "SELECT markdown FROM session_uploads")
check "public account: SELECT on session_uploads denied" grep -q "denied" <<<"$out"
out=$(pub "SELECT bytes FROM session_upload_tail")
check "public account: SELECT on session_upload_tail denied" grep -q "denied" <<<"$out"
out=$(pub "SELECT markdown FROM session_upload_history")
check "public account: SELECT on session_upload_history denied" grep -q "denied" <<<"$out"
out=$(pub "SELECT * FROM viewer_exchanges")
check "public account: SELECT on viewer_exchanges denied" grep -q "denied" <<<"$out"
out=$(pub "SELECT prompt FROM public_exchanges WHERE session_id = '$S1'")
check "public account reads the public view" grep -q "Find every TODO" <<<"$out"
check "... which has no hidden exchange's text" bash -c '! grep -qF -- "$1" <<<"$2"' _ "$HIDDEN_PROMPT" "$out"
out=$(pub "SELECT * FROM viewer_exchange_keys")
check "public account: SELECT on viewer_exchange_keys denied" grep -q "denied" <<<"$out"
HIDDEN_ID=$(j '.exchanges[] | select(.hidden) | .id' | head -1)
out=$(pub "SELECT id FROM public_exchange_keys WHERE session_id = '$S1'")
check "public account reads the public keys view" test -n "$out"
check "... which has no hidden exchange" bash -c '! grep -qx -- "$1" <<<"$2"' _ "$HIDDEN_ID" "$out"
check "... and as many rows as the public view" eq "$(wc -l <<<"$out")" \
    "$(pub "SELECT COUNT(*) FROM public_exchanges WHERE session_id = '$S1'")"
out=$(pub "UPDATE sessions SET is_public = 1")
check "public account cannot write" grep -q "denied" <<<"$out"

# ---- DeleteSession ----
get /api/v1/share/no-such-$$ >/dev/null; cp "$WORK/get.body" "$WORK/unknown.json"
KEYS=$(own "SELECT LOWER(HEX(pieces_key)) FROM exchanges WHERE session_id = '$S1' AND pieces_key IS NOT NULL")
blobs() { local k n=0; for k in $KEYS; do n=$((n + $(rcli EXISTS "${SHARELINE_REDIS_PREFIX}x:$k"))); done; echo "$n"; }
check "the session's pieces are in Redis before its delete ($(blobs))" test "$(blobs)" -gt 0
rpc "$ALICE" DeleteSession "{\"session_id\":\"$S1\"}" >/dev/null
check "DeleteSession 200" eq "$(status)" 200
check "deleted: its pieces gone from MariaDB" eq "$(own "SELECT COUNT(*) FROM exchanges WHERE session_id = '$S1' AND (pieces IS NOT NULL OR pieces_key IS NOT NULL)")" 0
check "deleted: its pieces gone from Redis" eq "$(blobs)" 0
check "deleted: public 404" eq "$(get /api/v1/share/$S1)" 404
check "deleted: 404 byte-identical to unknown" cmp -s "$WORK/get.body" "$WORK/unknown.json"
rpc "$ALICE" GetSession "{\"session_id\":\"$S1\"}" >/dev/null
check "deleted: GetSession not_found" eq "$(status)" 404
rpc "$ALICE" ExportSession "{\"session_id\":\"$S1\"}" >/dev/null
check "deleted: ExportSession not_found" eq "$(status)" 404
out=$(pub "SELECT COUNT(*) FROM public_exchanges WHERE session_id = '$S1'")
check "deleted: nothing of it in the public views" eq "$out" 0
out=$(pub "SELECT COUNT(*) FROM public_exchange_keys WHERE session_id = '$S1'")
check "deleted: nothing of it in the public keys view" eq "$out" 0
