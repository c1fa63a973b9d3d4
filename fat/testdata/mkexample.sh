#!/bin/bash
# Builds example.img.gz, the image of the package's runnable examples: a
# 256 KiB FAT12 EFI System Partition made by mkfs.vfat and filled by mtools
# (dosfstools and mtools; no root, no mount). It holds
#   EFI/redhat/grubenv    a 1024-byte GRUB environment block
#   EFI/redhat/grub.cfg   1375 bytes (25 menu entries): three 512-byte clusters
#   EFI/BOOT/BOOTX64.EFI  a stand-in for the shim
# Run it from anywhere; it writes example.img.gz next to this script.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
img=$work/example.img
export MTOOLS_SKIP_CHECK=1
mkfs.vfat -C -F 12 -s 1 -i 5e1f0a7c -n ESP "$img" 256 >/dev/null
mmd -i "$img" ::EFI ::EFI/redhat ::EFI/BOOT
{
  printf '# GRUB Environment Block\nsaved_entry=rhel-5.14.0\nkernelopts=root=/dev/mapper/rootvg-rootlv ro rd.luks.uuid=luks-0b5d\n'
} >"$work/env"
head -c $((1024 - $(wc -c <"$work/env"))) /dev/zero | tr '\0' '#' >>"$work/env"
for i in $(seq 1 25); do
  printf 'menuentry "RHEL %02d" { linux /vmlinuz root=/dev/sda%02d }\n' "$i" "$i"
done >"$work/cfg"
printf 'MZ shim stand-in\n' >"$work/efi"
mcopy -i "$img" "$work/env" ::EFI/redhat/grubenv
mcopy -i "$img" "$work/cfg" ::EFI/redhat/grub.cfg
mcopy -i "$img" "$work/efi" ::EFI/BOOT/BOOTX64.EFI
fsck.fat -n "$img" >/dev/null
gzip -9n <"$img" >"$here/example.img.gz"
