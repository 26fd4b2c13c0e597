# Application-consistent reference points of a running VM (ConsistencyLevel
# 1) through the guest agent. The guest has no OS, so the agent is
# tests/helpers/fake_guest_agent.c — a FAKE, for fault injection — on a unix
# socket; it logs every command with the time and whether it is frozen.
# Checks: freeze before the capture and thaw after it; a clear error and no
# reference point when no agent is registered, when nothing answers (QEMU's
# real virtio-serial chardev with no guest behind it), when the freeze fails
# or hangs; a thaw on every path, including kill -9 of the tool while the
# guest is frozen and a capture that outlasts the freeze limit.
. "$(dirname "$0")/lib.sh"
need_qemu_system
FAKE=$BUILD/fake_guest_agent
S=$((32 * 1024 * 1024))
mkdisk a $S
VM_EXTRA="-device virtio-serial-pci -chardev socket,id=qga0,path=$T/qga.sock,server=on,wait=off -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0" \
  vm_start v a.qcow2
gwr v vd0 0 65536 0x11
rp vm add vm1 --disk a.qcow2 --qmp "$T/v.qmp" >/dev/null
count() { rpj rp list vm1 | grep -c '"InstanceID"' || true; }
agent() { # MODE: (re)start the fake agent on $T/ga.sock, logging to $T/ga.log
  [ -f "$T/ga.pid" ] && kill -9 "$(cat "$T/ga.pid")" 2>/dev/null
  : >"$T/ga.log"
  "$FAKE" "$T/ga.sock" "$T/ga.log" "$1" & echo $! >"$T/ga.pid"
  while [ ! -S "$T/ga.sock" ]; do sleep 0.02; done
}
last_is_thawed() { [ "$(tail -n1 "$T/ga.log" | awk '{print $2, $3}')" = "guest-fsfreeze-thaw 0" ] || fail "the guest was left frozen: $(cat "$T/ga.log")"; }

# 1. no agent registered: a clear error, not a downgrade
expect_fail 2 "guest agent" rp rp create vm1 --consistency 1
[ "$(count)" = 0 ] || fail "a reference point was made"
RP=$(rp rp create vm1 --consistency 2)   # crash consistency needs no agent
ok "no agent: ConsistencyLevel 1 refused with NOT_AVAILABLE (family A code 2); 2 works"

# 2. the real chardev of QEMU with no guest behind it: nothing answers
rp vm set vm1 --qmp "$T/v.qmp" --guest-agent "$T/qga.sock" >/dev/null
t0=$SECONDS
REFPOINT_AGENT_TIMEOUT_MS=700 expect_fail 2 "no guest agent answered" rp rp create vm1 --consistency 1
[ $((SECONDS - t0)) -lt 10 ] || fail "took too long to give up"
[ "$(count)" = 1 ] || fail "a reference point was made"
ok "QEMU's agent channel without an agent: NOT_AVAILABLE after the timeout"

# 3. a working agent: freeze, capture, thaw, in that order
rp vm set vm1 --qmp "$T/v.qmp" --guest-agent "$T/ga.sock" >/dev/null
agent ok
RP2=$(rp rp create vm1 --consistency 1) || fail "application-consistent create"
rpj rp show "$RP2" | grep -q '"ConsistencyLevel": 1' || fail "level not recorded"
[ "$(awk '$2 ~ /freeze|thaw/ {print $2, $3}' "$T/ga.log" | tr '\n' ' ')" = "guest-fsfreeze-freeze 1 guest-fsfreeze-thaw 0 " ] ||
  fail "unexpected agent conversation: $(cat "$T/ga.log")"
# the snapshot was taken while frozen: its creation time lies between freeze and thaw
fz=$(awk '$2=="guest-fsfreeze-freeze"{print $1}' "$T/ga.log"); th=$(awk '$2=="guest-fsfreeze-thaw"{print $1}' "$T/ga.log")
echo "frozen for $(((th - fz) / 1000000)) ms"
rp export "$RP2" "$T/bk" >/dev/null
f=$(ls "$T/bk/${RP2#Microsoft:}"/disk-*.qcow2); to_raw "$f" "$T/r.raw"
printf '\x11%.0s' $(seq 65536) | dd of=a.raw conv=notrunc status=none
cmp -s "$T/r.raw" a.raw || fail "export of the application-consistent RP differs"
ok "agent ok: freeze -> capture -> thaw; export exact"

# 4. the freeze fails: error, thaw anyway, nothing made
agent fail-freeze
n=$(count)
expect_fail 2 "cannot freeze" rp rp create vm1 --consistency 1
[ "$(count)" = "$n" ] || fail "a reference point was made"
grep -q guest-fsfreeze-thaw "$T/ga.log" || fail "no thaw after a failed freeze"
ok "freeze refused: error, thawed, nothing made"

# 5. the freeze hangs (the agent froze but never answers): timeout, thaw
agent hang-freeze
REFPOINT_AGENT_TIMEOUT_MS=500 expect_fail 2 "did not answer" rp rp create vm1 --consistency 1
[ "$(count)" = "$n" ] || fail "a reference point was made"
last_is_thawed
ok "freeze hangs: error after the timeout, thawed, nothing made"

# 6. kill -9 of the tool while the guest is frozen: the guard thaws
agent ok
REFPOINT_FAULT_INJECT=create-frozen rp rp create vm1 --consistency 1 2>/dev/null && fail "fault injection did not fire"
for i in $(seq 100); do grep -q guest-fsfreeze-thaw "$T/ga.log" && break; sleep 0.05; done
last_is_thawed
[ "$(count)" = "$n" ] || fail "the killed create left a reference point"
RP3=$(rp rp create vm1 --consistency 1) || fail "create after the killed one"
rp export "$RP3" "$T/bk" --base "$RP2" >/dev/null || fail "incremental after the killed create"
ok "kill -9 while frozen: thawed by the guard, rolled back, the chain goes on"

# 7. a capture that outlasts the freeze limit is refused (and thawed)
agent ok
REFPOINT_MAX_FROZEN_MS=1 expect_fail 2 "frozen longer" rp rp create vm1 --consistency 1
last_is_thawed
[ "$(count)" = "$((n + 1))" ] || fail "a reference point was made"
ok "capture longer than the freeze limit: refused, thawed"

# 8. a hostile guest floods the channel: bounded, refused, nothing made
agent flood
expect_fail 2 "longer than 65536" rp rp create vm1 --consistency 1
[ "$(count)" = "$((n + 1))" ] || fail "a reference point was made"
ok "a flooding agent: refused after 64 KiB, nothing made"

# 9. the thaw fails: the create fails with the agent's message
agent fail-thaw
expect_fail 2 "thaw failed" rp rp create vm1 --consistency 1
[ "$(count)" = "$((n + 1))" ] || fail "a reference point was made"
ok "thaw refused: reported, nothing made"
