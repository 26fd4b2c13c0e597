# The stock-restore trap (crash campaign, "broken-chain"): an incremental
# exported into a root that lacks its base's export must still name the
# base as its backing file, so that stock qemu-img fails loudly on the
# missing link instead of reading zeros through it. Also: once the base is
# put in place the chain restores exactly, and a chain moved apart is
# rebased as docs/export-format.md says.
. "$(dirname "$0")/lib.sh"
S=$((32 * 1024 * 1024))
g() { echo "${1#Microsoft:}"; }
mkdisk a $S
rand_writes a $S 20
rp vm add vm --disk a.qcow2 >/dev/null
R1=$(rp rp create vm); snap_mirror a 1; rand_writes a $S 10
R2=$(rp rp create vm); snap_mirror a 2; rand_writes a $S 10
R3=$(rp rp create vm); snap_mirror a 3
file() { ls "$1"/disk-*.qcow2; }
bf() { qemu-img info --output=json "$1" | grep -o '"backing-filename": "[^"]*"' | sed 's/.*: "//; s/"$//'; }

rp export "$R1" "$T/A" >/dev/null             # the full export lives elsewhere
rp export "$R2" "$T/B" --base "$R1" >/dev/null  # root B lacks R1's export
rp export "$R3" "$T/B" --base "$R2" >/dev/null
f2=$(file "$T/B/$(g "$R2")"); f3=$(file "$T/B/$(g "$R3")")
[ "$(bf "$f2")" = "../$(g "$R1")/$(basename "$(file "$T/A/$(g "$R1")")")" ] ||
  fail "RP2's export does not name its absent base: backing '$(bf "$f2")'"
[ "$(bf "$f3")" = "../$(g "$R2")/$(basename "$f2")" ] || fail "RP3's backing: '$(bf "$f3")'"
grep -q "\"BackingFile\": \"../$(g "$R1")/" "$T/B/$(g "$R2")/manifest.json" || fail "manifest BackingFile"
if qemu-img convert -O raw "$f3" x.raw 2>"$T/err"; then
  fail "qemu-img convert of a chain with a missing base succeeded (it would read zeros)"
fi
grep -qi "backing\|No such file" "$T/err" || fail "unexpected qemu-img error: $(cat "$T/err")"
ok "a missing base makes stock qemu-img fail loudly"

# the base put next to it: the same files restore exactly with stock tools
cp -a "$T/A/$(g "$R1")" "$T/B/"
to_raw "$f3" x.raw; cmp x.raw a.3.raw || fail "chain with the base in place"
to_raw "$f2" x.raw; cmp x.raw a.2.raw || fail "RP2 with the base in place"
# refpoint restore does not depend on the backing names
rp restore "$T/A/$(g "$R1")" "$T/B/$(g "$R2")" "$T/B/$(g "$R3")" --to "$T/r" >/dev/null
same a.3.raw "$(ls "$T"/r/*.qcow2)"
ok "with the base in place: qemu-img convert and refpoint restore exact"

# a chain moved apart (each export in a folder of its own naming), rebased
# with the recipe of docs/export-format.md
mkdir -p "$T/moved/full" "$T/moved/inc1" "$T/moved/inc2"
cp "$(file "$T/A/$(g "$R1")")" "$T/moved/full/"
cp "$f2" "$T/moved/inc1/"; cp "$f3" "$T/moved/inc2/"
n1=$(basename "$(file "$T/moved/full")")
(cd "$T/moved/inc1" && qemu-img rebase -u -F qcow2 -b "../full/$n1" "$(basename "$f2")")
(cd "$T/moved/inc2" && qemu-img rebase -u -F qcow2 -b "../inc1/$(basename "$f2")" "$(basename "$f3")")
to_raw "$T/moved/inc2/$(basename "$f3")" x.raw; cmp x.raw a.3.raw || fail "rebased chain"
ok "a moved chain rebased with qemu-img rebase -u restores exactly"
