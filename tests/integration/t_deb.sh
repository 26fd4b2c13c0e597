# The Debian package: dpkg-buildpackage -us -uc -b builds refpoint,
# librefpoint0 and librefpoint-dev from the tracked tree; their contents are
# checked (dpkg-deb -c), lintian reports no error or warning (the remaining
# informational tags are overridden with the reason in debian/), the hardened
# unit parses (systemd-analyze verify), and the packages are installed on
# this machine: the installed refpoint runs, the installed refpointd starts
# and answers CIM-XML on a unix socket, a program builds against
# librefpoint-dev with pkg-config and runs; then everything is removed again.
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" = 0 ] || skip "installing the packages needs root"
[ -f "$BUILD/build.ninja" ] && grep -q "fsanitize=address" "$BUILD/build.ninja" && skip "ASan pass: the package is built and installed once, in the plain pass"
for c in dpkg-buildpackage dh lintian fakeroot; do command -v $c >/dev/null || fail "$c is not installed (scripts/deps.sh installs it)"; done
if [ -e /usr/bin/refpointd ] && ! dpkg -S /usr/bin/refpointd 2>/dev/null | grep -q '^refpoint:'; then
  skip "/usr/bin/refpointd exists and is not from our package: not touching it"
fi
mkdir -p "$T/src/refpoint"
if git -C "$SRC" rev-parse >/dev/null 2>&1; then
  (cd "$SRC" && git ls-files -z | xargs -0 cp -a --parents -t "$T/src/refpoint")
else
  (cd "$SRC" && tar --exclude='./build*' --exclude=./.git -cf - .) | tar -xf - -C "$T/src/refpoint"
fi
(cd "$T/src/refpoint" && dpkg-buildpackage -us -uc -b >"$T/build.log" 2>&1) || { tail -30 "$T/build.log"; fail "dpkg-buildpackage failed"; }
V=$(dpkg-parsechangelog -l "$SRC/debian/changelog" -S Version)
A=$(dpkg --print-architecture)
for p in refpoint librefpoint0 librefpoint-dev; do [ -f "$T/src/${p}_${V}_${A}.deb" ] || fail "no ${p} package"; done
c() { dpkg-deb -c "$T/src/$1_${V}_${A}.deb" | awk '{print $6}'; }
c refpoint >"$T/c.refpoint"; c librefpoint0 >"$T/c.lib"; c librefpoint-dev >"$T/c.dev"
for f in ./usr/bin/refpoint ./usr/bin/refpointd ./usr/lib/systemd/system/refpointd.service ./etc/pam.d/refpointd \
         ./etc/refpoint/refpointd.conf ./usr/share/man/man1/refpoint.1.gz ./usr/share/man/man8/refpointd.8.gz \
         ./usr/share/man/man5/refpointd.conf.5.gz; do
  grep -qx "$f" "$T/c.refpoint" || fail "refpoint lacks $f"
done
grep -q '^./usr/lib/.*/librefpoint.so.0' "$T/c.lib" || fail "librefpoint0 lacks the library"
grep -qx './usr/include/refpoint.h' "$T/c.dev" && grep -q 'pkgconfig/refpoint.pc$' "$T/c.dev" || fail "librefpoint-dev lacks the header or refpoint.pc"
grep -q 'librefpoint.so$' "$T/c.dev" || fail "librefpoint-dev lacks the .so link"
lintian --tag-display-limit 0 "$T/src/refpoint_${V}_${A}.changes" >"$T/lintian.log" 2>&1 || true
grep -E '^(E|W): ' "$T/lintian.log" && fail "lintian: $(grep -E '^(E|W): ' "$T/lintian.log" | head -5)"
ok "dpkg-buildpackage builds refpoint, librefpoint0, librefpoint-dev with the expected files; lintian: no error or warning"

dpkg-deb -x "$T/src/refpoint_${V}_${A}.deb" "$T/root"
grep -q '^ProtectSystem=strict' "$T/root/usr/lib/systemd/system/refpointd.service" && grep -q '^StateDirectoryMode=0700' "$T/root/usr/lib/systemd/system/refpointd.service" &&
  grep -q '^NoNewPrivileges=yes' "$T/root/usr/lib/systemd/system/refpointd.service" && grep -q '^CapabilityBoundingSet=' "$T/root/usr/lib/systemd/system/refpointd.service" || fail "the unit is not hardened"
DEBS=("$T/src/librefpoint0_${V}_${A}.deb" "$T/src/refpoint_${V}_${A}.deb" "$T/src/librefpoint-dev_${V}_${A}.deb")
trap 'rc=$?; [ -n "${DPID:-}" ] && kill $DPID 2>/dev/null; dpkg --purge refpoint librefpoint-dev librefpoint0 >/dev/null 2>&1; cleanup $rc' EXIT
dpkg -i "${DEBS[@]}" >"$T/dpkg.log" 2>&1 || { cat "$T/dpkg.log"; fail "dpkg -i"; }
if command -v systemd-analyze >/dev/null; then
  systemd-analyze verify /usr/lib/systemd/system/refpointd.service 2>&1 | grep -v "man \|Command 'man" >"$T/verify.log" || true
  [ ! -s "$T/verify.log" ] || fail "systemd-analyze verify: $(cat "$T/verify.log")"
fi
/usr/bin/refpoint --version | grep -q "refpoint $V" || fail "the installed refpoint does not run"
ldd /usr/bin/refpointd | grep -Eq 'librefpoint.so.0 => (/usr)?/lib/' || fail "the installed refpointd does not use the installed library"
/usr/bin/refpointd --state-dir "$T/st" --listen "unix:$T/d.sock" 2>"$T/d.log" & DPID=$!
for _ in $(seq 50); do [ -S "$T/d.sock" ] && break; sleep 0.1; done
out=$(curl -s --unix-socket "$T/d.sock" -X POST http://localhost/cimom -H 'CIMOperation: MethodCall' -H 'CIMMethod: EnumerateClassNames' -H 'CIMObject: root%2Fvirtualization%2Fv2' \
  --data-binary '<?xml version="1.0" encoding="utf-8"?><CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0"><SIMPLEREQ><IMETHODCALL NAME="EnumerateClassNames"><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="virtualization"/><NAMESPACE NAME="v2"/></LOCALNAMESPACEPATH></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>')
echo "$out" | grep -q 'Msvm_VirtualSystemReferencePointService' || fail "the installed refpointd does not answer: $out $(cat "$T/d.log")"
kill $DPID; wait $DPID 2>/dev/null || true; DPID=
cat >"$T/p.c" <<'C'
#include <refpoint.h>
#include <stdio.h>
int main(int argc, char **argv) {
  rp_ctx *c = rp_open(argv[1]);
  if (!c) { fprintf(stderr, "%s\n", rp_last_error()->message); return 1; }
  printf("%s %s\n", REFPOINT_VERSION, rp_err_sentence(RP_E_IN_USE));
  rp_close(c);
  return 0;
}
C
cc -o "$T/p" "$T/p.c" $(pkg-config --cflags --libs refpoint) || fail "a program does not build against librefpoint-dev"
"$T/p" "$T/st2" | grep -q "in use" || fail "the program against the installed library does not run"
dpkg --purge refpoint librefpoint-dev librefpoint0 >/dev/null || fail "dpkg --purge"
[ ! -e /usr/bin/refpoint ] && [ ! -e /usr/lib/systemd/system/refpointd.service ] || fail "files left after purge"
ok "installed: refpoint runs, refpointd answers CIM-XML, a program builds with pkg-config refpoint; purged again"
