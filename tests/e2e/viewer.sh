#!/usr/bin/env bash
# The viewer page and its HTTP semantics, over HTTP/2 with curl and in headless Chromium
# (tests/browser/cdp_check.py drives it over the DevTools protocol; screenshots go to
# <build>/screenshots/).
source "$(dirname "$0")/lib.sh"
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
SHOTS="$SL_BUILD_DIR/screenshots"
mkdir -p "$SHOTS"
setup_server viewer
j() { jq -r "$1" "$WORK/body"; }
browser() { # url screenshot toc-exchange-id -> JSON on stdout
    python3 "$SL_SOURCE_DIR/tests/browser/cdp_check.py" "$CHROMIUM" "$1" "$2" "$3"
}

# ---- a hostile session: payloads in prompts, responses, titles and the project ----
SID="xss-$$"
sync_fixture "$TOKEN" "$SL_SOURCE_DIR/tests/fixtures/xss-session.md" "$SID" "$(jq -n \
    '{title:"</title><script>window.__xss=\"title\"</script>",
      project:{name:"\"><img src=x onerror=window.__xss=1>", icon:"<b>", color:"red;background:url(//e.x)"}}')" >/dev/null
check "hostile session synced (3 exchanges)" eq "$(status)/$(j .exchange_count)" "200/3"
rpc "$TOKEN" UpdateExchangeTitle "{\"session_id\":\"$SID\",\"exchange_id\":3,\"title\":\"</textarea><svg onload=window.__xss='t'>\"}" >/dev/null
rpc "$TOKEN" SetExchangesHidden "{\"session_id\":\"$SID\",\"exchange_ids\":[1],\"hidden\":true}" >/dev/null
rpc "$TOKEN" SetVisibility "{\"session_id\":\"$SID\",\"public\":true}" >/dev/null
check "shared" eq "$(status)" 200

check "HTML: 200" eq "$(get /share/$SID)" 200
cp "$WORK/get.body" "$WORK/page.html"; cp "$WORK/get.headers" "$WORK/page.headers"
# The one script a page may run is ours (the live updates, rpc/live.c), allowed by its hash alone.
csp_hash=$(grep -i '^content-security-policy:' "$WORK/page.headers" | grep -o "script-src 'sha256-[A-Za-z0-9+/=]*'" | grep -o "sha256-[A-Za-z0-9+/=]*")
page_hash=$(python3 -c 'import base64,hashlib,re,sys; s=re.findall(r"<script>(.*?)</script>", open(sys.argv[1]).read(), re.S); print("sha256-"+base64.b64encode(hashlib.sha256(s[-1].encode()).digest()).decode() if len(s)==1 else "scripts: %d" % len(s))' "$WORK/page.html")
check "HTML: CSP allows exactly the page's one script, by its hash" eq "$page_hash" "$csp_hash"
script_src=$(grep -i '^content-security-policy:' "$WORK/page.headers" | tr ';' '\n' | sed 's/^ *//' | grep -i '^script-src' | tr -d '\r')
check "HTML: CSP allows no other script source (script-src is the hash alone)" eq "$script_src" "script-src '$page_hash'"
check "HTML: the script may connect only back here" grep -qi "^content-security-policy:.*connect-src 'self'" "$WORK/page.headers"
check "HTML: CSP loads nothing from elsewhere (default-src 'none')" grep -qi "^content-security-policy: default-src 'none'" "$WORK/page.headers"
check "HTML: X-Robots-Tag noindex" grep -qi '^x-robots-tag: noindex' "$WORK/page.headers"
check "HTML: Cache-Control no-cache" grep -qi '^cache-control: no-cache' "$WORK/page.headers"
check "HTML: one <script> (ours, at the end of the body)" eq "$(grep -oi '<script' "$WORK/page.html" | wc -l)/$(grep -c '^<script>(function () {' "$WORK/page.html")" "1/1"
for tag in '<script src' '<script>window' '<img' '<iframe' '<svg' '<style>body' '<textarea' '<b ' '<b>' 'href="javascript' 'href="  javascript' 'href="data:'; do
    check "HTML has no raw $tag" bash -c '! grep -qiF -- "$1" "$2"' _ "$tag" "$WORK/page.html"
done
check "HTML shows the payloads as text" grep -qF '&lt;script&gt;window.__xss' "$WORK/page.html"
check "HTML: bad project colour replaced" bash -c '! grep -qF "url(//e.x)" "$1"' _ "$WORK/page.html"
check "HTML: tool use collapsed as <details>" grep -q '<details class="tool" data-tool-type="shell"><summary>Tool use: <strong>Bash</strong>' "$WORK/page.html"
check "HTML: thinking collapsed as <details>" grep -q '<details class="think"><summary>Thought Process</summary>' "$WORK/page.html"
check "HTML: tables rendered" grep -q '<table><thead><tr><th>col</th>' "$WORK/page.html"
check "HTML: code blocks rendered" grep -q '<pre><code class="language-html">' "$WORK/page.html"
check "HTML: safe links kept (nofollow)" grep -qF 'rel="nofollow noopener noreferrer" href="https://example.com/docs"' "$WORK/page.html"
check "HTML: images become links, never loaded" grep -qF '<a class="image" rel="nofollow noopener noreferrer" href="https://evil.example/x.png">[image: pic]</a>' "$WORK/page.html"
check "HTML: ToC links to #exchange-{id}" grep -qF '<a href="#exchange-2">' "$WORK/page.html"

# ---- hidden content appears nowhere ----
get /api/v1/share/$SID >/dev/null; cp "$WORK/get.body" "$WORK/doc.json"; cp "$WORK/get.headers" "$WORK/doc.headers"
get /api/v1/share/$SID -H 'Accept: text/markdown' >/dev/null; cp "$WORK/get.body" "$WORK/doc.md"; cp "$WORK/get.headers" "$WORK/md.headers"
check "Markdown alternate: text/markdown" grep -qi '^content-type: text/markdown' "$WORK/md.headers"
check "Markdown alternate has the visible prompts" grep -qF 'A normal third question' "$WORK/doc.md"
check "JSON: Vary: Accept, Accept-Encoding" grep -qi '^vary: Accept, Accept-Encoding' "$WORK/doc.headers"
get /share/$SID -H 'Accept-Encoding: gzip' >/dev/null; gzip -dc "$WORK/get.body" >"$WORK/page.gz.html"
get /api/v1/share/$SID -H 'Accept-Encoding: gzip' >/dev/null; gzip -dc "$WORK/get.body" >"$WORK/doc.gz.json"
get /api/v1/share/$SID -H 'Accept-Encoding: gzip' -H 'Accept: text/markdown' >/dev/null; gzip -dc "$WORK/get.body" >"$WORK/doc.gz.md"
for f in page.html doc.json doc.md page.gz.html doc.gz.json doc.gz.md; do
    check "no hidden canary in $f" bash -c '! grep -q "HIDDEN-CANARY" "$1"' _ "$WORK/$f"
done
desc=$(grep -o '<meta name="description" content="[^"]*"' "$WORK/page.html")
check "meta description from the first VISIBLE prompt" grep -qF '&lt;script&gt;window.__xss=&#39;prompt-script' <<<"$desc"
check "og:description present" grep -q '<meta property="og:description" content="&lt;script' "$WORK/page.html"
check "twitter card present" grep -q '<meta name="twitter:card" content="summary">' "$WORK/page.html"
check "og:title is the (escaped) session title" grep -qF '<meta property="og:title" content="&lt;/title&gt;&lt;script&gt;' "$WORK/page.html"

# ---- HTTP semantics ----
check "gzip HTML identical after decompression" cmp -s "$WORK/page.gz.html" "$WORK/page.html"
check "gzip JSON identical after decompression" cmp -s "$WORK/doc.gz.json" "$WORK/doc.json"
check "gzip Markdown identical after decompression" cmp -s "$WORK/doc.gz.md" "$WORK/doc.md"
for v in "/share/$SID|" "/api/v1/share/$SID|" "/api/v1/share/$SID|Accept: text/markdown"; do
    p=${v%%|*}; h=${v#*|}
    get "$p" ${h:+-H "$h"} >/dev/null; tag=$(header etag)
    check "$p ${h:-}: strong ETag" grep -qE '^"[^"]+"$' <<<"$tag"
    rm -f "$WORK/get.body"
    check "$p ${h:-}: If-None-Match -> 304" eq "$(get "$p" ${h:+-H "$h"} -H "If-None-Match: $tag")" 304
    check "$p ${h:-}: 304 has no body" eq "$(cat "$WORK/get.body" 2>/dev/null | wc -c)" 0
    eval "tag_${#p}_${#h}=\$tag"
done
get /share/$SID >/dev/null; html_tag=$(header etag)
get /api/v1/share/$SID >/dev/null; json_tag=$(header etag)
rpc "$TOKEN" UpdateExchangeTitle "{\"session_id\":\"$SID\",\"exchange_id\":2,\"title\":\"Retitled\"}" >/dev/null
get /share/$SID >/dev/null
check "HTML ETag changes after an owner change" bash -c '[ "$1" != "$2" ]' _ "$html_tag" "$(header etag)"
check "old HTML ETag no longer gives 304" eq "$(get /share/$SID -H "If-None-Match: $html_tag")" 200
get /api/v1/share/$SID >/dev/null
check "JSON ETag changes after an owner change" bash -c '[ "$1" != "$2" ]' _ "$json_tag" "$(header etag)"
len=$(curl -sS --http2-prior-knowledge -o /dev/null -w '%{size_download}' "$URL/share/$SID")
code=$(curl -sS --http2-prior-knowledge -I -o "$WORK/head.headers" -w '%{http_code}/%{size_download}' "$URL/share/$SID")
check "HEAD /share: 200 and no body" eq "$code" "200/0"
check "HEAD /share: Content-Length of the full page" grep -qi "^content-length: $len" "$WORK/head.headers"
check "HEAD /share: carries the ETag" grep -qi '^etag: "' "$WORK/head.headers"
code=$(curl -sS --http2-prior-knowledge -I -o /dev/null -w '%{http_code}/%{size_download}' "$URL/api/v1/share/$SID")
check "HEAD /api/v1/share: 200 and no body" eq "$code" "200/0"
check "404 page is a real HTML page" eq "$(get /share/nope-$$)" 404
check "404 page: text/html with CSP" grep -qi "^content-security-policy:.*script-src 'none'" "$WORK/get.headers"
check "404 page says so" grep -q 'This share link does not exist' "$WORK/get.body"

# ---- headless Chromium ----
if [ -z "$CHROMIUM" ]; then
    not_ok "chromium is installed (scripts/deps.sh installs it)"
    exit 1
fi
browser "$URL/share/$SID" "$SHOTS/viewer-xss.png" 3 >"$WORK/b1.json" || not_ok "browser run (xss page)"
b() { jq -c "$1" "$WORK/b1.json"; }
check "browser: no script ran (window.__xss unset)" eq "$(b .xss_flag)" null
check "browser: one <script> element (the live script)" eq "$(b .script_elements)" 1
check "browser: no on* attributes" eq "$(b .event_handler_attrs)" 0
check "browser: no javascript:/data: links" eq "$(b .javascript_links)" 0
check "browser: no img/iframe/object/form/textarea elements" eq "$(b .embedded_elements)" 0
check "browser: payloads visible as text" eq "$(b .text_has_script_tag)" true
check "browser: loaded nothing else (no subresources)" eq "$(b '.resources|length')" 0
check "browser: only visible exchanges" eq "$(b .articles)" '["exchange-2","exchange-3"]'
check "browser: ToC without the hidden one" eq "$(b .toc)" '["#exchange-2","#exchange-3"]'
check "browser: hidden canary not in the DOM" bash -c '! jq -r .html "$1" | grep -q HIDDEN-CANARY' _ "$WORK/b1.json"
check "browser: title escaped, shown as text" eq "$(b .h1)" '"</title><script>window.__xss=\"title\"</script>"'
check "browser: ToC click moves to the exchange (in view)" eq "$(b '[.hash_after_click, (.target_top_after_click >= 0 and .target_top_after_click < .viewport_height)]')" '["#exchange-3",true]'
check "browser: screenshot saved ($SHOTS/viewer-xss.png)" test -s "$SHOTS/viewer-xss.png"
check "browser: no console errors" eq "$(b '.console_errors|length')" 0

# ---- a Claude Code session in the browser (sidechains, tool uses, thinking) ----
FIX="$OWN_FIXTURES/claude-code-v21.md"
RID="real-$$"
sync_fixture "$TOKEN" "$FIX" "$RID" '{"project": {"name": "specstory-cli", "icon": "Terminal", "color": "#8250df"}}' >/dev/null
N=$(j .exchange_count)
check "fixture synced: every exchange ($(count_exchanges "$FIX"))" eq "$(status)/$N" "200/$(count_exchanges "$FIX")"
rpc "$TOKEN" SetVisibility "{\"session_id\":\"$RID\",\"public\":true}" >/dev/null
browser "$URL/share/$RID" "$SHOTS/viewer-fixture.png" 2 >"$WORK/b2.json" || not_ok "browser run (fixture)"
check "fixture page: every exchange shown ($N)" eq "$(jq '.articles|length' "$WORK/b2.json")" "$N"
check "fixture page: title, project, author" eq "$(jq -c '[(.h1|length > 0), .project, .author]' "$WORK/b2.json")" '[true,"specstory-cli","User viewer"]'
check "fixture page: ToC click moves to exchange 2 (in view)" eq "$(jq -c '[.hash_after_click, (.target_top_after_click >= 0 and .target_top_after_click < .viewport_height)]' "$WORK/b2.json")" '["#exchange-2",true]'
check "fixture page: tool/think blocks collapsed" test "$(jq .details_blocks "$WORK/b2.json")" -gt 0
check "fixture page: screenshot saved" test -s "$SHOTS/viewer-fixture.png"

# ---- large sessions ----
# At least 1 MB of SpecStory text: our fixtures back to back (every agent's format, the 314 KB
# session among them) until the upload passes 1 MB.
BIG="$WORK/big.md"
: >"$BIG"
while [ "$(wc -c <"$BIG")" -lt 1000000 ]; do cat "$OWN_FIXTURES"/*.md >>"$BIG"; done
BID="big-$$"
sync_fixture "$TOKEN" "$BIG" "$BID" '{"project": {"name": "big"}}' >/dev/null
check "1 MB session ($(wc -c <"$BIG") bytes) synced" eq "$(status)" 200
BN=$(j .exchange_count)
rpc "$TOKEN" SetVisibility "{\"session_id\":\"$BID\",\"public\":true}" >/dev/null
check "1 MB session page: 200" eq "$(get /share/$BID)" 200
echo "     1 MB session: $BN exchanges, page $(wc -c <"$WORK/get.body") bytes"
browser "$URL/share/$BID" "$SHOTS/viewer-1mb.png" 1 >"$WORK/b3.json" || not_ok "browser run (1 MB)"
check "1 MB session renders every exchange in the browser ($BN)" eq "$(jq '.articles|length' "$WORK/b3.json")" "$BN"
echo "     1 MB session: browser load $(jq .load_seconds "$WORK/b3.json") s"

# thousands of exchanges: ToC in sections of 100
TID="many-$$"
sync_fixture "$TOKEN" "$SL_SOURCE_DIR/tests/fixtures/demo-session.md" "$TID" '{"project": {"name": "many"}}' >/dev/null
for part in 1 2; do
    jq -n --arg sid "$TID" --argjson p "$part" \
        '{session_id:$sid, exchanges:[range(0;1000) | {prompt:("Question \($p)-\(.) about the build"), response:("Answer \(.) with `code`")}]}' >"$WORK/many.json"
    curl -sS --http2-prior-knowledge -o "$WORK/body" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' --data-binary @"$WORK/many.json" "$URL/rpc/shareline.v1.Sessions/AppendExchanges" >"$WORK/status"
    check "append 1000 exchanges (part $part)" eq "$(status)" 200
done
rpc "$TOKEN" SetVisibility "{\"session_id\":\"$TID\",\"public\":true}" >/dev/null
browser "$URL/share/$TID" "$SHOTS/viewer-2003.png" 1503 >"$WORK/b4.json" || not_ok "browser run (2003 exchanges)"
check "2,003 exchanges: all rendered" eq "$(jq '.articles|length' "$WORK/b4.json")" 2003
check "2,003 exchanges: ToC in 21 sections of up to 100" eq "$(jq .toc_sections "$WORK/b4.json")" 21
check "2,003 exchanges: ToC link into section 16 moves there" eq "$(jq -c '[.hash_after_click, (.target_top_after_click >= 0 and .target_top_after_click < 40)]' "$WORK/b4.json")" '["#exchange-1503",true]'
echo "     2,003 exchanges: page $(curl -s -o /dev/null -w '%{size_download}' "$URL/share/$TID") bytes," \
     "gzip $(curl -s -H 'Accept-Encoding: gzip' -o /dev/null -w '%{size_download}' "$URL/share/$TID") bytes," \
     "browser load $(jq .load_seconds "$WORK/b4.json") s"
