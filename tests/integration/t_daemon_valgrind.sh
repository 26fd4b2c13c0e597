# refpointd under valgrind (memcheck): a few requests of each kind, a job,
# bad input, then SIGTERM; any memory error fails the test.
. "$(dirname "$0")/lib.sh"
command -v valgrind >/dev/null || skip "valgrind not installed"
command -v wbemcli >/dev/null || skip "wbemcli not installed"
[ -f "$BUILD/build.ninja" ] && grep -q "fsanitize=address" "$BUILD/build.ninja" && skip "ASan build: valgrind runs on the plain build"
S=$((8 * 1024 * 1024))
mkdisk a $S; rand_writes a $S 3
rp vm add v --disk a.qcow2 >/dev/null
VM=$(jfield "$(rpj vm show v)" Name)
printf 'w:%s\n' "$(openssl passwd -6 wpass)" >"$T/passwd"
mkdir -p "$T/roots"
PORT=$((20000 + RANDOM % 20000))
valgrind -q --error-exitcode=99 --leak-check=no --log-file="$T/vg.log" \
  "$BUILD/refpointd" --state-dir "$STATE" --listen "http://127.0.0.1:$PORT" --auth "file:$T/passwd" \
  --export-root "$T/roots" 2>"$T/d.log" & DPID=$!
for i in $(seq 150); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.2; done
U=http://w:wpass@127.0.0.1:$PORT/root/virtualization/v2
SVC="$U:Msvm_VirtualSystemReferencePointService.CreationClassName=\"Msvm_VirtualSystemReferencePointService\",Name=\"refpoint\""
wbemcli ei "$U:Msvm_ComputerSystem" | grep -q "$VM" || fail "ei"
wbemcli gc "$U:Msvm_VirtualSystemReferencePointService" >/dev/null || fail "gc"
out=$(wbemcli cm "$SVC" "CreateReferencePoint.AffectedSystem=Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name=\"$VM\"")
echo "$out" | grep -q 4096 || fail "create: $out"
for i in $(seq 100); do [ -n "$(rp rp list v)" ] && break; sleep 0.2; done
R=$(rp rp list v | cut -d' ' -f1)
out=$(wbemcli cm "$SVC" "ExportReferencePoint.ReferencePoint=Msvm_VirtualSystemReferencePoint.InstanceID=\"$R\",ExportDirectory=\"$T/roots/bk\"")
for i in $(seq 450); do [ -f "$T/roots/bk/${R#Microsoft:}/manifest.json" ] && break; sleep 0.2; done
[ -f "$T/roots/bk/${R#Microsoft:}/manifest.json" ] || fail "export job did not finish"
wbemcli ei "$U:Msvm_ConcreteJob" >/dev/null || fail "ei jobs"
curl -s -o /dev/null -u w:wpass -X POST -H 'CIMOperation: MethodCall' --data '<CIM><bad' "http://127.0.0.1:$PORT/cimom"
curl -s -o /dev/null -u w:wrong -X POST -H 'CIMOperation: MethodCall' --data 'x' "http://127.0.0.1:$PORT/cimom"
sleep 1
kill -TERM $DPID; set +e; wait $DPID; rc=$?; set -e
[ $rc -eq 0 ] || { cat "$T/vg.log"; fail "refpointd under valgrind exited with $rc"; }
[ ! -s "$T/vg.log" ] || { cat "$T/vg.log"; fail "valgrind reported errors"; }
ok "no memory errors under valgrind across enumerate, GetClass, jobs, bad input, bad login"
