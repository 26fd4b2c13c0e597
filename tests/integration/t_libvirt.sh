# libvirt-managed VMs with a real libvirtd and libvirt's stock, unprivileged
# QEMU (user libvirt-qemu, TCG): discovery (GUID = domain UUID, qcow2 disks
# with their targets, raw and CD-ROM listed as not covered), offline and
# running domains, both capture modes through libvirt's monitor passthrough
# (QEMU gets the NBD socket and the fleecing scratch as descriptors), every
# export compared bit for bit with raw mirrors; bad inputs: unknown domain,
# libvirtd not answering, a domain without qcow2 disks, a domain undefined
# between two operations, a domain shut off under a running VM's RP.
. "$(dirname "$0")/lib.sh"
need_qemu_system
need_libvirt
S=$((32 * 1024 * 1024))
g() { echo "${1#Microsoft:}"; }
mkdisk a $S; mkdisk b $((16 * 1024 * 1024))
rand_writes a $S 12; rand_writes b $((16 * 1024 * 1024)) 6
truncate -s 8M r.raw
D=$(lv_define web a.qcow2 b.qcow2 r.raw cdrom)
N=$(lv_define rawonly r.raw)
UUID=$(virsh domuuid "$D" | tr -d ' \n')

# discovery
"$BUILD/refpoint" --state-dir "$STATE" --json vm discover >"$T/disc.json" 2>"$T/disc.err"
grep -q "\"Name\": \"$UUID\"" "$T/disc.json" || fail "discover: the domain UUID is not the VM GUID: $(cat "$T/disc.json")"
grep -q "\"ElementName\": \"$D\"" "$T/disc.json" || fail "discover: ElementName"
grep -q '"Target": "vda"' "$T/disc.json" && grep -q '"Target": "vdb"' "$T/disc.json" || fail "discover: targets"
grep -q 'vdc .*r.raw: not covered: a raw disk' "$T/disc.json" || fail "discover: the raw disk is not listed as not covered"
grep -q 'not covered: a CD-ROM' "$T/disc.json" || fail "discover: the CD-ROM is not listed"
grep -q "$N.*no disk refpoint can cover" "$T/disc.err" || fail "discover: the raw-only domain: $(cat "$T/disc.err")"
[ "$(rpj vm discover | tr -d ' \n')" = "[]" ] || fail "a second discover registered again"
rpj vm show "$D" | grep -q '"RuntimeState": "shut off"' || fail "state of the shut-off domain"
expect_fail 32773 "already registered" rp vm add --libvirt "$D"
expect_fail 32773 "no domain rpt-nosuch" rp vm add --libvirt rpt-nosuch
expect_fail 32777 "cannot connect" rp vm add --libvirt "$D" --connect "qemu+unix:///system?socket=$T/nothing.sock"
expect_fail 32773 "is for plain QEMU" rp vm set "$D" --qmp "$T/x.qmp"
ok "discover: UUID, targets, uncovered disks named; bad domains and URIs refused"

# offline
R1=$(rp rp create "$D"); snap_mirror a 1; snap_mirror b 1
rp export "$R1" "$T/bk" >/dev/null
virsh -q start "$D" >/dev/null || fail "the domain did not start"
ps -o user= -p "$(pgrep -f "guest=$D," | head -1)" | grep -q libvirt || fail "premise: QEMU should run unprivileged"
rpj vm show "$D" | grep -q '"RuntimeState": "running"' || fail "state of the running domain: $(rpj vm show "$D")"
ok "offline RP and export; the domain starts on disks holding refpoint's snapshot and bitmap"

# running, capture snapshot: writes through the guest device
lwr "$D" virtio-disk0 $((4 * 1024 * 1024)) 1048576 5a a.raw
lwr "$D" virtio-disk1 12345 70000 a7 b.raw
R2=$(rp rp create "$D"); snap_mirror a 2; snap_mirror b 2
lwr "$D" virtio-disk0 $((4 * 1024 * 1024)) 65536 01 a.raw   # after R2: must not appear
rp export "$R2" "$T/bk" --base "$R1" >/dev/null
for f in "$T/bk/$(g "$R2")"/disk-*.qcow2; do
  to_raw "$f" x.raw
  cmp -s x.raw a.2.raw || cmp x.raw b.2.raw || fail "live incremental through libvirt differs"
done
R3=$(rp rp create "$D"); snap_mirror a 3; snap_mirror b 3
rp export "$R3" "$T/full" >/dev/null
for f in "$T/full/$(g "$R3")"/disk-*.qcow2; do
  to_raw "$f" x.raw
  cmp -s x.raw a.3.raw || cmp x.raw b.3.raw || fail "live full export differs"
done
ok "running domain, snapshot capture: incremental and full exact (unprivileged QEMU, NBD socket passed)"

# capture fleecing
rp vm set "$D" --capture fleecing >/dev/null
lwr "$D" virtio-disk0 $((9 * 1024 * 1024)) 131072 33 a.raw
R4=$(rp rp create "$D"); snap_mirror a 4; snap_mirror b 4
lwr "$D" virtio-disk0 $((9 * 1024 * 1024)) 65536 44 a.raw   # lands after the view
rp export "$R4" "$T/bk" --base "$R3" 2>"$T/err" >/dev/null || {
  # R3's export is not in bk: the increment still names it (and stock restore needs it there)
  fail "fleecing export: $(cat "$T/err")"; }
cp -a "$T/full/$(g "$R3")" "$T/bk/"
for f in "$T/bk/$(g "$R4")"/disk-*.qcow2; do
  to_raw "$f" x.raw
  cmp -s x.raw a.4.raw || cmp x.raw b.4.raw || fail "fleecing incremental through libvirt differs"
done
rp rp remove-data "$R4" >/dev/null
rp vm set "$D" --capture snapshot >/dev/null
ok "running domain, fleecing capture: the view (scratch passed by add-fd) exports exact"

# the domain stops cleanly (SIGTERM: QEMU writes its bitmaps back): the
# offline path again, and the chain goes on across it
virsh -q destroy "$D" --graceful >/dev/null
rpj vm show "$D" | grep -q '"RuntimeState": "shut off"' || fail "state after the domain stopped"
wr a 1000 5000; wr b 77777 4096
R5=$(rp rp create "$D"); snap_mirror a 5; snap_mirror b 5
rp export "$R5" "$T/bk" --base "$R4" >/dev/null
for f in "$T/bk/$(g "$R5")"/disk-*.qcow2; do
  to_raw "$f" x.raw
  cmp -s x.raw a.5.raw || cmp x.raw b.5.raw || fail "offline incremental after the running part differs"
done
rp restore "$T/bk/$(g "$R3")" "$T/bk/$(g "$R4")" "$T/bk/$(g "$R5")" --to "$T/rs" >/dev/null   # R3: the full copied in
for f in "$T"/rs/*.qcow2; do
  to_raw "$f" x.raw
  cmp -s x.raw a.5.raw || cmp x.raw b.5.raw || fail "restore of the whole chain differs"
done
ok "offline -> running (snapshot, fleecing) -> offline: one chain, restored exact"

# QEMU killed under libvirt (kill -9; virsh destroy would let it stop
# cleanly on SIGTERM): tracking lost, said so; a full export exact
virsh -q start "$D" >/dev/null
lwr "$D" virtio-disk0 0 65536 66 a.raw
virsh -q qemu-monitor-command "$D" --hmp 'qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend "flush"' >/dev/null
qp=$(pgrep -f "guest=$D," | head -1)
kill -9 "$qp"; while kill -0 "$qp" 2>/dev/null; do sleep 0.05; done
for _ in $(seq 100); do virsh domstate "$D" | grep -q "shut off" && break; sleep 0.1; done
R6=$(rp rp create "$D" 2>/dev/null); snap_mirror a 6; snap_mirror b 6
expect_fail 32775 "full export is needed" rp export "$R6" "$T/bk" --base "$R5"
rp export "$R6" "$T/f6" >/dev/null
for f in "$T/f6/$(g "$R6")"/disk-*.qcow2; do
  to_raw "$f" x.raw
  cmp -s x.raw a.6.raw || cmp x.raw b.6.raw || fail "full export after QEMU was killed"
done
ok "QEMU killed under libvirt: incremental refused (full export needed), full export exact"

# a domain undefined between two operations

qemu-img create -q -f qcow2 b2.qcow2 8M
G=$(lv_define gone b2.qcow2)
rp vm add --libvirt "$G" >/dev/null
RG=$(rp rp create "$G")
virsh -q undefine "$G" >/dev/null
rpj vm show "$G" | grep -q '"RuntimeState": "undefined' || fail "state of an undefined domain: $(rpj vm show "$G")"
expect_fail 4 "no domain .*undefined" rp rp create "$G"
expect_fail 32773 "no domain .*undefined" rp rp destroy "$RG"
rpj rp list "$G" | grep -c '"InstanceID"' | grep -q '^1$' || fail "the failed operations changed the RPs"
ok "an undefined domain: each operation says so, nothing changes"
