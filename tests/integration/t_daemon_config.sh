# refpointd --config: the example file's shape, command line on top, and
# clear errors with line numbers for bad files.
. "$(dirname "$0")/lib.sh"
command -v wbemcli >/dev/null || skip "wbemcli not installed"
mkdisk a $((8 * 1024 * 1024))
rp vm add v --disk a.qcow2 >/dev/null
printf 'w:%s\n' "$(openssl passwd -6 wpass)" >"$T/passwd"
mkdir -p "$T/roots"
PORT=$((20000 + RANDOM % 20000))
cat >"$T/r.conf" <<CONF
# test configuration
state-dir = $STATE
listen = http://127.0.0.1:$PORT
  auth = file:$T/passwd
export-root = $T/roots
timeout = 5
CONF
"$BUILD/refpointd" --config "$T/r.conf" --listen "unix:$T/s.sock" 2>"$T/d.log" & DPID=$!
trap 'rc=$?; kill $DPID 2>/dev/null || true; cleanup $rc' EXIT
for i in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
wbemcli ei "http://w:wpass@127.0.0.1:$PORT/root/virtualization/v2:Msvm_ComputerSystem" | grep -q 'ElementName="v"' || fail "config listener: $(cat "$T/d.log")"
[ -S "$T/s.sock" ] || fail "command-line listener not added"
ok "settings from --config, and a listener added on the command line"
bad() { # text expected-message
  printf '%s\n' "$1" >"$T/bad.conf"
  set +e; "$BUILD/refpointd" --config "$T/bad.conf" 2>"$T/e"; rc=$?; set -e
  [ $rc -ne 0 ] && grep -q "$2" "$T/e" || fail "bad config '$1': rc $rc, $(cat "$T/e")"
}
bad "listen" "line 1: expected 'key = value'"
bad "# ok
colour = blue" "unknown setting 'colour'"
bad "timeout = 0" "timeout must be"
bad "auth = magic" "auth is pam"
bad "export-root = $T/nope" "export root"
bad "state-dir =" "line 1: state-dir has no value"
ok "bad config files: exit non-zero with the line and the reason"
