#!/usr/bin/env bash
# Installs the Debian 12 packages hylab needs that are missing; skips what is present.
# Usage: scripts/install-deps.sh build|test|bench
set -euo pipefail
cd "$(dirname "$0")/.."

build_pkgs=(cmake ninja-build g++ pkg-config ccache zlib1g-dev
  libyaml-cpp-dev libcli11-dev libfmt-dev libboost1.81-dev libboost-json1.81-dev
  libsqlite3-dev libssl-dev prometheus-cpp-dev libcurl4-openssl-dev libhowardhinnant-date-dev tzdata)
test_pkgs=(clang clang-format clang-tidy libclang-rt-14-dev libgtest-dev libgmock-dev git python3 openssl
  nginx-light python3-boto3 python3-botocore slurm-wlm munge procps openssh-client openssh-server)
bench_pkgs=(libbenchmark-dev wrk python3 haproxy nginx-light util-linux rclone curl)

want=("${build_pkgs[@]}")
case "${1:-build}" in
  build) ;;
  test) want+=("${test_pkgs[@]}") ;;
  bench) want+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "usage: $0 build|test|bench" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The tests' S3 server (s3rver) comes from the npm registry: node and npm from Debian when
# this machine has neither (a node from elsewhere that brings its own npm is kept).
if [[ ${1:-build} != build ]]; then
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
fi

if ((${#missing[@]} > 0)); then
  echo "Installing missing packages: ${missing[*]}"
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "error: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Refresh the package lists only when an install fails for want of them.
  "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" ||
    { "${sudo[@]}" apt-get update && "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; }
  # openssh-server is here for the tests' own sshd on a loopback port: the system's ssh
  # service that the package starts is turned off again, not left listening on port 22.
  if [[ " ${missing[*]} " == *" openssh-server "* ]] && command -v systemctl >/dev/null; then
    "${sudo[@]}" systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
  fi
fi

if [[ ${1:-build} != build && ! -f tests/cron-oracle/node_modules/cron-parser/package.json ]]; then
  echo "Installing cron-parser (npm, pinned by tests/cron-oracle/package-lock.json)"
  npm ci --prefix tests/cron-oracle --no-audit --no-fund
fi

if [[ ${1:-build} != build && ! -f tests/s3rver/node_modules/s3rver/bin/s3rver.js ]]; then
  echo "Installing s3rver (npm, pinned by tests/s3rver/package-lock.json)"
  npm ci --prefix tests/s3rver --no-audit --no-fund
fi
