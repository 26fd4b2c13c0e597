# Running VM (real qemu-system-x86_64, TCG, no guest OS): reference points
# taken and exported while a busy guest writer keeps writing through the
# virtio-blk device, on two disks, in writeback and writethrough modes.
# Every export is restored and must equal the disks' content at one instant
# between the start and the end of its CreateReferencePoint: the writer logs
# every write with its times, and `guestio match` finds the prefix of the
# writes that the export holds (a torn or leaky capture matches none).
# Also: runtime state, live Destroy / RemoveAssociatedData, the VM quit and
# the chain continued offline, then started again and continued live.
. "$(dirname "$0")/lib.sh"
need_qemu_system
S0=$((64 * 1024 * 1024)) S1=$((32 * 1024 * 1024))
mkdisk a $S0; mkdisk b $S1
rand_writes a $S0 10; rand_writes b $S1 5     # data before the VM starts
cp a.raw a.base.raw; cp b.raw b.base.raw
guid() { echo "${1#Microsoft:}"; }

# check EXPORT-DIR DISK-SIZE BASE.raw LOG T0 T1: restore the disk of that size
# from the export (with its backing chain) and match it against the writer's log
check() {
  local f
  f=$(by_size "$2" "$1"/disk-*.qcow2) || fail "no disk of size $2 in $1"
  qemu-img check -q "$f" || fail "qemu-img check $f"
  to_raw "$f" "$T/restored.raw"
  "$GIO" match "$T/restored.raw" "$3" "$4" "$5" "$6" >"$T/match" || fail "export $f is no instant of the disk between $5 and $6"
}

for mode in writeback writethrough; do
  rm -rf "$STATE" "$T/bk"
  cp a.base.raw a.raw; cp b.base.raw b.raw
  qemu-img create -q -f qcow2 a.qcow2 $S0; qemu-img create -q -f qcow2 b.qcow2 $S1
  qemu-img convert -n -f raw -O qcow2 a.raw a.qcow2; qemu-img convert -n -f raw -O qcow2 b.raw b.qcow2
  VM_CACHE=$mode vm_start v a.qcow2 b.qcow2
  rp vm add vm1 --disk a.qcow2 --disk b.qcow2 --qmp "$T/v.qmp" >/dev/null
  [ "$(jfield "$(rpj vm show vm1)" RuntimeState)" = running ] || fail "runtime state not running: $(rpj vm show vm1)"

  gwr v vd1 4096 65536 0x5a
  writer_start v vd0 $S0 $RANDOM "$T/a.log"
  sleep 0.3
  # disk b: one guest write (the writer holds the test's QMP socket, so it
  # goes in before the writer starts)
  declare -a RPS T0S T1S
  for r in 1 2 3; do
    T0S[$r]=$(now_ns)
    RPS[$r]=$(rp rp create vm1) || fail "live rp create $r"
    T1S[$r]=$(now_ns)
    sleep 0.4
  done
  ok "$mode: 3 reference points while the guest writes"
  # exports while the guest keeps writing
  rp export "${RPS[1]}" "$T/bk" >/dev/null
  rp export "${RPS[2]}" "$T/bk" --base "${RPS[1]}" >/dev/null
  rp export "${RPS[3]}" "$T/bk" --base "${RPS[2]}" >/dev/null
  rp export "${RPS[3]}" "$T/full3" >/dev/null
  writer_stop v
  ok "$mode: exports written while the guest writes ($(wc -l <"$T/a.log") guest writes in all)"
  prev=-1
  for r in 1 2 3; do
    check "$T/bk/$(guid "${RPS[$r]}")" $S0 a.base.raw "$T/a.log" "${T0S[$r]}" "${T1S[$r]}"
    k=$(awk '{print $2}' "$T/match")
    [ "$k" -gt "$prev" ] || fail "RP$r holds $k writes, not more than RP$((r - 1)) ($prev)"
    prev=$k
  done
  # the matcher discriminates: RP3's content is no instant of RP1's window
  if "$GIO" match "$T/restored.raw" a.base.raw "$T/a.log" "${T0S[1]}" "${T1S[1]}" >/dev/null 2>&1; then
    fail "RP3's export matched RP1's window: the check proves nothing"
  fi
  check "$T/full3/$(guid "${RPS[3]}")" $S0 a.base.raw "$T/a.log" "${T0S[3]}" "${T1S[3]}"
  [ "$(awk '{print $2}' "$T/match")" = "$prev" ] || fail "full and incremental export of RP3 differ"
  # disk b: the one guest write came before RP1
  gb=$(by_size $S1 "$T/bk/$(guid "${RPS[3]}")"/disk-*.qcow2)
  to_raw "$gb" "$T/b3.raw"
  printf '\x5a%.0s' $(seq 65536) | dd of=b.raw bs=4096 seek=1 conv=notrunc status=none
  cmp -s "$T/b3.raw" b.raw || fail "disk b at RP3 differs from its mirror"
  rp verify "$T/bk/$(guid "${RPS[3]}")" >/dev/null || fail "verify"
  ok "$mode: full and incremental exports equal the disks at their instants (prefixes increase)"

  # the VM paused: state shown, operations still work
  "$GIO" qmp "$T/v.w" '{"execute":"stop"}' >/dev/null
  [ "$(jfield "$(rpj vm show vm1)" RuntimeState)" = paused ] || fail "not paused"
  "$GIO" qmp "$T/v.w" '{"execute":"cont"}' >/dev/null

  # live destroy of the middle RP, remove-data of the newest, while writing
  writer_start v vd0 $S0 $RANDOM "$T/a2.log"
  rp rp destroy "${RPS[2]}" || fail "live destroy"
  rp rp remove-data "${RPS[3]}" || fail "live remove-data"
  T0=$(now_ns); RP4=$(rp rp create vm1); T1=$(now_ns)
  rp export "$RP4" "$T/bk" --base "${RPS[1]}" >/dev/null || fail "incremental RP4 on RP1 after the destroy of RP2"
  writer_stop v
  # the second writer's writes follow all of the first one's
  cat "$T/a.log" "$T/a2.log" >"$T/a.all.log"
  check "$T/bk/$(guid "$RP4")" $S0 a.base.raw "$T/a.all.log" "$T0" "$T1"
  rpj rp show "${RPS[3]}" | grep -q '"HasAssociatedData": false' || fail "remove-data not recorded"
  "$GIO" qmp "$T/v.w" '{"execute":"human-monitor-command","arguments":{"command-line":"info snapshots"}}' >"$T/snaps"
  grep -q "$(guid "${RPS[3]}")" "$T/snaps" && fail "snapshot of RP3 still in the image"
  grep -q "$(guid "${RPS[2]}")" "$T/snaps" && fail "snapshot of RP2 still in the image"
  expect_fail 32775 "no associated data" rp export "${RPS[3]}" "$T/x"
  ok "$mode: live destroy and remove-data; the chain RP1 -> RP4 stays exact"

  # clean quit: the bitmaps reach the file; the chain goes on offline
  vm_quit v
  [ "$(jfield "$(rpj vm show vm1)" RuntimeState)" = "QEMU not running" ] || fail "state after quit: $(rpj vm show vm1)"
  qemu-img convert -O raw a.qcow2 a.raw    # the mirror is the disk now (checked above)
  wr a 12345 70000
  RP5=$(rp rp create vm1)
  rp export "$RP5" "$T/bk" --base "$RP4" >/dev/null || fail "offline incremental after the quit"
  f=$(by_size $S0 "$T/bk/$(guid "$RP5")"/disk-*.qcow2); same a.raw "$f"
  # and back to running: tracking continued across the restart
  VM_CACHE=$mode vm_start v a.qcow2 b.qcow2
  gwr v vd0 1048576 131072 0x77
  printf '\x77%.0s' $(seq 131072) | dd of=a.raw bs=65536 seek=16 conv=notrunc status=none
  RP6=$(rp rp create vm1)
  rp export "$RP6" "$T/bk" --base "$RP5" >/dev/null || fail "live incremental after a restart"
  f=$(by_size $S0 "$T/bk/$(guid "$RP6")"/disk-*.qcow2); same a.raw "$f"
  grep -q '"Kind": "incremental"' "$T/bk/$(guid "$RP6")/manifest.json" || fail "not incremental"
  vm_kill v
  ok "$mode: quit -> offline RP -> started again -> live incremental, all exact"
done
