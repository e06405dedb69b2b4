#!/usr/bin/env bash
# ARCHITECTURE.md names every module: fails listing each .rs file under
# crates/*/src that it does not name. A file is named
#   - by a line of a folder tree, a fenced block whose first line is
#     `crates/NAME/src/` (each level indented by four columns), or
#   - by its path under src/ (`plan/since_startup.rs`), or by its stem in
#     backticks (`ir`), inside its crate's section (the heading that names
#     the crate in backticks, down to the next heading of that level or
#     above); `lib.rs`/`main.rs` by the crate's section itself.
set -euo pipefail
cd "$(dirname "$0")/.."
doc=ARCHITECTURE.md

# Paths named by the trees: crates/NAME/src/dir/file.rs, one a line.
tree_paths() {
    sed -e 's/│/|/g' -e 's/├──/+--/g' -e 's/└──/+--/g' "$doc" | awk '
        /^```/ { if (intree) { intree = 0 } else { fence = 1 }; next }
        fence { fence = 0; if ($1 ~ /^crates\/[^\/]+\/src\/$/) { intree = 1; root = $1; n = 0 }; next }
        intree {
            if (!match($0, /[A-Za-z0-9_][A-Za-z0-9_.]*\/?/)) next
            name = substr($0, RSTART, RLENGTH)
            depth = int((RSTART - 1) / 4)
            path = root
            for (i = 0; i < depth; i++) path = path dir[i]
            if (name ~ /\/$/) { dir[depth] = name } else { print path name }
        }'
}

# The section of a crate: from its heading to the next heading at its level or above.
section() {
    awk -v crate="\`$1\`" '
        /^#+ / {
            lvl = index($0, " ") - 1
            if (on && lvl <= level) on = 0
            if (!on && index($0, crate)) { on = 1; level = lvl }
        }
        on' "$doc"
}

named=$(tree_paths)
missing=0
while IFS= read -r f; do
    grep -qxF -- "$f" <<<"$named" && continue
    crate=$(echo "$f" | cut -d/ -f2)
    rel=${f#crates/"$crate"/src/}
    stem=$(basename "$f" .rs)
    sec=$(section "$crate")
    if [ -n "$sec" ]; then
        case "$rel" in lib.rs|main.rs) continue ;; esac
        grep -qF -- "$rel" <<<"$sec" && continue
        grep -qF -- "\`$stem\`" <<<"$sec" && continue
    fi
    echo "ARCHITECTURE.md does not name $f"
    missing=$((missing + 1))
done < <(find crates/*/src -name '*.rs' | sort)
if [ "$missing" -gt 0 ]; then
    echo "check-architecture: $missing module(s) not named in $doc" >&2
    exit 1
fi
echo "check-architecture: ARCHITECTURE.md names every module under crates/*/src"
