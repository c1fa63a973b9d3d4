#!/bin/bash
# Builds the fuzz targets' base images, fuzz-*.img.gz: small filesystems made
# by mkfs -d (e2fsprogs; no root, no mount) whose every structure the fuzzer
# patches is present:
#   fuzz-ext4.img   ext4, 1 KiB blocks, metadata_csum, 64bit, flex_bg, a
#                   journal; an htree directory, an extent tree of depth 1,
#                   a slow and a fast symlink, nested directories
#   fuzz-ext2.img   ext2, 1 KiB blocks: direct, single and double indirect
#                   blocks; linear directories; no checksums
#   fuzz-inline.img ext4 with inline_data: inline files, directories and a
#                   symlink beside block-mapped ones
# The UUIDs, hash seeds and times are fixed, so the images (and the crashers
# saved in testdata/fuzz) do not change when the script is run again with
# the same e2fsprogs. Run it from anywhere; it writes next to itself.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export E2FSPROGS_FAKE_TIME=1700000000 E2FSCK_TIME=1700000000

text() { # text BYTES: compressible, non-zero content
  yes 'the quick brown fox jumps over the lazy dog 0123456789' | head -c "$1" || [ $? -eq 141 ] # yes ends on SIGPIPE
}

tree() { # tree DIR VARIANT
  local d=$1
  mkdir -p "$d/dir" "$d/sub/deeper"
  for i in $(seq 10 89); do text $((i * 3)) >"$d/dir/entry-number-$i"; done
  text 3000 >"$d/file"
  printf 'nested\n' >"$d/sub/deeper/file"
  # 8 pieces 2 KiB apart: 8 extents, one more than the inode holds.
  for i in 0 1 2 3 4 5 6 7; do
    text 1024 | dd of="$d/frag" bs=1024 seek=$((i * 2)) conv=notrunc status=none
  done
  ln -s file "$d/fast"
  ln -s "sub/deeper/../deeper/../deeper/../deeper/../deeper/../deeper/file" "$d/slow"
  ln -s "/sub/deeper" "$d/abs"
  ln -s loop "$d/loop"
  case $2 in
  ext2) text 300000 >"$d/big" ;; # double indirect with 1 KiB blocks
  inline)
    mkdir -p "$d/idir"
    printf 'tiny\n' >"$d/tiny"
    text 100 >"$d/mid"
    printf 'x\n' >"$d/idir/a"
    ln -s "$(printf 'long-inline-target-%.0s' 1 2 3 4)" "$d/ilink"
    ;;
  esac
  find "$d" -exec touch -h -d @1600000000 {} +
}

build() { # build NAME MKFS SIZE OPTIONS...
  local name=$1 mkfs=$2 size=$3
  shift 3
  local src=$work/$name
  mkdir "$src"
  tree "$src" "${name#fuzz-}"
  "$mkfs" -q -F -U 0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0 -E hash_seed=0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0 \
    -L "$name" -d "$src" "$@" "$work/$name.img" "$size" >/dev/null
  # mkfs -d copies each file's ctime, which cannot be set on the source.
  (cd "$src" && find . -mindepth 1) | sed 's|^\.||' |
    awk '{ print "sif \"" $0 "\" ctime @1600000000" } END { print "sif / ctime @1600000000" }' >"$work/$name.cmds"
  debugfs -w -f "$work/$name.cmds" "$work/$name.img" >/dev/null 2>&1
  e2fsck -fyD "$work/$name.img" >/dev/null || [ $? -eq 1 ]
  e2fsck -fn "$work/$name.img" >/dev/null
  gzip -9n <"$work/$name.img" >"$here/$name.img.gz"
}

build fuzz-ext4 mkfs.ext4 2M -b 1024 -N 128
build fuzz-ext2 mkfs.ext2 2M -b 1024 -N 128
build fuzz-inline mkfs.ext4 2M -b 1024 -N 128 -O inline_data -I 256
