#!/usr/bin/env bash
# The owner console (docs/console.md) over HTTP: its pages and headers, sign-in links (one use,
# expiry), the token form, the cookie, CSRF and origin checks, sign-out, tenancy, Preview as
# Viewer; then, in headless Chromium, the whole share flow with real clicks and typing, hostile
# strings, and pages of other origins that try to act with the cookie (tests/browser/cdp_console.py;
# screenshots under <build>/screenshots/).
source "$(dirname "$0")/lib.sh"
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
SHOTS="$SL_BUILD_DIR/screenshots"
mkdir -p "$SHOTS"
export SHARELINE_PUBLIC_URL="$URL"
setup_server
sql() { mariadb --no-defaults -h 127.0.0.1 -P "$SHARELINE_DB_PORT" -u "$SHARELINE_DB_USER" \
        -p"$SHARELINE_DB_PASSWORD" -N -B "$SHARELINE_DB_NAME" -e "$1"; }
j() { jq -r "$1" "$WORK/body"; }

# two owners in two tenants; their user ids are what login-link takes
TA=$("$BIN" admin tenant create "console-a-$$"); UA=$("$BIN" admin user create --tenant "$TA" --handle "ada$$" --name "Ada")
TOKEN=$("$BIN" admin token create --user "$UA")
TB=$("$BIN" admin tenant create "console-b-$$"); UB=$("$BIN" admin user create --tenant "$TB" --handle "bob$$" --name "Bob")
TOKEN_B=$("$BIN" admin token create --user "$UB")
SERVICE=$("$BIN" admin token create --service-tenant "$TA")
SID="console-$$"
sync_fixture "$TOKEN" "$SL_SOURCE_DIR/tests/fixtures/demo-session.md" "$SID" >/dev/null
check "A's session synced" eq "$(status)" 200

# cookie FILE <- the value of the console cookie in a Set-Cookie of FILE (headers)
cookie_of() { grep -i '^set-cookie: shareline_console=' "$1" | head -1 | sed 's/^[^=]*=\([^;]*\);.*/\1/' | tr -d '\r'; }
# sign_in USER_ID -> the console session's token (cookie value), via a fresh sign-in link
sign_in() {
    local link
    link=$("$BIN" admin login-link --user "$1") || return 1
    use_link "$link" "$WORK/signin.headers" >/dev/null || return 1
    cookie_of "$WORK/signin.headers"
}
# use_link URL HEADERS_FILE [curl args] -> status of the POST the link's page makes (its button)
use_link() {
    local u=$1 h=$2; shift 2
    curl -sS -o "$WORK/link.body" -D "$h" -w '%{http_code}' "$@" -H "Origin: ${u%%/console/*}" \
        --data-urlencode "link=${u#*link=}" "${u%%\?*}"
}
# crpc COOKIE METHOD JSON [curl args] -> an owner RPC as the console makes it (cookie, Origin, CSRF)
crpc() {
    local c=$1 m=$2 b=$3; shift 3
    curl -sS --http2-prior-knowledge -o "$WORK/body" -w '%{http_code}' -H "Cookie: shareline_console=$c" \
        -H 'Content-Type: application/json' "$@" --data-binary "$b" "$URL/rpc/shareline.v1.Sessions/$m" >"$WORK/status"
    cat "$WORK/body"
}
csrf_of() { curl -sS -H "Cookie: shareline_console=$1" "$URL/console/me" | jq -r .csrf; }

# ---- the pages: embedded, strong ETags, strict headers ----
check "GET /console redirects to /console/" eq "$(get /console)/$(header location)" "301//console/"
check "GET /console/: 200 HTML" eq "$(get /console/)/$(header content-type)" "200/text/html; charset=utf-8"
cp "$WORK/get.body" "$WORK/index.html"
csp=$(header content-security-policy)
for d in "default-src 'none'" "script-src 'self'" "style-src 'self'" "frame-ancestors 'none'" "base-uri 'none'" "form-action 'self'"; do
    check "console CSP has $d" grep -qF "$d" <<<"$csp"
done
check "console CSP allows no inline script and no eval" bash -c '! grep -qiE "unsafe-inline|unsafe-eval|sha256-|nonce-" <<<"$1"' _ "$(tr ';' '\n' <<<"$csp" | grep script-src)"
check "console: X-Frame-Options DENY" eq "$(header x-frame-options)" "DENY"
check "console: nosniff" eq "$(header x-content-type-options)" "nosniff"
check "console: referrer kept to this origin (so a form post keeps its Origin)" eq "$(header referrer-policy)" "same-origin"
check "index.html has no inline script (every <script has a src)" eq "$(grep -oi '<script[^>]*>' "$WORK/index.html" | grep -vc 'src=')" "0"
check "index.html has no inline handler" bash -c '! grep -qiE "<[^>]+ on[a-z]+=" "$1"' _ "$WORK/index.html"
etag=$(header etag)
check "console page: strong ETag" grep -qE '^"[0-9a-f]{32}"$' <<<"$etag"
check "console page: If-None-Match -> 304" eq "$(get /console/ -H "If-None-Match: $etag")" 304
for a in console.js console.css; do
    check "/console/$a: 200" eq "$(get /console/$a)" 200
    t=$(header etag)
    check "/console/$a: strong ETag, 304 on match" eq "$(grep -cE '^"[0-9a-f]{32}"$' <<<"$t")/$(get /console/$a -H "If-None-Match: $t")" "1/304"
done
check "console.js never uses innerHTML / eval" bash -c '! grep -qE "innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function" "$1"' _ "$SL_SOURCE_DIR/gateway/console/console.js"
check "an unknown console path: 404" eq "$(get /console/nope)" 404

# ---- sign-in links: one use, short-lived, never a bearer token ----
LINK=$("$BIN" admin login-link --user "$UA")
check "admin login-link prints a URL of this server" grep -qE "^$URL/console/login\?link=sll_[A-Za-z0-9_-]{43}$" <<<"$LINK"
secret=${LINK#*link=}
check "a sign-in link is not a bearer token" eq "$(rpc "$secret" ListProjects '{}' >/dev/null; status)" 401
check "opening the link (GET) shows a page with a Sign in button" eq "$(curl -sS -o "$WORK/lp" -w '%{http_code}' "$LINK")/$(grep -c 'id="link-signin"' "$WORK/lp")" "200/1"
check "HEAD and GET use nothing up (opened twice, the link still works below)" eq "$(curl -sS -I -o /dev/null -w '%{http_code}' "$LINK")" 200
check "its button posted from another origin: refused (no login CSRF)" eq "$(curl -sS -o /dev/null -w '%{http_code}' -H 'Origin: http://evil.example' --data-urlencode "link=$secret" "$URL/console/login")" 403
check "and without an Origin: refused" eq "$(curl -sS -o /dev/null -w '%{http_code}' --data-urlencode "link=$secret" "$URL/console/login")" 403
code=$(use_link "$LINK" "$WORK/h1")
check "its button (POST from our origin): 303 to /console/" eq "$code/$(grep -i '^location:' "$WORK/h1" | tr -d '\r' | sed 's/^[^ ]* //')" "303//console/"
setc=$(grep -i '^set-cookie:' "$WORK/h1" | tr -d '\r')
for attr in "HttpOnly" "SameSite=Strict" "Path=/" "Max-Age=43200"; do
    check "the cookie is $attr" grep -qF "; $attr" <<<"$setc"
done
check "the cookie has no Domain (host-only)" bash -c '! grep -qi "domain=" <<<"$1"' _ "$setc"
CA=$(cookie_of "$WORK/h1")
check "the cookie holds a console session (slc_), not the link" bash -c '[[ "$1" == slc_* ]] && [ "$1" != "$2" ]' _ "$CA" "$secret"
check "the link again: refused (used once)" eq "$(use_link "$LINK" "$WORK/again.h")" 401
check "the refusal says why" grep -q "invalid, expired or already used" "$WORK/link.body"
LINK2=$("$BIN" admin login-link --user "$UA")
sql "UPDATE console_tokens SET expires_at = NOW(6) - INTERVAL 1 SECOND WHERE kind = 'login' AND used_at IS NULL"
check "an expired link: refused" eq "$(use_link "$LINK2" "$WORK/h2")" 401
check "a made-up link: refused" eq "$(use_link "$URL/console/login?link=sll_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" "$WORK/h2")" 401
check "login-link for no such user: exit 1" bash -c '! "$1" admin login-link --user 999999999 2>/dev/null' _ "$BIN"
# two racing uses of one link: exactly one session
LINK3=$("$BIN" admin login-link --user "$UA")
pids=()
for k in 1 2 3 4; do (use_link "$LINK3" "$WORK/rh$k"; echo) >"$WORK/race.$k" & pids+=($!); done
wait "${pids[@]}"
check "four racing opens of one link: one 303, three 401" eq "$(cat "$WORK"/race.* | sort | tr '\n' ' ')" "303 401 401 401 "

# ---- /console/me and the CSRF token ----
check "/console/me without a cookie: 401" eq "$(get /console/me)" 401
check "/console/me: 200" eq "$(get /console/me -H "Cookie: shareline_console=$CA")" 200
check "/console/me names the user" eq "$(jq -r .handle "$WORK/get.body")" "ada$$"
CSRF=$(jq -r .csrf "$WORK/get.body")
check "/console/me gives a CSRF token (43 chars)" eq "${#CSRF}" 43
check "/console/me: no-store" eq "$(header cache-control)" "no-store"

# ---- owner RPCs with the cookie: origin and CSRF, or nothing happens ----
pub404() { get "/api/v1/share/$SID" >/dev/null; }
set_public='{"session_id":"'$SID'","public":true}'
crpc "$CA" SetVisibility "$set_public" >/dev/null
check "cookie without Origin or CSRF: 403" eq "$(status)" 403
crpc "$CA" SetVisibility "$set_public" -H "Origin: $URL" >/dev/null
check "cookie + Origin, no CSRF token: 403" eq "$(status)/$(j .code)" "403/permission_denied"
crpc "$CA" SetVisibility "$set_public" -H "Origin: $URL" -H "X-CSRF-Token: ${CSRF%?}x" >/dev/null
check "cookie + Origin + a wrong CSRF token: 403" eq "$(status)" 403
crpc "$CA" SetVisibility "$set_public" -H "Origin: http://evil.example" -H "X-CSRF-Token: $CSRF" >/dev/null
check "cookie + CSRF from another origin: 403" eq "$(status)" 403
crpc "$CA" SetVisibility "$set_public" -H "Origin: $URL" -H "X-CSRF-Token: $CSRF" -H "Sec-Fetch-Site: same-site" >/dev/null
check "cookie + CSRF, Sec-Fetch-Site same-site: 403" eq "$(status)" 403
crpc "$CA" SetVisibility "$set_public" -H "Origin: $URL" -H "X-CSRF-Token: $(csrf_of "$(sign_in "$UA")")" >/dev/null
check "cookie + the CSRF token of another session: 403" eq "$(status)" 403
check "after every refused call the session is still private (404)" eq "$(curl -sS -o /dev/null -w '%{http_code}' "$URL/share/$SID")" 404
crpc "$CA" SetVisibility "$set_public" -H "Origin: $URL" -H "X-CSRF-Token: $CSRF" >/dev/null
check "cookie + Origin + CSRF: 200" eq "$(status)/$(j .public)" "200/true"
check "and the share link works" eq "$(curl -sS -o /dev/null -w '%{http_code}' "$URL/share/$SID")" 200
code=$(curl -sS --http2-prior-knowledge -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
    -H "Cookie: shareline_console=$CA" -H 'Content-Type: application/json' \
    --data-binary '{"session_id":"'$SID'","public":false}' "$URL/rpc/shareline.v1.Sessions/SetVisibility")
check "bearer callers are unaffected (no CSRF asked, a cookie beside is ignored)" eq "$code" 200
rpc "$TOKEN" SetVisibility "$set_public" >/dev/null

# ---- tenancy: nothing of one owner from another's sign-in ----
CB=$(sign_in "$UB")
CSRF_B=$(csrf_of "$CB")
crpc "$CB" GetSession '{"session_id":"'$SID'"}' -H "Origin: $URL" -H "X-CSRF-Token: $CSRF_B" >/dev/null
check "B's console: A's session is not_found" eq "$(status)/$(j .code)" "404/not_found"
crpc "$CB" SetVisibility '{"session_id":"'$SID'","public":false}' -H "Origin: $URL" -H "X-CSRF-Token: $CSRF_B" >/dev/null
check "B's console cannot revoke A's share (404)" eq "$(status)/$(curl -sS -o /dev/null -w '%{http_code}' "$URL/share/$SID")" "404/200"
check "B's preview of A's session: 404" eq "$(get /console/preview/$SID -H "Cookie: shareline_console=$CB")" 404
crpc "$CB" ListSessions '{}' -H "Origin: $URL" -H "X-CSRF-Token: $CSRF_B" >/dev/null
check "B's list has none of A's sessions" eq "$(j '.sessions | length')" 0

# ---- Preview as Viewer: exactly the viewer's bytes, sandboxed ----
check "preview: 200" eq "$(get /console/preview/$SID -H "Cookie: shareline_console=$CA")" 200
cp "$WORK/get.body" "$WORK/preview.html"
pcsp=$(header content-security-policy)
check "preview CSP: sandbox (no script, no origin)" grep -qE "^sandbox;" <<<"$pcsp"
check "preview CSP: framed only by the console" grep -qF "frame-ancestors 'self'" <<<"$pcsp"
check "preview CSP: no script source" bash -c '! grep -q "script-src" <<<"$1"' _ "$pcsp"
get /share/$SID >/dev/null
check "preview bytes = the public page's bytes" cmp -s "$WORK/preview.html" "$WORK/get.body"
check "preview without a cookie: 401" eq "$(get /console/preview/$SID)" 401

# ---- the token form ----
form() { curl -sS -o "$WORK/form.body" -D "$WORK/form.headers" -w '%{http_code}' "$@" "$URL/console/login"; }
check "token form from our origin: 303 + cookie" eq "$(form -H "Origin: $URL" --data-urlencode "token=$TOKEN")/$(cookie_of "$WORK/form.headers" | cut -c1-4)" "303/slc_"
check "token form with a console session's token: refused (a session cannot renew itself)" eq "$(form -H "Origin: $URL" --data-urlencode "token=$CA")" 403
check "token form without Origin: 403" eq "$(form --data-urlencode "token=$TOKEN")" 403
check "token form from another origin: 403" eq "$(form -H "Origin: http://evil.example" --data-urlencode "token=$TOKEN")" 403
check "token form with a bad token: 401" eq "$(form -H "Origin: $URL" --data-urlencode "token=slt_nope")" 401
check "token form with a service token: refused" eq "$(form -H "Origin: $URL" --data-urlencode "token=$SERVICE")" 403
check "token form with a sign-in link's secret: 401" eq "$(form -H "Origin: $URL" --data-urlencode "token=${LINK3#*link=}")" 401
big=$(head -c 6000 /dev/zero | tr '\0' a)
check "token form over 4 KB: 400" eq "$(form -H "Origin: $URL" --data-urlencode "token=$big")" 400

# ---- sharectl login-link, and the route behind it ----
L=$("$SL_BUILD_DIR/sharectl" --server "$URL" --token "$TOKEN" login-link)
check "sharectl login-link prints a sign-in URL" grep -qE "^$URL/console/login\?link=sll_" <<<"$L"
check "and it signs in" eq "$(use_link "$L" "$WORK/sc.h")" 303
check "a console session makes no sign-in link (403)" eq "$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $CA" "$URL/console/login-link")" 403
# sessions and links end with the bearer token they came from
T9=$("$BIN" admin token create --user "$UA")
L9=$("$SL_BUILD_DIR/sharectl" --server "$URL" --token "$T9" login-link)
L9b=$("$SL_BUILD_DIR/sharectl" --server "$URL" --token "$T9" login-link)
use_link "$L9" "$WORK/l9.h" >/dev/null
C9=$(cookie_of "$WORK/l9.h")
check "a session from a token's link works" eq "$(get /console/me -H "Cookie: shareline_console=$C9")" 200
"$BIN" admin token revoke "$T9" >/dev/null
check "revoking that token ends the session" eq "$(get /console/me -H "Cookie: shareline_console=$C9")" 401
check "and its unused links" eq "$(use_link "$L9b" "$WORK/l9b.h")" 401
check "a service token makes no sign-in link (403)" eq "$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $SERVICE" "$URL/console/login-link")" 403
check "no token, no sign-in link (401)" eq "$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$URL/console/login-link")" 401

# ---- the end of a console session: sign-out, revoke, expiry ----
C2=$(sign_in "$UA"); X2=$(csrf_of "$C2")
check "sign-out without CSRF: 403" eq "$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H "Cookie: shareline_console=$C2" -H "Origin: $URL" "$URL/console/logout")" 403
code=$(curl -sS -o /dev/null -D "$WORK/lo" -w '%{http_code}' -X POST -H "Cookie: shareline_console=$C2" -H "Origin: $URL" -H "X-CSRF-Token: $X2" "$URL/console/logout")
check "sign-out: 200, cookie cleared" eq "$code/$(grep -ci '^set-cookie: shareline_console=; .*Max-Age=0' "$WORK/lo")" "200/1"
check "after sign-out the old cookie is refused (401)" eq "$(get /console/me -H "Cookie: shareline_console=$C2")" 401
crpc "$C2" ListSessions '{}' -H "Origin: $URL" -H "X-CSRF-Token: $X2" >/dev/null
check "and calls nothing (401)" eq "$(status)" 401
C3=$(sign_in "$UA")
"$BIN" admin token revoke "$C3" >/dev/null
check "admin token revoke ends a console session" eq "$(get /console/me -H "Cookie: shareline_console=$C3")" 401
C4=$(sign_in "$UA")
sql "UPDATE console_tokens SET expires_at = NOW(6) - INTERVAL 1 SECOND WHERE kind = 'console' AND token_hash = UNHEX(SHA2('$C4', 256))"
check "an expired console session: 401" eq "$(get /console/me -H "Cookie: shareline_console=$C4")" 401

# ---- in a browser ----
if [ -z "$CHROMIUM" ]; then
    not_ok "chromium is not installed (scripts/deps.sh installs it)"
    exit 1
fi
rpc "$TOKEN" SetVisibility '{"session_id":"'$SID'","public":false}' >/dev/null
# the hostile session: payloads in every field the console shows
HSID="console-xss-$$"
sync_fixture "$TOKEN" "$SL_SOURCE_DIR/tests/fixtures/xss-session.md" "$HSID" "$(jq -n \
    '{title:"</title><script>window.__xss=\"title\"</script><img src=x onerror=window.__xss=2>",
      project:{name:"\"><img src=x onerror=window.__xss=1>", icon:"<svg onload=window.__xss=3>", color:"\"><script>__xss=4</script>"}}')" >/dev/null
rpc "$TOKEN" UpdateExchangeTitle "{\"session_id\":\"$HSID\",\"exchange_id\":1,\"title\":\"<iframe srcdoc='<script>parent.__xss=5</script>'>\"}" >/dev/null
# a finding, so the dialog lists one (a key-shaped value of the rules' test records)
rpc "$TOKEN" AppendExchanges "{\"session_id\":\"$HSID\",\"exchanges\":[{\"prompt\":\"my key <img src=x onerror=window.__xss=6> ghp_F2Pb6Fx4vFfKYoUrUwejMAnH7x5OEm1F9Iu5\",\"response\":\"ok\"}]}" >/dev/null
check "hostile session ready" eq "$(status)" 200
# 30 more sessions: the list pages (25 a page)
for k in $(seq 1 30); do
    printf '_**User**_\n\nPage filler %s.\n\n---\n\n_**Agent**_\n\nOk.\n' "$k" | jq -Rs --arg id "fill-$$-$k" \
        '{session_id:$id, project:{name:"paging"}, markdown:.}' | curl -sS --http2-prior-knowledge -o /dev/null \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' --data-binary @- \
        "$URL/rpc/shareline.v1.Sessions/SyncSession"
done
ATTACK_PORT=$((SL_TEST_HTTP_PORT + 11))
python3 "$SL_SOURCE_DIR/tests/browser/cdp_console.py" "$CHROMIUM" "$URL" "$SHOTS" "$ATTACK_PORT" \
    "$("$BIN" admin login-link --user "$UA")" "$SID" "$HSID" "$TOKEN" >"$WORK/browser.json" 2>"$WORK/browser.err"
rc=$?
check "the browser run finished" eq "$rc" 0
[ "$rc" = 0 ] || cat "$WORK/browser.err"
b() { jq -r "$1" "$WORK/browser.json"; }
jq -r '.steps[]? | "\(.ok) \(.name)\(if .detail then " [" + .detail + "]" else "" end)"' "$WORK/browser.json" >"$WORK/steps"
while read -r okv name; do
    if [ "$okv" = true ]; then ok "browser: $name"; else not_ok "browser: $name"; fi
done <"$WORK/steps"
check "browser: some steps ran" test "$(wc -l <"$WORK/steps")" -ge 20
check "browser: no script of the payloads ran (window.__xss unset)" eq "$(b .xss)" "null"
check "browser: no console errors" eq "$(b '.console_errors | length')" 0
[ "$(b '.console_errors | length')" = 0 ] || b '.console_errors[]'
for s in signed-in search session share-dialog preview xss phone dark; do
    check "screenshot $s.png" test -s "$SHOTS/console-$s.png"
done

# ---- on TLS: the __Host- cookie, Secure ----
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 1 \
    -subj /CN=127.0.0.1 >/dev/null 2>&1
stop_server
export SHARELINE_TLS_CERT="$WORK/cert.pem" SHARELINE_TLS_KEY="$WORK/key.pem"
TURL="https://127.0.0.1:$SL_TEST_HTTP_PORT"
export SHARELINE_PUBLIC_URL="$TURL"
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 "$BIN" serve >>"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 200); do curl -ksf "$TURL/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
LINK=$("$BIN" admin login-link --user "$UA")
check "TLS: the sign-in link is https" grep -q "^$TURL/console/login?link=" <<<"$LINK"
use_link "$LINK" "$WORK/tls.h" -k >/dev/null
setc=$(grep -i '^set-cookie:' "$WORK/tls.h" | tr -d '\r')
check "TLS: the cookie is __Host-shareline_console" grep -q '^set-cookie: __Host-shareline_console=slc_' <<<"$setc"
check "TLS: the cookie is Secure, HttpOnly, SameSite=Strict, Path=/" \
    bash -c 'for a in "; Secure" "; HttpOnly" "; SameSite=Strict" "; Path=/"; do grep -qF "$a" <<<"$1" || exit 1; done' _ "$setc"
TC=$(sed 's/^[^=]*=\([^;]*\);.*/\1/' <<<"$setc")
TX=$(curl -ksS -H "Cookie: __Host-shareline_console=$TC" "$TURL/console/me" | jq -r .csrf)
code=$(curl -ksS --http2 -o /dev/null -w '%{http_code}' -H "Cookie: __Host-shareline_console=$TC" -H "Origin: $TURL" \
    -H "X-CSRF-Token: $TX" -H 'Content-Type: application/json' -d '{}' "$TURL/rpc/shareline.v1.Sessions/ListProjects")
check "TLS: a console call with the __Host- cookie: 200" eq "$code" 200
code=$(curl -ksS -o /dev/null -w '%{http_code}' -H "Cookie: __Host-shareline_console=$TC" -H "Origin: http://127.0.0.1:$SL_TEST_HTTP_PORT" \
    -H "X-CSRF-Token: $TX" -H 'Content-Type: application/json' -d '{}' "$TURL/rpc/shareline.v1.Sessions/ListProjects")
check "TLS: the same call from the http:// origin: 403" eq "$code" 403
check "TLS: the plain cookie name is not a credential there" eq "$(curl -ksS -o /dev/null -w '%{http_code}' -H "Cookie: shareline_console=$TC" "$TURL/console/me")" 401
