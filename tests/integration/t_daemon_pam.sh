# refpointd --auth pam: throw-away local users, group and PAM service (root
# only; all removed again), Basic auth checked by PAM with wbemcli. H3 of
# the security audit: PAM authenticates every account, so refpointd admits
# root and members of an allow-group only (403 for the others), and the
# shipped PAM file refuses accounts with a nologin shell.
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || skip "needs root to add test users and a PAM service"
command -v wbemcli >/dev/null || skip "wbemcli not installed"
command -v useradd >/dev/null && command -v chpasswd >/dev/null || skip "useradd/chpasswd missing"
[ -f /etc/pam.d/common-auth ] || skip "no /etc/pam.d/common-auth"
U=rptest$$; N=rpnol$$; G=rpgrp$$; SVC=refpointd-test-$$
DPID=
trap 'rc=$?; userdel "$U" 2>/dev/null; userdel "$N" 2>/dev/null; groupdel "$G" 2>/dev/null; rm -f /etc/pam.d/'"$SVC"'; [ -n "$DPID" ] && kill $DPID 2>/dev/null; cleanup $rc' EXIT
groupadd "$G"
useradd -M -s /bin/sh "$U"
useradd -M -s /usr/sbin/nologin -G "$G" "$N"
cp "$SRC/config/refpointd.pam" /etc/pam.d/$SVC
echo "$U:pampass" | chpasswd
echo "$N:nolpass" | chpasswd
PORT=$((20000 + RANDOM % 20000))
start() { "$BUILD/refpointd" --state-dir "$STATE" --auth "pam:$SVC" --listen "http://127.0.0.1:$PORT" "$@" 2>>"$T/d.log" & DPID=$!
  for i in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done; }
stop() { kill $DPID; wait $DPID 2>/dev/null || true; DPID=; }
code() { curl -s -o /dev/null -w '%{http_code}' -u "$1" -X POST -H 'CIMOperation: MethodCall' --data x "http://127.0.0.1:$PORT/cimom"; }
start
[ "$(code "$U:pampass")" = 403 ] || fail "H3: an account outside any allow-group was served: $(code "$U:pampass")"
grep -q "$U authenticated but is not allowed" "$T/d.log" || fail "the refusal is not logged"
[ "$(code "$U:wrong")" = 401 ] || fail "wrong PAM password"
ok "PAM alone is not enough: an authenticated account outside root and the allow-groups gets 403, a wrong password 401"
stop
usermod -aG "$G" "$U"
start --allow-group "$G"
wbemcli ecn "http://$U:pampass@127.0.0.1:$PORT/root/virtualization/v2" | grep -q Msvm_ComputerSystem || fail "a member of the allow-group was refused: $(tail -3 "$T/d.log")"
[ "$(code "$U:wrong")" = 401 ] || fail "wrong PAM password: HTTP $(code "$U:wrong")"
[ "$(code "$N:nolpass")" = 401 ] || fail "H3: an account with a nologin shell (in the allow-group) was served"
ok "allow-group: its members are served (wbemcli), a nologin account is refused by the shipped PAM file"
