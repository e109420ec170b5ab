#!/usr/bin/env bash
# Installs what the build and the tests need on a Debian bookworm machine, and nothing twice.
# Called by `make deps` (and so by `make test`). Needs root for apt.
set -euo pipefail
cd "$(dirname "$0")/../.."

need_pkgs=()
want() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$1"); }
for p in ${TEEMATE_APT_PACKAGES:-}; do want "$p"; done
if [ -f deploy/dev/apt-packages.txt ]; then
  while read -r p _; do [[ -z "$p" || "$p" == \#* ]] || want "$p"; done < deploy/dev/apt-packages.txt
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# Node modules used by tests (the OpenWhisk JS client), installed from the npm registry when missing.
for dir in $(git ls-files '*/package.json' 'package.json' 2>/dev/null | xargs -r -n1 dirname); do
  if grep -q '"dependencies"\|"devDependencies"' "$dir/package.json" && [ ! -d "$dir/node_modules" ]; then
    echo "install-deps: npm install in $dir"
    (cd "$dir" && npm install --no-audit --no-fund --silent)
  fi
done

go mod download

# Lint tools into TOOLS (bin/tools by default; the root Makefile passes its own), once per version.
TOOLS=${TOOLS:-$PWD/bin/tools}
mkdir -p "$TOOLS"
while read -r name pkg version _; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  stamp="$TOOLS/.$name.version"
  if [ ! -x "$TOOLS/$name" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$version" ]; then
    echo "install-deps: go install $pkg@$version (built once, then cached in $TOOLS)"
    GOBIN="$TOOLS" GOFLAGS=-buildvcs=false go install "$pkg@$version"
    echo "$version" > "$stamp"
  fi
done < deploy/dev/go-tools.txt

# The kernel's checkpatch.pl (with the spelling list it reads) from Debian's linux-source tarball:
# no Debian package installs the script by itself. Nothing of it is committed here.
srcs=(/usr/src/linux-source-*.tar.xz)
src=${srcs[-1]}
if [ -f "$src" ] && [ "$(cat "$TOOLS/checkpatch/.source" 2>/dev/null)" != "$src" ]; then
  echo "install-deps: checkpatch.pl from $src"
  top=$(basename "$src" .tar.xz)
  rm -rf "$TOOLS/checkpatch" && mkdir -p "$TOOLS/checkpatch"
  tar -xJf "$src" -C "$TOOLS/checkpatch" --strip-components=2 \
    "$top/scripts/checkpatch.pl" "$top/scripts/spelling.txt" "$top/scripts/const_structs.checkpatch"
  echo "$src" > "$TOOLS/checkpatch/.source"
fi
