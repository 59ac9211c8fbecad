#!/usr/bin/env bash
# Benchmarks: what each authentication setup costs a real OpenVPN 2.6 server during a storm of
# logins (certificates only, auth-pam + google-authenticator, the ovpn-mfa script, plugins).
# Servers and clients run in network namespaces this creates and removes; traffic never leaves
# them. Results: a markdown report and a CSV of every storm in target/bench/. See BENCHMARKS.md.
#
#   sudo scripts/bench.sh                        # 5 interleaved runs of 100- and 200-client storms
#   sudo scripts/bench.sh --quick                # 1 run of 30-client storms, to try it out
#   sudo scripts/bench.sh --wait-quiet-mins 40   # first wait for an idle machine (final numbers)
#   sudo scripts/bench.sh --help                 # every option (runs, sizes, configurations)
#
# Also: `cargo bench --bench decision` for the decision itself on a warm store (no root needed).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "The benchmarks create network namespaces and cgroups: run this as root (sudo $0)." >&2
  exit 1
fi
scripts/deps.sh
for tool in cc nm; do
  command -v "$tool" >/dev/null || {
    echo "$tool is needed (apt-get install gcc binutils)" >&2
    exit 1
  }
done

echo "== building (release)"
cargo build --release --quiet -p ovpn-mfa -p ovpn-mfa-plugin -p ovpn-mfa-bench

bench_pid=""
# The bench removes everything it creates, also on SIGINT/SIGTERM. If it was killed outright,
# remove what carries its pid: namespaces (and their processes), cgroups, the PAM service.
sweep() {
  [ -n "$bench_pid" ] || return 0
  for ns in $(ip netns list | awk '{print $1}' | grep "^ovmfa-e2e-$bench_pid-" || true); do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns delete "$ns" 2>/dev/null || true
  done
  for cg in /sys/fs/cgroup/cpuacct/ovmfa-bench-"$bench_pid"-*; do
    [ -d "$cg" ] || continue
    while read -r p; do
      echo "$p" >/sys/fs/cgroup/cpuacct/cgroup.procs 2>/dev/null || true
    done <"$cg/cgroup.procs"
    rmdir "$cg" 2>/dev/null || true
  done
  rm -f "/etc/pam.d/openvpn-bench-$bench_pid"
}
stop() {
  if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
    kill -TERM "$bench_pid" 2>/dev/null || true
    # Bounded: the bench cleans up within seconds; after a minute, take it down.
    for _ in $(seq 600); do kill -0 "$bench_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$bench_pid" 2>/dev/null || true
  fi
  sweep
}
trap stop EXIT
trap 'exit 130' INT TERM HUP

echo "== benchmarking"
# Its defaults are the paths built above (target/release/...) and target/bench for results.
target/release/ovpn-mfa-bench "$@" &
bench_pid=$!
status=0
wait "$bench_pid" || status=$?
exit "$status"
