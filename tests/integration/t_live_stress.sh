# Stress: many capture/export cycles on a running VM (real qemu-system-x86_64)
# while a busy guest writer never stops. Per cycle: a reference point, an
# incremental export on the previous one (the first is full) and, every
# third cycle, a full export of the same RP running at the same time as the
# incremental one; older RPs are destroyed or lose their data along the
# way, live. Every export is restored and matched against the writer's log:
# it must equal the disk at one instant within its rp create.
# LIVE_STRESS_CYCLES (default 12).
. "$(dirname "$0")/lib.sh"
need_qemu_system
N=${LIVE_STRESS_CYCLES:-12}
S=$((48 * 1024 * 1024))
mkdisk a $S; rand_writes a $S 8
cp a.raw a.base.raw
g() { echo "${1#Microsoft:}"; }
VM_CACHE=writeback vm_start v a.qcow2
rp vm add vm1 --disk a.qcow2 --qmp "$T/v.qmp" >/dev/null
writer_start v vd0 $S $RANDOM "$T/w.log"
declare -a RP T0 T1
prev=
for c in $(seq 1 "$N"); do
  T0[$c]=$(now_ns); RP[$c]=$(rp rp create vm1) || fail "cycle $c: create"; T1[$c]=$(now_ns)
  if [ -z "$prev" ]; then
    rp export "${RP[$c]}" "$T/bk" >/dev/null || fail "cycle $c: full export"
  else
    if [ $((c % 3)) = 0 ]; then
      rp export "${RP[$c]}" "$T/full$c" >"$T/full.out" 2>&1 &
      FP=$!
    fi
    rp export "${RP[$c]}" "$T/bk" --base "$prev" >/dev/null || fail "cycle $c: incremental export"
    if [ $((c % 3)) = 0 ]; then wait $FP || fail "cycle $c: concurrent full export: $(cat "$T/full.out")"; fi
  fi
  # release older data live: destroy the RP two back now and then, or drop its data
  if [ "$c" -ge 3 ]; then
    old=${RP[$((c - 2))]}
    if [ $((c % 2)) = 0 ]; then rp rp remove-data "$old" || fail "cycle $c: remove-data"
    else rp rp destroy "$old" || fail "cycle $c: destroy"; fi
  fi
  prev=${RP[$c]}
done
writer_stop v
echo "$(wc -l <"$T/w.log") guest writes during $N cycles"
k=-1
for c in $(seq 1 "$N"); do
  d=$T/bk/$(g "${RP[$c]}")
  to_raw "$(ls "$d"/disk-*.qcow2)" "$T/r.raw"
  "$GIO" match "$T/r.raw" a.base.raw "$T/w.log" "${T0[$c]}" "${T1[$c]}" >"$T/m" || fail "cycle $c: chain export is no instant of the disk"
  m=$(awk '{print $2}' "$T/m"); [ "$m" -gt "$k" ] || fail "cycle $c: prefix $m not after $k"; k=$m
  if [ -d "$T/full$c" ]; then
    to_raw "$(ls "$T/full$c/$(g "${RP[$c]}")"/disk-*.qcow2)" "$T/f.raw"
    cmp -s "$T/f.raw" "$T/r.raw" || fail "cycle $c: concurrent full export differs from the chain"
  fi
done
vm_kill v
ok "$N cycles: every export (chained incrementals, concurrent fulls) exact at its instant"
