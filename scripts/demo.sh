#!/usr/bin/env bash
# ovpn-mfa demo: a real OpenVPN server and client, a real TOTP code, renegotiations survived.
#
# Everything happens in two network namespaces this script creates (ovpn-mfa-demo-srv and
# ovpn-mfa-demo-cli) and a temporary directory; all of it is removed at the end, also on
# Ctrl-C or failure. Run as root on Debian or Ubuntu: sudo scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SRV=ovpn-mfa-demo-srv
CLI=ovpn-mfa-demo-cli
RENEG=20          # seconds between key renegotiations (demo only; the default is 3600)
RENEGOTIATIONS=2  # how many to wait through

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\nDEMO FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it creates network namespaces): sudo $0"

WORK=$(mktemp -d /tmp/ovpn-mfa-demo.XXXXXX)
cleanup() {
  set +e
  for pidfile in "$WORK"/*.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
  done
  sleep 0.5
  ip netns del "$SRV" 2>/dev/null
  ip netns del "$CLI" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "Installing what the demo needs (OpenVPN, oathtool) if it is missing"
scripts/deps.sh

say "Building ovpn-mfa"
cargo build --quiet --bin ovpn-mfa
BIN=$PWD/target/debug/ovpn-mfa
MFA=("$BIN" --dir "$WORK/mfa")

say "Creating the ovpn-mfa store and enrolling the user 'demo'"
"${MFA[@]}" init
# Short renegotiation for the demo: token renewal must be at least twice hand-window.
sed -i -e 's/^hand_window_secs = .*/hand_window_secs = 10/' \
       -e 's/^token_renewal_secs = .*/token_renewal_secs = 20/' \
       -e 's/^auth_deadline_secs = .*/auth_deadline_secs = 8/' "$WORK/mfa/config.toml"
"${MFA[@]}" user add demo | tee "$WORK/enrol.txt"
SECRET=$(sed -n 's/^Secret: *//p' "$WORK/enrol.txt")
[ -n "$SECRET" ] || die "could not read the secret from 'user add'"

say "Making a small PKI for the demo (CA, server and client certificates)"
pki="$WORK/pki"; mkdir -p "$pki"
(
  cd "$pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=ovpn-mfa demo CA" -keyout ca.key -out ca.crt 2>/dev/null
  for who in server demo; do
    eku=clientAuth; [ "$who" = server ] && eku=serverAuth
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$who" \
      -keyout "$who.key" -out "$who.csr" 2>/dev/null
    openssl x509 -req -in "$who.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extfile <(printf 'extendedKeyUsage=%s\nkeyUsage=digitalSignature\n' "$eku") \
      -out "$who.crt" 2>/dev/null
  done
  openvpn --genkey tls-crypt tc.key >/dev/null
)

say "Creating two network namespaces joined by a virtual cable"
ip netns add "$SRV"
ip netns add "$CLI"
ip link add omfa-demo-s netns "$SRV" type veth peer name omfa-demo-c netns "$CLI"
ip -n "$SRV" addr add 10.231.0.1/30 dev omfa-demo-s
ip -n "$CLI" addr add 10.231.0.2/30 dev omfa-demo-c
for ns in "$SRV" "$CLI"; do
  ip -n "$ns" link set lo up
done
ip -n "$SRV" link set omfa-demo-s up
ip -n "$CLI" link set omfa-demo-c up

say "Starting the OpenVPN server with the lines from 'ovpn-mfa openvpn server-config'"
{
  cat <<CONF
dev tun
proto udp
local 10.231.0.1
port 1194
topology subnet
server 10.232.0.0 255.255.255.0
ca $pki/ca.crt
cert $pki/server.crt
key $pki/server.key
dh none
tls-crypt $pki/tc.key
verify-client-cert require
keepalive 2 10
reneg-sec $RENEG
verb 3
writepid $WORK/server.pid
CONF
  "${MFA[@]}" openvpn server-config --binary "$BIN" | sed 's/^hand-window .*/hand-window 10/'
} > "$WORK/server.conf"
sed -n '/^# ovpn-mfa/,$p' "$WORK/server.conf" | sed 's/^/    /'
ip netns exec "$SRV" openvpn --config "$WORK/server.conf" --log "$WORK/server.log" --daemon
for _ in $(seq 100); do
  grep -q "Initialization Sequence Completed" "$WORK/server.log" 2>/dev/null && break
  sleep 0.2
done
grep -q "Initialization Sequence Completed" "$WORK/server.log" || die "the server did not start"

say "Computing the current code with oathtool, as the phone app would"
CODE=$(oathtool --totp -b "$SECRET")
echo "    code: $CODE"
printf 'demo\n%s\n' "$CODE" > "$WORK/client.auth"
chmod 600 "$WORK/client.auth"

say "Connecting the client (certificate + user name + code)"
cat > "$WORK/client.conf" <<CONF
client
dev tun
proto udp
remote 10.231.0.1 1194
nobind
ca $pki/ca.crt
cert $pki/demo.crt
key $pki/demo.key
tls-crypt $pki/tc.key
auth-user-pass $WORK/client.auth
auth-retry none
verb 3
writepid $WORK/client.pid
CONF
ip netns exec "$CLI" openvpn --config "$WORK/client.conf" --log "$WORK/client.log" --daemon
for _ in $(seq 150); do
  grep -q "Initialization Sequence Completed" "$WORK/client.log" 2>/dev/null && break
  grep -q "AUTH_FAILED" "$WORK/client.log" 2>/dev/null && break
  sleep 0.2
done
grep -q "Initialization Sequence Completed" "$WORK/client.log" \
  || { tail -20 "$WORK/client.log"; die "the client did not connect"; }
echo "    connected; the server's log says:"
grep "ovpn-mfa\|auth accepted" "$WORK/server.log" | grep -o "auth accepted.*" | sed 's/^/    /'

say "Pinging the server through the tunnel"
ip netns exec "$CLI" ping -c 3 -i 0.3 10.232.0.1 | sed 's/^/    /'

say "Waiting through $RENEGOTIATIONS key renegotiations (every ~$RENEG s), pinging all along"
ip netns exec "$CLI" ping -i 1 10.232.0.1 > "$WORK/ping.log" 2>&1 &
echo $! > "$WORK/ping.pid"
start_resets=$(grep -c "soft reset" "$WORK/server.log" || true)
deadline=$((SECONDS + RENEG * (RENEGOTIATIONS + 1) + 15))
shown=-1
while :; do
  resets=$(( $(grep -c "soft reset" "$WORK/server.log" || true) - start_resets ))
  tokens=$(grep -c "auth accepted .*session_state=Authenticated" "$WORK/server.log" || true)
  if [ "$tokens" -ne "$shown" ]; then
    echo "    $(date +%T) renegotiations: $resets, re-authenticated with the token: $tokens"
    shown=$tokens
  fi
  [ "$tokens" -ge "$RENEGOTIATIONS" ] && break
  grep -q "AUTH_FAILED" "$WORK/client.log" && die "the client was refused at renegotiation"
  [ $SECONDS -lt $deadline ] || die "fewer renegotiations than expected"
  sleep 1
done
sleep 2
kill -INT "$(cat "$WORK/ping.pid")" 2>/dev/null; wait "$(cat "$WORK/ping.pid")" 2>/dev/null || true

say "Result"
grep -q "AUTH_FAILED" "$WORK/client.log" && die "the client saw AUTH_FAILED"
pgrep -F "$WORK/client.pid" >/dev/null || die "the client is no longer running"
summary=$(grep "packets transmitted" "$WORK/ping.log" || true)
echo "    ping during renegotiations: $summary"
sent=$(echo "$summary" | awk '{print $1}'); got=$(echo "$summary" | awk '{print $4}')
[ -n "$sent" ] && [ $((sent - got)) -le 1 ] || die "pings were lost during renegotiation"
echo "    AUTH_FAILED in the client's log: none"
echo "    the verifier's decisions (from OpenVPN's log):"
grep -o "auth [a-z]* user=.*" "$WORK/server.log" | sed 's/^/      /'
echo
echo "The session survived $RENEGOTIATIONS renegotiations without a new code: auth-gen-token"
echo "carried it, and ovpn-mfa re-checked the account each time (external-auth)."
echo "Cleaning up the namespaces and temporary files."
