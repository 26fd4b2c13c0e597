# F6 of the crash campaign: a full state directory gets a sentence that says
# so (NO_SPACE, "the state directory … is full"), not "disk I/O error" or a
# word about the export device, and nothing is half made.
. "$(dirname "$0")/lib.sh"
S=$((8 * 1024 * 1024))
mkdisk a $S; rand_writes a $S 3
mkdir -p "$T/st"
mount -t tmpfs -o size=4m tmpfs "$T/st" 2>/dev/null || skip "cannot mount a tmpfs here (needs root)"
R() { "$BUILD/refpoint" --state-dir "$T/st/state" --quiet "$@"; }
R vm add vm --disk a.qcow2 >/dev/null
R1=$(R rp create vm)
dd if=/dev/zero of="$T/st/fill" bs=4k status=none 2>/dev/null || true   # until ENOSPC
if R rp create vm >"$T/out" 2>"$T/err"; then fail "a create with a full state directory succeeded"; fi
grep -q "No space left on the device" "$T/err" && grep -q "state directory .*st/state is full" "$T/err" ||
  fail "F6: the message does not say the state directory is full: $(cat "$T/err")"
grep -qi "export device\|disk I/O error" "$T/err" && fail "F6: misleading words: $(cat "$T/err")"
rm -f "$T/st/fill"
[ "$(R rp list vm | wc -l)" = 1 ] || fail "the failed create left an RP: $(R rp list vm)"
qemu-img snapshot -l a.qcow2 | grep -c refpoint-rp- | grep -q '^1$' || fail "the failed create left a snapshot"
R2=$(R rp create vm)
R export "$R2" "$T/bk" >/dev/null
ok "a full state directory: NO_SPACE naming it, nothing half made, fine again once there is room"
