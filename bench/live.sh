#!/usr/bin/env bash
# make bench-live — a running VM (qemu-system-x86_64, TCG, no guest OS) with
# a busy guest writer (tests/helpers/guestio writer: sequential 4 KiB..1 MiB
# writes through the virtio-blk device), on disks holding 1 GiB and 8 GiB of
# data, in writeback and writethrough cache modes. Measures:
#   - CreateReferencePoint's pause: the QMP transaction's round trip (guest
#     I/O is drained for at most that long) and the pre-flush before it,
#     and the longest guest write that overlapped each create;
#   - DestroyReferencePoint's stall the same way;
#   - guest write throughput with no RP, while an RP holds data (copy on
#     first write), while a full export reads;
#   - full export throughput from the running VM against the offline export
#     of the same RP (VM shut down) and qemu-img convert of that snapshot.
#   BENCH_DATA_GIB="1 8"  BENCH_MODES="writeback writethrough none"  BENCH_RPS=15
#   BENCH_QCOW2_OPTS="cluster_size=2M,extended_l2=on"  (qcow2 options of the VM's disk)
#   BENCH_CAPTURE=fleecing  (vm add --capture; default snapshot)
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
B=$TOP/build
W=${BENCH_DIR:-$TOP/bench/work-live}
RPS=${BENCH_RPS:-15}
rm -rf "$W"; mkdir -p "$W"; cd "$W"
R() { "$B/refpoint" --state-dir "$W/state" --quiet "$@"; }
cc -O2 -o mkimage "$TOP/bench/mkimage.c"
now() { date +%s%N; }
pct() { # P: percentile of stdin numbers
  sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int((NR-1)*p/100+0.5)+1; if (i>NR) i=NR; print a[i]}'
}
# bytes written per second by writes that ended in [A,B] (ns)
tput() { awk -v a="$2" -v b="$3" '$3>=a && $3<=b {s+=$5} END {printf "%.1f", s/1048576/((b-a)/1e9)}' "$1"; }
# the longest write that overlapped [A,B]
maxlat() { awk -v a="$2" -v b="$3" '$3>=a && $2<=b {l=($3-$2)/1e6; if (l>m) m=l} END {printf "%.1f", m}' "$1"; }

vm_start() { # MODE: writeback, writethrough, or none (O_DIRECT: cache.direct=on)
  local wc=on direct=off
  [ "$1" = writethrough ] && wc=off
  [ "$1" = none ] && direct=on
  rm -f qmp.sock w.sock
  qemu-system-x86_64 -machine q35,accel=tcg -nodefaults -display none \
    -qmp unix:$W/qmp.sock,server=on,wait=off -qmp unix:$W/w.sock,server=on,wait=off \
    -blockdev driver=file,node-name=f0,filename=$W/disk.qcow2,cache.direct=$direct \
    -blockdev driver=qcow2,node-name=d0,file=f0 \
    -device virtio-blk-pci,drive=d0,id=vd0,share-rw=on,write-cache=$wc \
    -daemonize -pidfile $W/vm.pid
}
vm_quit() {
  local p; p=$(cat vm.pid)
  "$B/guestio" qmp w.sock '{"execute":"quit"}' >/dev/null 2>&1 || true
  while kill -0 "$p" 2>/dev/null; do sleep 0.05; done
}

echo "# refpoint live benchmark, $(date -u +%F), $(nproc) cores, QEMU $(qemu-system-x86_64 --version | head -n1 | awk '{print $4}')"
for gib in ${BENCH_DATA_GIB:-1 8}; do
  SIZE=$((gib * 2 * 1024 * 1024 * 1024))
  ./mkimage src.raw "$SIZE" 50 7
  for mode in ${BENCH_MODES:-writeback writethrough none}; do
    rm -rf state exp exp-off disk.qcow2 conv.qcow2
    qemu-img convert -f raw -O qcow2 ${BENCH_QCOW2_OPTS:+-o "$BENCH_QCOW2_OPTS"} src.raw disk.qcow2
    sync
    vm_start "$mode"
    R vm add bench --disk disk.qcow2 --qmp "$W/qmp.sock" --capture "${BENCH_CAPTURE:-snapshot}" >/dev/null
    # the capture's own cost: creates on an idle VM (then destroyed)
    : >idle
    for i in 1 2 3 4 5 6 7; do
      REFPOINT_TRACE=1 "$B/refpoint" --state-dir "$W/state" --quiet rp create bench >idle.rp 2>trace.idle
      sed -n 's/.*live capture transaction ([0-9]* disk(s)): \([0-9.]*\) ms.*/\1/p' trace.idle >>idle
      R rp destroy "$(cat idle.rp)"
    done
    rm -f stop; "$B/guestio" writer w.sock /machine/peripheral/vd0/virtio-backend "$SIZE" 99 wlog stop >wout &
    WP=$!
    sleep 1
    a=$(now); sleep 3; b=$(now)
    base_tput=$(tput wlog "$a" "$b"); base_lat=$(maxlat wlog "$a" "$b")
    base_p99=$(awk -v a="$a" -v b="$b" '$3>=a && $3<=b {print ($3-$2)/1e6}' wlog | pct 99)
    : >creates
    for i in $(seq "$RPS"); do
      # fleecing keeps one view at a time: release the previous RP's data first
      if [ "${BENCH_CAPTURE:-snapshot}" = fleecing ] && [ "$i" -gt 1 ]; then R rp remove-data "$(cat rp.$((i - 1)))"; fi
      t0=$(now)
      REFPOINT_TRACE=1 "$B/refpoint" --state-dir "$W/state" --quiet rp create bench >rp.$i 2>trace.$i
      t1=$(now)
      tx=$(sed -n 's/.*live capture transaction ([0-9]* disk(s)): \([0-9.]*\) ms.*/\1/p' trace.$i)
      fl=$(sed -n 's/.*pre-flush [^:]*: \([0-9.]*\) ms/\1/p' trace.$i | awk '{s+=$1} END {print s+0}')
      echo "$tx $fl $(maxlat wlog "$t0" "$t1") $(((t1 - t0) / 1000000))" >>creates
      sleep 0.3
    done
    # throughput while the newest RP holds data (first writes copy clusters)
    a=$(now); sleep 3; b=$(now)
    held_tput=$(tput wlog "$a" "$b")
    # a full export of the newest RP while the guest writes
    RPN=$(cat rp.$RPS)
    a=$(now); R export "$RPN" "$W/exp" >/dev/null; b=$(now)
    exp_s=$(echo "($b - $a) / 1000000000" | bc -l)
    exp_tput=$(tput wlog "$a" "$b")
    # destroys of the older RPs while the guest writes
    : >destroys
    for i in $(seq 1 $((RPS - 1))); do
      t0=$(now); R rp destroy "$(cat rp.$i)"; t1=$(now)
      echo "$(((t1 - t0) / 1000000)) $(maxlat wlog "$t0" "$t1")" >>destroys
    done
    # for comparison, the other capture method on the same disk and the same
    # busy guest: fleecing (blockdev-backup sync=none into a scratch image),
    # which refpoint does not use (its view dies with QEMU); 5 rounds
    : >fleece
    for i in 1 2 3 4 5; do
      qemu-img create -q -f qcow2 fl.qcow2 "$SIZE"
      GUESTIO_TIME=1 "$B/guestio" qmp qmp.sock \
        '{"execute":"blockdev-add","arguments":{"driver":"qcow2","node-name":"fl","file":{"driver":"file","filename":"'"$W"'/fl.qcow2"},"backing":"d0"}}' \
        '{"execute":"transaction","arguments":{"actions":[{"type":"blockdev-backup","data":{"device":"d0","target":"fl","sync":"none","job-id":"fl"}}]}}' \
        >/dev/null 2>fl.t
      sed -n 2p fl.t | awk '{print $2}' >>fleece
      sleep 0.3
      "$B/guestio" qmp qmp.sock '{"execute":"block-job-cancel","arguments":{"device":"fl"}}' >/dev/null
      sleep 0.3
      "$B/guestio" qmp qmp.sock '{"execute":"blockdev-del","arguments":{"node-name":"fl"}}' >/dev/null
      rm -f fl.qcow2
    done
    touch stop; wait $WP
    vm_quit
    # the same export offline, and qemu-img convert of the same snapshot
    # (a fleecing view ends with QEMU: nothing to export offline)
    off_s=0 conv_s=0
    if [ "${BENCH_CAPTURE:-snapshot}" != fleecing ]; then
      a=$(now); R export "$RPN" "$W/exp-off" >/dev/null; b=$(now)
      off_s=$(echo "($b - $a) / 1000000000" | bc -l)
      a=$(now); qemu-img convert -W -m 16 -O qcow2 -l "snapshot.name=refpoint-rp-${RPN#Microsoft:}" disk.qcow2 conv.qcow2; sync -f conv.qcow2; b=$(now)
      conv_s=$(echo "($b - $a) / 1000000000" | bc -l)
    fi
    data=$(awk '/"DataBytes"/ {gsub(/[^0-9]/, "", $2); s+=$2} END {printf "%.0f", s}' exp/*/manifest.json)
    echo
    echo "## $gib GiB of data ($((SIZE >> 30)) GiB disk${BENCH_QCOW2_OPTS:+, $BENCH_QCOW2_OPTS}), $mode, capture ${BENCH_CAPTURE:-snapshot}, $RPS reference points"
    echo "create on an idle VM: transaction ms  p50 $(pct 50 <idle)  max $(pct 100 <idle)"
    echo "create: transaction ms  p50 $(awk '{print $1}' creates | pct 50)  p99 $(awk '{print $1}' creates | pct 99)  max $(awk '{print $1}' creates | pct 100)"
    echo "bare fleecing transaction (comparison): ms  p50 $(pct 50 <fleece)  max $(pct 100 <fleece)"
    echo "create: pre-flush ms    p50 $(awk '{print $2}' creates | pct 50)  max $(awk '{print $2}' creates | pct 100)"
    echo "create: longest guest write overlapping a create, ms  p50 $(awk '{print $3}' creates | pct 50)  max $(awk '{print $3}' creates | pct 100)   (no create: p99 $base_p99, max $base_lat)"
    echo "create: whole command ms  p50 $(awk '{print $4}' creates | pct 50)"
    echo "destroy: command ms  p50 $(awk '{print $1}' destroys | pct 50)  max $(awk '{print $1}' destroys | pct 100);  longest overlapping guest write ms  p50 $(awk '{print $2}' destroys | pct 50)  max $(awk '{print $2}' destroys | pct 100)"
    echo "guest writes MiB/s: no RP $base_tput | RP holding data $held_tput ($(echo "$held_tput / $base_tput" | bc -l | cut -c1-4)x) | during export $exp_tput ($(echo "$exp_tput / $base_tput" | bc -l | cut -c1-4)x)"
    if [ "${BENCH_CAPTURE:-snapshot}" = fleecing ]; then
      printf 'full export of %d MiB from the running VM: %.2f s (%.0f MiB/s)\n' $((data >> 20)) "$exp_s" \
        "$(echo "$data / 1048576 / $exp_s" | bc -l)"
    else
      printf 'full export of %d MiB: running VM %.2f s (%.0f MiB/s) | offline %.2f s (%.0f MiB/s) | ratio %.2f | qemu-img convert -W -m 16 + sync %.2f s\n' \
        $((data >> 20)) "$exp_s" "$(echo "$data / 1048576 / $exp_s" | bc -l)" "$off_s" "$(echo "$data / 1048576 / $off_s" | bc -l)" \
        "$(echo "$exp_s / $off_s" | bc -l)" "$conv_s"
    fi
  done
  rm -f src.raw
done
