#!/usr/bin/env bash
# Builds the QuickFIX programs in this directory and prints the path of each binary, one a line.
#
#   tests/quickfix/build.sh [OUT_DIR] [PROGRAM...]
#
# OUT_DIR defaults to $CARGO_TARGET_DIR/quickfix (or target/quickfix under the workspace);
# PROGRAM defaults to fix_client (the other one is echo_acceptor). A binary is rebuilt only when
# it is missing or older than its source, so a test can call this every time it runs.
# Debian's libquickfix-dev must be installed; ops/setup installs it and is run here if the
# headers are missing, so the test command needs nothing else.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-${CARGO_TARGET_DIR:-$root/target}/quickfix}"
shift || true
programs=("$@")
if [ ${#programs[@]} -eq 0 ]; then programs=(fix_client); fi

if [ ! -f /usr/include/quickfix/Application.h ]; then
  "$root/ops/setup" >&2
fi

mkdir -p "$out"
for program in "${programs[@]}"; do
  source="$here/$program.cpp"
  binary="$out/$program"
  if [ ! -f "$source" ]; then
    echo "build.sh: no source $source" >&2
    exit 1
  fi
  if [ ! -x "$binary" ] || [ "$source" -nt "$binary" ]; then
    # QuickFIX 1.15's headers use dynamic exception specifications, which C++17 removed, hence
    # C++11. The binary is written under a temporary name and renamed, so a concurrent test
    # never runs a half-written file.
    g++ -std=c++11 -O1 -Wall -Wno-deprecated -o "$binary.tmp.$$" "$source" -lquickfix -lpthread
    mv -f "$binary.tmp.$$" "$binary"
  fi
  echo "$binary"
done
