#!/usr/bin/env bash
# mkvm.sh builds "one ADE VM": an Azure Disk Encryption (ADE) RHEL 8 LVM OS disk plus one data disk per
# ADE data-disk layout and an encrypted resource disk, with the real tools only (cryptsetup, sgdisk,
# mkfs.ext4/debugfs/resize2fs, mkfs.xfs -p, mkfs.vfat + mtools, lvm2 on loop devices, jq). What each file
# is, and how far it is from what ADE leaves, is in testdata/vm/README.md; the manifest format is
# internal/vmfixture.Manifest.
#
#   testdata/vm/mkvm.sh OUTDIR      build the set into OUTDIR (replaced wholesale: OUTDIR.tmp, then rename)
#
# Exit status: 0 ok, 2 usage, 3 a required tool or privilege is missing ("missing tool: X" on stderr),
# anything else: a build step failed (KEEP_TMP=1 keeps OUTDIR.tmp for debugging).
# Needs root: loop devices for LVM and cryptsetup's reencryption lock. Device-mapper is NOT needed:
# encryption is offline `cryptsetup reencrypt` on image files, LVs are never activated.
#
# Helpers are local (small rewrites, not copies, of what testdata/mkfixtures.sh has: rand, keyfile, the
# xfs protofile writer, the sgdisk wrapper and the lvm --config string), so that this script's hash alone
# versions the set.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C
umask 022

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
usage() { echo "usage: $0 OUTDIR" >&2; exit 2; }
[ $# -eq 1 ] && [ -n "$1" ] && [ "${1#-}" = "$1" ] || usage
OUT=$(readlink -m "$1")

# ------------------------------------------------------------------------------------------------ checks
missing() { echo "missing tool: $*" >&2; exit 3; }
for t in cryptsetup sgdisk sfdisk mkfs.ext4 debugfs resize2fs e2fsck mkfs.xfs xfs_repair xfs_db mkfs.vfat \
  mmd mcopy pvcreate vgcfgrestore vgcfgbackup losetup jq openssl sha256sum base64 truncate dd awk sed stat \
  find cmp od; do
  command -v "$t" >/dev/null 2>&1 || missing "$t"
done
[ "$(id -u)" -eq 0 ] || missing "root privileges (loop devices and cryptsetup reencrypt need root)"
losetup -f >/dev/null 2>&1 || missing "loop devices (losetup -f failed)"

VERSION=$(sha256sum "$SCRIPT" | awk '{print $1}')
T0=$(date +%s%N)
log() { printf '[mkvm %6.2fs] %s\n' "$(($(date +%s%N) - T0))e-9" "$*"; }

# OUTDIR is replaced wholesale: refuse to delete a directory that is not a set made by this script.
if [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ] && [ ! -f "$OUT/manifest.json" ]; then
  echo "$OUT exists and is not a VM fixture set (no manifest.json); not replacing it" >&2
  exit 2
fi
TMP="$OUT.tmp"
W="$TMP/.work"
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
mkdir -p "$W/json"

# ------------------------------------------------------------------------------------------------ helpers
MiB=1048576
EPOCH=1710324000 # 2024-03-13 10:00:00 UTC: every file's mtime, the LVM creation time
export MTOOLS_SKIP_CHECK=1 LVM_SUPPRESS_FD_WARNINGS=1
# ADE passes no LUKS options, so cipher, key size and KDF are cryptsetup's defaults (aes-xts-plain64,
# 512-bit key, argon2id); only the KDF cost is made cheap, so that tests unlock in milliseconds.
ARGON=(--pbkdf argon2id --pbkdf-memory 32 --pbkdf-force-iterations 4 --pbkdf-parallel 1)
PBKDF2=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)

size() { stat -c %s "$1"; }
sha() { sha256sum "$1" | awk '{print $1}'; }
# stream SEED BYTES: deterministic pseudo-random bytes (the AES-128-CTR keystream of a seed).
stream() { head -c "$2" /dev/zero | openssl enc -aes-128-ctr -nosalt -pbkdf2 -iter 1 -pass "pass:mkvm:$1"; }
# bek SEED FILE: a key file as ADE writes the BEK: base64 of 127 random bytes, 172 bytes, no newline.
bek() {
  stream "bek:$1" 127 | base64 -w0 >"$2"
  [ "$(size "$2")" -eq 172 ] || { echo "bek $2: not 172 bytes" >&2; return 1; }
}
# vkey SEED BYTES FILE: a fixed LUKS volume key, so rebuilds give the same data ciphertext.
vkey() { stream "vk:$1" "$2" >"$3"; }
# zeros FILE BYTES: an all-zero file written as ADE writes its header files (dd bs=N count=1).
zeros() { dd if=/dev/zero of="$1" bs="$2" count=1 status=none; }
# put IMG FILE BYTEOFF: write FILE into IMG at BYTEOFF (sparse, IMG not truncated).
put() { dd if="$2" of="$1" bs=1M oflag=seek_bytes seek="$3" conv=notrunc,sparse status=none; }
# cut IMG BYTEOFF BYTES OUT: copy a byte range of IMG to OUT.
cut_range() { dd if="$1" of="$4" bs=1M iflag=skip_bytes,count_bytes skip="$2" count="$3" conv=sparse status=none; }
# pin TREE: fixed mtimes (mkfs.ext4 -d and mkfs.xfs -p copy them).
pin() { find "$1" -exec touch -h -d "@$EPOCH" {} +; }
quiet_luks() { grep -v -e 'keyslots area .* is very small' -e '^$' || true; }

# proto DIR: the body of an xfs protofile for DIR (sorted names; no blanks in names), one line per entry,
# "$" closing each directory.
proto() {
  local e n m
  for e in "$1"/* "$1"/.[!.]*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    n=${e##*/} m=$(stat -c %a "$e")
    if [ -L "$e" ]; then
      echo "$n l--777 0 0 $(readlink "$e")"
    elif [ -d "$e" ]; then
      echo "$n d--$m 0 0"
      proto "$e"
      echo '$'
    else
      echo "$n ---$m 0 0 $e"
    fi
  done
}
# xfsimg TREE IMG BYTES UUID [mkfs.xfs options]: an XFS filesystem holding TREE, made without mounting.
# mkfs.xfs >= 5.19 refuses filesystems below 300 MB unless TEST_DIR, TEST_DEV and QA_CHECK_FS (fstests'
# variables) are all set; with -p it corrupts files larger than an allocation group (callers size AGs).
xfsimg() {
  local tree=$1 img=$2 bytes=$3 uuid=$4
  shift 4
  { echo /dev/null; echo "0 0"; echo "d--755 0 0"; proto "$tree"; echo '$'; } >"$img.proto"
  rm -f "$img"
  truncate -s "$bytes" "$img"
  TEST_DIR=/tmp TEST_DEV=/dev/null QA_CHECK_FS=1 mkfs.xfs -q -f -m uuid="$uuid" "$@" -p "$img.proto" "$img"
  rm -f "$img.proto"
  xfs_repair -n "$img" >"$img.repair" 2>&1 || { cat "$img.repair" >&2; return 1; }
  rm -f "$img.repair"
}
# ext4img TREE IMG BYTES UUID [LABEL]: an ext4 filesystem holding TREE (mkfs.ext4 -d), 4 KiB blocks as on a
# real data disk (mke2fs would pick 1 KiB "small" blocks below 512 MiB), without the orphan_file and
# metadata_csum_seed features that RHEL 8's e2fsprogs 1.45 cannot mount.
ext4img() {
  local tree=$1 img=$2 bytes=$3 uuid=$4 label=${5:-}
  rm -f "$img"
  E2FSPROGS_FAKE_TIME=$EPOCH mkfs.ext4 -q -F -b 4096 -i 16384 -I 256 -O ^orphan_file,^metadata_csum_seed \
    -U "$uuid" -E "hash_seed=$uuid,root_owner=0:0" ${label:+-L "$label"} -d "$tree" "$img" "$((bytes / 1024))k"
  e2fsck -fn "$img" >"$img.fsck" 2>&1 || { cat "$img.fsck" >&2; return 1; }
  rm -f "$img.fsck"
}
# ext4add IMG DIR NAME=FILE...: add files to DIR of an ext4 image with debugfs -w (what ADE's Python does
# through the mounted mapper after encryption; the plaintext is the same).
ext4add() {
  local img=$1 dir=$2 kv
  shift 2
  { echo "mkdir $dir"; for kv; do echo "write ${kv#*=} $dir/${kv%%=*}"; done; } >"$img.cmds"
  E2FSPROGS_FAKE_TIME=$EPOCH debugfs -w -f "$img.cmds" "$img" >"$img.debugfs" 2>&1 ||
    { cat "$img.debugfs" >&2; return 1; }
  if grep -qi -e 'error' -e 'not found' -e 'exists' "$img.debugfs"; then cat "$img.debugfs" >&2; return 1; fi
  rm -f "$img.cmds" "$img.debugfs"
  e2fsck -fn "$img" >"$img.fsck" 2>&1 || { cat "$img.fsck" >&2; return 1; }
  rm -f "$img.fsck"
}
# gptdisk IMG BYTES DISKGUID "NUM:FIRST_SECTOR:LAST_SECTOR:TYPECODE:GUID"...: a GPT image.
gptdisk() {
  local img=$1 bytes=$2 guid=$3 s num first last code pguid args=()
  shift 3
  for s; do
    IFS=: read -r num first last code pguid <<<"$s"
    args+=(-n "$num:$first:$last" -t "$num:$code" -u "$num:$pguid")
  done
  rm -f "$img"
  truncate -s "$bytes" "$img"
  sgdisk -o -U "$guid" "${args[@]}" "$img" >/dev/null
  sgdisk -v "$img" | grep -q '^No problems found' || { sgdisk -v "$img" >&2; return 1; }
}
# partsjson IMG: the partition table as sfdisk reads it back (bytes, lower-case GUIDs).
partsjson() {
  sfdisk --json "$1" | jq -c '[.partitiontable.partitions[] | {
    number: (.node | capture("(?<n>[0-9]+)$").n | tonumber), start: (.start * 512), size: (.size * 512),
    type_guid: (.type | ascii_downcase), guid: (.uuid | ascii_downcase), name: (.name // "")}]'
}
# filesjson TREE: the regular files and symlinks of TREE (path, size, mode, sha256 / target), sorted.
filesjson() {
  (cd "$1" && find . -mindepth 1 \( -type f -o -type l \) -printf '%P\n' | sort | while IFS= read -r p; do
    if [ -L "$p" ]; then
      printf '{"path":"/%s","type":"symlink","target":"%s"}\n' "$p" "$(readlink "$p")"
    else
      printf '{"path":"/%s","type":"file","size":%s,"mode":"%s","sha256":"%s"}\n' "$p" "$(size "$p")" \
        "$(stat -c %a "$p")" "$(sha "$p")"
    fi
  done) | jq -sc .
}
# lvmcfg LOOP...: an lvm --config that sees only these devices and touches no udev, dm, backup or archive.
lvmcfg() {
  local a="" l
  for l; do a+="\"a|^$l\$|\","; done
  printf 'devices{filter=[%s"r|.*|"] global_filter=[%s"r|.*|"] obtain_device_list_from_udev=0 use_devicesfile=0} activation{udev_sync=0 udev_rules=0 monitoring=0} global{activation=0} backup{backup=0 archive=0}' "$a" "$a"
}
# lvm_restore CFGFILE VG PVUUID=FILE...: write VG's metadata (a vgcfgbackup-format file) onto the PV files
# with pvcreate --uuid --restorefile and vgcfgrestore on loop devices, then read it back to CFGFILE.readback.
lvm_restore() {
  local cfgf=$1 vg=$2 kv loops=() l
  shift 2
  for kv; do
    l=$(losetup -f --show "${kv#*=}")
    LOOPS+=("$l")
    loops+=("$l")
  done
  local cfg i=0
  cfg=$(lvmcfg "${loops[@]}")
  {
    for kv; do
      pvcreate --config "$cfg" -y -ff --uuid "${kv%%=*}" --restorefile "$cfgf" "${loops[$i]}"
      i=$((i + 1))
    done
    vgcfgrestore --config "$cfg" -f "$cfgf" "$vg"
    vgcfgbackup --config "$cfg" -f "$cfgf.readback" "$vg"
  } >"$cfgf.log" 2>&1 || { cat "$cfgf.log" >&2; return 1; }
  for l in "${loops[@]}"; do losetup -d "$l"; done
  LOOPS=()
}
# vgsegs READBACK: "LV START_EXTENT EXTENT_COUNT PVNAME PE" per segment, from a vgcfgbackup file.
vgsegs() {
  awk '/logical_volumes \{/ {inlv = 1}
    inlv && /^\t\t[A-Za-z0-9_.+-]+ \{$/ {lv = $1}
    /start_extent =/ {se = $3} /extent_count =/ {ec = $3}
    inlv && /"pv[0-9]+", [0-9]+/ {gsub(/[",]/, " "); print lv, se, ec, $1, $2}' "$1"
}
# luksparams DEV [--header H]: "VERSION UUID SECTOR DATAOFFSET" as cryptsetup luksDump reads them.
luksparams() {
  cryptsetup luksDump "$@" | awk '
    /^Version:/ {v = $2} /^UUID:/ {u = $2}
    /^Payload offset:/ {off = $3 * 512; sec = 512}
    /^Data segments:/ {ds = 1} ds && /offset:/ && off == "" {off = $2} ds && /sector:/ && sec == "" {sec = $2}
    END {print v, u, sec, off}'
}
# lvmid SEED: a deterministic LVM UUID (32 characters of [A-Za-z0-9] as 6-4-4-4-4-4-6).
lvmid() {
  local s
  s=$(stream "lvmid:$1" 96 | base64 -w0 | tr -dc 'A-Za-z0-9' | head -c 32)
  echo "${s:0:6}-${s:6:4}-${s:10:4}-${s:14:4}-${s:18:4}-${s:22:4}-${s:26:6}"
}

# =========================================================================== names, UUIDs, geometry
# ADE names every data mapper with uuid.uuid4() (handle.py); these are fixed uuid4 values.
M0=d53fb14f-4898-4bd2-b167-7fd5e47162c5 M1=9d891a3d-c649-439c-85b9-4aa7c81a897a
M2=4d943217-df14-459c-b7a1-02b3d6c7eb33 M3=1f9ddb69-9e34-40b3-85b0-a7d328dd6573
M4=827cbcbb-f67d-4cf4-a67f-46bc8791a9c2 M5=4c973c64-878c-4390-8dcf-f7d2a4d7ac31
M6=e736561c-9c12-471a-a2af-11d053634c74 M7=5b0c1e2a-7d3f-4c8e-9a61-2f4e8b7d9c07
# the /etc/fstab.backup.<uuid4> copies ADE makes before each fstab edit, in order
FSTAB_BACKUPS=(939316bc-07a7-4813-a9a6-b7b03c5c277d 75ca5101-91d2-4e9a-b53b-b98a18d585a0
  b906d2eb-39ae-43f4-bd01-44214aab1beb 08a751b9-04c4-49db-a6bb-a4486d12bc7d 34c0e70d-736c-4fdf-afdb-08af88e4cf88
  f5dd37de-4338-43b4-a03c-cb6e97cd12e5 a822a23a-5f3a-4651-a1ab-53ca22f22b04 7650bbb7-7122-4413-a30c-6e8c74006857
  c3e1a0f4-5d2b-4e7a-8b19-6f0d2c4a9e81)
# LUKS UUIDs (a0e5c0de-1005-...-LUN), filesystem UUIDs after ADE (a0e5f500-...) and before EncryptFormatAll
# re-made them (a0e50dd0-..., stale in the fstab backups)
luuid() { printf 'a0e5c0de-1005-4a00-8000-%012x' "$1"; }
fsuuid() { printf 'a0e5f500-0000-4a00-8000-%012x' "$1"; }
olduuid() { printf 'a0e50dd0-0000-4a00-8000-%012x' "$1"; }
RES=99 OSN=100 LVN=45 # "numbers" of the resource disk, the OS disk and datavg/datalv in those patterns
HDR6=/var/lib/azure_disk_encryption_config/azureluksheader$M6

# OS disk: 1 MiB GPT | p1 ESP 8 MiB | p2 /boot 96 MiB | p3 BIOS boot 1 MiB | p4 PV 105 MiB | backup GPT
OS_GUID=a0e5d15c-0000-4a00-8000-000000000000
OP1=a0e5d15c-0001-4a00-8000-000000000001 OP2=a0e5d15c-0002-4a00-8000-000000000002
OP3=a0e5d15c-0003-4a00-8000-000000000003 OP4=a0e5d15c-0004-4a00-8000-000000000004
ESP_ID=0A0E5D15 ESP_UUID=0A0E-5D15
BOOT_UUID=$(fsuuid 200) ROOT_UUID=$(fsuuid $OSN) OS_LUKS=$(luuid $OSN)
MID=a0e5d15c00004a008000000000000001 KVER=4.18.0-553.el8_10.x86_64
OS_DISK=$((212 * MiB)) ESP_OFF=$((1 * MiB)) ESP_SZ=$((8 * MiB)) BOOT_OFF=$((9 * MiB)) BOOT_SZ=$((96 * MiB))
BIOS_OFF=$((105 * MiB)) BIOS_SZ=$((1 * MiB)) PV_OFF=$((106 * MiB)) PV_SZ=$((105 * MiB))
EXT=8192 PE_START=2048 # 4 MiB extents (RHEL's default) and a 1 MiB pe_start, in sectors
OS_PE_COUNT=$(((PV_SZ / 512 - PE_START) / EXT)) ROOT_EXTENTS=24
ADEARGS="rd.luks.ade.partuuid=$OP4 rd.luks.ade.bootuuid=$BOOT_UUID rd.debug"
CMDLINE="crashkernel=auto rd.lvm.lv=rootvg/rootlv console=tty1 console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300"
KOPTS="root=/dev/mapper/rootvg-rootlv ro $CMDLINE $ADEARGS"
OS_PV=$(lvmid os-pv) OS_VG=$(lvmid os-vg) OS_LV=$(lvmid os-rootlv)
DATA_PV4=$(lvmid lun4-pv) DATA_PV5=$(lvmid lun5-pv) DATA_VG=$(lvmid datavg) DATA_LV=$(lvmid datalv)
L7_PV=$(lvmid lun7-pv) L7_VG=$(lvmid lun7vg) L7_CLV=$(lvmid lun7-cryptlv) L7_PLV=$(lvmid lun7-plainlv)
L7_WWID=naa.6002248071a5c0de0000000000000007 # lun7's SCSI WWID as lvm2 would record it (made up)

# data disks: 64 MiB each. GPT ones: p1 from 1 MiB to 63 MiB (62 MiB).
DISK=$((64 * MiB)) P1_OFF=$MiB P1_SZ=$((62 * MiB)) P1_FIRST=2048 P1_LAST=$((63 * 2048 - 1))
LUKS2_OFF=$((16 * MiB)) # cryptsetup's default LUKS2 data offset (16 KiB x 2 metadata + 16352 KiB keyslots)

KEYDIR="$W/keys"
mkdir -p "$KEYDIR"
bek os "$TMP/os.key"
for n in 0 1 2 3 4 5 6; do bek "lun$n" "$TMP/lun$n.key"; done

# ======================================================================= what ADE writes on the OS disk
# The guest's /etc as ADE's Python leaves it, modelled step by step with the very edits its code makes
# (CryptMountConfigUtil.py, ResourceDiskUtil.py, redhatPatching.py at ade-sp-release-1.4.0.12). See the
# README for the order and for what is synthetic.
E="$W/etc"
mkdir -p "$E"
BEKLINE='LABEL=BEK\040VOLUME /mnt/azure_bek_disk auto defaults,discard,nofail 0 0'
NB=0 # fstab.backup.<uuid> copies made so far
ends_nl() { [ ! -s "$1" ] || [ -z "$(tail -c1 "$1" | tr -d '\n')" ]; }
# ade_fstab_encrypt MOUNT MAPPER_PATH legacy|crypttab: modify_fstab_entry_encrypt(): copy fstab to
# fstab.backup.<uuid>; the line mounting MOUNT is removed (legacy azure_crypt_mount in use) or gets the
# mapper as device (str.replace of the device, every occurrence) and "nofail," before its options
# (add_nofail_if_absent_to_fstab_line); the BEK line is appended when no line mounts /mnt/azure_bek_disk;
# the original line is appended to fstab.azure.backup. Sets OLDLINE and NEWLINE (empty when removed).
ade_fstab_encrypt() {
  local mnt=$1 mapper=$2 mode=$3
  ends_nl "$E/fstab" || { echo "fstab lacks its final newline: ADE's readlines+append would join lines" >&2; return 1; }
  cp "$E/fstab" "$E/fstab.backup.${FSTAB_BACKUPS[$NB]}"
  NB=$((NB + 1))
  awk -v mnt="$mnt" -v mapper="$mapper" -v mode="$mode" -v old="$E/old.line" -v new="$E/new.line" '
    function replall(s, a, b,   out, i) { out = ""; while ((i = index(s, a)) > 0) { out = out substr(s, 1, i - 1) b; s = substr(s, i + length(a)) } return out s }
    !done && NF >= 4 && $1 !~ /^#/ && $2 == mnt {
      done = 1; print > old
      if (mode == "legacy") next
      line = replall($0, $1, mapper)
      if ($4 !~ /(^|,)nofail(,|$)/) line = replall(line, $4, "nofail," $4)
      print line > new; print line; next
    }
    {print}' "$E/fstab" >"$E/fstab.new"
  mv "$E/fstab.new" "$E/fstab"
  [ -s "$E/old.line" ] || { echo "no fstab line mounts $mnt" >&2; return 1; }
  if ! awk 'NF >= 4 && $1 !~ /^#/ && $2 == "/mnt/azure_bek_disk" {f = 1} END {exit !f}' "$E/fstab"; then
    printf '%s\n' "$BEKLINE" >>"$E/fstab"
  fi
  cat "$E/old.line" >>"$E/fstab.azure.backup"
  OLDLINE=$(cat "$E/old.line") NEWLINE=$(cat "$E/new.line" 2>/dev/null || true)
  rm -f "$E/old.line" "$E/new.line"
}
# ade_crypttab MAPPER DEV KEYFILE [HEADER]: add_crypt_item_to_crypttab(): one line, newline-terminated,
# appended (no comment line). Sets CTLINE.
ade_crypttab() {
  CTLINE="$1 $2 $3 luks,nofail${4:+,header=$4}"
  ends_nl "$E/crypttab" || { echo "crypttab lacks its final newline" >&2; return 1; }
  printf '%s\n' "$CTLINE" >>"$E/crypttab"
}
# ade_crypt_mount MAPPER DEV HEADER MOUNT FS CLEARTEXT SLOT: add_crypt_item_to_azure_crypt_mount(). Sets ACMLINE.
ade_crypt_mount() {
  ACMLINE="$*"
  printf '%s\n' "$ACMLINE" >>"$E/azure_crypt_mount"
}

# --- 0. the guest before ADE: RHEL 8.10 from the marketplace image, data disks mounted by UUID
cat >"$E/fstab" <<EOF

#
# /etc/fstab
# Created by anaconda on Wed Mar 13 10:00:00 2024
#
# Accessible filesystems, by reference, are maintained under '/dev/disk/'.
# See man pages fstab(5), findfs(8), mount(8) and/or blkid(8) for more info.
#
# After editing this file, run 'systemctl daemon-reload' to update systemd
# units generated from this file.
#
/dev/mapper/rootvg-rootlv /                       xfs     defaults        0 0
UUID=$BOOT_UUID /boot                   xfs     defaults        0 0
UUID=$ESP_UUID          /boot/efi               vfat    defaults,uid=0,gid=0,umask=077,shortname=winnt 0 2
UUID=$(olduuid 0) /data0 ext4 defaults 0 2
UUID=$(fsuuid 1) /data1 ext4 defaults 0 2
UUID=$(fsuuid 2) /data2 ext4 defaults 0 2
UUID=$(olduuid 3) /data3 xfs defaults 0 0
UUID=$(olduuid 4) /tempdata4 ext4 defaults 0 2
UUID=$(olduuid 5) /tempdata5 ext4 defaults 0 2
UUID=$(fsuuid 6) /data6 ext4 defaults 0 2
UUID=$(olduuid 7) /data7 ext4 defaults 0 2
EOF
: >"$E/crypttab" # RHEL ships an empty /etc/crypttab
: >"$E/fstab.azure.backup"
cat >"$E/waagent.conf" <<'EOF'
#
# Microsoft Azure Linux Agent Configuration (abridged for the luksconv VM fixture)
#

# Enable extension handling.
Extensions.Enabled=y

# Which provisioning agent to use: auto, waagent, cloud-init, disabled.
Provisioning.Agent=auto

# Format if unformatted. If 'n', resource disk will not be mounted.
ResourceDisk.Format=y

# File system on the resource disk.
ResourceDisk.Filesystem=ext4

# Mount point for the resource disk.
ResourceDisk.MountPoint=/mnt/resource

# Create and use swapfile on resource disk.
ResourceDisk.EnableSwap=n

# Size of the swapfile.
ResourceDisk.SwapSizeMB=0

# Enable verbose logging (y|n)
Logs.Verbose=n

# Enable RDMA management and set up.
OS.EnableRDMA=n
EOF

# --- 1. dual-pass ADE (0.1) encrypted lun6 in place with a detached header; the legacy azure_crypt_mount
# file held it and its fstab line was removed
ade_fstab_encrypt /data6 "/dev/mapper/$M6" legacy
L6_OLD=$OLDLINE
ade_crypt_mount "$M6" /dev/disk/azure/scsi1/lun6 "$HDR6" /data6 ext4 False 0
# --- 2. stop-and-copy single pass encrypted lun2 (partition 1) in place: legacy file in use, line removed
ade_fstab_encrypt /data2 "/dev/mapper/$M2" legacy
L2_OLD=$OLDLINE
ade_crypt_mount "$M2" /dev/disk/azure/scsi1/lun2-part1 None /data2 ext4 False 0
L2_ACM=$ACMLINE
# --- 3. online in-place encryption (RHEL >= 8.1) of lun1 partition 1, in the crypttab system
ade_fstab_encrypt /data1 "/dev/mapper/$M1" crypttab
L1_OLD=$OLDLINE L1_NEW=$NEWLINE
ade_crypttab "$M1" /dev/disk/azure/scsi1/lun1-part1 /mnt/azure_bek_disk/LinuxPassPhraseFileName_1_1
L1_CT=$CTLINE
# --- 4. EnableEncryptionFormatAll, VolumeType All: first the resource disk (ResourceDiskUtil: the sed -i
# edits of waagent.conf and fstab run verbatim here), then the mounted data disks in device order
(cd "$E" && sed -i.rdbak1 's|ResourceDisk.MountPoint=.*|ResourceDisk.MountPoint=/mnt/resource|' waagent.conf &&
  sed -i.rdbak2 's|ResourceDisk.Format=y|ResourceDisk.Format=n|' waagent.conf &&
  sed -i.bak '/azure_resource-part1/d' fstab)
grep -q '^/dev/mapper/resourceencrypt' "$E/fstab" ||
  printf '/dev/mapper/resourceencrypt /mnt/resource auto defaults,discard,nofail 0 0\n' >>"$E/fstab"
LR_FSTAB='/dev/mapper/resourceencrypt /mnt/resource auto defaults,discard,nofail 0 0'
ade_crypttab resourceencrypt /dev/disk/azure/resource-part1 /mnt/azure_bek_disk/LinuxPassPhraseFileName
LR_CT=$CTLINE
ade_fstab_encrypt /data0 "/dev/mapper/$M0" crypttab
L0_OLD=$OLDLINE L0_NEW=$NEWLINE
ade_crypttab "$M0" /dev/disk/azure/scsi1/lun0 /mnt/azure_bek_disk/LinuxPassPhraseFileName_1_0
L0_CT=$CTLINE
ade_fstab_encrypt /data3 "/dev/mapper/$M3" crypttab
L3_OLD=$OLDLINE L3_NEW=$NEWLINE
ade_crypttab "$M3" /dev/disk/azure/scsi1/lun3 /mnt/azure_bek_disk/LinuxPassPhraseFileName_1_3
L3_CT=$CTLINE
ade_fstab_encrypt /tempdata4 "/dev/mapper/$M4" crypttab
L4_OLD=$OLDLINE L4_NEW=$NEWLINE
ade_crypttab "$M4" /dev/disk/azure/scsi1/lun4 /mnt/azure_bek_disk/LinuxPassPhraseFileName_1_4
L4_CT=$CTLINE
ade_fstab_encrypt /tempdata5 "/dev/mapper/$M5" crypttab
L5_OLD=$OLDLINE L5_NEW=$NEWLINE
ade_crypttab "$M5" /dev/disk/azure/scsi1/lun5 /mnt/azure_bek_disk/LinuxPassPhraseFileName_1_5
L5_CT=$CTLINE
# crypt-on-LVM: lun7 is a plain PV of lun7vg, and ADE encrypts the mounted LV crypt-lv like a disk. Its
# device is the LV (dm names double a dash inside a VG or LV name); no SCSI LUN names it, so the key
# file is the default one (see the README).
ade_fstab_encrypt /data7 "/dev/mapper/$M7" crypttab
L7_OLD=$OLDLINE L7_NEW=$NEWLINE
ade_crypttab "$M7" /dev/mapper/lun7vg-crypt--lv /mnt/azure_bek_disk/LinuxPassPhraseFileName
L7_CT=$CTLINE
# --- 5. the admin follows Microsoft's LVM-on-crypt how-to: unmounts /tempdata4 and /tempdata5, deletes
# their fstab lines, pvcreate on the two mappers, datavg/datalv, mkfs.xfs, and an fstab line for the LV
grep -v -e ' /tempdata4 ' -e ' /tempdata5 ' "$E/fstab" >"$E/fstab.new"
mv "$E/fstab.new" "$E/fstab"
LLV_FSTAB='/dev/mapper/datavg-datalv /datalv xfs defaults,nofail 0 0'
printf '%s\n' "$LLV_FSTAB" >>"$E/fstab"
# --- 6. the single-pass extension migrates lun6 out of azure_crypt_mount (migrate_crypt_items():
# append_mount_info_data_disk() appends the marker and a new line, without a final newline, then the
# crypttab line keeps the header). ADE archives the whole legacy file then; the fixture keeps lun2 in it.
cp "$E/fstab" "$E/fstab.backup.${FSTAB_BACKUPS[$NB]}"
NB=$((NB + 1))
L6_NEW="/dev/mapper/$M6 /data6 auto defaults,nofail,discard 0 0"
printf '\n#This line was added by Azure Disk Encryption\n%s' "$L6_NEW" >>"$E/fstab"
ade_crypttab "$M6" /dev/disk/azure/scsi1/lun6 /mnt/azure_bek_disk/LinuxPassPhraseFileName_1_6 "$HDR6"
L6_CT=$CTLINE
grep -v "^$M6 " "$E/azure_crypt_mount" >"$E/acm.new" || true
mv "$E/acm.new" "$E/azure_crypt_mount"
# --- 7. the OS volume last (handle.py encrypts data volumes before the OS): the RHEL 8.1+ online flow
# appends its crypttab line without a newline, the lvm.conf filter, ade.conf and the kernel arguments
printf 'osencrypt /dev/disk/by-partuuid/%s /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,discard,header=/boot/luks/osluksheader' \
  "$OP4" >>"$E/crypttab"
((NB == ${#FSTAB_BACKUPS[@]})) || { echo "made $NB fstab backups, named ${#FSTAB_BACKUPS[@]}" >&2; exit 1; }

# ============================================================================ data volumes' contents
# usertree DIR SEED: the files a user put on a data volume (same shape everywhere, content by seed).
usertree() {
  local d=$1 s=$2
  mkdir -p "$d/projects/alpha" "$d/logs"
  printf 'data volume %s of the luksconv whole-VM fixture\n' "$s" >"$d/README.txt"
  stream "$s-small" 4096 >"$d/projects/alpha/small.bin"
  stream "$s-odd" 70001 >"$d/projects/alpha/odd.bin"
  stream "$s-big" $((MiB + 12345)) >"$d/projects/big.bin"
  seq 1 300 | awk -v s="$s" '{print s " line " $1}' >"$d/logs/app.log"
  : >"$d/logs/empty"
  ln -s projects/alpha/small.bin "$d/link-to-small"
  chmod 600 "$d/projects/big.bin"
}
# backupdir TREE crypttab_line=TEXT fstab_line=TEXT ...: <mnt>/.azure_ade_backup_mount_info/ as ADE writes it
backupdir() {
  local d="$1/.azure_ade_backup_mount_info" kv
  shift
  mkdir -p "$d"
  for kv; do printf '%s' "${kv#*=}" >"$d/${kv%%=*}"; done
}

# json helpers for a data disk's manifest entry
luksjson() { # VERSION UUID SECTOR OFFSET KEYBITS KDF HEADER(attached|detached) HEADER_PATH HEADER_FILE VKFILE
  jq -nc --argjson v "$1" --arg u "$2" --argjson s "$3" --argjson o "$4" --argjson kb "$5" --arg kdf "$6" \
    --arg h "$7" --arg hp "$8" --arg hf "$9" --arg vk "$(od -An -v -tx1 "${10}" | tr -d ' \n')" \
    '{version:$v, uuid:$u, cipher:"aes-xts-plain64", key_size_bits:$kb, sector_size:$s, data_offset:$o,
      kdf:$kdf, header:$h, header_path:$hp, header_file:$hf, volume_key:$vk}'
}
# check_luks NAME DEV WANT_VERSION WANT_UUID WANT_SECTOR WANT_OFFSET [--header H]: luksDump says what we built.
check_luks() {
  local n=$1 dev=$2 want="$3 $4 $5 $6" got
  shift 6
  got=$(luksparams "$dev" "$@")
  [ "$got" = "$want" ] || { echo "$n: luksDump gives '$got', want '$want'" >&2; return 1; }
  if cryptsetup luksDump "$dev" "$@" | grep -q -e 'reencrypt' -e 'online-reencrypt'; then
    echo "$n: the re-encryption did not finish" >&2
    return 1
  fi
}
# encrypt_attached NAME PLAIN DEVSIZE SECTOR VKBYTES OUT NUM KEYFILE: the LUKS2 device of an
# EncryptFormatAll volume: PLAIN (DEVSIZE - 16 MiB bytes, the mapper's size) encrypted in place with
# `cryptsetup reencrypt --encrypt --reduce-device-size 32M` on PLAIN + 32 MiB, then cut to DEVSIZE, so the
# data segment (16 MiB to the end) holds exactly PLAIN, as luksFormat + mkfs through the mapper leave it.
encrypt_attached() {
  local n=$1 plain=$2 devsize=$3 sector=$4 vkb=$5 out=$6 num=$7 key=$8
  [ "$(size "$plain")" -eq $((devsize - LUKS2_OFF)) ] || { echo "$n: plaintext size" >&2; return 1; }
  vkey "$n" "$vkb" "$KEYDIR/$n.vk"
  cp --sparse=always "$plain" "$out"
  truncate -s $((devsize + 16 * MiB)) "$out"
  cryptsetup reencrypt --encrypt --type luks2 --sector-size "$sector" --reduce-device-size 32M \
    --uuid "$(luuid "$num")" --volume-key-file "$KEYDIR/$n.vk" --key-file "$key" "${ARGON[@]}" -q "$out" 2>&1 | quiet_luks
  truncate -s "$devsize" "$out"
  check_luks "$n" "$out" 2 "$(luuid "$num")" "$sector" "$LUKS2_OFF"
}

DISKS=() # manifest entries, in order

# disk_entry ...: one data disk's manifest entry (key=jsonvalue pairs, values already JSON)
disk_entry() {
  local f="$W/json/disk-$(printf '%02d' ${#DISKS[@]}).json" kv args=() expr="{"
  local sep=""
  for kv; do
    args+=(--argjson "${kv%%=*}" "${kv#*=}")
    expr+="$sep${kv%%=*}:\$${kv%%=*}"
    sep=", "
  done
  jq -nc "${args[@]}" "$expr}" >"$f"
  DISKS+=("$f")
}
js() { jq -nc --arg s "$1" '$s'; }
fsjson() { # TYPE UUID LABEL OFFSET SIZE TREE
  jq -nc --arg t "$1" --arg u "$2" --arg l "$3" --argjson o "$4" --argjson s "$5" --argjson f "$(filesjson "$6")" \
    '{type:$t, uuid:$u, label:$l, offset:$o, size:$s, files:$f}'
}
bmijson() { # TREE: the .azure_ade_backup_mount_info files as {name: content}
  local d="$1/.azure_ade_backup_mount_info" f
  for f in "$d"/*; do jq -nc --arg k "${f##*/}" --rawfile v "$f" '{($k): $v}'; done | jq -sc 'add // {}'
}

# ---------------------------------------------------------------- lun0: EncryptFormatAll, 4096-byte sectors
log "lun0: EncryptFormatAll whole disk, LUKS2 attached, 4096-byte sectors, ext4"
T="$W/lun0.tree"
usertree "$T" lun0
backupdir "$T" crypttab_line="$L0_CT" fstab_line="$L0_NEW"$'\n'
pin "$T"
ext4img "$T" "$W/lun0.fs" $((DISK - LUKS2_OFF)) "$(fsuuid 0)"
cp --sparse=always "$W/lun0.fs" "$TMP/lun0.plain.raw"
encrypt_attached lun0 "$W/lun0.fs" "$DISK" 4096 64 "$TMP/lun0.raw" 0 "$TMP/lun0.key"
disk_entry name='"lun0"' lun=0 layout='"encrypt-format-all"' file='"lun0.raw"' disk_size=$DISK \
  disk_guid='""' partition_table='"none"' partitions='[]' partition=0 device_offset=0 device_size=$DISK \
  device_path='"/dev/disk/azure/scsi1/lun0"' \
  luks="$(luksjson 2 "$(luuid 0)" 4096 $LUKS2_OFF 512 argon2id attached "" "" "$KEYDIR/lun0.vk")" \
  key_file='"lun0.key"' bek_name='"LinuxPassPhraseFileName_1_0"' mapper="$(js $M0)" \
  plaintext='"lun0.plain.raw"' plaintext_size=$((DISK - LUKS2_OFF)) plaintext_sha256="$(js "$(sha "$TMP/lun0.plain.raw")")" \
  before='""' filesystem="$(fsjson ext4 "$(fsuuid 0)" "" 0 $((DISK - LUKS2_OFF)) "$T")" \
  stale_uuid="$(js "$(olduuid 0)")" mount_point='"/data0"' crypttab_line="$(js "$L0_CT")" \
  fstab_line="$(js "$L0_NEW")" fstab_backup_line="$(js "$L0_OLD")" azure_crypt_mount_line='""' \
  backup_mount_info="$(bmijson "$T")" \
  made_by="$(js "mkfs.ext4 -d on a 48 MiB file, then cryptsetup reencrypt --encrypt --type luks2 --sector-size 4096 --reduce-device-size 32M on it + 32 MiB, cut to 64 MiB")"

# ------------------------------------------------------- lun1: online in-place (RHEL >= 8.1), partition 1
log "lun1: in place online, GPT p1, ext4 shrunk 16 MiB, reencrypt --reduce-device-size 32768S (data at 8 MiB)"
T="$W/lun1.tree"
usertree "$T" lun1
pin "$T"
ext4img "$T" "$W/lun1.before.fs" $P1_SZ "$(fsuuid 1)"
G1=a0e5d15c-0101-4a00-8000-000000000000 G1P=a0e5d15c-0101-4a00-8000-000000000001
gptdisk "$TMP/lun1.before.raw" $DISK $G1 "1:$P1_FIRST:$P1_LAST:8300:$G1P"
put "$TMP/lun1.before.raw" "$W/lun1.before.fs" $P1_OFF
# ADE: e2fsck -f, resize2fs to (size - 16 MiB) in sectors, reencrypt --encrypt --init-only
# --reduce-device-size 32768S, mount, write the backup files, resume in the background
cp --sparse=always "$W/lun1.before.fs" "$W/lun1.part"
e2fsck -fy "$W/lun1.part" >/dev/null
resize2fs "$W/lun1.part" "$(((P1_SZ - 16 * MiB) / 512))s" >/dev/null 2>&1
# resize2fs truncates an image file; a partition keeps its old tail bytes, so put them back
dd if="$W/lun1.before.fs" of="$W/lun1.part" bs=1M iflag=skip_bytes oflag=seek_bytes conv=notrunc,sparse status=none \
  skip=$((P1_SZ - 16 * MiB)) seek=$((P1_SZ - 16 * MiB))
[ "$(size "$W/lun1.part")" -eq $P1_SZ ] || { echo "lun1: partition image size" >&2; exit 1; }
mkdir -p "$W/lun1.bmi"
printf '%s' "$L1_CT" >"$W/lun1.bmi/crypttab_line"
printf '%s\n' "$L1_NEW" >"$W/lun1.bmi/fstab_line"
touch -d "@$EPOCH" "$W/lun1.bmi"/*
ext4add "$W/lun1.part" /.azure_ade_backup_mount_info crypttab_line="$W/lun1.bmi/crypttab_line" \
  fstab_line="$W/lun1.bmi/fstab_line"
cut_range "$W/lun1.part" 0 $((P1_SZ - 16 * MiB)) "$W/lun1.fs"
vkey lun1 64 "$KEYDIR/lun1.vk"
cryptsetup reencrypt --encrypt --type luks2 --reduce-device-size 32768S --uuid "$(luuid 1)" \
  --volume-key-file "$KEYDIR/lun1.vk" --key-file "$TMP/lun1.key" "${ARGON[@]}" -q "$W/lun1.part" 2>&1 | quiet_luks
check_luks lun1 "$W/lun1.part" 2 "$(luuid 1)" 512 $((8 * MiB))
# The data segment runs from 8 MiB to the partition end: the shrunk fs, then 8 MiB that held the fs's old
# tail and were never encrypted (they decrypt to noise). What decrypting gives, by cryptsetup itself:
cp --sparse=always "$W/lun1.part" "$W/lun1.dec"
cryptsetup reencrypt --decrypt --header "$W/lun1.dec.hdr" --force-offline-reencrypt --key-file "$TMP/lun1.key" \
  -q "$W/lun1.dec" 2>&1 | quiet_luks
cut_range "$W/lun1.dec" 0 $((P1_SZ - 8 * MiB)) "$TMP/lun1.plain.raw"
cmp -s -n $((P1_SZ - 16 * MiB)) "$TMP/lun1.plain.raw" "$W/lun1.fs" || { echo "lun1: decryption differs from the fs" >&2; exit 1; }
rm -f "$W/lun1.dec" "$W/lun1.dec.hdr"
gptdisk "$TMP/lun1.raw" $DISK $G1 "1:$P1_FIRST:$P1_LAST:8300:$G1P"
put "$TMP/lun1.raw" "$W/lun1.part" $P1_OFF
mkdir -p "$W/lun1.after/.azure_ade_backup_mount_info" && cp -a "$T/." "$W/lun1.after/" &&
  cp -p "$W/lun1.bmi"/* "$W/lun1.after/.azure_ade_backup_mount_info/"
disk_entry name='"lun1"' lun=1 layout='"inplace-online"' file='"lun1.raw"' disk_size=$DISK \
  disk_guid="$(js $G1)" partition_table='"gpt"' partitions="$(partsjson "$TMP/lun1.raw")" partition=1 \
  device_offset=$P1_OFF device_size=$P1_SZ device_path='"/dev/disk/azure/scsi1/lun1-part1"' \
  luks="$(luksjson 2 "$(luuid 1)" 512 $((8 * MiB)) 512 argon2id attached "" "" "$KEYDIR/lun1.vk")" \
  key_file='"lun1.key"' bek_name='"LinuxPassPhraseFileName_1_1"' mapper="$(js $M1)" \
  plaintext='"lun1.plain.raw"' plaintext_size=$((P1_SZ - 8 * MiB)) plaintext_sha256="$(js "$(sha "$TMP/lun1.plain.raw")")" \
  before='"lun1.before.raw"' filesystem="$(fsjson ext4 "$(fsuuid 1)" "" 0 $((P1_SZ - 16 * MiB)) "$W/lun1.after")" \
  stale_uuid='""' mount_point='"/data1"' crypttab_line="$(js "$L1_CT")" fstab_line="$(js "$L1_NEW")" \
  fstab_backup_line="$(js "$L1_OLD")" azure_crypt_mount_line='""' backup_mount_info="$(bmijson "$W/lun1.after")" \
  made_by="$(js "mkfs.ext4 -d (62 MiB), e2fsck -f, resize2fs to 46 MiB, debugfs -w (backup files), cryptsetup reencrypt --encrypt --type luks2 --reduce-device-size 32768S run to completion offline; plaintext by cryptsetup reencrypt --decrypt")"

# ----------------------------------------------------- lun2: stop-and-copy, LUKS1, partition 1 (legacy)
log "lun2: stop-and-copy on GPT p1, LUKS1 attached (2 MiB payload), ext4; in azure_crypt_mount"
T="$W/lun2.tree"
usertree "$T" lun2
pin "$T"
ext4img "$T" "$W/lun2.before.fs" $P1_SZ "$(fsuuid 2)"
G2=a0e5d15c-0102-4a00-8000-000000000000 G2P=a0e5d15c-0102-4a00-8000-000000000001
gptdisk "$TMP/lun2.before.raw" $DISK $G2 "1:$P1_FIRST:$P1_LAST:8300:$G2P"
put "$TMP/lun2.before.raw" "$W/lun2.before.fs" $P1_OFF
# ADE: e2fsck -f, resize2fs to (size - 2 MiB), keep the first 50 MiB aside, luksFormat (LUKS1 on the
# distros of that time), copy the fs into the mapper, resize2fs to fill it (a no-op), backup file
cp --sparse=always "$W/lun2.before.fs" "$W/lun2.fs"
e2fsck -fy "$W/lun2.fs" >/dev/null
resize2fs "$W/lun2.fs" "$(((P1_SZ - 2 * MiB) / 512))s" >/dev/null 2>&1
truncate -s $((P1_SZ - 2 * MiB)) "$W/lun2.fs"
mkdir -p "$W/lun2.bmi"
printf '%s\n' "$L2_ACM" >"$W/lun2.bmi/azure_crypt_mount_line"
touch -d "@$EPOCH" "$W/lun2.bmi"/*
ext4add "$W/lun2.fs" /.azure_ade_backup_mount_info azure_crypt_mount_line="$W/lun2.bmi/azure_crypt_mount_line"
cp --sparse=always "$W/lun2.fs" "$TMP/lun2.plain.raw"
# LUKS1 cannot be made offline (reencrypt --type luks1 needs device-mapper): LUKS2 with LUKS1-compatible
# parameters (256-bit xts key = cryptsetup < 2.1's default, pbkdf2-sha256, small metadata so the data
# offset is reduce/2 = 2 MiB), then `cryptsetup convert --type luks1`, which leaves the data alone.
vkey lun2 32 "$KEYDIR/lun2.vk"
cp --sparse=always "$W/lun2.fs" "$W/lun2.part"
truncate -s $((P1_SZ + 2 * MiB)) "$W/lun2.part"
cryptsetup reencrypt --encrypt --type luks2 --luks2-metadata-size 16k --luks2-keyslots-size 1m \
  --reduce-device-size 4M --cipher aes-xts-plain64 --key-size 256 --hash sha256 "${PBKDF2[@]}" \
  --uuid "$(luuid 2)" --volume-key-file "$KEYDIR/lun2.vk" --key-file "$TMP/lun2.key" -q "$W/lun2.part" 2>&1 | quiet_luks
truncate -s $P1_SZ "$W/lun2.part"
cryptsetup convert --type luks1 -q "$W/lun2.part"
check_luks lun2 "$W/lun2.part" 1 "$(luuid 2)" 512 $((2 * MiB))
gptdisk "$TMP/lun2.raw" $DISK $G2 "1:$P1_FIRST:$P1_LAST:8300:$G2P"
put "$TMP/lun2.raw" "$W/lun2.part" $P1_OFF
mkdir -p "$W/lun2.after/.azure_ade_backup_mount_info" && cp -a "$T/." "$W/lun2.after/" &&
  cp -p "$W/lun2.bmi"/* "$W/lun2.after/.azure_ade_backup_mount_info/"
disk_entry name='"lun2"' lun=2 layout='"inplace-stop-and-copy"' file='"lun2.raw"' disk_size=$DISK \
  disk_guid="$(js $G2)" partition_table='"gpt"' partitions="$(partsjson "$TMP/lun2.raw")" partition=1 \
  device_offset=$P1_OFF device_size=$P1_SZ device_path='"/dev/disk/azure/scsi1/lun2-part1"' \
  luks="$(luksjson 1 "$(luuid 2)" 512 $((2 * MiB)) 256 pbkdf2-sha256 attached "" "" "$KEYDIR/lun2.vk")" \
  key_file='"lun2.key"' bek_name='"LinuxPassPhraseFileName_1_2"' mapper="$(js $M2)" \
  plaintext='"lun2.plain.raw"' plaintext_size=$((P1_SZ - 2 * MiB)) plaintext_sha256="$(js "$(sha "$TMP/lun2.plain.raw")")" \
  before='"lun2.before.raw"' filesystem="$(fsjson ext4 "$(fsuuid 2)" "" 0 $((P1_SZ - 2 * MiB)) "$W/lun2.after")" \
  stale_uuid='""' mount_point='"/data2"' crypttab_line='""' fstab_line='""' fstab_backup_line="$(js "$L2_OLD")" \
  azure_crypt_mount_line="$(js "$L2_ACM")" backup_mount_info="$(bmijson "$W/lun2.after")" \
  made_by="$(js "mkfs.ext4 -d (62 MiB), e2fsck -f, resize2fs to 60 MiB, debugfs -w, cryptsetup reencrypt --encrypt --type luks2 --reduce-device-size 4M --key-size 256 --hash sha256 --pbkdf pbkdf2, cut to 62 MiB, cryptsetup convert --type luks1")"

# -------------------------------------------------------------------- lun3: EncryptFormatAll, XFS
log "lun3: EncryptFormatAll whole disk, LUKS2 attached, 512-byte sectors (RHEL 8's cryptsetup 2.3), XFS"
T="$W/lun3.tree"
usertree "$T" lun3
backupdir "$T" crypttab_line="$L3_CT" fstab_line="$L3_NEW"$'\n'
pin "$T"
xfsimg "$T" "$W/lun3.fs" $((DISK - LUKS2_OFF)) "$(fsuuid 3)"
cp --sparse=always "$W/lun3.fs" "$TMP/lun3.plain.raw"
encrypt_attached lun3 "$W/lun3.fs" "$DISK" 512 64 "$TMP/lun3.raw" 3 "$TMP/lun3.key"
disk_entry name='"lun3"' lun=3 layout='"encrypt-format-all"' file='"lun3.raw"' disk_size=$DISK \
  disk_guid='""' partition_table='"none"' partitions='[]' partition=0 device_offset=0 device_size=$DISK \
  device_path='"/dev/disk/azure/scsi1/lun3"' \
  luks="$(luksjson 2 "$(luuid 3)" 512 $LUKS2_OFF 512 argon2id attached "" "" "$KEYDIR/lun3.vk")" \
  key_file='"lun3.key"' bek_name='"LinuxPassPhraseFileName_1_3"' mapper="$(js $M3)" \
  plaintext='"lun3.plain.raw"' plaintext_size=$((DISK - LUKS2_OFF)) plaintext_sha256="$(js "$(sha "$TMP/lun3.plain.raw")")" \
  before='""' filesystem="$(fsjson xfs "$(fsuuid 3)" "" 0 $((DISK - LUKS2_OFF)) "$T")" \
  stale_uuid="$(js "$(olduuid 3)")" mount_point='"/data3"' crypttab_line="$(js "$L3_CT")" \
  fstab_line="$(js "$L3_NEW")" fstab_backup_line="$(js "$L3_OLD")" azure_crypt_mount_line='""' \
  backup_mount_info="$(bmijson "$T")" \
  made_by="$(js "mkfs.xfs -p on a 48 MiB file, then cryptsetup reencrypt --encrypt --type luks2 --reduce-device-size 32M on it + 32 MiB, cut to 64 MiB")"

# ------------------------------------------------------------- lun4 + lun5: LVM on crypt (datavg)
log "lun4+lun5: EncryptFormatAll whole disks, LUKS2 attached; the plaintexts are the PVs of datavg, datalv (XFS) spans both"
PVB=$((DISK - LUKS2_OFF)) # each PV is a mapper: 48 MiB
PVC=$(((PVB / 512 - PE_START) / EXT))
LVX=16 # datalv: 8 extents on pv0 (lun4) from PE 0, 8 on pv1 (lun5) from PE 2
cat >"$W/datavg.vgcfg" <<EOF
contents = "Text Format Volume Group"
version = 1

description = "datavg of the luksconv whole-VM fixture (testdata/vm/mkvm.sh)"

creation_host = "rhel8-ade-vm"
creation_time = $EPOCH

datavg {
	id = "$DATA_VG"
	seqno = 1
	format = "lvm2"
	status = ["RESIZEABLE", "READ", "WRITE"]
	flags = []
	extent_size = $EXT
	max_lv = 0
	max_pv = 0
	metadata_copies = 0

	physical_volumes {

		pv0 {
			id = "$DATA_PV4"
			device = "/dev/mapper/$M4"

			status = ["ALLOCATABLE"]
			flags = []
			dev_size = $((PVB / 512))
			pe_start = $PE_START
			pe_count = $PVC
		}

		pv1 {
			id = "$DATA_PV5"
			device = "/dev/mapper/$M5"

			status = ["ALLOCATABLE"]
			flags = []
			dev_size = $((PVB / 512))
			pe_start = $PE_START
			pe_count = $PVC
		}
	}

	logical_volumes {

		datalv {
			id = "$DATA_LV"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			creation_time = $EPOCH
			creation_host = "rhel8-ade-vm"
			segment_count = 2

			segment1 {
				start_extent = 0
				extent_count = 8

				type = "striped"
				stripe_count = 1

				stripes = [
					"pv0", 0
				]
			}
			segment2 {
				start_extent = 8
				extent_count = 8

				type = "striped"
				stripe_count = 1

				stripes = [
					"pv1", 2
				]
			}
		}
	}
}
EOF
truncate -s $PVB "$W/lun4.pv" "$W/lun5.pv"
lvm_restore "$W/datavg.vgcfg" datavg "$DATA_PV4=$W/lun4.pv" "$DATA_PV5=$W/lun5.pv"
vgsegs "$W/datavg.vgcfg.readback" >"$W/datavg.segs"
[ "$(tr '\n' ' ' <"$W/datavg.segs")" = "datalv 0 8 pv0 0 datalv 8 8 pv1 2 " ] ||
  { echo "datavg: LVM wrote another layout: $(cat "$W/datavg.segs")" >&2; exit 1; }
grep -q "pe_start = $PE_START" "$W/datavg.vgcfg.readback" && grep -q "pe_count = $PVC" "$W/datavg.vgcfg.readback" ||
  { echo "datavg: pe_start/pe_count differ" >&2; cat "$W/datavg.vgcfg.readback" >&2; exit 1; }
T="$W/datalv.tree"
usertree "$T" datalv
pin "$T"
xfsimg "$T" "$W/datalv.fs" $((LVX * EXT * 512)) "$(fsuuid $LVN)"
# scatter the LV's bytes onto the PVs at the extents the metadata gives (the LV is never activated)
while read -r _ se ec pv pe; do
  f="$W/lun4.pv"
  [ "$pv" = pv1 ] && f="$W/lun5.pv"
  dd if="$W/datalv.fs" of="$f" bs=1M iflag=skip_bytes,count_bytes oflag=seek_bytes conv=notrunc,sparse status=none \
    skip=$((se * EXT * 512)) count=$((ec * EXT * 512)) seek=$((PE_START * 512 + pe * EXT * 512))
done <"$W/datavg.segs"
for n in 4 5; do
  cp --sparse=always "$W/lun$n.pv" "$TMP/lun$n.plain.raw"
  encrypt_attached "lun$n" "$W/lun$n.pv" "$DISK" 512 64 "$TMP/lun$n.raw" "$n" "$TMP/lun$n.key"
done
LV_SHA=$(sha "$W/datalv.fs")
for n in 4 5; do
  M=M$n OLD=L${n}_OLD NEW=L${n}_NEW CT=L${n}_CT
  disk_entry name="\"lun$n\"" lun=$n layout='"lvm-pv-format-all"' file="\"lun$n.raw\"" disk_size=$DISK \
    disk_guid='""' partition_table='"none"' partitions='[]' partition=0 device_offset=0 device_size=$DISK \
    device_path="\"/dev/disk/azure/scsi1/lun$n\"" \
    luks="$(luksjson 2 "$(luuid $n)" 512 $LUKS2_OFF 512 argon2id attached "" "" "$KEYDIR/lun$n.vk")" \
    key_file="\"lun$n.key\"" bek_name="\"LinuxPassPhraseFileName_1_$n\"" mapper="$(js "${!M}")" \
    plaintext="\"lun$n.plain.raw\"" plaintext_size=$PVB plaintext_sha256="$(js "$(sha "$TMP/lun$n.plain.raw")")" \
    before='""' filesystem=null stale_uuid="$(js "$(olduuid $n)")" mount_point='""' \
    crypttab_line="$(js "${!CT}")" fstab_line='""' fstab_backup_line="$(js "${!OLD}")" azure_crypt_mount_line='""' \
    backup_mount_info='{}' \
    made_by="$(js "pvcreate --uuid --restorefile + vgcfgrestore of datavg on a loop device over a 48 MiB file, datalv's XFS image copied to its extents, then cryptsetup reencrypt --encrypt --type luks2 --reduce-device-size 32M on it + 32 MiB, cut to 64 MiB")"
done

# ------------------------------------------------------------ lun6: dual-pass, detached LUKS2 header
log "lun6: dual-pass in place, whole disk, detached LUKS2 header (on the OS disk), data at 0, ext4"
T="$W/lun6.tree"
usertree "$T" lun6
pin "$T"
ext4img "$T" "$W/lun6.before.fs" $DISK "$(fsuuid 6)"
cp --sparse=always "$W/lun6.before.fs" "$TMP/lun6.before.raw"
cp --sparse=always "$W/lun6.before.fs" "$W/lun6.fs"
mkdir -p "$W/lun6.bmi"
printf '%s' "$L6_CT" >"$W/lun6.bmi/crypttab_line"
printf '%s' "$L6_NEW" >"$W/lun6.bmi/fstab_line" # the last fstab line: no newline, as readlines() gave it
touch -d "@$EPOCH" "$W/lun6.bmi"/*
ext4add "$W/lun6.fs" /.azure_ade_backup_mount_info crypttab_line="$W/lun6.bmi/crypttab_line" \
  fstab_line="$W/lun6.bmi/fstab_line"
cp --sparse=always "$W/lun6.fs" "$TMP/lun6.plain.raw"
# dual-pass: dd if=/dev/zero bs=33554432 count=1 > azureluksheader<mapper>, luksFormat --header, copy
zeros "$W/lun6.hdr" 33554432
vkey lun6 64 "$KEYDIR/lun6.vk"
cp --sparse=always "$W/lun6.fs" "$TMP/lun6.raw"
cryptsetup reencrypt --encrypt --type luks2 --header "$W/lun6.hdr" --uuid "$(luuid 6)" \
  --volume-key-file "$KEYDIR/lun6.vk" --key-file "$TMP/lun6.key" "${ARGON[@]}" -q "$TMP/lun6.raw" 2>&1 | quiet_luks
check_luks lun6 "$W/lun6.hdr" 2 "$(luuid 6)" 512 0
[ "$(size "$W/lun6.hdr")" -eq 33554432 ] || { echo "lun6: header file size changed" >&2; exit 1; }
cp --sparse=always "$W/lun6.hdr" "$TMP/lun6.luksheader"
mkdir -p "$W/lun6.after/.azure_ade_backup_mount_info" && cp -a "$T/." "$W/lun6.after/" &&
  cp -p "$W/lun6.bmi"/* "$W/lun6.after/.azure_ade_backup_mount_info/"
disk_entry name='"lun6"' lun=6 layout='"dual-pass"' file='"lun6.raw"' disk_size=$DISK \
  disk_guid='""' partition_table='"none"' partitions='[]' partition=0 device_offset=0 device_size=$DISK \
  device_path='"/dev/disk/azure/scsi1/lun6"' \
  luks="$(luksjson 2 "$(luuid 6)" 512 0 512 argon2id detached "$HDR6" lun6.luksheader "$KEYDIR/lun6.vk")" \
  key_file='"lun6.key"' bek_name='"LinuxPassPhraseFileName_1_6"' mapper="$(js $M6)" \
  plaintext='"lun6.plain.raw"' plaintext_size=$DISK plaintext_sha256="$(js "$(sha "$TMP/lun6.plain.raw")")" \
  before='"lun6.before.raw"' filesystem="$(fsjson ext4 "$(fsuuid 6)" "" 0 $DISK "$W/lun6.after")" \
  stale_uuid='""' mount_point='"/data6"' crypttab_line="$(js "$L6_CT")" fstab_line="$(js "$L6_NEW")" \
  fstab_backup_line="$(js "$L6_OLD")" azure_crypt_mount_line='""' backup_mount_info="$(bmijson "$W/lun6.after")" \
  made_by="$(js "mkfs.ext4 -d (64 MiB, whole disk), debugfs -w, dd of a 32 MiB zero header file, cryptsetup reencrypt --encrypt --type luks2 --header (data at 0)")"

# --------------------------------------------------- lun7: crypt-on-LVM (LUKS inside an LV of a plain PV)
log "lun7: plain PV (whole disk) of lun7vg; LV crypt-lv (two segments) holds LUKS2 attached (EncryptFormatAll), ext4; plainlv beside it"
L7PVC=$(((DISK / 512 - PE_START) / EXT)) # 15 extents of 4 MiB
CLVX=10 PLVX=2 # crypt-lv: extents 0-4 on PE 0-4 and 5-9 on PE 7-11; plainlv: PE 5-6; PE 12-14 free
cat >"$W/lun7vg.vgcfg" <<EOF
contents = "Text Format Volume Group"
version = 1

description = "lun7vg of the luksconv whole-VM fixture (testdata/vm/mkvm.sh)"

creation_host = "rhel8-ade-vm"
creation_time = $EPOCH

lun7vg {
	id = "$L7_VG"
	seqno = 3
	format = "lvm2"
	status = ["RESIZEABLE", "READ", "WRITE"]
	flags = []
	extent_size = $EXT
	max_lv = 0
	max_pv = 0
	metadata_copies = 0

	physical_volumes {

		pv0 {
			id = "$L7_PV"
			device = "/dev/sdi"

			status = ["ALLOCATABLE"]
			flags = []
			dev_size = $((DISK / 512))
			pe_start = $PE_START
			pe_count = $L7PVC
		}
	}

	logical_volumes {

		crypt-lv {
			id = "$L7_CLV"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			creation_time = $EPOCH
			creation_host = "rhel8-ade-vm"
			segment_count = 2

			segment1 {
				start_extent = 0
				extent_count = 5

				type = "striped"
				stripe_count = 1

				stripes = [
					"pv0", 0
				]
			}
			segment2 {
				start_extent = 5
				extent_count = 5

				type = "striped"
				stripe_count = 1

				stripes = [
					"pv0", 7
				]
			}
		}

		plainlv {
			id = "$L7_PLV"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			creation_time = $EPOCH
			creation_host = "rhel8-ade-vm"
			segment_count = 1

			segment1 {
				start_extent = 0
				extent_count = $PLVX

				type = "striped"
				stripe_count = 1

				stripes = [
					"pv0", 5
				]
			}
		}
	}
}
EOF
truncate -s $DISK "$W/lun7.pv"
lvm_restore "$W/lun7vg.vgcfg" lun7vg "$L7_PV=$W/lun7.pv"
vgsegs "$W/lun7vg.vgcfg.readback" >"$W/lun7vg.segs"
[ "$(tr '\n' ' ' <"$W/lun7vg.segs")" = "crypt-lv 0 5 pv0 0 crypt-lv 5 5 pv0 7 plainlv 0 $PLVX pv0 5 " ] ||
  { echo "lun7vg: LVM wrote another layout: $(cat "$W/lun7vg.segs")" >&2; exit 1; }
# crypt-lv: EncryptFormatAll of the LV (luksFormat + mkfs.ext4 on the mapper), with ADE's backup files
T="$W/lun7.tree"
usertree "$T" lun7
backupdir "$T" crypttab_line="$L7_CT" fstab_line="$L7_NEW"$'\n'
pin "$T"
CLVB=$((CLVX * EXT * 512))
ext4img "$T" "$W/lun7.fs" $((CLVB - LUKS2_OFF)) "$(fsuuid 7)"
cp --sparse=always "$W/lun7.fs" "$TMP/lun7.plain.raw"
encrypt_attached lun7 "$W/lun7.fs" $CLVB 512 64 "$W/crypt-lv.lv" 7 "$TMP/os.key"
cp --sparse=always "$W/crypt-lv.lv" "$TMP/lun7.lv.raw"
# plainlv: an ordinary ext4 LV that stays as it is
T7P="$W/plainlv.tree"
mkdir -p "$T7P"
printf 'plainlv of lun7vg: never encrypted\n' >"$T7P/README.txt"
stream plainlv 300000 >"$T7P/data.bin"
pin "$T7P"
ext4img "$T7P" "$W/plainlv.lv" $((PLVX * EXT * 512)) "$(fsuuid 71)"
# scatter both LVs onto the PV at the extents the metadata gives (the LVs are never activated)
while read -r lv se ec _ pe; do
  dd if="$W/$lv.lv" of="$W/lun7.pv" bs=1M iflag=skip_bytes,count_bytes oflag=seek_bytes conv=notrunc,sparse status=none \
    skip=$((se * EXT * 512)) count=$((ec * EXT * 512)) seek=$((PE_START * 512 + pe * EXT * 512))
done <"$W/lun7vg.segs"
cp --sparse=always "$W/lun7.pv" "$TMP/lun7.raw"
PLV_SHA=$(sha "$W/plainlv.lv")
disk_entry name='"lun7"' lun=7 layout='"crypt-on-lvm"' file='"lun7.raw"' disk_size=$DISK \
  disk_guid='""' partition_table='"none"' partitions='[]' partition=0 device_offset=0 device_size=$CLVB \
  device_file='"lun7.lv.raw"' lv='"lun7vg/crypt-lv"' device_path='"/dev/mapper/lun7vg-crypt--lv"' \
  luks="$(luksjson 2 "$(luuid 7)" 512 $LUKS2_OFF 512 argon2id attached "" "" "$KEYDIR/lun7.vk")" \
  key_file='"os.key"' bek_name='"LinuxPassPhraseFileName"' mapper="$(js $M7)" \
  plaintext='"lun7.plain.raw"' plaintext_size=$((CLVB - LUKS2_OFF)) plaintext_sha256="$(js "$(sha "$TMP/lun7.plain.raw")")" \
  before='""' filesystem="$(fsjson ext4 "$(fsuuid 7)" "" 0 $((CLVB - LUKS2_OFF)) "$T")" \
  stale_uuid="$(js "$(olduuid 7)")" mount_point='"/data7"' crypttab_line="$(js "$L7_CT")" \
  fstab_line="$(js "$L7_NEW")" fstab_backup_line="$(js "$L7_OLD")" azure_crypt_mount_line='""' \
  backup_mount_info="$(bmijson "$T")" \
  made_by="$(js "pvcreate --uuid --restorefile + vgcfgrestore of lun7vg on a loop device over the 64 MiB disk file; mkfs.ext4 -d on a 24 MiB file, cryptsetup reencrypt --encrypt --type luks2 --reduce-device-size 32M on it + 32 MiB, cut to 40 MiB (the LV), put on crypt-lv's extents beside plainlv's ext4 image")"

# ------------------------------------------------------------ resource disk: EncryptFormatAll, p1
log "resource: GPT p1, LUKS2 attached (EncryptFormatAll), ext4, mapper resourceencrypt, the OS BEK"
T="$W/resource.tree"
mkdir -p "$T"
printf 'This is a temporary resource disk of the luksconv whole-VM fixture.\n' >"$T/DATALOSS_WARNING_README.txt"
stream resource-swap $((2 * MiB)) >"$T/scratch.bin"
backupdir "$T" crypttab_line="$LR_CT" fstab_line="$LR_FSTAB"$'\n'
pin "$T"
ext4img "$T" "$W/resource.fs" $((P1_SZ - LUKS2_OFF)) "$(fsuuid $RES)"
cp --sparse=always "$W/resource.fs" "$TMP/resource.plain.raw"
encrypt_attached resource "$W/resource.fs" $P1_SZ 512 64 "$W/resource.part" $RES "$TMP/os.key"
GR=a0e5d15c-0199-4a00-8000-000000000000 GRP=a0e5d15c-0199-4a00-8000-000000000001
gptdisk "$TMP/resource.raw" $DISK $GR "1:$P1_FIRST:$P1_LAST:8300:$GRP"
put "$TMP/resource.raw" "$W/resource.part" $P1_OFF
disk_entry name='"resource"' lun=-1 layout='"resource-format-all"' file='"resource.raw"' disk_size=$DISK \
  disk_guid="$(js $GR)" partition_table='"gpt"' partitions="$(partsjson "$TMP/resource.raw")" partition=1 \
  device_offset=$P1_OFF device_size=$P1_SZ device_path='"/dev/disk/azure/resource-part1"' \
  luks="$(luksjson 2 "$(luuid $RES)" 512 $LUKS2_OFF 512 argon2id attached "" "" "$KEYDIR/resource.vk")" \
  key_file='"os.key"' bek_name='"LinuxPassPhraseFileName"' mapper='"resourceencrypt"' \
  plaintext='"resource.plain.raw"' plaintext_size=$((P1_SZ - LUKS2_OFF)) plaintext_sha256="$(js "$(sha "$TMP/resource.plain.raw")")" \
  before='""' filesystem="$(fsjson ext4 "$(fsuuid $RES)" "" 0 $((P1_SZ - LUKS2_OFF)) "$T")" \
  stale_uuid='""' mount_point='"/mnt/resource"' crypttab_line="$(js "$LR_CT")" fstab_line="$(js "$LR_FSTAB")" \
  fstab_backup_line='""' azure_crypt_mount_line='""' backup_mount_info="$(bmijson "$T")" \
  made_by="$(js "mkfs.ext4 -d on a 46 MiB file, then cryptsetup reencrypt --encrypt --type luks2 --reduce-device-size 32M on it + 32 MiB, cut to 62 MiB, put at partition 1")"

# ==================================================================================== the OS disk
log "os: RHEL 8.10 LVM OS disk: ESP, /boot xfs, BIOS boot, LUKS2 detached-header PV of rootvg (rootlv xfs)"
R="$W/root"
mkdir -p "$R"/{etc/lvm/devices,etc/default,etc/dracut.conf.d,boot,home,tmp,var/log,mnt/azure_bek_disk,mnt/resource}
mkdir -p "$R"/{data0,data1,data2,data3,data6,data7,datalv,tempdata4,tempdata5} "$R/var/lib/azure_disk_encryption_config"
cp "$E"/fstab "$E"/fstab.azure.backup "$E"/fstab.bak "$E"/crypttab "$E"/waagent.conf "$E"/waagent.conf.rdbak1 \
  "$E"/waagent.conf.rdbak2 "$R/etc/"
for u in "${FSTAB_BACKUPS[@]}"; do cp "$E/fstab.backup.$u" "$R/etc/"; done
cp "$E/azure_crypt_mount" "$R/var/lib/azure_disk_encryption_config/azure_crypt_mount"
cp "$W/lun6.hdr" "$R$HDR6"
chmod 600 "$R/etc/crypttab" # anaconda/systemd: crypttab is 0600 on RHEL
chmod 700 "$R/var/lib/azure_disk_encryption_config"
echo "$MID" >"$R/etc/machine-id"
cat >"$R/etc/os-release" <<'EOF'
NAME="Red Hat Enterprise Linux"
VERSION="8.10 (Ootpa)"
ID="rhel"
ID_LIKE="fedora"
VERSION_ID="8.10"
PLATFORM_ID="platform:el8"
PRETTY_NAME="Red Hat Enterprise Linux 8.10 (Ootpa)"
ANSI_COLOR="0;31"
CPE_NAME="cpe:/o:redhat:enterprise_linux:8::baseos"
HOME_URL="https://www.redhat.com/"
EOF
echo "Red Hat Enterprise Linux release 8.10 (Ootpa)" >"$R/etc/redhat-release"
cat >"$R/etc/lvm/lvm.conf" <<'EOF'
# lvm.conf (abridged for the luksconv VM fixture; RHEL 8 leaves the devices file off)
config {
	checks = 1
}
devices {
	dir = "/dev"
	scan = [ "/dev" ]
	# use_devicesfile = 0
}
EOF
printf '\ndevices { filter = ["a|osencrypt|", "r|%s|"] }\n' "$OP4" >>"$R/etc/lvm/lvm.conf"
printf '\nadd_drivers+=" dm_crypt "\n\nadd_dracutmodules+=" crypt lvm "\n' >"$R/etc/dracut.conf.d/ade.conf"
cat >"$R/etc/default/grub" <<EOF
GRUB_TIMEOUT=10
GRUB_DISTRIBUTOR="\$(sed 's, release .*\$,,g' /etc/system-release)"
GRUB_DEFAULT=saved
GRUB_DISABLE_SUBMENU=true
GRUB_TERMINAL_OUTPUT="console"
GRUB_CMDLINE_LINUX="$CMDLINE"
GRUB_DISABLE_RECOVERY="true"
GRUB_ENABLE_BLSCFG=true
EOF
printf '\nGRUB_CMDLINE_LINUX+=" %s "\n' "$ADEARGS" >>"$R/etc/default/grub"
# The LVM devices file as RHEL 9's lvm2 (2.03.14-2.03.22: no HASH/PRODUCT_UUID lines yet) writes it for
# PVs on dm-crypt: IDTYPE=crypt_uuid, IDNAME = the dm UUID cryptsetup gives the mapping
# (CRYPT-<type>-<LUKS UUID without dashes>-<name>), DEVNAME = the /dev/mapper name LVM prefers, PVID = the
# PV UUID without dashes (lib/device/device_id.c device_ids_write, _dev_has_crypt_uuid).
dmuuid() { printf 'CRYPT-LUKS2-%s-%s' "${1//-/}" "$2"; }
{
  printf '# LVM uses devices listed in this file.\n'
  printf '# Created by LVM command vgimportdevices pid 1873 at Wed Mar 13 10:30:00 2024\n'
  printf 'VERSION=1.1.3\n'
  printf 'IDTYPE=crypt_uuid IDNAME=%s DEVNAME=/dev/mapper/osencrypt PVID=%s\n' "$(dmuuid "$OS_LUKS" osencrypt)" "${OS_PV//-/}"
  printf 'IDTYPE=crypt_uuid IDNAME=%s DEVNAME=/dev/mapper/%s PVID=%s\n' "$(dmuuid "$(luuid 4)" "$M4")" "$M4" "${DATA_PV4//-/}"
  printf 'IDTYPE=crypt_uuid IDNAME=%s DEVNAME=/dev/mapper/%s PVID=%s\n' "$(dmuuid "$(luuid 5)" "$M5")" "$M5" "${DATA_PV5//-/}"
  printf 'IDTYPE=sys_wwid IDNAME=%s DEVNAME=/dev/sdi PVID=%s\n' "$L7_WWID" "${L7_PV//-/}"
} >"$R/etc/lvm/devices/system.devices"
printf 'ADE whole-VM fixture root filesystem\n' >"$R/etc/motd"
stream os-messages $((256 * 1024 + 3)) >"$R/var/log/messages"
pin "$R"
touch -h -d "@$EPOCH" "$R$HDR6"
ROOT_BYTES=$((ROOT_EXTENTS * EXT * 512))
# agcount=2: 48 MiB AGs, so the 32 MiB header file fits in one AG (mkfs.xfs -p limit, see xfsimg)
xfsimg "$R" "$W/rootlv.fs" $ROOT_BYTES "$ROOT_UUID" -d agcount=2

cat >"$W/rootvg.vgcfg" <<EOF
contents = "Text Format Volume Group"
version = 1

description = "rootvg of the luksconv whole-VM fixture (testdata/vm/mkvm.sh)"

creation_host = "rhel8-ade-vm"
creation_time = $EPOCH

rootvg {
	id = "$OS_VG"
	seqno = 1
	format = "lvm2"
	status = ["RESIZEABLE", "READ", "WRITE"]
	flags = []
	extent_size = $EXT
	max_lv = 0
	max_pv = 0
	metadata_copies = 0

	physical_volumes {

		pv0 {
			id = "$OS_PV"
			device = "/dev/mapper/osencrypt"

			status = ["ALLOCATABLE"]
			flags = []
			dev_size = $((PV_SZ / 512))
			pe_start = $PE_START
			pe_count = $OS_PE_COUNT
		}
	}

	logical_volumes {

		rootlv {
			id = "$OS_LV"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			creation_time = $EPOCH
			creation_host = "rhel8-ade-vm"
			segment_count = 1

			segment1 {
				start_extent = 0
				extent_count = $ROOT_EXTENTS

				type = "striped"
				stripe_count = 1

				stripes = [
					"pv0", 0
				]
			}
		}
	}
}
EOF
truncate -s $PV_SZ "$W/os.pv"
lvm_restore "$W/rootvg.vgcfg" rootvg "$OS_PV=$W/os.pv"
[ "$(vgsegs "$W/rootvg.vgcfg.readback" | tr '\n' ' ')" = "rootlv 0 $ROOT_EXTENTS pv0 0 " ] ||
  { echo "rootvg: LVM wrote another layout" >&2; cat "$W/rootvg.vgcfg.readback" >&2; exit 1; }
put "$W/os.pv" "$W/rootlv.fs" $((PE_START * 512))
cp --sparse=always "$W/os.pv" "$TMP/os.plain.raw"
# ADE's RHEL 8 command on the PV partition: dd a 32 MiB zero header file, reencrypt --encrypt --header
zeros "$W/osluksheader" 33554432
vkey os 64 "$KEYDIR/os.vk"
cryptsetup reencrypt --encrypt --type luks2 --header "$W/osluksheader" --uuid "$OS_LUKS" \
  --volume-key-file "$KEYDIR/os.vk" --key-file "$TMP/os.key" "${ARGON[@]}" -q "$W/os.pv" 2>&1 | quiet_luks
check_luks os "$W/osluksheader" 2 "$OS_LUKS" 512 0
cp --sparse=always "$W/osluksheader" "$TMP/os.luksheader"

# /boot
B="$W/boot"
mkdir -p "$B/luks" "$B/grub2" "$B/loader/entries"
cp "$W/osluksheader" "$B/luks/osluksheader"
chmod 700 "$B/luks"
cat >"$B/loader/entries/$MID-$KVER.conf" <<EOF
title Red Hat Enterprise Linux (${KVER}) 8.10 (Ootpa)
version ${KVER}
linux /vmlinuz-${KVER}
initrd /initramfs-${KVER}.img \$tuned_initrd
options \$kernelopts \$tuned_params
id rhel-20240313100000-${KVER}
grub_users \$grub_users
grub_arg --unrestricted
grub_class kernel
EOF
# grubenv: GRUB's 1024-byte environment block, '#'-padded, as grub2-editenv writes it
grubenv() {
  { printf '# GRUB Environment Block\n'; printf '%s\n' "$@"; } >"$1.head"
  { cat "$1.head"; head -c $((1024 - $(size "$1.head"))) /dev/zero | tr '\0' '#'; } >"$1"
  rm -f "$1.head"
}
( grubenv "$B/grub2/grubenv.tmp" "saved_entry=$MID-$KVER" "kernelopts=$KOPTS" "boot_success=0" &&
  mv "$B/grub2/grubenv.tmp" "$B/grub2/grubenv" )
[ "$(size "$B/grub2/grubenv")" -eq 1024 ] || { echo "grubenv is not 1024 bytes" >&2; exit 1; }
printf '# stand-in for /boot/grub2/grub.cfg (RHEL 8: grubenv + BLS)\nset default="${saved_entry}"\nload_env\nblscfg\n' \
  >"$B/grub2/grub.cfg"
pin "$B"
xfsimg "$B" "$W/boot.fs" $BOOT_SZ "$BOOT_UUID" -d agcount=2

# ESP (FAT16): EFI/redhat/grub.cfg and grubenv
EF="$W/esp.tree"
mkdir -p "$EF/EFI/redhat"
printf '# stand-in for the RHEL 8 UEFI grub.cfg\nset default="${saved_entry}"\nload_env -f ${config_directory}/grubenv\nblscfg\n' \
  >"$EF/EFI/redhat/grub.cfg"
grubenv "$EF/EFI/redhat/grubenv" "saved_entry=$MID-$KVER" "kernelopts=$KOPTS" "boot_success=0"
rm -f "$W/esp.fs"
truncate -s $ESP_SZ "$W/esp.fs"
mkfs.vfat -F 16 -s 1 -i "$ESP_ID" "$W/esp.fs" >/dev/null
mmd -i "$W/esp.fs" ::EFI ::EFI/redhat
mcopy -i "$W/esp.fs" "$EF/EFI/redhat/grub.cfg" ::EFI/redhat/grub.cfg
mcopy -i "$W/esp.fs" "$EF/EFI/redhat/grubenv" ::EFI/redhat/grubenv

gptdisk "$W/os.base" $OS_DISK $OS_GUID "1:$((ESP_OFF / 512)):$(((ESP_OFF + ESP_SZ) / 512 - 1)):EF00:$OP1" \
  "2:$((BOOT_OFF / 512)):$(((BOOT_OFF + BOOT_SZ) / 512 - 1)):8300:$OP2" \
  "3:$((BIOS_OFF / 512)):$(((BIOS_OFF + BIOS_SZ) / 512 - 1)):EF02:$OP3" \
  "4:$((PV_OFF / 512)):$(((PV_OFF + PV_SZ) / 512 - 1)):8E00:$OP4"
sgdisk -c 1:"EFI System Partition" "$W/os.base" >/dev/null
put "$W/os.base" "$W/esp.fs" $ESP_OFF
put "$W/os.base" "$W/boot.fs" $BOOT_OFF
cp --sparse=always "$W/os.base" "$TMP/os.raw"
put "$TMP/os.raw" "$W/os.pv" $PV_OFF
mv "$W/os.base" "$TMP/os.expected.raw"
put "$TMP/os.expected.raw" "$TMP/os.plain.raw" $PV_OFF
# the header inside /boot must be the one next to the manifest: find it with xfs_db and compare
read -r HFSB HCNT < <(xfs_db -r -c 'path /luks/osluksheader' -c bmap "$W/boot.fs" |
  awk '/^data offset 0 startblock/ {print $5, $8}')
[ "$((HCNT * 4096))" -eq 33554432 ] || { echo "osluksheader is not one extent" >&2; exit 1; }
HOFF=$(xfs_db -r -c "convert fsblock $HFSB byte" "$W/boot.fs" | sed 's/.*(\([0-9]*\)).*/\1/')
cmp -s -i "$((BOOT_OFF + HOFF)):0" -n 33554432 "$TMP/os.raw" "$TMP/os.luksheader" ||
  { echo "the header in /boot differs from os.luksheader" >&2; exit 1; }

# --------------------------------------------------------------------------------------- manifest
log "manifest"
guest() { # the ADE-relevant text files of the root filesystem: {path: content}
  local p
  for p in /etc/crypttab /etc/fstab /etc/fstab.azure.backup /etc/fstab.bak /etc/waagent.conf \
    /etc/waagent.conf.rdbak1 /etc/waagent.conf.rdbak2 /etc/lvm/lvm.conf /etc/lvm/devices/system.devices \
    /etc/os-release /etc/default/grub /etc/dracut.conf.d/ade.conf /var/lib/azure_disk_encryption_config/azure_crypt_mount \
    $(for u in "${FSTAB_BACKUPS[@]}"; do echo "/etc/fstab.backup.$u"; done); do
    jq -nc --arg k "$p" --rawfile v "$R$p" '{($k): $v}'
  done | jq -sc 'add'
}
vgjson() { # READBACK VG VGUUID PVJSON LVNAME LVUUID [LVNAME LVUUID]...: a VG from the read-back metadata
  local segs rb=$1 vg=$2 id=$3 pvs=$4 lvs="[]"
  shift 4
  segs=$(vgsegs "$rb" | jq -Rsc '[split("\n")[] | select(length > 0) | split(" ") |
    {lv: .[0], start_extent: (.[1] | tonumber), extent_count: (.[2] | tonumber), pv: .[3], pe: (.[4] | tonumber)}]')
  while [ $# -ge 2 ]; do
    lvs=$(jq -nc --argjson l "$lvs" --arg lv "$1" --arg lvid "$2" --argjson es $((EXT * 512)) --argjson segs "$segs" \
      '$l + [[$segs[] | select(.lv == $lv) | del(.lv)] as $s | {name:$lv, uuid:$lvid, size: ([$s[].extent_count] | add * $es), segments:$s}]')
    shift 2
  done
  jq -nc --arg vg "$vg" --arg id "$id" --argjson es $((EXT * 512)) --argjson pvs "$pvs" --argjson lvs "$lvs" \
    '{vg:$vg, vg_uuid:$id, extent_size:$es, pvs:$pvs, lvs:$lvs}'
}
pvjson() { # NAME UUID DISK DEVICE DEVBYTES PECOUNT
  jq -nc --arg n "$1" --arg u "$2" --arg d "$3" --arg dev "$4" --argjson sz "$5" --argjson pe $((PE_START * 512)) \
    --argjson pc "$6" '{name:$n, uuid:$u, disk:$d, device:$dev, dev_size:$sz, pe_start:$pe, pe_count:$pc}'
}
OS_LVM=$(vgjson "$W/rootvg.vgcfg.readback" rootvg "$OS_VG" \
  "[$(pvjson pv0 "$OS_PV" os /dev/mapper/osencrypt $PV_SZ $OS_PE_COUNT)]" rootlv "$OS_LV")
DATA_LVM=$(vgjson "$W/datavg.vgcfg.readback" datavg "$DATA_VG" \
  "[$(pvjson pv0 "$DATA_PV4" lun4 "/dev/mapper/$M4" $PVB $PVC),$(pvjson pv1 "$DATA_PV5" lun5 "/dev/mapper/$M5" $PVB $PVC)]" \
  datalv "$DATA_LV")
CRYPT_LVM=$(vgjson "$W/lun7vg.vgcfg.readback" lun7vg "$L7_VG" \
  "[$(pvjson pv0 "$L7_PV" lun7 /dev/disk/azure/scsi1/lun7 $DISK $L7PVC)]" crypt-lv "$L7_CLV" plainlv "$L7_PLV")
OSFS=$(jq -sc . <(jq -nc --argjson f "$(filesjson "$EF")" --arg u "$ESP_UUID" --argjson s $ESP_SZ \
  '{name:"esp", type:"vfat", uuid:$u, label:"", partition:1, lv:"", offset:0, size:$s, files:$f}') \
  <(jq -nc --argjson f "$(filesjson "$B")" --arg u "$BOOT_UUID" --argjson s $BOOT_SZ \
    '{name:"boot", type:"xfs", uuid:$u, label:"", partition:2, lv:"", offset:0, size:$s, files:$f}') \
  <(jq -nc --argjson f "$(filesjson "$R")" --arg u "$ROOT_UUID" --argjson s $ROOT_BYTES \
    '{name:"root", type:"xfs", uuid:$u, label:"", partition:4, lv:"rootvg/rootlv", offset:0, size:$s, files:$f}'))
BEKS=$(jq -nc '{"LinuxPassPhraseFileName":"os.key"}
  + ([range(0;7)] | map({("LinuxPassPhraseFileName_1_" + tostring): ("lun" + tostring + ".key")}) | add)')
jq -n --arg version "$VERSION" \
  --argjson partitions "$(partsjson "$TMP/os.raw")" \
  --arg disk_guid "$OS_GUID" --argjson disk_size "$(size "$TMP/os.raw")" \
  --arg part_uuid "$OP4" --arg boot_uuid "$BOOT_UUID" --arg esp_uuid "$ESP_UUID" --arg root_uuid "$ROOT_UUID" \
  --argjson luks "$(luksjson 2 "$OS_LUKS" 512 0 512 argon2id detached /boot/luks/osluksheader os.luksheader "$KEYDIR/os.vk")" \
  --arg plain_sha "$(sha "$TMP/os.plain.raw")" --argjson pvsz $PV_SZ --argjson pvoff $PV_OFF \
  --argjson lvm "$OS_LVM" --argjson fss "$OSFS" --arg kopts "$KOPTS" --arg kver "$KVER" \
  --argjson guest "$(guest)" --argjson disks "$(jq -sc . "${DISKS[@]}")" --argjson datavg "$DATA_LVM" \
  --argjson datalv "$(fsjson xfs "$(fsuuid $LVN)" "" 0 $((LVX * EXT * 512)) "$W/datalv.tree")" \
  --argjson cryptvg "$CRYPT_LVM" --arg plvsha "$PLV_SHA" \
  --argjson plainlv "$(fsjson ext4 "$(fsuuid 71)" "" 0 $((PLVX * EXT * 512)) "$T7P")" \
  --arg lvsha "$LV_SHA" --argjson beks "$BEKS" --arg hdr6 "$HDR6" \
  '{version:$version, generated_by:"testdata/vm/mkvm.sh",
    os:{file:"os.raw", expected:"os.expected.raw", plaintext:"os.plain.raw", plaintext_sha256:$plain_sha,
      key_file:"os.key", bek_name:"LinuxPassPhraseFileName", mapper:"osencrypt", disk_size:$disk_size,
      disk_guid:$disk_guid, partitions:$partitions, esp_partition:1, boot_partition:2, bios_boot_partition:3,
      luks_partition:4, device_offset:$pvoff, device_size:$pvsz, part_uuid:$part_uuid, boot_uuid:$boot_uuid,
      esp_uuid:$esp_uuid, root_uuid:$root_uuid, root_lv:"rootvg/rootlv", kernel_version:$kver, cmdline:$kopts,
      luks:$luks, lvm:$lvm, filesystems:$fss, guest_files:$guest},
    disks:$disks, datavg:$datavg, datalv:($datalv + {name:"datalv", lv:"datavg/datalv", sha256:$lvsha}),
    cryptvg:$cryptvg, plainlv:($plainlv + {name:"plainlv", lv:"lun7vg/plainlv", sha256:$plvsha}),
    bek_files:$beks,
    dual_pass_header:$hdr6}' >"$TMP/manifest.json"

rm -rf "$W"
rm -rf "$OUT"
mv "$TMP" "$OUT"
log "done: $OUT ($(du -sh --apparent-size "$OUT" | cut -f1) apparent, $(du -sh "$OUT" | cut -f1) on disk)"
ls -ls "$OUT" | awk 'NR > 1 {printf "  %8d KiB used  %12d bytes  %s\n", $1, $6, $10}'
