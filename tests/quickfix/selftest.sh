#!/usr/bin/env bash
# Checks fix_client against QuickFIX's own acceptor (echo_acceptor), so that when an interop test
# against the exchange fails, the client is known not to be the cause. It also serves as a worked
# example of the scenario language.
#
#   tests/quickfix/selftest.sh [OUT_DIR]      (KEEP_SELFTEST=1 keeps the transcripts)
#
# Covered: logon with Username/Password, a NewOrderSingle and its ExecutionReport (binding the
# OrderID to a variable), a cancel, an unsupported message answered by a BusinessMessageReject,
# heartbeats, logout; a second process on the same FileStore continuing the sequence numbers,
# a ResendRequest answered with PossDup resends and gap fills, a deliberate outbound gap that the
# acceptor asks to be resent, an order stored while logged out and delivered by resend after the
# next logon; a crash without Logout followed by a new process continuing the session; a Logon
# with ResetSeqNumFlag; and a Logon refused for a wrong password. Exits 0 when every step passed.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
mapfile -t binaries < <("$here/build.sh" "${1:-}" fix_client echo_acceptor)
client="${binaries[0]}"
acceptor="${binaries[1]}"

# Both sides validate against FIX 4.4 when the data dictionary can be had (see dictionary.sh);
# without it the session-level checks still run.
dict_args=()
if dictionary="$("$here/dictionary.sh" "${1:-}")"; then
  dict_args=(--dictionary "$dictionary")
else
  echo "selftest: no FIX44.xml; running without a data dictionary" >&2
fi

work="$(mktemp -d)"
acceptor_pid=""
cleanup() {
  if [ -n "$acceptor_pid" ]; then kill "$acceptor_pid" 2>/dev/null || true; wait "$acceptor_pid" 2>/dev/null || true; fi
  if [ -n "${KEEP_SELFTEST:-}" ]; then echo "selftest: transcripts kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# QuickFIX cannot be told to listen on port 0 and report the port, so pick a random high port and
# try another if it is taken; the acceptor prints "listening" only after it has bound.
for attempt in 1 2 3 4 5 6 7 8; do
  port=$((20000 + RANDOM % 40000))
  mkdir -p "$work/acceptor"
  "$acceptor" --port "$port" --store "$work/acceptor" --password secret "${dict_args[@]}" CLIENT1 CLIENT2 \
    >"$work/acceptor.out" 2>&1 &
  acceptor_pid=$!
  for _ in $(seq 50); do
    if grep -q listening "$work/acceptor.out" || ! kill -0 "$acceptor_pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if grep -q listening "$work/acceptor.out"; then break; fi
  wait "$acceptor_pid" 2>/dev/null || true
  acceptor_pid=""
done
if [ -z "$acceptor_pid" ]; then
  echo "selftest: echo_acceptor did not start:" >&2
  cat "$work/acceptor.out" >&2
  exit 1
fi

# Runs one client process on a scenario from stdin; on failure shows its transcript.
run_client() {
  local name="$1"
  shift
  if ! timeout 90 "$client" --port "$port" --timeout 10 "${dict_args[@]}" "$@" >"$work/$name.out" 2>&1; then
    echo "selftest: scenario '$name' failed; transcript:" >&2
    cat "$work/$name.out" >&2
    exit 1
  fi
  echo "selftest: scenario '$name' passed" >&2
}

mkdir -p "$work/client1" "$work/client2"

# 1. A first session: order entry, cancel, an unsupported message, heartbeats, logout.
run_client first --sender CLIENT1 --password secret --store "$work/client1" --heartbeat 1 <<'EOF'
logon
expect-sent 35=A|34=1|553=CLIENT1|554=secret|108=1
send 35=D|11=c1|55=BTC-USD|54=1|38=0.5|40=2|44=60000|59=1|60=now
expect 35=8|150=0|39=0|11=c1|55=BTC-USD|54=1|38=0.5|37=$oid
echo order id $oid
send 35=F|11=c1-x|41=c1|37=$oid|55=BTC-USD|54=1|38=0.5|60=now
expect 35=8|150=4|39=4|11=c1-x|41=c1
# OrderStatusRequest is not handled by the echo acceptor, so QuickFIX answers it with a
# BusinessMessageReject (unknown message type).
send 35=H|11=c1|55=BTC-USD|54=1
expect 35=j|372=H|380=3
# With HeartBtInt=1 both sides exchange heartbeats during a pause.
sleep 2500
expect 35=0
expect-sent 35=0
none 35=3
none-sent 35=3
logout done for now
expect-sent 35=5|58=done for now
expect 35=5
EOF

# The sequence number the second process must continue from: one past the last one sent.
last_sent="$(grep '^sent ' "$work/first.out" | tail -1 | sed 's/.*|34=\([0-9]*\)|.*/\1/')"
next_sent=$((last_sent + 1))

# 2. A new process on the same FileStore: the Logon continues the sequence numbers (no reset),
#    a ResendRequest is answered by the acceptor, an outbound gap is filled on request, and an
#    order stored while logged out is delivered by resend at the next logon.
run_client second --sender CLIENT1 --password secret --store "$work/client1" --heartbeat 5 <<EOF
logon
expect-sent 35=A|34=$next_sent|!141
resend-request 1 0
expect-wire 35=4|123=Y|43=Y|34=1
expect-wire 35=8|43=Y|122=*|11=c1|150=0
expect-wire 35=8|43=Y|122=*|11=c1-x|150=4
expect-wire 35=j|43=Y
gap 5
send 35=D|11=c2|55=BTC-USD|54=2|38=1|40=2|44=61000|59=1|60=now
expect 35=2
expect-sent 35=4|123=Y|43=Y
expect-sent 35=D|43=Y|122=*|11=c2
expect 35=8|11=c2|150=0
logout
send 35=D|11=c3|55=BTC-USD|54=1|38=2|40=2|44=59000|59=1|60=now
none-sent 35=D|11=c3
logon
expect 35=2
expect-sent 35=D|43=Y|11=c3
expect 35=8|11=c3|150=0
none 35=3
none-sent 35=3
EOF

# 3. A crash (no Logout) and a new process on the same store: the session continues, and the
#    acceptor, which saw only a closed socket, accepts the Logon.
run_client crash --sender CLIENT1 --password secret --store "$work/client1" --heartbeat 5 <<'EOF'
logon
crash
echo never reached
EOF
if ! grep -q '^ok crash$' "$work/crash.out" || grep -q 'never reached' "$work/crash.out"; then
  echo "selftest: crash did not end the client at once" >&2
  exit 1
fi
last_sent="$(grep '^sent ' "$work/crash.out" | tail -1 | sed 's/.*|34=\([0-9]*\)|.*/\1/')"
run_client after-crash --sender CLIENT1 --password secret --store "$work/client1" --heartbeat 5 <<EOF
logon
expect-sent 35=A|34=$((last_sent + 1))|!141
send 35=D|11=c4|55=BTC-USD|54=1|38=1|40=2|44=58000|59=1|60=now
expect 35=8|11=c4|150=0
none-sent 35=3
EOF

# 4. ResetOnLogon: the Logon carries ResetSeqNumFlag and both sides start again at 1.
run_client reset --sender CLIENT1 --password secret --store "$work/client1" --heartbeat 5 \
  --reset-on-logon Y <<'EOF'
logon
expect-sent 35=A|34=1|141=Y
expect 35=A|34=1|141=Y
send 35=D|11=c5|55=BTC-USD|54=1|38=1|40=2|44=58000|59=1|60=now
expect-sent 35=D|34=2|11=c5
expect 35=8|34=2|11=c5|150=0
EOF

# 5. A wrong password: the acceptor answers the Logon with a Logout carrying the reason and never
#    logs the session on.
run_client refused --sender CLIENT2 --password wrong --store "$work/client2" --heartbeat 5 <<'EOF'
connect
expect 35=5|58~invalid username or password
none 35=A
EOF

echo "selftest: all QuickFIX client scenarios passed" >&2
