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
"$BUILD/refpointd" --state-dir "$STATE" --listen "http://127.0.0.1:$PORT" --export-root "$T/roots" 2>"$T/d.log" &
DPID=$!
trap 'rc=$?; kill $DPID 2>/dev/null || true; wait $DPID 2>/dev/null || true; (exit $rc); cleanup' EXIT
for i in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
U=http://127.0.0.1:$PORT/root/virtualization/v2
SVC="$U:Msvm_VirtualSystemReferencePointService.CreationClassName=\"Msvm_VirtualSystemReferencePointService\",Name=\"refpoint\""

wbemcli ei "$U:Msvm_ComputerSystem" | grep -q "Name=\"$VM\",ElementName=\"web\"" || fail "ei Msvm_ComputerSystem"
wbemcli gi "$U:Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name=\"$VM\"" | grep -q 'ElementName="web"' || fail "gi"
wbemcli gc "$U:Msvm_VirtualSystemReferencePointService" >/dev/null || fail "gc"
wbemcli ecn "$U" | grep -q Msvm_VirtualSystemReferencePoint || fail "ecn"
ok "enumerate, get instance, get class"

# a job path from wbemcli cm output: host:port/ns:Class.InstanceID="..."
jobpath() { echo "$1" | grep -o 'Job (reference): [^ ]*' | sed 's/^Job (reference): //; s|^[^/]*/root/virtualization/v2|root/virtualization/v2:|; s|v2::|v2:|'; }
waitjob() { # JOBPATH -> final JobState
  local i st
  for i in $(seq 600); do
    st=$(wbemcli gi "http://127.0.0.1:$PORT/$1" | grep -o 'JobState=[0-9]*' | cut -d= -f2)
    [ "$st" != 4 ] && { echo "$st"; return; }
    sleep 0.1
  done
  echo timeout
}
out=$(wbemcli cm "$SVC" "CreateReferencePoint.AffectedSystem=Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name=\"$VM\",ReferencePointType=2")
echo "$out" | grep -q "CreateReferencePoint: 4096" || fail "CreateReferencePoint: $out"
J=$(jobpath "$out")
[ "$(waitjob "$J")" = 7 ] || fail "create job did not complete: $(wbemcli gi "http://127.0.0.1:$PORT/$J")"
wbemcli gi "http://127.0.0.1:$PORT/$J" | grep -q 'JobType=201' || fail "JobType 201"
R1=$(wbemcli ai -arc Msvm_VirtualSystemReferencePoint "http://127.0.0.1:$PORT/$J" | grep -o 'InstanceID="Microsoft:[^"]*"' | head -n1 | cut -d'"' -f2)
[ -n "$R1" ] || fail "the created RP is not an associator of its job"
snap_mirror a 1; rand_writes a $S 10
wbemcli ei "$U:Msvm_VirtualSystemReferencePoint" | grep -q "InstanceID=\"$R1\"" || fail "ei RPs"
out=$(wbemcli cm "$SVC" "ExportReferencePoint.ReferencePoint=Msvm_VirtualSystemReferencePoint.InstanceID=\"$R1\",ExportDirectory=\"$T/roots/bk\"")
echo "$out" | grep -q "ExportReferencePoint: 4096" || fail "export: $out"
J=$(jobpath "$out")
[ "$(waitjob "$J")" = 7 ] || fail "export job: $(wbemcli gi "http://127.0.0.1:$PORT/$J")"
wbemcli gi "http://127.0.0.1:$PORT/$J" >"$T/job"
grep -q 'PercentComplete=100' "$T/job" && grep -q 'JobType=203' "$T/job" && grep -q "ReferencePointId=\"$R1\"" "$T/job" || fail "export job properties: $(cat "$T/job")"
grep -q "ExportedLogFilePaths=\"$T/roots/bk/${R1#Microsoft:}/disk-" "$T/job" || fail "ExportedLogFilePaths: $(cat "$T/job")"
qemu-img convert -O raw "$T/roots/bk/${R1#Microsoft:}"/disk-*.qcow2 x.raw; cmp x.raw a.1.raw || fail "full export data"
ok "CreateReferencePoint and a full ExportReferencePoint through wbemcli, data exact"

J=$(jobpath "$(wbemcli cm "$SVC" "CreateReferencePoint.AffectedSystem=Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name=\"$VM\"")")
[ "$(waitjob "$J")" = 7 ] || fail "second create"
R2=$(wbemcli ai -arc Msvm_VirtualSystemReferencePoint "http://127.0.0.1:$PORT/$J" | grep -o 'InstanceID="Microsoft:[^"]*"' | head -n1 | cut -d'"' -f2)
snap_mirror a 2; rand_writes a $S 5
call() { # method params-xml -> response body
  curl -s -X POST "http://127.0.0.1:$PORT/cimom" -H 'Content-Type: application/xml; charset="utf-8"' \
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

# a failing job: exporting R1 again into the same root -> JobState 10, GetError explains
out=$(wbemcli cm "$SVC" "ExportReferencePoint.ReferencePoint=Msvm_VirtualSystemReferencePoint.InstanceID=\"$R1\",ExportDirectory=\"$T/roots/bk\"")
J=$(jobpath "$out")
[ "$(waitjob "$J")" = 10 ] || fail "failing export job should end in 10"
wbemcli gi "http://127.0.0.1:$PORT/$J" | grep -q 'ErrorCode=32773' || fail "ErrorCode of the failed job"
wbemcli cm "http://127.0.0.1:$PORT/$J" GetError | grep -q "already holds a complete export" || fail "GetError"
ok "a failed job: JobState 10, ErrorCode, GetError with an embedded Msvm_Error"

# cancel a running export: RequestStateChange(4) -> JobState 8, nothing left
mkdisk big $((1024 * 1024 * 1024))
qemu-io -f qcow2 -c "write -q -P 0x44 0 700M" big.qcow2 >/dev/null
rp vm add big --disk big.qcow2 >/dev/null
RB=$(rp rp create big)
out=$(wbemcli cm "$SVC" "ExportReferencePoint.ReferencePoint=Msvm_VirtualSystemReferencePoint.InstanceID=\"$RB\",ExportDirectory=\"$T/roots/cancel\"")
J=$(jobpath "$out")
sleep 0.3
wbemcli cm "http://127.0.0.1:$PORT/$J" "RequestStateChange.RequestedState=4" | grep -q "RequestStateChange: 0" || echo "note: the export ended before the cancel"
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
  curl -s -X POST "http://127.0.0.1:$PORT/cimom" -H 'CIMOperation: MethodCall' -H 'CIMMethod: ExecQuery' \
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
set +e; wbemcli ei "http://127.0.0.1:$PORT/root/other:Msvm_ComputerSystem" 2>"$T/e"; set -e
grep -q "(3) CIM_ERR_INVALID_NAMESPACE" "$T/e" || fail "namespace: $(cat "$T/e")"
ok "CIM return codes: 32769 outside the roots (symlinks too), 32773, CIM errors 3, 5, 6, 7"

hdr() { curl -s -o /dev/null -D - -X POST "http://127.0.0.1:$PORT/cimom" "$@" | tr -d '\r'; }
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

# a clean stop, and no sanitizer report in its log (under make test's ASan build)
kill -TERM $DPID; wait $DPID || fail "refpointd exited with $? on SIGTERM"
if grep -q "Sanitizer" "$T/d.log"; then cat "$T/d.log"; fail "sanitizer report from refpointd"; fi
ok "refpointd stops cleanly on SIGTERM"
