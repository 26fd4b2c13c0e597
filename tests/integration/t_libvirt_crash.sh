# Crashes around a running libvirt domain (real libvirtd, stock unprivileged
# QEMU): refpoint killed during a live incremental export (QEMU's NBD server
# is left running: the next export stops it and goes on), libvirtd restarted
# during an export (the export completes; the next operation reconnects),
# QEMU killed during a live create (no half-made RP; the next operations
# exact). Fault injection: REFPOINT_FAULT_INJECT (SIGKILL, or SIGSTOP with
# stop:POINT so that the test can change the world meanwhile).
. "$(dirname "$0")/lib.sh"
need_qemu_system
need_libvirt
S=$((32 * 1024 * 1024))
g() { echo "${1#Microsoft:}"; }
mkdisk a $S; rand_writes a $S 10
D=$(lv_define cr a.qcow2)
rp vm add --libvirt "$D" >/dev/null
virsh -q start "$D" >/dev/null
R1=$(rp rp create "$D"); snap_mirror a 1
rp export "$R1" "$T/bk" >/dev/null
lwr "$D" virtio-disk0 $((1024 * 1024)) 65536 11 a.raw
R2=$(rp rp create "$D"); snap_mirror a 2
lwr "$D" virtio-disk0 $((1536 * 1024)) 4096 13 a.raw

# 1. killed while exporting a fleecing view: QEMU's NBD server (which serves
# the view) is left running with an export of a dead refpoint process
rp vm set "$D" --capture fleecing >/dev/null
R2F=$(rp rp create "$D"); snap_mirror a 2f
lwr "$D" virtio-disk0 $((1024 * 1024)) 65536 12 a.raw   # after the view: must not appear
set +e; REFPOINT_FAULT_INJECT=export-planned rp export "$R2F" "$T/bk" --base "$R2" >/dev/null 2>&1; rc=$?; set -e
[ $rc -ne 0 ] || fail "the fault point did not fire"
[ ! -e "$T/bk/$(g "$R2F")" ] || fail "a killed export left a folder with the final name"
virsh -q qemu-monitor-command "$D" '{"execute":"query-block-exports"}' | grep -q '"id":"refpoint-x-' ||
  fail "premise: the killed export should have left its NBD export in QEMU"
rp export "$R2" "$T/bk" --base "$R1" >/dev/null     # its incremental needs the NBD server
exact "$(ls "$T/bk/$(g "$R2")"/disk-*.qcow2)" a.2.raw
rp export "$R2F" "$T/bk" --base "$R2" >/dev/null
exact "$(ls "$T/bk/$(g "$R2F")"/disk-*.qcow2)" a.2f.raw
rp rp remove-data "$R2F" >/dev/null
rp vm set "$D" --capture snapshot >/dev/null
ok "killed during a live export: the server it left is stopped by the next export, which is exact"

# 2. libvirtd restarted while an export runs
lwr "$D" virtio-disk0 $((2 * 1024 * 1024)) 65536 22 a.raw
R3=$(rp rp create "$D"); snap_mirror a 3
REFPOINT_FAULT_INJECT=stop:export-planned "$BUILD/refpoint" --state-dir "$STATE" --quiet export "$R3" "$T/bk" --base "$R2F" >"$T/out" 2>"$T/err" & pid=$!
for _ in $(seq 200); do [ "$(ps -o stat= -p $pid 2>/dev/null | cut -c1)" = T ] && break; sleep 0.05; done
[ "$(ps -o stat= -p $pid | cut -c1)" = T ] || fail "premise: the export did not stop at its fault point"
lp=$(pgrep -x libvirtd); kill "$lp"; while kill -0 "$lp" 2>/dev/null; do sleep 0.05; done
libvirtd -d; [[ " ${LV_STARTED[*]} " == *" libvirtd "* ]] || LV_STARTED+=(libvirtd)
for _ in $(seq 100); do virsh version >/dev/null 2>&1 && break; sleep 0.1; done
kill -CONT $pid
wait $pid || fail "the export across a libvirtd restart failed: $(cat "$T/err")"
exact "$(ls "$T/bk/$(g "$R3")"/disk-*.qcow2)" a.3.raw
lwr "$D" virtio-disk0 $((3 * 1024 * 1024)) 65536 33 a.raw
R4=$(rp rp create "$D"); snap_mirror a 4
rp export "$R4" "$T/bk" --base "$R3" >/dev/null
exact "$(ls "$T/bk/$(g "$R4")"/disk-*.qcow2)" a.4.raw
ok "libvirtd restarted during an export: it completes exact; the next create and export work"

# 3. QEMU killed during a live create (after the capture, before the commit)
lwr "$D" virtio-disk0 $((4 * 1024 * 1024)) 65536 44 a.raw
virsh -q qemu-monitor-command "$D" --hmp 'qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend "flush"' >/dev/null
REFPOINT_FAULT_INJECT=stop:create-after-capture "$BUILD/refpoint" --state-dir "$STATE" --quiet rp create "$D" >"$T/out" 2>"$T/err" & pid=$!
for _ in $(seq 200); do [ "$(ps -o stat= -p $pid 2>/dev/null | cut -c1)" = T ] && break; sleep 0.05; done
[ "$(ps -o stat= -p $pid | cut -c1)" = T ] || fail "premise: the create did not stop at its fault point"
snap_mirror a 5
qp=$(pgrep -f "guest=$D," | head -1); kill -9 "$qp"; while kill -0 "$qp" 2>/dev/null; do sleep 0.05; done
kill -CONT $pid
wait $pid && R5=$(cat "$T/out") || R5=
[ -z "$(rpj rp list "$D" | grep '"creating"' || true)" ] || fail "a half-made RP is listed"
if [ -n "$R5" ]; then
  rp export "$R5" "$T/f5" >/dev/null
  exact "$(ls "$T/f5/$(g "$R5")"/disk-*.qcow2)" a.5.raw
fi
for _ in $(seq 100); do virsh domstate "$D" | grep -q "shut off" && break; sleep 0.1; done
R6=$(rp rp create "$D" 2>/dev/null); snap_mirror a 6
rp export "$R6" "$T/f6" >/dev/null
exact "$(ls "$T/f6/$(g "$R6")"/disk-*.qcow2)" a.6.raw
expect_fail 32775 "full export is needed" rp export "$R6" "$T/bk" --base "$R4"
ok "QEMU killed during a live create: nothing half made${R5:+ (the RP it completed exports exact)}, the next RP exact"
