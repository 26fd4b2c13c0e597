# Finding F4 of the crash campaign: after QEMU is killed and started again
# on the same, unchanged files, a pure read (rp list / rp show) must not
# trust the files' signature: the new QEMU's bitmaps came up inconsistent,
# so the RPs are no valid bases any more, and the listing says so before
# any export is tried.
. "$(dirname "$0")/lib.sh"
need_qemu_system
S=$((16 * 1024 * 1024))
mkdisk a $S; rand_writes a $S 5
vm_start v a.qcow2
rp vm add vm --disk a.qcow2 --qmp "$T/v.qmp" >/dev/null
R1=$(rp rp create vm)
gwr v vd0 0 65536 0x11
R2=$(rp rp create vm)
rpj rp show "$R1" | grep -q '"ChangeTrackingValid": true' || fail "premise: R1 valid"
rpj rp list vm >/dev/null    # a read that records the files as consistent
vm_kill v
vm_start v a.qcow2
rpj rp show "$R1" | grep -q '"ChangeTrackingValid": false' || fail "F4: rp show calls R1 a valid base after QEMU was killed: $(rpj rp show "$R1")"
rpj rp list vm | grep -c '"ChangeTrackingValid": true' | grep -q '^0$' || fail "F4: rp list calls RPs valid bases: $(rpj rp list vm)"
R3=$(rp rp create vm)
expect_fail 32775 "full export is needed" rp export "$R3" "$T/bk" --base "$R2"
ok "after QEMU was killed and restarted, rp show / rp list report the lost tracking at once"
