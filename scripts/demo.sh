#!/usr/bin/env bash
# make demo: a virtual machine with two qcow2 disks, guest-like writes made
# with qemu-io, reference point RP1, a full export, more writes, RP2, an
# incremental export, a restore of the chain, and a bit-for-bit comparison
# with the disks' content at RP2 (kept independently in raw mirror files).
# Then the VM runs (QEMU, TCG, no guest OS): guest writes over QMP, a live
# RP3, a live incremental export while a busy guest writes, and the restore
# of the three exports compared with the disks at RP3.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
RP_BIN=$TOP/build/refpoint
W=${DEMO_DIR:-/tmp/refpoint-demo}
rm -rf "$W"; mkdir -p "$W"; cd "$W"
R() { "$RP_BIN" --state-dir "$W/state" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
now() { date +%s.%N; }
hb() { numfmt --to=iec-i --suffix=B "$1"; }

SIZE=$((1024 * 1024 * 1024))
say "two 1 GiB qcow2 disks, each with a raw mirror that receives the same writes"
for d in disk0 disk1; do qemu-img create -q -f qcow2 $d.qcow2 $SIZE; truncate -s $SIZE $d.raw; done
# writes: random data from a file, applied to the qcow2 (qemu-io) and the mirror (dd)
write() { # disk off len
  head -c "$3" /dev/urandom >chunk
  qemu-io -f qcow2 -c "write -q -s chunk $2 $3" "$1.qcow2"
  dd if=chunk of="$1.raw" bs=1M seek="$2" oflag=seek_bytes conv=notrunc status=none
}
for i in $(seq 0 23); do write disk0 $((i * 40 * 1024 * 1024 + 4096)) $((8 * 1024 * 1024)); done
for i in $(seq 0 11); do write disk1 $((i * 80 * 1024 * 1024 + 512)) $((6 * 1024 * 1024 + 777)); done
echo "disk0: $(qemu-img info disk0.qcow2 | grep 'disk size')   disk1: $(qemu-img info disk1.qcow2 | grep 'disk size')"

say "register the virtual machine"
R vm add demo-vm --disk disk0.qcow2 --disk disk1.qcow2

say "reference point RP1 (CreateReferencePoint)"
RP1=$(R rp create demo-vm); echo "$RP1"

say "full export of RP1 (ExportReferencePoint)"
t0=$(now); R export "$RP1" "$W/backup"; t1=$(now)
FULL_T=$(echo "$t1 - $t0" | bc); FULL_B=$(du -sb "$W/backup/${RP1#Microsoft:}" | cut -f1)

say "the guest keeps writing: 2 x 12 writes of 64 KiB..1 MiB, unaligned, and zeroes"
for i in $(seq 1 12); do write disk0 $((i * 70 * 1024 * 1024 + 123)) $((i * 65536 + 17)); done
for i in $(seq 1 12); do write disk1 $((i * 50 * 1024 * 1024 + 4000)) 65536; done
qemu-io -f qcow2 -c "write -q -z 16M 1M" disk0.qcow2; dd if=/dev/zero of=disk0.raw bs=1M seek=16 count=1 conv=notrunc status=none

say "reference point RP2, then writes that must NOT appear in RP2's export"
RP2=$(R rp create demo-vm); echo "$RP2"
cp --sparse=always disk0.raw disk0.rp2.raw; cp --sparse=always disk1.raw disk1.rp2.raw
write disk0 0 $((4 * 1024 * 1024)); write disk1 $((100 * 1024 * 1024)) $((4 * 1024 * 1024))

say "incremental export of RP2 relative to RP1"
t0=$(now); R export "$RP2" "$W/backup" --base "$RP1"; t1=$(now)
INC_T=$(echo "$t1 - $t0" | bc); INC_B=$(du -sb "$W/backup/${RP2#Microsoft:}" | cut -f1)
R rp list demo-vm

say "what the backup root holds"
ls -l "$W/backup"/*/ | sed 's/^/  /'
for f in "$W/backup/${RP2#Microsoft:}"/disk-*.qcow2; do
  qemu-img info "$f" | grep -E '^(image|backing file):' | sed 's/^/  /'
done

say "verify the checksums of both exports"
R verify "$W/backup/${RP1#Microsoft:}" "$W/backup/${RP2#Microsoft:}"

say "restore the chain (full + incremental) and compare with the content at RP2"
t0=$(now); R restore "$W/backup/${RP1#Microsoft:}" "$W/backup/${RP2#Microsoft:}" --to "$W/restored"; t1=$(now)
REST_T=$(echo "$t1 - $t0" | bc)
OK=1
for f in "$W"/restored/*.qcow2; do
  # the disk order is that of the export manifest; match mirrors by content
  if qemu-img compare -q -f raw -F qcow2 disk0.rp2.raw "$f"; then echo "  $f == disk0 at RP2: Images are identical."
  elif qemu-img compare -q -f raw -F qcow2 disk1.rp2.raw "$f"; then echo "  $f == disk1 at RP2: Images are identical."
  else echo "  $f MATCHES NEITHER DISK AT RP2"; OK=0; fi
done
say "and with stock qemu-img alone: convert the newest file (its backing file is RP1's export)"
for f in "$W/backup/${RP2#Microsoft:}"/disk-*.qcow2; do
  qemu-img convert -O raw "$f" stock.raw
  if cmp -s stock.raw disk0.rp2.raw || cmp -s stock.raw disk1.rp2.raw; then echo "  $(basename "$f"): identical to the disk at RP2"; else echo "  $(basename "$f"): DIFFERENT"; OK=0; fi
  rm -f stock.raw
done

if command -v qemu-system-x86_64 >/dev/null; then
LIVE=1
say "now the VM runs: QEMU (TCG, no guest OS) on the same disks, QMP socket registered"
GIO=$TOP/build/guestio
qemu-system-x86_64 -machine q35,accel=tcg -nodefaults -display none \
  -qmp unix:$W/qmp.sock,server=on,wait=off -qmp unix:$W/test.sock,server=on,wait=off \
  -blockdev driver=file,node-name=f0,filename=$W/disk0.qcow2 -blockdev driver=qcow2,node-name=d0,file=f0 \
  -device virtio-blk-pci,drive=d0,id=vd0,share-rw=on \
  -blockdev driver=file,node-name=f1,filename=$W/disk1.qcow2 -blockdev driver=qcow2,node-name=d1,file=f1 \
  -device virtio-blk-pci,drive=d1,id=vd1,share-rw=on -daemonize -pidfile $W/vm.pid
trap 'kill -9 $(cat "$W/vm.pid" 2>/dev/null) 2>/dev/null || true' EXIT
R vm set demo-vm --qmp "$W/qmp.sock"
gwrite() { # disk-index off len pattern: a write through the guest's virtio-blk device, and the mirror
  "$GIO" write "$W/test.sock" /machine/peripheral/vd$1/virtio-backend "$2" "$3" "$4"
  head -c "$3" /dev/zero | tr '\0' "\\$(printf '%03o' "$4")" | dd of=disk$1.raw bs=65536 seek=$(($2 / 65536)) conv=notrunc status=none
}
for i in $(seq 0 7); do gwrite 0 $((i * 100 * 1048576)) 1048576 $((0x30 + i)); done
gwrite 1 $((512 * 1048576)) 262144 0x41

say "reference point RP3 of the running VM (one QMP transaction for both disks)"
t0=$(now); RP3=$(REFPOINT_TRACE=1 "$RP_BIN" --state-dir "$W/state" rp create demo-vm 2>trace); t1=$(now)
echo "$RP3   (guest I/O paused $(sed -n 's/.*live capture transaction ([0-9]* disk(s)): \([0-9.]*\) ms/\1/p' trace) ms)"
cp --sparse=always disk0.raw disk0.rp3.raw; cp --sparse=always disk1.raw disk1.rp3.raw

say "incremental export of RP3 on RP2 while the guest keeps writing"
rm -f stop; "$GIO" writer "$W/test.sock" /machine/peripheral/vd0/virtio-backend $SIZE 1 wlog stop >/dev/null &
WP=$!
sleep 0.5
t0=$(now); R export "$RP3" "$W/backup" --base "$RP2"; t1=$(now)
LIVE_T=$(echo "$t1 - $t0" | bc)
touch stop; wait $WP
echo "the guest wrote $(wc -l <wlog) times meanwhile"
R vm show demo-vm | head -n 4

say "restore RP1 + RP2 + RP3 and compare with the content at RP3"
R restore "$W/backup/${RP1#Microsoft:}" "$W/backup/${RP2#Microsoft:}" "$W/backup/${RP3#Microsoft:}" --to "$W/restored3"
for f in "$W"/restored3/*.qcow2; do
  if qemu-img compare -q -f raw -F qcow2 disk0.rp3.raw "$f"; then echo "  $f == disk0 at RP3: Images are identical."
  elif qemu-img compare -q -f raw -F qcow2 disk1.rp3.raw "$f"; then echo "  $f == disk1 at RP3: Images are identical."
  else echo "  $f MATCHES NEITHER DISK AT RP3"; OK=0; fi
done
"$GIO" qmp "$W/test.sock" '{"execute":"quit"}' >/dev/null   # a clean shutdown: tracking is kept in the files
else
  LIVE=0; echo "(qemu-system-x86_64 not installed: the live part is skipped)"
fi

say "summary"
printf '  full export of RP1:        %8s in %5.2f s  (%s/s)\n' "$(hb "$FULL_B")" "$FULL_T" "$(hb "$(echo "$FULL_B / $FULL_T" | bc)")"
printf '  incremental export of RP2: %8s in %5.2f s  (%.1f%% of the full export'"'"'s size)\n' "$(hb "$INC_B")" "$INC_T" "$(echo "100 * $INC_B / $FULL_B" | bc -l)"
printf '  restore of the chain:      %5.2f s\n' "$REST_T"
[ $LIVE = 1 ] && printf '  live incremental of RP3:   %5.2f s while the guest wrote\n' "$LIVE_T"
printf '  work directory:            %s\n' "$W"
if [ $OK = 1 ]; then echo "  result: restored disks are bit-for-bit the disks at RP2$([ $LIVE = 1 ] && echo " and at RP3 (running VM)")"; else echo "  result: MISMATCH"; exit 1; fi
