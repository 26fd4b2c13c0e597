# refpointd --auth pam: a throw-away local user and PAM service (root only;
# both are removed again), Basic auth checked by PAM with wbemcli.
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || skip "needs root to add a test user and a PAM service"
command -v wbemcli >/dev/null || skip "wbemcli not installed"
command -v useradd >/dev/null && command -v chpasswd >/dev/null || skip "useradd/chpasswd missing"
[ -f /etc/pam.d/common-auth ] || skip "no /etc/pam.d/common-auth"
U=rptest$$; SVC=refpointd-test-$$
DPID=
trap 'rc=$?; userdel "$U" 2>/dev/null; rm -f /etc/pam.d/'"$SVC"'; [ -n "$DPID" ] && kill $DPID 2>/dev/null; cleanup $rc' EXIT
useradd -M -s /usr/sbin/nologin "$U"
cp "$SRC/config/refpointd.pam" /etc/pam.d/$SVC
echo "$U:pampass" | chpasswd
PORT=$((20000 + RANDOM % 20000))
"$BUILD/refpointd" --state-dir "$STATE" --auth "pam:$SVC" --listen "http://127.0.0.1:$PORT" 2>"$T/d.log" & DPID=$!
for i in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
wbemcli ecn "http://$U:pampass@127.0.0.1:$PORT/root/virtualization/v2" | grep -q Msvm_ComputerSystem || fail "PAM user refused: $(cat "$T/d.log")"
code=$(curl -s -o /dev/null -w '%{http_code}' -u "$U:wrong" -X POST -H 'CIMOperation: MethodCall' --data x "http://127.0.0.1:$PORT/cimom")
[ "$code" = 401 ] || fail "wrong PAM password: HTTP $code"
ok "PAM authentication: right password served, wrong one 401"
