# refpoint beside libvirt's own tools on a running domain (real libvirtd,
# stock unprivileged QEMU, TCG): libvirt checkpoints and backups keep
# working beside refpoint's reference points and refpoint keeps working
# after them; a libvirt pull backup job is answered 32774 naming it (never
# QEMU's "Need a root block node"); an external snapshot overlay is refused
# until blockcommit, after which the chain goes on exact; a blockcopy pivot
# is recorded (older RPs lose what did not come along, the newest stays a
# base). Every export is compared bit for bit with a raw mirror.
. "$(dirname "$0")/lib.sh"
need_qemu_system
need_libvirt
S=$((32 * 1024 * 1024))
g() { echo "${1#Microsoft:}"; }
mkdisk a $S; rand_writes a $S 10
D=$(lv_define nb a.qcow2)
rp vm add --libvirt "$D" >/dev/null
virsh -q start "$D" >/dev/null
jobwait() { for _ in $(seq 300); do virsh domjobinfo "$1" 2>/dev/null | grep -q "Job type: *None" && return 0; sleep 0.1; done; fail "libvirt job did not end"; }

R1=$(rp rp create "$D"); snap_mirror a 1
rp export "$R1" "$T/bk" >/dev/null
lwr "$D" virtio-disk0 $((1024 * 1024)) 65536 11 a.raw
# a libvirt checkpoint beside refpoint's epochs
virsh -q checkpoint-create-as "$D" c1 >/dev/null || fail "libvirt checkpoint after refpoint's RPs"
lwr "$D" virtio-disk0 $((2 * 1024 * 1024)) 65536 22 a.raw
R2=$(rp rp create "$D"); snap_mirror a 2
rp export "$R2" "$T/bk" --base "$R1" >/dev/null
exact "$(ls "$T/bk/$(g "$R2")"/disk-*.qcow2)" a.2.raw
# libvirt's push backup (incremental since its checkpoint) after refpoint's RP
cat >"$T/push.xml" <<XML
<domainbackup><incremental>c1</incremental><disks><disk name='vda' type='file'><target file='$T/push.qcow2'/><driver type='qcow2'/></disk></disks></domainbackup>
XML
virsh -q backup-begin "$D" "$T/push.xml" >/dev/null || fail "libvirt push backup beside refpoint"
jobwait "$D"
qemu-img info -U "$T/push.qcow2" >/dev/null || fail "libvirt push backup wrote nothing"
qemu-img map -U --output=json -f qcow2 "$T/push.qcow2" | grep -q '"data": true' || fail "libvirt's incremental push holds no data"
ok "libvirt checkpoint and push backup beside refpoint's RPs; refpoint's incremental exact"

# virtnbdbackup beside refpoint's RPs (it refuses libvirt checkpoints it did
# not make, so libvirt's own go first; refpoint's bitmaps do not bother it)
command -v virtnbdbackup >/dev/null || fail "virtnbdbackup is not installed (scripts/deps.sh installs it)"
for c in $(virsh -q checkpoint-list "$D" --name 2>/dev/null); do virsh -q checkpoint-delete "$D" "$c" >/dev/null; done
virtnbdbackup -d "$D" -l full -o "$T/vnb" >"$T/vnb.log" 2>&1 || fail "virtnbdbackup beside refpoint's RPs: $(tail -5 "$T/vnb.log")"
lwr "$D" virtio-disk0 $((2560 * 1024)) 65536 2a a.raw
R2b=$(rp rp create "$D"); snap_mirror a 2b
rp export "$R2b" "$T/bk" --base "$R2" >/dev/null
exact "$(ls "$T/bk/$(g "$R2b")"/disk-*.qcow2)" a.2b.raw
virtnbdbackup -d "$D" -l inc -o "$T/vnb" >>"$T/vnb.log" 2>&1 || fail "virtnbdbackup incremental after refpoint's RP: $(tail -5 "$T/vnb.log")"
for c in $(virsh -q checkpoint-list "$D" --name 2>/dev/null); do virsh -q checkpoint-delete "$D" "$c" >/dev/null; done
R2=$R2b
ok "virtnbdbackup full and incremental beside refpoint's RPs; refpoint's incremental between them exact"

# a libvirt pull backup job held open: refpoint answers 32774 naming it
# (libvirt's QEMU makes the job's socket itself: a directory it may write)
mkdir -p "$T/lvq"; chown "$(stat -c %U "$(readlink -f a.qcow2)")" "$T/lvq"
cat >"$T/pull.xml" <<XML
<domainbackup mode='pull'><server transport='unix' socket='$T/lvq/pull.sock'/><disks><disk name='vda' backup='yes' type='file'><scratch file='$T/lvq/scratch.qcow2'/></disk></disks></domainbackup>
XML
virsh -q backup-begin "$D" "$T/pull.xml" >/dev/null || fail "libvirt pull backup"
expect_fail 32774 "libvirt backup job" rp rp create "$D"
expect_fail 32774 "libvirt backup job" rp export "$R2" "$T/other" --base "$R1"
rpj rp show "$R1" | grep -q '"HasAssociatedData": true' || fail "a read of the VM failed while libvirt's job ran"
rpj vm show "$D" | grep -q '"RuntimeState": "running"' || fail "vm show while libvirt's job ran: $(rpj vm show "$D")"
grep -qi "root block node" "$T/err" && fail "QEMU's raw message leaked"
[ "$(rpj rp list "$D" | grep -c '"InstanceID"')" = 3 ] || fail "a refused create left an RP"
virsh -q domjobabort "$D" >/dev/null
jobwait "$D"
lwr "$D" virtio-disk0 $((3 * 1024 * 1024)) 65536 33 a.raw
R3=$(rp rp create "$D"); snap_mirror a 3
rp export "$R3" "$T/bk" --base "$R2" >/dev/null
exact "$(ls "$T/bk/$(g "$R3")"/disk-*.qcow2)" a.3.raw
ok "a libvirt pull backup job: 32774 naming it, nothing changed; after it ends refpoint goes on exact"

# an external snapshot overlay: refused with the cause, not recorded;
# after blockcommit the chain goes on (the recording bitmap came along)
virsh -q snapshot-create-as "$D" ext1 --disk-only --no-metadata --diskspec "vda,file=$T/ovl.qcow2" >/dev/null ||
  fail "external snapshot"
lwr "$D" virtio-disk0 $((4 * 1024 * 1024)) 65536 44 a.raw   # lands in the overlay
expect_fail 5 "external snapshot overlay" rp rp create "$D"
virsh -q blockcommit "$D" vda --active --pivot --wait >/dev/null || fail "blockcommit"
R4=$(rp rp create "$D"); snap_mirror a 4
rp export "$R4" "$T/bk" --base "$R3" >/dev/null
exact "$(ls "$T/bk/$(g "$R4")"/disk-*.qcow2)" a.4.raw
rpj rp show "$R1" | grep -q '"HasAssociatedData": true' || fail "the overlay episode cost R1 its data"
ok "external snapshot overlay: refused naming it; after blockcommit the incremental is exact"

# blockcopy pivot: the disk moves to another file
lwr "$D" virtio-disk0 $((5 * 1024 * 1024)) 65536 55 a.raw
virsh -q blockcopy "$D" vda "$T/copy.qcow2" --format qcow2 --wait --pivot --transient-job >/dev/null ||
  fail "blockcopy"
"$BUILD/refpoint" --state-dir "$STATE" rp create "$D" >"$T/out" 2>"$T/warn" || fail "create after blockcopy: $(cat "$T/warn")"
R5=$(cat "$T/out"); snap_mirror a 5
grep -q "moved from .*a.qcow2 to .*copy.qcow2" "$T/warn" || fail "the move was not reported: $(cat "$T/warn")"
rpj vm show "$D" | grep -q "copy.qcow2" || fail "the store does not follow the new file"
rpj rp show "$R3" | grep -q '"HasAssociatedData": false' || fail "R3's data (left in the old file) still claimed"
rp export "$R5" "$T/bk" --base "$R4" >/dev/null
exact "$(ls "$T/bk/$(g "$R5")"/disk-*.qcow2)" a.5.raw
expect_fail 32775 "full export is needed" rp export "$R5" "$T/bk2" --base "$R3"
ok "blockcopy pivot: recorded, older RPs lose what did not come along, the newest stays a base (exact)"
