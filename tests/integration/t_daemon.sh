# refpointd end to end with the real wbemcli (sblim-wbemcli) and curl on
# loopback: enumerate, GetClass, CreateReferencePoint, ExportReferencePoint
# full and incremental (ExportSettingData as an embedded MOF instance, sent
# with curl because wbemcli cannot encode it), exported data compared bit
# for bit; export roots; CIM and HTTP errors; hostile bodies.
. "$(dirname "$0")/lib.sh"
command -v wbemcli >/dev/null || skip "wbemcli (sblim-wbemcli) not installed"
command -v curl >/dev/null || skip "curl not installed"
S=$((32 * 1024 * 1024))
mkdisk a $S; rand_writes a $S 15
rp vm add web --disk a.qcow2 >/dev/null
VM=$(jfield "$(rpj vm show web)" Name)
mkdir -p "$T/roots/bk"
PORT=$((20000 + RANDOM % 20000))
command -v openssl >/dev/null || skip "openssl not installed"
printf 'u:%s\n' "$(openssl passwd -6 'p@ss w,rd')" >"$T/passwd"
printf '# comment\nother:%s\n' "$(openssl passwd -6 other)" >>"$T/passwd"
"$BUILD/refpointd" --state-dir "$STATE" --listen "http://127.0.0.1:$PORT" --listen "unix:$T/d.sock" \
  --auth "file:$T/passwd" --timeout 3 --export-root "$T/roots" 2>"$T/d.log" &
DPID=$!
trap 'rc=$?; kill $DPID 2>/dev/null || true; wait $DPID 2>/dev/null || true; cleanup $rc' EXIT
for i in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
[ -S "$T/d.sock" ] || fail "no unix socket"
# wbemcli splits its URL at ':' and '@', so its user has a plain password
printf 'w:%s\n' "$(openssl passwd -6 wpass)" >>"$T/passwd"
U=http://w:wpass@127.0.0.1:$PORT/root/virtualization/v2
SVC="$U:Msvm_VirtualSystemReferencePointService.CreationClassName=\"Msvm_VirtualSystemReferencePointService\",Name=\"refpoint\""

wbemcli ei "$U:Msvm_ComputerSystem" | grep -q "Name=\"$VM\",ElementName=\"web\"" || fail "ei Msvm_ComputerSystem"
wbemcli gi "$U:Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name=\"$VM\"" | grep -q 'ElementName="web"' || fail "gi"
wbemcli gc "$U:Msvm_VirtualSystemReferencePointService" >/dev/null || fail "gc"
wbemcli ecn "$U" | grep -q Msvm_VirtualSystemReferencePoint || fail "ecn"
ok "enumerate, get instance, get class"

# a job path from wbemcli cm output: host:port/ns:Class.InstanceID="..."
jobpath() { wbem_jobpath "$1"; }
waitjob() { wbem_waitjob "http://w:wpass@127.0.0.1:$PORT" "$1"; }
out=$(wbemcli cm "$SVC" "CreateReferencePoint.AffectedSystem=Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name=\"$VM\",ReferencePointType=2")
echo "$out" | grep -q "CreateReferencePoint: 4096" || fail "CreateReferencePoint: $out"
J=$(jobpath "$out")
[ "$(waitjob "$J")" = 7 ] || fail "create job did not complete: $(wbemcli gi "http://w:wpass@127.0.0.1:$PORT/$J")"
wbemcli gi "http://w:wpass@127.0.0.1:$PORT/$J" | grep -q 'JobType=201' || fail "JobType 201"
R1=$(wbemcli ai -arc Msvm_VirtualSystemReferencePoint "http://w:wpass@127.0.0.1:$PORT/$J" | grep -o 'InstanceID="Microsoft:[^"]*"' | head -n1 | cut -d'"' -f2)
[ -n "$R1" ] || fail "the created RP is not an associator of its job"
snap_mirror a 1; rand_writes a $S 10
wbemcli ei "$U:Msvm_VirtualSystemReferencePoint" | grep -q "InstanceID=\"$R1\"" || fail "ei RPs"
out=$(wbemcli cm "$SVC" "ExportReferencePoint.ReferencePoint=Msvm_VirtualSystemReferencePoint.InstanceID=\"$R1\",ExportDirectory=\"$T/roots/bk\"")
echo "$out" | grep -q "ExportReferencePoint: 4096" || fail "export: $out"
J=$(jobpath "$out")
[ "$(waitjob "$J")" = 7 ] || fail "export job: $(wbemcli gi "http://w:wpass@127.0.0.1:$PORT/$J")"
wbemcli gi "http://w:wpass@127.0.0.1:$PORT/$J" >"$T/job"
grep -q 'PercentComplete=100' "$T/job" && grep -q 'JobType=203' "$T/job" && grep -q "ReferencePointId=\"$R1\"" "$T/job" || fail "export job properties: $(cat "$T/job")"
grep -q "ExportedLogFilePaths=\"$T/roots/bk/${R1#Microsoft:}/disk-" "$T/job" || fail "ExportedLogFilePaths: $(cat "$T/job")"
qemu-img convert -O raw "$T/roots/bk/${R1#Microsoft:}"/disk-*.qcow2 x.raw; cmp x.raw a.1.raw || fail "full export data"
ok "CreateReferencePoint and a full ExportReferencePoint through wbemcli, data exact"

J=$(jobpath "$(wbemcli cm "$SVC" "CreateReferencePoint.AffectedSystem=Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name=\"$VM\"")")
[ "$(waitjob "$J")" = 7 ] || fail "second create"
R2=$(wbemcli ai -arc Msvm_VirtualSystemReferencePoint "http://w:wpass@127.0.0.1:$PORT/$J" | grep -o 'InstanceID="Microsoft:[^"]*"' | head -n1 | cut -d'"' -f2)
snap_mirror a 2; rand_writes a $S 5
call() { # method params-xml -> response body
  curl -s -u 'u:p@ss w,rd' -X POST "http://127.0.0.1:$PORT/cimom" -H 'Content-Type: application/xml; charset="utf-8"' \
    -H 'CIMOperation: MethodCall' -H "CIMMethod: $1" -H 'CIMObject: root%2Fvirtualization%2Fv2' \
    --data-binary "<?xml version=\"1.0\" encoding=\"utf-8\" ?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"7\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><METHODCALL NAME=\"$1\"><LOCALINSTANCEPATH><LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"virtualization\"/><NAMESPACE NAME=\"v2\"/></LOCALNAMESPACEPATH><INSTANCENAME CLASSNAME=\"Msvm_VirtualSystemReferencePointService\"><KEYBINDING NAME=\"CreationClassName\"><KEYVALUE>Msvm_VirtualSystemReferencePointService</KEYVALUE></KEYBINDING><KEYBINDING NAME=\"Name\"><KEYVALUE>refpoint</KEYVALUE></KEYBINDING></INSTANCENAME></LOCALINSTANCEPATH>$2</METHODCALL></SIMPLEREQ></MESSAGE></CIM>"
}
cjob() { # response body -> wait for its job, print the final JobState
  local id; id=$(echo "$1" | grep -o '<KEYVALUE VALUETYPE="string">[0-9a-f-]*</KEYVALUE>' | head -n1 | sed 's/<[^>]*>//g')
  local cls; cls=$(echo "$1" | grep -o 'INSTANCENAME CLASSNAME="[^"]*"' | head -n1 | cut -d'"' -f2)
  [ -n "$id" ] || { echo none; return; }
  waitjob "root/virtualization/v2:$cls.InstanceID=\"$id\""
}
refxml() { echo "<PARAMVALUE NAME=\"$1\"><VALUE.REFERENCE><INSTANCENAME CLASSNAME=\"Msvm_VirtualSystemReferencePoint\"><KEYBINDING NAME=\"InstanceID\"><KEYVALUE>$2</KEYVALUE></KEYBINDING></INSTANCENAME></VALUE.REFERENCE></PARAMVALUE>"; }
MOF="instance of Msvm_VirtualSystemReferencePointExportSettingData { BaseReferencePoint = \"\\\\\\\\localhost\\\\root\\\\virtualization\\\\v2:Msvm_VirtualSystemReferencePoint.InstanceID=\\\"$R1\\\"\"; };"
MOFX=$(printf '%s' "$MOF" | sed 's/&/\&amp;/g; s/</\&lt;/g; s/>/\&gt;/g')
out=$(call ExportReferencePoint "$(refxml ReferencePoint "$R2")<PARAMVALUE NAME=\"ExportDirectory\"><VALUE>$T/roots/bk</VALUE></PARAMVALUE><PARAMVALUE NAME=\"ExportSettingData\"><VALUE>$MOFX</VALUE></PARAMVALUE>")
echo "$out" | grep -q '<RETURNVALUE PARAMTYPE="uint32"><VALUE>4096</VALUE>' || fail "incremental export: $out"
[ "$(cjob "$out")" = 7 ] || fail "incremental export job"
grep -q '"Kind": "incremental"' "$T/roots/bk/${R2#Microsoft:}/manifest.json" || fail "not incremental"
qemu-img convert -O raw "$T/roots/bk/${R2#Microsoft:}"/disk-*.qcow2 x.raw; cmp x.raw a.2.raw || fail "incremental export data"
# the same with a CIM-XML embedded instance
XI="<INSTANCE CLASSNAME=\"Msvm_VirtualSystemReferencePointExportSettingData\"><PROPERTY NAME=\"BaseReferencePoint\" TYPE=\"string\"><VALUE>Msvm_VirtualSystemReferencePoint.InstanceID=&quot;$R1&quot;</VALUE></PROPERTY></INSTANCE>"
XIX=$(printf '%s' "$XI" | sed 's/&/\&amp;/g; s/</\&lt;/g; s/>/\&gt;/g')
mkdir -p "$T/roots/bk2"
out=$(call ExportReferencePoint "$(refxml ReferencePoint "$R2")<PARAMVALUE NAME=\"ExportDirectory\"><VALUE>$T/roots/bk2</VALUE></PARAMVALUE><PARAMVALUE NAME=\"ExportSettingData\"><VALUE>$XIX</VALUE></PARAMVALUE>")
echo "$out" | grep -q '<VALUE>4096</VALUE>' || fail "export with an XML embedded instance: $out"
[ "$(cjob "$out")" = 7 ] || fail "XML export job"
grep -q '"Kind": "incremental"' "$T/roots/bk2/${R2#Microsoft:}/manifest.json" || fail "XML: not incremental"
ok "incremental ExportReferencePoint with ExportSettingData as MOF and as CIM-XML, data exact"

# DeleteInstance removes a finished job
DJ=$(wbemcli ein "$U:Msvm_ConcreteJob" | head -n1 | sed 's|^[^/]*/||')
wbemcli di "http://w:wpass@127.0.0.1:$PORT/$DJ" || fail "DeleteInstance of a job"
set +e; wbemcli gi "http://w:wpass@127.0.0.1:$PORT/$DJ" 2>"$T/e"; set -e
grep -q "(6) CIM_ERR_NOT_FOUND" "$T/e" || fail "deleted job still there"
ok "DeleteInstance of a finished job"

# a failing job: exporting R1 again into the same root -> JobState 10, GetError explains
out=$(wbemcli cm "$SVC" "ExportReferencePoint.ReferencePoint=Msvm_VirtualSystemReferencePoint.InstanceID=\"$R1\",ExportDirectory=\"$T/roots/bk\"")
J=$(jobpath "$out")
[ "$(waitjob "$J")" = 10 ] || fail "failing export job should end in 10"
wbemcli gi "http://w:wpass@127.0.0.1:$PORT/$J" | grep -q 'ErrorCode=32773' || fail "ErrorCode of the failed job"
wbemcli cm "http://w:wpass@127.0.0.1:$PORT/$J" GetError | grep -q "already holds a complete export" || fail "GetError"
wbemcli cm "http://w:wpass@127.0.0.1:$PORT/$J" GetErrorEx | grep -q "already holds a complete export" || fail "GetErrorEx"
ok "a failed job: JobState 10, ErrorCode, GetError with an embedded Msvm_Error"

# cancel a running export: RequestStateChange(4) -> JobState 8, nothing left
mkdisk big $((1024 * 1024 * 1024))
qemu-io -f qcow2 -c "write -q -P 0x44 0 700M" big.qcow2 >/dev/null
rp vm add big --disk big.qcow2 >/dev/null
RB=$(rp rp create big)
out=$(wbemcli cm "$SVC" "ExportReferencePoint.ReferencePoint=Msvm_VirtualSystemReferencePoint.InstanceID=\"$RB\",ExportDirectory=\"$T/roots/cancel\"")
J=$(jobpath "$out")
seen=
for i in $(seq 100); do
  pc=$(wbemcli gi "http://w:wpass@127.0.0.1:$PORT/$J" | grep -o 'PercentComplete=[0-9]*' | cut -d= -f2)
  if [ -n "$pc" ] && [ "$pc" -gt 0 ] && [ "$pc" -lt 100 ]; then seen=$pc; break; fi
  sleep 0.02
done
[ -n "$seen" ] && echo "ok: PercentComplete moving ($seen %) during the export" || echo "note: no intermediate PercentComplete seen"
wbemcli cm "http://w:wpass@127.0.0.1:$PORT/$J" "RequestStateChange.RequestedState=4" | grep -q "RequestStateChange: 0" || echo "note: the export ended before the cancel"
st=$(waitjob "$J")
if [ "$st" = 8 ]; then
  [ -z "$(ls -A "$T/roots/cancel" 2>/dev/null)" ] || fail "cancelled export left $(ls -A "$T/roots/cancel")"
  ok "RequestStateChange(4) cancels a running export: JobState 8, nothing left"
else
  [ "$st" = 7 ] || fail "cancelled job state $st"
fi

# associations and queries
wbemcli ain -ac Msvm_ReferencePointOfVirtualSystem "$U:Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name=\"$VM\"" >"$T/ain"
grep -q "InstanceID=\"$R1\"" "$T/ain" && grep -q "InstanceID=\"$R2\"" "$T/ain" || fail "AssociatorNames of the VM: $(cat "$T/ain")"
wbemcli ai "$U:Msvm_VirtualSystemReferencePoint.InstanceID=\"$R1\",VirtualSystemIdentifier=\"$VM\"" | grep -q 'ElementName="web"' || fail "Associators of an RP"
iquery() { # WQL -> response body
  curl -s -u 'u:p@ss w,rd' -X POST "http://127.0.0.1:$PORT/cimom" -H 'CIMOperation: MethodCall' -H 'CIMMethod: ExecQuery' \
    --data-binary "<?xml version=\"1.0\"?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"9\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><IMETHODCALL NAME=\"ExecQuery\"><LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"virtualization\"/><NAMESPACE NAME=\"v2\"/></LOCALNAMESPACEPATH><IPARAMVALUE NAME=\"QueryLanguage\"><VALUE>WQL</VALUE></IPARAMVALUE><IPARAMVALUE NAME=\"Query\"><VALUE>$1</VALUE></IPARAMVALUE></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>"
}
out=$(iquery "SELECT * FROM Msvm_VirtualSystemReferencePoint WHERE InstanceID = '$R2' AND HasAssociatedData = TRUE")
[ "$(echo "$out" | grep -o '<VALUE.OBJECTWITHPATH>' | wc -l)" = 1 ] || fail "WQL SELECT: $out"
echo "$out" | grep -q "$R2" || fail "WQL SELECT picked the wrong RP"
out=$(iquery "SELECT * FROM Msvm_ComputerSystem WHERE ElementName LIKE 'w%' AND EnabledState &lt; 5")
echo "$out" | grep -q "<VALUE>$VM</VALUE>" || fail "WQL LIKE: $out"
out=$(iquery "ASSOCIATORS OF {Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name=\"$VM\"} WHERE ResultClass = Msvm_VirtualSystemReferencePoint")
[ "$(echo "$out" | grep -o '<VALUE.OBJECTWITHPATH>' | wc -l)" = 2 ] || fail "ASSOCIATORS OF: $out"
iquery "SELECT * FROM Msvm_ComputerSystem WHERE" | grep -q 'ERROR CODE="15"' || fail "bad WQL is not CIM_ERR_INVALID_QUERY"
iquery "SELECT * FROM Msvm_ComputerSystem WHERE NoSuchProperty = 1" | grep -q 'ERROR CODE="15"' || fail "unknown property"
wbemcli rin "$U:Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name=\"$VM\"" >"$T/rin"
[ "$(grep -c 'Msvm_ReferencePointOfVirtualSystem' "$T/rin")" -ge 2 ] || fail "ReferenceNames of the VM: $(cat "$T/rin")"
wbemcli ri "$U:Msvm_VirtualSystemReferencePoint.InstanceID=\"$R1\",VirtualSystemIdentifier=\"$VM\"" >"$T/ri"
grep -q "Antecedent" "$T/ri" && grep -q "Dependent" "$T/ri" || fail "References of an RP: $(cat "$T/ri")"
grep -q "Msvm_AffectedJobElement" "$T/ri" && grep -q "ElementEffects=5" "$T/ri" || fail "AffectedJobElement of the created RP: $(cat "$T/ri")"
AP=$(wbemcli ein "$U:Msvm_ReferencePointOfVirtualSystem" | head -n1)
wbemcli gi "http://w:wpass@$AP" | grep -q "Dependent" || fail "GetInstance of an association instance (as wbemcli names it)"
wbemcli ei "$U:Msvm_StorageAllocationSettingData" | grep -q "HostResource=\"$T/a.qcow2\"" || fail "disk class"
D0=$(jfield "$(rpj vm show web)" InstanceID | sed 's/\\\\/\\/g')
wbemcli ei "$U:Msvm_StorageAllocationSettingData" | grep -qF "${D0//\\/\\\\}" || fail "disk InstanceID as in VirtualDiskIdentifiers"
ok "Associators/AssociatorNames with wbemcli; ExecQuery: SELECT ... WHERE, LIKE, ASSOCIATORS OF; invalid queries = 15"

# return codes and errors
out=$(wbemcli cm "$SVC" "ExportReferencePoint.ReferencePoint=Msvm_VirtualSystemReferencePoint.InstanceID=\"$R1\",ExportDirectory=\"$T/outside\"")
echo "$out" | grep -q "ExportReferencePoint: 32769" || fail "outside the roots: $out"
ln -s / "$T/roots/escape"
out=$(wbemcli cm "$SVC" "ExportReferencePoint.ReferencePoint=Msvm_VirtualSystemReferencePoint.InstanceID=\"$R1\",ExportDirectory=\"$T/roots/escape/tmp\"")
echo "$out" | grep -q "ExportReferencePoint: 32769" || fail "symlink escape: $out"
[ ! -e /tmp/${R1#Microsoft:} ] || fail "escaped the root"
out=$(wbemcli cm "$SVC" "ExportReferencePoint.ReferencePoint=Msvm_VirtualSystemReferencePoint.InstanceID=\"Microsoft:00000000-0000-4000-8000-000000000000\",ExportDirectory=\"$T/roots/bk\"")
echo "$out" | grep -q "ExportReferencePoint: 32773" || fail "unknown RP: $out"
out=$(call ExportReferencePoint "$(refxml ReferencePoint "$R2")<PARAMVALUE NAME=\"ExportDirectory\"><VALUE>$T/roots/bk3</VALUE></PARAMVALUE><PARAMVALUE NAME=\"ExportSettingData\"><VALUE>instance of Broken {</VALUE></PARAMVALUE>")
echo "$out" | grep -q '<VALUE>32773</VALUE>' || fail "bad embedded instance: $out"
set +e; wbemcli gi "$U:Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name=\"nope\"" 2>"$T/e"; set -e
grep -q "(6) CIM_ERR_NOT_FOUND" "$T/e" || fail "gi unknown: $(cat "$T/e")"
set +e; wbemcli ei "$U:Nope_Class" 2>"$T/e"; set -e
grep -q "(5) CIM_ERR_INVALID_CLASS" "$T/e" || fail "unknown class: $(cat "$T/e")"
set +e; wbemcli di "$U:Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name=\"$VM\"" 2>"$T/e"; set -e
grep -q "(7) CIM_ERR_NOT_SUPPORTED" "$T/e" || fail "DeleteInstance: $(cat "$T/e")"
set +e; wbemcli ei "http://w:wpass@127.0.0.1:$PORT/root/other:Msvm_ComputerSystem" 2>"$T/e"; set -e
grep -q "(3) CIM_ERR_INVALID_NAMESPACE" "$T/e" || fail "namespace: $(cat "$T/e")"
# more bad requests: unknown method, wrong type, missing keys, deep nesting, big headers
out=$(call NoSuchMethod "")
echo "$out" | grep -q 'ERROR CODE="17"' || fail "unknown method: $out"
out=$(call CreateReferencePoint "<PARAMVALUE NAME=\"AffectedSystem\"><VALUE.REFERENCE><INSTANCENAME CLASSNAME=\"Msvm_ComputerSystem\"><KEYBINDING NAME=\"Name\"><KEYVALUE>$VM</KEYVALUE></KEYBINDING></INSTANCENAME></VALUE.REFERENCE></PARAMVALUE><PARAMVALUE NAME=\"ReferencePointType\"><VALUE>abc</VALUE></PARAMVALUE>")
echo "$out" | grep -q '<RETURNVALUE PARAMTYPE="uint32"><VALUE>1</VALUE>' || fail "ReferencePointType abc: $out"
out=$(call CreateReferencePoint "<PARAMVALUE NAME=\"AffectedSystem\"><VALUE>not a reference</VALUE></PARAMVALUE>")
echo "$out" | grep -q 'ERROR CODE="4"' || fail "a string where a reference belongs: $out"
set +e; wbemcli gi "$U:Msvm_VirtualSystemReferencePoint" 2>"$T/e"; set -e
grep -q "Keys not specified" "$T/e" || fail "wbemcli sent a GetInstance without keys: $(cat "$T/e")"
out=$(curl -s -u 'u:p@ss w,rd' -X POST "http://127.0.0.1:$PORT/cimom" -H 'CIMOperation: MethodCall' --data-binary '<?xml version="1.0"?><CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="5" PROTOCOLVERSION="1.0"><SIMPLEREQ><IMETHODCALL NAME="GetInstance"><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="virtualization"/><NAMESPACE NAME="v2"/></LOCALNAMESPACEPATH><IPARAMVALUE NAME="InstanceName"><INSTANCENAME CLASSNAME="Msvm_VirtualSystemReferencePoint"/></IPARAMVALUE></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>')
echo "$out" | grep -q 'ERROR CODE="6"' || fail "raw GetInstance without keys: $out"
deep=$(printf '<a>%.0s' $(seq 5000))
code=$(curl -s -o /dev/null -w '%{http_code}' -u 'u:p@ss w,rd' -X POST -H 'CIMOperation: MethodCall' --data "<?xml version=\"1.0\"?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\">$deep" "http://127.0.0.1:$PORT/cimom")
[ "$code" = 400 ] || fail "deep nesting: HTTP $code"
big=$(head -c 100000 /dev/zero | tr '\0' 'x')
code=$(curl -s -o /dev/null -w '%{http_code}' -u 'u:p@ss w,rd' -X POST -H 'CIMOperation: MethodCall' -H "X-Big: $big" --data x "http://127.0.0.1:$PORT/cimom")
[ "$code" -ge 400 ] || fail "a 100 kB header was accepted ($code)"
kill -0 $DPID || fail "refpointd died on bad requests"
ok "CIM return codes: 32769 outside the roots (symlinks too), 32773, CIM errors 3, 5, 6, 7"

hdr() { curl -s -u 'u:p@ss w,rd' -o /dev/null -D - -X POST "http://127.0.0.1:$PORT/cimom" "$@" | tr -d '\r'; }
hdr -H 'CIMOperation: MethodCall' --data '<CIM><broken' | grep -q "CIMError: request-not-well-formed" || fail "malformed XML"
hdr --data 'x' | grep -q "^HTTP/1.1 400" || fail "no CIMOperation"
hdr -H 'CIMOperation: Other' --data 'x' | grep -q "CIMError: unsupported-operation" || fail "bad CIMOperation"
hdr -H 'CIMOperation: MethodCall' --data '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><CIM/>' | grep -q "^HTTP/1.1 400" || fail "XXE accepted"
hdr -H 'CIMOperation: MethodCall' --data '<CIM CIMVERSION="3.0" DTDVERSION="3.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLEREQ/></MESSAGE></CIM>' | grep -q "unsupported-cim-version" || fail "CIM version"
head -c $((5 * 1024 * 1024)) /dev/zero | tr '\0' 'a' >"$T/big"
hdr -H 'CIMOperation: MethodCall' --data-binary @"$T/big" | grep -q "^HTTP/1.1 413" || fail "oversized body"
# wbemcli does not escape '&' and '<' in values: tolerated
out=$(call ExportReferencePoint "$(refxml ReferencePoint "$R1")<PARAMVALUE NAME=\"ExportDirectory\"><VALUE>$T/roots/a&b<c</VALUE></PARAMVALUE>")
echo "$out" | grep -q '<VALUE>4096</VALUE>' || fail "unescaped value: $out"
[ "$(cjob "$out")" = 7 ] || fail "unescaped value job"
[ -f "$T/roots/a&b<c/${R1#Microsoft:}/manifest.json" ] || fail "unescaped path not used verbatim"
kill -0 $DPID || fail "the daemon died"
ok "HTTP errors (400 + CIMError, 413, 501 class), XXE refused, wbemcli's unescaped values tolerated"

# H1 of the security audit: the DOCTYPE refusal cannot be bypassed by a NUL
# byte or UTF-7, and one big entity referenced many times never reaches the parser
python3 - "$T" <<'PY'
import sys, base64
u7 = lambda s: "+" + base64.b64encode(s.encode("utf-16-be")).decode().rstrip("=") + "-"
rest = ('<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLEREQ>'
        '<IMETHODCALL NAME="EnumerateInstanceNames"><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/>'
        '<NAMESPACE NAME="&e;"/><NAMESPACE NAME="v2"/></LOCALNAMESPACEPATH><IPARAMVALUE NAME="ClassName">'
        '<CLASSNAME NAME="Msvm_ComputerSystem"/></IPARAMVALUE></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>')
d = sys.argv[1]
open(d + "/nul.xml", "wb").write(b'<?xml version="1.0"?>\n<\0!DOCTYPE CIM [<\0!ENTITY e "virtualization">]>' + rest.encode())
open(d + "/utf7.xml", "w").write('<?xml version="1.0" encoding="UTF-7"?>\n' + u7("<!") + 'DOCTYPE CIM [' + u7("<!") + 'ENTITY e "virtualization">]>' + rest)
open(d + "/quad.xml", "wb").write(b'<?xml version="1.0"?>\n<\0!DOCTYPE CIM [<\0!ENTITY a "' + b"x" * 100000 + b'">]>'
    + rest.replace("&e;", "virtualization").replace('<IPARAMVALUE NAME="ClassName">', '<IPARAMVALUE NAME="X"><VALUE>' + "&a;" * 15000 + '</VALUE></IPARAMVALUE><IPARAMVALUE NAME="ClassName">').encode())
open(d + "/attrs.xml", "w").write('<?xml version="1.0"?>' + rest.replace('<SIMPLEREQ>', '<SIMPLEREQ ' + " ".join('a%d="1"' % i for i in range(100000)) + '>').replace("&e;", "virtualization"))
PY
for f in nul utf7 quad attrs; do
  t0=$(date +%s%N)
  h=$(hdr -H 'CIMOperation: MethodCall' --data-binary @"$T/$f.xml")
  t1=$(date +%s%N)
  echo "$h" | grep -q "^HTTP/1.1 400" && echo "$h" | grep -q "CIMError: request-not-well-formed" || fail "H1: $f.xml was not refused: $h"
  [ $(( (t1 - t0) / 1000000 )) -lt 2000 ] || fail "$f.xml took $(( (t1 - t0) / 1000000 )) ms to refuse"
done
grep -q "refused request: a NUL byte" "$T/d.log" && grep -q "refused request: encoding 'UTF-7'" "$T/d.log" &&
  grep -q "more than 64 attributes" "$T/d.log" || fail "the log does not say why: $(tail -5 "$T/d.log")"
kill -0 $DPID || fail "the daemon died"
wbemcli ein "$U:Msvm_ComputerSystem" | grep -q "$VM" || fail "the daemon stopped serving after the bad documents"
ok "H1: DOCTYPE behind a NUL byte or UTF-7, a big entity used 15,000 times, 100,000 attributes: 400 at once, the daemon serves on"

# authentication: 401 without or with wrong credentials, nothing else said
noauth=$(curl -s -D - -o "$T/401body" -X POST -H 'CIMOperation: MethodCall' --data x "http://127.0.0.1:$PORT/cimom" | tr -d '\r')
echo "$noauth" | grep -q "^HTTP/1.1 401" && echo "$noauth" | grep -qi '^WWW-Authenticate: Basic realm="refpointd"' || fail "no 401: $noauth"
[ ! -s "$T/401body" ] || fail "401 has a body"
curl -s -o /dev/null -w '%{http_code}' -u 'u:wrong' -X POST -H 'CIMOperation: MethodCall' --data x "http://127.0.0.1:$PORT/cimom" | grep -q 401 || fail "wrong password accepted"
curl -s -o /dev/null -w '%{http_code}' -u 'nobody:p@ss w,rd' -X POST -H 'CIMOperation: MethodCall' --data x "http://127.0.0.1:$PORT/cimom" | grep -q 401 || fail "unknown user accepted"
set +e; wbemcli ei "http://w:bad@127.0.0.1:$PORT/root/virtualization/v2:Msvm_ComputerSystem" 2>"$T/e"; rc=$?; set -e
[ $rc -ne 0 ] || fail "wbemcli with a bad password succeeded"
ok "Basic authentication with a crypt(3) password file: 401 and WWW-Authenticate, no detail"

# the unix socket: no password, file mode 0660
[ "$(stat -c %a "$T/d.sock")" = 660 ] || fail "socket mode $(stat -c %a "$T/d.sock")"
out=$(curl -s --unix-socket "$T/d.sock" -X POST http://localhost/cimom -H 'CIMOperation: MethodCall' --data-binary "<?xml version=\"1.0\"?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"3\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><IMETHODCALL NAME=\"EnumerateInstanceNames\"><LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"virtualization\"/><NAMESPACE NAME=\"v2\"/></LOCALNAMESPACEPATH><IPARAMVALUE NAME=\"ClassName\"><CLASSNAME NAME=\"Msvm_ComputerSystem\"/></IPARAMVALUE></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>")
echo "$out" | grep -q "<KEYVALUE VALUETYPE=\"string\">$VM</KEYVALUE>" || fail "unix socket: $out"
ok "unix socket served without a password"

# slow-loris: a client that never finishes its headers is dropped after --timeout,
# and others are served meanwhile
exec 7<>/dev/tcp/127.0.0.1/$PORT
printf 'POST /cimom HTTP/1.1\r\nHost: x\r\n' >&7
t0=$SECONDS
wbemcli ein "$U:Msvm_ComputerSystem" | grep -q "$VM" || fail "served while a slow client hangs"
timeout 10 cat <&7 >/dev/null || true
exec 7<&- 7>&-
[ $((SECONDS - t0)) -le 8 ] || fail "slow client kept for $((SECONDS - t0)) s"
ok "a half-sent request is dropped after the timeout; others are served"

# what refpointd refuses to start with
set +e
"$BUILD/refpointd" --state-dir "$STATE" --listen "http://127.0.0.1:$((PORT + 1))" 2>"$T/e1"; r1=$?
"$BUILD/refpointd" --state-dir "$STATE" --auth "file:$T/passwd" --listen "http://0.0.0.0:$((PORT + 1))" 2>"$T/e2"; r2=$?
"$BUILD/refpointd" --state-dir "$STATE" --auth "file:$T/passwd" --listen "https://127.0.0.1:$((PORT + 1))" 2>"$T/e3"; r3=$?
set -e
[ $r1 -ne 0 ] && grep -q "need --auth" "$T/e1" || fail "TCP without auth started: $(cat "$T/e1")"
[ $r2 -ne 0 ] && grep -q "only over HTTPS" "$T/e2" || fail "plain HTTP on 0.0.0.0 started: $(cat "$T/e2")"
[ $r3 -ne 0 ] && grep -q "needs --cert" "$T/e3" || fail "HTTPS without a certificate started: $(cat "$T/e3")"
ok "refused: TCP without --auth, passwords over plain HTTP off loopback, HTTPS without a certificate"

# HTTPS with a self-signed certificate
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/key.pem" -out "$T/cert.pem" -days 1 -subj /CN=localhost 2>/dev/null
"$BUILD/refpointd" --state-dir "$STATE" --auth "file:$T/passwd" --listen "https://127.0.0.1:$((PORT + 2))" \
  --cert "$T/cert.pem" --key "$T/key.pem" 2>"$T/tls.log" & TPID=$!
for i in $(seq 50); do curl -sk -o /dev/null "https://127.0.0.1:$((PORT + 2))/" && break; sleep 0.1; done
wbemcli -noverify ei "https://w:wpass@127.0.0.1:$((PORT + 2))/root/virtualization/v2:Msvm_ComputerSystem" | grep -q "Name=\"$VM\"" || fail "HTTPS: $(cat "$T/tls.log")"
kill $TPID; wait $TPID || true
ok "HTTPS with --cert/--key and wbemcli"

# jobs survive a restart; one that was running when refpointd died ends as
# 10 Exception and its partial export is removed
DONEJOB=$(wbemcli ein "$U:Msvm_VirtualSystemReferencePointExportJob" | head -n1 | sed 's|^[^/]*/||')
[ -n "$DONEJOB" ] || fail "no finished export job to look at"
out=$(wbemcli cm "$SVC" "ExportReferencePoint.ReferencePoint=Msvm_VirtualSystemReferencePoint.InstanceID=\"$RB\",ExportDirectory=\"$T/roots/crash\"")
J=$(jobpath "$out")
for i in $(seq 100); do ls -A "$T/roots/crash" 2>/dev/null | grep -q '^\.' && break; sleep 0.05; done
kill -9 $DPID; wait $DPID 2>/dev/null || true
ls -A "$T/roots/crash" | grep -q '^\.' || echo "note: the export had not started writing when refpointd was killed"
"$BUILD/refpointd" --state-dir "$STATE" --listen "http://127.0.0.1:$PORT" --listen "unix:$T/d.sock" \
  --auth "file:$T/passwd" --timeout 3 --export-root "$T/roots" 2>>"$T/d.log" &
DPID=$!
for i in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
st=$(wbemcli gi "http://w:wpass@127.0.0.1:$PORT/$J")
echo "$st" | grep -q 'JobState=10' || fail "interrupted job after restart: $st"
echo "$st" | grep -q 'refpointd stopped while this job was running' || fail "no reason given: $st"
[ -z "$(ls -A "$T/roots/crash" 2>/dev/null)" ] || fail "partial export left: $(ls -A "$T/roots/crash")"
wbemcli gi "http://w:wpass@127.0.0.1:$PORT/$DONEJOB" | grep -q 'JobState=7' || fail "a finished job was forgotten by the restart"
rp export "$RB" "$T/roots/crash" >/dev/null || fail "the next export after the crash"
ok "after kill -9 and restart: the running job is 10 Exception with a reason, its partial output gone, finished jobs kept"

# F7: refpointd killed after an export's rename, before it recorded the
# job's end (fault injection: the daemon SIGKILLs itself there): after the
# restart the job is 7 Completed, not 10, and the export is kept
kill $DPID; wait $DPID 2>/dev/null || true
REFPOINT_FAULT_INJECT=export-after-rename "$BUILD/refpointd" --state-dir "$STATE" --listen "http://127.0.0.1:$PORT" \
  --auth "file:$T/passwd" --timeout 3 --export-root "$T/roots" 2>>"$T/d.log" &
DPID=$!
for i in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
out=$(wbemcli cm "$SVC" "ExportReferencePoint.ReferencePoint=Msvm_VirtualSystemReferencePoint.InstanceID=\"$RB\",ExportDirectory=\"$T/roots/crash2\"")
J=$(jobpath "$out")
wait $DPID 2>/dev/null || true   # it killed itself at the fault point
[ -f "$T/roots/crash2/${RB#Microsoft:}/manifest.json" ] || fail "premise: the export should be complete"
"$BUILD/refpointd" --state-dir "$STATE" --listen "http://127.0.0.1:$PORT" --listen "unix:$T/d.sock" \
  --auth "file:$T/passwd" --timeout 3 --export-root "$T/roots" 2>>"$T/d.log" &
DPID=$!
for i in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
st=$(wbemcli gi "http://w:wpass@127.0.0.1:$PORT/$J")
echo "$st" | grep -q 'JobState=7' || fail "F7: a job whose export completed is reported as: $st"
echo "$st" | grep -q "ExportedLogFilePaths=\"$T/roots/crash2/${RB#Microsoft:}/disk-" || fail "F7: the job does not name the files: $st"
rp verify "$T/roots/crash2/${RB#Microsoft:}" >/dev/null || fail "the export kept does not verify"
ok "refpointd killed after an export's rename: the job is Completed after the restart, the export kept"

# RemoveAssociatedData, ImportReferencePointMetadata and DestroyReferencePoint as jobs
out=$(wbemcli cm "$SVC" "RemoveAssociatedData.AffectedReferencePoint=Msvm_VirtualSystemReferencePoint.InstanceID=\"$R2\"")
echo "$out" | grep -q "RemoveAssociatedData: 4096" || fail "RemoveAssociatedData: $out"
[ "$(waitjob "$(jobpath "$out")")" = 7 ] || fail "remove-data job"
wbemcli gi "$U:Msvm_VirtualSystemReferencePoint.InstanceID=\"$R2\",VirtualSystemIdentifier=\"$VM\"" | grep -q "HasAssociatedData=FALSE" || fail "R2 still has data"
out=$(wbemcli cm "$SVC" "DestroyReferencePoint.AffectedReferencePoint=Msvm_VirtualSystemReferencePoint.InstanceID=\"$R2\"")
[ "$(waitjob "$(jobpath "$out")")" = 7 ] || fail "destroy job: $out"
set +e; wbemcli gi "$U:Msvm_VirtualSystemReferencePoint.InstanceID=\"$R2\",VirtualSystemIdentifier=\"$VM\"" 2>"$T/e"; set -e
grep -q "(6)" "$T/e" || fail "destroyed RP still there"
EX="$T/roots/bk/${R2#Microsoft:}"
out=$(wbemcli cm "$SVC" "ImportReferencePointMetadata.AffectedSystem=Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name=\"$VM\",ConfigFilePath=\"$EX/config.json\",RuntimeStateFilePath=\"$EX/runtime-state.json\"")
J=$(jobpath "$out")
[ "$(waitjob "$J")" = 7 ] || fail "import job: $(wbemcli gi "http://w:wpass@127.0.0.1:$PORT/$J")"
wbemcli ei "$U:Msvm_VirtualSystemReferencePoint" | grep -q "InstanceID=\"$R2\"" || fail "imported RP not listed"
out=$(wbemcli cm "$SVC" "DestroyReferencePoint.AffectedReferencePoint=Msvm_VirtualSystemReferencePoint.InstanceID=\"Microsoft:00000000-0000-4000-8000-000000000000\"")
echo "$out" | grep -q "DestroyReferencePoint: 32773" || fail "destroy of an unknown RP: $out"
ok "RemoveAssociatedData, DestroyReferencePoint and ImportReferencePointMetadata through jobs"

# M4 and M3 of the security audit: the metadata files of an import must be
# under the export roots (the daemon is root), only regular files are read
# (a FIFO never blocks a job), and errors never quote a file's content
imp() { wbemcli cm "$SVC" "ImportReferencePointMetadata.AffectedSystem=Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name=\"$VM\",ConfigFilePath=\"$1\",RuntimeStateFilePath=\"$2\""; }
imp /etc/shadow /etc/shadow | grep -q "ImportReferencePointMetadata: 32769" || fail "M4: an import read /etc/shadow"
mkfifo "$T/roots/fifo"
J=$(jobpath "$(imp "$T/roots/fifo" "$T/roots/fifo")")
[ "$(waitjob "$J")" = 10 ] || fail "M3: an import from a FIFO did not end"
wbemcli gi "http://w:wpass@127.0.0.1:$PORT/$J" | grep -q "not a regular file" || fail "the FIFO's error: $(wbemcli gi "http://w:wpass@127.0.0.1:$PORT/$J")"
printf 'SECRETWORD is here\n' >"$T/roots/secret.txt"
J=$(jobpath "$(imp "$T/roots/secret.txt" "$T/roots/secret.txt")")
[ "$(waitjob "$J")" = 10 ] || fail "import of a text file"
wbemcli gi "http://w:wpass@127.0.0.1:$PORT/$J" >"$T/job"
grep -q "not a refpoint" "$T/job" || fail "the error does not say what is wrong: $(cat "$T/job")"
grep -q SECRETWORD "$T/job" && fail "M4: the error quotes the file's content"
# M1: ".." after a symlink that points deeper inside the root
mkdir -p "$T/roots/deep/a/b" "$T/outside"; ln -s "$T/roots/deep/a/b" "$T/roots/sub"
out=$(wbemcli cm "$SVC" "ExportReferencePoint.ReferencePoint=Msvm_VirtualSystemReferencePoint.InstanceID=\"$R1\",ExportDirectory=\"$T/roots/sub/../../outside\"")
echo "$out" | grep -q "ExportReferencePoint: 32769" || fail "M1: an export directory with .. was accepted: $out"
[ -z "$(ls -A "$T/outside")" ] || fail "M1: an export landed outside the root"
ok "import metadata only from regular files under the roots, errors never quote content; no .. in export directories"

# L3: a user name cannot forge log lines; L1: a password removed from the
# file stops working at once (the login cache follows the file); L10: a
# --listen that is not a socket or has junk after the port is refused
curl -s -o /dev/null -u "$(printf 'x\nrefpointd: authentication succeeded for admin')":y -X POST -H 'CIMOperation: MethodCall' --data x "http://127.0.0.1:$PORT/cimom"
grep -q '^refpointd: authentication succeeded for admin' "$T/d.log" && fail "L3: a forged log line"
grep -q 'authentication failed for x\\x0arefpointd' "$T/d.log" || fail "L3: the name is not escaped: $(grep 'failed for x' "$T/d.log")"
printf 'l1:%s\n' "$(openssl passwd -6 l1pass)" >>"$T/passwd"
code() { curl -s -o /dev/null -w '%{http_code}' -u "$1" -X POST -H 'CIMOperation: MethodCall' --data x "http://127.0.0.1:$PORT/cimom"; }
[ "$(code l1:l1pass)" = 400 ] || fail "a new user of the password file"
grep -v '^l1:' "$T/passwd" >"$T/passwd.new"; cat "$T/passwd.new" >"$T/passwd"
[ "$(code l1:l1pass)" = 401 ] || fail "L1: a user removed from the password file is still served (login cache)"
echo keep >"$T/victim.txt"
if "$BUILD/refpointd" --state-dir "$T/st-x" --listen "unix:$T/victim.txt" 2>"$T/x.log"; then fail "L10: --listen on a regular file started"; fi
[ "$(cat "$T/victim.txt")" = keep ] || fail "L10: --listen deleted a regular file"
if timeout 5 "$BUILD/refpointd" --state-dir "$T/st-x" --listen "http://127.0.0.1:$((PORT + 7))x" --auth "file:$T/passwd" 2>"$T/x.log"; then fail "L10: a port with junk started"; fi
ok "log lines cannot be forged; the login cache follows the password file; --listen checked"

# a clean stop, and no sanitizer report in its log (under make test's ASan build)
kill -TERM $DPID; wait $DPID || fail "refpointd exited with $? on SIGTERM"
if grep -q "Sanitizer" "$T/d.log"; then cat "$T/d.log"; fail "sanitizer report from refpointd"; fi
ok "refpointd stops cleanly on SIGTERM"
