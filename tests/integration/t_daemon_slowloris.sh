# H2 of the security audit: 70 slow-loris connections without credentials
# (a header byte every 2 s) must not lock TCP clients out: at most 16
# connections per client address are taken, each must complete its headers
# within 10 s of accept or the daemon closes it (whatever trickles in), and
# a legitimate client is served meanwhile.
. "$(dirname "$0")/lib.sh"
command -v wbemcli >/dev/null || skip "wbemcli (sblim-wbemcli) not installed"
command -v openssl >/dev/null || skip "openssl not installed"
PORT=$((20000 + RANDOM % 20000))
printf 'w:%s\n' "$(openssl passwd -6 wpass)" >"$T/passwd"
"$BUILD/refpointd" --state-dir "$STATE" --listen "http://127.0.0.1:$PORT" --auth "file:$T/passwd" --timeout 30 2>"$T/d.log" &
DPID=$!
trap 'rc=$?; kill $DPID 2>/dev/null || true; wait $DPID 2>/dev/null || true; cleanup $rc' EXIT
for i in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
/usr/bin/python3 - "$PORT" >"$T/loris.out" 2>&1 <<'PY' &
import socket, sys, time
port = int(sys.argv[1])
ss = []
for _ in range(70):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
        s.sendall(b"POST /cimom HTTP/1.1\r\nHost: x\r\n")
        ss.append(s)
    except OSError:
        pass
t0 = time.time(); alive = len(ss); i = 0
while time.time() - t0 < 16 and alive:
    alive = 0
    for s in ss:
        try:
            s.send(b"X-Slow: a\r\n"[i % 11:i % 11 + 1])
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    raise OSError("closed")
            except BlockingIOError:
                pass
            s.setblocking(True)
            alive += 1
        except OSError:
            pass
    i += 1
    print("t=%.1f alive=%d" % (time.time() - t0, alive), flush=True)
    time.sleep(2)
print("final alive=%d" % alive, flush=True)
PY
LPID=$!
sleep 1
served=0 t0=$(date +%s)
while [ $(( $(date +%s) - t0 )) -lt 20 ]; do
  if [ "$(curl -s -m 3 -o /dev/null -w '%{http_code}' -u w:wpass -X POST -H 'CIMOperation: MethodCall' --data x "http://127.0.0.1:$PORT/cimom")" = 400 ]; then
    served=1; break   # (400: the body "x" is no CIM-XML; what counts is that it was read and answered)
  fi
  sleep 0.5
done
took=$(( $(date +%s) - t0 ))
wait $LPID || true
[ $served = 1 ] || fail "H2: no legitimate request was served while the slow clients held on: $(tail -3 "$T/loris.out")"
grep -q "final alive=0" "$T/loris.out" || fail "H2: slow clients still connected after 16 s: $(tail -3 "$T/loris.out")"
grep -q "dropped a client that did not send its request headers within 10 s" "$T/d.log" || fail "the drop is not logged"
kill -0 $DPID || fail "the daemon died"
wbemcli ecn "http://w:wpass@127.0.0.1:$PORT/root/virtualization/v2" | grep -q Msvm_ComputerSystem || fail "wbemcli after the slow clients"
ok "70 slow-loris connections: 16 taken, closed by the 10 s header deadline; a legitimate client served after ${took} s"
