# Bit-for-bit chain test: several rounds of random writes (unaligned, zero
# writes, sizes from 1 byte to 1 MiB) on a VM with two disks (one with a
# size that is not a multiple of the cluster size), a reference point per
# round, full and incremental exports, an incremental that skips an RP, and
# writes after each RP that must not appear in its export. Every export is
# restored with stock qemu-img and with refpoint restore and compared with
# the raw mirror kept independently at each RP.
. "$(dirname "$0")/lib.sh"
S0=$((128 * 1024 * 1024)) S1=$((64 * 1024 * 1024 + 1536))
mkdisk a $S0; mkdisk b $S1
rand_writes a $S0 40; rand_writes b $S1 20
rp vm add vm1 --disk a.qcow2 --disk b.qcow2 >/dev/null
declare -a RPS
for round in 1 2 3 4 5; do
  RPS[$round]=$(rp rp create vm1)
  snap_mirror a $round; snap_mirror b $round
  rand_writes a $S0 25; rand_writes b $S1 10   # after the RP: must not leak
done
ok "5 reference points"
guid() { echo "${1#Microsoft:}"; }

# chain 1: full RP1, then RP2, RP3, RP4, RP5 each on the previous
rp export "${RPS[1]}" "$T/backup" >/dev/null
for r in 2 3 4 5; do rp export "${RPS[$r]}" "$T/backup" --base "${RPS[$((r - 1))]}" >/dev/null; done
# chain 2 (another root): full RP1, RP3 on RP1 (skips RP2), RP5 on RP3 (skips RP4)
rp export "${RPS[1]}" "$T/skip" >/dev/null
rp export "${RPS[3]}" "$T/skip" --base "${RPS[1]}" >/dev/null
rp export "${RPS[5]}" "$T/skip" --base "${RPS[3]}" >/dev/null
ok "exports written"

for r in 1 2 3 4 5; do
  d=$T/backup/$(guid "${RPS[$r]}")
  for f in "$d"/disk-*.qcow2; do
    qemu-img check -q "$f" || fail "qemu-img check $f"
  done
  # stock qemu-img: the newest file alone restores the disk (relative backing)
  n=0
  for f in "$d"/disk-*.qcow2; do
    qemu-img convert -O raw "$f" "$T/conv.raw"
    if [ "$(stat -c %s "$T/conv.raw")" = "$S0" ]; then m=a; else m=b; fi   # sizes tell the disks apart
    cmp "$T/conv.raw" "$m.$r.raw" || fail "RP$r disk $m: qemu-img convert of the chain differs"
    n=$((n + 1))
  done
  [ $n = 2 ] || fail "RP$r: expected 2 disk files, got $n"
done
ok "chain 1 restored by qemu-img convert equals the mirrors at RP1..RP5"

rp verify "$T"/backup/* >/dev/null || fail "verify chain 1"
chain=(); for r in 1 2 3 4 5; do chain+=("$T/backup/$(guid "${RPS[$r]}")"); done
rpj restore "${chain[@]}" --to "$T/restored" >"$T/restore.json"
for f in "$T"/restored/*.qcow2; do
  if [ "$(qemu-img info --output=json "$f" | grep -o '"virtual-size": [0-9]*' | grep -o '[0-9]*$')" = "$S0" ]; then m=a; else m=b; fi
  same "$m.5.raw" "$f"
done
grep -q "$T/restored" "$T/restore.json" || fail "restore --json names no file"
ok "refpoint restore of chain 1 equals RP5"

chain=("$T/skip/$(guid "${RPS[1]}")" "$T/skip/$(guid "${RPS[3]}")" "$T/skip/$(guid "${RPS[5]}")")
rp restore "${chain[@]}" --to "$T/restored-skip" >/dev/null
for f in "$T"/restored-skip/*.qcow2; do
  if [ "$(qemu-img info --output=json "$f" | grep -o '"virtual-size": [0-9]*' | grep -o '[0-9]*$')" = "$S0" ]; then m=a; else m=b; fi
  same "$m.5.raw" "$f"
done
rp restore "${chain[0]}" "${chain[1]}" --to "$T/restored-skip3" >/dev/null
for f in "$T"/restored-skip3/*.qcow2; do
  if [ "$(qemu-img info --output=json "$f" | grep -o '"virtual-size": [0-9]*' | grep -o '[0-9]*$')" = "$S0" ]; then m=a; else m=b; fi
  same "$m.3.raw" "$f"
done
rp verify "${chain[@]}" >/dev/null
ok "skip-an-RP chain (1 -> 3 -> 5) restores RP3 and RP5 exactly"

# an incremental holds only changed clusters: RP2's file is far smaller
full=$(du -k "$T/backup/$(guid "${RPS[1]}")" | cut -f1); inc=$(du -k "$T/backup/$(guid "${RPS[2]}")" | cut -f1)
[ "$inc" -lt "$full" ] || fail "incremental ($inc KiB) not smaller than full ($full KiB)"
# a restore with a gap in the chain is refused
if rp restore "$T/backup/$(guid "${RPS[1]}")" "$T/backup/$(guid "${RPS[3]}")" --to "$T/bad" 2>"$T/err"; then
  fail "restore accepted a chain with a gap"
fi
grep -q "not an increment" "$T/err" || fail "gap error unclear: $(cat "$T/err")"
ok "sizes and chain checks"
