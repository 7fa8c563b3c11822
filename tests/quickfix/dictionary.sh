#!/usr/bin/env bash
# Puts QuickFIX's FIX 4.4 data dictionary (FIX44.xml) in OUT_DIR and prints its path.
#
#   tests/quickfix/dictionary.sh [OUT_DIR]
#
# Debian's libquickfix-dev ships no data dictionary, but the QuickFIX sources on PyPI do
# (spec/FIX44.xml in the `quickfix` 1.15.1 sdist, the same release as Debian's library). With it,
# fix_client --dictionary makes QuickFIX validate every message the exchange sends against FIX 4.4:
# required fields, field types, enumerated values and which fields a message may carry. The sdist
# is fetched with pip, pinned by its SHA-256, and only the one file is kept. OUT_DIR defaults to
# $CARGO_TARGET_DIR/quickfix (or target/quickfix). Exits non-zero if the file cannot be had.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${1:-${CARGO_TARGET_DIR:-$root/target}/quickfix}"
dictionary="$out/FIX44.xml"

if [ ! -s "$dictionary" ]; then
  mkdir -p "$out"
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
  # A hash-pinned requirement makes pip refuse anything but the exact archive checked here.
  cat >"$scratch/requirements.txt" <<'EOF'
quickfix==1.15.1 --hash=sha256:e3564ad2dd155892dc74496d6f4db1794bd8f9f74450ccbb45571ffaa2815da2
EOF
  python3 -m pip download --quiet --no-deps --no-binary :all: --require-hashes \
    -r "$scratch/requirements.txt" -d "$scratch" >&2
  tar --no-same-owner -xzf "$scratch/quickfix-1.15.1.tar.gz" -C "$scratch" quickfix-1.15.1/spec/FIX44.xml
  mv -f "$scratch/quickfix-1.15.1/spec/FIX44.xml" "$dictionary.tmp.$$"
  mv -f "$dictionary.tmp.$$" "$dictionary"
fi
echo "$dictionary"
