#!/usr/bin/env bash
# Installs what ovpn-mfa's demo and tests need on a Debian or Ubuntu machine (run as root).
# Quiet when everything is already there.
set -euo pipefail

packages=(openvpn oathtool libpam-google-authenticator zbar-tools librsvg2-bin iproute2 iputils-ping openssl procps nftables valgrind)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "Installing from Debian's packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Wait for another apt or unattended-upgrades run instead of failing on its lock.
  lock=(-o DPkg::Lock::Timeout=600)
  apt-get "${lock[@]}" update -qq
  apt-get "${lock[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "cargo (Rust) is needed to build ovpn-mfa: install it from rustup or your distribution" >&2
  exit 1
fi
