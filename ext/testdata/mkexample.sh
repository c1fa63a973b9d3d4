#!/bin/bash
# Builds example.img.gz, the image of the package's runnable examples: a
# 2 MiB ext4 filesystem (1 KiB blocks, metadata_csum, a journal) made by
# mkfs.ext4 -d from a small tree (e2fsprogs; no root, no mount). It holds
#   /boot/grub2/grubenv   a 1024-byte GRUB environment block
#   /etc/grubenv          a symlink to ../boot/grub2/grubenv
#   /etc/fstab            two lines
# The UUID, hash seed and times are fixed, so the image does not change when
# the script is run again with the same e2fsprogs. Run it from anywhere; it
# writes example.img.gz next to this script.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export E2FSPROGS_FAKE_TIME=1700000000 E2FSCK_TIME=1700000000
src=$work/src
mkdir -p "$src/boot/grub2" "$src/etc"
printf '# GRUB Environment Block\nsaved_entry=rhel-5.14.0\nkernelopts=root=/dev/mapper/rootvg-rootlv ro rd.luks.uuid=luks-0b5d\n' >"$work/env"
head -c $((1024 - $(wc -c <"$work/env"))) /dev/zero | tr '\0' '#' >>"$work/env"
cp "$work/env" "$src/boot/grub2/grubenv"
ln -s ../boot/grub2/grubenv "$src/etc/grubenv"
printf '/dev/mapper/rootvg-rootlv / ext4 defaults 1 1\nUUID=5e1f-0a7c /boot/efi vfat umask=0077 0 2\n' >"$src/etc/fstab"
find "$src" -exec touch -h -d @1600000000 {} +
img=$work/example.img
mkfs.ext4 -q -F -b 1024 -N 64 -U 7c3a9e2b-51d4-4f86-a0c2-9d1e8b6f4a35 -E hash_seed=7c3a9e2b-51d4-4f86-a0c2-9d1e8b6f4a35 \
  -L root -d "$src" "$img" 2M >/dev/null
# mkfs -d copies each file's ctime, which cannot be set on the source.
(cd "$src" && find . -mindepth 1) | sed 's|^\.||' |
  awk '{ print "sif \"" $0 "\" ctime @1600000000" } END { print "sif / ctime @1600000000" }' >"$work/cmds"
debugfs -w -f "$work/cmds" "$img" >/dev/null 2>&1
e2fsck -fn "$img" >/dev/null
gzip -9n <"$img" >"$here/example.img.gz"
