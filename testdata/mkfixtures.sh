#!/usr/bin/env bash
# mkfixtures.sh builds ADE-style (Azure Disk Encryption) LUKS disk images with known plaintext, using only
# the real tools: cryptsetup, sgdisk, mkfs.vfat + mtools, mkfs.xfs -p, lvm2 on a loop device, qemu-img.
#
#   testdata/mkfixtures.sh OUTDIR                      all test fixtures + OUTDIR/manifest.json
#   testdata/mkfixtures.sh --only rhel8-lvm[,x] OUTDIR  just the named fixtures
#   testdata/mkfixtures.sh --bench SIZE_GIB OUTDIR     the large benchmark disks (never built by tests)
#   testdata/mkfixtures.sh --list                      fixture names
#
# Exit status: 0 ok, 2 usage, 3 a required tool/privilege is missing ("missing tool: X" on stderr),
# anything else: a build step failed. The manifest format is documented by internal/fixture.Manifest.
# KEEP_TMP=1 keeps OUTDIR.tmp after a failure for debugging.
# Needs root: loop devices for LVM and cryptsetup's reencryption lock in /run/cryptsetup.
# Device-mapper is NOT needed: encryption is offline `cryptsetup reencrypt`, LVs are never activated.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
export LC_ALL=C
umask 022

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
ALL_FIXTURES=(rhel8-lvm rhel7-luks1 rhel7-luks1-sparse data-luks2-4k luks2-argon2i luks2-argon2id-4k
  luks2-pbkdf2-sha1 luks2-pbkdf2-sha512-attached luks2-two-keyslots luks1-cbc-essiv luks2-xts256
  reencrypt-interrupted)

usage() {
  echo "usage: $0 [--only NAME[,NAME...]] OUTDIR | --bench SIZE_GIB OUTDIR | --list" >&2
  exit 2
}

ONLY="" BENCH="" OUT=""
while (($#)); do
  case $1 in
  --only) ONLY=${2:?}; shift 2 ;;
  --only=*) ONLY=${1#--only=}; shift ;;
  --bench) BENCH=${2:?}; shift 2 ;;
  --bench=*) BENCH=${1#--bench=}; shift ;;
  --list) printf '%s\n' "${ALL_FIXTURES[@]}"; exit 0 ;;
  -h | --help) usage ;;
  -*) usage ;;
  *) [ -z "$OUT" ] || usage; OUT=$1; shift ;;
  esac
done
[ -n "$OUT" ] || usage

SELECTED=()
if [ -n "$BENCH" ]; then
  [[ $BENCH =~ ^[1-9][0-9]*$ ]] || { echo "--bench wants a whole number of GiB" >&2; exit 2; }
elif [ -n "$ONLY" ]; then
  IFS=, read -r -a SELECTED <<<"$ONLY"
  for n in "${SELECTED[@]}"; do
    [[ " ${ALL_FIXTURES[*]} " == *" $n "* ]] || { echo "unknown fixture: $n (see --list)" >&2; exit 2; }
  done
  # rhel7-luks1-sparse is derived from rhel7-luks1.
  if [[ " ${SELECTED[*]} " == *" rhel7-luks1-sparse "* && " ${SELECTED[*]} " != *" rhel7-luks1 "* ]]; then
    SELECTED=(rhel7-luks1 "${SELECTED[@]}")
  fi
else
  SELECTED=("${ALL_FIXTURES[@]}")
fi
want() { [[ " ${SELECTED[*]} " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------------------------- checks
missing() { echo "missing tool: $*" >&2; exit 3; }
for t in cryptsetup sgdisk mkfs.xfs mkfs.vfat mmd mcopy pvcreate vgcreate lvcreate lvextend vgcfgbackup \
  losetup qemu-img openssl sha256sum base64 truncate dd awk stat find; do
  command -v "$t" >/dev/null 2>&1 || missing "$t"
done
[ "$(id -u)" -eq 0 ] || missing "root privileges (loop devices and cryptsetup reencrypt need root)"
if [ -n "$BENCH" ] || want rhel8-lvm; then
  losetup -f >/dev/null 2>&1 || missing "loop devices (losetup -f failed)"
fi

VERSION=$(sha256sum "$SCRIPT" | awk '{print $1}')
T0=$(date +%s%N)
log() { printf '[mkfixtures %6.2fs] %s\n' "$(($(date +%s%N) - T0))e-9" "$*"; }

OUT=$(readlink -m "$OUT")
# OUTDIR is replaced wholesale: refuse to delete a directory that is not a fixture set.
if [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ] && [ ! -f "$OUT/manifest.json" ]; then
  echo "$OUT exists and is not a fixture set (no manifest.json); not replacing it" >&2
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
mkdir -p "$WORK/manifest.d"

# -------------------------------------------------------------------------------------------- helpers
MiB=1048576
# LUKS parameters: ADE's defaults except for the KDF cost, which is made cheap so tests are fast.
ARGON=(--pbkdf-memory 32768 --pbkdf-force-iterations 4)
PBKDF2=(--pbkdf pbkdf2 --pbkdf-force-iterations 1000)
export MTOOLS_SKIP_CHECK=1 LVM_SUPPRESS_FD_WARNINGS=1

# rand SEED SIZE: SIZE deterministic pseudo-random bytes (AES-128-CTR keystream) on stdout.
rand() { head -c "$2" /dev/zero | openssl enc -aes-128-ctr -pass "pass:$1" -nosalt -pbkdf2 -iter 1; }
# keyfile SEED FILE: an ADE-style BEK passphrase file: base64 of 127 bytes, 172 bytes, no newline.
keyfile() {
  rand "$1" 127 | base64 -w0 >"$2"
  [ "$(stat -c %s "$2")" -eq 172 ]
}
# zerofile FILE SIZE: a file of zeros, written the way ADE writes /boot/luks/osluksheader.
zerofile() { dd if=/dev/zero of="$1" bs="$2" count=1 status=none; }
jstr() { local s=${1//\\/\\\\}; s=${s//\"/\\\"}; printf '"%s"' "$s"; }
sha() { sha256sum "$1" | awk '{print $1}'; }
size() { stat -c %s "$1"; }

# grubenv FILE LINE...: a 1024-byte GRUB environment block padded with '#', as grub-editenv writes it.
grubenv() {
  local f=$1; shift
  { printf '# GRUB Environment Block\n'; printf '%s\n' "$@"; } >"$f.tmp"
  { cat "$f.tmp"; head -c $((1024 - $(size "$f.tmp"))) /dev/zero | tr '\0' '#'; } >"$f"
  rm "$f.tmp"
  [ "$(size "$f")" -eq 1024 ]
}

# proto_body DIR: the body of an xfs protofile (mkfs.xfs -p) describing DIR's contents, from one
# pre-order find walk (names contain no blanks).
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
# mkfs.xfs >= 5.19 refuses filesystems < 300 MB unless fstests' variables are all set (TEST_DIR,
# TEST_DEV and QA_CHECK_FS; one alone is not enough). mkfs.xfs 6.1 -p also corrupts the filesystem when a
# file is larger than one allocation group, so callers pick agcount to fit big files (the LUKS header),
# and writes remote symlinks (targets > 336 bytes with 512-byte inodes) that xfs_repair rejects.
mkxfs() {
  local tree=$1 img=$2 sz=$3 uuid=$4 label=$5
  shift 5
  { echo /dev/null; echo "0 0"; echo "d--755 0 0"; proto_body "$tree"; echo '$'; } >"$img.proto"
  rm -f "$img"
  truncate -s "$sz" "$img"
  [ -z "$label" ] || set -- -L "$label" "$@"
  TEST_DIR=/tmp TEST_DEV=/dev/null QA_CHECK_FS=1 mkfs.xfs -q -f -m uuid="$uuid" "$@" -p "$img.proto" "$img"
  rm -f "$img.proto"
}

# files_json TREE: JSON array of the regular files and symlinks in TREE (path, size, sha256 / target).
files_json() {
  local tree=$1
  (cd "$tree" && find . -type f -exec sha256sum {} +) >"$tree.sums"
  find "$tree" -mindepth 1 \( -type f -o -type l \) -printf '%y %s /%P %l\n' | sort -k3,3 |
    awk 'NR == FNR { sub(/^\./, "", $2); sum[$2] = $1; next }
      function q(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); return "\"" s "\"" }
      {
        printf "%s", (n++ ? "," : "[")
        if ($1 == "l") printf "{\"path\":%s,\"type\":\"symlink\",\"target\":%s}", q($3), q($4)
        else printf "{\"path\":%s,\"type\":\"file\",\"size\":%s,\"sha256\":\"%s\"}", q($3), $2, sum[$3]
      }
      END { printf "%s", (n ? "]" : "[]") }' "$tree.sums" -
  rm -f "$tree.sums"
}

# fs_json NAME TYPE UUID LABEL PARTITION LV ENCRYPTED SIZE TREE
fs_json() {
  printf '{"name":%s,"type":%s,"uuid":%s,"label":%s,"partition":%s,"lv":%s,"encrypted":%s,"size":%s,"files":%s}' \
    "$(jstr "$1")" "$(jstr "$2")" "$(jstr "$3")" "$(jstr "$4")" "$5" "$(jstr "$6")" "$7" "$8" "$(files_json "$9")"
}

# mkdisk IMG SIZE_MIB DISK_GUID "NUM:START_MIB:SIZE_MIB:TYPECODE:GUID:NAME"...: a GPT disk image.
mkdisk() {
  local img=$1 mib=$2 guid=$3 spec num start sz code pguid name args=()
  shift 3
  for spec; do
    IFS=: read -r num start sz code pguid name <<<"$spec"
    args+=(-n "$num:$((start * 2048)):$(((start + sz) * 2048 - 1))" -t "$num:$code" -u "$num:$pguid")
    [ -z "$name" ] || args+=(-c "$num:$name")
  done
  rm -f "$img"
  truncate -s $((mib * MiB)) "$img"
  sgdisk -o -U "$guid" "${args[@]}" "$img" >/dev/null # (sgdisk has no -q)
}

# parts_json IMG: the partition table as sgdisk reads it back.
parts_json() {
  local img=$1 sep="" n
  printf '['
  for n in $(sgdisk -p "$img" | awk '/^Number/{t=1; next} t && NF {print $1}'); do
    sgdisk -i "$n" "$img" | awk -v n="$n" -v sep="$sep" '
      /^Partition GUID code:/ {tg=$4}
      /^Partition unique GUID:/ {g=$4}
      /^First sector:/ {fs=$3}
      /^Last sector:/ {ls=$3}
      /^Partition name:/ {sub(/^Partition name: /, ""); nm=$0; gsub(/^'\''|'\''$/, "", nm)}
      END {printf "%s{\"number\":%d,\"start\":%.0f,\"size\":%.0f,\"type_guid\":\"%s\",\"guid\":\"%s\",\"name\":\"%s\"}",
        sep, n, fs*512, (ls-fs+1)*512, tolower(tg), tolower(g), nm}'
    sep=,
  done
  printf ']'
}

# put IMG FILE START_MIB: write FILE into IMG at START_MIB without allocating zero blocks.
put() { dd if="$2" of="$1" bs=1M seek="$3" conv=notrunc,sparse status=none; }

# manifest_entry NAME key=jsonvalue...: one fixture object for manifest.json (values already JSON).
manifest_entry() {
  local name=$1 f sep=""
  shift
  f="$WORK/manifest.d/$(printf '%02d' "$(ls "$WORK/manifest.d" | wc -l)")-$name.json"
  {
    printf '    {"name":%s' "$(jstr "$name")"
    for kv; do printf ',\n     "%s":%s' "${kv%%=*}" "${kv#*=}"; done
    printf '}'
  } >"$f"
}

# luks_fields IMAGE EXPECTED KEYFILES_JSON HEADER PARTITION LUKSVER CIPHER KEYBITS SECTOR KDF PAYLOADOFF MADEBY
#   PLAINTEXT: the manifest fields every fixture has, one key=json per line.
luks_fields() {
  printf '%s\n' "image=$(jstr "$1")" "expected=$(jstr "$2")" "key_files=$3" "header=$(jstr "$4")" \
    "partition=$5" "luks_version=$6" "cipher=$(jstr "$7")" "key_size_bits=$8" "sector_size=$9" \
    "kdf=$(jstr "${10}")" "payload_offset=${11}" "made_by=$(jstr "${12}")" "plaintext=$(jstr "${13}")"
}

LVMCFG() { # the --config for lvm commands on loop device $1: no udev, no dm, no backups, only that device
  printf 'devices{filter=["a|^%s$|","r|.*|"] global_filter=["a|^%s$|","r|.*|"] obtain_device_list_from_udev=0 use_devicesfile=0} activation{udev_sync=0 udev_rules=0 monitoring=0} global{activation=0} backup{backup=0 archive=0}' "$1" "$1"
}

# boot_files DIR KVER SEED: /boot contents common to the OS fixtures (kernel and initramfs are random).
boot_files() {
  local d=$1 kver=$2 seed=$3
  mkdir -p "$d/luks" "$d/grub2" "$d/efi"
  rand "$seed-vmlinuz" $((1 * MiB + 4321)) >"$d/vmlinuz-$kver"
  rand "$seed-initramfs" $((3 * MiB + 1234)) >"$d/initramfs-$kver.img"
  printf '# fixture kernel config for %s\nCONFIG_DM_CRYPT=m\nCONFIG_XFS_FS=m\n' "$kver" >"$d/config-$kver"
  chmod 600 "$d/initramfs-$kver.img"
}

# ======================================================================================== rhel8-lvm
build_rhel8_lvm() {
  local n=rhel8-lvm w="$WORK/rhel8"
  log "$n: ADE RHEL 8 LVM OS disk (ESP, /boot xfs, BIOS boot, LUKS2 detached-header PV rootvg)"
  mkdir -p "$w"
  local DISK_GUID=5e1f2a3b-0008-4c5d-8e9f-0a1b2c3d4e01
  local P1=5e1f2a3b-0008-4c5d-8e9f-0a1b2c3d4e11 P2=5e1f2a3b-0008-4c5d-8e9f-0a1b2c3d4e12
  local P3=5e1f2a3b-0008-4c5d-8e9f-0a1b2c3d4e13 P4=5e1f2a3b-0008-4c5d-8e9f-0a1b2c3d4e14
  local BOOT_UUID=0b7e0c8a-8e21-4d3f-9c55-3f1e2d4c5b01 ESP_ID=4A1B2C3D ESP_UUID=4A1B-2C3D
  local ROOT_UUID=0b7e0c8a-8e21-4d3f-9c55-3f1e2d4c5b02 HOME_UUID=0b7e0c8a-8e21-4d3f-9c55-3f1e2d4c5b03
  local VAR_UUID=0b7e0c8a-8e21-4d3f-9c55-3f1e2d4c5b04 PV_UUID=Fx8rH2-qL4m-Ad9e-Ws3t-Zp6u-Kb1n-Vc7yRt
  local MID=4c1a2b3d5e6f708192a3b4c5d6e7f801 KVER=4.18.0-477.10.1.el8_8.x86_64
  local ADEARGS="rd.luks.ade.partuuid=$P4 rd.luks.ade.bootuuid=$BOOT_UUID rd.debug"
  local KOPTS="root=/dev/mapper/rootvg-rootlv ro crashkernel=auto rd.lvm.lv=rootvg/rootlv console=tty1 console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300 scsi_mod.use_blk_mq=y $ADEARGS"
  keyfile "$n" "$TMP/$n.key"

  # --- root, home and var filesystems (XFS via protofile)
  local r="$w/root"
  mkdir -p "$r"/{etc/default,etc/dracut.conf.d,etc/lvm,usr/bin,usr/share/doc/fixture,boot,home,var,mnt/azure_bek_disk}
  mkdir -p "$r/usr/lib/dracut/modules.d/91adeOnline"
  cat >"$r/etc/fstab" <<EOF

#
# /etc/fstab
# Created by anaconda on Tue May  2 12:00:00 2023
#
/dev/mapper/rootvg-rootlv /                       xfs     defaults        0 0
UUID=$BOOT_UUID /boot                   xfs     defaults        0 0
UUID=$ESP_UUID          /boot/efi               vfat    defaults,uid=0,gid=0,umask=077,shortname=winnt 0 2
/dev/mapper/rootvg-homelv /home                   xfs     defaults        0 0
/dev/mapper/rootvg-varlv  /var                    xfs     defaults        0 0
LABEL=BEK\\040VOLUME /mnt/azure_bek_disk auto defaults,discard,nofail 0 0
EOF
  # ADE writes the crypttab line without a trailing newline (ade-internals 4.1 step 4).
  printf 'osencrypt /dev/disk/by-partuuid/%s /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,discard,header=/boot/luks/osluksheader' \
    "$P4" >"$r/etc/crypttab"
  cat >"$r/etc/default/grub" <<EOF
GRUB_TIMEOUT=10
GRUB_DISTRIBUTOR="\$(sed 's, release .*\$,,g' /etc/system-release)"
GRUB_DEFAULT=saved
GRUB_DISABLE_SUBMENU=true
GRUB_TERMINAL_OUTPUT="console"
GRUB_CMDLINE_LINUX="crashkernel=auto rd.lvm.lv=rootvg/rootlv console=tty1 console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300 scsi_mod.use_blk_mq=y"
GRUB_DISABLE_RECOVERY="true"
GRUB_ENABLE_BLSCFG=true
GRUB_CMDLINE_LINUX+=" $ADEARGS "
EOF
  printf 'add_drivers+=" dm_crypt "\nadd_dracutmodules+=" crypt lvm "\n' >"$r/etc/dracut.conf.d/ade.conf"
  cat >"$r/etc/lvm/lvm.conf" <<EOF
# fixture lvm.conf (abridged)
config {
	checks = 1
}
devices {
	dir = "/dev"
	scan = [ "/dev" ]
}
devices { filter = ["a|osencrypt|", "r|$P4|"] }
EOF
  echo "$MID" >"$r/etc/machine-id"
  printf 'NAME="Red Hat Enterprise Linux"\nVERSION="8.8 (Ootpa)"\nID="rhel"\nVERSION_ID="8.8"\n' >"$r/etc/os-release"
  for f in module-setup.sh parse-crypt-ade.sh crypt-run-generator-ade.sh; do
    printf '#!/bin/sh\n# fixture stand-in for the ADE dracut module file %s (not the real script)\n' "$f" \
      >"$r/usr/lib/dracut/modules.d/91adeOnline/$f"
    chmod 755 "$r/usr/lib/dracut/modules.d/91adeOnline/$f"
  done
  local i sz=0
  for sz in 1 511 4096 4097 65543 1048699 3145728; do rand "$n-blob-$sz" "$sz" >"$r/usr/bin/blob-$sz"; done
  for i in $(seq -w 1 200); do printf 'fixture doc %s\n' "$i" >"$r/usr/share/doc/fixture/file-$i.txt"; done
  ln -s ../boot/grub2/grub.cfg "$r/etc/grub2.cfg"
  ln -s ../boot/efi/EFI/redhat/grub.cfg "$r/etc/grub2-efi.cfg"
  # a long symlink, still inline: mkfs.xfs 6.1 -p writes remote (> 336-byte) symlinks with a bad
  # block header that xfs_repair rejects
  ln -s "/$(printf 'long-target-%03d/' $(seq 1 18))end" "$r/usr/share/doc/fixture/longlink"
  mkxfs "$r" "$w/rootlv.xfs" 48M "$ROOT_UUID" root

  local h="$w/home"
  mkdir -p "$h/azureuser"
  printf '# .bashrc\nexport PATH=$PATH:$HOME/bin\n' >"$h/azureuser/.bashrc"
  rand "$n-home-data" $((2 * MiB + 17)) >"$h/azureuser/data.bin"
  mkxfs "$h" "$w/homelv.xfs" 32M "$HOME_UUID" home

  local v="$w/var"
  mkdir -p "$v/lib/azure_disk_encryption_config/os_encryption_markers" "$v/log"
  printf '[azure_crypt_params]\nvolume_type = OS\nencryption_mode = EncryptAll\n' \
    >"$v/lib/azure_disk_encryption_config/azure_crypt_params.ini"
  : >"$v/lib/azure_disk_encryption_config/os_encryption_markers/PatchBootSystemState"
  rand "$n-var-log" $((512 * 1024 + 3)) >"$v/log/messages"
  mkxfs "$v" "$w/varlv.xfs" 32M "$VAR_UUID" var

  # --- the PV: LVM metadata by the real lvm2 tools on a loop device; LVs never activated
  local pv="$w/pv.raw" PVMIB=120 loop cfg
  truncate -s $((PVMIB * MiB)) "$pv"
  loop=$(losetup -f --show "$pv")
  LOOPS+=("$loop")
  cfg=$(LVMCFG "$loop")
  {
    pvcreate --config "$cfg" -q -y -ff --uuid "$PV_UUID" --norestorefile "$loop"
    vgcreate --config "$cfg" -q -s 4M rootvg "$loop"
    lvcreate --config "$cfg" -q -an -Zn -y -L 32M -n rootlv rootvg
    lvcreate --config "$cfg" -q -an -Zn -y -L 32M -n homelv rootvg
    lvcreate --config "$cfg" -q -an -Zn -y -L 32M -n varlv rootvg
    # a second segment for rootlv after varlv, so the LV is not contiguous on the PV
    lvextend --config "$cfg" -q -L +16M rootvg/rootlv
    vgcfgbackup --config "$cfg" -q -f "$w/rootvg.vgcfg" rootvg
  } 2>&1 | { grep -v -e 'WARNING: Activation disabled' -e 'not zeroed' || true; }
  losetup -d "$loop"
  LOOPS=()
  # read the layout back from LVM's own metadata dump
  awk '
    /logical_volumes \{/ {inlv=1}
    inlv && /^\t\t[A-Za-z0-9_.+-]+ \{$/ {lv=$1}
    /^\t*extent_size =/ {es=$3}
    /^\t*pe_start =/ {ps=$3}
    /^\t*pe_count =/ {pc=$3}
    /start_extent =/ {se=$3}
    /extent_count =/ {ec=$3}
    inlv && /"pv0", [0-9]+/ {gsub(/[",]/, " "); print "SEG", lv, se, ec, $2}
    END {print "VG", es, ps, pc}' "$w/rootvg.vgcfg" >"$w/layout"
  local es ps pc ESB PSB lv se ec pe segs="" lvs="" sep=""
  read -r _ es ps pc < <(grep '^VG' "$w/layout")
  ESB=$((es * 512)) PSB=$((ps * 512))
  for lv in rootlv homelv varlv; do
    segs="" sep=""
    while read -r _ _ se ec pe; do
      dd if="$w/$lv.xfs" of="$pv" bs=1M iflag=skip_bytes,count_bytes oflag=seek_bytes \
        skip=$((se * ESB)) count=$((ec * ESB)) seek=$((PSB + pe * ESB)) conv=notrunc,sparse status=none
      segs+="$sep{\"start_extent\":$se,\"extent_count\":$ec,\"pv\":\"pv0\",\"pe\":$pe}"
      sep=,
    done < <(grep "^SEG $lv " "$w/layout")
    [ -n "$segs" ] || { echo "LV $lv missing from vgcfgbackup" >&2; return 1; }
    lvs+="${lvs:+,}{\"name\":\"$lv\",\"segments\":[$segs]}"
  done
  local lvmjson="{\"vg\":\"rootvg\",\"pv_uuid\":\"$PV_UUID\",\"extent_size\":$ESB,\"pe_start\":$PSB,\"pe_count\":$pc,\"lvs\":[$lvs]}"
  mv "$pv" "$TMP/$n.plain.raw"

  # --- ESP (FAT32): EFI/redhat/grub.cfg + grubenv
  local e="$w/esp" ef="$w/esp.vfat"
  mkdir -p "$e/EFI/redhat" "$e/EFI/BOOT"
  printf '# fixture stand-in for the RHEL 8 UEFI grub.cfg\nset default="${saved_entry}"\nload_env -f ${config_directory}/grubenv\nblscfg\n' \
    >"$e/EFI/redhat/grub.cfg"
  grubenv "$e/EFI/redhat/grubenv" "saved_entry=$MID-$KVER" "kernelopts=$KOPTS" "boot_success=0"
  rand "$n-shim" 65536 >"$e/EFI/redhat/shimx64.efi"
  rand "$n-bootx64" 65536 >"$e/EFI/BOOT/BOOTX64.EFI"
  rm -f "$ef"
  truncate -s 34M "$ef"
  mkfs.vfat -F 32 -s 1 -h 2048 -i "$ESP_ID" "$ef" >/dev/null # -h: the partition starts at sector 2048
  mmd -i "$ef" ::EFI ::EFI/redhat ::EFI/BOOT
  for f in EFI/redhat/grub.cfg EFI/redhat/grubenv EFI/redhat/shimx64.efi EFI/BOOT/BOOTX64.EFI; do
    mcopy -i "$ef" "$e/$f" "::$f"
  done

  # --- BIOS boot partition: random bytes (stands in for grub's core.img)
  rand "$n-biosboot" $((2 * MiB)) >"$w/biosboot.raw"

  # --- assemble: 1 MiB GPT | p1 ESP 34 | p2 boot 96 | p3 BIOS 2 | p4 PV 120 | backup GPT
  # Both images start with the plaintext PV in p4; rhel8-lvm.raw is then encrypted in place.
  local base="$w/base.raw"
  mkdisk "$base" 254 "$DISK_GUID" "1:1:34:EF00:$P1:EFI System Partition" "2:35:96:8300:$P2:" \
    "3:131:2:EF02:$P3:" "4:133:$PVMIB:8E00:$P4:"
  put "$base" "$ef" 1
  put "$base" "$w/biosboot.raw" 131
  put "$base" "$TMP/$n.plain.raw" 133
  cp --sparse=always "$base" "$TMP/$n.raw"
  mv "$base" "$TMP/$n.expected.raw"

  # --- encrypt p4 exactly as ADE's RHEL 8 flow does: in place on the partition's block device (a loop
  # device over p4), detached 32 MiB header made with dd, key file
  zerofile "$w/osluksheader" 33554432
  loop=$(losetup -f --show -o $((133 * MiB)) --sizelimit $((PVMIB * MiB)) "$TMP/$n.raw")
  LOOPS+=("$loop")
  cryptsetup reencrypt --encrypt --type luks2 --header "$w/osluksheader" --key-file "$TMP/$n.key" \
    "${ARGON[@]}" -q "$loop"
  losetup -d "$loop"
  LOOPS=()
  cp --sparse=always "$w/osluksheader" "$TMP/$n.luksheader"

  # --- /boot (xfs): the real header, BLS entry, grubenv, kernel + initramfs stand-ins
  local b="$w/boot"
  mkdir -p "$b/loader/entries"
  boot_files "$b" "$KVER" "$n"
  cp "$w/osluksheader" "$b/luks/osluksheader"
  chmod 700 "$b/luks"
  cat >"$b/loader/entries/$MID-$KVER.conf" <<EOF
title Red Hat Enterprise Linux (${KVER}) 8.8 (Ootpa)
version ${KVER}
linux /vmlinuz-${KVER}
initrd /initramfs-${KVER}.img \$tuned_initrd
options \$kernelopts \$tuned_params
id rhel-20230502120000-${KVER}
grub_users \$grub_users
grub_arg --unrestricted
grub_class kernel
EOF
  grubenv "$b/grub2/grubenv" "saved_entry=$MID-$KVER" "kernelopts=$KOPTS" "boot_success=0"
  printf '# fixture stand-in for /boot/grub2/grub.cfg\nset default="${saved_entry}"\nload_env\nblscfg\n' \
    >"$b/grub2/grub.cfg"
  # agcount=2: 48 MiB AGs so the 32 MiB header fits in one AG (mkfs.xfs -p bug, see mkxfs)
  mkxfs "$b" "$w/boot.xfs" 96M "$BOOT_UUID" boot -d agcount=2

  put "$TMP/$n.raw" "$w/boot.xfs" 35
  put "$TMP/$n.expected.raw" "$w/boot.xfs" 35

  log "$n: VHD wrappers (qemu-img -O vpc, force_size)"
  qemu-img convert -f raw -O vpc -o subformat=fixed,force_size "$TMP/$n.raw" "$TMP/$n.fixed.vhd"
  qemu-img convert -f raw -O vpc -o subformat=dynamic,force_size "$TMP/$n.raw" "$TMP/$n.dynamic.vhd"

  local fss
  fss="[$(fs_json esp vfat "$ESP_UUID" "" 1 "" false $((34 * MiB)) "$e"),$(fs_json boot xfs "$BOOT_UUID" boot 2 "" false $((96 * MiB)) "$b"),$(fs_json rootlv xfs "$ROOT_UUID" root 4 rootvg/rootlv true $((48 * MiB)) "$r"),$(fs_json homelv xfs "$HOME_UUID" home 4 rootvg/homelv true $((32 * MiB)) "$h"),$(fs_json varlv xfs "$VAR_UUID" var 4 rootvg/varlv true $((32 * MiB)) "$v")]"
  mapfile -t F < <(luks_fields "$n.raw" "$n.expected.raw" "[\"$n.key\"]" "$n.luksheader" 4 2 aes-xts-plain64 512 512 argon2id 0 \
    "cryptsetup reencrypt --encrypt --type luks2 --header osluksheader --key-file bek on a loop device over p4 (the ADE RHEL 8 command, with a cheap argon2id)" "$n.plain.raw")
  manifest_entry "$n" "${F[@]}" "vhd_fixed=\"$n.fixed.vhd\"" "vhd_dynamic=\"$n.dynamic.vhd\"" \
    "boot_partition=2" "header_path=\"/luks/osluksheader\"" "part_uuid=\"$P4\"" \
    "disk_size=$(size "$TMP/$n.raw")" "plaintext_sha256=\"$(sha "$TMP/$n.plain.raw")\"" \
    "partitions=$(parts_json "$TMP/$n.raw")" "filesystems=$fss" "lvm=$lvmjson" \
    "notes=$(jstr "RHEL 8 LVM layout (ESP, /boot, BIOS boot, PV). Expected = byte-level decryption of p4 only; ADE boot hooks (crypttab, grubenv kernelopts, ade.conf, lvm.conf filter, 91adeOnline, /boot/luks) are left in place. The VHDs wrap rhel8-lvm.raw with exactly the same virtual size (force_size), so rhel8-lvm.expected.raw applies to them too. vmlinuz/initramfs are random bytes.")"
}

# ====================================================================================== rhel7-luks1
build_rhel7_luks1() {
  local n=rhel7-luks1 w="$WORK/rhel7"
  log "$n: ADE RHEL 7 RAW OS disk (/boot xfs + LUKS1 detached-header xfs root)"
  mkdir -p "$w"
  local DISK_GUID=5e1f2a3b-0007-4c5d-8e9f-0a1b2c3d4e01
  local P1=5e1f2a3b-0007-4c5d-8e9f-0a1b2c3d4e11 P2=5e1f2a3b-0007-4c5d-8e9f-0a1b2c3d4e12
  local BOOT_UUID=7a2c1e90-7d31-4f4a-8b66-4e2f3a5d6c01 ROOT_UUID=7a2c1e90-7d31-4f4a-8b66-4e2f3a5d6c02
  local KVER=3.10.0-1160.el7.x86_64
  local ADEARGS="rd.luks.ade.partuuid=$P2 rd.luks.ade.bootuuid=$BOOT_UUID rd.debug"
  keyfile "$n" "$TMP/$n.key"

  local r="$w/root"
  mkdir -p "$r"/{etc/default,etc/dracut.conf.d,usr/bin,boot,mnt/azure_bek_disk,var/lib/azure_disk_encryption_config}
  mkdir -p "$r/usr/lib/dracut/modules.d/91adeOnline"
  cat >"$r/etc/fstab" <<EOF
UUID=$ROOT_UUID /                       xfs     defaults        0 0
UUID=$BOOT_UUID /boot                   xfs     defaults        0 0
LABEL=BEK\\040VOLUME /mnt/azure_bek_disk auto defaults,discard,nofail 0 0
EOF
  printf 'osencrypt /dev/disk/by-partuuid/%s /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,nofail,header=/boot/luks/osluksheader\n' \
    "$P2" >"$r/etc/crypttab"
  # RHEL 7 path A appends the args twice (ade-internals 4.2)
  cat >"$r/etc/default/grub" <<EOF
GRUB_TIMEOUT=1
GRUB_DISTRIBUTOR="\$(sed 's, release .*\$,,g' /etc/system-release)"
GRUB_DEFAULT=saved
GRUB_DISABLE_SUBMENU=true
GRUB_TERMINAL_OUTPUT="console"
GRUB_CMDLINE_LINUX="console=tty1 console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300 net.ifnames=0"
GRUB_DISABLE_RECOVERY="true"
GRUB_CMDLINE_LINUX+=" $ADEARGS "
GRUB_CMDLINE_LINUX+=" $ADEARGS "
EOF
  printf 'add_drivers+=" dm_crypt "\nadd_dracutmodules+=" crypt"\n' >"$r/etc/dracut.conf.d/ade.conf"
  printf 'NAME="Red Hat Enterprise Linux Server"\nVERSION="7.9 (Maipo)"\nID="rhel"\nVERSION_ID="7.9"\n' >"$r/etc/os-release"
  for f in module-setup.sh parse-crypt-ade.sh crypt-run-generator-ade.sh; do
    printf '#!/bin/sh\n# fixture stand-in for the ADE dracut module file %s (not the real script)\n' "$f" \
      >"$r/usr/lib/dracut/modules.d/91adeOnline/$f"
  done
  printf '[azure_crypt_params]\nvolume_type = OS\n' >"$r/var/lib/azure_disk_encryption_config/azure_crypt_params.ini"
  local sz
  for sz in 100 8192 70000 1500000; do rand "$n-blob-$sz" "$sz" >"$r/usr/bin/blob-$sz"; done
  ln -s ../boot/grub2/grub.cfg "$r/etc/grub2.cfg"
  mkxfs "$r" "$w/root.xfs" 64M "$ROOT_UUID" ""
  cp --sparse=always "$w/root.xfs" "$TMP/$n.plain.raw"

  # RHEL 7 ADE ran `cryptsetup luksFormat --header` (LUKS1, cryptsetup 1.7 defaults: aes-xts-plain64,
  # 256-bit key, pbkdf2-sha256) then dd'd the plaintext through dm-crypt. Without device-mapper:
  # `reencrypt --encrypt --type luks1` needs dm, so encrypt as LUKS2 with LUKS1-compatible parameters
  # and `cryptsetup convert --type luks1` the header (the data is untouched by convert).
  local ct="$w/root.enc"
  cp --sparse=always "$w/root.xfs" "$ct"
  zerofile "$w/osluksheader" 33554432
  cryptsetup reencrypt --encrypt --type luks2 --header "$w/osluksheader" --key-file "$TMP/$n.key" \
    --cipher aes-xts-plain64 --key-size 256 --hash sha256 "${PBKDF2[@]}" -q "$ct"
  cryptsetup convert --type luks1 --header "$w/osluksheader" -q "$ct"
  cp --sparse=always "$w/osluksheader" "$TMP/$n.luksheader"

  local b="$w/boot"
  boot_files "$b" "$KVER" "$n"
  cp "$w/osluksheader" "$b/luks/osluksheader"
  chmod 700 "$b/luks"
  cat >"$b/grub2/grub.cfg" <<EOF
# fixture stand-in for a RHEL 7 grub2-mkconfig output
menuentry 'Red Hat Enterprise Linux Server (${KVER}) 7.9 (Maipo)' --class red --class gnu-linux --class gnu --class os {
	load_video
	insmod xfs
	search --no-floppy --fs-uuid --set=root $BOOT_UUID
	linux16 /vmlinuz-${KVER} root=UUID=$ROOT_UUID ro console=tty1 console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300 net.ifnames=0 $ADEARGS $ADEARGS
	initrd16 /initramfs-${KVER}.img
}
EOF
  grubenv "$b/grub2/grubenv" "saved_entry=Red Hat Enterprise Linux Server (${KVER}) 7.9 (Maipo)"
  mkxfs "$b" "$w/boot.xfs" 80M "$BOOT_UUID" "" -d agcount=2

  # RAW layout; Azure RAW images use type 0700 (Microsoft basic data) for both partitions
  local base="$w/base.raw"
  mkdisk "$base" 146 "$DISK_GUID" "1:1:80:0700:$P1:" "2:81:64:0700:$P2:"
  put "$base" "$w/boot.xfs" 1
  cp --sparse=always "$base" "$TMP/$n.raw"
  put "$TMP/$n.raw" "$ct" 81
  cp --sparse=always "$base" "$TMP/$n.expected.raw"
  put "$TMP/$n.expected.raw" "$TMP/$n.plain.raw" 81

  local fss="[$(fs_json boot xfs "$BOOT_UUID" "" 1 "" false $((80 * MiB)) "$b"),$(fs_json root xfs "$ROOT_UUID" "" 2 "" true $((64 * MiB)) "$r")]"
  R7_FSS=$fss R7_P2=$P2
  mapfile -t F < <(luks_fields "$n.raw" "$n.expected.raw" "[\"$n.key\"]" "$n.luksheader" 2 1 aes-xts-plain64 256 512 pbkdf2-sha256 0 \
    "cryptsetup reencrypt --encrypt --type luks2 --header (pbkdf2-sha256, aes-xts-plain64 256-bit) then cryptsetup convert --type luks1 --header; reencrypt --type luks1 needs device-mapper" "$n.plain.raw")
  manifest_entry "$n" "${F[@]}" "vhd_fixed=\"\"" "vhd_dynamic=\"\"" "boot_partition=1" \
    "header_path=\"/luks/osluksheader\"" "part_uuid=\"$P2\"" "disk_size=$(size "$TMP/$n.raw")" \
    "plaintext_sha256=\"$(sha "$TMP/$n.plain.raw")\"" "partitions=$(parts_json "$TMP/$n.raw")" "filesystems=$fss" \
    "notes=$(jstr "RHEL 7 RAW layout, both partitions type 0700. LUKS1 detached header (payload offset 0), key material at sector 8. Every ciphertext sector is real ciphertext (dense).")"
}

build_rhel7_luks1_sparse() {
  local n=rhel7-luks1-sparse src=rhel7-luks1 w="$WORK/rhel7"
  log "$n: $src with all-zero ciphertext where a 64 KiB plaintext block is zero (RHEL 7 dd conv=sparse)"
  cp "$w/root.enc" "$w/ciphertext.sparse"
  cp "$TMP/$src.plain.raw" "$w/plain.dig"
  fallocate --dig-holes "$w/plain.dig" 2>/dev/null || true # finer zero detection when the fs allows it
  local start len zero a z nblk=0
  while read -r start len zero; do
    [ "$zero" = true ] || continue
    a=$(((start + 65535) / 65536)) z=$(((start + len) / 65536))
    if ((z > a)); then
      dd if=/dev/zero of="$w/ciphertext.sparse" bs=64K seek=$a count=$((z - a)) conv=notrunc status=none
      nblk=$((nblk + z - a))
    fi
  done < <(qemu-img map -f raw --output=json "$w/plain.dig" |
    sed -n 's/.*"start": \([0-9]*\), "length": \([0-9]*\),.*"zero": \([a-z]*\),.*/\1 \2 \3/p')
  ((nblk > 0)) || { echo "$n: no zero blocks found" >&2; return 1; }
  cp --sparse=always "$w/base.raw" "$TMP/$n.raw"
  put "$TMP/$n.raw" "$w/ciphertext.sparse" 81
  mapfile -t F < <(luks_fields "$n.raw" "$src.expected.raw" "[\"$src.key\"]" "$src.luksheader" 2 1 aes-xts-plain64 256 512 pbkdf2-sha256 0 \
    "$src ciphertext with 64 KiB blocks zeroed where the plaintext block is all zero (dd conv=sparse emulation)" "$src.plain.raw")
  manifest_entry "$n" "${F[@]}" "vhd_fixed=\"\"" "vhd_dynamic=\"\"" "boot_partition=1" \
    "header_path=\"/luks/osluksheader\"" "part_uuid=\"$R7_P2\"" "disk_size=$(size "$TMP/$n.raw")" \
    "plaintext_sha256=\"$(sha "$TMP/$src.plain.raw")\"" "partitions=$(parts_json "$TMP/$n.raw")" \
    "filesystems=$R7_FSS" "sparse_block=65536" \
    "notes=$(jstr "ADE RHEL 7 copied with dd conv=sparse bs=64K: $nblk all-zero 64 KiB plaintext blocks were never written, so their ciphertext is zero. The expected image assumes zero ciphertext sectors decode to zero plaintext; a plain decryption turns them into pseudo-random bytes.")"
}

# ==================================================================================== data-luks2-4k
build_data_4k() {
  local n=data-luks2-4k w="$WORK/data4k"
  log "$n: attached-header LUKS2 data disk, 4096-byte sectors, in-place encrypt with --reduce-device-size 32M"
  mkdir -p "$w/tree/data"
  local DISK_GUID=5e1f2a3b-0004-4c5d-8e9f-0a1b2c3d4e01 P1=5e1f2a3b-0004-4c5d-8e9f-0a1b2c3d4e11
  local FS_UUID=3c4d5e6f-0004-4a1b-9c2d-1e2f3a4b5c01
  keyfile "$n" "$TMP/$n.key"
  local sz
  for sz in 4096 123457 2097152; do rand "$n-blob-$sz" "$sz" >"$w/tree/data/blob-$sz"; done
  printf 'data disk fixture\n' >"$w/tree/README"
  mkxfs "$w/tree" "$w/fs.xfs" 32M "$FS_UUID" data -s size=4096
  # The device is the 32 MiB filesystem plus 32 MiB that cryptsetup may use (reduce-device-size).
  cp --sparse=always "$w/fs.xfs" "$w/part.raw"
  truncate -s 64M "$w/part.raw"
  cryptsetup reencrypt --encrypt --type luks2 --sector-size 4096 --reduce-device-size 32M \
    --key-file "$TMP/$n.key" "${ARGON[@]}" -q "$w/part.raw"
  local off
  off=$(cryptsetup luksDump "$w/part.raw" | awk '/^Data segments:/{s=1} s && /offset:/ {print $2; exit}')
  # cryptsetup re-encrypts (device size - reduce) = 32 MiB of data to [off, off + 32 MiB). The segment is
  # "dynamic" (to the device end), and the 16 MiB behind the moved data decrypt to garbage; cut the
  # partition at the end of the moved data so the whole segment is known plaintext.
  ((off == 16 * MiB)) || { echo "$n: unexpected data offset $off" >&2; return 1; }
  truncate -s $((off + 32 * MiB)) "$w/part.raw"
  # expected partition content: the payload moved to the partition start, zeros to the partition end
  cp --sparse=always "$w/fs.xfs" "$TMP/$n.plain.raw"
  truncate -s $((off + 32 * MiB)) "$TMP/$n.plain.raw"
  local base="$w/base.raw"
  mkdisk "$base" 50 "$DISK_GUID" "1:1:48:8300:$P1:"
  cp --sparse=always "$base" "$TMP/$n.raw"
  put "$TMP/$n.raw" "$w/part.raw" 1
  cp --sparse=always "$base" "$TMP/$n.expected.raw"
  put "$TMP/$n.expected.raw" "$TMP/$n.plain.raw" 1
  local fss="[$(fs_json data xfs "$FS_UUID" data 1 "" true $((32 * MiB)) "$w/tree")]"
  mapfile -t F < <(luks_fields "$n.raw" "$n.expected.raw" "[\"$n.key\"]" "" 1 2 aes-xts-plain64 512 4096 argon2id "$off" \
    "cryptsetup reencrypt --encrypt --type luks2 --sector-size 4096 --reduce-device-size 32M (attached header); partition cut to data offset + 32 MiB" "$n.plain.raw")
  manifest_entry "$n" "${F[@]}" "vhd_fixed=\"\"" "vhd_dynamic=\"\"" "part_uuid=\"$P1\"" \
    "disk_size=$(size "$TMP/$n.raw")" "plaintext_sha256=\"$(sha "$TMP/$n.plain.raw")\"" \
    "partitions=$(parts_json "$TMP/$n.raw")" "filesystems=$fss" \
    "notes=$(jstr "Attached header; segment at $off, size dynamic (to partition end). Plaintext/expected partition = the 32 MiB XFS (4096-byte sectors) at the partition start followed by zeros. IV = byte offset in segment / 512 (steps by 8 per 4 KiB sector).")"
}

# ======================================================================================= small variants
# variant NAME MODE(detached|attached) SECTOR LUKS(1|2) CIPHER KEYBITS KDFLABEL MADEBY NOTES -- cryptsetup args
build_variant() {
  local n=$1 mode=$2 sector=$3 luksver=$4 cipher=$5 keybits=$6 kdf=$7 madeby=$8 notes=$9
  shift 9
  [ "$1" = -- ] && shift
  local w="$WORK/$n" hdr="" off=0
  log "$n: $notes"
  mkdir -p "$w"
  local id
  id=$(printf '%s' "$n" | sha256sum | cut -c1-12)
  local DISK_GUID="5e1f2a3b-00aa-4c5d-8e9f-$id" P1="5e1f2a3b-00bb-4c5d-8e9f-$id"
  keyfile "$n" "$TMP/$n.key"
  # plaintext: 6 MiB of seeded random data then 2 MiB of zeros
  rand "$n-plain" $((6 * MiB)) >"$w/plain"
  truncate -s $((8 * MiB)) "$w/plain"
  cp --sparse=always "$w/plain" "$w/part.raw"
  if [ "$mode" = detached ]; then
    # a 4 MiB header file (ADE's is 32 MiB; the OS fixtures have that) keeps the fixture small
    zerofile "$w/hdr" $((4 * MiB))
    cryptsetup reencrypt --encrypt --type luks2 --header "$w/hdr" --luks2-metadata-size 16k \
      --luks2-keyslots-size 2m --key-file "$TMP/$n.key" "$@" -q "$w/part.raw"
    hdr="$n.luksheader"
  else
    # small LUKS2 metadata so the data offset is 2 MiB (= reduce-device-size / 2)
    truncate -s $((12 * MiB)) "$w/part.raw"
    cryptsetup reencrypt --encrypt --type luks2 --luks2-metadata-size 16k --luks2-keyslots-size 1m \
      --reduce-device-size 4M --key-file "$TMP/$n.key" "$@" -q "$w/part.raw" 2>&1 |
      { grep -v 'keyslots area .* is very small' || true; }
    off=$((2 * MiB))
    truncate -s $((off + 8 * MiB)) "$w/part.raw"
  fi
  local dev="$w/part.raw"
  [ "$mode" = detached ] && dev="$w/hdr"
  if [ "$luksver" = 1 ]; then
    if [ "$mode" = detached ]; then
      cryptsetup convert --type luks1 --header "$w/hdr" -q "$w/part.raw"
    else
      cryptsetup convert --type luks1 -q "$w/part.raw"
    fi
  fi
  if [ -n "${VARIANT_ADDKEY:-}" ]; then
    keyfile "$n-2" "$TMP/$n.key2"
    if [ "$mode" = detached ]; then
      cryptsetup luksAddKey --header "$w/hdr" --key-file "$TMP/$n.key" "${PBKDF2[@]}" --hash sha256 -q "$w/part.raw" "$TMP/$n.key2"
    else
      cryptsetup luksAddKey --key-file "$TMP/$n.key" "${PBKDF2[@]}" --hash sha256 -q "$w/part.raw" "$TMP/$n.key2"
    fi
  fi
  # read the data offset back from the header
  local dumpoff
  if [ "$luksver" = 1 ]; then
    dumpoff=$(($(cryptsetup luksDump "$dev" | awk '/^Payload offset:/ {print $3}') * 512))
  else
    dumpoff=$(cryptsetup luksDump "$dev" | awk '/^Data segments:/{s=1} s && /offset:/ {print $2; exit}')
  fi
  ((dumpoff == off)) || { echo "$n: data offset $dumpoff, want $off" >&2; return 1; }
  [ -z "$hdr" ] || cp --sparse=always "$w/hdr" "$TMP/$hdr"
  cp --sparse=always "$w/plain" "$TMP/$n.plain.raw"
  truncate -s "$(size "$w/part.raw")" "$TMP/$n.plain.raw"
  local mib=$(($(size "$w/part.raw") / MiB))
  local base="$w/base.raw"
  mkdisk "$base" $((mib + 2)) "$DISK_GUID" "1:1:$mib:8300:$P1:"
  cp --sparse=always "$base" "$TMP/$n.raw"
  put "$TMP/$n.raw" "$w/part.raw" 1
  local expected="$n.expected.raw" keys="[\"$n.key\"]" extra=()
  [ -z "${VARIANT_ADDKEY:-}" ] || keys="[\"$n.key\",\"$n.key2\"]"
  if [ -n "${VARIANT_REFUSE:-}" ]; then
    expected=""
    extra+=("refuse=true")
  else
    cp --sparse=always "$base" "$TMP/$n.expected.raw"
    put "$TMP/$n.expected.raw" "$TMP/$n.plain.raw" 1
  fi
  mapfile -t F < <(luks_fields "$n.raw" "$expected" "$keys" "$hdr" 1 "$luksver" "$cipher" "$keybits" "$sector" "$kdf" "$off" "$madeby" "$n.plain.raw")
  manifest_entry "$n" "${F[@]}" "vhd_fixed=\"\"" "vhd_dynamic=\"\"" "part_uuid=\"$P1\"" \
    "disk_size=$(size "$TMP/$n.raw")" "plaintext_sha256=\"$(sha "$TMP/$n.plain.raw")\"" \
    "partitions=$(parts_json "$TMP/$n.raw")" "filesystems=[]" "${extra[@]}" "notes=$(jstr "$notes")"
}

RE="cryptsetup reencrypt --encrypt --type luks2"
build_variants() {
  want luks2-argon2i && build_variant luks2-argon2i detached 512 2 aes-xts-plain64 512 argon2i \
    "$RE --header (--pbkdf argon2i)" "LUKS2 detached header, argon2i keyslot (cryptsetup <= 2.3 default), 8 MiB random+zero plaintext" \
    -- --pbkdf argon2i "${ARGON[@]}"
  want luks2-argon2id-4k && build_variant luks2-argon2id-4k detached 4096 2 aes-xts-plain64 512 argon2id \
    "$RE --header --sector-size 4096" "LUKS2 detached header with 4096-byte sectors, argon2id" \
    -- --sector-size 4096 "${ARGON[@]}"
  want luks2-pbkdf2-sha1 && build_variant luks2-pbkdf2-sha1 detached 512 2 aes-xts-plain64 512 pbkdf2-sha1 \
    "$RE --header --pbkdf pbkdf2 --hash sha1" "LUKS2 detached header, pbkdf2-sha1 keyslot (AF hash sha1)" \
    -- "${PBKDF2[@]}" --hash sha1
  want luks2-pbkdf2-sha512-attached && build_variant luks2-pbkdf2-sha512-attached attached 512 2 aes-xts-plain64 512 pbkdf2-sha512 \
    "$RE --reduce-device-size 4M --luks2-metadata-size 16k --luks2-keyslots-size 1m --pbkdf pbkdf2 --hash sha512; partition cut to offset + 8 MiB" \
    "LUKS2 attached header at a 2 MiB data offset, pbkdf2-sha512; expected partition = payload then zeros" \
    -- "${PBKDF2[@]}" --hash sha512
  want luks2-two-keyslots && VARIANT_ADDKEY=1 build_variant luks2-two-keyslots detached 512 2 aes-xts-plain64 512 argon2id,pbkdf2-sha256 \
    "$RE --header (argon2id slot 0), then cryptsetup luksAddKey --header (pbkdf2-sha256 slot 1)" \
    "LUKS2 detached header with two keyslots (mid key-rotation state): key_files[0] opens slot 0, key_files[1] opens slot 1" \
    -- "${ARGON[@]}"
  want luks1-cbc-essiv && build_variant luks1-cbc-essiv attached 512 1 aes-cbc-essiv:sha256 256 pbkdf2-sha256 \
    "$RE --cipher aes-cbc-essiv:sha256 --key-size 256 --reduce-device-size 4M (pbkdf2) then cryptsetup convert --type luks1; qemu-img -O luks is unusable here (its PBKDF benchmark fails: Unable to get accurate CPU usage)" \
    "LUKS1 attached header, aes-cbc-essiv:sha256 with a 256-bit key, payload offset 4096 sectors" \
    -- --cipher aes-cbc-essiv:sha256 --key-size 256 --hash sha256 "${PBKDF2[@]}"
  want luks2-xts256 && build_variant luks2-xts256 detached 512 2 aes-xts-plain64 256 argon2id \
    "$RE --header --key-size 256" "LUKS2 detached header with a 256-bit xts key (AES-128-XTS)" \
    -- --key-size 256 "${ARGON[@]}"
  want reencrypt-interrupted && VARIANT_REFUSE=1 build_variant reencrypt-interrupted detached 512 2 aes-xts-plain64 512 argon2id \
    "$RE --init-only --header (ADE RHEL 8 state before the resume)" \
    "Interrupted online encryption: online-reencrypt-v2 requirement, linear+crypt segments, a reencrypt keyslot; the data is still plaintext. A converter must refuse it." \
    -- --init-only "${ARGON[@]}"
  return 0
}

# ============================================================================================= bench
build_bench() {
  local g=$BENCH n="bench-${BENCH}g" w="$WORK/bench" bytes=$((BENCH * 1024 * MiB))
  mkdir -p "$w"
  log "$n: ${g} GiB partition of AES-CTR keystream, LUKS2 detached header (ADE parameters)"
  keyfile "$n" "$TMP/$n.key"
  local DISK_GUID=5e1f2a3b-00be-4c5d-8e9f-0a1b2c3d4e01 P1=5e1f2a3b-00be-4c5d-8e9f-0a1b2c3d4e11
  local mib=$((BENCH * 1024 + 2))
  mkdisk "$TMP/$n.raw" "$mib" "$DISK_GUID" "1:1:$((BENCH * 1024)):8E00:$P1:"
  rand "$n-plain" "$bytes" | dd of="$TMP/$n.raw" bs=1M seek=1 conv=notrunc iflag=fullblock status=none
  local sum
  sum=$(rand "$n-plain" "$bytes" | sha256sum | awk '{print $1}')
  local loop
  loop=$(losetup -f --show -o "$MiB" --sizelimit "$bytes" "$TMP/$n.raw")
  LOOPS+=("$loop")
  zerofile "$w/osluksheader" 33554432
  log "$n: cryptsetup reencrypt --encrypt on $loop"
  cryptsetup reencrypt --encrypt --type luks2 --header "$w/osluksheader" --key-file "$TMP/$n.key" "${ARGON[@]}" -q "$loop"
  losetup -d "$loop"
  LOOPS=()
  cp --sparse=always "$w/osluksheader" "$TMP/$n.luksheader"
  mapfile -t F < <(luks_fields "$n.raw" "" "[\"$n.key\"]" "$n.luksheader" 1 2 aes-xts-plain64 512 512 argon2id 0 \
    "cryptsetup reencrypt --encrypt --type luks2 --header on a loop device over partition 1" "")
  manifest_entry "$n" "${F[@]}" "vhd_fixed=\"\"" "vhd_dynamic=\"\"" "part_uuid=\"$P1\"" "disk_size=$(size "$TMP/$n.raw")" \
    "plaintext_sha256=\"$sum\"" "partitions=$(parts_json "$TMP/$n.raw")" "filesystems=[]" \
    "notes=$(jstr "Plaintext (not stored) = head -c $bytes /dev/zero | openssl enc -aes-128-ctr -pass pass:$n-plain -nosalt -pbkdf2 -iter 1")"

  local m="$n-luks1"
  log "$m: the same plaintext as a bare LUKS1 attached-header image (for qemu-img convert comparisons)"
  keyfile "$m" "$TMP/$m.key"
  rand "$n-plain" "$bytes" | dd of="$TMP/$m.raw" bs=1M iflag=fullblock status=none
  truncate -s $((bytes + 4 * MiB)) "$TMP/$m.raw"
  cryptsetup reencrypt --encrypt --type luks2 --luks2-metadata-size 16k --luks2-keyslots-size 1m \
    --reduce-device-size 4M --key-file "$TMP/$m.key" --hash sha256 "${PBKDF2[@]}" -q "$TMP/$m.raw" 2>&1 |
    { grep -v 'keyslots area .* is very small' || true; }
  cryptsetup convert --type luks1 -q "$TMP/$m.raw"
  truncate -s $((bytes + 2 * MiB)) "$TMP/$m.raw"
  mapfile -t F < <(luks_fields "$m.raw" "" "[\"$m.key\"]" "" 0 1 aes-xts-plain64 512 512 pbkdf2-sha256 $((2 * MiB)) \
    "cryptsetup reencrypt --encrypt --type luks2 --reduce-device-size 4M (pbkdf2) then cryptsetup convert --type luks1" "")
  manifest_entry "$m" "${F[@]}" "vhd_fixed=\"\"" "vhd_dynamic=\"\"" "disk_size=$(size "$TMP/$m.raw")" \
    "plaintext_sha256=\"$sum\"" "partitions=[]" "filesystems=[]" \
    "notes=$(jstr "No partition table (partition 0): the file is the LUKS1 device; payload = the $n plaintext. qemu-img reads it: qemu-img convert --object secret,id=s,file=$m.key --image-opts driver=luks,key-secret=s,file.filename=$m.raw -O raw out")"
}

# ============================================================================================== main
if [ -n "$BENCH" ]; then
  build_bench
else
  want rhel8-lvm && build_rhel8_lvm
  want rhel7-luks1 && build_rhel7_luks1
  want rhel7-luks1-sparse && build_rhel7_luks1_sparse
  want data-luks2-4k && build_data_4k
  build_variants
fi

{
  printf '{"version":"%s",\n "generated_by":"testdata/mkfixtures.sh",\n "fixtures":[\n' "$VERSION"
  sep=""
  for f in "$WORK"/manifest.d/*.json; do
    printf '%s' "$sep"
    cat "$f"
    sep=$',\n'
  done
  printf '\n ]}\n'
} >"$TMP/manifest.json"
rm -rf "$WORK"
rm -rf "$OUT"
mv "$TMP" "$OUT"
log "done: $OUT ($(du -sh --apparent-size "$OUT" | cut -f1) apparent, $(du -sh "$OUT" | cut -f1) on disk)"
ls -ls "$OUT" | awk 'NR>1 {printf "  %8d KiB used  %12d bytes  %s\n", $1, $6, $10}'
