#!/usr/bin/env bash
# Builds the function images from this machine's files, with no registry and no network:
#
#   teemate   the static C teemate-shim (shim/: the action proxy that talks the gate to the warm enclave)
#   native    OpenWhisk's way: /usr/bin/node plus our own Node action proxy (native/proxy.js)
#   strawman  the same shim plus node, the enclave runtime and the isolate addon: teemate-strawman
#             boots a fresh enclave runtime inside every container, then becomes the shim
#
# Each image lands in $OUT/<name>/ as
#   rootfs/      an OCI root filesystem (the oci sandbox backend runs it with runc)
#   image.json   the default command and environment (the oci backend reads it; docker gets
#                the same values through `docker import --change`)
#   rootfs.tar   the tarball, `docker import`ed as teemate/<name>:latest when an engine answers
#   fingerprint  what the image was built from; an unchanged fingerprint means nothing is redone
#
# Every image also holds /sbin/teemate-start, the oci backend's start stub, and the mount points
# /run/teemate/proxy and /run/teemate/gate.
#
# Usage: build.sh [--out DIR] [--no-docker] [name...]     (default: all three images)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${IMAGES_DIR:-$ROOT/.state/images}
DOCKER=auto
NAMES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --no-docker) DOCKER=no; shift ;;
    teemate|native|strawman) NAMES+=("$1"); shift ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ ${#NAMES[@]} -gt 0 ] || NAMES=(teemate native strawman)
NODE=${NODE:-/usr/bin/node}
ADDON=$ROOT/node-isolate-patch/build/teemate_isolate.node
SEALCRYPTO=$ROOT/node-isolate-patch/build/teemate_sealcrypto.node
mkdir -p "$OUT/bin"
# One build at a time per output directory (parallel test packages call this script).
exec 9>"$OUT/.lock"
flock 9

# The static programs inside every sandbox (shim/): the shim, the strawman's launcher and the start
# stub, which runs on every activation's critical path (see invoker/internal/sandbox/oci/doc.go).
# Each copy is replaced only when the bytes differ, so the fingerprints stay stable.
make -s -C "$ROOT/shim" BIN="$OUT/bin/new" CFLAGS="-O2 -s" >&2
for b in teemate-shim teemate-strawman teemate-start; do
  if [ -f "$OUT/bin/$b" ] && cmp -s "$OUT/bin/new/$b" "$OUT/bin/$b"; then :; else cp -f "$OUT/bin/new/$b" "$OUT/bin/$b.tmp.$$" && mv -f "$OUT/bin/$b.tmp.$$" "$OUT/bin/$b"; fi
done

# libs lists the shared libraries (and the loader) a binary needs, as ldd resolves them.
libs() {
  ldd "$1" | awk '/=> \//{print $3} /^[[:space:]]*\/.*ld-linux/{print $1}'
}

# Every image is described by lines "dest<TAB>source" (files) and a command.
manifest() { # name
  local name=$1
  printf '%s\t%s\n' /sbin/teemate-start "$OUT/bin/teemate-start"
  case "$name" in
    teemate)
      printf '%s\t%s\n' /bin/teemate-shim "$OUT/bin/teemate-shim" ;;
    native)
      printf '%s\t%s\n' /usr/bin/node "$NODE" /opt/teemate/native/proxy.js "$ROOT/deploy/images/native/proxy.js"
      for l in $(libs "$NODE"); do printf '%s\t%s\n' "$l" "$l"; done ;;
    strawman)
      printf '%s\t%s\n' /bin/teemate-shim "$OUT/bin/teemate-shim" /bin/teemate-strawman "$OUT/bin/teemate-strawman" /usr/bin/node "$NODE"
      for l in $(libs "$NODE"); do printf '%s\t%s\n' "$l" "$l"; done
      for f in "$ROOT"/enclave-runtime/trusted/*.js; do
        printf '%s\t%s\n' "/opt/teemate/enclave-runtime/trusted/$(basename "$f")" "$f"
      done
      # The modules every action may require (the openwhisk client; make build installs them).
      if [ -d "$ROOT/enclave-runtime/modules/node_modules" ]; then
        (cd "$ROOT/enclave-runtime/modules" && find node_modules -type f) | while read -r f; do
          printf '%s\t%s\n' "/opt/teemate/enclave-runtime/modules/$f" "$ROOT/enclave-runtime/modules/$f"
        done
      fi
      if [ -f "$ADDON" ]; then
        printf '%s\t%s\n' /opt/teemate/node-isolate-patch/build/teemate_isolate.node "$ADDON"
        for l in $(libs "$ADDON"); do printf '%s\t%s\n' "$l" "$l"; done
      fi
      # The sealed path's primitives (without it the owner falls back to node:crypto).
      if [ -f "$SEALCRYPTO" ]; then
        printf '%s\t%s\n' /opt/teemate/node-isolate-patch/build/teemate_sealcrypto.node "$SEALCRYPTO"
        for l in $(libs "$SEALCRYPTO"); do printf '%s\t%s\n' "$l" "$l"; done
      fi ;;
  esac
}

# image.json: the default command and environment of each image.
config() { # name
  case "$1" in
    teemate) echo '{"cmd":["/bin/teemate-shim"],"env":["PATH=/usr/bin:/bin"]}' ;;
    native) echo '{"cmd":["/usr/bin/node","/opt/teemate/native/proxy.js"],"env":["PATH=/usr/bin:/bin"]}' ;;
    # The strawman's own enclave runtime listens on a gate inside the container (/tmp is
    # writable in every backend); teemate-strawman boots it, then becomes the shim.
    strawman) echo '{"cmd":["/bin/teemate-strawman","/bin/teemate-shim","/usr/bin/node","/opt/teemate/enclave-runtime/trusted/owner.js","--socket","/tmp/teemate-gate.sock","--slots","1","--image","nodejs:20","--enclave","strawman","--work-dir","/tmp/enclave"],"env":["PATH=/usr/bin:/bin","TEEMATE_GATE=/tmp/teemate-gate.sock"]}' ;;
  esac
}

docker_ok() {
  [ "$DOCKER" != no ] && command -v docker >/dev/null && docker info >/dev/null 2>&1
}

build_one() {
  local name=$1 dir="$OUT/$1"
  local man; man=$(manifest "$name" | sort -u)
  [ "$name" != strawman ] || [ -f "$ADDON" ] || echo "build.sh: $ADDON is missing; the strawman runtime will fall back to worker isolates (run make build first)" >&2
  # Fingerprint: this script, the image config, and name/size/mtime of every source file.
  local fp
  fp=$( { sha256sum "$0"; config "$name"; while IFS=$'\t' read -r dest src; do
            printf '%s %s\n' "$dest" "$(stat -L -c '%s %Y' "$src")"; done <<<"$man"; } | sha256sum | cut -c1-32)
  if [ -f "$dir/fingerprint" ] && [ "$(cat "$dir/fingerprint")" = "$fp" ] && [ -d "$dir/rootfs" ] && [ -f "$dir/rootfs.tar" ]; then
    echo "image $name: up to date ($fp)"
  else
    echo "image $name: building rootfs ($fp)"
    local stage="$dir.stage.$$"
    rm -rf "$stage"; mkdir -p "$stage/rootfs"
    local r="$stage/rootfs"
    mkdir -p "$r"/{bin,sbin,dev,proc,sys,tmp,etc,usr/bin,run/teemate/proxy,run/teemate/gate,opt/teemate}
    chmod 1777 "$r/tmp"
    printf 'root:x:0:0:root:/:/bin/false\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$r/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
    printf '127.0.0.1 localhost\n::1 localhost\n' >"$r/etc/hosts"
    while IFS=$'\t' read -r dest src; do
      mkdir -p "$r$(dirname "$dest")"
      cp -L --preserve=mode "$src" "$r$dest"
    done <<<"$man"
    config "$name" >"$stage/image.json"
    tar --numeric-owner --owner=0 --group=0 -C "$r" -cf "$stage/rootfs.tar" .
    echo "$fp" >"$stage/fingerprint"
    rm -rf "$dir.old"; [ ! -d "$dir" ] || mv "$dir" "$dir.old"
    mv "$stage" "$dir"; rm -rf "$dir.old"
  fi
  if docker_ok; then
    local have
    have=$(docker image inspect --format '{{index .Config.Labels "teemate.fingerprint"}}' "teemate/$name:latest" 2>/dev/null || true)
    if [ "$have" = "$fp" ]; then
      echo "image $name: teemate/$name:latest up to date"
    else
      local cmd changes=()
      cmd=$(config "$name" | sed -E 's/.*"cmd":(\[[^]]*\]).*/\1/')
      changes+=(--change "CMD $cmd" --change "LABEL teemate.fingerprint=$fp")
      while read -r e; do [ -z "$e" ] || changes+=(--change "ENV ${e%%=*}=\"${e#*=}\""); done < <(
        config "$name" | sed -E 's/.*"env":\[(.*)\].*/\1/' | sed 's/","/"\n"/g' | sed -E 's/^"//; s/"$//')
      docker import "${changes[@]}" "$dir/rootfs.tar" "teemate/$name:latest" >/dev/null
      # The image this one replaced is now dangling: drop it (only ours, by their label).
      docker image prune -f --filter label=teemate.fingerprint >/dev/null
      echo "image $name: imported teemate/$name:latest"
    fi
  elif [ "$DOCKER" != no ]; then
    echo "image $name: no Docker engine answers; only the OCI rootfs was built"
  fi
}

for n in "${NAMES[@]}"; do build_one "$n"; done
