#!/usr/bin/env bash
# `make lint` (and the first step of `make test`): every C file the repository tracks must be
# formatted as .clang-format says. Prints the files that are not, and how to fix them; exits 1.
# Fix: clang-format -i <file> (Debian 12's clang-format 14, which scripts/deps.sh installs).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "lint: clang-format is missing (scripts/deps.sh installs it)" >&2; exit 1; }
bad=()
while IFS= read -r f; do
    [ -f "$f" ] || continue
    clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done < <(git ls-files '*.c' '*.h')
if [ ${#bad[@]} -gt 0 ]; then
    echo "lint: ${#bad[@]} file(s) differ from .clang-format:" >&2
    printf '  %s\n' "${bad[@]}" >&2
    echo "fix with: clang-format -i ${bad[*]}" >&2
    exit 1
fi
echo "lint: $(git ls-files '*.c' '*.h' | wc -l) C files formatted as .clang-format says"
