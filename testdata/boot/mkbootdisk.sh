#!/usr/bin/env bash
# mkbootdisk.sh builds a BOOTABLE ADE-style (Azure Disk Encryption, RHEL 8 LVM flow) disk for the qemu
# boot tests (internal/qemuboot), with the real tools only:
#
#   testdata/boot/mkbootdisk.sh OUTDIR
#
# OUTDIR gets:
#   bootdisk.raw        GPT like the rhel8-lvm fixture: p1 ESP (vfat), p2 /boot (xfs), p3 BIOS boot,
#                       p4 LVM PV of rootvg, encrypted in place like ADE (cryptsetup reencrypt --encrypt
#                       --type luks2 --header), root filesystem (xfs) on rootvg/rootlv
#   bootdisk.plain.raw  the same disk before encryption (what a byte-level decryption of p4 gives;
#                       /boot, ADE's kernel arguments and initramfs untouched)
#   bek.raw             the BEK disk: GPT, p1 vfat labelled "BEK VOLUME" holding LinuxPassPhraseFileName
#   bootdisk.key        the 172-byte ADE passphrase file (no newline)
#   bootdisk.luksheader the detached LUKS2 header (copy of /boot/luks/osluksheader)
#   vmlinuz, initramfs.img  copies of the kernel and initramfs put into /boot
#   manifest.json       see internal/qemuboot.Manifest
#
# The kernel is a Debian 12 cloud kernel fetched with `apt-get download` and unpacked with `dpkg -x`
# (nothing is installed on the host); $DEB_CACHE, if set, is a directory that keeps the downloaded
# .debs between builds. The initramfs is built by the host's dracut from a private copy of
# /usr/lib/dracut with testdata/boot/91adeOnline added (a stand-in for ADE's module written from
# docs/ade-internals.md §4.1), with systemd, crypt, dm and lvm, like a RHEL 8 initramfs after ADE.
# The root filesystem's /sbin/init is a busybox script that prints the marker line
#   LUKSCONV-BOOT-OK root=<source of />
# (after LUKSCONV-BOOT-DM lines describing the device-mapper devices) and powers the machine off.
#
# Exit status: 0 ok, 2 usage, 3 a required tool, privilege or package is missing ("missing tool: X" on
# stderr), anything else: a build step failed. KEEP_TMP=1 keeps OUTDIR.tmp after a failure.
# Needs root: loop devices for LVM and cryptsetup's reencryption lock. Device-mapper is NOT needed.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C
umask 022

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
HERE=$(dirname "$SCRIPT")
[ $# -eq 1 ] && [[ $1 != -* ]] || { echo "usage: $0 OUTDIR" >&2; exit 2; }

missing() { echo "missing tool: $*" >&2; exit 3; }
for t in apt-get apt-cache dpkg depmod dracut cryptsetup lvm sgdisk mkfs.xfs mkfs.vfat mcopy losetup \
  openssl base64 sha256sum truncate dd awk find mmd; do
  command -v "$t" >/dev/null 2>&1 || missing "$t"
done
[ "$(id -u)" -eq 0 ] || missing "root privileges (loop devices and cryptsetup reencrypt need root)"
losetup -f >/dev/null 2>&1 || missing "loop devices (losetup -f failed)"

T0=$(date +%s%N)
log() { printf '[mkbootdisk %6.2fs] %s\n' "$(($(date +%s%N) - T0))e-9" "$*"; }

OUT=$(readlink -m "$1")
if [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ] && [ ! -f "$OUT/manifest.json" ]; then
  echo "$OUT exists and is not a boot disk set (no manifest.json); not replacing it" >&2
  exit 2
fi
TMP="$OUT.tmp"
WORK="$TMP/.work"
LOOPS=()
cleanup() {
  local rc=$? l
  for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  if ((rc != 0)) && [ -z "${KEEP_TMP:-}" ]; then rm -rf "$TMP"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
rm -rf "$TMP"
mkdir -p "$WORK"

MiB=1048576
# ADE's LUKS parameters except the KDF cost, made cheap so the guest unlocks fast under TCG.
ARGON=(--pbkdf-memory 32768 --pbkdf-force-iterations 4)
export MTOOLS_SKIP_CHECK=1 LVM_SUPPRESS_FD_WARNINGS=1

DISK_GUID=5e1f2a3b-00b0-4c5d-8e9f-0a1b2c3d4e01
P1=5e1f2a3b-00b0-4c5d-8e9f-0a1b2c3d4e11 P2=5e1f2a3b-00b0-4c5d-8e9f-0a1b2c3d4e12
P3=5e1f2a3b-00b0-4c5d-8e9f-0a1b2c3d4e13 P4=5e1f2a3b-00b0-4c5d-8e9f-0a1b2c3d4e14
BEK_GUID=5e1f2a3b-00b1-4c5d-8e9f-0a1b2c3d4e01 BEK_P1=5e1f2a3b-00b1-4c5d-8e9f-0a1b2c3d4e11
BOOT_UUID=0b7e0c8a-8e21-4d3f-9c55-3f1e2d4cb001 ROOT_UUID=0b7e0c8a-8e21-4d3f-9c55-3f1e2d4cb002
ESP_ID=4A1BB0B0 BEK_ID=BE4B0001 PV_UUID=Bt8rH2-qL4m-Ad9e-Ws3t-Zp6u-Kb1n-Vc7yB0
MID=4c1a2b3d5e6f708192a3b4c5d6e7b001
MARKER=LUKSCONV-BOOT-OK
ADEARGS="rd.luks.ade.partuuid=$P4 rd.luks.ade.bootuuid=$BOOT_UUID rd.debug"
KOPTS="root=/dev/mapper/rootvg-rootlv ro rd.lvm.lv=rootvg/rootlv $ADEARGS console=ttyS0"
# GPT layout in MiB (start:size): ESP 1:34, /boot 35:500, BIOS boot 535:2, PV 537:96
BOOT_START=35 BOOT_MIB=500 PV_START=537 PV_MIB=96 DISK_MIB=634 ROOTLV_MIB=64

# rand SEED SIZE: deterministic pseudo-random bytes (AES-128-CTR keystream).
rand() { head -c "$2" /dev/zero | openssl enc -aes-128-ctr -pass "pass:$1" -nosalt -pbkdf2 -iter 1; }
size() { stat -c %s "$1"; }
sha() { sha256sum "$1" | awk '{print $1}'; }
jstr() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
put() { dd if="$2" of="$1" bs=1M seek="$3" conv=notrunc,sparse status=none; }

# proto_body DIR: the body of an xfs protofile (mkfs.xfs -p) describing DIR's contents.
proto_body() {
  find "$1" -mindepth 1 -printf '%d %y %m %f %p %l\n' | awk '
    {
      d = $1; m = "000" $3; m = substr(m, length(m) - 2)
      while (n > 0 && open[n] >= d) { print "$"; n-- }
      if ($2 == "d") { print $4 " d--" m " 0 0"; open[++n] = d }
      else if ($2 == "l") print $4 " l--777 0 0 " $6
      else print $4 " ---" m " 0 0 " $5
    }
    END { while (n > 0) { print "$"; n-- } }'
}

# mkxfs TREE IMG SIZE UUID LABEL [mkfs.xfs options]: an XFS image holding TREE, made without mounting.
# The fstests variables let mkfs.xfs >= 5.19 make filesystems < 300 MB; mkfs.xfs 6.1 -p corrupts files
# larger than one allocation group, so AGs are kept larger than the largest file.
mkxfs() {
  local tree=$1 img=$2 sz=$3 uuid=$4 label=$5
  shift 5
  { echo /dev/null; echo "0 0"; echo "d--755 0 0"; proto_body "$tree"; echo '$'; } >"$img.proto"
  rm -f "$img"
  truncate -s "$sz" "$img"
  TEST_DIR=/tmp TEST_DEV=/dev/null QA_CHECK_FS=1 mkfs.xfs -q -f -m uuid="$uuid" -L "$label" "$@" -p "$img.proto" "$img"
  rm -f "$img.proto"
}

# grubenv FILE LINE...: a 1024-byte GRUB environment block padded with '#', as grub-editenv writes it.
grubenv() {
  local f=$1; shift
  { printf '# GRUB Environment Block\n'; printf '%s\n' "$@"; } >"$f.tmp"
  { cat "$f.tmp"; head -c $((1024 - $(size "$f.tmp"))) /dev/zero | tr '\0' '#'; } >"$f"
  rm "$f.tmp"
  [ "$(size "$f")" -eq 1024 ]
}

# ------------------------------------------------------------------------------- packages (.deb)
# shellcheck source=../lib/debkernel.sh
. "$HERE/../lib/debkernel.sh"
debian_kernel

# ------------------------------------------------------------------------------------ key file
# ADE's passphrase: base64 of 127 random bytes, 172 bytes, no trailing newline.
rand bootdisk-bek 127 | base64 -w0 >"$TMP/bootdisk.key"
[ "$(size "$TMP/bootdisk.key")" -eq 172 ]

# ----------------------------------------------------------------------------- root filesystem
log "root filesystem (xfs, busybox /sbin/init)"
r="$WORK/root"
mkdir -p "$r"/{bin,sbin,etc/lvm,etc/dracut.conf.d,usr/lib,dev,proc,sys,run,tmp,boot,mnt/azure_bek_disk,root}
cp "$BB/bin/busybox" "$r/bin/busybox"
for a in sh mount umount cat ls awk echo sleep sync poweroff reboot tr head basename; do
  ln -s busybox "$r/bin/$a"
done
cat >"$r/sbin/init" <<EOF
#!/bin/sh
# luksconv boot-test init: report how / is mounted, then power off.
export PATH=/bin:/sbin
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
exec >/dev/console 2>&1
root=\$(awk '\$2 == "/" { s = \$1 } END { print s }' /proc/mounts)
for d in /sys/block/dm-*; do
  [ -e "\$d/dm/name" ] || continue
  echo "LUKSCONV-BOOT-DM \$(basename "\$d") name=\$(cat "\$d/dm/name") uuid=\$(cat "\$d/dm/uuid") slaves=\$(ls "\$d/slaves" | tr '\n' ' ')"
done
echo "$MARKER root=\$root"
sync
poweroff -f
echo o >/proc/sysrq-trigger
sleep 10
EOF
chmod 755 "$r/sbin/init"
cat >"$r/etc/fstab" <<EOF
/dev/mapper/rootvg-rootlv /                       xfs     defaults        0 0
UUID=$BOOT_UUID /boot                   xfs     defaults        0 0
LABEL=BEK\\040VOLUME /mnt/azure_bek_disk auto defaults,discard,nofail 0 0
EOF
# ADE writes the crypttab line without a trailing newline (ade-internals 4.1 step 4).
printf 'osencrypt /dev/disk/by-partuuid/%s /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,discard,header=/boot/luks/osluksheader' \
  "$P4" >"$r/etc/crypttab"
printf 'add_drivers+=" dm_crypt "\nadd_dracutmodules+=" crypt lvm "\n' >"$r/etc/dracut.conf.d/ade.conf"
cat >"$r/etc/lvm/lvm.conf" <<EOF
# luksconv boot disk lvm.conf (abridged); the last line is ADE's (ade-internals 4.1 step 5)
devices {
	dir = "/dev"
	scan = [ "/dev" ]
}
devices { filter = ["a|osencrypt|", "r|$P4|"] }
EOF
echo "$MID" >"$r/etc/machine-id"
printf 'NAME="luksconv boot test"\nID=luksconv-boot\nVERSION_ID=1\n' >"$r/etc/os-release"
cp "$r/etc/os-release" "$r/usr/lib/os-release"
mkdir -p "$r/usr/lib/dracut/modules.d/91adeOnline"
cp "$HERE"/91adeOnline/*.sh "$r/usr/lib/dracut/modules.d/91adeOnline/"
mkxfs "$r" "$WORK/rootlv.xfs" "${ROOTLV_MIB}M" "$ROOT_UUID" root

# ------------------------------------------------------------------------------------------ PV
log "PV: rootvg/rootlv with the lvm2 tools on a loop device (never activated)"
pv="$WORK/pv.raw"
truncate -s $((PV_MIB * MiB)) "$pv"
loop=$(losetup -f --show "$pv")
LOOPS+=("$loop")
cfg=$(printf 'devices{filter=["a|^%s$|","r|.*|"] global_filter=["a|^%s$|","r|.*|"] obtain_device_list_from_udev=0 use_devicesfile=0} activation{udev_sync=0 udev_rules=0 monitoring=0} global{activation=0} backup{backup=0 archive=0}' "$loop" "$loop")
{
  lvm pvcreate --config "$cfg" -q -y -ff --uuid "$PV_UUID" --norestorefile "$loop"
  lvm vgcreate --config "$cfg" -q -s 4M rootvg "$loop"
  lvm lvcreate --config "$cfg" -q -an -Zn -y -L "${ROOTLV_MIB}M" -n rootlv rootvg
  lvm vgcfgbackup --config "$cfg" -q -f "$WORK/rootvg.vgcfg" rootvg
} 2>&1 | { grep -v -e 'WARNING: Activation disabled' -e 'not zeroed' || true; }
losetup -d "$loop"
LOOPS=()
# the LV's segments, read back from LVM's own metadata dump
awk '
  /logical_volumes \{/ {inlv=1}
  /^\t*extent_size =/ {es=$3}
  /^\t*pe_start =/ {ps=$3}
  /start_extent =/ {se=$3}
  /extent_count =/ {ec=$3}
  inlv && /"pv0", [0-9]+/ {gsub(/[",]/, " "); print se, ec, $2, es * 512, ps * 512}' "$WORK/rootvg.vgcfg" >"$WORK/segs"
[ -s "$WORK/segs" ] || { echo "rootlv missing from vgcfgbackup" >&2; exit 1; }
while read -r se ec pe esb psb; do
  dd if="$WORK/rootlv.xfs" of="$pv" bs=1M iflag=skip_bytes,count_bytes oflag=seek_bytes \
    skip=$((se * esb)) count=$((ec * esb)) seek=$((psb + pe * esb)) conv=notrunc,sparse status=none
done <"$WORK/segs"

# ----------------------------------------------------------------------------------- initramfs
log "initramfs: dracut $KVER (systemd, crypt, dm, lvm, adeOnline)"
DB="$WORK/dracut"
cp -a /usr/lib/dracut "$DB"
cp -r "$HERE/91adeOnline" "$DB/modules.d/91adeOnline"
chmod 755 "$DB"/modules.d/91adeOnline/*.sh
mkdir -p "$WORK/dracut.conf.d" "$WORK/dracut.tmp"
# The host's /etc/dracut.conf* are ignored (--conf/--confdir); the real root's lvm.conf goes in, as a
# RHEL host-only initramfs carries it.
dracutbasedir="$DB" dracut --force --quiet --no-hostonly --no-hostonly-cmdline --no-early-microcode \
  --conf /dev/null --confdir "$WORK/dracut.conf.d" --tmpdir "$WORK/dracut.tmp" \
  --kver "$KVER" --kmoddir "$K/lib/modules/$KVER" \
  --modules "systemd systemd-initrd dracut-systemd udev-rules base fs-lib rootfs-block kernel-modules dm crypt lvm adeOnline" \
  --add-drivers "virtio_pci virtio_blk xfs vfat nls_cp437 nls_iso8859_1 nls_ascii nls_utf8 dm_mod dm_crypt" \
  --filesystems "xfs vfat" \
  --include "$r/etc/lvm/lvm.conf" /etc/lvm/lvm.conf \
  --compress gzip --reproducible \
  "$WORK/initramfs.img" 2>&1 | { grep -v -e 'dracut-install: ERROR: installing' -e '^$' || true; }
[ -s "$WORK/initramfs.img" ] || { echo "dracut produced no initramfs" >&2; exit 1; }
chmod 600 "$WORK/initramfs.img"
cp "$K/boot/vmlinuz-$KVER" "$TMP/vmlinuz"
cp "$WORK/initramfs.img" "$TMP/initramfs.img"

# -------------------------------------------------------------------------------------- ESP, BEK
log "ESP and BEK disk (vfat)"
e="$WORK/esp.vfat"
truncate -s 34M "$e"
mkfs.vfat -F 32 -s 1 -h 2048 -i "$ESP_ID" "$e" >/dev/null
mmd -i "$e" ::EFI ::EFI/redhat ::EFI/BOOT
bek="$WORK/bek.vfat"
truncate -s 46M "$bek"
mkfs.vfat -n "BEK VOLUME" -h 2048 -i "$BEK_ID" "$bek" >/dev/null
mcopy -i "$bek" "$TMP/bootdisk.key" ::LinuxPassPhraseFileName
printf 'WARNING: this volume holds the disk encryption key of an Azure Disk Encryption test VM.\r\n' >"$WORK/readme"
mcopy -i "$bek" "$WORK/readme" ::CRITICAL_DATA_WARNING_README.txt
rm -f "$TMP/bek.raw"
truncate -s 48M "$TMP/bek.raw"
sgdisk -o -U "$BEK_GUID" -n 1:2048:$((47 * 2048 - 1)) -t 1:0700 -u "1:$BEK_P1" -c "1:BEK VOLUME" "$TMP/bek.raw" >/dev/null
put "$TMP/bek.raw" "$bek" 1

# ------------------------------------------------------------------------------- disk + encrypt
log "disk: GPT, encrypt p4 like ADE (cryptsetup reencrypt --encrypt --type luks2 --header)"
D="$TMP/bootdisk.raw"
rm -f "$D"
truncate -s $((DISK_MIB * MiB)) "$D"
sgdisk -o -U "$DISK_GUID" \
  -n "1:$((1 * 2048)):$((35 * 2048 - 1))" -t 1:EF00 -u "1:$P1" -c "1:EFI System Partition" \
  -n "2:$((BOOT_START * 2048)):$(((BOOT_START + BOOT_MIB) * 2048 - 1))" -t 2:8300 -u "2:$P2" \
  -n "3:$((535 * 2048)):$((537 * 2048 - 1))" -t 3:EF02 -u "3:$P3" \
  -n "4:$((PV_START * 2048)):$(((PV_START + PV_MIB) * 2048 - 1))" -t 4:8E00 -u "4:$P4" "$D" >/dev/null
put "$D" "$e" 1
put "$D" "$pv" "$PV_START"
cp --sparse=always "$D" "$TMP/bootdisk.plain.raw"
dd if=/dev/zero of="$WORK/osluksheader" bs=33554432 count=1 status=none
loop=$(losetup -f --show -o $((PV_START * MiB)) --sizelimit $((PV_MIB * MiB)) "$D")
LOOPS+=("$loop")
cryptsetup reencrypt --encrypt --type luks2 --header "$WORK/osluksheader" --key-file "$TMP/bootdisk.key" \
  "${ARGON[@]}" -q "$loop"
losetup -d "$loop"
LOOPS=()
cp --sparse=always "$WORK/osluksheader" "$TMP/bootdisk.luksheader"

# ----------------------------------------------------------------------------------------- /boot
log "/boot (xfs): kernel, initramfs, BLS entry, grubenv, luks/osluksheader"
b="$WORK/boot"
mkdir -p "$b/luks" "$b/grub2" "$b/loader/entries" "$b/efi"
cp "$K/boot/vmlinuz-$KVER" "$b/vmlinuz-$KVER"
cp "$K/boot/config-$KVER" "$b/config-$KVER"
cp "$WORK/initramfs.img" "$b/initramfs-$KVER.img"
cp "$WORK/osluksheader" "$b/luks/osluksheader"
chmod 700 "$b/luks"
cat >"$b/loader/entries/$MID-$KVER.conf" <<EOF
title luksconv boot test ($KVER)
version $KVER
linux /vmlinuz-$KVER
initrd /initramfs-$KVER.img \$tuned_initrd
options \$kernelopts \$tuned_params
id luksconv-boot-$KVER
grub_users \$grub_users
grub_arg --unrestricted
grub_class kernel
EOF
grubenv "$b/grub2/grubenv" "saved_entry=$MID-$KVER" "kernelopts=$KOPTS" "boot_success=0"
printf '# stand-in for /boot/grub2/grub.cfg (the tests boot with qemu -kernel)\nset default="${saved_entry}"\nload_env\nblscfg\n' \
  >"$b/grub2/grub.cfg"
mkxfs "$b" "$WORK/boot.xfs" "${BOOT_MIB}M" "$BOOT_UUID" boot
put "$D" "$WORK/boot.xfs" "$BOOT_START"
put "$TMP/bootdisk.plain.raw" "$WORK/boot.xfs" "$BOOT_START"

# ------------------------------------------------------------------------------------ manifest
cat >"$TMP/manifest.json" <<EOF
{
 "version": "$(cat "$SCRIPT" "$HERE"/91adeOnline/*.sh "$HERE/../lib/debkernel.sh" | sha256sum | awk '{print $1}')",
 "generated_by": "testdata/boot/mkbootdisk.sh",
 "disk": "bootdisk.raw",
 "plain_disk": "bootdisk.plain.raw",
 "bek": "bek.raw",
 "key": "bootdisk.key",
 "header": "bootdisk.luksheader",
 "vmlinuz": "vmlinuz",
 "initramfs": "initramfs.img",
 "kernel_package": $(jstr "$(basename "$KDEB")"),
 "kernel_version": $(jstr "$KVER"),
 "boot_partition": 2,
 "luks_partition": 4,
 "esp_partition": 1,
 "bek_partition": 1,
 "part_uuid": "$P4",
 "boot_uuid": "$BOOT_UUID",
 "root_uuid": "$ROOT_UUID",
 "root_lv": "rootvg/rootlv",
 "kernel_path": "/vmlinuz-$KVER",
 "initramfs_path": "/initramfs-$KVER.img",
 "header_path": "/luks/osluksheader",
 "bls_entry": "/loader/entries/$MID-$KVER.conf",
 "grubenv_path": "/grub2/grubenv",
 "cmdline": $(jstr "$KOPTS"),
 "marker": "$MARKER",
 "vmlinuz_sha256": "$(sha "$TMP/vmlinuz")",
 "initramfs_sha256": "$(sha "$TMP/initramfs.img")"
}
EOF
rm -rf "$WORK"
rm -rf "$OUT"
mv "$TMP" "$OUT"
log "done: $OUT ($(du -sh --apparent-size "$OUT" | cut -f1) apparent, $(du -sh "$OUT" | cut -f1) on disk)"
