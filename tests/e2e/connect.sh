#!/usr/bin/env bash
# Owner RPCs through a generated client (issue 20, docs/connect.md): the TypeScript code that
# protoc + @bufbuild/protoc-gen-es generate from rpc/proto/shareline/v1/sessions.proto, calling
# every method over the Connect protocol with @connectrpc/connect-node (tests/connect/). Node and
# the pinned npm packages (tests/connect/package-lock.json) are installed by the set-up; the
# packages go to <build>/connect/node_modules (npm ci, again only when the lockfile changes).
source "$(dirname "$0")/lib.sh"
export SHARELINE_MAX_BODY=1048576 # the oversized-body case stays small
setup_server connect
D="$SL_BUILD_DIR/connect"
mkdir -p "$D"
command -v node >/dev/null && command -v npm >/dev/null && command -v protoc >/dev/null \
    || { not_ok "node, npm and protoc are installed (scripts/deps.sh)"; exit 1; }
cp "$SL_SOURCE_DIR"/tests/connect/{package.json,package-lock.json,tsconfig.json,conformance.ts} "$D/"
if ! cmp -s "$D/package-lock.json" "$D/node_modules/.package-lock.installed" 2>/dev/null; then
    (cd "$D" && npm ci --no-audit --no-fund --loglevel=error) >"$WORK/npm.log" 2>&1 \
        || { cat "$WORK/npm.log"; not_ok "npm ci"; exit 1; }
    cp "$D/package-lock.json" "$D/node_modules/.package-lock.installed"
fi
ok "npm ci (pinned by tests/connect/package-lock.json)"
rm -rf "$D/gen" "$D/out"
mkdir -p "$D/gen"
check "protoc + protoc-gen-es generate the TypeScript client" protoc -I "$SL_SOURCE_DIR/rpc/proto" -I /usr/include \
    --plugin=protoc-gen-es="$D/node_modules/.bin/protoc-gen-es" --es_out="$D/gen" --es_opt=target=ts,import_extension=js \
    shareline/v1/sessions.proto shareline/v1/types.proto
check "the client and the test compile (tsc, strict)" bash -c 'cd "$1" && node_modules/.bin/tsc -p tsconfig.json' _ "$D"

TB=$(new_owner "connect-other")
T=$("$BIN" admin tenant create "connect-svc-$$"); U=$("$BIN" admin user create --tenant "$T" --handle "svc$$" --name Svc)
UT=$("$BIN" admin token create --user "$U")
SVC=$("$BIN" admin token create --service-tenant "$T")
# a session at the cap of 10,000 exchanges (the failed_precondition case)
FULL="connect-full-$$"
python3 -c 'import sys; sys.stdout.write("\n---\n\n".join("_**User**_\n\nq%d\n\n---\n\n_**Agent**_\n\na\n" % i for i in range(10000)))' >"$WORK/full.md"
sync_fixture "$UT" "$WORK/full.md" "$FULL" >/dev/null
check "a session of 10,000 exchanges" eq "$(status)/$(jq -r .exchange_count "$WORK/body")" "200/10000"
# the service token acts for user U: the conformance run uses U's token as its main one
SL_REDIS_PID=$(cat "$SL_TEST_VAR/redis.pid") node "$D/out/conformance.js" "$URL" "$UT" "$TB" "$SVC" "$U" "$SHARELINE_MAX_BODY" "$FULL" >"$WORK/conf.out" 2>&1
rc=$?
while read -r word rest; do
    case "$word" in
    ok) ok "connect: $rest" ;;
    FAIL) not_ok "connect: $rest" ;;
    cases) echo "     $word $rest" ;;
    *) echo "     $word $rest" ;;
    esac
done <"$WORK/conf.out"
check "the conformance run exits 0" eq "$rc" 0
summary=$(grep '^cases ' "$WORK/conf.out")
check "every method of the .proto was called" eq "$(awk '{print $6}' <<<"$summary")" \
    "$(grep -cE '^\s*rpc [A-Za-z]+\(' "$SL_SOURCE_DIR/rpc/proto/shareline/v1/sessions.proto")"

# ---- the server's side of the protocol, seen with curl ----
c() { curl -sS --http2-prior-knowledge -o "$WORK/c.body" -w '%{http_code}' -H "Authorization: Bearer $UT" \
      -H 'Content-Type: application/json' "$@"; }
check "Connect-Timeout-Ms 0: 504 deadline_exceeded from the server" eq \
    "$(c -H 'Connect-Protocol-Version: 1' -H 'Connect-Timeout-Ms: 0' -d '{}' "$URL/rpc/shareline.v1.Sessions/ListProjects")/$(jq -r .code "$WORK/c.body")" "504/deadline_exceeded"
check "a bad Connect-Timeout-Ms on a Connect call: 400" eq "$(c -H 'Connect-Protocol-Version: 1' -H 'Connect-Timeout-Ms: soon' -d '{}' "$URL/rpc/shareline.v1.Sessions/ListProjects")" 400
check "Connect-Timeout-Ms without the Connect header: ignored (other callers unaffected)" eq "$(c -H 'Connect-Timeout-Ms: 0' -d '{}' "$URL/rpc/shareline.v1.Sessions/ListProjects")" 200
check "deadlines are counted apart from clients that went away" test "$(metric shareline_connect_deadlines_total)" -ge 1
check "Connect-Protocol-Version 2: 400" eq "$(c -H 'Connect-Protocol-Version: 2' -d '{}' "$URL/rpc/shareline.v1.Sessions/ListProjects")" 400
check "the binary codec (application/proto): 415" eq "$(curl -sS --http2-prior-knowledge -o /dev/null -w '%{http_code}' \
    -H "Authorization: Bearer $UT" -H 'Connect-Protocol-Version: 1' -H 'Content-Type: application/proto' \
    --data-binary @/dev/null "$URL/rpc/shareline.v1.Sessions/ListProjects")" 415
one='{"sessionId":"'$FULL'","exchanges":[{"prompt":"p","response":"r"}]}'
check "Connect: failed_precondition is HTTP 400 (Connect's table)" eq "$(c -H 'Connect-Protocol-Version: 1' \
    -d "$one" "$URL/rpc/shareline.v1.Sessions/AppendExchanges")/$(jq -r .code "$WORK/c.body")" "400/failed_precondition"
check "without the Connect header: 412 (API.md's table)" eq "$(c -d '{"session_id":"'$FULL'","exchanges":[{"prompt":"p","response":"r"}]}' \
    "$URL/rpc/shareline.v1.Sessions/AppendExchanges")/$(jq -r .code "$WORK/c.body")" "412/failed_precondition"
check "without the Connect header the JSON callers keep API.md's shapes (camelCase is not a field)" eq \
    "$(c -d '{"sessionId":"x"}' "$URL/rpc/shareline.v1.Sessions/GetSession")/$(jq -r .code "$WORK/c.body")" "400/invalid_argument"
