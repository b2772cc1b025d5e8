#!/bin/sh
# Installs what the build, the tests, the demo and the benchmarks need, and nothing that is
# already there: npm packages from the lockfile, then Debian packages (apt-get update once).
set -eu
cd "$(dirname "$0")/.."

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm packages from package-lock.json"
  npm ci --no-audit --no-fund
fi

# docker-registry: CNCF Distribution 2.8; skopeo, umoci, containerd (ctr, runc): outside witnesses
# and image builders; busybox-static: the content of test images; nginx-light: the web server
# fetch is tested against; openssl: test CAs and the hashing baseline; time: peak RSS in bench/
# and the memory tests; strace: the outside witness that build fsyncs (and --no-sync does not);
# iproute2: the network namespace a test host (the plain-HTTP token realm) lives in; zstd: zstd layers;
# mount (mount, losetup) and e2fsprogs (mkfs.ext4): the sticks that fail or keep no holes in the build
# tests (priority required in Debian, so usually there already).
PACKAGES="docker-registry skopeo umoci busybox-static containerd nginx-light openssl time strace iproute2 zstd mount e2fsprogs"
missing=""
for package in $PACKAGES; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $package"
  fi
done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y $missing
fi
