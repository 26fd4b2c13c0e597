# DestroyReferencePoint killed or failing at every step (findings F2, F3,
# F5 of the crash campaign): before its commit the RP is exactly as before
# (listed, with its data, exportable, the retry works the first time);
# after it the RP is gone and the leftovers (snapshots, the epoch's bitmap)
# are removed by the next operation; a read-only source fails with a clear
# message and loses nothing. Fault injection: REFPOINT_FAULT_INJECT.
. "$(dirname "$0")/lib.sh"
S=$((32 * 1024 * 1024))
g() { echo "${1#Microsoft:}"; }
mkdisk a $S; mkdisk b $S
rand_writes a $S 10; rand_writes b $S 10
rp vm add vm --disk a.qcow2 --disk b.qcow2 >/dev/null
ours() { for d in a b; do qemu-img info --output=json $d.qcow2 | grep -o '"name": "refpoint-[^"]*"' | grep -v 'refpoint-rp-' | sed 's/.*: "//; s/"$//'; done | sort | tr '\n' ' '; }
R1=$(rp rp create vm); snap_mirror a 1; snap_mirror b 1; rand_writes a $S 5
R2=$(rp rp create vm); snap_mirror a 2; snap_mirror b 2; rand_writes b $S 5
R3=$(rp rp create vm); snap_mirror a 3; snap_mirror b 3
before=$(ours)

# killed before the commit: nothing changed
set +e; REFPOINT_FAULT_INJECT=destroy-before-commit rp rp destroy "$R2" >/dev/null 2>&1; rc=$?; set -e
[ $rc -ne 0 ] || fail "the fault point did not fire"
rpj rp show "$R2" | grep -q '"HasAssociatedData": true' || fail "F2: the RP lost its data: $(rpj rp show "$R2")"
rp export "$R2" "$T/x" >/dev/null
for f in "$T/x/$(g "$R2")"/disk-*.qcow2; do to_raw "$f" x.raw; cmp -s x.raw a.2.raw || cmp x.raw b.2.raw || fail "R2 after a killed destroy"; done
rp rp destroy "$R2" >/dev/null || fail "F3: the first retry of the destroy failed"
ok "destroy killed before its commit: the RP as before (data, export exact), the retry works at once"

# killed after the commit, between the two disks' snapshot deletions
set +e; REFPOINT_FAULT_INJECT=destroy-after-first-snapshot rp rp destroy "$R3" >/dev/null 2>&1; rc=$?; set -e
[ $rc -ne 0 ] || fail "the fault point did not fire"
rpj rp list vm | grep -q "$R3" && fail "R3 is still listed after its commit"
qemu-img snapshot -l b.qcow2 | grep -q "refpoint-rp-$(g "$R3")" || fail "premise: b should still hold R3's snapshot"
"$BUILD/refpoint" --state-dir "$STATE" rp create vm >"$T/out" 2>"$T/warn"; R4=$(cat "$T/out")
grep -q "removing snapshot refpoint-rp-$(g "$R3")" "$T/warn" || fail "the leftover snapshot was not reported: $(cat "$T/warn")"
qemu-img snapshot -l b.qcow2 | grep -q "refpoint-rp-$(g "$R3")" && fail "the leftover snapshot is still there"
snap_mirror a 4; snap_mirror b 4
rp export "$R4" "$T/bk" >/dev/null
ok "destroy killed after its commit: the next operation removes the leftover snapshot"

# F5: killed right after the commit of the newest RP's destroy: its epoch
# bitmap (enabled) would record for ever
wr a 4096 65536
set +e; REFPOINT_FAULT_INJECT=destroy-after-commit rp rp destroy "$R4" >/dev/null 2>&1; set -e
rpj rp list vm | grep -q "$R4" && fail "R4 is still listed"
R5=$(rp rp create vm 2>/dev/null); snap_mirror a 5; snap_mirror b 5
want=$( (for r in $(rp rp list vm | awk '{print $1}'); do rpj rp show "$r" | grep -A3 ResilientChangeTrackingIdentifiers | grep -o 'refpoint-[^"]*'; done) | sort -u | tr '\n' ' ')
[ "$(ours)" = "$want" ] || fail "F5: bitmaps on the disks '$(ours)', RPs hold '$want'"
rp export "$R5" "$T/inc" >/dev/null 2>&1 || true
rp export "$R1" "$T/c" >/dev/null
rp export "$R5" "$T/c" --base "$R1" >/dev/null
for f in "$T/c/$(g "$R5")"/disk-*.qcow2; do to_raw "$f" x.raw; cmp -s x.raw a.5.raw || cmp x.raw b.5.raw || fail "the chain R1 -> R5 after the destroys"; done
ok "destroy killed after its commit (F5): no bitmap leaks, the chain over the destroyed RPs exact"

# F2: a read-only source: a clear error, the RP keeps its data
mkdir -p "$T/ro"
if mount -t tmpfs -o size=200m tmpfs "$T/ro" 2>/dev/null; then
  mkdisk "$T/ro/c" $S; rand_writes "$T/ro/c" $S 5
  rp vm add rovm --disk "$T/ro/c.qcow2" >/dev/null
  C1=$(rp rp create rovm); C2=$(rp rp create rovm)
  mount -o remount,ro "$T/ro"
  expect_fail 32768 "read-only\|Read-only" rp rp destroy "$C1"
  mount -o remount,rw "$T/ro"
  rpj rp show "$C1" | grep -q '"HasAssociatedData": true' || fail "F2: the failed destroy cost the RP its data"
  rp export "$C1" "$T/ro-bk" >/dev/null
  rp rp destroy "$C1" >/dev/null
  ok "destroy on a read-only source: a clear error, the RP keeps its data; it works once writable"
else
  echo "note: cannot mount tmpfs; read-only case not run"
fi
