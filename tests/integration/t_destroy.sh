# DestroyReferencePoint in the middle, at the end and at the start of a
# history, and RemoveAssociatedData: every remaining RP stays a valid base,
# changes are never under-reported, and an RP without data cannot be
# exported (32775) but still serves as a base.
. "$(dirname "$0")/lib.sh"
S=$((96 * 1024 * 1024))
mkdisk a $S
rand_writes a $S 30
rp vm add vm --disk a.qcow2 >/dev/null
R1=$(rp rp create vm); snap_mirror a 1; rand_writes a $S 15
R2=$(rp rp create vm); snap_mirror a 2; rand_writes a $S 15
R3=$(rp rp create vm); snap_mirror a 3; rand_writes a $S 15
g() { echo "${1#Microsoft:}"; }
nsnap() { qemu-img snapshot -l a.qcow2 | grep -c refpoint-rp- || true; }
nbm() { qemu-img info a.qcow2 | grep -c 'name: refpoint-' || true; }
[ "$(nsnap)" = 3 ] && [ "$(nbm)" = 3 ] || fail "expected 3 snapshots and 3 bitmaps"

# destroy the middle one: RP1 -> RP3 must still be exact
rp rp destroy "$R2"
[ "$(nsnap)" = 2 ] || fail "snapshot of R2 not deleted"
[ "$(nbm)" = 2 ] || fail "epoch bitmap of R2 not merged away ($(nbm) bitmaps)"
expect_fail 32773 "not found" rp rp show "$R2"
rp export "$R1" "$T/b" >/dev/null
rp export "$R3" "$T/b" --base "$R1" >/dev/null
qemu-img convert -O raw "$T/b/$(g "$R3")"/disk-*.qcow2 "$T/r3.raw"
cmp "$T/r3.raw" a.3.raw || fail "RP1->RP3 after destroying RP2"
ok "destroy in the middle keeps RP1 a valid base for RP3"

# remove associated data of R3: no export of it, but it is still a base
rp rp remove-data "$R3"
[ "$(nsnap)" = 1 ] || fail "remove-data left the snapshot"
rpj rp show "$R3" | grep -q '"HasAssociatedData": false' || fail "HasAssociatedData still true"
expect_fail 32775 "no associated data" rp export "$R3" "$T/c"
[ ! -e "$T/c/$(g "$R3")" ] || fail "export folder left after refusal"
expect_fail 32775 "no associated data" rp rp remove-data "$R3"
R4=$(rp rp create vm); snap_mirror a 4; rand_writes a $S 10
rp export "$R4" "$T/b" --base "$R3" >/dev/null
qemu-img convert -O raw "$T/b/$(g "$R4")"/disk-*.qcow2 "$T/r4.raw"
cmp "$T/r4.raw" a.4.raw || fail "RP3 (no data) -> RP4 chain"
ok "RP without associated data: 32775 on export, still a valid base"

# destroy the newest: its open epoch merges back; the next RP continues
rp rp destroy "$R4"
R5=$(rp rp create vm); snap_mirror a 5; rand_writes a $S 5
rp export "$R5" "$T/d" --base "$R3" >/dev/null
rp export "$R3" "$T/d" 2>/dev/null && fail "R3 export should fail (no data)"
# compare through a fresh full of R1 and R1->R5
rp export "$R1" "$T/e" >/dev/null
rp export "$R5" "$T/e" --base "$R1" >/dev/null
qemu-img convert -O raw "$T/e/$(g "$R5")"/disk-*.qcow2 "$T/r5.raw"
cmp "$T/r5.raw" a.5.raw || fail "RP1 -> RP5 after destroying RP4 (newest)"
ok "destroy of the newest RP: later RPs stay exact"

# destroy the oldest: R3 -> R5 still fine, R1 gone
rp rp destroy "$R1"
rm -rf "$T/f"; rp export "$R5" "$T/f" --base "$R3" >/dev/null
rp rp destroy "$R3"; rp rp destroy "$R5"
[ "$(nsnap)" = 0 ] && [ "$(nbm)" = 0 ] || fail "after destroying every RP: $(nsnap) snapshots, $(nbm) bitmaps remain"
rp vm remove vm
qemu-img check -q a.qcow2 || fail "image check"
ok "destroying every RP leaves the disk clean"
