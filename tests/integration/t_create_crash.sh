# CreateReferencePoint of a shut-off VM killed between its image steps
# (finding F1 of the crash campaign): at every instant some enabled bitmap
# records the writes, so a write that lands after the kill and before the
# next operation is in the next incremental. Also: a state left by an older
# version ("previous epoch disabled, no new bitmap") is reported as lost
# tracking, never silently re-enabled; and a qemu-img child dies with a
# killed refpoint (PR_SET_PDEATHSIG).
# Fault injection: REFPOINT_FAULT_INJECT makes refpoint SIGKILL itself at a
# named point (deterministic, no timing race).
. "$(dirname "$0")/lib.sh"
S=$((64 * 1024 * 1024))
g() { echo "${1#Microsoft:}"; }
mkdisk a $S
rand_writes a $S 12
rp vm add vm --disk a.qcow2 >/dev/null
RP=$(rp rp create vm); snap_mirror a 0
rp export "$RP" "$T/bk" >/dev/null
n=0
ours() { qemu-img info --output=json a.qcow2 | grep -o '"name": "refpoint-[^"]*"' | grep -v rp- | sed 's/.*: "//; s/"$//' | sort | tr '\n' ' '; }
rct() { rpj rp show "$1" | grep -A2 ResilientChangeTrackingIdentifiers | grep -o 'refpoint-[^"]*'; }

for point in create-after-bitmap-add create-between-bitmaps; do
  n=$((n + 1))
  set +e; REFPOINT_FAULT_INJECT=$point rp rp create vm >/dev/null 2>&1; rc=$?; set -e
  [ $rc -ne 0 ] || fail "$point: the fault point did not fire"
  # the write a VM started by its manager would make before refpoint runs again
  wr a $((20 * 1024 * 1024 + n * 4096)) 65536
  wr a $((40 * 1024 * 1024 + n * 512)) 700
  NEW=$(rp rp create vm); snap_mirror a $n   # its reconciliation rolls the killed one back
  [ "$(rp rp list vm | wc -l)" = $((n + 1)) ] || fail "$point: half-made RP listed: $(rp rp list vm)"
  rpj rp show "$RP" | grep -q '"ChangeTrackingValid": true' || fail "$point: tracking reported lost, but nothing was lost"
  rp export "$NEW" "$T/bk" --base "$RP" >/dev/null
  f=$(ls "$T/bk/$(g "$NEW")"/disk-*.qcow2)
  to_raw "$f" x.raw
  cmp x.raw a.$n.raw || fail "$point: the incremental after the kill misses writes (F1)"
  # no bitmap left behind: only the open epoch's and those of listed RPs
  want=$( (for r in $(rp rp list vm | awk '{print $1}'); do rct "$r"; done) | sort -u | tr '\n' ' ')
  [ "$(ours)" = "$want" ] || fail "$point: bitmaps on the disk '$(ours)', RPs hold '$want'"
  RP=$NEW
  ok "killed at $point: rolled back, the writes after the kill are in the next incremental"
done

# the state an older refpoint left when killed between its disable and add:
# previous epoch disabled, no new bitmap. Nothing recorded the writes after
# it: the rollback must call that lost tracking.
set +e; REFPOINT_FAULT_INJECT=create-between-bitmaps rp rp create vm >/dev/null 2>&1; set -e
cur=$(rct "$RP")
for b in $(ours); do

  [ "$b" = "$cur" ] || qemu-img bitmap --remove a.qcow2 "$b"
done
qemu-img bitmap --disable a.qcow2 "$cur"
wr a $((30 * 1024 * 1024)) 65536
"$BUILD/refpoint" --state-dir "$STATE" rp create vm >"$T/out" 2>"$T/warn"; snap_mirror a 9
R3=$(rp rp list vm | tail -n1 | awk '{print $1}')
grep -q "tracked by nothing" "$T/warn" || fail "the rollback did not warn: $(cat "$T/warn")"
rpj rp show "$RP" | grep -q '"ChangeTrackingValid": false' || fail "lost tracking not recorded"
expect_fail 32775 "full export is needed" rp export "$R3" "$T/bk" --base "$RP"
rp export "$R3" "$T/full" >/dev/null
to_raw "$(ls "$T/full/$(g "$R3")"/disk-*.qcow2)" x.raw
cmp x.raw a.9.raw || fail "full export after lost tracking"
wr a $((50 * 1024 * 1024)) 65536
R4=$(rp rp create vm); snap_mirror a 10
rp export "$R4" "$T/full" --base "$R3" >/dev/null
to_raw "$(ls "$T/full/$(g "$R4")"/disk-*.qcow2)" x.raw
cmp x.raw a.10.raw || fail "the new chain after lost tracking"
ok "previous epoch disabled with no new bitmap: lost tracking, incremental refused, new chain exact"

# children die with refpoint: a qemu-img that outlived a kill -9 would
# finish its step after the VM lock is gone. FAKE qemu-img for fault
# injection: it only sleeps, under a name of its own.
mkdir -p "$T/slowbin"
printf '#!/bin/bash\nexec -a refpoint-test-slow-%s sleep 60\n' "$$" >"$T/slowbin/qemu-img"
chmod +x "$T/slowbin/qemu-img"
PATH="$T/slowbin:$PATH" "$BUILD/refpoint" --state-dir "$STATE" --quiet rp create vm >/dev/null 2>&1 & pid=$!
for _ in $(seq 100); do pgrep -f "refpoint-test-slow-$$" >/dev/null && break; sleep 0.05; done
pgrep -f "refpoint-test-slow-$$" >/dev/null || fail "premise: the slow qemu-img did not start"
kill -9 $pid; wait $pid 2>/dev/null || true
for _ in $(seq 40); do pgrep -f "refpoint-test-slow-$$" >/dev/null || break; sleep 0.05; done
pgrep -f "refpoint-test-slow-$$" >/dev/null && { pkill -f "refpoint-test-slow-$$"; fail "a qemu-img child outlived the killed refpoint"; }
[ "$(rp rp list vm | wc -l)" = 5 ] || fail "the killed create left an RP: $(rp rp list vm)"
ok "a child of a killed refpoint dies with it"
