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
# the other write path for qcow2 output: a writable qemu-nbd as the
# destination (what refpoint would do without its own qcow2 writer)
nbd_qcow2_run() {
  qemu-nbd -r -f qcow2 -l "snapshot.name=$SNAP" --socket="$W/n.sock" --fork --pid-file="$W/n.pid" disk.qcow2
  qemu-img create -q -f qcow2 out.qcow2 "$SIZE"
  qemu-nbd -f qcow2 --socket="$W/d.sock" --fork --pid-file="$W/d.pid" out.qcow2
  nbdcopy --destination-is-zero "nbd+unix:///?socket=$W/n.sock" "nbd+unix:///?socket=$W/d.sock"
  kill "$(cat "$W/d.pid")"; while kill -0 "$(cat "$W/d.pid")" 2>/dev/null; do sleep 0.01; done
  sync -f out.qcow2
}
echo "## full export of RP1 (all contenders fsync their output)"
run "refpoint export (full)" R export "$RP1" "$W/exp"
run "qemu-img convert -W -m 16 + fsync" sh -c "qemu-img convert -W -m 16 -l snapshot.name=$SNAP -O qcow2 disk.qcow2 out.qcow2 && sync -f out.qcow2"
run "qemu-img convert -W -m 16 (no fsync)" qemu-img convert -W -m 16 -l "snapshot.name=$SNAP" -O qcow2 disk.qcow2 out.qcow2
run "nbdcopy qemu-nbd -> raw + fsync" nbdcopy_run
run "nbdcopy -> qcow2 via writable qemu-nbd + fsync" nbd_qcow2_run
MEM_FULL=$( { /usr/bin/time -f %M "$RPB" --state-dir "$W/state" --quiet export "$RP1" "$W/exp" >/dev/null; } 2>&1 | tail -n1)
R export "$RP1" "$W/keep" >/dev/null

echo "## incremental exports: 0.1 %, 1 % and 4 % of the clusters rewritten at random (64 KiB each)"
PREV=$RP1
declare -a INC_PCT INC_T INC_MB
k=0
for permille in 1 10 40; do
  N1=$((SIZE / 65536 * permille / 1000))
  awk -v n="$N1" -v c=$((SIZE / 65536)) -v seed=$((7 + permille)) 'BEGIN {srand(seed); for (i = 0; i < n; i++) printf "write -q -P %d %.0f 64k\n", (i % 250) + 1, int(rand() * c) * 65536}' >cmds
  qemu-io -f qcow2 disk.qcow2 <cmds >/dev/null
  CUR=$(R rp create bench)
  incr() { rm -rf "$W/keep/${CUR#Microsoft:}"; R export "$CUR" "$W/keep" --base "$PREV"; }
  run "refpoint export (incremental, $permille permille)" incr
  CH=$(grep -o '"DataBytes": [0-9]*' "$W/keep/${CUR#Microsoft:}/manifest.json" | awk '{s+=$2} END {print s}')
  INC_PCT[$k]=$permille; INC_T[$k]=${res["refpoint export (incremental, $permille permille)"]}; INC_MB[$k]=$((CH >> 20))
  MEM_INC=$( { /usr/bin/time -f %M "$RPB" --state-dir "$W/state" --quiet export "$CUR" "$W/mem$k" --base "$PREV" >/dev/null; } 2>&1 | tail -n1)
  PREV=$CUR; k=$((k + 1))
done

echo "## results"
f=${res["refpoint export (full)"]}
printf 'full: refpoint %.3f s = %.0f MiB/s of data\n' "$f" "$(echo "$DATA / 1048576 / $f" | bc -l)"
printf '  ratio to qemu-img convert -W -m 16 + fsync:  %.2f (below 1 = refpoint faster)\n' "$(echo "$f / ${res["qemu-img convert -W -m 16 + fsync"]}" | bc -l)"
printf '  ratio to qemu-img convert -W -m 16 (no fsync): %.2f\n' "$(echo "$f / ${res["qemu-img convert -W -m 16 (no fsync)"]}" | bc -l)"
printf '  ratio to nbdcopy + fsync:                      %.2f\n' "$(echo "$f / ${res["nbdcopy qemu-nbd -> raw + fsync"]}" | bc -l)"
printf '  ratio to qcow2 through a writable qemu-nbd:    %.2f (the write path refpoint did not take)\n' "$(echo "$f / ${res["nbdcopy -> qcow2 via writable qemu-nbd + fsync"]}" | bc -l)"
for k in 0 1 2; do
  printf 'incremental %4.1f %%: %.3f s for %4d MiB changed = %5.1f %% of the full export time\n' \
    "$(echo "${INC_PCT[$k]} / 10" | bc -l)" "${INC_T[$k]}" "${INC_MB[$k]}" "$(echo "100 * ${INC_T[$k]} / $f" | bc -l)"
done
slope=$(echo "(${INC_T[2]} - ${INC_T[0]}) / (${INC_MB[2]} - ${INC_MB[0]})" | bc -l)
printf 'incremental cost: %.2f ms per changed MiB (scattered 64 KiB clusters) + %.0f ms fixed\n' \
  "$(echo "$slope * 1000" | bc -l)" "$(echo "(${INC_T[0]} - $slope * ${INC_MB[0]}) * 1000" | bc -l)"
printf 'peak RSS: full export %d KiB, incremental %d KiB\n' "$MEM_FULL" "$MEM_INC"
cd /; rm -rf "$W"
