#!/usr/bin/env bash
# Install headless Chromium (Debian's `chromium` package) for the browser check of the HTML report.
# Idempotent: does nothing when a chromium binary is already on PATH. Needs root (or sudo) to install.
set -euo pipefail

for bin in chromium chromium-browser google-chrome; do
  if command -v "$bin" >/dev/null 2>&1; then
    echo "chromium: found $(command -v "$bin")"
    exit 0
  fi
done

if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium is missing and apt-get is not available; install Chromium with your package manager" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "chromium is missing and installing it needs root; run this script as root or install sudo" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "chromium: installed $(command -v chromium)"
