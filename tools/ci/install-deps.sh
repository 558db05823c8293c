#!/usr/bin/env bash
# Installs the Debian packages Weft's tests, demo and benchmarks use (linux-lab.md §0 plus nftables, iptables,
# podman, runc, busybox-static, openssl for the etcd TLS tests' throw-away PKI, and gcc + libc6-dev to build
# weft-cni's C shim, static). Idempotent: does nothing when everything is present. Needs root.
set -euo pipefail
PKGS=(iproute2 iputils-ping iperf3 wireguard-go wireguard-tools strongswan-charon strongswan-swanctl
      libcharon-extra-plugins libstrongswan-standard-plugins etcd-server etcd-client containernetworking-plugins nftables iptables
      podman runc busybox-static ethtool curl kmod procps openssl gcc libc6-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} Debian packages present"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing ${missing[*]} and not root: run as root or install them with apt-get" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends: wireguard-tools would otherwise pull a kernel image (linux-lab.md §0).
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
