#!/usr/bin/env bash
# The system packages trail's tests and documents need beyond Python: Debian's Chromium (the
# console is tested in a real browser) and a Chinese font (PDF documents in Chinese). `make venv`
# runs this: it installs what is missing with apt-get when it may, and otherwise says exactly what
# to install and stops.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v fc-list >/dev/null 2>&1 || need+=(fontconfig)
if ! (command -v fc-list >/dev/null 2>&1 && fc-list :lang=zh family 2>/dev/null | grep -q .); then
  need+=(fonts-wqy-microhei)
fi
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  exit 0
fi
echo "trail needs these system packages: ${need[*]}" >&2
echo "install them first, e.g.: sudo apt-get install --no-install-recommends ${need[*]}" >&2
exit 1
