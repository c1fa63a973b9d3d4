#!/usr/bin/env bash
# Installs what `make demo` and `make test` need. Idempotent: installs only what is missing.
# Runs as root (CI, developer machines); elsewhere it uses sudo when available.
set -euo pipefail

# command → Debian package that provides it
declare -A need=(
  [cryptsetup]=cryptsetup-bin
  [sgdisk]=gdisk
  [sfdisk]=fdisk
  [mkfs.xfs]=xfsprogs
  [xfs_repair]=xfsprogs
  [pvcreate]=lvm2
  [mkfs.vfat]=dosfstools
  [fsck.fat]=dosfstools
  [mcopy]=mtools
  [qemu-img]=qemu-utils
  [mkfs.ext4]=e2fsprogs
  [mkfs.btrfs]=btrfs-progs
  [xz]=xz-utils
  [openssl]=openssl
  [losetup]=mount
  [jq]=jq
  [grub-editenv]=grub-common
  [lsinitrd]=dracut-core
  [mkinitramfs]=initramfs-tools-core # testdata/ubuntu: Ubuntu-style initrds (mkinitramfs, lsinitramfs)
  [unmkinitramfs]=initramfs-tools-core
  [busybox]=busybox
  [/usr/share/initramfs-tools/hooks/cryptroot]=cryptsetup-initramfs
  [cpio]=cpio
  [zstd]=zstd
  [lz4]=lz4
  [qemu-system-x86_64]=qemu-system-x86
  [gcc]=gcc # go test -race (cgo)
)

missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
# GNU time (make bench: wall time and peak RSS); `command -v time` finds the shell keyword instead
[ -x /usr/bin/time ] || missing+=(time)

if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  echo "install-deps: installing $pkgs"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
fi

# Azurite, the Azure Storage emulator the blob tests run against, project-local (needs node and npm).
repo=$(cd "$(dirname "$0")/.." && pwd)
if ! command -v npm >/dev/null 2>&1; then
  $([ "$(id -u)" -eq 0 ] || echo sudo) apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $([ "$(id -u)" -eq 0 ] || echo sudo) apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
[ -x "$repo/.tools/azurite/node_modules/.bin/azurite-blob" ] ||
  npm install --prefix "$repo/.tools/azurite" --no-audit --no-fund --loglevel=error azurite@3.35.0 >/dev/null

command -v go >/dev/null 2>&1 || { echo "install-deps: Go 1.26 is required (see go.mod)" >&2; exit 1; }
go mod download
echo "install-deps: ok"
