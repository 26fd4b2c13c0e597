# Crashes and lost change tracking. Uses REFPOINT_FAULT_INJECT (fault
# injection: the process SIGKILLs itself at a named point) and real kill -9.
# After each crash: no half-made reference point, no export folder that
# passes for complete, no qemu-nbd left behind, and the next operations work
# and stay bit-exact.
. "$(dirname "$0")/lib.sh"
S=$((64 * 1024 * 1024))
mkdisk a $S; mkdisk b $S
rand_writes a $S 20; rand_writes b $S 20
rp vm add vm --disk a.qcow2 --disk b.qcow2 >/dev/null
g() { echo "${1#Microsoft:}"; }
meta() { for d in a b; do qemu-img snapshot -l $d.qcow2 | grep -o 'refpoint-rp-[0-9a-f-]*' || true; qemu-img info --output=json $d.qcow2 | grep -A1 -E '"flags"' | tr -d ' \n' || true; qemu-img info $d.qcow2 | grep -o 'name: refpoint-.*' || true; done; }
R1=$(rp rp create vm); snap_mirror a 1; snap_mirror b 1
rand_writes a $S 10; rand_writes b $S 10
meta >"$T/meta.before"

# 1. CreateReferencePoint killed after the first of two disks
set +e; REFPOINT_FAULT_INJECT=create-after-first-disk rp rp create vm >/dev/null 2>&1; rc=$?; set -e
[ $rc -ne 0 ] || fail "fault injection did not fire"
qemu-img snapshot -l a.qcow2 | grep -c refpoint-rp- | grep -q 2 || fail "the crash should have left a half-made snapshot on a (test premise)"
[ "$(rp rp list vm | wc -l)" = 1 ] || fail "the half-made RP is listed"
R2=$(rp rp create vm)   # reconciles: rolls back the half-made one first
meta >"$T/meta.after"
[ "$(qemu-img snapshot -l a.qcow2 | grep -c refpoint-rp-)" = 2 ] || fail "rollback left snapshots: $(qemu-img snapshot -l a.qcow2)"
[ "$(qemu-img snapshot -l b.qcow2 | grep -c refpoint-rp-)" = 2 ] || fail "b snapshots"
[ "$(qemu-img info a.qcow2 | grep -c 'name: refpoint-')" = 2 ] || fail "rollback left bitmaps on a"
snap_mirror a 2; snap_mirror b 2
rp export "$R1" "$T/bk" >/dev/null
rp export "$R2" "$T/bk" --base "$R1" >/dev/null
for f in "$T/bk/$(g "$R2")"/disk-*.qcow2; do
  qemu-img convert -O raw "$f" x.raw
  cmp -s x.raw a.2.raw || cmp x.raw b.2.raw || fail "chain after create crash"
done
ok "create killed half-way: rolled back, chain exact"

# 2. ExportReferencePoint killed between disks, and just before the rename
for point in export-after-disk export-before-rename; do
  set +e; REFPOINT_FAULT_INJECT=$point rp export "$R2" "$T/k" >/dev/null 2>&1; rc=$?; set -e
  [ $rc -ne 0 ] || fail "$point did not fire"
  [ ! -e "$T/k/$(g "$R2")" ] || fail "$point: an export folder with the final name exists"
  ls -A "$T/k" | grep -q '^\.' || fail "$point: expected the dot-named partial folder (test premise)"
  sleep 0.3
  pgrep -f "qemu-nbd.*$T/[ab].qcow2" >/dev/null && fail "$point: qemu-nbd left running"
done
rp export "$R2" "$T/k" >/dev/null
[ -z "$(ls -A "$T/k" | grep '^\.' || true)" ] || fail "stale partial folders not removed"
rp verify "$T/k/$(g "$R2")" >/dev/null
ok "export killed: no complete-looking folder, next export works and cleans up"

# 3. a real kill -9 of a running export of more data
mkdisk big $((512 * 1024 * 1024))
qemu-io -f qcow2 -c "write -q -P 0x5a 0 300M" big.qcow2 >/dev/null
rp vm add bigvm --disk big.qcow2 >/dev/null
RB=$(rp rp create bigvm)
"$BUILD/refpoint" --state-dir "$STATE" --quiet export "$RB" "$T/kk" >/dev/null 2>&1 & pid=$!
sleep 0.4; kill -9 $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
sleep 0.3
if [ -e "$T/kk/$(g "$RB")" ]; then rp verify "$T/kk/$(g "$RB")" >/dev/null || fail "a complete-looking export does not verify"; fi
pgrep -f "qemu-nbd.*big.qcow2" >/dev/null && fail "qemu-nbd left running after kill -9"
rm -rf "$T/kk/$(g "$RB")"
rp export "$RB" "$T/kk" >/dev/null
rp verify "$T/kk/$(g "$RB")" >/dev/null
ok "kill -9 of a running export: the next export works"

# 4. RemoveAssociatedData killed after its commit: the snapshot is cleaned later
set +e; REFPOINT_FAULT_INJECT=remove-data-after-commit rp rp remove-data "$R1" >/dev/null 2>&1; set -e
rpj rp show "$R1" | grep -q '"HasAssociatedData": false' || fail "remove-data commit lost"
expect_fail 32775 "no associated data" rp export "$R1" "$T/r"
R3=$(rp rp create vm)   # reconciliation removes the leftover snapshot
qemu-img snapshot -l a.qcow2 | grep -q "refpoint-rp-$(g "$R1")" && fail "leftover snapshot of R1 not removed"
ok "remove-data killed: data never served, snapshot removed by the next operation"

# 5. change tracking lost: a writer dies uncleanly with the disk open
qemu-nbd -f qcow2 --socket="$T/w.sock" --fork --pid-file="$T/w.pid" a.qcow2
sleep 0.2; kill -9 "$(cat "$T/w.pid")"; sleep 0.3
qemu-img info a.qcow2 | grep -q in-use || fail "premise: bitmaps should be in-use now"
expect_fail 32775 "full export is needed" rp export "$R3" "$T/lost" --base "$R2"
rpj rp show "$R2" | grep -q '"ChangeTrackingValid": false' || fail "R2 not marked"
rpj rp show "$R2" | grep -q 'did not exit cleanly' || fail "reason not given"
rp export "$R3" "$T/lost" >/dev/null      # a full export still works
rand_writes a $S 8; rand_writes b $S 8
R4=$(rp rp create vm)
expect_fail 32775 "full export is needed" rp export "$R4" "$T/lost" --base "$R3"
qemu-img info a.qcow2 | grep -q in-use && fail "in-use bitmaps were not cleared"
rp export "$R4" "$T/lost" >/dev/null      # the new chain starts with a full export
rand_writes a $S 8; rand_writes b $S 8
R5=$(rp rp create vm); snap_mirror a 5; snap_mirror b 5
rand_writes a $S 3
rp export "$R5" "$T/lost" --base "$R4" >/dev/null
for f in "$T/lost/$(g "$R5")"/disk-*.qcow2; do
  qemu-img convert -O raw "$f" x.raw
  cmp -s x.raw a.5.raw || cmp x.raw b.5.raw || fail "new chain after tracking loss"
done
ok "lost tracking: incremental refused with 'full export is needed', new chain exact"

# 6. ENOSPC during an export
mkdir -p "$T/small"
if mount -t tmpfs -o size=3m tmpfs "$T/small" 2>/dev/null; then
  expect_fail 32768 "No space" rp export "$R5" "$T/small/bk"
  [ -z "$(ls -A "$T/small/bk" 2>/dev/null)" ] || fail "ENOSPC left files: $(ls -A "$T/small/bk")"
  ok "ENOSPC: clear error, nothing left"
else
  echo "note: cannot mount tmpfs; ENOSPC case not run"
fi
