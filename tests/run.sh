#!/usr/bin/env bash
# Runs every test: cmocka unit tests, then the integration scripts (real
# qemu-img / qemu-nbd / qemu-io, real SQLite files). Each test is a program
# whose exit status says: 0 passed, 77 skipped (its first output line says
# why), anything else failed. Ends with "N passed, N failed, N skipped".
#   REFPOINT_BUILD=dir   build directory to test (default build)
#   TESTS="a b"          run only these (names without extension)
#   ASAN=1 ...           also run everything against build-asan (make test does)
set -u
cd "$(dirname "$0")/.."
TOP=$PWD
BUILD=${REFPOINT_BUILD:-build}
pass=0 fail=0 skip=0
failed=()
LOGDIR=$(mktemp -d /tmp/refpoint-tests.XXXXXX)

run_one() { # label cmd...
  local label=$1; shift
  local log="$LOGDIR/${label//\//_}.log" t0=$SECONDS
  "$@" >"$log" 2>&1
  local rc=$?
  local dt=$((SECONDS - t0))
  if [ $rc -eq 0 ]; then
    pass=$((pass + 1)); printf 'PASS  %-40s %3ss\n' "$label" "$dt"
  elif [ $rc -eq 77 ]; then
    skip=$((skip + 1)); printf 'SKIP  %-40s %s\n' "$label" "$(head -n1 "$log")"
  else
    fail=$((fail + 1)); failed+=("$label")
    printf 'FAIL  %-40s %3ss (exit %d)\n' "$label" "$dt" "$rc"
    sed 's/^/      | /' "$log" | tail -n 40
  fi
}

want() { [ -z "${TESTS:-}" ] || [[ " $TESTS " == *" $1 "* ]]; }

suite() { # build-dir label-prefix
  local b=$1 pre=$2
  for t in "$b"/test_*; do
    [ -f "$t" ] && [ -x "$t" ] || continue
    local n; n=$(basename "$t")
    want "$n" || continue
    case $n in
      test_fuzz_replay_*) run_one "$pre$n" "$t" "tests/fuzz/corpus/${n#test_fuzz_replay_}" ;;
      *) run_one "$pre$n" "$t" ;;
    esac
  done
  for t in tests/integration/t_*.sh; do
    local n; n=$(basename "$t" .sh)
    want "$n" || continue
    run_one "$pre$n" env REFPOINT_BUILD="$TOP/$b" bash "$t"
  done
}

suite "$BUILD" ""
if [ "${ASAN:-0}" = 1 ]; then
  if [ -f build-asan/build.ninja ] || meson setup build-asan -Db_sanitize=address,undefined \
       -Db_lundef=false >/dev/null; then
    if ninja -C build-asan >/dev/null; then
      export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
      suite build-asan "asan/"
    else
      fail=$((fail + 1)); failed+=("asan build"); echo "FAIL  asan build"
    fi
  fi
fi
rm -rf "$LOGDIR"
[ ${#failed[@]} -gt 0 ] && printf 'failed: %s\n' "${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
