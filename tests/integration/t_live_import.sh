# ImportReferencePointMetadata on a running VM (real qemu-system-x86_64):
# a chain exported from one VM, restored to new disks, a VM started on them
# and registered with its QMP socket, the RP imported through QMP (the new
# epoch is added before the old one stops), then, with a busy guest writing, a live RP and an incremental export on the imported RP; the restored
# chain must equal the disk at the live RP's instant.
. "$(dirname "$0")/lib.sh"
need_qemu_system
S=$((32 * 1024 * 1024))
mkdisk a $S; rand_writes a $S 15
rp vm add src --disk a.qcow2 >/dev/null
g() { echo "${1#Microsoft:}"; }
R1=$(rp rp create src)
rp export "$R1" "$T/bk" >/dev/null
rp rp destroy "$R1"          # the VM "moves"
rp restore "$T/bk/$(g "$R1")" --to "$T/new" >/dev/null
mv "$T"/new/*.qcow2 a2.qcow2
same a.raw a2.qcow2
qemu-img convert -O raw a2.qcow2 a2.base.raw
vm_start v a2.qcow2
rp vm add moved --disk a2.qcow2 --qmp "$T/v.qmp" >/dev/null
# the disk must hold exactly the RP's content when it is imported: the guest
# writes after that (writes racing the import would belong to neither side)
rp import-metadata moved "$T/bk/$(g "$R1")/config.json" "$T/bk/$(g "$R1")/runtime-state.json" >/dev/null ||
  fail "live import"
writer_start v vd0 $S $RANDOM "$T/w.log"
sleep 0.3
T0=$(now_ns); R2=$(rp rp create moved); T1=$(now_ns)
rp export "$R2" "$T/bk" --base "$R1" >/dev/null || fail "incremental on the imported RP"
writer_stop v
f=$(ls "$T/bk/$(g "$R2")"/disk-*.qcow2)
grep -q '"Kind": "incremental"' "$T/bk/$(g "$R2")/manifest.json" || fail "not incremental"
to_raw "$f" "$T/r.raw"
"$GIO" match "$T/r.raw" a2.base.raw "$T/w.log" "$T0" "$T1" >/dev/null || fail "the chain through the imported RP is no instant of the disk"
ok "import on a running VM; a live RP and the incremental on the imported RP are exact while the guest writes"
