#!/usr/bin/env bash
# make demo: build an ADE-style RHEL 8 OS disk with the real tools, inspect it, convert it to an
# Azure-ready fixed VHD, and check the result against the known plaintext with qemu-img; then convert a
# bootable ADE-style disk (dracut initramfs with ADE's hook) and boot it in qemu without the key.
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
echo "(its /boot kernel and initramfs are random stand-ins: luksconv warns that it cannot read that"
echo " initramfs, as it would for a real one it cannot parse; the bootable sample below has a real one)"
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
if [ "$before" = "$after" ]; then echo "source image unchanged (sha256 $after)"; else echo "SOURCE CHANGED" >&2; exit 1; fi
echo

# Second sample: a disk that really boots. Its initramfs is made by dracut with a stand-in for ADE's
# 91adeOnline hook, so the conversion has a real image to rewrite; the converted disk then boots in qemu
# (software emulation) without the BEK disk and without dm-crypt.
echo "== A bootable sample (dracut initramfs with ADE's hook; testdata/boot/mkbootdisk.sh) =="
if [ ! -f "$out/boot/manifest.json" ]; then
  rm -rf "${out:?}/boot"
  DEB_CACHE="$out/debs" testdata/boot/mkbootdisk.sh "$out/boot" >"$out/boot-build.log" 2>&1 ||
    { tail -30 "$out/boot-build.log"; exit 1; }
fi
bm="$out/boot/manifest.json"
bdisk="$out/boot/$(jq -r .disk "$bm")"
bkey="$out/boot/$(jq -r .key "$bm")"
bbefore=$(sha256sum "$bdisk" | cut -d' ' -f1)
echo "image  $bdisk ($(du -h --apparent-size "$bdisk" | cut -f1)); kernel $(jq -r .kernel_version "$bm")"
echo
echo "== luksconv convert (the plan's initramfs and kernel-argument edits) =="
rm -f "$out/boot-plain.raw"
$bin convert --key-file "$bkey" "$bdisk" "$out/boot-plain.raw" 2>&1 |
  { grep -E '^(Volume|Output):|initramfs-.*: remove|grubenv.*: remove|^converted' || true; } | cut -c1-200
[ -f "$out/boot-plain.raw" ] || { echo "demo: the bootable sample did not convert" >&2; exit 1; }
echo

echo "== Checks by tools luksconv did not write =="
read -r bstart bsize < <(sfdisk --json "$out/boot-plain.raw" |
  jq -r --argjson n "$(jq -r .boot_partition "$bm")" '.partitiontable | .sectorsize as $ss | .partitions[$n - 1] | "\(.start * $ss) \(.size * $ss)"')
mkdir -p "$out/bootmnt"
mount -t xfs -o ro,loop,offset="$bstart",sizelimit="$bsize" "$out/boot-plain.raw" "$out/bootmnt"
cp "$out/bootmnt$(jq -r .kernel_path "$bm")" "$out/vmlinuz"
cp "$out/bootmnt$(jq -r .initramfs_path "$bm")" "$out/initramfs.img"
cmdline=$(grub-editenv "$out/bootmnt$(jq -r .grubenv_path "$bm")" list | sed -n 's/^kernelopts=//p')
umount "$out/bootmnt"
echo "lsinitrd: $(lsinitrd "$out/initramfs.img" | grep -c -i -e adeOnline -e 'rd.luks.ade') lines name ADE's hook (was $(lsinitrd "$out/boot/$(jq -r .initramfs "$bm")" | grep -c -i -e adeOnline -e 'rd.luks.ade'))"
echo "kernel arguments (grubenv kernelopts): $cmdline"
echo
echo "== Booting the converted disk in qemu, without the BEK disk (software emulation, ~30 s) =="
marker=$(jq -r .marker "$bm")
timeout 300 qemu-system-x86_64 -accel tcg -m 1024 -smp 2 -nodefaults -display none -no-reboot -monitor none \
  -serial stdio -kernel "$out/vmlinuz" -initrd "$out/initramfs.img" -append "$cmdline panic=-1" \
  -drive "file=$out/boot-plain.raw,format=raw,if=virtio,snapshot=on" >"$out/boot-console.log" 2>&1 || true
if grep -a -q "$marker" "$out/boot-console.log"; then
  grep -a -o -e "$marker.*" -e "LUKSCONV-BOOT-DM.*" "$out/boot-console.log" | tr -d '\r'
  if grep -a -q "LUKSCONV-BOOT-DM.*CRYPT" "$out/boot-console.log"; then echo "demo: dm-crypt was used" >&2; exit 1; fi
  echo "booted: / is on LVM straight on the disk, no dm-crypt, no key (console in $out/boot-console.log)"
else
  echo "demo: the converted disk did not boot; last console lines:" >&2
  tail -20 "$out/boot-console.log" | tr -d '\r' >&2
  exit 1
fi
bafter=$(sha256sum "$bdisk" | cut -d' ' -f1)
if [ "$bbefore" = "$bafter" ]; then echo "source image unchanged (sha256 $bafter)"; else echo "SOURCE CHANGED" >&2; exit 1; fi
rm -f "$out/vmlinuz" "$out/initramfs.img"
echo
echo "demo: ok (outputs in $out/plain.vhd and $out/boot-plain.raw)"
