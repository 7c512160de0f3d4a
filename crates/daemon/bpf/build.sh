#!/usr/bin/env bash
# Compiles every BPF program in this folder (`*.c` → `*.o`) with Debian 12's clang 14.
#
# The objects are committed beside their sources, so a machine with only cargo builds the
# daemon (it embeds them with include_bytes!). CI runs this script and fails when an object
# differs from the committed one. -ffile-prefix-map keeps the folder out of the debug info
# (which BTF needs), so two clones build the same bytes.
set -euo pipefail
cd "$(dirname "$0")"
clang=${CLANG:-clang-14}
want="14.0.6"
have=$("$clang" --version | sed -n 's/.*clang version \([0-9.]*\).*/\1/p' | head -n1)
if [ "$have" != "$want" ]; then
  echo "build.sh: $clang is clang $have; the committed objects are built by Debian 12's clang $want" >&2
  exit 1
fi
shopt -s nullglob
for src in *.c; do
  "$clang" -O2 -g -target bpf -D__TARGET_ARCH_x86 \
    -I/usr/include/"$(gcc -dumpmachine)" -I. \
    -ffile-prefix-map="$PWD"=. -fdebug-prefix-map="$PWD"=. \
    -Wall -Werror \
    -c "$src" -o "${src%.c}.o"
done
