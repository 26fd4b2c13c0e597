#!/usr/bin/env bash
# make bench-daemon — requests per second and latency of refpointd on loopback:
# GetInstance, EnumerateInstances of 1,000 reference points, ExecQuery, with
# 1 and 16 concurrent clients (wrk), and the daemon's idle RSS.
#   BENCH_VMS (default 50) x BENCH_RPS (20) reference points, BENCH_SECONDS (5)
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
W=${BENCH_DIR:-$TOP/bench/work-daemon}
NVM=${BENCH_VMS:-50}; NRP=${BENCH_RPS:-20}; SECS=${BENCH_SECONDS:-5}
rm -rf "$W"; mkdir -p "$W"; cd "$W"
R() { "$TOP/build/refpoint" --state-dir "$W/state" --quiet "$@"; }
echo "# $NVM VMs x $NRP reference points"
for v in $(seq "$NVM"); do
  qemu-img create -q -f qcow2 d$v.qcow2 16M
  R vm add vm$v --disk d$v.qcow2 >/dev/null
done
make_rps() { for k in $(seq "$NRP"); do R rp create "vm$1" >/dev/null; done; }
for v in $(seq "$NVM"); do make_rps "$v" & if (( v % 2 == 0 )); then wait; fi; done; wait
echo "# $(R rp list | wc -l) reference points"
R rp list >/dev/null   # first read records the disk signatures
printf 'b:%s\n' "$(openssl passwd -6 b)" >passwd
PORT=$((30000 + RANDOM % 10000))
"$TOP/build/refpointd" --state-dir "$W/state" --listen "http://127.0.0.1:$PORT" --auth file:passwd 2>d.log & DPID=$!
trap 'kill $DPID 2>/dev/null; cd /; rm -rf "$W"' EXIT
for i in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
sleep 1
echo "idle RSS: $(ps -o rss= -p $DPID) KiB"
VM=$(R --json vm show vm1 | grep -o '"Name": "[^"]*"' | cut -d'"' -f4)
body() { # intrinsic method, inner params
  printf '<?xml version="1.0" encoding="utf-8" ?><CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLEREQ><IMETHODCALL NAME="%s"><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="virtualization"/><NAMESPACE NAME="v2"/></LOCALNAMESPACEPATH>%s</IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>' "$1" "$2"
}
body GetInstance "<IPARAMVALUE NAME=\"InstanceName\"><INSTANCENAME CLASSNAME=\"Msvm_ComputerSystem\"><KEYBINDING NAME=\"CreationClassName\"><KEYVALUE>Msvm_ComputerSystem</KEYVALUE></KEYBINDING><KEYBINDING NAME=\"Name\"><KEYVALUE>$VM</KEYVALUE></KEYBINDING></INSTANCENAME></IPARAMVALUE>" >gi.xml
body EnumerateInstances '<IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="Msvm_VirtualSystemReferencePoint"/></IPARAMVALUE>' >ei.xml
body ExecQuery "<IPARAMVALUE NAME=\"QueryLanguage\"><VALUE>WQL</VALUE></IPARAMVALUE><IPARAMVALUE NAME=\"Query\"><VALUE>SELECT * FROM Msvm_ComputerSystem WHERE ElementName = 'vm7'</VALUE></IPARAMVALUE>" >eq.xml
[ "$(curl -s -u b:b -H 'CIMOperation: MethodCall' --data-binary @ei.xml "http://127.0.0.1:$PORT/cimom" | grep -o '<VALUE.NAMEDINSTANCE>' | wc -l)" = $((NVM * NRP)) ] || { echo "EnumerateInstances does not return every RP"; exit 1; }
lua() { # file -> wrk script
  cat <<LUA
wrk.method = "POST"
wrk.headers["CIMOperation"] = "MethodCall"
wrk.headers["Content-Type"] = 'application/xml; charset="utf-8"'
wrk.headers["Authorization"] = "Basic Yjpi"
local f = io.open("$1", "r"); wrk.body = f:read("*a"); f:close()
LUA
}
for op in gi eq ei; do
  lua $op.xml >$op.lua
  for c in 1 16; do
    out=$(wrk -t $((c < 2 ? 1 : 2)) -c $c -d ${SECS}s --latency -s $op.lua "http://127.0.0.1:$PORT/cimom")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    errs=$(echo "$out" | grep -c "Non-2xx" || true)
    printf '%-20s %2d clients: %9s req/s  p50 %8s  p99 %8s%s\n' \
      "$(case $op in gi) echo GetInstance;; eq) echo ExecQuery;; ei) echo "EnumInst($((NVM * NRP)) RPs)";; esac)" \
      "$c" "$rps" "$p50" "$p99" "$([ "$errs" = 0 ] || echo '  (non-2xx answers!)')"
  done
done
echo "RSS after the runs: $(ps -o rss= -p $DPID) KiB"
