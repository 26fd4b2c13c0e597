# Several processes use one state directory at once: different VMs proceed
# in parallel, the same VM gets 32774 or succeeds, never a corrupt store.
. "$(dirname "$0")/lib.sh"
S=$((8 * 1024 * 1024))
for i in 1 2 3 4; do mkdisk d$i $S; rand_writes d$i $S 3; rp vm add vm$i --disk d$i.qcow2 >/dev/null; done
pids=()
for i in 1 2 3 4; do
  ( for k in 1 2 3; do "$BUILD/refpoint" --state-dir "$STATE" --quiet rp create vm$i >/dev/null || exit 1; done ) &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "parallel creates on different VMs failed"; done
[ "$(rp rp list | wc -l)" = 12 ] || fail "expected 12 RPs, got $(rp rp list | wc -l)"
ok "12 reference points created by 4 processes at once"

# the same VM from 4 processes: each either succeeds or gets 32774
for i in 1 2 3 4; do
  ( rc=0; "$BUILD/refpoint" --state-dir "$STATE" --quiet rp create vm1 >"$T/o$i" 2>"$T/e$i" || rc=$?; echo $rc >"$T/rc$i" ) &
done
wait
okc=0
for i in 1 2 3 4; do
  rc=$(cat "$T/rc$i")
  if [ "$rc" = 0 ]; then okc=$((okc + 1)); else grep -q ": 32774 " "$T/e$i" || fail "unexpected error: $(cat "$T/e$i")"; fi
done
[ $okc -ge 1 ] || fail "no create succeeded"
n=$(rp rp list vm1 | wc -l)
[ "$n" = $((3 + okc)) ] || fail "vm1 has $n RPs, expected $((3 + okc))"
[ "$(qemu-img snapshot -l d1.qcow2 | grep -c refpoint-rp-)" = "$n" ] || fail "snapshots and store disagree"
sqlite3 "$STATE/refpoint.db" "PRAGMA integrity_check" 2>/dev/null | grep -q ok || [ ! -x "$(command -v sqlite3)" ] || fail "store integrity"
ok "same VM from 4 processes: $okc succeeded, the rest got 32774, store and disks agree"

# the same RP exported into the same root by 3 processes at once: one
# export lands, the others say it already exists; nothing half-made remains
R=$(rp rp list vm2 | head -n1 | cut -d' ' -f1)
for i in 1 2 3; do
  ( rc=0; "$BUILD/refpoint" --state-dir "$STATE" --quiet export "$R" "$T/same" >/dev/null 2>"$T/xe$i" || rc=$?; echo $rc >"$T/xrc$i" ) &
done
wait
won=0
for i in 1 2 3; do
  if [ "$(cat "$T/xrc$i")" = 0 ]; then won=$((won + 1)); else grep -q ": 32773 .*already holds a complete export" "$T/xe$i" || fail "concurrent export: $(cat "$T/xe$i")"; fi
done
[ $won = 1 ] || fail "$won concurrent exports claim success"
rp verify "$T/same/${R#Microsoft:}" >/dev/null
[ -z "$(ls -A "$T/same" | grep '^\.' || true)" ] || fail "partial folders left: $(ls -A "$T/same")"
ok "3 concurrent exports of one RP into one root: 1 landed, 2 refused, no leftovers"
