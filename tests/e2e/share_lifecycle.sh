#!/usr/bin/env bash
# A share's life cycle, end to end over real HTTP/2 against real Redis and MariaDB:
# sync -> private 404 -> public 200 -> hide -> gone -> private 404 identical to unknown;
# repeated GETs from Redis (metrics); bad input answered with the documented codes.
source "$(dirname "$0")/lib.sh"
setup_server alice
OTHER=$(new_owner bob) && ok "bob's tenant, user and token" || not_ok "bob's token"

FIXTURE="$OWN_FIXTURES/codex-cli-v21.md"
WANT_EX=$(count_exchanges "$FIXTURE")
check "the fixture has at least two exchanges" test "$WANT_EX" -ge 2
SID="life-$$-$RANDOM"

# ---- sync (HTTP/2, JSON) ----
out=$(sync_fixture "$TOKEN" "$FIXTURE" "$SID" '{"project": {"name": "edge-gateway", "icon": "Rocket", "color": "blue"}}')
check "SyncSession answers 200" eq "$(status)" 200
check "SyncSession created the session" eq "$(jq -r .created <<<"$out")" true
check "SyncSession imported every exchange ($WANT_EX)" eq "$(jq -r .exchange_count <<<"$out")" "$WANT_EX"
check "SyncSession answers an etag" test -n "$(jq -r .etag <<<"$out")"

# ---- private by default ----
check "a new session is private: JSON 404" eq "$(get /api/v1/share/$SID)" 404
cp "$WORK/get.body" "$WORK/private.json"
check "a new session is private: HTML 404" eq "$(get /share/$SID)" 404
cp "$WORK/get.body" "$WORK/private.html"

# ---- share ----
out=$(rpc "$TOKEN" SetVisibility "{\"session_id\":\"$SID\",\"public\":true}")
check "SetVisibility public: 200" eq "$(status)" 200
check "SetVisibility answers the share URL" eq "$(jq -r .share_url <<<"$out")" "$URL/share/$SID"
check "public JSON: 200 over HTTP/2" eq "$(get /api/v1/share/$SID)" 200
check "public JSON came over HTTP/2" grep -q '^HTTP/2 200' "$WORK/get.headers"
doc=$(cat "$WORK/get.body")
check "public JSON has every exchange" eq "$(jq -r .exchange_count <<<"$doc")" "$WANT_EX"
check "public JSON lists as many exchanges as exchange_count" eq "$(jq -r '.exchanges | length' <<<"$doc")" "$WANT_EX"
check "public JSON has the ToC" eq "$(jq -r '.toc | length' <<<"$doc")" "$WANT_EX"
check "public JSON has project and author" eq "$(jq -r '.project.name + "/" + .author.handle' <<<"$doc")" "edge-gateway/alice"
check "public JSON is noindex" grep -q noindex <<<"$(header x-robots-tag)"
check "public JSON must be revalidated by caches" eq "$(header cache-control)" no-cache
etag=$(header etag)
check "public JSON has a strong ETag" grep -qE '^"[^"]+"$' <<<"$etag"
check "If-None-Match gives 304" eq "$(get /api/v1/share/$SID -H "If-None-Match: $etag")" 304
check "gzip when asked" eq "$(get /api/v1/share/$SID -H 'Accept-Encoding: gzip')" 200
check "gzip body decompresses to the same document" eq "$(gzip -dc "$WORK/get.body" | sha256sum)" "$(printf '%s' "$doc" | sha256sum)"
check "HEAD: 200" eq "$(curl -sS --http2-prior-knowledge -I -o /dev/null -w '%{http_code}' "$URL/api/v1/share/$SID")" 200
check "HTML page: 200" eq "$(get /share/$SID)" 200
check "HTML page is text/html" grep -q 'text/html' <<<"$(header content-type)"

# ---- hide one exchange (the second visible one) ----
HID=$(jq -r '.exchanges[1].id // .exchanges[0].id' <<<"$doc")
CANARY=$(jq -r --argjson id "$HID" '.exchanges[] | select(.id == $id) | .prompt' <<<"$doc" | head -c 60)
out=$(rpc "$TOKEN" SetExchangesHidden "{\"session_id\":\"$SID\",\"exchange_ids\":[$HID],\"hidden\":true}")
check "SetExchangesHidden: 200" eq "$(status)" 200
check "SetExchangesHidden counts it" eq "$(jq -r .hidden_count <<<"$out")" 1
get /api/v1/share/$SID >/dev/null
doc2=$(cat "$WORK/get.body")
check "hidden exchange absent from the next GET" eq "$(jq --argjson id "$HID" '[.exchanges[] | select(.id == $id)] | length' <<<"$doc2")" 0
check "hidden exchange absent from the ToC" eq "$(jq --argjson id "$HID" '[.toc[] | select(.id == $id)] | length' <<<"$doc2")" 0
check "exchange_count one lower" eq "$(jq -r .exchange_count <<<"$doc2")" "$((WANT_EX - 1))"
check "hidden prompt text nowhere in the JSON" bash -c '! grep -qF -- "$1" "$2"' _ "$CANARY" "$WORK/get.body"
get /share/$SID >/dev/null
check "hidden exchange anchor absent from the HTML" bash -c '! grep -q "id=\"exchange-$1\"" "$2"' _ "$HID" "$WORK/get.body"
check "ETag changed after the change" bash -c '[ "$1" != "$2" ]' _ "$etag" "$(get /api/v1/share/$SID >/dev/null; header etag)"
out=$(rpc "$TOKEN" GetShareSettings "{\"session_id\":\"$SID\"}")
check "GetShareSettings: hidden_count 1 of $WANT_EX" eq "$(jq -c '[.public, .hidden_count, .exchange_count]' <<<"$out")" "[true,1,$WANT_EX]"

# ---- cache, not MariaDB, serves repeated GETs ----
reads0=$(metric shareline_public_store_reads_total)
hits0=$(metric shareline_public_cache_hits_total)
for _ in $(seq 1 20); do get /api/v1/share/$SID >/dev/null; done
reads1=$(metric shareline_public_store_reads_total)
hits1=$(metric shareline_public_cache_hits_total)
check "20 repeated GETs read MariaDB 0 times" eq "$((reads1 - reads0))" 0
check "20 repeated GETs were 20 Redis hits" eq "$((hits1 - hits0))" 20

# ---- revoke ----
rpc "$TOKEN" SetVisibility "{\"session_id\":\"$SID\",\"public\":false}" >/dev/null
check "SetVisibility private: 200" eq "$(status)" 200
check "revoked: JSON 404" eq "$(get /api/v1/share/$SID)" 404
cp "$WORK/get.body" "$WORK/revoked.json"
check "revoked: HTML 404" eq "$(get /share/$SID)" 404
cp "$WORK/get.body" "$WORK/revoked.html"
check "unknown id: JSON 404" eq "$(get /api/v1/share/no-such-session-$$)" 404
check "revoked JSON 404 is byte-identical to an unknown id's" cmp -s "$WORK/revoked.json" "$WORK/get.body"
check "private JSON 404 is byte-identical to an unknown id's" cmp -s "$WORK/private.json" "$WORK/get.body"
check "unknown id: HTML 404" eq "$(get /share/no-such-session-$$)" 404
check "revoked HTML 404 is byte-identical to an unknown id's" cmp -s "$WORK/revoked.html" "$WORK/get.body"
check "private HTML 404 is byte-identical to an unknown id's" cmp -s "$WORK/private.html" "$WORK/get.body"
check "an impossible id gets the same 404" eq "$(get '/api/v1/share/..%2F..%2Fetc' >/dev/null; cmp -s "$WORK/revoked.json" "$WORK/get.body" && echo same)" same

# ---- tenancy ----
rpc "$OTHER" SetVisibility "{\"session_id\":\"$SID\",\"public\":true}" >/dev/null
check "another tenant's session is not_found (404)" eq "$(status)" 404
check "... with code not_found" eq "$(jq -r .code "$WORK/body")" not_found
check "... and it stayed private" eq "$(get /api/v1/share/$SID)" 404

# ---- the msgpack encoding ----
mp_req() { printf '\x82\xaasession_id\xd9%b%s\xa6public\xc3' "\\x$(printf %02x ${#SID})" "$SID"; }
code=$(mp_req | curl -sS --http2-prior-knowledge -o "$WORK/mp" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/msgpack' --data-binary @- "$URL/rpc/shareline.v1.Sessions/SetVisibility")
check "msgpack SetVisibility: 200" eq "$code" 200
check "msgpack answer carries share_url" grep -q "share_url" "$WORK/mp"
check "shared again via msgpack: 200" eq "$(get /api/v1/share/$SID)" 200

# ---- bad input: documented codes, nothing changes, server keeps serving ----
bad() { # description expected-status expected-code content-type body-file [token]
    local code
    code=$(curl -sS --http2-prior-knowledge -o "$WORK/bad" -w '%{http_code}' ${6:+-H "Authorization: Bearer $6"} \
        -H "Content-Type: $4" --data-binary @"$5" "$URL/rpc/shareline.v1.Sessions/SetVisibility")
    check "$1: HTTP $2" eq "$code" "$2"
    if [ "$4" = application/msgpack ]; then
        check "$1: code $3" grep -qa "$3" "$WORK/bad"
    else
        check "$1: code $3" eq "$(jq -r .code "$WORK/bad")" "$3"
    fi
}
printf '\x82\xaasession_id\xa3ab' >"$WORK/trunc.mp"
bad "truncated msgpack" 400 invalid_argument application/msgpack "$WORK/trunc.mp" "$TOKEN"
printf '\x81\xa1a\xdd\xff\xff\xff\xff' >"$WORK/bomb.mp"
bad "msgpack claiming 4G elements" 400 invalid_argument application/msgpack "$WORK/bomb.mp" "$TOKEN"
printf '\x81\xa1a\xa2\xc3\x28' >"$WORK/utf8.mp"
bad "msgpack with invalid UTF-8" 400 invalid_argument application/msgpack "$WORK/utf8.mp" "$TOKEN"
printf '{"session_id": "%s", "public": fals' "$SID" >"$WORK/bad.json"
bad "malformed JSON" 400 invalid_argument application/json "$WORK/bad.json" "$TOKEN"
printf '{"session_id": "\xc3\x28", "public": false}' >"$WORK/utf8.json"
bad "JSON with invalid UTF-8" 400 invalid_argument application/json "$WORK/utf8.json" "$TOKEN"
printf '{"session_id": "%s", "public": "no"}' "$SID" >"$WORK/type.json"
bad "wrong field type" 400 invalid_argument application/json "$WORK/type.json" "$TOKEN"
printf '{"session_id": "%s", "public": false}' "$SID" >"$WORK/ok.json"
bad "missing token" 401 unauthenticated application/json "$WORK/ok.json"
bad "wrong token" 401 unauthenticated application/json "$WORK/ok.json" "slt_not-a-real-token"
bad "text/plain body" 400 invalid_argument text/plain "$WORK/ok.json" "$TOKEN"
check "after all that the session is still public" eq "$(get /api/v1/share/$SID)" 200

code=$(curl -sS --http2-prior-knowledge -o "$WORK/bad" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' --data-binary @"$WORK/ok.json" "$URL/rpc/shareline.v1.Sessions/NoSuchMethod")
check "unknown method: 501" eq "$code" 501
check "unknown method: code unimplemented" eq "$(jq -r .code "$WORK/bad")" unimplemented

head -c $((33 * 1024 * 1024)) /dev/zero | tr '\0' 'a' >"$WORK/big.json"
code=$(curl -sS --http2-prior-knowledge -o "$WORK/bad" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' --data-binary @"$WORK/big.json" "$URL/rpc/shareline.v1.Sessions/SyncSession")
check "oversized body over HTTP/2: 413" eq "$code" 413
check "oversized body over HTTP/2: code resource_exhausted" eq "$(jq -r .code "$WORK/bad")" resource_exhausted
code=$(curl -sS --http1.1 -o "$WORK/bad" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' --data-binary @"$WORK/big.json" "$URL/rpc/shareline.v1.Sessions/SyncSession")
check "oversized body over HTTP/1.1: 413" eq "$code" 413

# Clients that give up before the answer: the server must drop the answer safely.
for _ in $(seq 1 30); do
    curl -s --http2-prior-knowledge -m 0.002 -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        --data-binary @"$WORK/ok.json" "$URL/rpc/shareline.v1.Sessions/GetShareSettings" >/dev/null 2>&1
    curl -s -m 0.001 "$URL/api/v1/share/$SID" >/dev/null 2>&1
done
sleep 0.5
check "server still serves after bad input and aborted clients" eq "$(curl -sS -o /dev/null -w '%{http_code}' "$URL/healthz")" 200
check "readyz: 200 with the store up" eq "$(curl -sS -o /dev/null -w '%{http_code}' "$URL/readyz")" 200
check "HTTP/1.1 works on the same port" eq "$(curl -sS --http1.1 -o /dev/null -w '%{http_code}' "$URL/api/v1/share/$SID")" 200
check "server process alive" kill -0 "$SERVER_PID"
