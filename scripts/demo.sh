#!/usr/bin/env bash
# make demo: build an ADE-style RHEL 8 OS disk with the real tools, inspect it, convert it to an
# Azure-ready fixed VHD, and check the result against the known plaintext with qemu-img.
set -euo pipefail
cd "$(dirname "$0")/.."
out=demo-out
bin=bin/luksconv
mkdir -p "$out"

echo "== Building the sample disk (cryptsetup reencrypt --encrypt --header, as ADE does) =="
if [ ! -f "$out/disk/manifest.json" ]; then
  rm -rf "$out/disk"
  testdata/mkfixtures.sh --only rhel8-lvm "$out/disk" >"$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
fi
m="$out/disk/manifest.json"
fx='.fixtures[] | select(.name=="rhel8-lvm")'
image="$out/disk/$(jq -r "$fx.image" "$m")"
key="$out/disk/$(jq -r "$fx.key_files[0]" "$m")"
expected="$out/disk/$(jq -r "$fx.expected" "$m")"
echo "image  $image ($(du -h --apparent-size "$image" | cut -f1), $(wc -c <"$key")-byte BEK key file)"
echo

before=$(sha256sum "$image" | cut -d' ' -f1)

echo "== luksconv inspect (the detached header is found on /boot) =="
$bin inspect "$image"
echo

echo "== luksconv convert --format vhd =="
rm -f "$out/plain.vhd"
$bin convert --key-file "$key" --format vhd "$image" "$out/plain.vhd"
echo

echo "== Checks by tools luksconv did not write =="
qemu-img info -f vpc "$out/plain.vhd" | sed -n '1,4p'
qemu-img convert -f vpc -O raw "$out/plain.vhd" "$out/plain.raw"
sgdisk -v "$out/plain.raw" | grep -E 'No problems|problem' | head -3
bootpart=$(jq -r "$fx.boot_partition" "$m")
read -r start size < <(jq -r "$fx.partitions[] | select(.number==$bootpart) | \"\(.start) \(.size)\"" "$m")
dd if="$out/plain.raw" of="$out/boot.xfs" bs=1M iflag=skip_bytes,count_bytes skip="$start" count="$size" status=none
if xfs_repair -n -f "$out/boot.xfs" >/dev/null 2>&1; then echo "xfs_repair -n: /boot is clean after the edits"; else echo "xfs_repair -n: /boot has errors" >&2; exit 1; fi
echo
echo "== The decryption alone is exact (--keep-guest --full-copy, compared with the known plaintext) =="
$bin convert -q --keep-guest --full-copy --key-file "$key" "$image" "$out/decrypted.raw" --force
if cmp -s "$out/decrypted.raw" "$expected"; then
  echo "cmp: the decrypted disk equals the known plaintext disk byte for byte"
else
  echo "cmp: MISMATCH" >&2
  exit 1
fi
rm -f "$out/decrypted.raw" "$out/plain.raw" "$out/boot.xfs"
echo
echo "== luksconv inspect of the output =="
$bin inspect "$out/plain.vhd" | sed -n '/Readiness/,$p'
after=$(sha256sum "$image" | cut -d' ' -f1)
[ "$before" = "$after" ] && echo "source image unchanged (sha256 $after)" || { echo "SOURCE CHANGED" >&2; exit 1; }
echo
echo "demo: ok (output in $out/plain.vhd)"
