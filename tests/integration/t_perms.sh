# Finding H4 of the security audit: exports and restores hold a VM's disks
# and are private (folders 0700, files 0600) unless an export group is
# configured (then 0750 / 0640 and that group); H5: the stale-partial
# clean-up never follows a symbolic link (a partial folder swapped for a
# link to a root-owned directory loses the link only).
. "$(dirname "$0")/lib.sh"
S=$((8 * 1024 * 1024))
g() { echo "${1#Microsoft:}"; }
mkdisk a $S; rand_writes a $S 5
rp vm add vm --disk a.qcow2 >/dev/null
R1=$(rp rp create vm)
umask 022
rp export "$R1" "$T/bk" >/dev/null
E=$T/bk/$(g "$R1")
[ "$(stat -c %a "$T/bk")" = 700 ] || fail "a backup root created by refpoint is $(stat -c %a "$T/bk")"
[ "$(stat -c %a "$E")" = 700 ] || fail "the export folder is $(stat -c %a "$E")"
for f in "$E"/*; do [ "$(stat -c %a "$f")" = 600 ] || fail "$f is $(stat -c %a "$f")"; done
rp restore "$E" --to "$T/rs" >/dev/null
[ "$(stat -c %a "$T/rs")" = 700 ] || fail "the restore folder is $(stat -c %a "$T/rs")"
for f in "$T"/rs/*; do [ "$(stat -c %a "$f")" = 600 ] || fail "restored $f is $(stat -c %a "$f")"; done
ok "exports and restores are private: 0700 folders, 0600 files (umask 022)"

grp=$(getent group kvm >/dev/null && echo kvm || echo daemon)
R2=$(rp rp create vm)
"$BUILD/refpoint" --state-dir "$STATE" --quiet --export-group "$grp" export "$R2" "$T/bk" >/dev/null
E2=$T/bk/$(g "$R2")
[ "$(stat -c %a:%G "$E2")" = "750:$grp" ] || fail "with --export-group the folder is $(stat -c %a:%G "$E2")"
for f in "$E2"/*; do [ "$(stat -c %a:%G "$f")" = "640:$grp" ] || fail "$f is $(stat -c %a:%G "$f")"; done
expect_fail 32773 "does not exist" "$BUILD/refpoint" --state-dir "$STATE" --export-group no-such-group-x export "$R2" "$T/bk2"
[ ! -e "$T/bk2" ] || fail "an unknown group still created the root"
ok "--export-group GROUP: 0750 / 0640 and the group; an unknown group refused, nothing made"

# H5: a stale partial of R1 replaced by a symlink to a directory that must survive
mkdir -p "$T/precious"; echo keep >"$T/precious/file"
ln -s "$T/precious" "$T/bk/.$(g "$R1").partial-999999"
mkdir -p "$T/bk/.$(g "$R1").partial-999998"; ln -s "$T/precious/file" "$T/bk/.$(g "$R1").partial-999998/link"
rm -rf "$E"
rp export "$R1" "$T/bk" >/dev/null
[ -f "$T/precious/file" ] || fail "H5: the clean-up followed a symlink and deleted $T/precious/file"
[ ! -e "$T/bk/.$(g "$R1").partial-999999" ] && [ ! -e "$T/bk/.$(g "$R1").partial-999998" ] || fail "stale partials were not removed"
ok "the stale-partial clean-up removes links, never what they point to"
