#!/usr/bin/env bash
# The README's sharectl walk-through, run exactly as written (the block between
# <!-- walkthrough --> markers), in a directory laid out like the repository after `make run`.
source "$(dirname "$0")/lib.sh"
setup_server walker
mkdir -p "$WORK/repo/var"
ln -s "$SL_BUILD_DIR" "$WORK/repo/build"
ln -s "$SL_SOURCE_DIR/tests" "$WORK/repo/tests"
printf 'SHARELINE_URL=%s\nSHARELINE_TOKEN=%s\nSHARELINE_SESSION=x\n' "$URL/api/v1/share/x" "$TOKEN" >"$WORK/repo/var/demo.env"
awk '/<!-- walkthrough -->/{on=1; next} /<!-- \/walkthrough -->/{on=0} on && !/^```/' "$SL_SOURCE_DIR/README.md" \
    >"$WORK/walk.sh"
check "the README has a walk-through block" test "$(wc -l <"$WORK/walk.sh")" -gt 10
out=$(cd "$WORK/repo" && SHARELINE_SERVER="$URL" bash -e "$WORK/walk.sh" 2>&1)
rc=$?
echo "$out"
check "the walk-through runs as written (exit 0)" eq "$rc" 0
check "public JSON had 2 exchanges, then 1 after hide" eq "$(grep -xE '[0-9]+' <<<"$out" | head -2 | tr '\n' ,)" "2,1,"
check "status line" grep -q "You've hidden 1 of 2 exchanges" <<<"$out"
check "search found it with a snippet" grep -q "Apache-2.0" <<<"$out"
check "revoked link answered 404" grep -qx 404 <<<"$out"
