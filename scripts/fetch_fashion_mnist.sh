#!/usr/bin/env bash
# Makes Fashion-MNIST available offline, from Debian's package `dataset-fashion-mnist`:
# installed system-wide when root, else unpacked into ./data/debian (no root needed). Idempotent.
set -euo pipefail
sys=/usr/share/datasets/fashion-mnist
local_dir=data/debian
files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
have() { for f in "${files[@]}"; do [ -f "$1/$f" ] || return 1; done; }
if have "$sys" || have "$local_dir$sys"; then exit 0; fi
echo "fetching Fashion-MNIST from Debian's dataset-fashion-mnist package ..."
if [ "$(id -u)" = 0 ]; then
  apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null; }
else
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download dataset-fashion-mnist >/dev/null)
  mkdir -p "$local_dir"
  dpkg -x "$tmp"/dataset-fashion-mnist_*.deb "$local_dir"
  rm -rf "$tmp"
fi
have "$sys" || have "$local_dir$sys" || { echo "Fashion-MNIST is still missing after the install" >&2; exit 1; }
