#!/usr/bin/env bash
# Installs a Haven button on a Raspberry Pi (Raspberry Pi OS Lite, Bookworm) from a
# device bundle made by 'haven provision device' on the hub:
#
#   sudo deploy/pi/install.sh main-circ-01.tar.gz
#
# Run it from a copy of the Haven source (git clone or tarball) on the Pi. It:
#   1. apt-get installs python3-venv and python3-lgpio (gpiozero's pin driver on a Pi 5)
#   2. creates the system user 'haven' (group haven, member of gpio)
#   3. creates /opt/haven/venv (--system-site-packages, for lgpio) and pip installs
#      this source with the device extra
#   4. places device.toml, ca.crt, device.crt and device.key in /etc/haven
#      (key 0640 root:haven) and creates /var/lib/haven for the outbox
#   5. installs and enables deploy/systemd/haven-device.service, then runs the selftest
#
# Options:
#   --dry-run     change nothing outside --root: print the apt, user, venv and
#                 systemctl commands instead of running them; still place the files
#   --root DIR    install under DIR instead of / (the config's paths then point into
#                 DIR, so 'haven device selftest --config DIR/etc/haven/device.toml'
#                 works there)
#   --source DIR  the Haven source to pip install (default: this script's repository)
#
# Exit codes: 0 installed; 2 bad bundle or arguments; 1 a step failed.
set -euo pipefail

dry_run=0
root=/
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_dir=$(cd "$here/../.." && pwd)
bundle=

usage() { sed -n '2,25p' "$0" >&2; exit 2; }
die() { echo "install.sh: $1" >&2; exit "${2:-1}"; }

while (($#)); do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --root) root=${2:?--root needs a directory}; shift ;;
    --source) source_dir=${2:?--source needs a directory}; shift ;;
    -h|--help) usage ;;
    -*) die "unknown option $1 (see --help)" 2 ;;
    *) [[ -z "$bundle" ]] || die "one bundle only, got $bundle and $1" 2; bundle=$1 ;;
  esac
  shift
done
[[ -n "$bundle" ]] || die "give the device bundle: install.sh [--dry-run] [--root DIR] BUNDLE.tar.gz" 2
[[ -r "$bundle" ]] || die "$bundle: cannot read the bundle (copy it from the hub's /etc/haven/devices/)" 2
root=${root%/}
etc="$root/etc/haven"
state="$root/var/lib/haven"
units="$root/etc/systemd/system"
venv=/opt/haven/venv

# Run a system-changing command, or in dry-run mode only say it.
run() {
  if ((dry_run)); then echo "would run: $*"; else echo "+ $*"; "$@"; fi
}

# --- the bundle: four files, nothing else ---------------------------------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$bundle" -C "$work" --no-same-owner 2>/dev/null \
  || die "$bundle: not a tar.gz bundle (make one with 'haven provision device')" 2
for f in device.toml ca.crt device.crt device.key; do
  [[ -f "$work/$f" ]] || die "$bundle: missing $f; provision the device again" 2
done
extra=$(cd "$work" && find . -mindepth 1 ! -name device.toml ! -name ca.crt ! -name device.crt ! -name device.key)
[[ -z "$extra" ]] || die "$bundle: unexpected entries: $extra" 2
device_id=$(sed -n 's/^id = "\([A-Za-z0-9_-]*\)".*/\1/p' "$work/device.toml" | head -1)
[[ -n "$device_id" ]] || die "$bundle: device.toml has no [device] id" 2
echo "installing Haven device $device_id into ${root:-/}"

# --- 1-3: packages, user, venv ----------------------------------------------------
# Another root (an SD card mounted elsewhere, a test) gets files only, no system changes.
if [[ -n "$root" ]] && ((!dry_run)); then
  die "--root needs --dry-run (packages, user and units are installed on the Pi itself)" 2
fi
run apt-get update -qq
run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-lgpio
getent group gpio >/dev/null 2>&1 || run groupadd --system gpio
if ! getent passwd haven >/dev/null 2>&1 || ((dry_run)); then
  run useradd --system --user-group --home-dir /var/lib/haven --shell /usr/sbin/nologin haven
fi
run usermod -a -G gpio haven
run python3 -m venv --system-site-packages "$venv"
run "$venv/bin/pip" install --disable-pip-version-check -q "$source_dir[device]"

# --- 4: config, certificates, state directory ------------------------------------
install -d -m 0750 "$etc" "$state"
# With another root, the config's absolute paths point into it.
if [[ -n "$root" ]]; then
  sed -e "s#\"/etc/haven/#\"$root/etc/haven/#g" -e "s#\"/var/lib/haven/#\"$root/var/lib/haven/#g" \
    "$work/device.toml" > "$work/device.toml.rooted"
  mv "$work/device.toml.rooted" "$work/device.toml"
fi
install -m 0644 "$work/device.toml" "$work/ca.crt" "$work/device.crt" "$etc/"
install -m 0640 "$work/device.key" "$etc/device.key"
if ((dry_run)); then
  echo "would run: chgrp haven $etc $etc/device.key; chown haven:haven $state"
else
  chgrp haven "$etc" "$etc/device.key"
  chown haven:haven "$state"
fi

# --- 5: the unit, then a selftest ----------------------------------------------------
install -d "$units"
install -m 0644 "$source_dir/deploy/systemd/haven-device.service" "$units/"
run systemctl daemon-reload
run systemctl enable --now haven-device.service
if ((dry_run)); then
  echo "would run: runuser -u haven -- $venv/bin/haven device selftest --config /etc/haven/device.toml"
else
  runuser -u haven -- "$venv/bin/haven" device selftest --config /etc/haven/device.toml \
    || die "installed, but the selftest failed (above): fix it, then: systemctl restart haven-device"
fi
echo "done: $device_id installed; its config is $etc/device.toml"
