# Capture by fleecing (vm add --capture fleecing; real qemu-system-x86_64):
# reference points of a running VM whose data is a view inside QEMU
# (blockdev-backup sync=none into a scratch image). Checks: exports (full,
# incremental, concurrent with the guest writer) equal the disk at their
# instant; no internal snapshot is made; one view at a time (a second
# create is refused while one holds data); remove-data ends the backup job
# and removes the scratch file; when QEMU is killed the views'
# RPs lose their data with the reason (never served), their scratch files go,
# and the chain continues; after a clean quit the RPs have no data either but
# stay valid bases, and an offline RP (a snapshot) exports incrementally on them.
. "$(dirname "$0")/lib.sh"
need_qemu_system
S=$((48 * 1024 * 1024))
mkdisk a $S; rand_writes a $S 8
cp a.raw a.base.raw
g() { echo "${1#Microsoft:}"; }
# (through refpoint's QMP socket: the writer holds the test's; refpoint is idle then)
jobs_in_qemu() { "$GIO" qmp "$T/v.qmp" '{"execute":"query-block-jobs"}' | grep -o '"device": *"rpf-[^"]*"' | wc -l; }
vm_start v a.qcow2
rp vm add vm1 --disk a.qcow2 --qmp "$T/v.qmp" --capture fleecing >/dev/null
[ "$(jfield "$(rpj vm show vm1)" Capture)" = fleecing ] || fail "capture not recorded"

gwr v vd0 0 65536 0x41
printf '\x41%.0s' $(seq 65536) | dd of=a.base.raw conv=notrunc status=none
[ "$(jobs_in_qemu)" = 0 ] || fail "jobs before any RP"
writer_start v vd0 $S $RANDOM "$T/w.log"
declare -a RP T0 T1
capture() { # N: RP N while the guest writes, captured by fleecing
  T0[$1]=$(now_ns)
  RP[$1]=$(REFPOINT_TRACE=1 "$BUILD/refpoint" --state-dir "$STATE" --quiet rp create vm1 2>"$T/trace") || fail "create $1: $(cat "$T/trace")"
  T1[$1]=$(now_ns)
  grep -q 'transaction.*(fleecing)' "$T/trace" || fail "RP$1 was not captured by fleecing"
}
capture 1
sleep 0.3
[ "$(jobs_in_qemu)" = 1 ] || fail "expected 1 fleecing job, QEMU has $(jobs_in_qemu)"
"$GIO" qmp "$T/v.qmp" '{"execute":"human-monitor-command","arguments":{"command-line":"info snapshots"}}' 2>/dev/null | grep -q refpoint-rp- &&
  fail "fleecing made an internal snapshot"
ls "$STATE"/fleece/*.qcow2 >/dev/null 2>&1 || fail "no scratch images"
# one view at a time: a second RP while RP1 holds its view is refused, nothing made
expect_fail 5 "still holds a fleecing view" rp rp create vm1
[ "$(rpj rp list vm1 | grep -c '"InstanceID"')" = 1 ] || fail "the refused create left an RP"
rp export "${RP[1]}" "$T/bk" >/dev/null || fail "full export of a fleecing RP"
rp rp remove-data "${RP[1]}" || fail "remove-data"
[ "$(jobs_in_qemu)" = 0 ] || fail "job left after remove-data: $(jobs_in_qemu)"
[ -z "$(ls "$STATE"/fleece/)" ] || fail "scratch files left: $(ls "$STATE"/fleece)"
expect_fail 32775 "no associated data" rp export "${RP[1]}" "$T/x"
sleep 0.3
capture 2
sleep 0.3
rp export "${RP[2]}" "$T/bk" --base "${RP[1]}" >/dev/null || fail "incremental export of a fleecing RP"
rp export "${RP[2]}" "$T/full2" >/dev/null || fail "full export RP2"
writer_stop v
for r in 1 2; do
  to_raw "$(ls "$T/bk/$(g "${RP[$r]}")"/disk-*.qcow2)" "$T/r.raw"
  "$GIO" match "$T/r.raw" a.base.raw "$T/w.log" "${T0[$r]}" "${T1[$r]}" >/dev/null || fail "export of RP$r is no instant of the disk"
done
to_raw "$(ls "$T/full2/$(g "${RP[2]}")"/disk-*.qcow2)" "$T/f.raw"
cmp -s "$T/f.raw" "$T/r.raw" || fail "full and incremental RP2 differ"
ok "fleecing RPs, one view at a time: full and incremental exports exact at their instants while the guest writes; remove-data ends the view"

# QEMU killed: the view is gone, the RP says so, its data is never served
vm_kill v
rpj rp show "${RP[2]}" >"$T/show"
grep -q '"HasAssociatedData": false' "$T/show" || fail "RP2 still claims data after QEMU died: $(cat "$T/show")"
grep -q 'ended with the QEMU process' "$T/show" || fail "no reason given: $(cat "$T/show")"
expect_fail 32775 "no associated data" rp export "${RP[2]}" "$T/y"
vm_start v a.qcow2
RP4=$(rp rp create vm1)
[ "$(ls "$STATE"/fleece/ | grep -c "$(g "${RP[2]}")")" = 0 ] || fail "RP2's scratch file was not removed"
rp export "$RP4" "$T/bk4" >/dev/null || fail "full export after the crash"
ok "QEMU killed: data marked lost with the reason, scratch removed, a new full export works"

# clean quit: views end, tracking stays; an offline RP continues the chain
gwr v vd0 1048576 65536 0x66
vm_quit v
rpj rp show "$RP4" | grep -q '"HasAssociatedData": false' || fail "RP4 claims data after the quit"
rpj rp show "$RP4" | grep -q '"ChangeTrackingValid": true' || fail "RP4 lost tracking at a clean quit"
qemu-img convert -O raw a.qcow2 a.cur.raw
RP5=$(rp rp create vm1)
rp export "$RP5" "$T/bk4" --base "$RP4" >/dev/null || fail "offline incremental on a fleecing RP"
same a.cur.raw "$(ls "$T/bk4/$(g "$RP5")"/disk-*.qcow2)"   # through its backing file, RP4's full export
grep -q '"Kind": "incremental"' "$T/bk4/$(g "$RP5")/manifest.json" || fail "not incremental"
ok "clean quit: fleecing RPs lose their data, stay bases; offline RP incremental on them is exact"
