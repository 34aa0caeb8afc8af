#!/usr/bin/env bash
# Installs the Debian packages Haven's demo and tests need, only those missing:
# mosquitto and redis-server (always), python3-venv (when python3 lacks ensurepip),
# chromium and systemd (with --browser, for the tests: the dashboard's browser tests,
# and systemd-analyze verify on deploy/systemd/; a bare Debian image lacks both).
# Runs apt-get through sudo when not root. Idempotent: a no-op when all is there.
set -euo pipefail

want_browser=0
[[ "${1:-}" == "--browser" ]] && want_browser=1

have_bin() { command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" ]]; }

missing=()
have_bin mosquitto || missing+=(mosquitto)
have_bin redis-server || missing+=(redis-server)
python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if ((want_browser)); then have_bin chromium || missing+=(chromium); fi
if ((want_browser)); then have_bin systemd-analyze || missing+=(systemd); fi

((${#missing[@]} == 0)) && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: missing ${missing[*]} and no apt-get here; install them with your package manager" >&2
  exit 1
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 || { echo "install-deps: need root or sudo to apt-get install ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
echo "install-deps: apt-get install ${missing[*]}"
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
