#!/bin/bash
# Builds the XFS fixtures that need a mounted filesystem (fragmented files
# with btree-format data forks, reflinked files, unwritten extents, kernel-made
# remote symlinks, a dirty log). Run as root on Linux with loop devices and
# xfsprogs; it writes testdata/*.img.xz next to this script.
#
#   frag4k.img   v5, 4 KiB blocks, nrext64, rmapbt, reflink, clean log.
#                /frag      600 one-block extents (btree data fork), block i
#                           filled with byte (7*i+1)&255; /spacer is its
#                           interleaved partner (1 extent per block as well)
#                /orig, /clone   8 KiB, sharing blocks (cp --reflink)
#                /sparse    68 KiB: 4 KiB data, hole, 4 KiB data at 64 KiB
#                /prealloc  64 KiB falloc'd (unwritten) with the first 4 KiB written
#                /longlink  symlink with a 607-byte target (remote, v5 header)
#                /bigdir    directory with 700 entries (hard links to /target)
#                           interleaved with allocations for /spacer2
#                           (btree-format directory data fork)
#                /leaf1     leaf-form directory left with a single (full) data
#                           block after removals (di_size = one block)
#                The log has been used (thousands of transactions) and then
#                unmounted cleanly.
#   frag1k.img   v5, 1 KiB blocks, nrext64: /frag with 1500 extents (a
#                2-level block-map btree), same content rule.
#   dirty.img    v5: a file is written and the log forced, then the
#                filesystem is shut down without writing back metadata: the
#                log needs replay.
#   example.img  (gzip, for the runnable Example; no mount needed) a 16 MiB
#                v5 filesystem from a mkfs.xfs protofile: a GRUB environment
#                block and a symlink to it.
# (Logs that wrapped are made at test time: xfs_db logformat -c, and a
# mounted-filesystem test when mounting is possible.)
set -euo pipefail
export TEST_DIR=1 TEST_DEV=1 QA_CHECK_FS=1 # let mkfs.xfs make < 300 MB filesystems
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
mnt=$work/mnt
mkdir "$mnt"
cleanup() { mountpoint -q "$mnt" && umount "$mnt"; rm -rf "$work"; }
trap cleanup EXIT

# interleave FILE PARTNER N BS: O_DIRECT one-block writes alternating
# between two files, so that neither gets two adjacent blocks. (One xfs_io
# process per write: switching files inside one xfs_io mixed up the -S fill
# patterns.)
interleave() {
	local f=$1 p=$2 n=$3 bs=$4 i
	for ((i = 0; i < n; i++)); do
		xfs_io -f -d -c "pwrite -q -S $(((7 * i + 1) & 255)) -b $bs $((i * bs)) $bs" "$f"
		xfs_io -f -d -c "pwrite -q -S 0x55 -b $bs $((i * bs)) $bs" "$p"
	done
}

# frag4k.img
img=$work/frag4k.img
truncate -s 48m "$img"
mkfs.xfs -q -f -b size=4096 -i nrext64=1 -m rmapbt=1,reflink=1 "$img"
mount -o loop "$img" "$mnt"
interleave "$mnt/frag" "$mnt/spacer" 600 4096
xfs_io -f -c "pwrite -q -S 0x42 0 8k" "$mnt/orig"
cp --reflink=always "$mnt/orig" "$mnt/clone"
xfs_io -f -c "pwrite -q -S 0x61 0 4k" -c "pwrite -q -S 0x62 64k 4k" "$mnt/sparse"
xfs_io -f -c "falloc 0 64k" -c "pwrite -q -S 0x63 0 4k" "$mnt/prealloc"
ln -s "../$(printf './%.0s' $(seq 300))frag" "$mnt/longlink"
mkdir "$mnt/bigdir"
xfs_io -f -d -c "pwrite -q 0 4k" "$mnt/spacer2"
pad=$(printf 'x%.0s' $(seq 230))
: >"$mnt/target"
for ((i = 0; i < 700; i++)); do
	printf -v name 'entry-%05d-%s' "$i" "$pad"
	ln "$mnt/target" "$mnt/bigdir/$name" # hard links: entries without inodes
	if ((i % 5 == 4)); then
		sync -f "$mnt/bigdir"
		xfs_io -d -c "pwrite -q $(((i / 5 + 1) * 4096)) 4k" "$mnt/spacer2"
	fi
done
# /leaf1: fill data block 0, spill into more blocks (leaf form), then remove
# the spilled entries: one full data block is left, too full to convert back
# to block form.
mkdir "$mnt/leaf1"
pad=$(printf 'y%.0s' $(seq 34))
for ((i = 0; i < 170; i++)); do
	printf -v name 'n%04d-%s' "$i" "$pad"
	ln "$mnt/target" "$mnt/leaf1/$name"
done
for ((i = 70; i < 170; i++)); do
	printf -v name 'n%04d-%s' "$i" "$pad"
	rm "$mnt/leaf1/$name"
done
umount "$mnt"
xfs_repair -n -f "$img"
xfs_logprint -d "$img" | grep 'New Cycle' || true

# frag1k.img
img=$work/frag1k.img
truncate -s 32m "$img"
mkfs.xfs -q -f -b size=1024 -i nrext64=1 "$img"
mount -o loop "$img" "$mnt"
interleave "$mnt/frag" "$mnt/spacer" 1500 1024
umount "$mnt"
xfs_repair -n -f "$img"

# dirty.img
img=$work/dirty.img
truncate -s 32m "$img"
mkfs.xfs -q -f "$img"
mount -o loop "$img" "$mnt"
xfs_io -f -c "pwrite -q -S 0x64 0 16k" "$mnt/file"
mkdir "$mnt/dir"
sync -f "$mnt/file" # forces the log, leaves metadata to write back later
xfs_io -x -c "shutdown" "$mnt"
umount "$mnt"
if xfs_repair -n -f "$img" >/dev/null 2>&1; then
	echo "dirty.img: xfs_repair -n found no dirty log" >&2
	exit 1
fi
xfs_logprint -d "$img" | grep 'New Cycle' || true

# example.img
{
	printf '# GRUB Environment Block\nsaved_entry=rhel-5.14.0\nkernelopts=root=/dev/mapper/rootvg-rootlv ro\n'
	head -c 1024 /dev/zero | tr '\0' '#'
} | head -c 1024 >"$work/grubenv"
cat >"$work/proto" <<PROTO
example
0 0
d--755 0 0
boot d--555 0 0
 grub2 d--700 0 0
  grubenv ---644 0 0 $work/grubenv
 \$
\$
etc d--755 0 0
 grubenv l--777 0 0 ../boot/grub2/grubenv
\$
\$
PROTO
img=$work/example.img
: >"$img"
mkfs.xfs -q -f -p "$work/proto" -d "file,name=$img,size=16m" -L example -m uuid=6f1c4b1e-2b0a-4c7e-9d5e-0123456789ab
xfs_repair -n -f -o force_geometry "$img" # one AG
gzip -9 -n -c "$img" >"$here/example.img.gz"

for f in frag4k frag1k dirty; do
	xz -9e -c "$work/$f.img" >"$here/$f.img.xz"
done
ls -l "$here"/*.img.*
