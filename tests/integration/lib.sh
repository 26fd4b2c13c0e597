# lib.sh — shared helpers of the integration tests (sourced).
# Every test gets a private scratch directory that is removed on exit, a
# private state directory, and helpers that write to a qcow2 disk with
# qemu-io while applying the same write to a raw mirror file, so that the
# exact content at any reference point is known independently.
set -eu  # no pipefail: "cmd | grep -q" would fail at random when grep exits early (SIGPIPE)
BUILD=${REFPOINT_BUILD:?REFPOINT_BUILD not set}
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)   # the source tree
T=$(mktemp -d /tmp/rpt.XXXXXX)
STATE=$T/state
cleanup() {
  local rc=${1:-$?}   # (traps of tests that stop a daemon first pass it)
  lv_cleanup 2>/dev/null || true   # libvirt domains this test defined
  # VMs this test started (pid files $T/*.pid), and helpers in the background
  for pf in "$T"/*.vmpid; do [ -f "$pf" ] && kill -9 "$(cat "$pf")" 2>/dev/null || true; done
  jobs -p | xargs -r kill -9 2>/dev/null || true
  # kill any qemu-nbd this test started on its files
  pkill -f "qemu-nbd.*$T" 2>/dev/null || true
  for m in $(awk -v t="$T" '$2 ~ "^"t {print $2}' /proc/mounts | sort -r); do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$T"
  exit $rc
}
trap cleanup EXIT
cd "$T"

rp() { "$BUILD/refpoint" --state-dir "$STATE" --quiet "$@"; }
rpj() { "$BUILD/refpoint" --state-dir "$STATE" --quiet --json "$@"; }

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "$*"; exit 77; }
ok() { echo "ok: $*"; }

# jq-free JSON field extraction via the refpoint output: use python-less grep
jfield() { # json-text key -> first string/number value of key
  printf '%s' "$1" | tr -d '\n' | sed -n "s/.*\"$2\": *\"\\{0,1\\}\\([^\",}]*\\)\"\\{0,1\\}.*/\\1/p" | head -n1
}

mkdisk() { # name size: qcow2 disk + raw mirror name.raw
  qemu-img create -q -f qcow2 "$1.qcow2" "$2"
  truncate -s "$2" "$1.raw"
}

# wr DISK OFF LEN [zero]: random data (or zeros) at OFF, same write to the mirror
wr() {
  local d=$1 off=$2 len=$3
  if [ "${4:-}" = zero ]; then
    qemu-io -f qcow2 -c "write -q -z $off $len" "$d.qcow2" >/dev/null
    head -c "$len" /dev/zero | dd of="$d.raw" bs=64k seek="$off" oflag=seek_bytes conv=notrunc status=none
  else
    head -c "$len" /dev/urandom >"$T/chunk"
    qemu-io -f qcow2 -c "write -q -s $T/chunk $off $len" "$d.qcow2" >/dev/null
    dd if="$T/chunk" of="$d.raw" bs=64k seek="$off" oflag=seek_bytes conv=notrunc status=none
  fi
}

# rand_writes DISK SIZE N: N writes of random size (1 B .. 1 MiB), unaligned,
# some of them zero writes
rand_writes() {
  local d=$1 size=$2 n=$3 i off len
  local cmds=$T/cmds.$$
  : >"$cmds"
  for ((i = 0; i < n; i++)); do
    case $((RANDOM % 4)) in
      0) len=$((RANDOM % 4096 + 1)) ;;
      1) len=$(((RANDOM % 16 + 1) * 65536)) ;;
      2) len=$((RANDOM * 32 % 1048576 + 1)) ;;
      3) len=$((RANDOM % 512 + 1)) ;;
    esac
    off=$(((RANDOM * 32768 + RANDOM) % (size - len)))
    if [ $((RANDOM % 6)) -eq 0 ]; then wr "$d" "$off" "$len" zero; else wr "$d" "$off" "$len"; fi
  done
}

snap_mirror() { cp --sparse=always "$1.raw" "$1.$2.raw"; } # DISK TAG

same() { # raw-mirror image [fmt]
  qemu-img compare -q -f raw -F "${3:-qcow2}" "$1" "$2" || fail "$2 differs from $1"
}

vsize() { qemu-img info --output=json "$1" | grep -o '"virtual-size": [0-9]*' | grep -o '[0-9]*$'; }
# expect_fail CODE PATTERN cmd...: the command fails with that Hyper-V code
# on stderr and a message matching PATTERN
expect_fail() {
  local code=$1 pat=$2; shift 2
  if "$@" >"$T/out" 2>"$T/err"; then fail "succeeded but should fail: $*"; fi
  grep -q "^refpoint: .*: $code " "$T/err" || fail "expected code $code from '$*', got: $(cat "$T/err")"
  grep -qi -- "$pat" "$T/err" || fail "expected '$pat' in: $(cat "$T/err")"
}
# by_size SIZE FILE...: prints the file whose virtual size is SIZE
by_size() {
  local s=$1 f; shift
  for f in "$@"; do if [ "$(vsize "$f")" = "$s" ]; then echo "$f"; return 0; fi; done
  return 1
}

# ---- running VMs (qemu-system-x86_64, TCG, no guest OS) ----------------------
# vm_start NAME DISK.qcow2...: starts QEMU paused-free on the disks (virtio-blk
# devices vd0, vd1, ... with share-rw so that the test can write through their
# BlockBackends), with two QMP sockets: $T/NAME.qmp for refpoint and
# $T/NAME.w for the test's own commands (QEMU serves one client per socket).
# Extra QEMU options come from $VM_EXTRA (e.g. a guest agent chardev).
need_qemu_system() {
  command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not installed (Debian package qemu-system-x86)"
}
GIO=$BUILD/guestio
vm_start() {
  local name=$1; shift
  local args=() i=0 d cache=${VM_CACHE:-writeback}
  for d in "$@"; do
    args+=(-blockdev "driver=file,node-name=f$i,filename=$(readlink -f "$d"),cache.direct=$([ "$cache" = none ] && echo on || echo off)"
           -blockdev "driver=qcow2,node-name=d$i,file=f$i"
           -device "virtio-blk-pci,drive=d$i,id=vd$i,share-rw=on,write-cache=$([ "$cache" = writethrough ] && echo off || echo on)")
    i=$((i + 1))
  done
  rm -f "$T/$name.qmp" "$T/$name.w"
  qemu-system-x86_64 -machine q35,accel=tcg -nodefaults -display none \
    -qmp "unix:$T/$name.qmp,server=on,wait=off" -qmp "unix:$T/$name.w,server=on,wait=off" \
    "${args[@]}" ${VM_EXTRA:-} -daemonize -pidfile "$T/$name.vmpid" >"$T/$name.log" 2>&1 ||
    fail "QEMU did not start: $(cat "$T/$name.log")"
}
vm_pid() { cat "$T/$1.vmpid"; }
vm_kill() { # NAME: kill -9, wait until gone
  local p; p=$(vm_pid "$1")
  kill -9 "$p" 2>/dev/null || true
  while kill -0 "$p" 2>/dev/null; do sleep 0.05; done
  rm -f "$T/$1.vmpid"
}
vm_quit() { # NAME: clean shutdown (bitmaps reach the file)
  local p; p=$(vm_pid "$1")
  "$GIO" qmp "$T/$1.w" '{"execute":"quit"}' >/dev/null 2>&1 || true
  while kill -0 "$p" 2>/dev/null; do sleep 0.05; done
  rm -f "$T/$1.vmpid"
}
# gwr NAME DEV OFF LEN PATTERN: one guest write through device DEV (vd0...)
gwr() { "$GIO" write "$T/$1.w" "/machine/peripheral/$2/virtio-backend" "$3" "$4" "$5" || fail "guest write failed"; }
now_ns() { date +%s%N; }
# writer_start VM DEV SIZE SEED LOG: a busy guest writer in the background
# (it holds the test's QMP socket of VM until writer_stop VM)
writer_start() {
  rm -f "$T/stop.$1"
  "$GIO" writer "$T/$1.w" "/machine/peripheral/$2/virtio-backend" "$3" "$4" "$5" "$T/stop.$1" >"$T/writer.$1.out" 2>&1 &
  echo $! >"$T/writer.$1.pid"
  while [ ! -s "$5" ]; do   # it is writing
    kill -0 "$(cat "$T/writer.$1.pid")" 2>/dev/null || fail "guest writer died: $(cat "$T/writer.$1.out")"
    sleep 0.02
  done
}
writer_stop() { # VM
  touch "$T/stop.$1"
  wait "$(cat "$T/writer.$1.pid")" || fail "guest writer failed: $(cat "$T/writer.$1.out")"
}
# to_raw EXPORT-QCOW2 OUT.raw: the image content (backing chain included) as raw
to_raw() { qemu-img convert -O raw "$1" "$2"; }
# exact EXPORT-QCOW2 MIRROR.raw: the export's content (chain included) is the mirror, bit for bit
exact() { to_raw "$1" "$T/exact.raw"; cmp "$T/exact.raw" "$2" || fail "$1 differs from $2"; }

# ---- refpointd jobs through wbemcli ------------------------------------------
# wbem_jobpath "cm output": the job's path (host:port/ns:Class.InstanceID="...")
# in the form wbemcli gi takes after "http://user:pw@host:port/"
wbem_jobpath() { echo "$1" | grep -o 'Job (reference): [^ ]*' | sed 's/^Job (reference): //; s|^[^/]*/root/virtualization/v2|root/virtualization/v2:|; s|v2::|v2:|'; }
# wbem_waitjob BASE-URL JOBPATH: the job's final JobState (or "timeout")
wbem_waitjob() {
  local i st
  for i in $(seq 600); do
    st=$(wbemcli gi "$1/$2" | grep -o 'JobState=[0-9]*' | cut -d= -f2)
    [ "$st" != 4 ] && { echo "$st"; return; }
    sleep 0.1
  done
  echo timeout
}

# ---- libvirt domains (a real libvirtd; TCG, no guest OS) ---------------------
# need_libvirt: starts libvirtd (and virtlogd) when none runs, and stops
# what it started when the test ends. Domains are named rpt-<pid>-NAME and
# undefined by the cleanup.
LV_STARTED=()
# live_proc NAME: a process of that name runs (zombies do not count: a
# daemon stopped by an earlier test may linger as one, unreaped)
live_proc() {
  local p
  for p in $(pgrep -x "$1"); do
    case $(ps -o stat= -p "$p" 2>/dev/null) in Z*|"") ;; *) return 0 ;; esac
  done
  return 1
}
need_libvirt() {
  command -v libvirtd >/dev/null || skip "libvirtd is not installed (Debian package libvirt-daemon-system)"
  command -v virsh >/dev/null || skip "virsh is not installed (Debian package libvirt-clients)"
  if ! live_proc virtlogd || [ ! -S /run/libvirt/virtlogd-sock ]; then
    live_proc virtlogd || { virtlogd -d && LV_STARTED+=(virtlogd); }
    for _ in $(seq 100); do [ -S /run/libvirt/virtlogd-sock ] && break; sleep 0.05; done
  fi
  if ! virsh -c qemu:///system version >/dev/null 2>&1; then
    libvirtd -d || fail "libvirtd did not start"
    LV_STARTED+=(libvirtd)
    for _ in $(seq 100); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  virsh -c qemu:///system version >/dev/null 2>&1 || fail "libvirtd does not answer on qemu:///system"
  chmod 0755 "$T"   # libvirt's unprivileged QEMU (libvirt-qemu) reaches the disks in it
  # libvirt probes QEMU's capabilities as root but checks /dev/kvm as the
  # QEMU user: with a /dev/kvm of root:root 0600 (not Debian's udev default
  # root:kvm 0660) it finds its cache outdated on every call and probes
  # again (~40 s per virsh define here). Give /dev/kvm Debian's default for
  # the test, and put the mode back afterwards. (Domains are TCG anyway.)
  if [ -c /dev/kvm ] && [ "$(stat -c %U:%G:%a /dev/kvm)" = root:root:600 ] && getent group kvm >/dev/null; then
    LV_KVM_MODE=$(stat -c %a /dev/kvm)
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
  fi
}
lv_cleanup() {
  local d
  for d in $(virsh -q list --all --name 2>/dev/null | grep "^rpt-$$-"); do
    virsh -q destroy "$d" >/dev/null 2>&1 || true
    virsh -q undefine "$d" --checkpoints-metadata >/dev/null 2>&1 || virsh -q undefine "$d" >/dev/null 2>&1 || true
  done
  local p
  for p in "${LV_STARTED[@]}"; do
    pkill -x "$p" 2>/dev/null || true
    for _ in $(seq 100); do live_proc "$p" || break; sleep 0.05; done
  done
  if [ -n "${LV_KVM_MODE:-}" ]; then chgrp root /dev/kvm; chmod "$LV_KVM_MODE" /dev/kvm; fi
}
# lv_define NAME DISK... : a TCG domain over the disks (vda, vdb, ... by file
# type: *.qcow2 qcow2, *.raw raw; "cdrom" adds an empty CD-ROM); echoes the
# domain name
lv_define() {
  local n="rpt-$$-$1"; shift
  local disks="" i=0 d letters=abcdefgh
  for d in "$@"; do
    if [ "$d" = cdrom ]; then
      disks+="<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='sda' bus='sata'/><readonly/></disk>"
      continue
    fi
    local fmt=qcow2; case $d in *.raw) fmt=raw ;; esac
    disks+="<disk type='file' device='disk'><driver name='qemu' type='$fmt'/><source file='$(readlink -f "$d")'/><target dev='vd${letters:$i:1}' bus='virtio'/></disk>"
    i=$((i + 1))
  done
  cat >"$T/$n.xml" <<XML
<domain type='qemu'><name>$n</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='q35'>hvm</type></os>
<devices><emulator>$(command -v qemu-system-x86_64)</emulator>$disks
<controller type='usb' model='none'/><memballoon model='none'/></devices></domain>
XML
  virsh -q define "$T/$n.xml" >/dev/null || fail "virsh define $n failed"
  echo "$n"
}
# lwr DOMAIN DEV OFF LEN BYTE MIRROR: a guest write of LEN bytes of BYTE (hex,
# e.g. 5a) through the domain's virtio disk DEV (virtio-disk0...) by HMP
# qemu-io over libvirt, and the same bytes into the raw mirror
lwr() {
  virsh -q qemu-monitor-command "$1" --hmp "qemu-io -d /machine/peripheral/$2/virtio-backend \"write -P 0x$5 $3 $4\"" >"$T/lwr.out" 2>&1 || fail "guest write: $(cat "$T/lwr.out")"
  [ -z "$(tr -d '\r\n' <"$T/lwr.out")" ] || fail "guest write: $(cat "$T/lwr.out")"
  head -c "$4" /dev/zero | tr '\0' "\\$(printf '%03o' "0x$5")" |
    dd of="$6" bs=64k seek="$3" oflag=seek_bytes conv=notrunc status=none
}
# cim_call PORT USER:PASS METHOD PARAMS-XML: an extrinsic call on the
# service over CIM-XML with curl (for parameters wbemcli cannot express,
# e.g. embedded instances); prints the response body
cim_call() {
  curl -s -u "$2" -X POST "http://127.0.0.1:$1/cimom" -H 'Content-Type: application/xml; charset="utf-8"' \
    -H 'CIMOperation: MethodCall' -H "CIMMethod: $3" -H 'CIMObject: root%2Fvirtualization%2Fv2' \
    --data-binary "<?xml version=\"1.0\" encoding=\"utf-8\" ?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"7\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><METHODCALL NAME=\"$3\"><LOCALINSTANCEPATH><LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"virtualization\"/><NAMESPACE NAME=\"v2\"/></LOCALNAMESPACEPATH><INSTANCENAME CLASSNAME=\"Msvm_VirtualSystemReferencePointService\"><KEYBINDING NAME=\"CreationClassName\"><KEYVALUE>Msvm_VirtualSystemReferencePointService</KEYVALUE></KEYBINDING><KEYBINDING NAME=\"Name\"><KEYVALUE>refpoint</KEYVALUE></KEYBINDING></INSTANCENAME></LOCALINSTANCEPATH>$4</METHODCALL></SIMPLEREQ></MESSAGE></CIM>"
}
