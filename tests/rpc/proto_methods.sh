#!/usr/bin/env bash
# The .proto is the repository's statement of the owner API (docs/connect.md): its service's
# methods, the server's method table (rpc/contract.c, printed by list_methods) and the README's list
# of methods must name the same methods. A method in one and not another fails here.
# usage: proto_methods.sh SOURCE_DIR LIST_METHODS_BINARY
set -uo pipefail
src=$1 lister=$2
proto="$src/rpc/proto/shareline/v1/sessions.proto"
fail=0
protoc -I "$src/rpc/proto" -I /usr/include --descriptor_set_out=/dev/null "$proto" \
    || { echo "FAIL - $proto does not compile"; exit 1; }
from_proto=$(sed -n 's/^ *rpc \([A-Za-z0-9_]*\)(.*/\1/p' "$proto" | sort)
from_server=$("$lister" | sort) || { echo "FAIL - list_methods"; exit 1; }
from_readme=$(sed -n '/<!-- methods -->/,/<!-- \/methods -->/p' "$src/README.md" | sed -n 's/^| `\([A-Za-z0-9_]*\)` |.*/\1/p' | sort)
cmp_lists() { # name-a list-a name-b list-b
    local d
    d=$(diff <(echo "$2") <(echo "$4"))
    if [ -n "$d" ]; then
        echo "FAIL - $1 and $3 disagree (< only in $1, > only in $3):"
        echo "$d" | grep '^[<>]' | sed 's/^/       /'
        fail=1
    else
        echo "ok   - $1 and $3 name the same $(echo "$2" | wc -l) methods"
    fi
}
cmp_lists "the .proto" "$from_proto" "the server's method table" "$from_server"
cmp_lists "the .proto" "$from_proto" "the README's list" "$from_readme"
n_service=$(grep -c '^service ' "$proto")
[ "$n_service" = 1 ] && grep -q '^package shareline.v1;' "$proto" && grep -q '^service Sessions ' "$proto" \
    && echo "ok   - one service, shareline.v1.Sessions" || { echo "FAIL - the .proto must hold one service shareline.v1.Sessions"; fail=1; }
exit $fail
