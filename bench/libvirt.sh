#!/usr/bin/env bash
# bench/libvirt.sh (make bench-live runs it after bench/live.sh; alone:
# make bench-libvirt) — refpoint on a libvirt domain (real libvirtd, stock
# unprivileged QEMU, TCG, no guest OS) against the peers on the same domain,
# same data, same run:
#   - CreateReferencePoint's capture pause (the QMP transaction's round trip,
#     REFPOINT_TRACE) through libvirt's monitor passthrough against the own
#     QMP socket of a plain QEMU on a copy of the same disk, idle guest;
#   - full backup and incremental backup of 40 x 1 MiB scattered guest writes:
#     refpoint (rp create + export + rp remove-data) against libvirt push
#     backup (virsh backup-begin with checkpoints, + sync) and virtnbdbackup
#     (-l full / -l inc, + sync). Every contender starts from a fresh copy
#     of the same pristine disk on a freshly started domain; rounds rotate
#     the order; medians and per-round ratios are printed.
#   BENCH_DATA_MIB=1024 (random data in a 4 GiB disk)  BENCH_ROUNDS=3  BENCH_RPS=15
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
B=$TOP/build
W=${BENCH_DIR:-$TOP/bench/work-libvirt}
ROUNDS=${BENCH_ROUNDS:-3}
RPS=${BENCH_RPS:-15}
DATA_MIB=${BENCH_DATA_MIB:-1024}
SIZE=$((4 * 1024 * 1024 * 1024))
command -v virtnbdbackup >/dev/null || { echo "virtnbdbackup is not installed (scripts/deps.sh --bench)"; exit 1; }
rm -rf "$W"; mkdir -p "$W"; chmod 0755 "$W"; cd "$W"
STARTED=()
KVM_MODE=
finish() {
  virsh -q destroy rpbench >/dev/null 2>&1 || true
  virsh -q undefine rpbench --checkpoints-metadata >/dev/null 2>&1 || true
  [ -f plain.pid ] && kill -9 "$(cat plain.pid)" 2>/dev/null || true
  for p in "${STARTED[@]}"; do pkill -x "$p" 2>/dev/null || true; done
  if [ -n "$KVM_MODE" ]; then chgrp root /dev/kvm; chmod "$KVM_MODE" /dev/kvm; fi
}
trap finish EXIT
pgrep -x virtlogd >/dev/null || { virtlogd -d; STARTED+=(virtlogd); }
if ! virsh -c qemu:///system version >/dev/null 2>&1; then
  libvirtd -d; STARTED+=(libvirtd)
  for _ in $(seq 100); do virsh version >/dev/null 2>&1 && break; sleep 0.1; done
fi
# (as in the tests: libvirt re-probes QEMU on every call with /dev/kvm root:root 0600)
if [ -c /dev/kvm ] && [ "$(stat -c %U:%G:%a /dev/kvm)" = root:root:600 ]; then
  KVM_MODE=600; chgrp kvm /dev/kvm; chmod 0660 /dev/kvm
fi
R() { "$B/refpoint" --state-dir "$W/state" --quiet "$@"; }
now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
med() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'; }
pct() { sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int((NR-1)*p/100+0.5)+1; if (i>NR) i=NR; print a[i]}'; }
cc -O2 -o mkimage "$TOP/bench/mkimage.c"
./mkimage src.raw "$SIZE" $((DATA_MIB * 100 / 4096)) 42
qemu-img convert -f raw -O qcow2 src.raw pristine.qcow2
rm -f src.raw
cat >dom.xml <<XML
<domain type='qemu'><name>rpbench</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='q35'>hvm</type></os>
<devices><emulator>$(command -v qemu-system-x86_64)</emulator>
<disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='none'/><source file='$W/disk.qcow2'/><target dev='vda' bus='virtio'/></disk>
<controller type='usb' model='none'/><memballoon model='none'/></devices></domain>
XML
fresh() { # a fresh copy of the pristine disk, the domain (re)started on it
  virsh -q destroy rpbench >/dev/null 2>&1 || true
  virsh -q undefine rpbench --checkpoints-metadata >/dev/null 2>&1 || true
  rm -rf state out-* disk.qcow2
  cp --sparse=always pristine.qcow2 disk.qcow2
  virsh -q define dom.xml >/dev/null
  virsh -q start rpbench >/dev/null
}
writes() { # 40 x 1 MiB at i * 4 GiB / 40 (64 KiB aligned), through the guest device
  for i in $(seq 0 39); do
    virsh -q qemu-monitor-command rpbench --hmp \
      "qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend \"write -P 0x5a $(( i * SIZE / 40 / 65536 * 65536 )) 1M\"" >/dev/null
  done
}
jobwait() { while ! virsh domjobinfo rpbench 2>/dev/null | grep -q "Job type: *None"; do sleep 0.02; done; }

echo "# refpoint on libvirt, $(date -u +%F), $(nproc) cores, libvirt $(virsh version --daemon | awk '/Running against daemon/ {print $NF}'), QEMU $(qemu-system-x86_64 --version | head -n1 | awk '{print $4}'), virtnbdbackup $(virtnbdbackup --version 2>&1 | tail -n1)"
echo "# disk: 4 GiB qcow2 with $DATA_MIB MiB of random data; TCG; libvirt's unprivileged QEMU; cache=none"

# ---- capture pause: libvirt passthrough vs the own QMP socket --------------
fresh
R vm add --libvirt rpbench >/dev/null
cp --sparse=always pristine.qcow2 plain.qcow2
qemu-system-x86_64 -machine q35,accel=tcg -nodefaults -display none -m 128 \
  -qmp unix:$W/plain.qmp,server=on,wait=off \
  -blockdev driver=file,node-name=f0,filename=$W/plain.qcow2,cache.direct=on \
  -blockdev driver=qcow2,node-name=d0,file=f0 -device virtio-blk-pci,drive=d0,id=vd0 \
  -daemonize -pidfile $W/plain.pid
R vm add plain --disk plain.qcow2 --qmp plain.qmp >/dev/null
: >pause.lv; : >pause.own
for i in $(seq "$RPS"); do
  for vm in rpbench plain; do
    f=pause.lv; [ $vm = plain ] && f=pause.own
    rp=$(REFPOINT_TRACE=1 "$B/refpoint" --state-dir "$W/state" --quiet rp create $vm 2>trace)
    grep -o 'live capture transaction[^:]*: [0-9.]*' trace | awk '{print $NF}' >>$f
    R rp remove-data "$rp" >/dev/null
  done
done
echo "capture pause (QMP transaction, ms, n=$RPS, idle): libvirt passthrough median $(med <pause.lv) p99 $(pct 99 <pause.lv); own socket median $(med <pause.own) p99 $(pct 99 <pause.own)"
kill "$(cat plain.pid)"; rm -f plain.pid plain.qcow2

# ---- backups: refpoint vs libvirt push vs virtnbdbackup ---------------------
c_rp() {
  R vm add --libvirt rpbench >/dev/null
  local t0 t1 r1 r2
  sync; t0=$(now)
  r1=$(R rp create rpbench); R export "$r1" "$W/out-rp" >/dev/null; R rp remove-data "$r1" >/dev/null
  t1=$(now); full=$(ms $t0 $t1)
  writes
  sync; t0=$(now)
  r2=$(R rp create rpbench); R export "$r2" "$W/out-rp" --base "$r1" >/dev/null; R rp remove-data "$r2" >/dev/null
  t1=$(now); inc=$(ms $t0 $t1)
  if [ "$round" = 1 ]; then  # correctness: the chain equals the disk
    virsh -q destroy rpbench --graceful >/dev/null
    R restore "$W/out-rp/${r1#Microsoft:}" "$W/out-rp/${r2#Microsoft:}" --to "$W/out-rp/restored" >/dev/null
    qemu-img compare -q out-rp/restored/*.qcow2 disk.qcow2 || { echo "refpoint chain differs"; exit 1; }
  fi
}
c_push() {
  cat >cp0.xml <<XML
<domaincheckpoint><name>push.0</name></domaincheckpoint>
XML
  cat >cp1.xml <<XML
<domaincheckpoint><name>push.1</name></domaincheckpoint>
XML
  cat >b0.xml <<XML
<domainbackup><disks><disk name='vda' type='file'><target file='$W/out-push/full.qcow2'/><driver type='qcow2'/></disk></disks></domainbackup>
XML
  cat >b1.xml <<XML
<domainbackup><incremental>push.0</incremental><disks><disk name='vda' type='file'><target file='$W/out-push/inc.qcow2'/><driver type='qcow2'/></disk></disks></domainbackup>
XML
  mkdir -p out-push; chown "$(stat -c %U disk.qcow2)" out-push
  local t0 t1
  sync; t0=$(now)
  virsh -q backup-begin rpbench b0.xml cp0.xml >/dev/null; jobwait; sync -f out-push/full.qcow2
  t1=$(now); full=$(ms $t0 $t1)
  writes
  sync; t0=$(now)
  virsh -q backup-begin rpbench b1.xml cp1.xml >/dev/null; jobwait; sync -f out-push/inc.qcow2
  t1=$(now); inc=$(ms $t0 $t1)
}
c_vnb() {
  local t0 t1
  sync; t0=$(now)
  virtnbdbackup -d rpbench -l full -o out-vnb >vnb.log 2>&1; sync -f out-vnb
  t1=$(now); full=$(ms $t0 $t1)
  writes
  sync; t0=$(now)
  virtnbdbackup -d rpbench -l inc -o out-vnb >>vnb.log 2>&1; sync -f out-vnb
  t1=$(now); inc=$(ms $t0 $t1)
}
: >res
order=(rp push vnb)
for round in $(seq "$ROUNDS"); do
  for k in 0 1 2; do
    c=${order[$(( (k + round) % 3 ))]}
    fresh
    "c_$c"
    echo "$round $c $full $inc" >>res
    echo "round $round $c: full $full ms, incremental $inc ms"
  done
done
for c in rp push vnb; do
  echo "$c: full median $(awk -v c=$c '$2==c {print $3}' res | med) ms, incremental median $(awk -v c=$c '$2==c {print $4}' res | med) ms"
done
ratio() { # PEER COLUMN: per-round refpoint/peer, median
  for r in $(seq "$ROUNDS"); do
    awk -v r="$r" -v p="$1" -v k="$2" '$1==r && $2=="rp" {a=$k} $1==r && $2==p {b=$k} END {printf "%.2f\n", a/b}' res
  done | med
}
echo "ratios refpoint / peer (median of per-round ratios): full vs push $(ratio push 3), incremental vs push $(ratio push 4), full vs virtnbdbackup $(ratio vnb 3), incremental vs virtnbdbackup $(ratio vnb 4)"
