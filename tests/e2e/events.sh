#!/usr/bin/env bash
# Live events (API.md "Live events", README): GET /share/{id}/events over HTTP/2 and HTTP/1.1 against
# real Redis and MariaDB; a version event at connect and after every change, carrying the change
# (appended articles, removed ids, the header); heartbeats; Last-Event-ID; the page's 404 for
# anything not public; a second node hears a change made on the first; a revoke ends every stream
# on both nodes with "gone" within a second; and headless Chromium applies an append and a hide to
# an open page without navigating, then shows the notice after a revoke.
export SHARELINE_EVENTS_HEARTBEAT_MS=1000 SHARELINE_SEND_TIMEOUT_MS=3000
source "$(dirname "$0")/lib.sh"
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
READERS=()
before_finish() {
    for p in "${READERS[@]}"; do kill "$p" 2>/dev/null; done
    stop_b
}
setup_server alice
wait_coherent "$URL" || not_ok "node A coherent"

# new_session ID -> a session of two exchanges ("first"/"second"), private
new_session() {
    rpc "$TOKEN" SyncSession "$(jq -n --arg s "$1" '{session_id:$s, project:{name:"live"},
        markdown:"_**User**_\n\nfirst question\n\n---\n\n_**Agent**_\n\nfirst answer\n"}')" >/dev/null
    rpc "$TOKEN" AppendExchanges "$(jq -n --arg s "$1" '{session_id:$s, exchanges:[{prompt:"second question", response:"second answer", title:"Two"}]}')" >/dev/null
}
SID="live-$$"
new_session "$SID"
check "session with two exchanges" eq "$(status)" 200
rpc "$TOKEN" SetVisibility "{\"session_id\":\"$SID\",\"public\":true}" >/dev/null
check "shared" eq "$(status)" 200

# ---- not public: the page's 404, byte for byte ----
get "/share/nosuch-$$" >/dev/null; cp "$WORK/get.body" "$WORK/page404.html"
check "unknown id: 404" eq "$(get "/share/nosuch-$$/events")" 404
check "unknown id: the page's 404 body" cmp -s "$WORK/get.body" "$WORK/page404.html"
new_session "priv-$$"
check "private session: 404" eq "$(get "/share/priv-$$/events")" 404
check "private session: the same body" cmp -s "$WORK/get.body" "$WORK/page404.html"
check "POST: 405" eq "$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$URL/share/$SID/events")" 405

# ---- streams: HTTP/2 and HTTP/1.1 on A ----
curl -sS -D "$WORK/h2.headers" -o /dev/null --max-time 2 --http2-prior-knowledge "$URL/share/$SID/events" 2>/dev/null
check "HTTP/2: 200" grep -q '^HTTP/2 200' "$WORK/h2.headers"
check "content-type text/event-stream" grep -qi '^content-type: text/event-stream' "$WORK/h2.headers"
check "cache-control no-store" grep -qi '^cache-control: no-store' "$WORK/h2.headers"
reader() { # name url [curl args] -> a background reader writing $WORK/<name>.ev
    curl -sSN "${@:3}" "$2" >"$WORK/$1.ev" 2>/dev/null &
    READERS+=($!)
    eval "PID_$1=$!"
}
reader a2 "$URL/share/$SID/events" --http2-prior-knowledge
reader a1 "$URL/share/$SID/events" --http1.1
# wait_for FILE PATTERN [seconds] -> 0 once grep -q PATTERN FILE holds
wait_for() { for _ in $(seq 1 $((${3:-5} * 20))); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }
# events NAME TYPE -> the data lines of events of that type, one JSON object a line
events() { awk -v t="$2" '/^event: /{e=$2} /^data: /{ if (e == t) print substr($0, 7) } /^$/{e=""}' "$WORK/$1.ev"; }
check "HTTP/2: a version event at connect" wait_for "$WORK/a2.ev" '^event: version'
check "HTTP/1.1: a version event at connect" wait_for "$WORK/a1.ev" '^event: version'
get "/api/v1/share/$SID" >/dev/null
etag=$(header etag)
v0=$(events a2 version | head -1 | jq -r .version)
check "connect event: id is the version" grep -q "^id: $v0\$" "$WORK/a2.ev"
check "connect event: the JSON document's ETag" eq "$(events a2 version | head -1 | jq -r .etag)" "$etag"
check "heartbeat comments" wait_for "$WORK/a1.ev" '^: hb' 4

# ---- node B follows the same session ----
start_b && ok "node B starts" || not_ok "node B starts"
wait_coherent "$B_URL" || not_ok "node B coherent"
curl -sSN --http2-prior-knowledge "$B_URL/share/$SID/events" >"$WORK/b2.ev" 2>/dev/null &
READERS+=($!); PID_b2=$!
check "node B: a version event at connect" wait_for "$WORK/b2.ev" '^event: version'

# ---- an append on A ----
out=$(rpc "$TOKEN" AppendExchanges "$(jq -n --arg s "$SID" '{session_id:$s, exchanges:[{prompt:"live canary question", response:"live canary answer", title:"Three"}]}')")
new_id=$(jq -r '.exchange_ids[0]' <<<"$out")
v1=$(jq -r .version <<<"$out")
for r in a2 a1 b2; do
    check "$r: the append's event" wait_for "$WORK/$r.ev" "^id: $v1\$" 3
    ev=$(events $r version | jq -c "select(.version == $v1)")
    check "$r: it follows the version before" eq "$(jq -r .prev <<<"$ev")" "$v0"
    check "$r: it carries the new article" eq "$(jq -r ".upserted | map(select(.id == $new_id)) | length" <<<"$ev")" 1
    check "$r: ... rendered, after the last one" bash -c 'jq -r ".upserted[0].html" <<<"$1" | grep -q "^<article id=\"exchange-$2\">.*live canary answer"' _ "$ev" "$new_id"
    check "$r: ... and only it" eq "$(jq -r '.upserted | length' <<<"$ev")/$(jq -r '.removed | length' <<<"$ev")" "1/0"
    check "$r: the header (count) changed" bash -c 'jq -r .header <<<"$1" | grep -q "3 exchanges"' _ "$ev"
done

# ---- a hide on B ----
first_id=$(jq -r '.exchanges[0].id' <(curl -sS "$URL/api/v1/share/$SID"))
out=$(curl -sS --http2-prior-knowledge -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    --data-binary "{\"session_id\":\"$SID\",\"exchange_ids\":[$first_id],\"hidden\":true}" "$B_URL/rpc/shareline.v1.Sessions/SetExchangesHidden")
v2=$(jq -r .version <<<"$out")
for r in a2 a1 b2; do
    check "$r: the hide's event" wait_for "$WORK/$r.ev" "^id: $v2\$" 3
    ev=$(events $r version | jq -c "select(.version == $v2)")
    check "$r: it removes the hidden exchange, adds nothing" eq "$(jq -c .removed <<<"$ev")/$(jq -r '.upserted | length' <<<"$ev")" "[$first_id]/0"
done
check "no event carries the hidden exchange's text after its hide" bash -c '! sed -n "/^id: $1\$/,\$p" "$2" | grep -q "first answer"' _ "$v2" "$WORK/a2.ev"

# ---- Last-Event-ID: a stale id gets the current version at once ----
curl -sSN --max-time 2 --http2-prior-knowledge -H "Last-Event-ID: $v0" "$URL/share/$SID/events" >"$WORK/last.ev" 2>/dev/null
check "Last-Event-ID $v0: the current version ($v2) at once" eq "$(events last version | head -1 | jq -r .version)" "$v2"

# ---- in a browser: an append and a hide applied without navigating, the notice after a revoke ----
if [ -n "$CHROMIUM" ]; then
    rpcf() { printf 'curl -sS -o /dev/null --http2-prior-knowledge -H "Authorization: Bearer %s" -H "Content-Type: application/json" --data-binary %q %s/rpc/shareline.v1.Sessions/%s' "$TOKEN" "$2" "$URL" "$1"; }
    BSID="browser-$$"
    new_session "$BSID"
    rpc "$TOKEN" SetVisibility "{\"session_id\":\"$BSID\",\"public\":true}" >/dev/null
    python3 "$SL_SOURCE_DIR/tests/browser/cdp_live.py" "$CHROMIUM" "$URL/share/$BSID" \
        "$(rpcf AppendExchanges "{\"session_id\":\"$BSID\",\"exchanges\":[{\"prompt\":\"gamma\",\"response\":\"gamma live answer\",\"title\":\"Gamma\"}]}")" \
        "$(rpcf SetExchangesHidden "{\"session_id\":\"$BSID\",\"exchange_ids\":[1],\"hidden\":true}")" \
        "$(rpcf SetVisibility "{\"session_id\":\"$BSID\",\"public\":false}")" >"$WORK/live.json" 2>"$WORK/live.err"
    b() { jq -r "$1" "$WORK/live.json"; }
    check "browser: the page loaded with two articles" eq "$(b '.before | length')" 2
    check "browser: the appended exchange appeared" eq "$(b '.after_append | length')" 3
    check "browser: ... with its rendered answer" eq "$(b .appended_text)" true
    check "browser: ... and in the ToC" eq "$(b '.toc_after_append | length')" 3
    check "browser: the count in the header followed" eq "$(b .count_after_append)" "3 exchanges"
    check "browser: the hidden exchange disappeared" eq "$(b '.after_hide | join(",")')" "exchange-2,exchange-3"
    check "browser: ... from the ToC too" eq "$(b '.toc_after_hide | length')" 2
    check "browser: the 404 notice after the revoke" eq "$(b .h1_after_revoke)" "This share link does not exist"
    check "browser: no navigation happened" eq "$(b .navigations)" 1
    check "browser: no console errors" eq "$(b '.console_errors | length')" 0
    [ "$(b '.console_errors | length')" = 0 ] || b .console_errors
else
    not_ok "chromium is installed (scripts/deps.sh installs it)"
fi

# ---- a client that stops reading is dropped, the others get every event ----
python3 - "$SL_TEST_HTTP_PORT" "$SID" >"$WORK/slow.out" 2>&1 <<'PY' &
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(f"GET /share/{sys.argv[2]}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
print(s.recv(300)[:12].decode(), flush=True)  # the status line, then nothing more is read
time.sleep(60)
PY
READERS+=($!)
check "the slow reader got its stream" wait_for "$WORK/slow.out" "HTTP/1.1 200" 5
before=$(metric shareline_event_streams)
big=$(head -c 45000 /dev/urandom | base64 -w 100)
for k in 1 2 3; do
    out=$(rpc "$TOKEN" AppendExchanges "$(jq -n --arg s "$SID" --arg b "$big $k" '{session_id:$s, exchanges:[{prompt:"big", response:$b}]}')")
done
vbig=$(jq -r .version <<<"$out")
for r in a2 a1 b2; do
    check "$r (reading) got every event while a client did not read" wait_for "$WORK/$r.ev" "^id: $vbig\$" 5
done
# its window is closed: SHARELINE_SEND_TIMEOUT_MS (3 s here) disconnects it, its stream goes
for _ in $(seq 1 200); do [ "$(metric shareline_event_streams)" -lt "$before" ] && break; sleep 0.05; done
check "the stream whose client stopped reading was closed (send timeout), the others stay" eq "$(metric shareline_event_streams)" $((before - 1))

# ---- many streams on one HTTP/2 connection (nghttp opens them all on one) ----
urls=(); for i in $(seq 1 50); do urls+=("$URL/share/$SID/events?n=$i"); done # distinct: nghttp fetches a URI once
timeout 20 nghttp "${urls[@]}" >"$WORK/many.ev" 2>"$WORK/many.err" &
NGHTTP=$!; READERS+=($NGHTTP)
for _ in $(seq 1 100); do [ "$(metric shareline_event_streams)" -ge 52 ] 2>/dev/null && break; sleep 0.05; done
check "50 streams on one HTTP/2 connection are open (plus a2 and a1)" test "$(metric shareline_event_streams)" -ge 52

# ---- revoke: every stream on both nodes hears "gone" and ends, within a second ----
t0=$(date +%s%N)
rpc "$TOKEN" SetVisibility "{\"session_id\":\"$SID\",\"public\":false}" >/dev/null
check "revoked" eq "$(status)" 200
for r in a2 a1 b2; do
    check "$r: gone" wait_for "$WORK/$r.ev" '^event: gone' 1
done
ms=$((($(date +%s%N) - t0) / 1000000))
check "every stream heard gone within 1 s of the revoke ($ms ms)" test "$ms" -le 1000
for r in a2 a1 b2; do
    pid=$(eval echo "\$PID_$r")
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    check "$r: the stream ended" bash -c '! kill -0 "$1" 2>/dev/null' _ "$pid"
done
wait "$NGHTTP"
check "the 50 HTTP/2 streams of one connection: a version event each at connect" eq "$(grep -c '^event: version' "$WORK/many.ev")" 50
check "... and each heard gone, then ended (nghttp finished)" eq "$(grep -c '^event: gone' "$WORK/many.ev")" 50
check "a new stream of the revoked session: 404" eq "$(get "/share/$SID/events")" 404
check "metrics: streams gauge back to 0" eq "$(metric shareline_event_streams)" 0
check "metrics: gone counted" test "$(metric shareline_event_streams_gone_total)" -ge 2
