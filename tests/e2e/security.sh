#!/usr/bin/env bash
# Security basics, each checked here against the real server and database:
#   1. tokens are stored only as SHA-256 (the raw token appears nowhere in a dump of the database)
#      and a token that differs anywhere (first, middle, last character, case, length) is refused;
#      the comparison itself is CRYPTO_memcmp after a lookup by hash (core/auth.c; unit-tested in
#      tests/core/test_auth.c);
#   2. generated session ids are UUIDv4 from getrandom: unique, well formed, no sequence, and each
#      of the 122 random bits is set in about half of 300 ids;
#   3. every query is parameterised: SQL injection strings in every text field round-trip as plain
#      data (GetSession, public JSON, ListSessions search), and the schema and other tenants' rows
#      are untouched;
#   4. no path traversal: ids are [A-Za-z0-9_-]{1,64}; dotted, encoded and NUL paths give the 404
#      of an unknown share, never a file.
source "$(dirname "$0")/lib.sh"
setup_server
root_sql() { mariadb --no-defaults -h 127.0.0.1 -P "$SHARELINE_DB_PORT" -u "$SHARELINE_DB_USER" \
    -p"$SHARELINE_DB_PASSWORD" "$SHARELINE_DB_NAME" -N -B -e "$1"; }

# ---- 1. tokens ----
TOKEN=$(new_owner sec)
OTHER=$(new_owner secother)
check "a token looks like slt_ + 43 base64url characters (256 bits)" \
    bash -c "[[ '$TOKEN' =~ ^slt_[A-Za-z0-9_-]{43}$ ]]"
hash=$(printf '%s' "$TOKEN" | sha256sum | cut -d' ' -f1 | tr a-f A-F)
check "tokens.token_hash holds SHA-256(token)" eq "$(root_sql "SELECT COUNT(*) FROM tokens WHERE HEX(token_hash) = '$hash'")" 1
mariadb-dump --no-defaults -h 127.0.0.1 -P "$SHARELINE_DB_PORT" -u "$SHARELINE_DB_USER" -p"$SHARELINE_DB_PASSWORD" \
    --hex-blob "$SHARELINE_DB_NAME" >"$WORK/dump.sql" 2>"$WORK/dump.err"
check "the database dump is not empty" test "$(wc -c <"$WORK/dump.sql")" -gt 10000
check "the raw token appears nowhere in the database" eq "$(grep -c -F -e "${TOKEN#slt_}" "$WORK/dump.sql")" 0
rpc "$TOKEN" ListProjects '{}' >/dev/null
check "the right token is accepted" eq "$(status)" 200
secret=${TOKEN#slt_}
flip() { # flips the character at $1 of the secret to another base64url character
    local i=$1 c=${secret:$1:1} r
    if [ "$c" = A ]; then r=B; else r=A; fi
    printf 'slt_%s%s%s' "${secret:0:$i}" "$r" "${secret:$((i + 1))}"
}
for pos in 0 21 42; do
    rpc "$(flip $pos)" ListProjects '{}' >/dev/null
    check "a token with character $pos changed is refused (401)" eq "$(status)" 401
done
rpc "${TOKEN^^}" ListProjects '{}' >/dev/null
check "the upper-cased token is refused (no case-insensitive match)" eq "$(status)" 401
rpc "${TOKEN}x" ListProjects '{}' >/dev/null
check "the token with a character appended is refused" eq "$(status)" 401
rpc "${TOKEN:0:46}" ListProjects '{}' >/dev/null
check "the token without its last character is refused" eq "$(status)" 401
rpc "$hash" ListProjects '{}' >/dev/null
check "the stored hash itself is not a token" eq "$(status)" 401

# ---- 2. session ids ----
: >"$WORK/ids"
for i in $(seq 1 300); do
    printf '{"project":{"name":"ids"},"markdown":"_**User**_\\n\\nid %d\\n\\n---\\n\\n_**Agent**_\\n\\nok\\n"}' "$i" >"$WORK/req"
    curl -sS --http2-prior-knowledge -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
        --data-binary @"$WORK/req" "$URL/rpc/shareline.v1.Sessions/SyncSession" | jq -r .session_id >>"$WORK/ids"
done
check "300 generated session ids" eq "$(grep -c . "$WORK/ids")" 300
check "all are UUIDv4 (8-4-4-4-12 hex, version 4, variant 10)" eq \
    "$(grep -cE '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$' "$WORK/ids")" 300
check "all distinct" eq "$(sort -u "$WORK/ids" | wc -l)" 300
# Each random bit must be set in 300 ids between 90 and 210 times (p ~ 1e-12 per bit by chance),
# and consecutive ids must differ in at least 30 of their 122 random bits: a counter, a clock or a
# weak generator fails this.
python3 - "$WORK/ids" >"$WORK/bits" <<'PY'
import sys
ids = [l.strip().replace('-', '') for l in open(sys.argv[1]) if l.strip()]
vals = [int(h, 16) for h in ids]
# bit i counted from the least significant: the version nibble is bits 76..79, the variant 62..63
fixed = set(range(76, 80)) | {62, 63}
counts = [sum((v >> i) & 1 for v in vals) for i in range(128) if i not in fixed]
diffs = [bin(a ^ b).count('1') for a, b in zip(vals, vals[1:])]
print(len(counts), min(counts), max(counts), min(diffs))
PY
read -r nbits cmin cmax dmin <"$WORK/bits"
echo "     random bits $nbits, each set in $cmin..$cmax of 300 ids; consecutive ids differ in >= $dmin bits"
check "122 random bits" eq "$nbits" 122
check "every random bit set in 90..210 of 300 ids" bash -c "[ $cmin -ge 90 ] && [ $cmax -le 210 ]"
check "consecutive ids differ in at least 30 bits" test "$dmin" -ge 30

# ---- 3. SQL injection strings round-trip as data ----
INJ=("'; DROP TABLE sessions; --" "\" OR \"1\"=\"1" "' OR '1'='1' --" "1; DELETE FROM tokens" \
     "\\' UNION SELECT token_hash FROM tokens -- " "%' OR title LIKE '%" "_%_" "\\\\x27\\\\\" /* */ #" \
     "Robert'); DROP TABLE exchanges;--" "') OR SLEEP(5)#")
sessions_before=$(root_sql "SELECT COUNT(*) FROM sessions")
tokens_before=$(root_sql "SELECT COUNT(*) FROM tokens")
OSID="other-tenant-sec-$$"
other_body=$(jq -n --arg sid "$OSID" '{session_id:$sid, project:{name:"other"}, markdown:"_**User**_\n\nsecret of another tenant\n\n---\n\n_**Agent**_\n\nok\n"}')
rpc "$OTHER" SyncSession "$other_body" >/dev/null
check "another tenant's session" eq "$(status)" 200
n=0
for s in "${INJ[@]}"; do
    n=$((n + 1))
    sid="inj-$n-$$"
    md=$(printf '_**User**_\n\nprompt %s\n\n---\n\n_**Agent**_\n\nresponse %s\n' "$s" "$s")
    body=$(jq -n --arg sid "$sid" --arg s "$s" --arg md "$md" \
        '{session_id:$sid, title:("title " + $s), project:{id:("ext " + $s), name:("name " + $s), icon:"R"}, markdown:$md}')
    rpc "$TOKEN" SyncSession "$body" >/dev/null
    [ "$(status)" = 200 ] || { not_ok "SyncSession with [$s]: HTTP $(status) $(cat "$WORK/body")"; continue; }
    rpc "$TOKEN" AppendExchanges "$(jq -n --arg sid "$sid" --arg s "$s" \
        '{session_id:$sid, exchanges:[{prompt:("p2 " + $s), response:("r2 " + $s), title:("t2 " + $s)}]}')" >/dev/null
    ex2=$(jq -r '.exchange_ids[0]' "$WORK/body")
    rpc "$TOKEN" UpdateExchangeTitle "$(jq -n --arg sid "$sid" --arg s "$s" --argjson ex "$ex2" \
        '{session_id:$sid, exchange_id:$ex, title:("t3 " + $s)}')" >/dev/null
    rpc "$TOKEN" SetVisibility "$(jq -n --arg sid "$sid" '{session_id:$sid, public:true}')" >/dev/null
    got=$(rpc "$TOKEN" GetSession "$(jq -n --arg sid "$sid" '{session_id:$sid}')")
    ok_all=1
    for want in "title $s" "name $s" "prompt $s" "response $s" "p2 $s" "r2 $s" "t3 $s"; do
        echo "$got" | jq -e --arg w "$want" '[.. | strings | select(contains($w))] | length > 0' >/dev/null || {
            ok_all=0; echo "     [$want] not found in GetSession" >&2; }
    done
    check "injection string $n round-trips through SyncSession/AppendExchanges/UpdateExchangeTitle (GetSession)" eq "$ok_all" 1
    get "/api/v1/share/$sid" >/dev/null
    pub_ok=$(jq -r --arg s "$s" '[.title == ("title " + $s), .project.name == ("name " + $s),
        (.exchanges[0].prompt | contains("prompt " + $s)), .exchanges[1].title == ("t3 " + $s)] | all' "$WORK/get.body")
    check "injection string $n is plain data in the public JSON" eq "$pub_ok" true
    found=$(rpc "$TOKEN" ListSessions "$(jq -n --arg q "$s" '{query:$q}')" | jq -r --arg sid "$sid" \
        '[.sessions[]?.session_id] | (index($sid) != null)')
    check "searching for injection string $n answers (HTTP 200)" eq "$(status)" 200
    leaked=$(jq -r --arg o "$OSID" '[.sessions[]?.session_id | select(. == $o)] | length' "$WORK/body")
    check "searching for injection string $n shows no other tenant's session" eq "$leaked" 0
    : "$found"
done
check "no session lost ($sessions_before before, plus ours)" test "$(root_sql "SELECT COUNT(*) FROM sessions")" -ge "$sessions_before"
check "no token deleted" test "$(root_sql "SELECT COUNT(*) FROM tokens")" -ge "$tokens_before"
check "every table still there" eq "$(root_sql "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name IN ('sessions','exchanges','tokens','projects','users','tenants','session_uploads')")" 7
rpc "$OTHER" GetSession "{\"session_id\":\"$OSID\"}" >/dev/null
check "the other tenant's session is intact" eq "$(status)" 200
rpc "$TOKEN" GetSession "{\"session_id\":\"x' OR '1'='1\"}" >/dev/null
check "an injection string as a session id is refused, not run" bash -c "[ $(status) = 400 ] || [ $(status) = 404 ]"

# ---- 4. path traversal ----
nf=$(get "/share/does-not-exist-$$")
cp "$WORK/get.body" "$WORK/nf.html"
get "/api/v1/share/does-not-exist-$$" >/dev/null
cp "$WORK/get.body" "$WORK/nf.json"
for p in "/share/../../../../etc/passwd" "/share/..%2F..%2F..%2Fetc%2Fpasswd" "/share/%2e%2e%2f%2e%2e%2fetc%2fpasswd" \
         "/share/....//....//etc/passwd" "/share/%00" "/share/a%00b" "/share/..%5c..%5cwindows" "/share/%252e%252e%252f" \
         "/share/$(printf 'a%.0s' $(seq 1 65))"; do
    code=$(curl -sS --path-as-is --http2-prior-knowledge -o "$WORK/t.body" -w '%{http_code}' "$URL$p")
    check "GET $p: 404" eq "$code" 404
    check "GET $p: no file content" eq "$(grep -c 'root:' "$WORK/t.body")" 0
done
for p in "/api/v1/share/../../etc/passwd" "/api/v1/share/..%2F..%2Fetc%2Fpasswd" "/api/v1/share/%2e%2e"; do
    code=$(curl -sS --path-as-is --http2-prior-knowledge -o "$WORK/t.body" -w '%{http_code}' "$URL$p")
    check "GET $p: 404 without file content" bash -c "[ $code = 404 ] && ! grep -q 'root:' '$WORK/t.body'"
done
code=$(curl -sS --path-as-is --http2-prior-knowledge -o "$WORK/t.body" -w '%{http_code}' "$URL/share/..%2F..%2Fetc%2Fpasswd")
check "an encoded traversal gets the very 404 page of an unknown id" cmp -s "$WORK/t.body" "$WORK/nf.html"
for p in "/api/v1/projects/..%2F..%2Fetc/sessions/passwd" "/api/v1/projects/x/sessions/..%2F..%2Fetc%2Fpasswd" \
         "/api/v1/projects/../../etc/sessions/x"; do
    code=$(curl -sS --path-as-is --http2-prior-knowledge -H "Authorization: Bearer $TOKEN" -o "$WORK/t.body" \
        -w '%{http_code}' "$URL$p")
    # 404 for a project path that is not one; 400 with the id rule for an invalid session id
    check "GET $p (SpecStory API): 404/400 without file content" \
        bash -c "{ [ $code = 404 ] || [ $code = 400 ]; } && ! grep -q 'root:' '$WORK/t.body'"
done
rpc "$TOKEN" SyncSession "$(jq -n '{session_id:"../../etc/passwd", project:{name:"x"}, markdown:"_**User**_\n\nhi\n"}')" >/dev/null
check "a session id with ../ is refused (400)" eq "$(status)" 400
check "the server is still alive" kill -0 "$SERVER_PID"
