# Crashes around a running VM (real qemu-system-x86_64): QEMU killed between
# operations, during an export, during a reference point creation; the tool
# killed right after the capture; the VM restarted by someone else on the
# same disks; the VM started while an offline export reads its disks.
# Afterwards: RPs whose change tracking was lost say so (and an incremental
# on them fails asking for a full export), no half-made RP remains, the
# retained data (internal snapshots, on disk) survives and exports exactly,
# and the chain continues.
. "$(dirname "$0")/lib.sh"
need_qemu_system
S=$((64 * 1024 * 1024))
mkdisk a $S
rand_writes a $S 10
guid() { echo "${1#Microsoft:}"; }
count() { rpj rp list vm1 | grep -c '"InstanceID"' || true; }
# pwr OFF LEN PAT: guest write + the same on the mirror (offsets 64 KiB aligned)
pwr() {
  gwr v vd0 "$1" "$2" "$3"
  head -c "$2" /dev/zero | tr '\0' "\\$(printf '%03o' "$3")" | dd of=a.raw bs=65536 seek=$(($1 / 65536)) conv=notrunc status=none
}
expect_export() { # RP DIR [--base RP]: export and compare with a mirror copy $MIRROR
  local rp=$1 dir=$2; shift 2
  rp export "$rp" "$dir" "$@" >/dev/null || fail "export $rp $*"
  same "$MIRROR" "$(ls "$dir/$(guid "$rp")"/disk-*.qcow2)"
}
wait_stopped() { # PID: until the process is stopped (state T)
  for i in $(seq 400); do
    [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = T ] && return 0
    sleep 0.025
  done
  fail "process $1 did not stop at the fault point"
}

# 0. a running VM whose QMP socket was not registered: a clear error, nothing changed
mkdisk z $((8 * 1024 * 1024))
rp vm add vm0 --disk z.qcow2 >/dev/null
vm_start z z.qcow2
expect_fail 32774 "register its QMP socket" rp rp create vm0
# a wrong QMP socket is not taken for "shut off" while a process holds the disk
expect_fail 32774 "held by a running process" rp vm set vm0 --qmp "$T/nothing.sock"
rp vm set vm0 --qmp "$T/z.qmp" >/dev/null
rp rp create vm0 >/dev/null || fail "create after vm set --qmp"
vm_kill z
ok "unregistered running VM: IN_USE naming the fix; after vm set --qmp it works"

vm_start v a.qcow2
rp vm add vm1 --disk a.qcow2 --qmp "$T/v.qmp" >/dev/null
pwr 0 65536 0x21
RP1=$(rp rp create vm1); cp a.raw a.1.raw
pwr 1048576 131072 0x22
RP2=$(rp rp create vm1); cp a.raw a.2.raw
pwr 2097152 65536 0x23

# 1. QEMU killed between operations, then started again by someone else
vm_kill v
[ "$(jfield "$(rpj vm show vm1)" RuntimeState)" = "QEMU not running" ] || fail "state after the kill"
vm_start v a.qcow2
rpj rp show "$RP2" >"$T/show"
grep -q '"ChangeTrackingValid": false' "$T/show" || fail "RP2's tracking not marked lost after the crash: $(cat "$T/show")"
grep -q '"HasAssociatedData": true' "$T/show" || fail "RP2's snapshot should survive a QEMU crash"
expect_fail 32775 "full export is needed" rp export "$(rp rp create vm1)" "$T/x" --base "$RP2"
MIRROR=a.2.raw expect_export "$RP2" "$T/bk"          # the retained data survived
MIRROR=a.1.raw expect_export "$RP1" "$T/bk1"
# the chain continues: a full export of a new RP, then incrementals
RP3=$(rpj rp list vm1 | grep -o '"InstanceID": "Microsoft:[0-9a-f-]*"' | tail -n1 | cut -d'"' -f4)
cp a.raw a.3.raw
MIRROR=a.3.raw expect_export "$RP3" "$T/bk"
pwr 3145728 65536 0x24
RP4=$(rp rp create vm1); cp a.raw a.4.raw
rp export "$RP4" "$T/bk" --base "$RP3" >/dev/null || fail "incremental after the crash"
same a.4.raw "$(ls "$T/bk/$(guid "$RP4")"/disk-*.qcow2)"
ok "QEMU killed between operations: tracking marked lost, data kept, full export then incrementals"

# 2. QEMU killed while an export reads (the tool stopped after planning)
pwr 4194304 65536 0x25
RP5=$(rp rp create vm1); cp a.raw a.5.raw
REFPOINT_FAULT_INJECT=stop:export-planned "$BUILD/refpoint" --state-dir "$STATE" --quiet export "$RP5" "$T/bk" --base "$RP4" >"$T/e.out" 2>&1 &
EP=$!
wait_stopped $EP
vm_kill v
kill -CONT $EP
wait $EP || fail "export after QEMU died: $(cat "$T/e.out")"
same a.5.raw "$(ls "$T/bk/$(guid "$RP5")"/disk-*.qcow2)"
ok "QEMU killed during an export: the export (read from the on-disk snapshot) completed exactly"

# 3. the VM started by someone else while an offline export reads
pwr() { qemu-io -f qcow2 -c "write -q -P $3 $1 $2" a.qcow2 >/dev/null; head -c "$2" /dev/zero | tr '\0' "\\$(printf '%03o' "$3")" | dd of=a.raw bs=65536 seek=$(($1 / 65536)) conv=notrunc status=none; }
RP6=$(rp rp create vm1); cp a.raw a.6.raw        # offline (QEMU is gone)
REFPOINT_FAULT_INJECT=stop:export-planned "$BUILD/refpoint" --state-dir "$STATE" --quiet export "$RP6" "$T/bk6" >"$T/e.out" 2>&1 &
EP=$!
wait_stopped $EP
vm_start v a.qcow2     # must not be refused: the export reads only the snapshot
pwr() { gwr v vd0 "$1" "$2" "$3"; head -c "$2" /dev/zero | tr '\0' "\\$(printf '%03o' "$3")" | dd of=a.raw bs=65536 seek=$(($1 / 65536)) conv=notrunc status=none; }
pwr 5242880 65536 0x26
kill -CONT $EP
wait $EP || fail "offline export with the VM started meanwhile: $(cat "$T/e.out")"
same a.6.raw "$(ls "$T/bk6/$(guid "$RP6")"/disk-*.qcow2)"
[ "$(jfield "$(rpj vm show vm1)" RuntimeState)" = running ] || fail "not running"
RP7=$(rp rp create vm1); cp a.raw a.7.raw
rp export "$RP7" "$T/bk6" --base "$RP6" >/dev/null || fail "live incremental on the offline RP"
same a.7.raw "$(ls "$T/bk6/$(guid "$RP7")"/disk-*.qcow2)"
ok "VM started during an offline export: the export is exact, tracking went on into the running VM"

# 4. the tool killed right after the capture, before it recorded the RP
n=$(count)
REFPOINT_FAULT_INJECT=create-after-capture rp rp create vm1 2>/dev/null && fail "fault did not fire"
[ "$(count)" = "$n" ] || fail "a half-made RP is listed"
pwr 6291456 65536 0x27
RP8=$(rp rp create vm1) || fail "create after the killed one"
"$GIO" qmp "$T/v.w" '{"execute":"human-monitor-command","arguments":{"command-line":"info snapshots"}}' >"$T/snaps"
[ "$(grep -o 'refpoint-rp-' "$T/snaps" | wc -l)" = "$(count)" ] || fail "snapshots left behind: $(cat "$T/snaps")"
cp a.raw a.8.raw
rp export "$RP8" "$T/bk6" --base "$RP7" >/dev/null || fail "incremental across the rolled-back create"
same a.8.raw "$(ls "$T/bk6/$(guid "$RP8")"/disk-*.qcow2)"
ok "tool killed after the capture: rolled back live (snapshot and bitmap), chain exact"

# 5. QEMU killed during a creation (the tool stopped before its capture)
REFPOINT_FAULT_INJECT=stop:create-frozen "$BUILD/refpoint" --state-dir "$STATE" --quiet rp create vm1 >"$T/c.out" 2>&1 &
CP=$!
wait_stopped $CP
vm_kill v
kill -CONT $CP
wait $CP && fail "create succeeded though QEMU died under it"
grep -q 'QMP' "$T/c.out" || fail "unclear error: $(cat "$T/c.out")"
[ "$(count)" = "$((n + 1))" ] || fail "a half-made RP is listed"
vm_start v a.qcow2
RP9=$(rp rp create vm1) || fail "create after QEMU came back"
[ "$(count)" = "$((n + 2))" ] || fail "count after the repair"
cp a.raw a.9.raw
rpj rp show "$RP8" | grep -q '"ChangeTrackingValid": false' || fail "RP8 tracking should be lost (QEMU was killed)"
expect_fail 32775 "full export is needed" rp export "$RP9" "$T/x" --base "$RP8"
MIRROR=a.9.raw expect_export "$RP9" "$T/bk9"
ok "QEMU killed during a create: clear error, no half-made RP, next full export exact"
