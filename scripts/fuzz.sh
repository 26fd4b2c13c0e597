#!/usr/bin/env bash
# make fuzz: builds the libFuzzer targets with clang (ASan+UBSan) and runs
# each for FUZZ_SECONDS (default 60) from the seed corpus in tests/fuzz/corpus.
# New inputs go to a scratch copy; crashes are saved as tests/fuzz/crash-*.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --fuzz
SECS=${FUZZ_SECONDS:-60}
OUT=build-fuzz; mkdir -p "$OUT"
CFLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Isrc/cim $(pkg-config --cflags libxml-2.0)"
LIBS="$(pkg-config --libs libxml-2.0)"
SRC="src/cim/objpath.c src/cim/wql.c src/cim/instance.c src/cim/request.c src/cim/cimutil.c"
rc=0
for t in objpath wql instance request config; do
  if [ $t = config ]; then
    clang $CFLAGS -Isrc/daemon -o "$OUT/fuzz_$t" "tests/fuzz/fuzz_$t.c" src/daemon/config.c
  else
    clang $CFLAGS -o "$OUT/fuzz_$t" "tests/fuzz/fuzz_$t.c" $SRC $LIBS
  fi
  work=$(mktemp -d); cp tests/fuzz/corpus/$t/* "$work/"
  echo "== fuzz_$t for ${SECS}s"
  if ! "$OUT/fuzz_$t" -max_total_time="$SECS" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
       -artifact_prefix=tests/fuzz/crash-$t- "$work" 2>"$OUT/fuzz_$t.log"; then
    rc=1; tail -n 40 "$OUT/fuzz_$t.log"
  fi
  grep -E "^#[0-9]+.*DONE|Done [0-9]+ runs" "$OUT/fuzz_$t.log" | tail -n1 || true
  rm -rf "$work"
done
exit $rc
