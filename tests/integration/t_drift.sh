# Reconciliation: the store is compared with what the qcow2 files hold, and
# drift is reported with reasons instead of trusted.
. "$(dirname "$0")/lib.sh"
S=$((16 * 1024 * 1024))
mkdisk a $S; rand_writes a $S 5
rp vm add vm --disk a.qcow2 >/dev/null
R1=$(rp rp create vm); rand_writes a $S 3
R2=$(rp rp create vm); rand_writes a $S 3
R3=$(rp rp create vm)
# someone deletes R2's snapshot behind our back
qemu-img snapshot -d "refpoint-rp-${R2#Microsoft:}" a.qcow2
out=$("$BUILD/refpoint" --state-dir "$STATE" --json rp show "$R2" 2>"$T/warn")
echo "$out" | grep -q '"HasAssociatedData": false' || fail "missing snapshot not noticed"
echo "$out" | grep -q 'is missing from' || fail "no reason given: $out"
grep -q "lost its associated data" "$T/warn" || fail "no warning printed: $(cat "$T/warn")"
expect_fail 32775 "no associated data" rp export "$R2" "$T/x"
ok "a snapshot removed by someone else: HasAssociatedData false, with the reason"

# someone removes R1's epoch bitmap: R1 can no longer be a base for R2/R3
BM=$(rpj rp show "$R1" | tr -d '\n ' | grep -o '"ResilientChangeTrackingIdentifiers":\["[^"]*' | sed 's/.*\["//')
qemu-img bitmap --remove a.qcow2 "$BM"
expect_fail 32775 "is missing from" rp export "$R3" "$T/y" --base "$R1"
rpj rp show "$R1" | grep -q '"ChangeTrackingValid": false' || fail "R1 still claims valid tracking"
# R2 -> R3 is untouched
rp export "$R1" "$T/y" >/dev/null
rp export "$R3" "$T/y" --base "$R2" >/dev/null
ok "a bitmap removed by someone else: bases across it refused, others fine"

# someone disables the recording bitmap: changes after it are unknown
BM3=$(rpj rp show "$R3" | tr -d '\n ' | grep -o '"ResilientChangeTrackingIdentifiers":\["[^"]*' | sed 's/.*\["//')
qemu-img bitmap --disable a.qcow2 "$BM3"
R4=$(rp rp create vm)
expect_fail 32775 "disabled by someone else" rp export "$R4" "$T/z" --base "$R3"
ok "a recording bitmap disabled by someone else is noticed"

# foreign bitmaps and snapshots are left alone
qemu-img bitmap --add a.qcow2 libvirt-checkpoint-1
qemu-img snapshot -c user-snap a.qcow2
R5=$(rp rp create vm)
rp rp destroy "$R5"; rp rp destroy "$R4"
qemu-img info a.qcow2 | grep -q "name: libvirt-checkpoint-1" || fail "foreign bitmap touched"
qemu-img snapshot -l a.qcow2 | grep -q user-snap || fail "foreign snapshot touched"
ok "foreign bitmaps and snapshots are left alone"
