#!/usr/bin/env bash
# mkubuntu.sh builds BOOTABLE Ubuntu-layout ADE (Azure Disk Encryption) OS disks for the tests
# (internal/ubuntufixture), with the real tools only:
#
#   testdata/ubuntu/mkubuntu.sh OUTDIR
#
# The first four disks are what ADE's stop-and-copy OS flow leaves on an Ubuntu cloud image: GPT p14 BIOS
# boot, p15 ESP (vfat "UEFI"), p1 = the LUKS ciphertext of the ext4 root ("cloudimg-rootfs") under a
# DETACHED header (data at offset 0), p2 = a 256 MiB ext2 /boot at the very end of the disk holding
# luks/osluksheader, the kernel, an initrd made by Debian's initramfs-tools (mkinitramfs) with the
# cryptsetup-initramfs hooks and stand-ins for ADE's initramfs-tools files, and grub/grub.cfg:
#   u2204  the 20.04/22.04 flow: LUKS2 (argon2id), hooks/crypt-ade-hook + scripts/init-premount/crypt-ade-boot
#          (testdata/ubuntu/ade2004/), crypttab `osencrypt /dev/disk/by-partuuid/<p1> <BEK file>
#          luks,discard,header=...`, GRUB_CMDLINE_LINUX="root=/dev/mapper/osencrypt ", zstd initrd
#   u2204k u2204 with 4096-byte LUKS2 sectors; p2 starts 7 sectors earlier (256 MiB + 3.5 KiB) so that p1,
#          which ends right before it, is a whole number of 4 KiB sectors
#   u2004  the same flow as 20.04 leaves it: LUKS2 with argon2i, lz4 (legacy frame format) initrd
#   u1804  the 16.04/18.04 flow: LUKS1 (pbkdf2), keyscript /usr/sbin/azure_crypt_key.sh, hooks/luksheader and
#          a `patch -b` of hooks/cryptroot leaving cryptroot.orig (testdata/ubuntu/ade1804/), crypttab
#          `osencrypt /dev/sda1 none luks,discard,header=...,keyscript=...`, gzip initrd; the keyscript
#          looks for the BEK volume on SCSI disks, so this disk boots with its drives on virtio-scsi
# and the last is what ADE's 23.10/24.04 online flow leaves on a 24.04 cloud image, which has its own /boot:
#   u2404  GPT p14 BIOS boot, p15 ESP, p16 = the image's ext4 /boot ("BOOT", XBOOTLDR type, here 128 MiB),
#          p1 = the ext4 root filling the rest of the disk, encrypted in place (`reencrypt --encrypt
#          --header /boot/luks/osluksheader`, LUKS2 argon2id, 512-byte sectors, data at 0, no shrink);
#          ADE's 91adeOnlineUbu files as stand-ins (testdata/ubuntu/ade2404/: as ade2004, /boot typed auto),
#          crypttab and /etc/default/grub as u2204, grub.cfg `root=UUID=<root fs> ro root=/dev/mapper/osencrypt
#          ...`, zstd initrd
# OUTDIR gets, for each disk N (see internal/ubuntufixture.Manifest for every field):
#   N.raw            the encrypted disk
#   N.plain.raw      the same disk before encryption (what a byte-level decryption of p1 gives)
#   N.root.ext4      the root filesystem image (= p1's plaintext, first bytes)
#   N.luksheader     the detached header (= /boot/luks/osluksheader)
#   N.initrd         a copy of the initrd on /boot
# and bek.raw (the BEK disk: GPT, p1 vfat "BEK VOLUME" holding LinuxPassPhraseFileName), bek.key (its
# 172-byte passphrase, no newline: every disk uses it), vmlinuz, manifest.json. Two disks are built at a time.
#
# The stand-ins are written from ADE's documented behaviour, not copied. The root filesystem is a busybox
# userland laid out like Ubuntu (merged /usr; Ubuntu's files and ADE's edits in /etc) whose /sbin/init prints
#   LUKSCONV-BOOT-DM dm-0 name=osencrypt uuid=CRYPT-LUKS2-...-osencrypt slaves=vda1
#   LUKSCONV-BOOT-OK root=/dev/mapper/osencrypt
# and powers off. The kernel is the Debian 12 cloud kernel (apt-get download, dpkg -x; $DEB_CACHE keeps
# the .debs, $DEB_SEED is a read-only directory of .debs to copy from first), so unlike Ubuntu's kernel
# vfat is a module: the root's /etc/initramfs-tools/modules lists vfat and its code pages.
#
# The initrd is made the way update-initramfs makes it in the guest, without a chroot: in a private mount
# namespace (unshare -m) the root's /etc and /usr/share/initramfs-tools (and for u1804 the keyscript in
# /usr/sbin) are laid over the host's with read-only overlays, the kernel's modules over /usr/lib, and the
# disk's /boot (ext2, u2404 ext4) is loop-mounted on /boot (crypt-ade-hook reads its UUID with findmnt; the hooks copy
# the header from it); `mkinitramfs -d /etc/initramfs-tools -o /boot/initrd.img-KVER` then writes into
# /boot. Nothing on the host changes.
#
# Exit status: 0 ok, 2 usage, 3 a required tool, privilege or package is missing ("missing tool: X" on
# stderr), anything else: a build step failed. KEEP_TMP=1 keeps OUTDIR.tmp after a failure.
# Needs root (loop devices, mounts in a private namespace, cryptsetup's reencryption lock); device-mapper
# is NOT needed.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C
umask 022

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
HERE=$(dirname "$SCRIPT")
[ $# -eq 1 ] && [[ $1 != -* ]] || { echo "usage: $0 OUTDIR" >&2; exit 2; }

missing() { echo "missing tool: $*" >&2; exit 3; }
for t in jq patch lz4 gzip apt-get apt-cache dpkg dpkg-deb depmod cryptsetup sgdisk mkfs.ext4 mkfs.ext2 mkfs.vfat mcopy mmd \
  losetup mount umount unshare findmnt mkinitramfs zstd openssl base64 sha256sum truncate dd awk find; do
  command -v "$t" >/dev/null 2>&1 || missing "$t"
done
[ -x /usr/share/initramfs-tools/hooks/cryptroot ] ||
  missing "cryptsetup-initramfs (Debian package; its hooks put cryptsetup into the initrd)"
[ -x /usr/share/initramfs-tools/hooks/zz-busybox ] || missing "busybox (Debian package, for the initrd)"
[ "$(id -u)" -eq 0 ] || missing "root privileges (loop devices, mounts and cryptsetup reencrypt need root)"
losetup -f >/dev/null 2>&1 || missing "loop devices (losetup -f failed)"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || missing "overlayfs (the kernel's overlay filesystem)"

T0=$(date +%s%N)
log() { printf '[mkubuntu %6.2fs] %s\n' "$(($(date +%s%N) - T0))e-9" "$*"; }

OUT=$(readlink -m "$1")
if [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ] && [ ! -f "$OUT/manifest.json" ]; then
  echo "$OUT exists and is not an Ubuntu disk set (no manifest.json); not replacing it" >&2
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

MiB=1048576
export MTOOLS_SKIP_CHECK=1
MARKER=LUKSCONV-BOOT-OK
BEK_GUID=7d1a0b2c-0000-4c5d-8e9f-0a1b2c3dbe00 BEK_P1=7d1a0b2c-0000-4c5d-8e9f-0a1b2c3dbe01 BEK_ID=BE4B2204

# Every disk: p14 BIOS boot 1 MiB +4 MiB, p15 ESP 5 MiB +106 MiB (sectors 10240-227327), as in Ubuntu's
# cloud images. The rest of the layout is per disk (mkdisk).
ESP_MIB=106

rand() { head -c "$2" /dev/zero | openssl enc -aes-128-ctr -pass "pass:$1" -nosalt -pbkdf2 -iter 1; }
size() { stat -c %s "$1"; }
sha() { sha256sum "$1" | awk '{print $1}'; }
jstr() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\t'/\\t}; s=${s//$'\n'/\\n}; printf '"%s"' "$s"; }
# jf FILE: FILE's exact content as a JSON string.
jf() { jq -Rs . <"$1"; }
# putb IMG FILE OFFSET_BYTES: write FILE into IMG at a byte offset, keeping holes.
putb() { dd if="$2" of="$1" bs=1M oflag=seek_bytes seek="$3" conv=notrunc,sparse status=none; }

# ------------------------------------------------------------------------------- packages (.deb)
# shellcheck source=../lib/debkernel.sh
. "$HERE/../lib/debkernel.sh"
debian_kernel
for c in ZSTD LZ4 GZIP; do
  grep -q "^CONFIG_RD_$c=y" "$K/boot/config-$KVER" || { echo "kernel $KVER cannot unpack a $c initrd" >&2; exit 1; }
done
# the kernel's modules where mkinitramfs looks for them (/lib/modules = /usr/lib/modules), laid over /usr/lib
ULIB="$WORK/ovl/usrlib"
mkdir -p "$ULIB/modules"
mv "$K/lib/modules/$KVER" "$ULIB/modules/$KVER"

# ------------------------------------------------------------------------------------ key file
# ADE's passphrase: base64 of 127 random bytes, 172 bytes, no trailing newline. One BEK volume for the
# set: both disks were encrypted with it.
rand ubuntu-bek 127 | base64 -w0 >"$TMP/bek.key"
[ "$(size "$TMP/bek.key")" -eq 172 ]

# -------------------------------------------------------------------------------------------- BEK
log "BEK disk (GPT, vfat \"BEK VOLUME\")"
bek="$WORK/bek.vfat"
truncate -s 46M "$bek"
mkfs.vfat -n "BEK VOLUME" -h 2048 -i "$BEK_ID" "$bek" >/dev/null
mcopy -i "$bek" "$TMP/bek.key" ::LinuxPassPhraseFileName
printf 'WARNING: this volume holds the disk encryption key of an Azure Disk Encryption test VM.\r\n' >"$WORK/readme"
mcopy -i "$bek" "$WORK/readme" ::CRITICAL_DATA_WARNING_README.txt
rm -f "$TMP/bek.raw"
truncate -s 48M "$TMP/bek.raw"
sgdisk -o -U "$BEK_GUID" -n 1:2048:$((47 * 2048 - 1)) -t 1:0700 -u "1:$BEK_P1" -c "1:BEK VOLUME" "$TMP/bek.raw" >/dev/null
putb "$TMP/bek.raw" "$bek" $((2048 * 512))

# grub_cfg BOOT_UUID ROOT_UUID KOPTS RECOVERY_OPTS: the grub.cfg grub-mkconfig's 10_linux writes for a
# separate /boot (paths relative to it, found by its UUID), abridged.
grub_cfg() {
  local buuid=$1 ruuid=$2 kopts=$3 ropts=$4
  entry() { # TITLE ID OPTS INDENT
    cat <<EOF
$4menuentry '$1' --class ubuntu --class gnu-linux --class gnu --class os \$menuentry_id_option '$2' {
$4	recordfail
$4	load_video
$4	gfxmode \$linux_gfx_mode
$4	insmod gzio
$4	if [ x\$grub_platform = xxen ]; then insmod xzio; insmod lzopio; fi
$4	insmod part_gpt
$4	insmod ext2
$4	search --no-floppy --fs-uuid --set=root $buuid
$4	echo	'Loading Linux $KVER ...'
$4	linux	/vmlinuz-$KVER $3
$4	echo	'Loading initial ramdisk ...'
$4	initrd	/initrd.img-$KVER
$4}
EOF
  }
  cat <<EOF
#
# DO NOT EDIT THIS FILE
#
# It is automatically generated by grub-mkconfig using templates
# from /etc/grub.d and settings from /etc/default/grub
#

### BEGIN /etc/grub.d/00_header ###
if [ -s \$prefix/grubenv ]; then
  set have_grubenv=true
  load_env
fi
set default="0"
function recordfail {
  set recordfail=1
  if [ -n "\${have_grubenv}" ]; then if [ -z "\${boot_once}" ]; then save_env recordfail; fi; fi
}
function load_video {
  insmod all_video
}
serial --unit=0 --speed=9600 --word=8 --parity=no --stop=1
terminal_input console serial
terminal_output console serial
set timeout=0
### END /etc/grub.d/00_header ###

### BEGIN /etc/grub.d/10_linux ###
EOF
  entry "Ubuntu" "gnulinux-simple-$ruuid" "$kopts" ""
  echo "submenu 'Advanced options for Ubuntu' \$menuentry_id_option 'gnulinux-advanced-$ruuid' {"
  entry "Ubuntu, with Linux $KVER" "gnulinux-$KVER-advanced-$ruuid" "$kopts" "	"
  entry "Ubuntu, with Linux $KVER (recovery mode)" "gnulinux-$KVER-recovery-$ruuid" "$ropts" "	"
  echo "}"
  echo "### END /etc/grub.d/10_linux ###"
}

# mkdisk NAME: build one Ubuntu ADE OS disk and write its manifest entry to $WORK/NAME.json. NAME is
# u2204, u2204k or u2004 (the 20.04/22.04 flow), u1804 (16.04/18.04) or u2404 (23.10/24.04 online).
mkdisk() {
  local N=$1 id osrel flow new=y online=n sector=512
  case $N in
  u2204) id=2204 osrel=22.04 flow=ubuntu-20.04/22.04 ;;
  u2204k) id=224a osrel=22.04 flow=ubuntu-20.04/22.04 sector=4096 ;;
  u2004) id=2004 osrel=20.04 flow=ubuntu-20.04/22.04 ;;
  u1804) id=1804 osrel=18.04 flow=ubuntu-16.04/18.04 new=n ;;
  u2404) id=2404 osrel=24.04 flow=ubuntu-23.10/24.04 online=y ;;
  *) echo "mkdisk: unknown disk $N" >&2; return 1 ;;
  esac
  local DISK_GUID=7d1a0b2c-$id-4c5d-8e9f-0a1b2c3d4e00
  local P1=7d1a0b2c-$id-4c5d-8e9f-0a1b2c3d4e01
  local P14=7d1a0b2c-$id-4c5d-8e9f-0a1b2c3d4e0e P15=7d1a0b2c-$id-4c5d-8e9f-0a1b2c3d4e0f

  # Layout in 512-byte sectors. The split (all but u2404), like an Ubuntu cloud image after ADE's
  # SplitRootPartitionState: p1 root from 111 MiB, p2 = /boot, the last 256 MiB of the disk's usable
  # sectors (not MiB-aligned: parted's geometry), p1 ending right before it; the root filesystem was shrunk
  # by 256 MiB too, so it ends before p1 does. u2204k: on a whole-MiB disk that p1 has 133087 sectors, which
  # 4096-byte dm-crypt sectors cannot map, so p2 starts 7 sectors earlier (p1 133080 sectors, 4 KiB
  # aligned; p2 256 MiB + 3.5 KiB). u2404, a 24.04 cloud image (livecd-rootfs' disk-image-uefi for noble:
  # `--new=14::+4M --new=15::+106M --new=16::1G --typecode=16:ea00 --new=1::`): p16 = the ext4 /boot right
  # after the ESP (there it ends at 1 GiB, 913 MiB; here 128 MiB), p1 the rest up to the last usable sector
  # (growpart) with the root filesystem resized to fill it (whole 4 KiB blocks); ADE's online flow changes
  # no partition.
  local DISK_MIB LAST P1_START=$((111 * 2048)) P1_END BOOTN BOOT_START BOOT_END BOOT_FS BOOT_TYPE BOOT_TYPE_GUID
  local ROOTFS_BYTES PB
  if [ "$online" = y ]; then
    DISK_MIB=304 BOOTN=16 BOOT_FS=ext4 BOOT_TYPE=EA00 BOOT_TYPE_GUID=BC13C2FF-59E6-4262-A352-B275FD6F7172
    LAST=$((DISK_MIB * 2048 - 34))
    BOOT_START=227328 BOOT_END=$((227328 + 128 * 2048 - 1))
    P1_START=$((BOOT_END + 1)) P1_END=$LAST
    ROOTFS_BYTES=$(((P1_END - P1_START + 1) * 512 / 4096 * 4096))
    PB=7d1a0b2c-$id-4c5d-8e9f-0a1b2c3d4e10
  else
    DISK_MIB=432 BOOTN=2 BOOT_FS=ext2 BOOT_TYPE=8300 BOOT_TYPE_GUID=0FC63DAF-8483-4772-8E79-3D69D8477DE4
    LAST=$((DISK_MIB * 2048 - 34))
    BOOT_START=$((LAST - 256 * 2048 + 1)) BOOT_END=$LAST
    if [ "$sector" -gt 512 ]; then
      BOOT_START=$((BOOT_START - (BOOT_START - P1_START) % (sector / 512)))
    fi
    P1_END=$((BOOT_START - 1))
    ROOTFS_BYTES=$((64 * MiB))
    PB=7d1a0b2c-$id-4c5d-8e9f-0a1b2c3d4e02
  fi
  local P1_BYTES=$(((P1_END - P1_START + 1) * 512)) BOOT_BYTES=$(((BOOT_END - BOOT_START + 1) * 512))
  ((P1_BYTES % sector == 0)) || { echo "$N: p1 ($P1_BYTES bytes) is not a multiple of $sector" >&2; return 1; }
  local ROOT_UUID=2c0d7e5a-$id-4a1b-9c3d-5e6f7a8b9c01 BOOT_UUID=2c0d7e5a-$id-4a1b-9c3d-5e6f7a8b9c02
  local LUKS_UUID=2c0d7e5a-$id-4a1b-9c3d-5e6f7a8b9c03 ESP_ID=${id}E5F0
  local W="$WORK/$N" r b it
  mkdir -p "$W"
  r="$W/root" b="$W/boot" it="$W/root/usr/share/initramfs-tools"

  # LUKS parameters: cryptsetup's defaults of the release (22.04's 2.4 and 24.04's 2.7: LUKS2,
  # aes-xts-plain64, 512-bit key, argon2id; 20.04's 2.2: the same with argon2i; 18.04's 2.0: LUKS1,
  # aes-xts-plain64, 256-bit key, sha256) with the KDF cost made cheap so the guest unlocks fast under TCG;
  # 512-byte sectors (`reencrypt --encrypt` sets 512 unless told otherwise; luksFormat picks 4096 only for a
  # device with 4 KiB physical sectors and a size it divides: u2204k). initrd compression: the release's
  # initramfs.conf (22.04 and 24.04 zstd, 20.04 lz4 in the legacy frame format, 18.04 gzip).
  local LUKS_VERSION CIPHER=aes-xts-plain64 KEY_BITS PBKDF COMPRESS KOPTS ROPTS CRYPTSOURCE CRYPTTAB_LINE
  local -a KDF
  if [ "$new" = y ]; then
    LUKS_VERSION=2 KEY_BITS=512 PBKDF=argon2id COMPRESS=zstd
    [ "$N" = u2004 ] && PBKDF=argon2i COMPRESS=lz4
    KDF=(--pbkdf "$PBKDF" --pbkdf-memory 32768 --pbkdf-force-iterations 4)
    # grub-mkconfig's line from ADE's GRUB_CMDLINE_LINUX="root=/dev/mapper/osencrypt " and the cloud
    # image's GRUB_CMDLINE_LINUX_DEFAULT
    KOPTS="root=/dev/mapper/osencrypt ro console=tty1 console=ttyS0 earlyprintk=ttyS0"
    ROPTS="root=UUID=$ROOT_UUID ro recovery nomodeset dis_ucode_ldr root=/dev/mapper/osencrypt "
    # 24.04: update-grub ran while / was still plain p1 (the online flow never pivots), so grub-mkconfig's
    # 10_linux puts root=UUID=<root fs> ro before GRUB_CMDLINE_LINUX ("root=/dev/mapper/osencrypt ") and a
    # space before GRUB_CMDLINE_LINUX_DEFAULT: two root= (the last wins), two spaces
    [ "$online" = y ] && KOPTS="root=UUID=$ROOT_UUID ro root=/dev/mapper/osencrypt  console=tty1 console=ttyS0 earlyprintk=ttyS0"
    CRYPTSOURCE=/dev/disk/by-partuuid/$P1
    CRYPTTAB_LINE="osencrypt $CRYPTSOURCE /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,discard,header=/boot/luks/osluksheader"
  else
    LUKS_VERSION=1 KEY_BITS=256 PBKDF=pbkdf2 COMPRESS=gzip
    KDF=(--pbkdf pbkdf2 --hash sha256 --pbkdf-force-iterations 1000)
    # ADE leaves /etc/default/grub alone here; grub-mkconfig names the root filesystem on the mapper by UUID
    KOPTS="root=UUID=$ROOT_UUID ro console=tty1 console=ttyS0 earlyprintk=ttyS0"
    ROPTS="root=UUID=$ROOT_UUID ro recovery nomodeset"
    # ADE's first choice, /dev/disk/azure/root-part1, needs waagent's udev rules; its fallback is the
    # root partition's kernel name (and UbuntuPatching later rewrites /dev/sda1 lines to a stable link)
    CRYPTSOURCE=/dev/sda1
    CRYPTTAB_LINE="osencrypt $CRYPTSOURCE none luks,discard,header=/boot/luks/osluksheader,keyscript=/usr/sbin/azure_crypt_key.sh"
  fi

  # --------------------------------------------------------------------------- root filesystem
  log "$N: root filesystem tree (Ubuntu $osrel layout, busybox userland, ADE's files)"
  mkdir -p "$r"/usr/{bin,sbin,lib} "$r"/{etc,dev,proc,sys,run,tmp,root,home,var/lib,var/log,boot/efi,mnt/azure_bek_disk}
  ln -s usr/bin "$r/bin"
  ln -s usr/sbin "$r/sbin"
  ln -s usr/lib "$r/lib"
  cp "$BB/bin/busybox" "$r/usr/bin/busybox"
  for a in sh mount umount cat ls awk echo sleep sync poweroff reboot tr head basename grep; do
    ln -s busybox "$r/usr/bin/$a"
  done
  cat >"$r/usr/sbin/init" <<EOF
#!/bin/sh
# luksconv boot-test init: report how / is mounted, then power off.
export PATH=/usr/bin:/usr/sbin
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
  chmod 755 "$r/usr/sbin/init"
  # /etc/fstab: the cloud image's lines, ADE's /boot line (SplitRootPartitionState: a newline, the
  # tab-separated line, a newline) and its BEK line (CryptMountConfigUtil's template). 24.04: the image's
  # own lines (999-cpc-fixes' root line, disk-image-uefi's /boot and ESP lines) and the BEK line only.
  if [ "$online" = y ]; then
    {
      printf 'LABEL=cloudimg-rootfs\t/\t ext4\tdiscard,commit=30,errors=remount-ro\t0 1\n'
      printf 'LABEL=BOOT\t/boot\text4\tdefaults\t0 2\n'
      printf 'LABEL=UEFI\t/boot/efi\tvfat\tumask=0077\t0 1\n'
      printf 'LABEL=BEK\\040VOLUME /mnt/azure_bek_disk auto defaults,discard,nofail 0 0\n'
    } >"$r/etc/fstab"
  else
    {
      printf 'LABEL=cloudimg-rootfs\t/\t ext4\tdiscard,errors=remount-ro\t0 1\n'
      printf 'LABEL=UEFI\t/boot/efi\tvfat\tumask=0077\t0 1\n'
      printf '\nUUID=%s\t/boot\text2\tdefaults\t0 0\n' "$BOOT_UUID"
      printf 'LABEL=BEK\\040VOLUME /mnt/azure_bek_disk auto defaults,discard,nofail 0 0\n'
    } >"$r/etc/fstab"
  fi
  # /etc/crypttab: the package's comment line, then ADE's line appended with no trailing newline
  printf '# <target name>\t<source device>\t\t<key file>\t<options>\n' >"$r/etc/crypttab"
  printf '%s' "$CRYPTTAB_LINE" >>"$r/etc/crypttab"
  # /etc/default/cryptdisks: the cryptsetup package's file plus ADE's line (Common.py's template)
  mkdir -p "$r/etc/default/grub.d"
  if [ -f /etc/default/cryptdisks ]; then cp /etc/default/cryptdisks "$r/etc/default/cryptdisks"; else
    printf '# Run cryptdisks initscripts at startup? Default is Yes.\nCRYPTDISKS_ENABLE=Yes\n\nCRYPTDISKS_MOUNT=""\n' >"$r/etc/default/cryptdisks"
  fi
  printf '\nCRYPTDISKS_MOUNT="$CRYPTDISKS_MOUNT /mnt/azure_bek_disk"\n' >>"$r/etc/default/cryptdisks"
  # /etc/default/grub: 20.04+ after ADE's sed (s/GRUB_CMDLINE_LINUX="/GRUB_CMDLINE_LINUX="root=\/dev\/mapper\/osencrypt /),
  # which also deleted grub.d/40-force-partuuid.cfg; the cloud image's 50-cloudimg-settings.cfg stays (the
  # 24.04 flow runs the same sed and rm: UbuntuPatching.install_and_enable_ade_online_enc)
  {
    printf '%s\n' "# If you change this file, run 'update-grub' afterwards to update" "# /boot/grub/grub.cfg." \
      "# For full documentation of the options in this file, see:" "#   info -f grub -n 'Simple configuration'" "" \
      "GRUB_DEFAULT=0" "GRUB_TIMEOUT_STYLE=hidden" "GRUB_TIMEOUT=0" \
      'GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`' 'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash"'
    if [ "$new" = y ]; then echo 'GRUB_CMDLINE_LINUX="root=/dev/mapper/osencrypt "'; else echo 'GRUB_CMDLINE_LINUX=""'; fi
  } >"$r/etc/default/grub"
  printf '%s\n' "# Cloud Image specific Grub settings for Generic Cloud Images" \
    "# CLOUD_IMG: This file was created/modified by the Cloud Image build process" "" \
    "# Set the recordfail timeout" "GRUB_RECORDFAIL_TIMEOUT=0" "" "# Do not wait on grub prompt" "GRUB_TIMEOUT=0" "" \
    "# Set the default commandline" 'GRUB_CMDLINE_LINUX_DEFAULT="console=tty1 console=ttyS0 earlyprintk=ttyS0"' "" \
    "# Set the grub console type" "GRUB_TERMINAL=console" >"$r/etc/default/grub.d/50-cloudimg-settings.cfg"
  if [ "$osrel" = 24.04 ]; then
    printf '%s\n' 'PRETTY_NAME="Ubuntu 24.04.1 LTS"' 'NAME="Ubuntu"' 'VERSION_ID="24.04"' 'VERSION="24.04.1 LTS (Noble Numbat)"' \
      'VERSION_CODENAME=noble' 'ID=ubuntu' 'ID_LIKE=debian' 'UBUNTU_CODENAME=noble' 'LOGO=ubuntu-logo' >"$r/etc/os-release"
  elif [ "$osrel" = 22.04 ]; then
    printf '%s\n' 'PRETTY_NAME="Ubuntu 22.04.4 LTS"' 'NAME="Ubuntu"' 'VERSION_ID="22.04"' 'VERSION="22.04.4 LTS (Jammy Jellyfish)"' \
      'VERSION_CODENAME=jammy' 'ID=ubuntu' 'ID_LIKE=debian' 'UBUNTU_CODENAME=jammy' >"$r/etc/os-release"
  elif [ "$osrel" = 20.04 ]; then
    printf '%s\n' 'NAME="Ubuntu"' 'VERSION="20.04.6 LTS (Focal Fossa)"' 'ID=ubuntu' 'ID_LIKE=debian' \
      'PRETTY_NAME="Ubuntu 20.04.6 LTS"' 'VERSION_ID="20.04"' 'VERSION_CODENAME=focal' 'UBUNTU_CODENAME=focal' >"$r/etc/os-release"
  else
    printf '%s\n' 'NAME="Ubuntu"' 'VERSION="18.04.6 LTS (Bionic Beaver)"' 'ID=ubuntu' 'ID_LIKE=debian' \
      'PRETTY_NAME="Ubuntu 18.04.6 LTS"' 'VERSION_ID="18.04"' 'VERSION_CODENAME=bionic' 'UBUNTU_CODENAME=bionic' >"$r/etc/os-release"
  fi
  echo "7d1a0b2c${id}4c5d8e9f0a1b2c3d4e99" >"$r/etc/machine-id"
  echo "luksconv-$N" >"$r/etc/hostname"
  # initramfs-tools configuration: the package's files (as on the host) with the release's choices
  # (MODULES=most; zstd on 22.04 and 24.04, lz4 on 20.04, gzip on 18.04), and the modules Debian's kernel
  # has as modules where Ubuntu's are built in (the BEK volume is vfat)
  cp -a /etc/initramfs-tools "$r/etc/initramfs-tools"
  sed -i -e 's/^MODULES=.*/MODULES=most/' -e "s/^COMPRESS=.*/COMPRESS=$COMPRESS/" "$r/etc/initramfs-tools/initramfs.conf"
  grep -q "^COMPRESS=$COMPRESS\$" "$r/etc/initramfs-tools/initramfs.conf" || echo "COMPRESS=$COMPRESS" >>"$r/etc/initramfs-tools/initramfs.conf"
  printf '%s\n' "# luksconv test: built into Ubuntu's kernel, modules in Debian's (the BEK volume is vfat)" \
    vfat nls_cp437 nls_ascii nls_iso8859_1 >>"$r/etc/initramfs-tools/modules"
  mkdir -p "$r/etc/cryptsetup-initramfs"
  cp /etc/cryptsetup-initramfs/conf-hook "$r/etc/cryptsetup-initramfs/conf-hook"
  # ADE's initramfs-tools files, installed as ADE installs them
  mkdir -p "$it/hooks" "$it/scripts/init-premount"
  local overlays="$it:/usr/share/initramfs-tools" sbin="$W/ovl/usrsbin" etcs="$r/etc"
  if [ "$new" = y ]; then
    # PatchBootSystemState (24.04: UbuntuPatching.install_and_enable_ade_online_enc, from
    # oscrypto/91adeOnlineUbu): both scripts copied, chmod +x, ROOTPARTUUID filled in with sed
    local ade=ade2004
    [ "$online" = y ] && ade=ade2404
    install -m 755 "$HERE/$ade/crypt-ade-hook" "$it/hooks/crypt-ade-hook"
    install -m 755 "$HERE/$ade/crypt-ade-boot" "$it/scripts/init-premount/crypt-ade-boot"
    sed -i "s/ROOTPARTUUID/$P1/g" "$it/scripts/init-premount/crypt-ade-boot"
  else
    # PrereqState: the keyscript; PatchBootSystemState: hooks/luksheader, `patch -b` of hooks/cryptroot
    install -m 755 "$HERE/ade1804/azure_crypt_key.sh" "$r/usr/sbin/azure_crypt_key.sh"
    install -m 755 "$HERE/ade1804/luksheader" "$it/hooks/luksheader"
    cp -p /usr/share/initramfs-tools/hooks/cryptroot "$it/hooks/cryptroot"
    patch -s -b -d "$it/hooks" -p1 <"$HERE/ade1804/cryptroot.patch"
    [ -f "$it/hooks/cryptroot.orig" ] || { echo "patch -b left no cryptroot.orig" >&2; return 1; }
    # the keyscript must be on the build host's /usr/sbin too (cryptroot copies it into the initrd)
    mkdir -p "$sbin"
    cp -p "$r/usr/sbin/azure_crypt_key.sh" "$sbin/"
    # Two things of the build host's (Debian 12) initramfs-tools and cryptsetup-initramfs that the guest's
    # older ones may not share, worked around for the build only (the disk keeps ADE's files as they are):
    # hook-functions runs every executable in hooks/ whose name is [[:alnum:]._-], so cryptroot.orig would
    # run after the patched hook, fail on its mkdir and stop mkinitramfs; and cryptsetup's crypttab reader
    # (`while read`) skips a last line with no newline, which ADE's line is.
    mkdir -p "$W/ovl/it" "$W/ovl/etc"
    cp -a "$it/." "$W/ovl/it/"
    rm "$W/ovl/it/hooks/cryptroot.orig"
    overlays="$W/ovl/it:/usr/share/initramfs-tools $sbin:/usr/sbin"
    { cat "$r/etc/crypttab"; echo; } >"$W/ovl/etc/crypttab"
    etcs="$W/ovl/etc:$r/etc"
  fi

  # ------------------------------------------------------------------------------ /boot tree
  log "$N: /boot tree: kernel, grub.cfg, header file"
  mkdir -p "$b/luks" "$b/grub" "$b/efi"
  cp "$K/boot/vmlinuz-$KVER" "$b/vmlinuz-$KVER"
  cp "$K/boot/config-$KVER" "$b/config-$KVER"
  cp "$K/boot/System.map-$KVER" "$b/System.map-$KVER" 2>/dev/null || true
  ln -s "vmlinuz-$KVER" "$b/vmlinuz"
  ln -s "initrd.img-$KVER" "$b/initrd.img"
  chmod 700 "$b/luks"
  # the detached header: ADE dd's 32 MiB of zeros, then luksFormat --header (24.04: reencrypt --encrypt
  # --init-only --header) writes into it
  dd if=/dev/zero of="$b/luks/osluksheader" bs=33554432 count=1 status=none
  { printf '# GRUB Environment Block\n'; } >"$b/grub/grubenv"
  head -c $((1024 - $(size "$b/grub/grubenv"))) /dev/zero | tr '\0' '#' >>"$b/grub/grubenv"
  grub_cfg "$BOOT_UUID" "$ROOT_UUID" "$KOPTS" "$ROPTS" >"$b/grub/grub.cfg"

  # ------------------------------------------------------------------------- LUKS (detached, at 0)
  log "$N: root: mkfs.ext4 -d, cryptsetup reencrypt --encrypt --header (offline, data at 0), LUKS$LUKS_VERSION, $sector-byte sectors"
  local rootfs="$TMP/$N.root.ext4" p1="$W/p1.plain" loop
  rm -f "$rootfs"
  mkfs.ext4 -q -F -b 4096 -L cloudimg-rootfs -U "$ROOT_UUID" -E lazy_itable_init=0,lazy_journal_init=0 -d "$r" "$rootfs" "$((ROOTFS_BYTES / 1024))k"
  truncate -s "$P1_BYTES" "$p1"
  dd if="$rootfs" of="$p1" bs=1M conv=notrunc,sparse status=none
  cp --sparse=always "$p1" "$W/p1.luks"
  loop=$(losetup -f --show "$W/p1.luks")
  LOOPS+=("$loop")
  # LUKS1 cannot be reencrypted without device-mapper: encrypt as LUKS2 with LUKS1-compatible parameters
  # (pbkdf2, 512-byte sectors), then `cryptsetup convert --type luks1` rewrites the header only. 24.04's
  # online flow runs `reencrypt --encrypt --init-only` and resumes it in the booted guest; finished, the
  # header and p1 are what this one offline pass leaves (an inference: no reencrypt keyslot or
  # online-reencrypt requirement stays behind either way).
  cryptsetup reencrypt --encrypt --type luks2 --header "$b/luks/osluksheader" --key-file "$TMP/bek.key" \
    --cipher "$CIPHER" --key-size "$KEY_BITS" --sector-size "$sector" --uuid "$LUKS_UUID" "${KDF[@]}" -q "$loop"
  losetup -d "$loop"
  LOOPS=()
  if [ "$LUKS_VERSION" = 1 ]; then
    cryptsetup convert --type luks1 -q "$b/luks/osluksheader"
    # as luksFormat leaves it: the LUKS1 header and key material in a file of 32 MiB of zeros
    rm -f "$W/hdr.backup"
    cryptsetup luksHeaderBackup "$b/luks/osluksheader" --header-backup-file "$W/hdr.backup"
    dd if=/dev/zero of="$b/luks/osluksheader" bs=33554432 count=1 status=none
    dd if="$W/hdr.backup" of="$b/luks/osluksheader" conv=notrunc status=none
  fi
  cryptsetup luksDump "$b/luks/osluksheader" | grep -q "^Version:[[:space:]]*$LUKS_VERSION\$" ||
    { echo "$N: the header is not LUKS$LUKS_VERSION" >&2; return 1; }
  if [ "$LUKS_VERSION" = 2 ]; then
    cryptsetup luksDump "$b/luks/osluksheader" | grep -Eq "^[[:space:]]+sector:[[:space:]]+$sector \[bytes\]\$" ||
      { echo "$N: the header's sector size is not $sector" >&2; return 1; }
  fi
  cp --sparse=always "$b/luks/osluksheader" "$TMP/$N.luksheader"
  [ "$(size "$TMP/$N.luksheader")" -eq 33554432 ]

  # ------------------------------------------------------------------------------ /boot and initrd
  local bootimg="$W/boot.img"
  rm -f "$bootimg"
  truncate -s "$BOOT_BYTES" "$bootimg"
  if [ "$BOOT_FS" = ext2 ]; then
    log "$N: /boot: mkfs.ext2 (ADE runs it with the defaults), then mkinitramfs ($COMPRESS) writes the initrd into it"
    mkfs.ext2 -q -F -U "$BOOT_UUID" -d "$b" "$bootimg"
  else
    # the image's `mkfs.ext4 -L BOOT` on 913 MiB; -T default keeps the 4 KiB blocks mke2fs picks for that
    # size on this smaller partition
    log "$N: /boot: mkfs.ext4 -L BOOT (the cloud image's), then mkinitramfs ($COMPRESS) writes the initrd into it"
    mkfs.ext4 -q -F -T default -L BOOT -U "$BOOT_UUID" -d "$b" "$bootimg"
  fi
  mkdir -p "$W/mkinitramfs.tmp"
  {
    echo 'set -eu'
    echo 'mount --make-rprivate /'
    echo "mount -t overlay overlay -o 'lowerdir=$etcs:/etc' /etc"
    echo "mount -t overlay overlay -o 'lowerdir=$ULIB:/usr/lib' /usr/lib"
    local o
    for o in $overlays; do echo "mount -t overlay overlay -o 'lowerdir=$o' '${o#*:}'"; done
    echo "mount -t $BOOT_FS -o loop '$bootimg' /boot"
    echo 'rc=0'
    echo "TMPDIR='$W/mkinitramfs.tmp' mkinitramfs -d /etc/initramfs-tools -o '/boot/initrd.img-$KVER' '$KVER' || rc=\$?"
    echo 'sync'
    echo 'umount -R /boot'
    echo 'exit $rc'
  } >"$W/mkinitrd.sh"
  # mkinitramfs runs crypt-ade-boot to ask its prereqs: its "mount -a" and failing luksOpen land in the log
  unshare -m --propagation private bash "$W/mkinitrd.sh" 2>&1 | sed "s/^/  $N mkinitramfs: /"
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "$N: mkinitramfs failed" >&2; return 1; }
  debugfs -R "dump /initrd.img-$KVER $TMP/$N.initrd" "$bootimg" 2>/dev/null
  [ -s "$TMP/$N.initrd" ] || { echo "$N: no initrd in /boot after mkinitramfs" >&2; return 1; }
  e2fsck -fn "$bootimg" >/dev/null 2>&1 || { echo "$N: e2fsck reports problems in /boot" >&2; e2fsck -fn "$bootimg" >&2 || true; return 1; }

  # ------------------------------------------------------------------------------------------ ESP
  local e="$W/esp.vfat"
  truncate -s "${ESP_MIB}M" "$e"
  mkfs.vfat -F 32 -n UEFI -i "$ESP_ID" "$e" >/dev/null
  mmd -i "$e" ::EFI ::EFI/ubuntu ::EFI/BOOT
  # grub-install's early config: /boot found by UUID, the partition it was on as the hint
  printf "search.fs_uuid %s root hd0,gpt$BOOTN \nset prefix=(\$root)'/grub'\nconfigfile \$prefix/grub.cfg\n" "$BOOT_UUID" >"$W/esp-grub.cfg"
  mcopy -i "$e" "$W/esp-grub.cfg" ::EFI/ubuntu/grub.cfg

  # ----------------------------------------------------------------------------------------- disk
  if [ "$online" = y ]; then
    log "$N: disk: GPT (p14 BIOS boot, p15 ESP, p16 /boot, p1 LUKS data to the end)"
  else
    log "$N: disk: GPT (p14 BIOS boot, p15 ESP, p1 LUKS data, p2 /boot at the end)"
  fi
  local D="$TMP/$N.raw"
  rm -f "$D"
  truncate -s $((DISK_MIB * MiB)) "$D"
  # -a 1: ADE's parted geometry puts p2 right after p1's new end, not on a MiB boundary
  sgdisk -o -U "$DISK_GUID" -a 1 \
    -n "14:2048:10239" -t 14:EF02 -u "14:$P14" \
    -n "15:10240:$((10240 + ESP_MIB * 2048 - 1))" -t 15:EF00 -u "15:$P15" \
    -n "$BOOTN:$BOOT_START:$BOOT_END" -t "$BOOTN:$BOOT_TYPE" -u "$BOOTN:$PB" \
    -n "1:$P1_START:$P1_END" -t 1:8300 -u "1:$P1" "$D" >/dev/null
  putb "$D" "$e" $((10240 * 512))
  putb "$D" "$bootimg" $((BOOT_START * 512))
  cp --sparse=always "$D" "$TMP/$N.plain.raw"
  putb "$D" "$W/p1.luks" $((P1_START * 512))
  putb "$TMP/$N.plain.raw" "$p1" $((P1_START * 512))
  sgdisk -v "$D" | grep -q 'No problems found' || { sgdisk -v "$D" >&2; return 1; }
  local pe pn ps pl got
  for pe in "1:$P1_START:$P1_END" "$BOOTN:$BOOT_START:$BOOT_END" "15:10240:$((10240 + ESP_MIB * 2048 - 1))"; do
    IFS=: read -r pn ps pl <<<"$pe"
    got=$(sgdisk -i "$pn" "$D" | awk '/First sector:/ {f=$3} /Last sector:/ {l=$3} END {print f ":" l}')
    [ "$got" = "$ps:$pl" ] || { echo "$N: partition $pn is $got, want $ps:$pl" >&2; return 1; }
  done
  sgdisk -i "$BOOTN" "$D" | grep -q "Partition GUID code: $BOOT_TYPE_GUID " ||
    { echo "$N: partition $BOOTN is not of type $BOOT_TYPE_GUID" >&2; return 1; }

  # ------------------------------------------------------------------------------- manifest entry
  local initrd_files root_extra
  if [ "$new" = y ]; then
    initrd_files='"scripts/init-premount/crypt-ade-boot", "boot/luks/osluksheader", "etc/fstab", "usr/sbin/cryptsetup", "scripts/local-top/cryptroot"'
    root_extra="\"/usr/share/initramfs-tools/hooks/crypt-ade-hook\": $(jf "$it/hooks/crypt-ade-hook"),
    \"/usr/share/initramfs-tools/scripts/init-premount/crypt-ade-boot\": $(jf "$it/scripts/init-premount/crypt-ade-boot")"
  else
    initrd_files='"usr/sbin/azure_crypt_key.sh", "boot/luks/osluksheader", "conf/conf.d/cryptheader/osluksheader", "cryptroot/crypttab", "usr/sbin/cryptsetup", "scripts/local-top/cryptroot"'
    root_extra="\"/usr/sbin/azure_crypt_key.sh\": $(jf "$r/usr/sbin/azure_crypt_key.sh"),
    \"/usr/share/initramfs-tools/hooks/luksheader\": $(jf "$it/hooks/luksheader"),
    \"/usr/share/initramfs-tools/hooks/cryptroot\": $(jf "$it/hooks/cryptroot"),
    \"/usr/share/initramfs-tools/hooks/cryptroot.orig\": $(jf "$it/hooks/cryptroot.orig")"
  fi
  local boot_label=""
  [ "$online" = y ] && boot_label=', "fs_label": "BOOT"'
  local luks_part="{\"number\": 1, \"role\": \"luks\", \"start\": $((P1_START * 512)), \"size\": $P1_BYTES, \"type\": \"0FC63DAF-8483-4772-8E79-3D69D8477DE4\", \"guid\": \"$P1\"}"
  local boot_part="{\"number\": $BOOTN, \"role\": \"boot\", \"start\": $((BOOT_START * 512)), \"size\": $BOOT_BYTES, \"type\": \"$BOOT_TYPE_GUID\", \"guid\": \"$PB\", \"fs\": \"$BOOT_FS\"$boot_label, \"fs_uuid\": \"$BOOT_UUID\"}"
  local parts_tail="$luks_part,
    $boot_part"
  [ "$online" = y ] && parts_tail="$boot_part,
    $luks_part"
  # the command line as ParseGrubCfg gives it: fields joined by one space
  local -a kw
  read -r -a kw <<<"$KOPTS"
  local cmdline="${kw[*]}"
  cat >"$WORK/$N.json" <<EOF
  {
   "name": "$N",
   "flow": "$flow",
   "os_release": "$osrel",
   "disk": "$N.raw",
   "plain_disk": "$N.plain.raw",
   "root_image": "$N.root.ext4",
   "header": "$N.luksheader",
   "initrd": "$N.initrd",
   "initrd_sha256": "$(sha "$TMP/$N.initrd")",
   "initrd_compression": "$COMPRESS",
   "size": $((DISK_MIB * MiB)),
   "disk_guid": "$DISK_GUID",
   "partitions": [
    {"number": 14, "role": "bios_boot", "start": $((2048 * 512)), "size": $((8192 * 512)), "type": "21686148-6449-6E6F-744E-656564454649", "guid": "$P14"},
    {"number": 15, "role": "esp", "start": $((10240 * 512)), "size": $((ESP_MIB * MiB)), "type": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "guid": "$P15", "fs": "vfat", "fs_label": "UEFI", "fs_id": "$ESP_ID"},
    $parts_tail
   ],
   "luks_partition": 1,
   "boot_partition": $BOOTN,
   "esp_partition": 15,
   "luks": {"version": $LUKS_VERSION, "uuid": "$LUKS_UUID", "cipher": "$CIPHER", "key_bits": $KEY_BITS, "sector_size": $sector,
            "data_offset": 0, "pbkdf": "$PBKDF", "header_path": "/luks/osluksheader", "header_size": 33554432},
   "root_fs": {"type": "ext4", "uuid": "$ROOT_UUID", "label": "cloudimg-rootfs", "size": $ROOTFS_BYTES},
   "mapper": "osencrypt",
   "crypttab_source": "$CRYPTSOURCE",
   "bus": "$([ "$new" = y ] && echo virtio || echo scsi)",
   "cmdline": $(jstr "$cmdline"),
   "kernel_path": "/vmlinuz-$KVER",
   "initrd_path": "/initrd.img-$KVER",
   "grub_cfg_path": "/grub/grub.cfg",
   "esp_grub_cfg_path": "/EFI/ubuntu/grub.cfg",
   "initrd_files": [$initrd_files],
   "root_files": {
    "/etc/crypttab": $(jf "$r/etc/crypttab"),
    "/etc/fstab": $(jf "$r/etc/fstab"),
    "/etc/default/cryptdisks": $(jf "$r/etc/default/cryptdisks"),
    "/etc/default/grub": $(jf "$r/etc/default/grub"),
    "/etc/os-release": $(jf "$r/etc/os-release"),
    $root_extra
   },
   "boot_files": {
    "/grub/grub.cfg": $(jf "$b/grub/grub.cfg")
   },
   "esp_files": {
    "/EFI/ubuntu/grub.cfg": $(jf "$W/esp-grub.cfg")
   }
  }
EOF
  rm -rf "$W"
}

# Two disks at a time (mkinitramfs is mostly one process); each job detaches its own loop device if it
# fails. A failed job lets the running one finish, then the build stops.
DISKS=(u2204 u2004 u1804 u2204k u2404)
declare -A JOB=()
failed=""
reap() { # wait for one job; note a failure
  local pid rc=0
  wait -n -p pid "${!JOB[@]}" || rc=$?
  if ((rc != 0)); then
    echo "disk ${JOB[$pid]} failed (exit status $rc)" >&2
    failed="${failed:-$rc}"
  fi
  unset "JOB[$pid]"
}
for N in "${DISKS[@]}"; do
  while ((${#JOB[@]} >= 2)); do reap; done
  [ -z "$failed" ] || break
  (
    trap 'for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || true; done' EXIT
    mkdisk "$N"
  ) &
  JOB[$!]=$N
done
while ((${#JOB[@]} > 0)); do reap; done
[ -z "$failed" ] || exit "$failed"
cp "$K/boot/vmlinuz-$KVER" "$TMP/vmlinuz"

# ------------------------------------------------------------------------------------ manifest
version=$(cat "$SCRIPT" "$HERE"/ade1804/* "$HERE"/ade2004/* "$HERE"/ade2404/* "$HERE/../lib/debkernel.sh" | sha256sum | awk '{print $1}')
{
  cat <<EOF
{
 "version": "$version",
 "generated_by": "testdata/ubuntu/mkubuntu.sh",
 "kernel_package": $(jstr "$(basename "$KDEB")"),
 "kernel_version": $(jstr "$KVER"),
 "vmlinuz": "vmlinuz",
 "vmlinuz_sha256": "$(sha "$TMP/vmlinuz")",
 "bek": "bek.raw",
 "bek_partition": 1,
 "bek_label": "BEK VOLUME",
 "key": "bek.key",
 "key_name": "LinuxPassPhraseFileName",
 "key_path": "/mnt/azure_bek_disk/LinuxPassPhraseFileName",
 "marker": "$MARKER",
 "disks": [
EOF
  sep=""
  for N in "${DISKS[@]}"; do printf '%s%s' "$sep" "$(cat "$WORK/$N.json")"; sep=$',\n'; done
  printf '\n ]\n}\n'
} >"$TMP/manifest.json"
jq -e . "$TMP/manifest.json" >/dev/null || { echo "manifest.json is not valid JSON" >&2; exit 1; }
rm -rf "$WORK"
rm -rf "$OUT"
mv "$TMP" "$OUT"
log "done: $OUT ($(du -sh --apparent-size "$OUT" | cut -f1) apparent, $(du -sh "$OUT" | cut -f1) on disk)"
