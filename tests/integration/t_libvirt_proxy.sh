# refpoint unchanged through libvirt's virt-qemu-qmp-proxy (libvirt-clients-
# qemu) on a plain registration (--qmp PROXY-SOCKET): the proxy sends the
# QMP events it queued while no client was connected *before* its greeting
# (here STOP and RESUME from a suspend/resume); the QMP client skips them
# (it used to take the first line for the greeting and time out). The
# proxy cannot pass a socket descriptor (it opens what it receives as a
# seekable file), so an incremental export of the running VM through it
# fails with a sentence that says so and points to vm add --libvirt.
. "$(dirname "$0")/lib.sh"
need_qemu_system
need_libvirt
[ -x /usr/bin/virt-qemu-qmp-proxy ] || skip "virt-qemu-qmp-proxy is not installed (Debian package libvirt-clients-qemu)"
/usr/bin/python3 -c 'import libvirt, libvirt_qemu' 2>/dev/null || skip "python3-libvirt is not installed"
S=$((16 * 1024 * 1024))
g() { echo "${1#Microsoft:}"; }
mkdisk a $S; rand_writes a $S 5
D=$(lv_define px a.qcow2)
virsh -q start "$D" >/dev/null
/usr/bin/python3 /usr/bin/virt-qemu-qmp-proxy "$D" "$T/proxy.qmp" >"$T/proxy.log" 2>&1 &
for _ in $(seq 100); do [ -S "$T/proxy.qmp" ] && break; sleep 0.05; done
[ -S "$T/proxy.qmp" ] || fail "the proxy did not start: $(cat "$T/proxy.log")"
rp vm add px --disk a.qcow2 --qmp "$T/proxy.qmp" >/dev/null
R1=$(rp rp create px); snap_mirror a 1
rp export "$R1" "$T/bk" >/dev/null
virsh -q suspend "$D" >/dev/null; virsh -q resume "$D" >/dev/null   # events queued in the proxy
lwr "$D" virtio-disk0 65536 65536 5e a.raw
R2=$(rp rp create px) || fail "create through the proxy after queued events"
snap_mirror a 2
rp export "$R2" "$T/full" >/dev/null
to_raw "$(ls "$T/full/$(g "$R2")"/disk-*.qcow2)" x.raw; cmp x.raw a.2.raw || fail "full export of the RP made through the proxy"
expect_fail 32777 "cannot pass sockets.*vm add --libvirt" rp export "$R2" "$T/bk" --base "$R1"
[ ! -e "$T/bk/$(g "$R2")" ] || fail "a failed export left a folder"
ok "through virt-qemu-qmp-proxy: events before the greeting skipped; create and full export exact; the incremental's limit named"
