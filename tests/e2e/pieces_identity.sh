#!/usr/bin/env bash
# Identity of incremental projections (docs/pieces.md): after every step of random sequences of
# owner changes, what node A serves (assembled from the pieces kept with each exchange, only the
# touched ones re-rendered) is byte-identical to a full rebuild from the text on node B
# (SHARELINE_PROJECTION_SCRATCH=1, its own Redis prefix, no node memory; its cache entry is
# deleted before each read, so every read of B renders every exchange again): the JSON document,
# the page and the Markdown, their gzip forms (the same bytes, and inflating to the plain ones),
# and every ETag.
# Sequences: appends (Markdown, HTML, quotes, control characters, non-ASCII), hides, shows,
# retitles (custom and back to the default), deletes, session retitles, project renames, and
# re-syncs of a SpecStory file whose prompts and responses are edited, added and removed.
# Node A keeps the chunk state of every public session (SHARELINE_CHUNKS_MIN=1; by default only
# sessions of 256 visible exchanges or more do, docs/pieces.md "Changes that cost what they
# change"), so its owner builds of appends, hides, shows, retitles and deletes start from that state
# and count the documents from its sums; a wrong sum would make A's readers drop the entry
# (checked: no drops) or serve other bytes than B.
export SHARELINE_CHUNKS_MIN=1
source "$(dirname "$0")/lib.sh"
before_finish() { stop_b; }
STEPS=${SL_IDENTITY_STEPS:-150}
RANDOM=${SL_IDENTITY_SEED:-$$}
echo "     seed $RANDOM, $STEPS steps per session"

setup_server identity
start_b SHARELINE_PROJECTION_SCRATCH=1 SHARELINE_REDIS_PREFIX="idb$$:" SHARELINE_NODE_MEMORY=0 ||
    { not_ok "node B (full rebuilds) starts"; exit 1; }
ok "node B (full rebuilds) starts"

# a random text: Markdown, HTML, quotes, a control character, non-ASCII
TEXTS=('plain words' '**bold** and `code`' $'```c\nint x = 1; /* </script> */\n```' '<b>html</b> & "quotes" \ back'
    $'tab\there, bell \x07 and \x01' 'ünïcödé — 日本語 🎉' '> quote\n> more' '- a\n- b\n  - c' '[link](javascript:alert(1))'
    '<details><summary>s</summary>inside</details>' $'line\r\nwith crlf' '' '# heading' '| a | b |\n|---|---|\n| 1 | 2 |')
rtitle() { rtext | tr -d '\000-\037' | head -c "$1"; } # titles hold no control characters
rtext() { local n=$((RANDOM % 3 + 1)) s="" i; for ((i = 0; i < n; i++)); do s+="${TEXTS[RANDOM % ${#TEXTS[@]}]} $RANDOM"$'\n'; done; printf '%s' "$s"; }

# compare SID STEP -> checks A against B for every representation; prints nothing when equal
mismatches=0
fetch() { # BASE PATH ACCEPT ENC OUT -> status; body in OUT, ETag in OUT.etag
    curl -sS --http2-prior-knowledge -o "$5" -D "$5.h" -w '%{http_code}' -H "Accept: $3" ${4:+-H "Accept-Encoding: $4"} "$1$2"
    grep -i '^etag:' "$5.h" | tr -d '\r' | sed 's/^[^:]*: *//' >"$5.etag"
}
compare() {
    local sid=$1 step=$2 bad="" v path accept enc
    for v in "json|/api/v1/share/$sid|application/json" "html|/share/$sid|text/html" "md|/api/v1/share/$sid|text/markdown"; do
        IFS='|' read -r name path accept <<<"$v"
        for enc in "" gzip; do
            redis-cli -p "$SHARELINE_REDIS_PORT" --no-auth-warning DEL "idb$$:p:$sid" >/dev/null
            sa=$(fetch "$URL" "$path" "$accept" "$enc" "$WORK/a") sb=$(fetch "$B_URL" "$path" "$accept" "$enc" "$WORK/b")
            if [ "$sa" != "$sb" ]; then bad+=" $name${enc:+.gz}:status($sa/$sb)"; continue; fi
            [ "$sa" = 200 ] || continue
            cmp -s "$WORK/a" "$WORK/b" || bad+=" $name${enc:+.gz}:bytes"
            cmp -s "$WORK/a.etag" "$WORK/b.etag" || bad+=" $name${enc:+.gz}:etag($(cat "$WORK/a.etag")/$(cat "$WORK/b.etag"))"
            if [ -n "$enc" ]; then
                gzip -dc "$WORK/a" >"$WORK/a.plain" 2>/dev/null || bad+=" $name.gz:not-gzip"
                cmp -s "$WORK/a.plain" "$WORK/$name.plain" || bad+=" $name.gz:inflates-to-other-bytes"
            else
                cp "$WORK/a" "$WORK/$name.plain"
            fi
        done
    done
    if [ -n "$bad" ]; then
        mismatches=$((mismatches + 1))
        [ "$mismatches" -le 5 ] && echo "     $sid step $step ($last_op):$bad"
    fi
    compared=$((compared + 1))
}

ids() { rpc "$TOKEN" GetSession "{\"session_id\":\"$1\"}" | jq -r '[.exchanges[] | select(.deleted != true) | .id] | .[]'; }
pick() { local a=($(ids "$1")); [ ${#a[@]} -gt 0 ] && echo "${a[RANDOM % ${#a[@]}]}"; }
compared=0 failed_calls=0
call() { # METHOD JSON
    last_op=$1
    rpc "$TOKEN" "$1" "$2" >/dev/null
    case "$(status)" in 200) ;; *) failed_calls=$((failed_calls + 1)); [ "$failed_calls" -le 3 ] && echo "     $1 answered $(status): $(head -c 200 "$WORK/body")" ;; esac
}

# ---- session 1: appends and edits ----
S1="ident-a-$$"
jq -n --arg id "$S1" '{session_id:$id, project:{name:"ident"}, markdown:"_**User**_\n\nfirst\n\n---\n\n_**Agent**_\n\nhello\n"}' >"$WORK/s.json"
call SyncSession "$(cat "$WORK/s.json")"
call SetVisibility "{\"session_id\":\"$S1\",\"public\":true}"
PROJ=$(rpc "$TOKEN" ListProjects '{}' | jq '.projects[] | select(.name == "ident") | .project_id // .id' | head -1)
check "the project's id" test -n "$PROJ"
compare "$S1" 0
for ((step = 1; step <= STEPS; step++)); do
    case $((RANDOM % 10)) in
    0 | 1 | 2)
        n=$((RANDOM % 3 + 1))
        arr=$(for ((i = 0; i < n; i++)); do jq -n --arg p "$(rtext)" --arg r "$(rtext)" '{prompt:$p, response:$r}'; done | jq -s .)
        call AppendExchanges "$(jq -n --arg id "$S1" --argjson e "$arr" '{session_id:$id, exchanges:$e}')" ;;
    3) e=$(pick "$S1") && call SetExchangesHidden "{\"session_id\":\"$S1\",\"exchange_ids\":[$e],\"hidden\":true}" ;;
    4) e=$(pick "$S1") && call SetExchangesHidden "{\"session_id\":\"$S1\",\"exchange_ids\":[$e],\"hidden\":false}" ;;
    5) e=$(pick "$S1") && call UpdateExchangeTitle "$(jq -n --arg id "$S1" --argjson e "$e" --arg t "$(rtitle 80)" '{session_id:$id, exchange_id:$e, title:$t}')" ;;
    6) e=$(pick "$S1") && call DeleteExchange "{\"session_id\":\"$S1\",\"exchange_id\":$e}" ;;
    7) call UpdateSessionTitle "$(jq -n --arg id "$S1" --arg t "$([ $((RANDOM % 3)) = 0 ] || rtitle 60)" '{session_id:$id, title:$t}')" ;;
    8) e=$(pick "$S1") && call UpdateExchangeTitle "$(jq -n --arg id "$S1" --argjson e "$e" '{session_id:$id, exchange_id:$e, title:""}')" ;;
    9) call UpdateProject "$(jq -n --argjson p "$PROJ" --arg t "$(rtitle 8)" --arg n "ident $RANDOM <&>" '{project_id:$p, icon:$t, name:$n}')" ;;
    esac
    compare "$S1" "$step"
done

# ---- session 2: re-syncs of an edited SpecStory file ----
S2="ident-b-$$"
declare -a P R
for ((i = 0; i < 6; i++)); do P[i]="prompt $i $(rtext)"; R[i]="response $i $(rtext)"; done
sync2() {
    local md="" i
    for i in "${!P[@]}"; do md+=$'_**User (2026-01-0'"$((i % 9 + 1))"$' 10:00:00Z)**_\n\n'"${P[i]}"$'\n\n---\n\n_**Agent**_\n\n'"${R[i]}"$'\n\n---\n\n'; done
    call SyncSession "$(jq -n --arg id "$S2" --arg md "$md" '{session_id:$id, project:{name:"ident"}, markdown:$md}')"
}
sync2
call SetVisibility "{\"session_id\":\"$S2\",\"public\":true}"
compare "$S2" 0
for ((step = 1; step <= STEPS; step++)); do
    keys=("${!P[@]}")
    k=${keys[RANDOM % ${#keys[@]}]}
    case $((RANDOM % 7)) in
    0) R[k]="edited response $(rtext)"; sync2 ;;
    1) P[k]="edited prompt $(rtext)"; sync2 ;;
    2) n=${#P[@]}; P[n]="new prompt $(rtext)"; R[n]="new response $(rtext)"; sync2 ;;
    3) [ ${#P[@]} -gt 2 ] && { unset "P[$k]" "R[$k]"; P=("${P[@]}"); R=("${R[@]}"); }; sync2 ;;
    4) e=$(pick "$S2") && call SetExchangesHidden "{\"session_id\":\"$S2\",\"exchange_ids\":[$e],\"hidden\":$([ $((RANDOM % 2)) = 0 ] && echo true || echo false)}" ;;
    5) e=$(pick "$S2") && call UpdateExchangeTitle "$(jq -n --arg id "$S2" --argjson e "$e" --arg t "$(rtitle 80)" '{session_id:$id, exchange_id:$e, title:$t}')" ;;
    6) sync2 ;;
    esac
    compare "$S2" "$step"
done

# ---- a change renders what it touches, no more (node A's count of rendered exchanges) ----
rendered() { metric shareline_pieces_rendered_total; }
n1=$(rpc "$TOKEN" GetSession "{\"session_id\":\"$S1\"}" | jq '[.exchanges[] | select(.deleted != true)] | length')
r0=$(rendered)
call AppendExchanges "$(jq -n --arg id "$S1" '{session_id:$id, exchanges:[{prompt:"one more", response:"**rendered** once"}]}')"
r1=$(rendered)
# a visible exchange: one retitled while hidden has pieces to render when it is shown again (the
# fresh-clone CI of bb6a83f picked one: "hide+show 1")
e=$(rpc "$TOKEN" GetSession "{\"session_id\":\"$S1\"}" | jq '[.exchanges[] | select(.deleted != true and .hidden != true) | .id] | .[0]')
call SetExchangesHidden "{\"session_id\":\"$S1\",\"exchange_ids\":[$e],\"hidden\":true}"
call SetExchangesHidden "{\"session_id\":\"$S1\",\"exchange_ids\":[$e],\"hidden\":false}"
r2=$(rendered)
call UpdateExchangeTitle "$(jq -n --arg id "$S1" --argjson e "$e" '{session_id:$id, exchange_id:$e, title:"renamed once"}')"
r3=$(rendered)
echo "     session of $n1 exchanges: append 1 rendered $((r1 - r0)), hide+show $((r2 - r1)), retitle 1 $((r3 - r2))"
check "append of 1 exchange renders 1 exchange" eq "$((r1 - r0))" 1
check "hide and show render none" eq "$((r2 - r1))" 0
check "retitle of 1 exchange renders 1 exchange" eq "$((r3 - r2))" 1
check "node A answered pieces from its memory" test "$(metric shareline_pieces_hits_total)" -gt 0
compare "$S1" final

# ---- a hand edit of the text (an operator scrubbing a secret in MariaDB, hash columns untouched) ----
sql() { mariadb --no-defaults -h 127.0.0.1 -P "$SHARELINE_DB_PORT" -u "$SHARELINE_DB_USER" \
    ${SHARELINE_DB_PASSWORD:+-p"$SHARELINE_DB_PASSWORD"} -N -B "$SHARELINE_DB_NAME" -e "$1"; }
e=$(pick "$S1")
call SetExchangesHidden "{\"session_id\":\"$S1\",\"exchange_ids\":[$e],\"hidden\":false}"
sql "UPDATE exchanges SET prompt = 'SCRUBBED-BY-HAND', response = 'scrubbed too' WHERE session_id = '$S1' AND id = $e"
call UpdateSessionTitle "$(jq -n --arg id "$S1" '{session_id:$id, title:"republished after a hand edit"}')"
check "a hand edit of an exchange's text is on the page after the next publish" \
    grep -q SCRUBBED-BY-HAND <(curl -sS --http2-prior-knowledge "$URL/api/v1/share/$S1")
compare "$S1" hand-edit
# ... and a hand hide (the chunk state the next change would start from still holds the exchange:
# the trigger of migration 13 makes that change build from the rows)
call UpdateSessionTitle "$(jq -n --arg id "$S1" '{session_id:$id, title:"before a hand hide"}')"
sql "UPDATE exchanges SET hidden = 1 WHERE session_id = '$S1' AND id = $e"
check "a hand hide leaves the chunk state stale (chunks_version NULL)" \
    eq "$(sql "SELECT chunks_version IS NULL FROM sessions WHERE id = '$S1'")" 1
call UpdateSessionTitle "$(jq -n --arg id "$S1" '{session_id:$id, title:"republished after a hand hide"}')"
check "an exchange hidden by hand is gone from the page after the next publish" \
    eq "$(curl -sS --http2-prior-knowledge "$URL/api/v1/share/$S1" | jq --argjson e "$e" '[.exchanges[] | select(.id == $e)] | length')" 0
compare "$S1" hand-hide
builds=$(metric shareline_chunk_builds_total) drops=$(metric shareline_recipe_drops_total)
echo "     node A: $builds owner builds from the chunk state, $(metric shareline_full_builds_total) from the rows, $(metric shareline_chunk_fallbacks_total) fallbacks"
check "node A built from the chunk state" test "${builds:-0}" -ge $((STEPS / 2))
check "node A's readers never found an entry that did not match its sums (no recipe drops)" eq "${drops:-x}" 0

echo "     $compared states compared (6 representations each, A assembled from pieces vs B rebuilt from the text)"
check "owner calls of the sequences succeeded" eq "$failed_calls" 0
check "every state: every representation and ETag of A equals B's full rebuild" eq "$mismatches" 0
kept=$(sql "SELECT COUNT(*) FROM exchanges WHERE session_id IN ('$S1','$S2') AND pieces IS NOT NULL")
echo "     $kept exchanges hold pieces"
check "A kept pieces with the exchanges (B, rebuilding from scratch, keeps none of its own)" test "${kept:-0}" -gt 0
