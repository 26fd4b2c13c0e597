#!/usr/bin/env bash
# make bench — full and incremental export against the anchors, in the same
# run, on the same data: qemu-img convert -W -m 16 (of the same snapshot) and
# nbdcopy from qemu-nbd serving it. Prints medians and ratios.
#   BENCH_SIZE (default 4 GiB), BENCH_PCT (25), BENCH_RUNS (5), BENCH_DIR
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
RPB=$TOP/build/refpoint
W=${BENCH_DIR:-$TOP/bench/work}
SIZE=${BENCH_SIZE:-$((4 * 1024 * 1024 * 1024))}
PCT=${BENCH_PCT:-25}
RUNS=${BENCH_RUNS:-5}
rm -rf "$W"; mkdir -p "$W"; cd "$W"
R() { "$RPB" --state-dir "$W/state" --quiet "$@"; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
t() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }

cc -O2 -o mkimage "$TOP/bench/mkimage.c"
echo "# image: $((SIZE >> 20)) MiB virtual, $PCT % of the 64 KiB clusters random data"
./mkimage src.raw "$SIZE" "$PCT" 42
qemu-img convert -f raw -O qcow2 src.raw disk.qcow2 && rm -f src.raw
DATA=$(qemu-img map -f qcow2 --output=json disk.qcow2 | grep '"data": true' | grep -o '"length": [0-9]*' | awk '{s+=$2} END {print s}')
echo "# data: $((DATA >> 20)) MiB"
R vm add bench --disk disk.qcow2 >/dev/null
RP1=$(R rp create bench)
SNAP=refpoint-rp-${RP1#Microsoft:}
cat disk.qcow2 >/dev/null   # hot page cache for every contender

declare -A res
run() { # name cmd... (prepare with rm of outputs inside)
  local name=$1; shift
  local v=()
  for i in $(seq "$RUNS"); do
    rm -rf out.qcow2 out.raw exp; sync
    v+=("$(t "$@")")
  done
  res[$name]=$(printf '%s\n' "${v[@]}" | median)
  printf '%-44s median %6.3f s   runs: %s\n' "$name" "${res[$name]}" "$(printf '%.3f ' "${v[@]}")"
}

nbdcopy_run() {
  qemu-nbd -r -f qcow2 -l "snapshot.name=$SNAP" --socket="$W/n.sock" --fork --pid-file="$W/n.pid" disk.qcow2
  nbdcopy "nbd+unix:///?socket=$W/n.sock" out.raw
  sync -f out.raw
}
echo "## full export of RP1 (all contenders fsync their output)"
run "refpoint export (full)" R export "$RP1" "$W/exp"
run "qemu-img convert -W -m 16 + fsync" sh -c "qemu-img convert -W -m 16 -l snapshot.name=$SNAP -O qcow2 disk.qcow2 out.qcow2 && sync -f out.qcow2"
run "qemu-img convert -W -m 16 (no fsync)" qemu-img convert -W -m 16 -l "snapshot.name=$SNAP" -O qcow2 disk.qcow2 out.qcow2
run "nbdcopy qemu-nbd -> raw + fsync" nbdcopy_run
MEM_FULL=$( { /usr/bin/time -f %M "$RPB" --state-dir "$W/state" --quiet export "$RP1" "$W/exp" >/dev/null; } 2>&1 | tail -n1)
R export "$RP1" "$W/keep" >/dev/null

echo "## incremental export: about 1 % of the clusters rewritten"
N1=$((SIZE / 65536 / 100))
awk -v n="$N1" -v c=$((SIZE / 65536)) 'BEGIN {srand(7); for (i = 0; i < n; i++) printf "write -q -P %d %.0f 64k\n", (i % 250) + 1, int(rand() * c) * 65536}' >cmds
qemu-io -f qcow2 disk.qcow2 <cmds >/dev/null
RP2=$(R rp create bench)
incr() { rm -rf "$W/keep/${RP2#Microsoft:}"; R export "$RP2" "$W/keep" --base "$RP1"; }
run "refpoint export (incremental, ~1 %)" incr
MEM_INC=$( { /usr/bin/time -f %M "$RPB" --state-dir "$W/state" --quiet export "$RP2" "$W/exp2" --base "$RP1" >/dev/null; } 2>&1 | tail -n1)
CH=$(grep -o '"DataBytes": [0-9]*' "$W/exp2/${RP2#Microsoft:}/manifest.json" | awk '{s+=$2} END {print s}')

echo "## results"
f=${res["refpoint export (full)"]}
printf 'full: refpoint %.3f s = %.0f MiB/s of data\n' "$f" "$(echo "$DATA / 1048576 / $f" | bc -l)"
printf '  ratio to qemu-img convert -W -m 16 + fsync:  %.2f (below 1 = refpoint faster)\n' "$(echo "$f / ${res["qemu-img convert -W -m 16 + fsync"]}" | bc -l)"
printf '  ratio to qemu-img convert -W -m 16 (no fsync): %.2f\n' "$(echo "$f / ${res["qemu-img convert -W -m 16 (no fsync)"]}" | bc -l)"
printf '  ratio to nbdcopy + fsync:                      %.2f\n' "$(echo "$f / ${res["nbdcopy qemu-nbd -> raw + fsync"]}" | bc -l)"
i=${res["refpoint export (incremental, ~1 %)"]}
printf 'incremental: %.3f s for %d MiB changed = %.1f %% of the full export time\n' "$i" "$((CH >> 20))" "$(echo "100 * $i / $f" | bc -l)"
printf 'peak RSS: full export %d KiB, incremental %d KiB\n' "$MEM_FULL" "$MEM_INC"
cd /; rm -rf "$W"
