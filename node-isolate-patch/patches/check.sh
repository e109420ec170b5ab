#!/bin/sh
# Checks that the Node patch series applies, in order.
#
#   check.sh                 every patch parses, the files it creates apply to an empty tree, and
#                            park.cc compiles against the installed Node headers
#   NODE_SRC=DIR check.sh    also: DIR is the pinned Node version (NODE_VERSION, read from
#                            src/node_version.h) and the whole series applies to copies of the files
#                            it changes there, in order (DIR itself is never modified)
#
# Without NODE_SRC the hunks that change existing Node files (node.gyp) are NOT checked, and the
# script says so. Exit status 0 when everything checked applies.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
want=$(cat "$here/NODE_VERSION")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The series, in order (the glob sorts).
set -- "$here"/0*.patch

# Existing upstream files the series changes ("--- a/PATH"), and files it creates.
changed=$(sed -n 's|^--- a/||p' "$@" | sort -u)
created=$(awk '/^--- \/dev\/null/{getline; sub(/^\+\+\+ b\//, ""); print}' "$@" | sort -u)

excl=
for f in $changed; do excl="$excl --exclude=$f"; done
git init -q "$tmp/new"
for p in "$@"; do
	git -C "$tmp/new" apply --stat "$p" >/dev/null
	# shellcheck disable=SC2086 # one --exclude per changed file
	git -C "$tmp/new" apply $excl "$p"
done
echo "ok   new files apply in order: $(echo "$created" | paste -sd' ')"

# park.cc needs only Node's public headers (the installed ones here); entry.cc also needs Node's
# internal node_v8_platform-inl.h, so it compiles only inside a Node tree.
inc=${NODE_INCLUDE:-/usr/include/node}
if command -v "${CXX:-g++}" >/dev/null && [ -r "$inc/node.h" ]; then
	cp "$here/../src/activation.h" "$tmp/new/src/teemate/"
	"${CXX:-g++}" -std=c++20 -fsyntax-only -Wall -Wextra -isystem "$inc" -I"$tmp/new/src" "$tmp/new/src/teemate/park.cc"
	echo "ok   src/teemate/park.cc compiles against $inc"
else
	echo "skip compiling park.cc: no ${CXX:-g++} or no $inc/node.h"
fi

if [ -z "${NODE_SRC-}" ]; then
	echo "skip changes to existing files ($(echo "$changed" | paste -sd' ')): set NODE_SRC to a Node $want tree to check them"
	exit 0
fi

vh="$NODE_SRC/src/node_version.h"
[ -r "$vh" ] || { echo "FAIL $vh not found: NODE_SRC is not a Node source tree" >&2; exit 1; }
have=v$(awk '/^#define NODE_(MAJOR|MINOR|PATCH)_VERSION /{printf "%s%s", sep, $3; sep="."}' "$vh")
[ "$have" = "$want" ] || { echo "FAIL NODE_SRC is Node $have, the series is pinned to $want" >&2; exit 1; }
for f in $created; do
	[ ! -e "$NODE_SRC/$f" ] || { echo "FAIL $f already exists in NODE_SRC" >&2; exit 1; }
done

git init -q "$tmp/up"
for f in $changed; do
	mkdir -p "$tmp/up/$(dirname "$f")"
	cp "$NODE_SRC/$f" "$tmp/up/$f"
done
for p in "$@"; do
	if ! git -C "$tmp/up" apply --check "$p"; then
		echo "FAIL $(basename "$p") does not apply to Node $have (after the patches before it)" >&2
		exit 1
	fi
	git -C "$tmp/up" apply "$p"
done
echo "ok   the series applies to Node $have in $NODE_SRC"
