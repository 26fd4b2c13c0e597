# refpointd with a running VM (real qemu-system-x86_64) and the real wbemcli
# on loopback HTTP: Msvm_ComputerSystem.EnabledState follows QEMU (2 running, 32768
# paused, 3 after it quit); CreateReferencePoint with ConsistencyLevel 1 (in
# the embedded ReferencePointSettings) and no agent answering fails as a job with NOT_AVAILABLE; crash-consistent
# CreateReferencePoint and ExportReferencePoint jobs of the running VM,
# the export compared bit for bit with the disk at the RP.
. "$(dirname "$0")/lib.sh"
need_qemu_system
command -v wbemcli >/dev/null || skip "wbemcli (sblim-wbemcli) not installed"
command -v openssl >/dev/null || skip "openssl not installed"
S=$((32 * 1024 * 1024))
mkdisk a $S; rand_writes a $S 8
vm_start v a.qcow2
rp vm add web --disk a.qcow2 --qmp "$T/v.qmp" --guest-agent "$T/nobody.sock" >/dev/null
VM=$(jfield "$(rpj vm show web)" Name)
PORT=$((20000 + RANDOM % 20000))
printf 'w:%s\n' "$(openssl passwd -6 wpass)" >"$T/passwd"
mkdir -p "$T/roots/bk"
REFPOINT_AGENT_TIMEOUT_MS=500 "$BUILD/refpointd" --state-dir "$STATE" --listen "http://127.0.0.1:$PORT" \
  --auth "file:$T/passwd" --export-root "$T/roots" 2>"$T/d.log" &
DPID=$!
trap 'rc=$?; kill $DPID 2>/dev/null || true; wait $DPID 2>/dev/null || true; cleanup $rc' EXIT
for i in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
U=http://w:wpass@127.0.0.1:$PORT/root/virtualization/v2
SVC="$U:Msvm_VirtualSystemReferencePointService.CreationClassName=\"Msvm_VirtualSystemReferencePointService\",Name=\"refpoint\""
CS="$U:Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name=\"$VM\""
state() { wbemcli gi "$CS" | grep -o 'EnabledState=[0-9]*' | cut -d= -f2; }
[ "$(state)" = 2 ] || fail "EnabledState of the running VM: $(wbemcli gi "$CS")"
"$GIO" qmp "$T/v.w" '{"execute":"stop"}' >/dev/null
[ "$(state)" = 32768 ] || fail "EnabledState of the paused VM"
"$GIO" qmp "$T/v.w" '{"execute":"cont"}' >/dev/null
ok "EnabledState follows QEMU (2 running, 32768 paused)"

jobpath() { wbem_jobpath "$1"; }
waitjob() { wbem_waitjob "http://w:wpass@127.0.0.1:$PORT" "$1"; }
# application consistency with an agent socket nobody serves: the job fails, nothing made
out=$(wbemcli cm "$SVC" "CreateReferencePoint.AffectedSystem=Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name=\"$VM\",ReferencePointType=2,ReferencePointSettings=\"instance of Msvm_VirtualSystemReferencePointSettingData { ConsistencyLevel = 1; };\"")
J=$(jobpath "$out")
[ "$(waitjob "$J")" = 10 ] || fail "the application-consistent create should fail: $(wbemcli gi "http://w:wpass@127.0.0.1:$PORT/$J")"
wbemcli gi "http://w:wpass@127.0.0.1:$PORT/$J" | grep -q 'guest agent' || fail "the job's error does not name the agent: $(wbemcli gi "http://w:wpass@127.0.0.1:$PORT/$J")"
[ -z "$(wbemcli ein "$U:Msvm_VirtualSystemReferencePoint" 2>/dev/null)" ] || fail "a reference point was made"
ok "ConsistencyLevel 1 without an agent: the job fails with the reason, nothing made"

gwr v vd0 65536 131072 0x3c
printf '\x3c%.0s' $(seq 131072) | dd of=a.raw bs=65536 seek=1 conv=notrunc status=none
out=$(wbemcli cm "$SVC" "CreateReferencePoint.AffectedSystem=Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name=\"$VM\",ReferencePointType=2")
J=$(jobpath "$out")
[ "$(waitjob "$J")" = 7 ] || fail "live create job: $(wbemcli gi "http://w:wpass@127.0.0.1:$PORT/$J")"
R1=$(wbemcli ai -arc Msvm_VirtualSystemReferencePoint "http://w:wpass@127.0.0.1:$PORT/$J" | grep -o 'InstanceID="Microsoft:[^"]*"' | head -n1 | cut -d'"' -f2)
gwr v vd0 0 65536 0x3d     # after the RP: must not appear
out=$(wbemcli cm "$SVC" "ExportReferencePoint.ReferencePoint=Msvm_VirtualSystemReferencePoint.InstanceID=\"$R1\",ExportDirectory=\"$T/roots/bk\"")
J=$(jobpath "$out")
[ "$(waitjob "$J")" = 7 ] || fail "live export job: $(wbemcli gi "http://w:wpass@127.0.0.1:$PORT/$J")"
same a.raw "$(ls "$T/roots/bk/${R1#Microsoft:}"/disk-*.qcow2)"
ok "CreateReferencePoint and ExportReferencePoint jobs of the running VM; export exact"

vm_quit v
[ "$(state)" = 3 ] || fail "EnabledState after quit"
ok "EnabledState 3 after QEMU quit"
