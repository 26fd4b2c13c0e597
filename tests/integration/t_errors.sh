# Bad input gets a clear error, the right return code, and changes nothing:
# unknown ids, bases from another VM or not older, relative and unusable
# export paths, an export folder that is already complete, missing, moved
# and resized disks, a second operation while one runs, usage errors.
. "$(dirname "$0")/lib.sh"
S=$((32 * 1024 * 1024))
mkdisk a $S; mkdisk b $S; mkdisk c $S
rand_writes a $S 10; rand_writes c $S 5
rp vm add vm1 --disk a.qcow2 --disk b.qcow2 >/dev/null
rp vm add vm2 --disk c.qcow2 >/dev/null
g() { echo "${1#Microsoft:}"; }
R1=$(rp rp create vm1); rand_writes a $S 5
R2=$(rp rp create vm1)
Q1=$(rp rp create vm2)
state_fp() { # what must not change: store content and image metadata
  rpj rp list | grep -v '"CreationTime"'; rpj vm list
  for d in a b c; do qemu-img info --output=json $d.qcow2 | grep -E '"name"|"flags"|in-use|auto' ; done
}
state_fp >"$T/before"

# usage
"$BUILD/refpoint" 2>/dev/null && fail "no command accepted"; [ $? -eq 2 ] || true
set +e; "$BUILD/refpoint" --state-dir "$STATE" bogus >/dev/null 2>&1; rc=$?; set -e
[ $rc -eq 2 ] || fail "unknown command: exit $rc, want 2"
set +e; "$BUILD/refpoint" --state-dir "$STATE" export onlyone >/dev/null 2>&1; rc=$?; set -e
[ $rc -eq 2 ] || fail "missing argument: exit $rc, want 2"
set +e; "$BUILD/refpoint" --state-dir "$STATE" rp create vm1 --consistency weird >/dev/null 2>&1; rc=$?; set -e
[ $rc -eq 2 ] || fail "bad --consistency: exit $rc, want 2"
"$BUILD/refpoint" --help | grep -q "export RP EXPORT_DIR" || fail "--help"
ok "usage errors exit 2"

# unknown ids
expect_fail 32773 "not found" rp export "Microsoft:00000000-0000-4000-8000-000000000000" "$T/x"
expect_fail 32773 "not found" rp export "garbage" "$T/x"
expect_fail 32773 "not found" rp rp destroy "Microsoft:00000000-0000-4000-8000-000000000000"
expect_fail 4 "not found" rp rp create no-such-vm
expect_fail 32773 "not a disk of" rp export "$R2" "$T/x" --disk "00000000-0000-4000-8000-000000000000"
expect_fail 32773 "base reference point.*not found" rp export "$R2" "$T/x" --base "Microsoft:00000000-0000-4000-8000-000000000001"
ok "unknown VM, RP and disk ids"

# JSON error shape
out=$(rpj export "garbage" "$T/x" 2>/dev/null || true)
echo "$out" | grep -q '"ReturnValue": 32773' || fail "json error: $out"
echo "$out" | grep -q '"Error": ".*not found' || fail "json error text: $out"
out=$(rpj rp create no-such-vm 2>/dev/null || true)
echo "$out" | grep -q '"ReturnValue": 4' || fail "CreateReferencePoint uses family A codes: $out"

# bases
expect_fail 32773 "another virtual system" rp export "$R2" "$T/x" --base "$Q1"
expect_fail 32773 "not older" rp export "$R1" "$T/x" --base "$R2"
expect_fail 32773 "not older" rp export "$R1" "$T/x" --base "$R1"
ok "bases from another VM, or not older, are refused"

# export paths
expect_fail 32773 "fully qualified" rp export "$R1" "relative/dir"
touch "$T/afile"
expect_fail 32773 "" rp export "$R1" "$T/afile/sub"
if mkdir -p "$T/ro" && mount -t tmpfs -o ro,size=1m tmpfs "$T/ro" 2>/dev/null; then
  expect_fail 32769 "denied\|read-only" rp export "$R1" "$T/ro/backup"
  ok "read-only export directory: 32769"
else
  echo "note: cannot mount tmpfs here; read-only export directory case not run"
fi
rp export "$R1" "$T/bk" >/dev/null
expect_fail 32773 "already holds a complete export" rp export "$R1" "$T/bk"
mkdir "$T/bk2"; mkdir "$T/bk2/$(g "$R1")"
expect_fail 32773 "not a complete export" rp export "$R1" "$T/bk2"
ok "export folder checks"
[ -z "$(ls -A "$T/x" 2>/dev/null)" ] || fail "a refused export left files in $T/x"

state_fp >"$T/after"
diff "$T/before" "$T/after" || fail "refused operations changed state"
ok "refused operations changed nothing"

# a second mutating operation on the same VM while one runs: 32774
GUID=$(rpj vm show vm1 | grep -o '"Name": "[^"]*"' | cut -d'"' -f4)
flock "$STATE/locks/$GUID.lock" sleep 3 &
sleep 0.3
expect_fail 32774 "in use" rp rp create vm1
expect_fail 32774 "in use" rp rp destroy "$R1"
expect_fail 32774 "in use" rp rp remove-data "$R1"
expect_fail 32774 "in use" rp export "$R2" "$T/y"
rp rp create vm2 >/dev/null || fail "another VM is not blocked"
wait
ok "32774 while another operation holds the VM"

# a disk that a writer has open: in use
qemu-nbd -f qcow2 --socket="$T/w.sock" --fork --pid-file="$T/w.pid" a.qcow2
expect_fail 32774 "lock" rp rp create vm1
kill "$(cat "$T/w.pid")"; sleep 0.3
ok "disk opened by a writer: 32774"

# missing / moved disk
mv b.qcow2 b-moved.qcow2
expect_fail 5 "missing or was changed\|No such file" rp rp create vm1
expect_fail 32775 "missing or was changed\|No such file" rp export "$R2" "$T/z"
[ ! -e "$T/z/$(g "$R2")" ] || fail "export with a missing disk left a folder"
mv b-moved.qcow2 b.qcow2
rp rp create vm1 >/dev/null || fail "create after the disk came back"
ok "missing or moved disk: 32775, and all is well once it is back"

# resized disk: tracking of that disk is lost for good, data still exportable? no: refuse
qemu-img resize -q b.qcow2 $((S + 1048576))
expect_fail 5 "resized" rp rp create vm1
expect_fail 32775 "resized" rp export "$R2" "$T/z"
rpj rp show "$R2" | grep -q '"ChangeTrackingValid": false' || fail "resize did not mark tracking lost"
ok "resized disk: 32775 and change tracking marked lost"
