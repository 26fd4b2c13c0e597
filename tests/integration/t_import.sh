# ImportReferencePointMetadata after a restore: the chain continues.
# Full RP1, incremental RP2; restore the chain to new disks; a new VM on the
# restored disks; import RP2's metadata; more writes; RP3; incremental
# RP2 -> RP3 into the same backup root (its backing is RP2's sibling);
# the whole chain restores to the content at RP3, with stock qemu-img too.
. "$(dirname "$0")/lib.sh"
S0=$((64 * 1024 * 1024)) S1=$((32 * 1024 * 1024))
mkdisk a $S0; mkdisk b $S1
rand_writes a $S0 20; rand_writes b $S1 10
rp vm add src --disk a.qcow2 --disk b.qcow2 >/dev/null
g() { echo "${1#Microsoft:}"; }
R1=$(rp rp create src); rand_writes a $S0 10; rand_writes b $S1 5
R2=$(rp rp create src); snap_mirror a 2; snap_mirror b 2
rp export "$R1" "$T/bk" >/dev/null
rp export "$R2" "$T/bk" --base "$R1" >/dev/null
rpj restore "$T/bk/$(g "$R1")" "$T/bk/$(g "$R2")" --to "$T/new" >"$T/r.json"
# restored files in disk order of the source VM
A2=$(by_size $S0 "$T"/new/*.qcow2); B2=$(by_size $S1 "$T"/new/*.qcow2)
same a.2.raw "$A2"; same b.2.raw "$B2"
cp a.2.raw a2.raw; cp b.2.raw b2.raw   # mirrors of the restored disks
mv "$A2" a2.qcow2; mv "$B2" b2.qcow2
rp vm add restored --disk a2.qcow2 --disk b2.qcow2 >/dev/null

# wrong inputs first: nothing may change
expect_fail 32773 "not a refpoint" rp import-metadata restored "$T/bk/$(g "$R2")/manifest.json" "$T/bk/$(g "$R2")/runtime-state.json"
expect_fail 32773 "different reference points" rp import-metadata restored "$T/bk/$(g "$R2")/config.json" "$T/bk/$(g "$R1")/runtime-state.json"
expect_fail 32773 "already exists" rp import-metadata src "$T/bk/$(g "$R2")/config.json" "$T/bk/$(g "$R2")/runtime-state.json"
expect_fail 32773 "already exists" rp import-metadata restored "$T/bk/$(g "$R2")/config.json" "$T/bk/$(g "$R2")/runtime-state.json"
[ -z "$(rp rp list restored)" ] || fail "a failed import left a reference point"
qemu-img info a2.qcow2 | grep -q refpoint- && fail "a failed import touched the disk"
# the VM "moves": its reference point is destroyed on the old side first
rp rp destroy "$R2"

out=$(rpj import-metadata restored "$T/bk/$(g "$R2")/config.json" "$T/bk/$(g "$R2")/runtime-state.json")
echo "$out" | grep -q "\"InstanceID\": \"$R2\"" || fail "imported RP has another InstanceID: $out"
echo "$out" | grep -q '"HasAssociatedData": false' || fail "imported RP claims data"
echo "$out" | grep -q '"ChangeTrackingValid": true' || fail "imported RP is not a valid base"
ok "import re-creates $R2 on the restored VM"

rand_writes a2 $S0 15; rand_writes b2 $S1 8
R3=$(rp rp create restored); snap_mirror a2 3; snap_mirror b2 3
rand_writes a2 $S0 5
rp export "$R3" "$T/bk" --base "$R2" >/dev/null
for f in "$T/bk/$(g "$R3")"/disk-*.qcow2; do
  qemu-img info "$f" | grep -q "backing file: ../$(g "$R2")/" || fail "$f has no sibling backing file"
  qemu-img convert -O raw "$f" "$T/x.raw"
  if [ "$(stat -c %s "$T/x.raw")" = $S0 ]; then m=a2; else m=b2; fi
  cmp "$T/x.raw" "$m.3.raw" || fail "stock qemu-img restore of $f after import"
done
rp restore "$T/bk/$(g "$R1")" "$T/bk/$(g "$R2")" "$T/bk/$(g "$R3")" --to "$T/again" >/dev/null
for f in "$T"/again/*.qcow2; do
  if [ "$(vsize "$f")" = $S0 ]; then same a2.3.raw "$f"; else same b2.3.raw "$f"; fi
done
rp verify "$T"/bk/* >/dev/null
ok "chain RP1 -> RP2 -> (import) -> RP3 restores exactly"

# R1 belongs to the source VM: not a base for the restored VM's R3
expect_fail 32773 "another virtual system" rp export "$R3" "$T/bk2" --base "$R1"
ok "a base from another virtual system is refused"
