# refpointd --libvirt with a real libvirtd and the real wbemcli: every
# domain of the connection is an Msvm_ComputerSystem without a registration
# step (Name = the domain UUID); a domain defined while the daemon runs
# appears at the next request, one undefined disappears; EnabledState
# follows libvirt; CreateReferencePoint and ExportReferencePoint jobs of a
# running domain (stock unprivileged QEMU), the incremental compared bit for
# bit with the raw mirror.
. "$(dirname "$0")/lib.sh"
need_qemu_system
need_libvirt
command -v wbemcli >/dev/null || skip "wbemcli (sblim-wbemcli) not installed"
command -v openssl >/dev/null || skip "openssl not installed"
S=$((16 * 1024 * 1024))
mkdisk a $S; rand_writes a $S 6
D=$(lv_define d1 a.qcow2)
UUID=$(virsh domuuid "$D" | tr -d ' \n')
PORT=$((20000 + RANDOM % 20000))
printf 'w:%s\n' "$(openssl passwd -6 wpass)" >"$T/passwd"
mkdir -p "$T/roots/bk"
printf 'libvirt = qemu:///system\nexport-root = %s\n' "$T/roots" >"$T/refpointd.conf"
"$BUILD/refpointd" --state-dir "$STATE" --config "$T/refpointd.conf" --listen "http://127.0.0.1:$PORT" \
  --auth "file:$T/passwd" 2>"$T/d.log" &
DPID=$!
trap 'rc=$?; kill $DPID 2>/dev/null || true; wait $DPID 2>/dev/null || true; cleanup $rc' EXIT
for i in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
U=http://w:wpass@127.0.0.1:$PORT/root/virtualization/v2
SVC="$U:Msvm_VirtualSystemReferencePointService.CreationClassName=\"Msvm_VirtualSystemReferencePointService\",Name=\"refpoint\""
CS="$U:Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name=\"$UUID\""
state() { wbemcli gi "$CS" | grep -o 'EnabledState=[0-9]*' | cut -d= -f2; }
wbemcli ein "$U:Msvm_ComputerSystem" | grep -q "$UUID" || fail "the domain is not served: $(wbemcli ein "$U:Msvm_ComputerSystem" 2>&1); $(cat "$T/d.log")"
[ "$(state)" = 3 ] || fail "EnabledState of the shut-off domain: $(wbemcli gi "$CS")"

qemu-img create -q -f qcow2 a2.qcow2 8M
D2=$(lv_define d2 a2.qcow2)
U2=$(virsh domuuid "$D2" | tr -d ' \n')
wbemcli ein "$U:Msvm_ComputerSystem" | grep -q "$U2" || fail "a domain defined while the daemon runs did not appear"
virsh -q undefine "$D2" >/dev/null
wbemcli ein "$U:Msvm_ComputerSystem" | grep -q "$U2" && fail "an undefined domain is still served"
ok "domains appear and disappear with libvirt, no registration step; Name = domain UUID"

virsh -q start "$D" >/dev/null
[ "$(state)" = 2 ] || fail "EnabledState of the running domain"
jobpath() { wbem_jobpath "$1"; }
waitjob() { wbem_waitjob "http://w:wpass@127.0.0.1:$PORT" "$1"; }
create() {
  local out J
  out=$(wbemcli cm "$SVC" "CreateReferencePoint.AffectedSystem=Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name=\"$UUID\",ReferencePointType=2")
  J=$(jobpath "$out")
  [ "$(waitjob "$J")" = 7 ] || fail "create job: $(wbemcli gi "http://w:wpass@127.0.0.1:$PORT/$J")"
  wbemcli ai -arc Msvm_VirtualSystemReferencePoint "http://w:wpass@127.0.0.1:$PORT/$J" | grep -o 'InstanceID="Microsoft:[^"]*"' | head -n1 | cut -d'"' -f2
}
export_rp() { # RP [BASE]
  local out J params
  params="<PARAMVALUE NAME=\"ReferencePoint\"><VALUE.REFERENCE><INSTANCENAME CLASSNAME=\"Msvm_VirtualSystemReferencePoint\"><KEYBINDING NAME=\"InstanceID\"><KEYVALUE>$1</KEYVALUE></KEYBINDING></INSTANCENAME></VALUE.REFERENCE></PARAMVALUE><PARAMVALUE NAME=\"ExportDirectory\"><VALUE>$T/roots/bk</VALUE></PARAMVALUE>"
  [ -n "${2:-}" ] && params+="<PARAMVALUE NAME=\"ExportSettingData\"><VALUE>&lt;INSTANCE CLASSNAME=&quot;Msvm_VirtualSystemReferencePointExportSettingData&quot;&gt;&lt;PROPERTY NAME=&quot;BaseReferencePoint&quot; TYPE=&quot;string&quot;&gt;&lt;VALUE&gt;Msvm_VirtualSystemReferencePoint.InstanceID=&amp;quot;$2&amp;quot;&lt;/VALUE&gt;&lt;/PROPERTY&gt;&lt;/INSTANCE&gt;</VALUE></PARAMVALUE>"
  out=$(cim_call "$PORT" w:wpass ExportReferencePoint "$params")
  echo "$out" | grep -q '<VALUE>4096</VALUE>' || fail "export: $out"
  local id; id=$(echo "$out" | grep -o '<KEYVALUE VALUETYPE="string">[0-9a-f-]*</KEYVALUE>' | head -n1 | sed 's/<[^>]*>//g')
  local cls; cls=$(echo "$out" | grep -o 'INSTANCENAME CLASSNAME="[^"]*"' | head -n1 | cut -d'"' -f2)
  J="root/virtualization/v2:$cls.InstanceID=\"$id\""
  [ "$(waitjob "$J")" = 7 ] || fail "export job: $(wbemcli gi "http://w:wpass@127.0.0.1:$PORT/$J")"
}
R1=$(create); snap_mirror a 1
export_rp "$R1"
lwr "$D" virtio-disk0 65536 131072 3c a.raw
R2=$(create); snap_mirror a 2
lwr "$D" virtio-disk0 0 65536 3d a.raw     # after the RP: must not appear
export_rp "$R2" "$R1"
f=$(ls "$T/roots/bk/${R2#Microsoft:}"/disk-*.qcow2)
qemu-img info "$f" | grep -q "backing file: ../${R1#Microsoft:}/" || fail "the export is not an incremental on R1"
to_raw "$f" x.raw; cmp x.raw a.2.raw || fail "the incremental of the running domain differs"
ok "CreateReferencePoint and ExportReferencePoint jobs of a running libvirt domain; incremental exact"
