#!/usr/bin/env bash
# Debian's chromium and its chromedriver for the service's browser test
# (tests/test_serving.py), never a downloaded driver. Installed with
# apt-get when missing and run as root; otherwise one line naming the
# command to run, exit status 1 (the browser test then errors).
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
  echo "chromium or chromedriver is missing, so the browser test will error: as root (e.g. with sudo) run: apt-get update && apt-get install -y chromium chromium-driver" >&2
  exit 1
fi
echo "installing chromium and chromium-driver for the browser test" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
