#!/usr/bin/env bash
# mkbootvm.sh builds a BOOTABLE ADE VM (an OS disk plus data disks of ADE's layouts) for the whole-VM qemu
# boot tests (internal/qemuboot TestBootConvertedVM*), from the boot disk set of mkbootdisk.sh:
#
#   BOOTSET=DIR testdata/boot/mkbootvm.sh OUTDIR
#
# BOOTSET is a set made by mkbootdisk.sh (manifest.json, bootdisk.plain.raw, initramfs.img). Its root
# filesystem gets what ADE writes on the OS disk for the data volumes (crypttab, fstab, the dual-pass
# header), the host's lvm binary (with dracut-install) and a new /sbin/init; the PV is encrypted again
# like ADE does (cryptsetup reencrypt --encrypt --type luks2 --header) and the new header put on /boot.
# OUTDIR gets (see testdata/boot/README.md):
#   os.raw              the ADE OS disk; lvm.conf as mkbootdisk.sh made it (ADE's filter, no devices file)
#   os-devicesfile.raw  the same with RHEL 9's LVM devices file in use: use_devicesfile = 1 in lvm.conf and
#                       /etc/lvm/devices/system.devices listing the PVs on their dm-crypt devices, both also
#                       in the initramfs (a RHEL 9 host-only initramfs carries them)
#   os.key              the OS disk's BEK passphrase (LinuxPassPhraseFileName)
#   lun0.raw .. lun4.raw, lunN.key   the data disks (64 MiB each) and their BEK files (_1_N)
#   manifest.json       see internal/qemuboot.VMSet
#
# Data disks (every LUKS2, aes-xts-plain64, cheap argon2id; mkvm.sh's methods, no device-mapper needed):
#   lun0  EncryptFormatAll, whole disk, attached header at 16 MiB, 4096-byte sectors, ext4  -> /data0
#   lun1  EncryptFormatAll, whole disk, attached header, 512-byte sectors, XFS             -> /data1
#   lun2+lun3  EncryptFormatAll whole disks whose mappers are the PVs of datavg; datalv (XFS) spans both
#                                                                                         -> /datalv
#   lun4  dual-pass: whole disk, detached header in
#         /var/lib/azure_disk_encryption_config/azureluksheader<mapper> on the OS root, data at 0, ext4
#                                                                                         -> /data4
# Each data filesystem holds luksconv-check.bin (pseudo-random, its SHA-256 in the manifest).
#
# The root's /sbin/init (busybox) remounts / read-write, runs `lvm vgchange -ay` (a busybox root has no
# udev or systemd to activate data VGs), `mount -a`, and prints LUKSCONV-VM-* lines: the effective
# use_devicesfile, the devices file, the PVs LVM sees, each SCSI disk's address and the device ID lvm
# would record for it, each fstab mount point's fstab device, mounted source, type and the SHA-256 of
# its luksconv-check.bin, then LUKSCONV-BOOT-DM lines and LUKSCONV-BOOT-OK root=<source of />
# (testdata/boot/README.md lists them).
#
# Exit status: 0 ok, 2 usage, 3 a required tool or privilege is missing ("missing tool: X" on stderr),
# anything else: a build step failed. KEEP_TMP=1 keeps OUTDIR.tmp after a failure.
# Needs root: loop devices (LVM, cryptsetup's reencryption lock, and read-write mounts of the root and
# /boot XFS images to put files in). Device-mapper is NOT needed.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C
umask 022

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
[ $# -eq 1 ] && [[ $1 != -* ]] || { echo "usage: BOOTSET=DIR $0 OUTDIR" >&2; exit 2; }
[ -n "${BOOTSET:-}" ] && [ -f "$BOOTSET/manifest.json" ] || { echo "BOOTSET must name a mkbootdisk.sh set (manifest.json)" >&2; exit 2; }
BOOTSET=$(readlink -f "$BOOTSET")

missing() { echo "missing tool: $*" >&2; exit 3; }
DRACUT_INSTALL=/usr/lib/dracut/dracut-install
for t in cryptsetup lvm sgdisk sfdisk mkfs.xfs xfs_repair mkfs.ext4 e2fsck losetup mount umount openssl base64 \
  sha256sum truncate dd awk sed jq cpio gzip zcat find; do
  command -v "$t" >/dev/null 2>&1 || missing "$t"
done
[ -x "$DRACUT_INSTALL" ] || missing "$DRACUT_INSTALL (Debian package dracut-install)"
LVMBIN=$(command -v lvm)
[ "$(id -u)" -eq 0 ] || missing "root privileges (loop devices, mounts and cryptsetup reencrypt need root)"
losetup -f >/dev/null 2>&1 || missing "loop devices (losetup -f failed)"

T0=$(date +%s%N)
log() { printf '[mkbootvm %6.2fs] %s\n' "$(($(date +%s%N) - T0))e-9" "$*"; }

OUT=$(readlink -m "$1")
if [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ] && [ ! -f "$OUT/manifest.json" ]; then
  echo "$OUT exists and is not a boot VM set (no manifest.json); not replacing it" >&2
  exit 2
fi
TMP="$OUT.tmp"
W="$TMP/.work"
LOOPS=()
MOUNTS=()
cleanup() {
  local rc=$? m l
  for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || true; done
  for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  if ((rc != 0)) && [ -z "${KEEP_TMP:-}" ]; then rm -rf "$TMP"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
rm -rf "$TMP"
mkdir -p "$W"

MiB=1048576
DISK=$((64 * MiB)) LUKS2_OFF=$((16 * MiB))
# ADE passes no LUKS options: cryptsetup's defaults, with the KDF made cheap.
ARGON=(--pbkdf argon2id --pbkdf-memory 32 --pbkdf-force-iterations 4 --pbkdf-parallel 1)
export LVM_SUPPRESS_FD_WARNINGS=1
CHECK=luksconv-check.bin
MARKER=LUKSCONV-BOOT-OK

size() { stat -c %s "$1"; }
sha() { sha256sum "$1" | awk '{print $1}'; }
# rand SEED BYTES: deterministic pseudo-random bytes (AES-128-CTR keystream of a seed).
rand() { head -c "$2" /dev/zero | openssl enc -aes-128-ctr -nosalt -pbkdf2 -iter 1 -pass "pass:mkbootvm:$1"; }
# bek SEED FILE: an ADE BEK file: base64 of 127 random bytes, 172 bytes, no newline.
bek() { rand "bek:$1" 127 | base64 -w0 >"$2"; [ "$(size "$2")" -eq 172 ]; }
put() { dd if="$2" of="$1" bs=1M oflag=seek_bytes seek="$3" conv=notrunc,sparse status=none; }
quiet() { grep -v -e 'keyslots area .* is very small' -e 'WARNING: Activation disabled' -e 'not zeroed' -e '^$' || true; }
loopdev() { # VAR FILE [losetup options]: attach FILE, remember the device for cleanup, set VAR to it
  local _dev
  _dev=$(losetup -f --show "${@:3}" "$2")
  LOOPS+=("$_dev")
  printf -v "$1" '%s' "$_dev"
}
unloop() { losetup -d "$1"; local a=() l; for l in "${LOOPS[@]}"; do [ "$l" = "$1" ] || a+=("$l"); done; LOOPS=("${a[@]}"); }
mnt() { # IMG DIR [mount options]: mount an XFS image read-write through a loop device
  mkdir -p "$2"
  mount -t xfs -o "loop,nouuid${3:+,$3}" "$1" "$2"
  MOUNTS+=("$2")
}
unmnt() { umount "$1"; local a=() m; for m in "${MOUNTS[@]}"; do [ "$m" = "$1" ] || a+=("$m"); done; MOUNTS=("${a[@]}"); }

# proto DIR: the body of an xfs protofile (mkfs.xfs -p) for DIR.
proto() {
  local e n m
  for e in "$1"/* "$1"/.[!.]*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    n=${e##*/} m=$(stat -c %a "$e")
    if [ -L "$e" ]; then echo "$n l--777 0 0 $(readlink "$e")"
    elif [ -d "$e" ]; then echo "$n d--$m 0 0"; proto "$e"; echo '$'
    else echo "$n ---$m 0 0 $e"; fi
  done
}
# xfsimg TREE IMG BYTES UUID: an XFS filesystem holding TREE, without mounting (fstests' variables let
# mkfs.xfs >= 5.19 go below 300 MB).
xfsimg() {
  { echo /dev/null; echo "0 0"; echo "d--755 0 0"; proto "$1"; echo '$'; } >"$2.proto"
  rm -f "$2"
  truncate -s "$3" "$2"
  TEST_DIR=/tmp TEST_DEV=/dev/null QA_CHECK_FS=1 mkfs.xfs -q -f -m uuid="$4" -p "$2.proto" "$2"
  rm -f "$2.proto"
  xfs_repair -n "$2" >/dev/null 2>&1 || { xfs_repair -n "$2" >&2; return 1; }
}
# ext4img TREE IMG BYTES UUID: ext4 holding TREE (mkfs.ext4 -d), 4 KiB blocks, features RHEL 8 mounts.
ext4img() {
  rm -f "$2"
  mkfs.ext4 -q -F -b 4096 -O ^orphan_file,^metadata_csum_seed -U "$4" -E "root_owner=0:0" -d "$1" "$2" "$(($3 / 1024))k"
  e2fsck -fn "$2" >/dev/null 2>&1 || { e2fsck -fn "$2" >&2; return 1; }
}
# tree DIR NAME: a data volume's files: README.txt and the check file.
tree() {
  mkdir -p "$1"
  printf 'data volume %s of the luksconv boot VM\n' "$2" >"$1/README.txt"
  rand "check:$2" $((MiB + 4321)) >"$1/$CHECK"
}
# format_all NAME PLAIN SECTOR KEY UUID: EncryptFormatAll of a whole 64 MiB disk (luksFormat + mkfs
# through the mapper, made offline): PLAIN (48 MiB, the mapper's content) + 32 MiB encrypted in place with
# --reduce-device-size 32M, cut to 64 MiB, so the data segment (16 MiB to the end) holds exactly PLAIN.
format_all() {
  [ "$(size "$2")" -eq $((DISK - LUKS2_OFF)) ] || { echo "$1: plaintext size" >&2; return 1; }
  cp --sparse=always "$2" "$TMP/$1.raw"
  truncate -s $((DISK + 16 * MiB)) "$TMP/$1.raw"
  cryptsetup reencrypt --encrypt --type luks2 --sector-size "$3" --reduce-device-size 32M --uuid "$5" \
    --key-file "$4" "${ARGON[@]}" -q "$TMP/$1.raw" 2>&1 | quiet
  truncate -s $DISK "$TMP/$1.raw"
}
luuid() { printf 'b007c0de-1005-4a00-8000-%012x' "$1"; }
fsuuid() { printf 'b007f500-0000-4a00-8000-%012x' "$1"; }
lvmcfg() { # LOOP...: an lvm --config seeing only these devices, touching no udev, dm, backup or archive
  local a="" l
  for l; do a+="\"a|^$l\$|\","; done
  printf 'devices{filter=[%s"r|.*|"] global_filter=[%s"r|.*|"] obtain_device_list_from_udev=0 use_devicesfile=0} activation{udev_sync=0 udev_rules=0 monitoring=0} global{activation=0} backup{backup=0 archive=0}' "$a" "$a"
}
# segs VGCFG: "PVNAME START_EXTENT EXTENT_COUNT PE EXTENT_BYTES PE_START_BYTES" per segment of the only LV
segs() {
  awk '/physical_volumes \{/ {inpv = 1} /logical_volumes \{/ {inpv = 0; inlv = 1}
    /^\t*extent_size =/ {es = $3}
    inpv && /^\t*pe_start =/ {ps = $3}
    /start_extent =/ {se = $3} /extent_count =/ {ec = $3}
    inlv && /"pv[0-9]+", [0-9]+/ {gsub(/[",]/, " "); print $1, se, ec, $2, es * 512, ps * 512}' "$1"
}
dmuuid() { printf 'CRYPT-LUKS2-%s-%s' "${1//-/}" "$2"; }

# ------------------------------------------------------------------------------------ the boot set
BM="$BOOTSET/manifest.json"
BOOT_VERSION=$(jq -r .version "$BM")
PLAIN="$BOOTSET/$(jq -r .plain_disk "$BM")"
P4=$(jq -r .part_uuid "$BM") KVER=$(jq -r .kernel_version "$BM")
BOOTP=$(jq -r .boot_partition "$BM") LUKSP=$(jq -r .luks_partition "$BM")
part() { sfdisk --json "$PLAIN" | jq -r --argjson n "$1" '.partitiontable.partitions[] | select(.node | endswith("raw" + ($n | tostring))) | "\(.start * 512) \(.size * 512)"'; }
read -r BOOT_OFF BOOT_SZ < <(part "$BOOTP")
read -r PV_OFF PV_SZ < <(part "$LUKSP")
[ -n "$PV_OFF" ] && [ -n "$BOOT_OFF" ] || { echo "no partitions $BOOTP/$LUKSP in $PLAIN" >&2; exit 1; }
log "boot set $BOOTSET (version ${BOOT_VERSION:0:16}), kernel $KVER"

# rootvg's metadata, read back with lvm from the plaintext PV
cut_range() { dd if="$1" of="$4" bs=1M iflag=skip_bytes,count_bytes skip="$2" count="$3" conv=sparse status=none; }
cut_range "$PLAIN" "$PV_OFF" "$PV_SZ" "$W/os.pv"
loopdev l "$W/os.pv" -r
lvm vgcfgbackup --config "$(lvmcfg "$l")" -q -f "$W/rootvg.vgcfg" rootvg 2>&1 | quiet
unloop "$l"
read -r _ se ec pe esb psb < <(segs "$W/rootvg.vgcfg")
[ "$se" = 0 ] && [ "$(segs "$W/rootvg.vgcfg" | wc -l)" -eq 1 ] || { echo "rootlv is not one segment" >&2; exit 1; }
ROOT_OFF=$((psb + pe * esb)) ROOT_SZ=$((ec * esb))
ROOT_PV=$(awk '/pv0 \{/ {p = 1} p && /id =/ {gsub(/"/, "", $3); print $3; exit}' "$W/rootvg.vgcfg")
cut_range "$W/os.pv" "$ROOT_OFF" "$ROOT_SZ" "$W/root.xfs"
[ "$(head -c 4 "$W/root.xfs")" = XFSB ] || { echo "no XFS at rootlv" >&2; exit 1; }

# ---------------------------------------------------------------------------------------- keys
bek os "$TMP/os.key"
for n in 0 1 2 3 4; do bek "lun$n" "$TMP/lun$n.key"; done
# ADE names each data mapper with a uuid4 (fixed here)
M0=0b7d0000-5a1e-4c3e-9d00-000000000000 M1=0b7d0001-5a1e-4c3e-9d00-000000000001
M2=0b7d0002-5a1e-4c3e-9d00-000000000002 M3=0b7d0003-5a1e-4c3e-9d00-000000000003
M4=0b7d0004-5a1e-4c3e-9d00-000000000004
HDR4=/var/lib/azure_disk_encryption_config/azureluksheader$M4
PV2=D2vKq1-Lm3n-Bv4c-Xz5a-Sd6f-Gh7j-Kl8pV2 PV3=D3vKq1-Lm3n-Bv4c-Xz5a-Sd6f-Gh7j-Kl8pV3

# ----------------------------------------------------------------------------------- data disks
log "lun0: EncryptFormatAll whole disk, LUKS2 4096-byte sectors, ext4"
tree "$W/lun0.tree" lun0
ext4img "$W/lun0.tree" "$W/lun0.fs" $((DISK - LUKS2_OFF)) "$(fsuuid 0)"
format_all lun0 "$W/lun0.fs" 4096 "$TMP/lun0.key" "$(luuid 0)"

log "lun1: EncryptFormatAll whole disk, LUKS2 512-byte sectors, XFS"
tree "$W/lun1.tree" lun1
xfsimg "$W/lun1.tree" "$W/lun1.fs" $((DISK - LUKS2_OFF)) "$(fsuuid 1)"
format_all lun1 "$W/lun1.fs" 512 "$TMP/lun1.key" "$(luuid 1)"

log "lun2+lun3: EncryptFormatAll whole disks, their mappers the PVs of datavg; datalv (XFS) spans both"
truncate -s $((DISK - LUKS2_OFF)) "$W/lun2.pv" "$W/lun3.pv"
loopdev l2 "$W/lun2.pv"
loopdev l3 "$W/lun3.pv"
cfg=$(lvmcfg "$l2" "$l3")
{
  lvm pvcreate --config "$cfg" -q -y -ff --uuid "$PV2" --norestorefile "$l2"
  lvm pvcreate --config "$cfg" -q -y -ff --uuid "$PV3" --norestorefile "$l3"
  lvm vgcreate --config "$cfg" -q -s 4M datavg "$l2" "$l3"
  lvm lvcreate --config "$cfg" -q -an -Zn -y -l 100%FREE -n datalv datavg
  lvm vgcfgbackup --config "$cfg" -q -f "$W/datavg.vgcfg" datavg
} 2>&1 | quiet
unloop "$l2"
unloop "$l3"
[ "$(segs "$W/datavg.vgcfg" | awk '{print $1}' | sort -u | tr '\n' ' ')" = "pv0 pv1 " ] ||
  { echo "datalv does not span both PVs" >&2; cat "$W/datavg.vgcfg" >&2; exit 1; }
LV_BYTES=$(segs "$W/datavg.vgcfg" | awk '{n += $3 * $5} END {print n}')
tree "$W/datalv.tree" datalv
xfsimg "$W/datalv.tree" "$W/datalv.fs" "$LV_BYTES" "$(fsuuid 45)"
while read -r pv se ec pe esb psb; do
  f="$W/lun2.pv"
  [ "$pv" = pv1 ] && f="$W/lun3.pv"
  dd if="$W/datalv.fs" of="$f" bs=1M iflag=skip_bytes,count_bytes oflag=seek_bytes conv=notrunc,sparse status=none \
    skip=$((se * esb)) count=$((ec * esb)) seek=$((psb + pe * esb))
done < <(segs "$W/datavg.vgcfg")
format_all lun2 "$W/lun2.pv" 512 "$TMP/lun2.key" "$(luuid 2)"
format_all lun3 "$W/lun3.pv" 512 "$TMP/lun3.key" "$(luuid 3)"

log "lun4: dual-pass, whole disk, detached LUKS2 header (kept on the OS root), ext4"
tree "$W/lun4.tree" lun4
ext4img "$W/lun4.tree" "$TMP/lun4.raw" $DISK "$(fsuuid 4)"
dd if=/dev/zero of="$W/lun4.hdr" bs=33554432 count=1 status=none # dual-pass ADE's create_luks_header
cryptsetup reencrypt --encrypt --type luks2 --header "$W/lun4.hdr" --uuid "$(luuid 4)" --key-file "$TMP/lun4.key" \
  "${ARGON[@]}" -q "$TMP/lun4.raw" 2>&1 | quiet
[ "$(size "$W/lun4.hdr")" -eq 33554432 ]

# -------------------------------------------------------------------------------- the OS root
# What ADE writes for the data volumes (testdata/vm/README.md "What ADE wrote on the OS disk"): one
# crypttab line per volume, appended before the OS volume's (ADE encrypts data volumes first; the OS
# line has no newline); the fstab lines of the format-all volumes rewritten to their mapper with
# nofail; datavg's line added by the admin; the dual-pass volume's line migrated from azure_crypt_mount
# after ADE's marker, without a final newline.
log "OS root: ADE's lines for the data volumes, lvm, init"
CRYPTTAB=$(
  printf '%s /dev/disk/azure/scsi1/lun%s /mnt/azure_bek_disk/LinuxPassPhraseFileName_1_%s luks,nofail\n' \
    "$M0" 0 0 "$M1" 1 1 "$M2" 2 2 "$M3" 3 3
  printf '%s /dev/disk/azure/scsi1/lun4 /mnt/azure_bek_disk/LinuxPassPhraseFileName_1_4 luks,nofail,header=%s\n' "$M4" "$HDR4"
  printf 'osencrypt /dev/disk/by-partuuid/%s /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,discard,header=/boot/luks/osluksheader' "$P4"
)
FSTAB_ADD=$(
  printf '/dev/mapper/%s /data0 ext4 nofail,defaults 0 2\n' "$M0"
  printf '/dev/mapper/%s /data1 xfs nofail,defaults 0 0\n' "$M1"
  printf '/dev/mapper/datavg-datalv /datalv xfs defaults,nofail 0 0\n'
  printf '\n#This line was added by Azure Disk Encryption\n/dev/mapper/%s /data4 auto defaults,nofail,discard 0 0' "$M4"
)
OS_LUKS=$(luuid 100)
SYSTEM_DEVICES=$(
  printf '# LVM uses devices listed in this file.\n'
  printf '# Created by LVM command vgimportdevices pid 1873 at Wed Mar 13 10:30:00 2024\n'
  printf 'VERSION=1.1.3\n'
  printf 'IDTYPE=crypt_uuid IDNAME=%s DEVNAME=/dev/mapper/osencrypt PVID=%s\n' "$(dmuuid "$OS_LUKS" osencrypt)" "${ROOT_PV//-/}"
  printf 'IDTYPE=crypt_uuid IDNAME=%s DEVNAME=/dev/mapper/%s PVID=%s\n' "$(dmuuid "$(luuid 2)" "$M2")" "$M2" "${PV2//-/}"
  printf 'IDTYPE=crypt_uuid IDNAME=%s DEVNAME=/dev/mapper/%s PVID=%s\n' "$(dmuuid "$(luuid 3)" "$M3")" "$M3" "${PV3//-/}"
)

R="$W/rootmnt"
cp --sparse=always "$W/root.xfs" "$W/root.common.xfs"
mnt "$W/root.common.xfs" "$R"
printf '%s' "$CRYPTTAB" >"$R/etc/crypttab"
chmod 600 "$R/etc/crypttab"
[ -z "$(tail -c1 "$R/etc/fstab" | tr -d '\n')" ] || { echo "root fstab lacks its final newline" >&2; exit 1; }
printf '%s' "$FSTAB_ADD" >>"$R/etc/fstab"
mkdir -p "$R"/{data0,data1,datalv,data4,var/lib/azure_disk_encryption_config,usr/sbin,usr/bin}
chmod 700 "$R/var/lib/azure_disk_encryption_config"
cp "$W/lun4.hdr" "$R$HDR4"
for a in sha256sum cut sed grep mkdir wc; do ln -sf busybox "$R/bin/$a"; done
# the host's lvm with its libraries, as the distribution's lvm2 package puts it on a real root
"$DRACUT_INSTALL" -D "$R" -l "$LVMBIN" >/dev/null
[ -x "$R$LVMBIN" ] || { echo "dracut-install did not install $LVMBIN" >&2; exit 1; }
cat >"$R/sbin/init" <<EOF
#!/bin/sh
# luksconv whole-VM boot-test init (testdata/boot/mkbootvm.sh): activate LVM, mount fstab, report, power off.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
exec >/dev/console 2>&1
mount -o remount,rw /
# SCSI disks (a test may attach the data disks on virtio-scsi: the initramfs' udev loaded the driver):
# wait until the number of sd devices settles
n=-1 i=0
while [ -e /sys/class/scsi_host/host0 ] && [ \$i -lt 20 ]; do
  c=\$(ls -d /sys/block/sd* 2>/dev/null | wc -l)
  [ "\$c" = "\$n" ] && [ "\$c" != 0 ] && break
  n=\$c i=\$((i + 1))
  sleep 1
done
mkdir -p /run/lvm /run/lock/lvm
# forget an earlier failed search for the devices file's missing PVIDs (/run/lvm/searched_devnames, left
# by the initramfs' lvm), as \`pvscan --cache\` and lvm's hint invalidation do when devices appear; this
# root has no udev or systemd to run them
rm -f /run/lvm/searched_devnames
# no udev on this root: lvm makes its /dev nodes itself and lists /dev itself
C='devices{obtain_device_list_from_udev=0} activation{udev_sync=0 udev_rules=0 monitoring=0}'
echo "LUKSCONV-VM-LVMCONF use_devicesfile=\$(lvm lvmconfig --config "\$C" --typeconfig full devices/use_devicesfile 2>/dev/null | sed 's/.*=//')"
lvm vgchange -ay --config "\$C" 2>&1 | sed 's/^ */LUKSCONV-VM-VGCHANGE /'
lvm pvs --noheadings -o pv_name,vg_name,pv_uuid --config "\$C" 2>/dev/null | sed 's/^ */LUKSCONV-VM-PV /'
lvm pvs --noheadings -o pv_name --config "\$C" 2>&1 >/dev/null | sed 's/^ */LUKSCONV-VM-LVMWARN /'
[ -f /etc/lvm/devices/system.devices ] && sed 's/^/LUKSCONV-VM-DEVICESFILE /' /etc/lvm/devices/system.devices
mount -a 2>&1 | sed 's/^/LUKSCONV-VM-MOUNTERR /'
# each SCSI disk's address (host:channel:target:LUN): which LUN it is
for d in /sys/block/sd*; do
  [ -e "\$d/device" ] && echo "LUKSCONV-VM-SCSI \$(basename "\$d") \$(basename "\$(readlink -f "\$d/device")")"
done
# the device ID lvm would record now for each PV and each SCSI disk (a scratch devices file): devname,
# or a stable one (sys_wwid, sys_serial, ...)
for pv in \$(lvm pvs --noheadings -o pv_name --config "\$C" 2>/dev/null) \$(ls /dev/sd? 2>/dev/null); do
  lvm lvmdevices --config 'devices{obtain_device_list_from_udev=0 use_devicesfile=1}' --devicesfile luksconv-probe.devices --adddev "\$pv" >/dev/null 2>&1
done
[ -f /etc/lvm/devices/luksconv-probe.devices ] && grep '^IDTYPE=' /etc/lvm/devices/luksconv-probe.devices | sed 's/^/LUKSCONV-VM-DEVICEID /'
rm -f /etc/lvm/devices/luksconv-probe.devices
awk '\$1 !~ /^#/ && NF >= 4 && \$2 ~ /^\/./ {print \$1, \$2}' /etc/fstab | while read -r spec mp; do
  set -- \$(awk -v m="\$mp" '\$2 == m {s = \$1; t = \$3} END {print s, t}' /proc/mounts)
  sum=-
  [ -f "\$mp/$CHECK" ] && sum=\$(sha256sum "\$mp/$CHECK" | cut -d' ' -f1)
  echo "LUKSCONV-VM-MOUNT mp=\$mp spec=\$spec src=\${1:--} type=\${2:--} sha256=\$sum"
done
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
chmod 755 "$R/sbin/init"
unmnt "$R"

# os_disk NAME ROOTIMG [INITRAMFS]: the ADE OS disk: the boot set's plaintext disk with ROOTIMG as
# rootlv, p4 encrypted like ADE's RHEL 8 flow with a new detached header put on /boot (and INITRAMFS, if
# given, as /boot's initramfs).
os_disk() {
  local name=$1 root=$2 initrd=${3:-} d="$TMP/$1.raw" l b="$W/bootmnt"
  xfs_repair -n "$root" >/dev/null 2>&1 || { xfs_repair -n "$root" >&2; return 1; }
  cp --sparse=always "$PLAIN" "$d"
  put "$d" "$root" $((PV_OFF + ROOT_OFF))
  dd if=/dev/zero of="$W/$name.hdr" bs=33554432 count=1 status=none
  loopdev l "$d" -o "$PV_OFF" --sizelimit "$PV_SZ"
  cryptsetup reencrypt --encrypt --type luks2 --header "$W/$name.hdr" --uuid "$OS_LUKS" --key-file "$TMP/os.key" \
    "${ARGON[@]}" -q "$l" 2>&1 | quiet
  unloop "$l"
  cut_range "$d" "$BOOT_OFF" "$BOOT_SZ" "$W/boot.xfs"
  mnt "$W/boot.xfs" "$b"
  cp "$W/$name.hdr" "$b/luks/osluksheader"
  [ -z "$initrd" ] || cp "$initrd" "$b/initramfs-$KVER.img"
  unmnt "$b"
  xfs_repair -n "$W/boot.xfs" >/dev/null 2>&1 || { xfs_repair -n "$W/boot.xfs" >&2; return 1; }
  put "$d" "$W/boot.xfs" "$BOOT_OFF"
  rm -f "$W/boot.xfs" "$W/$name.hdr"
}

log "os.raw: ADE OS disk, no LVM devices file"
os_disk os "$W/root.common.xfs"

log "os-devicesfile.raw: the same with use_devicesfile = 1 and system.devices (root and initramfs)"
cp --sparse=always "$W/root.common.xfs" "$W/root.df.xfs"
mnt "$W/root.df.xfs" "$R"
sed -i 's|^\([[:space:]]*\)scan = \[ "/dev" \]$|&\n\1use_devicesfile = 1|' "$R/etc/lvm/lvm.conf"
grep -q '^[[:space:]]*use_devicesfile = 1$' "$R/etc/lvm/lvm.conf" || { echo "lvm.conf: use_devicesfile not set" >&2; exit 1; }
mkdir -p "$R/etc/lvm/devices"
printf '%s\n' "$SYSTEM_DEVICES" >"$R/etc/lvm/devices/system.devices"
cp "$R/etc/lvm/lvm.conf" "$W/lvm.conf.df"
cp "$R/etc/lvm/devices/system.devices" "$W/system.devices"
unmnt "$R"
# the boot set's initramfs with the root's lvm.conf and devices file, as a host-only dracut copies them
I="$W/initrd"
mkdir -p "$I"
zcat "$BOOTSET/$(jq -r .initramfs "$BM")" | (cd "$I" && cpio -idm --quiet)
[ -f "$I/etc/lvm/lvm.conf" ] || { echo "the boot set's initramfs has no etc/lvm/lvm.conf" >&2; exit 1; }
cp "$W/lvm.conf.df" "$I/etc/lvm/lvm.conf"
mkdir -p "$I/etc/lvm/devices"
cp "$W/system.devices" "$I/etc/lvm/devices/system.devices"
(cd "$I" && find . -print0 | sort -z | cpio --null -o -H newc --quiet --reproducible | gzip -9 -n) >"$W/initramfs.df.img"
os_disk os-devicesfile "$W/root.df.xfs" "$W/initramfs.df.img"

# ------------------------------------------------------------------------------------ manifest
log "manifest"
vol() { # LUN-or-LV MOUNT TYPE DEVICE FSUUID TREE
  jq -nc --arg w "$1" --arg mp "$2" --arg t "$3" --arg dev "$4" --arg u "$5" --arg s "$(sha "$6/$CHECK")" \
    '{disk:$w, mount_point:$mp, type:$t, ade_device:$dev, fs_uuid:$u, sha256:$s}'
}
disk() { # LUN MAPPER LAYOUT SECTOR
  jq -nc --argjson lun "$1" --arg m "$2" --arg l "$3" --argjson s "$4" \
    '{lun:$lun, file:"lun\($lun).raw", key:"lun\($lun).key", mapper:$m, layout:$l, sector_size:$s}'
}
jq -n --arg version "$(cat "$SCRIPT" <(printf '%s' "$BOOT_VERSION") | sha256sum | awk '{print $1}')" \
  --arg boot_version "$BOOT_VERSION" --arg kver "$KVER" --arg check "$CHECK" --arg marker "$MARKER" \
  --arg os_luks "$OS_LUKS" --arg root_pv "$ROOT_PV" --arg pv2 "$PV2" --arg pv3 "$PV3" --arg hdr4 "$HDR4" \
  --arg crypttab "$CRYPTTAB" --arg devices "$SYSTEM_DEVICES" \
  --argjson disks "$(jq -sc . <(disk 0 "$M0" encrypt-format-all 4096) <(disk 1 "$M1" encrypt-format-all 512) \
    <(disk 2 "$M2" lvm-pv-format-all 512) <(disk 3 "$M3" lvm-pv-format-all 512) <(disk 4 "$M4" dual-pass 512))" \
  --argjson volumes "$(jq -sc . <(vol lun0 /data0 ext4 "/dev/mapper/$M0" "$(fsuuid 0)" "$W/lun0.tree") \
    <(vol lun1 /data1 xfs "/dev/mapper/$M1" "$(fsuuid 1)" "$W/lun1.tree") \
    <(vol datavg/datalv /datalv xfs /dev/mapper/datavg-datalv "$(fsuuid 45)" "$W/datalv.tree") \
    <(vol lun4 /data4 ext4 "/dev/mapper/$M4" "$(fsuuid 4)" "$W/lun4.tree"))" \
  '{version:$version, generated_by:"testdata/boot/mkbootvm.sh", boot_version:$boot_version, kernel_version:$kver,
    os:"os.raw", os_devicesfile:"os-devicesfile.raw", os_key:"os.key", os_luks_uuid:$os_luks,
    root_pv_uuid:$root_pv, datavg:{vg:"datavg", lv:"datalv", pvs:[{lun:2, uuid:$pv2}, {lun:3, uuid:$pv3}]},
    dual_pass_header:$hdr4, crypttab:$crypttab, system_devices:$devices,
    check_file:$check, marker:$marker, disks:$disks, volumes:$volumes}' >"$TMP/manifest.json"
rm -rf "$W"
rm -rf "$OUT"
mv "$TMP" "$OUT"
log "done: $OUT ($(du -sh --apparent-size "$OUT" | cut -f1) apparent, $(du -sh "$OUT" | cut -f1) on disk)"
