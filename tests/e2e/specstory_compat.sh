#!/usr/bin/env bash
# The SpecStory-compatible API exactly as the SpecStory CLI uses it, byte-exact storage of every
# fixture, and full-text search (deep phrases, project filters, hidden exchanges).
source "$(dirname "$0")/lib.sh"
setup_server cli
OTHER=$(new_owner intruder)
j() { jq -r "$1" "$WORK/body"; }
# A long Claude Code session (314 KB, 7,684 lines); PHRASE occurs once, beyond 90% of its lines
# (tests/fixtures/specstory/generate.py, DEEP_PHRASE).
BIG="$OWN_FIXTURES/claude-code-large.md"
PHRASE="quarantine flaky shard retries"

api() { # METHOD PATH [curl args...] -> status; body in $WORK/body, headers in $WORK/h
    local m=$1 p=$2; shift 2
    curl -sS --http2-prior-knowledge -X "$m" -o "$WORK/body" -D "$WORK/h" -w '%{http_code}' \
        -H "Authorization: Bearer $TOKEN" "$@" "$URL$p"
}
hdr() { grep -i "^$1:" "$WORK/h" | head -1 | sed 's/^[^:]*: *//' | tr -d '\r'; }

# ---- what the SpecStory CLI sends (specstory-cli/pkg/cloud/sync.go) ----
P="proj-$$-abc"; S="6ff7aee8-2ab9-470d-8a5e-$(printf '%012d' $$)"
RAW='{"type":"raw","messages":[1,2,3],"note":"ünïcödé ✓ \"quoted\""}'
SDATA='{"schemaVersion":"1.0","session":"data"}'
jq -n --rawfile md "$BIG" --arg p "$P" --arg raw "$RAW" --arg sd "$SDATA" \
    '{projectId:$p, projectName:"getspecstory", name:"2026-04-08_07-51-26Z-testshipperdrainsallshards-fails-on.md", markdown:$md,
      rawData:$raw, sessionData:$sd,
      metadata:{clientName:"specstory-cli", clientVersion:"1.2.3", agentName:"Claude Code", deviceId:"dev-1",
                machineName:"laptop"}}' | gzip -c >"$WORK/put.json.gz"
MD_BYTES=$(wc -c <"$BIG"); SD_BYTES=${#SDATA}

check "sizes before the upload: empty" eq "$(api GET /api/v1/projects/$P/sessions/sizes)/$(j -c .data.sessions 2>/dev/null || j .data.sessions)" "200/{}"
check "HEAD before the upload: 404" eq "$(api HEAD /api/v1/projects/$P/sessions/$S -I)" 404
code=$(api PUT /api/v1/projects/$P/sessions/$S -H 'Content-Type: application/json' -H 'Content-Encoding: gzip' --data-binary @"$WORK/put.json.gz")
check "gzip PUT of a new session: 201" eq "$code" 201
ETAG=$(hdr etag)
check "... with an ETag" grep -qE '^"[0-9a-f]{32}"$' <<<"$ETAG"
check "... envelope success:true, created" eq "$(j '[.success,.data.created]|@csv')" "true,true"
code=$(api PUT /api/v1/projects/$P/sessions/$S -H 'Content-Type: application/json' -H 'Content-Encoding: gzip' --data-binary @"$WORK/put.json.gz")
check "the same PUT again: 200" eq "$code" 200
check "... same ETag" eq "$(hdr etag)" "$ETAG"
check "... created:false" eq "$(j .data.created)" false
check "sizes: markdown bytes" eq "$(api GET /api/v1/projects/$P/sessions/sizes)/$(jq --arg s "$S" '.data.sessions[$s]' "$WORK/body")" "200/$MD_BYTES"
check "sizes: sessionData bytes" eq "$(jq --arg s "$S:sessionData" '.data.sessions[$s]' "$WORK/body")" "$SD_BYTES"
check "HEAD: 200" eq "$(api HEAD /api/v1/projects/$P/sessions/$S -I)" 200
check "HEAD: X-Markdown-Size" eq "$(hdr x-markdown-size)" "$MD_BYTES"
check "HEAD: X-Session-Data-Size" eq "$(hdr x-session-data-size)" "$SD_BYTES"
check "GET JSON: 200" eq "$(api GET /api/v1/projects/$P/sessions/$S -H 'Accept: application/json')" 200
check "GET JSON: markdown byte-exact" eq "$(j .data.markdown | head -c -0 | sha256sum)" "$( (cat "$BIG"; echo) | sha256sum)"
check "GET JSON: rawData byte-exact" eq "$(j .data.rawData)" "$RAW"
check "GET JSON: sessionData byte-exact" eq "$(j .data.sessionData)" "$SDATA"
check "GET JSON: metadata kept" eq "$(j '.data.metadata | [.clientName, .machineName, .name] | @csv')" '"specstory-cli","laptop","2026-04-08_07-51-26Z-testshipperdrainsallshards-fails-on.md"'
check "GET: ETag" eq "$(hdr etag)" "$ETAG"
check "GET If-None-Match: 304" eq "$(api GET /api/v1/projects/$P/sessions/$S -H "If-None-Match: $ETAG")" 304
check "GET Accept: text/markdown: 200" eq "$(api GET /api/v1/projects/$P/sessions/$S -H 'Accept: text/markdown')" 200
check "... the markdown itself, byte-exact" cmp -s "$WORK/body" "$BIG"
check "... text/markdown" grep -qi '^content-type: text/markdown' "$WORK/h"
check "projects list has it" eq "$(api GET /api/v1/projects)/$(jq -r --arg p "$P" '.data.projects[] | select(.id == $p) | .name' "$WORK/body")" "200/getspecstory"
check "sessions list has it" eq "$(api GET /api/v1/projects/$P/sessions)/$(jq -r '.data.sessions[].sessionId' "$WORK/body")" "200/$S"
# the same session, shared and read publicly (the RPCs on the same data)
WANT=$(count_exchanges "$BIG")
rpc "$TOKEN" SetVisibility "{\"session_id\":\"$S\",\"public\":true}" >/dev/null
check "shared through the RPC" eq "$(status)" 200
check "read publicly: 200" eq "$(get /api/v1/share/$S)" 200
check "read publicly: every exchange ($WANT)" eq "$(jq .exchange_count "$WORK/get.body")" "$WANT"

# ---- errors, in the envelope ----
code=$(curl -sS --http2-prior-knowledge -X GET -o "$WORK/body" -w '%{http_code}' "$URL/api/v1/projects/$P/sessions/$S")
check "no token: 401 envelope" eq "$code/$(j .success)" "401/false"
code=$(curl -sS --http2-prior-knowledge -o "$WORK/body" -w '%{http_code}' -H "Authorization: Bearer $OTHER" "$URL/api/v1/projects/$P/sessions/$S")
check "another tenant's session: 404" eq "$code/$(j .success)" "404/false"
code=$(curl -sS --http2-prior-knowledge -X DELETE -o "$WORK/body" -w '%{http_code}' -H "Authorization: Bearer $OTHER" "$URL/api/v1/projects/$P/sessions/$S")
check "another tenant cannot delete it: 404" eq "$code" 404
printf 'not gzip at all' >"$WORK/bad.gz"
check "broken gzip: 400" eq "$(api PUT /api/v1/projects/$P/sessions/$S -H 'Content-Encoding: gzip' --data-binary @"$WORK/bad.gz")/$(j .success)" "400/false"
echo '{"projectId":"other","markdown":"x"}' | gzip -c >"$WORK/mismatch.gz"
check "projectId differing from the URL: 400" eq "$(api PUT /api/v1/projects/$P/sessions/$S -H 'Content-Encoding: gzip' --data-binary @"$WORK/mismatch.gz")" 400
echo '{"markdown":"# just some notes\n\nnot a SpecStory file"}' | gzip -c >"$WORK/notspec.gz"
check "not a SpecStory file: 400 with a clear error" eq "$(api PUT /api/v1/projects/$P/sessions/x-$$ -H 'Content-Encoding: gzip' --data-binary @"$WORK/notspec.gz")/$(j .error | grep -o 'not a SpecStory history file')" "400/not a SpecStory history file"
head -c $((51 * 1024 * 1024)) /dev/urandom >"$WORK/huge.gz"
check "a 51 MB compressed body: 413" eq "$(api PUT /api/v1/projects/$P/sessions/$S -H 'Content-Encoding: gzip' --data-binary @"$WORK/huge.gz")" 413
check "... saying why" grep -q 'exceeds the limit of 50 MiB' "$WORK/body"
check "after the errors the session is unchanged" eq "$(api HEAD /api/v1/projects/$P/sessions/$S -I)/$(hdr x-markdown-size)" "200/$MD_BYTES"

# ---- ExportSession returns exactly the upload, for every fixture (and for the real files of
# ../shared, extra cases when present); the import makes every exchange of it ----
for f in "$OWN_FIXTURES"/*.md "$SHARED_FIXTURES"/20*.md; do
    [ -f "$f" ] || continue
    sid="exp-$$-$(basename "$f" .md | tr -c 'A-Za-z0-9_-' _ | tail -c 40)"
    jq -n --rawfile md "$f" --arg sid "$sid" '{session_id:$sid, project:{name:"exports"}, markdown:$md, raw_data:"{\"k\":1}"}' >"$WORK/sync.json"
    curl -sS --http2-prior-knowledge -o "$WORK/body" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        --data-binary @"$WORK/sync.json" "$URL/rpc/shareline.v1.Sessions/SyncSession" >/dev/null
    check "SyncSession imports every exchange ($(count_exchanges "$f")): $(basename "$f")" eq "$(j .exchange_count)" "$(count_exchanges "$f")"
    rpc "$TOKEN" ExportSession "{\"session_id\":\"$sid\"}" >/dev/null
    check "ExportSession sha256 = upload sha256: $(basename "$f")" eq "$(jq -j .markdown "$WORK/body" | sha256sum)" "$(sha256sum <"$f")"
done

# ---- full-text search ----
sync_fixture "$TOKEN" "$BIG" "deep-$$" '{"project": {"id": "search-a", "name": "Search A"}}' >/dev/null
check "the large session synced" eq "$(status)" 200
sync_fixture "$TOKEN" "$OWN_FIXTURES/early-cli.md" "other-$$" '{"project": {"id": "search-b", "name": "Search B"}}' >/dev/null
check "the other session synced" eq "$(status)" 200
rpc "$TOKEN" ListProjects '{}' >/dev/null
PA=$(j '.projects[] | select(.ext_id == "search-a") | .project_id'); PB=$(j '.projects[] | select(.ext_id == "search-b") | .project_id')
check "the phrase is deep in the file (last 10%)" test "$(grep -n -m1 -F "$PHRASE" "$BIG" | cut -d: -f1)" -gt "$(( $(wc -l <"$BIG") * 9 / 10 ))"
rpc "$TOKEN" ListSessions "{\"query\":\"$PHRASE\",\"project_ids\":[$PA]}" >/dev/null
check "search finds the session in project A" eq "$(j '[.sessions[].session_id]|@csv')" "\"deep-$$\""
check "... with a snippet containing the phrase" grep -qiF "$PHRASE" <<<"$(j '.sessions[0].snippet')"
rpc "$TOKEN" ListSessions "{\"query\":\"$PHRASE\",\"project_ids\":[$PB]}" >/dev/null
check "filtered to project B: not found" eq "$(j '.sessions|length')" 0
rpc "$TOKEN" ListSessions "{\"query\":\"$PHRASE\",\"project_ids\":[$PA,$PB],\"from\":\"2020-01-01T00:00:00Z\",\"to\":\"2099-01-01T00:00:00Z\"}" >/dev/null
check "projects A+B and a time range: found" eq "$(j '.sessions|length')" 1
rpc "$TOKEN" ListSessions "{\"query\":\"$PHRASE\",\"to\":\"2020-01-01T00:00:00Z\"}" >/dev/null
check "a time range before it: not found" eq "$(j '.sessions|length')" 0
rpc "$OTHER" ListSessions "{\"query\":\"$PHRASE\"}" >/dev/null
check "another tenant's search: nothing" eq "$(j '.sessions|length')" 0
# a phrase in a hidden exchange: found by its owner, never public
SECRET="zebraquokka$$ marmalade"
rpc "$TOKEN" AppendExchanges "{\"session_id\":\"deep-$$\",\"exchanges\":[{\"prompt\":\"the $SECRET plan\",\"response\":\"kept private\"}]}" >/dev/null
HID=$(j '.exchange_ids[0]')
rpc "$TOKEN" SetExchangesHidden "{\"session_id\":\"deep-$$\",\"exchange_ids\":[$HID],\"hidden\":true}" >/dev/null
rpc "$TOKEN" SetVisibility "{\"session_id\":\"deep-$$\",\"public\":true}" >/dev/null
rpc "$TOKEN" ListSessions "{\"query\":\"$SECRET\"}" >/dev/null
check "owner finds the hidden exchange's phrase" eq "$(j '[.sessions[].session_id]|@csv')" "\"deep-$$\""
check "... snippet shows it to the owner" grep -qF "$SECRET" <<<"$(j '.sessions[0].snippet')"
get /api/v1/share/deep-$$ >/dev/null; cp "$WORK/get.body" "$WORK/pub.json"
get /share/deep-$$ >/dev/null; cp "$WORK/get.body" "$WORK/pub.html"
get /api/v1/share/deep-$$ -H 'Accept: text/markdown' >/dev/null; cp "$WORK/get.body" "$WORK/pub.md"
for f in pub.json pub.html pub.md; do
    check "hidden phrase not public ($f)" bash -c '! grep -qF "$1" "$2"' _ "zebraquokka$$" "$WORK/$f"
done
check "the deep phrase is public (not hidden)" grep -qF "$PHRASE" "$WORK/pub.json"

# ---- DELETE through the compatible API ----
check "DELETE: 200" eq "$(api DELETE /api/v1/projects/$P/sessions/$S)/$(j .data.deleted)" "200/true"
check "after DELETE: HEAD 404" eq "$(api HEAD /api/v1/projects/$P/sessions/$S -I)" 404
check "after DELETE: public 404" eq "$(get /api/v1/share/$S)" 404
