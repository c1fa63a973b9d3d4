#!/usr/bin/env bash
# mkfixtures.sh builds ADE-style (Azure Disk Encryption) LUKS disk images with known plaintext, using only
# the real tools: cryptsetup, sgdisk, mkfs.vfat + mtools, mkfs.xfs -p, lvm2 on a loop device, qemu-img.
#
#   testdata/mkfixtures.sh OUTDIR                      all test fixtures + OUTDIR/manifest.json
#   testdata/mkfixtures.sh --only rhel8-lvm[,x] OUTDIR  just the named fixtures
#   testdata/mkfixtures.sh --bench SIZE_GIB OUTDIR     the large benchmark disks (never built by tests)
#   testdata/mkfixtures.sh --example OUTDIR            the committed example disk (testdata/example/, see
#                                                      build_example; `make example-image`; never built by tests)
#   testdata/mkfixtures.sh --list                      fixture names
#
# Exit status: 0 ok, 2 usage, 3 a required tool/privilege is missing ("missing tool: X" on stderr),
# anything else: a build step failed. The manifest format is documented by internal/fixture.Manifest.
# --example writes its files into OUTDIR (kept, not replaced wholesale) and no manifest.
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
  echo "usage: $0 [--only NAME[,NAME...]] OUTDIR | --bench SIZE_GIB OUTDIR | --example OUTDIR | --list" >&2
  exit 2
}

ONLY="" BENCH="" EXAMPLE="" OUT=""
while (($#)); do
  case $1 in
  --only) ONLY=${2:?}; shift 2 ;;
  --only=*) ONLY=${1#--only=}; shift ;;
  --bench) BENCH=${2:?}; shift 2 ;;
  --bench=*) BENCH=${1#--bench=}; shift ;;
  --example) EXAMPLE=1; shift ;;
  --list) printf '%s\n' "${ALL_FIXTURES[@]}"; exit 0 ;;
  -h | --help) usage ;;
  -*) usage ;;
  *) [ -z "$OUT" ] || usage; OUT=$1; shift ;;
  esac
done
[ -n "$OUT" ] || usage

SELECTED=()
[ -z "$EXAMPLE" ] || [ -z "$BENCH$ONLY" ] || usage
if [ -n "$EXAMPLE" ]; then
  :
elif [ -n "$BENCH" ]; then
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
if [ -n "$EXAMPLE" ]; then
  for t in zstd xfs_db xfs_repair od; do command -v "$t" >/dev/null 2>&1 || missing "$t"; done
fi
if [ -n "$BENCH$EXAMPLE" ] || want rhel8-lvm; then
  losetup -f >/dev/null 2>&1 || missing "loop devices (losetup -f failed)"
fi

VERSION=$(sha256sum "$SCRIPT" | awk '{print $1}')
T0=$(date +%s%N)
log() { printf '[mkfixtures %6.2fs] %s\n' "$(($(date +%s%N) - T0))e-9" "$*"; }

OUT=$(readlink -m "$OUT")
# OUTDIR is replaced wholesale (except with --example): refuse to delete a directory that is not a
# fixture set.
if [ -z "$EXAMPLE" ] && [ -d "$OUT" ] && [ -n "$(ls -A "$OUT")" ] && [ ! -f "$OUT/manifest.json" ]; then
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
# SIZE_MIB may instead be a number of 512-byte sectors with an "s" suffix (e.g. 49280s).
mkdisk() {
  local img=$1 mib=$2 guid=$3 spec num start sz code pguid name last args=()
  shift 3
  for spec; do
    IFS=: read -r num start sz code pguid name <<<"$spec"
    if [[ $sz == *s ]]; then last=$((start * 2048 + ${sz%s} - 1)); else last=$(((start + sz) * 2048 - 1)); fi
    args+=(-n "$num:$((start * 2048)):$last" -t "$num:$code" -u "$num:$pguid")
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

# ============================================================================================ example
# The committed example disk (--example OUTDIR; `make example-image` writes testdata/example/). Not in
# ALL_FIXTURES: tests never build it, they read the committed copy. An ADE RHEL 8.10 LVM OS disk as small
# as the tools allow, for the runnable documentation examples: GPT | p1 /boot xfs (osluksheader, grubenv,
# a BLS entry) | p2 encrypted by ADE's command (detached LUKS2 header on /boot, data at offset 0) over a PV
# of rootvg with rootlv (xfs) and free extents. Every UUID/GUID the tools let us choose is fixed here.
# The ciphertext where the plaintext is zero and unused (free LVM extents, xfs free space, the xfs log
# past its unmount record) is then zeroed, as discards through dm-crypt leave it (crypttab has `discard`),
# so the image compresses to the keyslot's key material plus the blocks in use. OUTDIR gets rhel8-ade.raw.zst,
# bek, plain.sha256, image.sha256 and README.md (generated by example_readme from what the tools read back).
EX_NAME=rhel8-ade
build_example() {
  local n=$EX_NAME w="$WORK/example"
  log "example: tiny ADE RHEL 8 LVM OS disk (/boot xfs, LUKS2 detached-header PV rootvg/rootlv)"
  mkdir -p "$w"
  EX_DISK_GUID=ade08e8a-0d15-4e8a-8e8a-000000000000
  EX_P1=ade08e8a-0001-4e8a-8e8a-000000000001 EX_P2=ade08e8a-0002-4e8a-8e8a-000000000002
  EX_BOOT_UUID=ade08e8a-b007-4e8a-8e8a-000000000001 EX_ROOT_UUID=ade08e8a-2007-4e8a-8e8a-000000000002
  EX_LUKS_UUID=ade08e8a-1005-4e8a-8e8a-000000000002
  EX_PV_UUID=ExAmPl-PV00-RHEL-8ADE-0000-0000-000001 EX_VG_UUID=ExAmPl-VG00-RHEL-8ADE-0000-0000-000002
  EX_LV_UUID=ExAmPl-LV00-RHEL-8ADE-0000-0000-000003
  EX_MID=ade08e8a00004e8a8e8a000000000008 EX_KVER=4.18.0-553.el8_10.x86_64
  # Geometry in 512-byte sectors. Both XFS filesystems have 2 AGs of 16 MiB, mkfs.xfs's minimum AG (with a
  # single AG xfs_repair -n wants -o force_geometry): /boot is 32 MiB at 1 MiB. The PV follows and is exactly
  # pe_start + its extents: whatever is not a free extent or xfs free space is decrypted, so a tail behind
  # the last extent, or RHEL's 1 MiB pe_start, would be incompressible ciphertext. 4 MiB extents (RHEL's
  # default): rootlv 8 (32 MiB), 2 free. The disk ends one MiB-rounded backup GPT later.
  EX_BOOT_MIB=32 EX_PE_START=128 EX_EXTENT=8192 EX_PE_COUNT=10 EX_LV_EXTENTS=8
  EX_P2_START=$(((1 + EX_BOOT_MIB) * 2048)) EX_P2_SECTORS=$((EX_PE_START + EX_PE_COUNT * EX_EXTENT))
  EX_DISK_MIB=$((1 + EX_BOOT_MIB + (EX_P2_SECTORS + 33 + 2047) / 2048))
  # LUKS2 metadata as small as cryptsetup takes: 16 KiB per JSON area; 256 KiB of keyslots (252 KiB holds the
  # 512-bit key's 4000 AF stripes, and reencrypt needs 4 KiB more for its temporary keyslot, or it fails with
  # "No space for new keyslot"); a cheap argon2id (32 KiB, 4 passes, 1 thread) so unlocking takes milliseconds.
  EX_HDR_BYTES=$((2 * 16384 + 262144))
  EX_LUKSARGS=(--luks2-metadata-size 16k --luks2-keyslots-size 256k --uuid "$EX_LUKS_UUID"
    --pbkdf argon2id --pbkdf-memory 32 --pbkdf-force-iterations 4 --pbkdf-parallel 1)
  local ADEARGS="rd.luks.ade.partuuid=$EX_P2 rd.luks.ade.bootuuid=$EX_BOOT_UUID rd.debug"
  local CMDLINE="crashkernel=auto rd.lvm.lv=rootvg/rootlv console=tty1 console=ttyS0,115200n8 earlyprintk=ttyS0,115200 rootdelay=300"
  EX_KOPTS="root=/dev/mapper/rootvg-rootlv ro $CMDLINE $ADEARGS"
  # the BEK: a fixed test key (seeded AES-CTR keystream, base64, 172 bytes, no newline)
  keyfile luksconv-example-bek "$TMP/bek"

  # --- rootlv: the root filesystem (xfs via protofile)
  local r="$w/root"
  mkdir -p "$r"/{etc/default,etc/dracut.conf.d,etc/lvm,boot,mnt/azure_bek_disk}
  cat >"$r/etc/fstab" <<EOF

#
# /etc/fstab
# Created by anaconda on Thu May  2 12:00:00 2024
#
/dev/mapper/rootvg-rootlv /                       xfs     defaults        0 0
UUID=$EX_BOOT_UUID /boot                   xfs     defaults        0 0
LABEL=BEK\\040VOLUME /mnt/azure_bek_disk auto defaults,discard,nofail 0 0
EOF
  # ADE writes the crypttab line without a trailing newline (ade-internals 4.1 step 4).
  printf 'osencrypt /dev/disk/by-partuuid/%s /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,discard,header=/boot/luks/osluksheader' \
    "$EX_P2" >"$r/etc/crypttab"
  cat >"$r/etc/default/grub" <<EOF
GRUB_TIMEOUT=10
GRUB_DISTRIBUTOR="\$(sed 's, release .*\$,,g' /etc/system-release)"
GRUB_DEFAULT=saved
GRUB_DISABLE_SUBMENU=true
GRUB_TERMINAL_OUTPUT="console"
GRUB_CMDLINE_LINUX="$CMDLINE"
GRUB_DISABLE_RECOVERY="true"
GRUB_ENABLE_BLSCFG=true

GRUB_CMDLINE_LINUX+=" $ADEARGS "
EOF
  printf '\nadd_drivers+=" dm_crypt "\n\nadd_dracutmodules+=" crypt lvm "\n' >"$r/etc/dracut.conf.d/ade.conf"
  cat >"$r/etc/lvm/lvm.conf" <<EOF
# lvm.conf (abridged for the luksconv example image)
config {
	checks = 1
}
devices {
	dir = "/dev"
	scan = [ "/dev" ]
}

devices { filter = ["a|osencrypt|", "r|$EX_P2|"] }
EOF
  cat >"$r/etc/os-release" <<'EOF'
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
  local lvbytes=$((EX_LV_EXTENTS * EX_EXTENT * 512))
  mkxfs "$r" "$w/rootlv.xfs" "$lvbytes" "$EX_ROOT_UUID" "" -d agcount=2
  xfs_repair -n "$w/rootlv.xfs" >"$w/repair.log" 2>&1 || { cat "$w/repair.log" >&2; return 1; }

  # --- the PV: pvcreate --uuid --restorefile + vgcfgrestore of fixed metadata, on a loop device
  cat >"$w/rootvg.vgcfg" <<EOF
contents = "Text Format Volume Group"
version = 1

description = "rootvg of the luksconv example image (testdata/mkfixtures.sh --example)"

creation_host = "rhel8-ade-example"
creation_time = 1714651200

rootvg {
	id = "$EX_VG_UUID"
	seqno = 1
	format = "lvm2"
	status = ["RESIZEABLE", "READ", "WRITE"]
	flags = []
	extent_size = $EX_EXTENT
	max_lv = 0
	max_pv = 0
	metadata_copies = 0

	physical_volumes {

		pv0 {
			id = "$EX_PV_UUID"
			device = "/dev/mapper/osencrypt"

			status = ["ALLOCATABLE"]
			flags = []
			dev_size = $EX_P2_SECTORS
			pe_start = $EX_PE_START
			pe_count = $EX_PE_COUNT
		}
	}

	logical_volumes {

		rootlv {
			id = "$EX_LV_UUID"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			creation_time = 1714651200
			creation_host = "rhel8-ade-example"
			segment_count = 1

			segment1 {
				start_extent = 0
				extent_count = $EX_LV_EXTENTS

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
  local pv="$w/pv.plain" loop cfg
  truncate -s $((EX_P2_SECTORS * 512)) "$pv"
  loop=$(losetup -f --show "$pv")
  LOOPS+=("$loop")
  cfg=$(LVMCFG "$loop")
  if ! {
    pvcreate --config "$cfg" -y -ff --uuid "$EX_PV_UUID" --restorefile "$w/rootvg.vgcfg" "$loop" &&
      vgcfgrestore --config "$cfg" -f "$w/rootvg.vgcfg" rootvg &&
      vgcfgbackup --config "$cfg" -f "$w/rootvg.readback" rootvg
  } >"$w/lvm.log" 2>&1; then
    cat "$w/lvm.log" >&2
    return 1
  fi
  losetup -d "$loop"
  LOOPS=()
  # what LVM wrote must be the layout above
  local got
  got=$(awk '/^\t*(extent_size|pe_start|pe_count|dev_size|extent_count|start_extent) =/ {printf "%s=%s ", $1, $3}
    /^\t*id =/ {printf "id=%s ", $3}' "$w/rootvg.readback")
  [ "$got" = "id=\"$EX_VG_UUID\" extent_size=$EX_EXTENT id=\"$EX_PV_UUID\" dev_size=$EX_P2_SECTORS pe_start=$EX_PE_START pe_count=$EX_PE_COUNT id=\"$EX_LV_UUID\" start_extent=0 extent_count=$EX_LV_EXTENTS " ] ||
    { echo "example: LVM wrote another layout: $got" >&2; return 1; }
  dd if="$w/rootlv.xfs" of="$pv" bs=512 seek="$EX_PE_START" conv=notrunc,sparse status=none
  EX_PLAIN_SHA=$(sha "$pv")

  # --- the ranges where zero plaintext may become zero ciphertext (PV byte offsets): free extents, and
  # rootlv's xfs free space and log, as xfs_db reads them. xfs_db's freesp also counts the blocks on each
  # AG's free list (AGFL, one line each): those are not free space (fstrim leaves them, luksconv decrypts
  # them), so they are taken out.
  local bs agblocks agblklog logstart logblocks agcount agno lvoff=$((EX_PE_START * 512))
  read -r bs agblocks agblklog logstart logblocks agcount < <(xfs_db -r -c 'sb 0' \
    -c 'print blocksize agblocks agblklog logstart logblocks agcount' "$w/rootlv.xfs" | awk '{printf "%s ", $3} END {print ""}')
  : >"$w/agfl"
  for ((agno = 0; agno < agcount; agno++)); do
    xfs_db -r -c "agf $agno" -c 'print flfirst flcount' -c "agfl $agno" -c 'print bno' "$w/rootlv.xfs" | awk -v ag="$agno" '
      /^flfirst =/ {f = $3} /^flcount =/ {c = $3}
      /^bno\[0-[0-9]+\] =/ {
        sub(/^bno\[0-/, ""); size = $0 + 1; sub(/^[^=]*= /, "")
        for (i = 1; i <= NF; i++) { split($i, kv, ":"); b[kv[1]] = kv[2] }
        for (k = 0; k < c; k++) { x = b[(f + k) % size]; if (x !~ /^[0-9]+$/) exit 1; print ag, x }
      }' >>"$w/agfl"
  done
  {
    echo "$((lvoff + lvbytes)) $(((EX_PE_COUNT - EX_LV_EXTENTS) * EX_EXTENT * 512)) lvm-free-extents"
    xfs_db -r -c 'freesp -d' "$w/rootlv.xfs" | awk -v bs="$bs" -v agb="$agblocks" -v off="$lvoff" -v agfl="$w/agfl" '
      BEGIN { while ((getline l < agfl) > 0) { split(l, f, " "); onfl[f[1] " " f[2]] = 1 } }
      /agno/ {t = 1; next} /from/ {t = 0}
      t && NF == 3 && !($3 == 1 && (($1 " " $2) in onfl)) {printf "%d %d xfs-free-space\n", off + ($1 * agb + $2) * bs, $3 * bs}'
    echo "$((lvoff + ((logstart >> agblklog) * agblocks + (logstart & ((1 << agblklog) - 1))) * bs)) $((logblocks * bs)) xfs-log"
  } >"$w/zeroable"
  # runs of all-zero 512-byte plaintext sectors inside them: "first-sector count reason"
  od -An -v -tx8 -w512 "$pv" | awk -v ranges="$w/zeroable" '
    BEGIN {
      while ((getline l < ranges) > 0) {
        split(l, f, " ")
        for (s = f[1] / 512; s < (f[1] + f[2]) / 512; s++) why[s] = f[3]
      }
    }
    function flush() { if (n) print start, n, w; n = 0 }
    {
      s = NR - 1
      if (!(s in why) || $0 ~ /[1-9a-f]/) { flush(); next }
      if (n && (why[s] != w || s != start + n)) flush()
      if (!n) { start = s; w = why[s] }
      n++
    }
    END { flush() }' >"$w/zeroruns"
  [ -s "$w/zeroruns" ] || { echo "example: nothing to zero" >&2; return 1; }

  # --- assemble the plaintext disk, then encrypt p2 in place as ADE's RHEL 8 flow does: on the partition's
  # block device (a loop device over p2), header file made with dd first, the BEK as key file
  local img="$w/$n.raw"
  mkdisk "$img" "$EX_DISK_MIB" "$EX_DISK_GUID" "1:1:$EX_BOOT_MIB:8300:$EX_P1:" \
    "2:$((1 + EX_BOOT_MIB)):${EX_P2_SECTORS}s:8E00:$EX_P2:"
  put "$img" "$pv" $((1 + EX_BOOT_MIB))
  zerofile "$w/osluksheader" "$EX_HDR_BYTES"
  loop=$(losetup -f --show -o $((EX_P2_START * 512)) --sizelimit $((EX_P2_SECTORS * 512)) "$img")
  LOOPS+=("$loop")
  log "example: cryptsetup reencrypt --encrypt --type luks2 --header osluksheader --key-file bek on $loop"
  cryptsetup reencrypt --encrypt --type luks2 --header "$w/osluksheader" --key-file "$TMP/bek" \
    "${EX_LUKSARGS[@]}" -q "$loop" 2>&1 | { grep -v 'keyslots area .* is very small' || true; }
  losetup -d "$loop"
  LOOPS=()
  cryptsetup luksDump "$w/osluksheader" >"$w/luksdump"
  local want
  for want in "UUID:          	$EX_LUKS_UUID" "	offset: 0 [bytes]" "	length: (whole device)" \
    "	cipher: aes-xts-plain64" "	sector: 512 [bytes]" "	Key:        512 bits" "	PBKDF:      argon2id" \
    "Keyslots area: 	262144 [bytes]"; do
    grep -qxF "$want" "$w/luksdump" || { echo "example: luksDump lacks '$want'" >&2; cat "$w/luksdump" >&2; return 1; }
  done
  if grep -q -e reencrypt -e 'Requirements' "$w/luksdump"; then
    echo "example: the re-encryption did not finish" >&2
    return 1
  fi
  [ "$(size "$w/osluksheader")" -eq "$EX_HDR_BYTES" ] || { echo "example: header file size changed" >&2; return 1; }
  # the discards: zero ciphertext where the plaintext was zero and unused
  local s c why
  while read -r s c why; do
    dd if=/dev/zero of="$img" bs=512 seek=$((EX_P2_START + s)) count="$c" conv=notrunc status=none
  done <"$w/zeroruns"

  # --- /boot (xfs): the header, grubenv, the BLS entry, a grub.cfg stand-in; no kernel or initramfs
  local b="$w/boot"
  mkdir -p "$b/luks" "$b/grub2" "$b/loader/entries"
  cp "$w/osluksheader" "$b/luks/osluksheader"
  chmod 700 "$b/luks"
  cat >"$b/loader/entries/$EX_MID-$EX_KVER.conf" <<EOF
title Red Hat Enterprise Linux (${EX_KVER}) 8.10 (Ootpa)
version ${EX_KVER}
linux /vmlinuz-${EX_KVER}
initrd /initramfs-${EX_KVER}.img \$tuned_initrd
options $EX_KOPTS \$tuned_params
id rhel-20240502120000-${EX_KVER}
grub_users \$grub_users
grub_arg --unrestricted
grub_class kernel
EOF
  grubenv "$b/grub2/grubenv" "saved_entry=$EX_MID-$EX_KVER" "kernelopts=$EX_KOPTS" "boot_success=0"
  printf '# stand-in for /boot/grub2/grub.cfg (grub2-mkconfig output on RHEL 8 reads grubenv and the BLS entries)\nset default="${saved_entry}"\nload_env\nblscfg\n' \
    >"$b/grub2/grub.cfg"
  mkxfs "$b" "$w/boot.xfs" "${EX_BOOT_MIB}M" "$EX_BOOT_UUID" "" -d agcount=2
  xfs_repair -n "$w/boot.xfs" >"$w/repair.log" 2>&1 || { cat "$w/repair.log" >&2; return 1; }
  put "$img" "$w/boot.xfs" 1
  sgdisk -v "$img" | grep -q '^No problems found' || { sgdisk -v "$img" >&2; return 1; }
  # where the header's blocks are (one extent), and that they hold the header
  local fsb cnt
  read -r fsb cnt < <(xfs_db -r -c 'path /luks/osluksheader' -c bmap "$w/boot.xfs" |
    awk '/^data offset 0 startblock/ {print $5, $8}')
  [ "$((cnt * 4096))" -eq "$EX_HDR_BYTES" ] || { echo "example: osluksheader is not one extent" >&2; return 1; }
  EX_HDR_OFF=$(($(xfs_db -r -c "convert fsblock $fsb byte" "$w/boot.xfs" | sed 's/.*(\([0-9]*\)).*/\1/') + MiB))
  dd if="$img" bs=4096 skip=$((EX_HDR_OFF / 4096)) count="$cnt" status=none | cmp -s - "$w/osluksheader" ||
    { echo "example: the header in /boot differs" >&2; return 1; }

  log "example: zstd -19 --long=27"
  zstd -q -19 --long=27 -f -o "$TMP/$n.raw.zst" "$img"
  zstd -q -t --long=27 "$TMP/$n.raw.zst"
  EX_IMAGE_SHA=$(sha "$img")
  printf '%s  partition2.plain\n' "$EX_PLAIN_SHA" >"$TMP/plain.sha256"
  printf '%s  %s.raw\n' "$EX_IMAGE_SHA" "$n" >"$TMP/image.sha256"
  example_readme "$w" "$img" >"$TMP/README.md"
}

# example_readme WORKDIR IMAGE: testdata/example/README.md, from the values above and what the tools read back.
example_readme() {
  local w=$1 img=$2 n=$EX_NAME q='```'
  local disk_bytes p2_bytes zst_bytes lvbytes=$((EX_LV_EXTENTS * EX_EXTENT * 512))
  disk_bytes=$(size "$img") p2_bytes=$((EX_P2_SECTORS * 512)) zst_bytes=$(size "$TMP/$n.raw.zst")
  local zeroed live
  zeroed=$(awk '{s += $2} END {print s * 512}' "$w/zeroruns")
  live=$(dd if="$img" bs=512 skip="$EX_P2_START" count="$EX_P2_SECTORS" status=none | od -An -v -tx8 -w512 |
    awk '$0 ~ /[1-9a-f]/ {n++} END {print n * 512}')
  ptype() { sgdisk -i "$2" "$1" | awk '/^Partition GUID code/ {g = tolower($4); sub(/.*\(/, ""); sub(/\).*/, ""); print $0 " `" g "`"}'; }
  files_md() { # files_md TREE: one table row per file
    (cd "$1" && find . -mindepth 1 -type f -printf '%P\n' | sort) | while read -r f; do
      printf '| `/%s` | %s | %s | `%s` |\n' "$f" "$(size "$1/$f")" "$(stat -c %a "$1/$f")" "$(sha "$1/$f")"
    done
  }
  local xsb
  xsb=$(xfs_db -r -c 'sb 0' -c 'print blocksize agcount dblocks logstart logblocks icount' "$w/rootlv.xfs" | tr '\n' ' ')
  cat <<EOF
# testdata/example: a tiny ADE-encrypted RHEL 8 OS disk

\`$n.raw.zst\` is a whole Azure Disk Encryption (ADE) RHEL 8.10 LVM OS disk, made as small as the tools
allow, for luksconv's runnable documentation examples. It is built with the real tools only (sgdisk,
\`mkfs.xfs -p\`, lvm2 on a loop device, and \`cryptsetup reencrypt --encrypt --type luks2 --header
osluksheader --key-file bek\`, the command ADE's RHEL 8 flow runs) by

    make example-image        # = scripts/install-deps.sh; testdata/mkfixtures.sh --example testdata/example

(\`build_example\` in \`testdata/mkfixtures.sh\`, which also writes this README from what the tools read
back). Tests never rebuild it: it is not one of the fixtures \`internal/fixture\` builds. A rebuild keeps
every offset, size, UUID, file and the key, but not the bytes (see "What a rebuild changes").

**\`bek\` is a test key**, published here: it protects nothing but this image. Never use it anywhere else.

## Files

| file | what |
|---|---|
| \`$n.raw.zst\` | the disk, a raw image compressed with \`zstd -19 --long=27\` (one frame, content size and checksum set): $zst_bytes bytes, $disk_bytes bytes ($EX_DISK_MIB MiB) decompressed |
| \`bek\` | the passphrase, ADE's BEK format: 172 base64 characters (127 bytes), no newline; cryptsetup and luksconv use the file's exact bytes |
| \`plain.sha256\` | SHA-256 of partition 2's plaintext ($p2_bytes bytes), the volume before encryption (\`sha256sum\` format) |
| \`image.sha256\` | SHA-256 of the decompressed image |
| \`README.md\` | this file |

The frame's window is the whole image ($(zstd -lv "$TMP/$n.raw.zst" 2>/dev/null | awk -F': ' '/^Window Size/ {sub(/ \(.*/, "", $2); print $2}')), within what \`zstd -d\` (128 MiB) and Go's
\`github.com/klauspost/compress/zstd\` (512 MiB; a dependency of this module) accept by default: \`zstd -dc\`
and \`zstd.NewReader(r)\` with no options decode it.

## Disk: $disk_bytes bytes, GPT, disk GUID \`$EX_DISK_GUID\`

| # | first sector | last sector | byte offset | bytes | type | partition GUID | holds |
|---|---|---|---|---|---|---|---|
| 1 | 2048 | $((EX_P2_START - 1)) | 1048576 | $((EX_BOOT_MIB * MiB)) | 8300 $(ptype "$img" 1) | \`$EX_P1\` | \`/boot\`, XFS \`$EX_BOOT_UUID\` |
| 2 | $EX_P2_START | $((EX_P2_START + EX_P2_SECTORS - 1)) | $((EX_P2_START * 512)) | $p2_bytes | 8E00 $(ptype "$img" 2) | \`$EX_P2\` | LUKS2 ciphertext (detached header, data offset 0) of the LVM2 PV of \`rootvg\` |

No names, no other partitions; sectors 34-2047 and $((EX_P2_START + EX_P2_SECTORS))-$((disk_bytes / 512 - 34)) are unpartitioned (zeros), the backup GPT is in the last 33 sectors.
\`sgdisk -v\` finds no problems but cautions that partition 2 does not end on a 2048-sector boundary: it ends
where the PV's last extent ends (see partition 2).

$q
$(sgdisk -p "$img" | sed "/^\$/d; s|$img|$n.raw|")
$q

## Partition 1: \`/boot\`, XFS (plaintext)

XFS v5, UUID \`$EX_BOOT_UUID\`, no label, $((EX_BOOT_MIB * MiB)) bytes, 4 KiB blocks, 2 AGs (mkfs.xfs 6.1 \`-p\` protofile).
No kernel or initramfs: the BLS entry names \`vmlinuz-$EX_KVER\` and its initramfs, which are absent.

| path | bytes | mode | sha256 |
|---|---|---|---|
$(files_md "$w/boot")

Directory \`/luks\` is mode 700. \`grub2/grubenv\` is GRUB's 1024-byte block (the \`#\` padding to 1024 bytes cut here):

$q
$(tr -d '#' <"$w/boot/grub2/grubenv" | sed 's/^ GRUB Environment Block/# GRUB Environment Block/')
$q

\`loader/entries/$EX_MID-$EX_KVER.conf\` (its \`options\` carry ADE's arguments literally, as \`grubby --args
--update-kernel ALL\` leaves them):

$q
$(cat "$w/boot/loader/entries/$EX_MID-$EX_KVER.conf")
$q

\`grub2/grub.cfg\` (a stand-in, no kernel arguments):

$q
$(cat "$w/boot/grub2/grub.cfg")
$q

## The LUKS2 header: \`/boot/luks/osluksheader\`

$EX_HDR_BYTES bytes at disk byte $EX_HDR_OFF (/boot blocks $((EX_HDR_OFF / 4096 - 256))-$((EX_HDR_OFF / 4096 - 256 + EX_HDR_BYTES / 4096 - 1)), one extent) = 2 × 16 KiB JSON metadata areas + 256 KiB keyslots area (the smallest cryptsetup 2.6 takes
here: keyslot 0's 4000 AF stripes of the 512-bit key fill 258048 bytes, and \`reencrypt\` needs a 4 KiB
temporary keyslot behind it). Made like ADE's, smaller (ADE: \`dd if=/dev/zero of=/boot/luks/osluksheader
bs=33554432 count=1\`):

    dd if=/dev/zero of=osluksheader bs=$EX_HDR_BYTES count=1
    cryptsetup reencrypt --encrypt --type luks2 --header osluksheader --key-file bek \\
      ${EX_LUKSARGS[*]} -q /dev/loopN    # a loop device over partition 2

Cipher, key size and sector size are cryptsetup's defaults, as ADE passes none: aes-xts-plain64, 512-bit
key, 512-byte sectors, IV = sector number from the partition's first byte (data offset 0, the whole
partition is one segment). Unlocking costs one argon2id of 32 KiB × 4 passes. \`cryptsetup luksDump\`:

$q
$(cat "$w/luksdump")
$q

## Partition 2: the plaintext (before encryption)

SHA-256 \`$EX_PLAIN_SHA\` ($p2_bytes bytes; \`plain.sha256\`). An LVM2 physical volume, written by
\`pvcreate --uuid $EX_PV_UUID --restorefile rootvg.vgcfg\` and \`vgcfgrestore -f rootvg.vgcfg rootvg\`
on a loop device (no LV was ever activated):

| PV bytes | what |
|---|---|
| 0 - 65535 | LVM label (sector 1), metadata area header and text (from byte 4096; \`rootvg\` seqno 2), zeros |
| 65536 - $((65536 + lvbytes - 1)) | extents 0-$((EX_LV_EXTENTS - 1)): \`rootvg/rootlv\` (XFS) |
| $((65536 + lvbytes)) - $((p2_bytes - 1)) | extents $EX_LV_EXTENTS-$((EX_PE_COUNT - 1)): free ($(((EX_PE_COUNT - EX_LV_EXTENTS) * EX_EXTENT * 512)) bytes, zeros) |

PV UUID \`$EX_PV_UUID\`, pe_start $EX_PE_START sectors (64 KiB; RHEL's is 1 MiB), $EX_PE_COUNT extents of
$((EX_EXTENT / 2048)) MiB, nothing behind the last extent. VG \`rootvg\` UUID \`$EX_VG_UUID\`; LV \`rootlv\`
UUID \`$EX_LV_UUID\`, one linear segment: LV extents 0-$((EX_LV_EXTENTS - 1)) on PV extents 0-$((EX_LV_EXTENTS - 1)).
The restore file (LVM wrote it back with seqno 2, its own header comment, \`creation_host\`/\`creation_time\`
of the build and the loop device as the \`device\` hint):

$q
$(cat "$w/rootvg.vgcfg")
$q

### \`rootvg/rootlv\`: the root filesystem, XFS

XFS v5, UUID \`$EX_ROOT_UUID\`, no label, $lvbytes bytes, 4 KiB blocks, 2 AGs; superblock: \`$xsb\`.
Besides these files it has the empty directories \`/boot\` and \`/mnt/azure_bek_disk\` (mount points).

| path | bytes | mode | sha256 |
|---|---|---|---|
$(files_md "$w/root")

EOF
  local f
  for f in etc/fstab etc/crypttab etc/default/grub etc/dracut.conf.d/ade.conf etc/lvm/lvm.conf etc/os-release; do
    printf '`/%s`%s:\n\n%s\n%s\n%s\n\n' "$f" \
      "$([ "$f" = etc/crypttab ] && echo ' (one line, no trailing newline, as ADE writes it)')" "$q" "$(cat "$w/root/$f")" "$q"
  done
  cat <<EOF
## Zeroed ciphertext (discards)

After encryption, every 512-byte sector of partition 2 whose plaintext is all zero **and** lies in space
nothing uses was overwritten with zeros: the free extents, rootlv's XFS free space (\`xfs_db freesp -d\`
without the AG free list blocks, which fstrim leaves alone too) and rootlv's XFS log past its unmount record (mkfs writes the rest of the log as zeros). That is what the
guest's discards leave (ADE's crypttab line has \`discard\`; Azure reads discarded ranges as zeros), and it
keeps the image small: $live bytes of partition 2 are ciphertext, $zeroed bytes are zero. dm-crypt would
decrypt the zero sectors to pseudo-random bytes; luksconv writes them as zero plaintext (free space, clean
XFS log), so partition 2 of \`luksconv convert --keep-guest\` (with or without \`--full-copy\`) is exactly
the plaintext in \`plain.sha256\`. Everything else (LVM metadata area, XFS metadata, log head, file data)
is real ciphertext, all-zero plaintext sectors included.

| partition-2 bytes | length | why |
|---|---|---|
$(awk '{gsub(/-/, " ", $3); printf "| %d - %d | %d | %s |\n", $1 * 512, ($1 + $2) * 512 - 1, $2 * 512, $3}' "$w/zeroruns")

## What a rebuild changes

Fixed by the script: the disk GUID, partition GUIDs, offsets and sizes, both XFS UUIDs, the LUKS UUID and
parameters, the PV/VG/LV UUIDs and layout, every file's content and the key. Not fixed (so a rebuild
changes the image, \`plain.sha256\` and \`image.sha256\`): the LUKS volume key, salts and AF stripes (random),
XFS timestamps and inode generation numbers, and LVM's metadata header (build time, host, command line).

## Checking it

    zstd -dc --long=27 $n.raw.zst > $n.raw && sha256sum -c image.sha256
    sgdisk -v $n.raw
    dd if=$n.raw of=boot.xfs bs=1M skip=1 count=$EX_BOOT_MIB && xfs_repair -n boot.xfs
    xfs_db -r -c 'path /luks/osluksheader' -c bmap boot.xfs     # one extent: startblock $((EX_HDR_OFF / 4096 - 256)) count $((EX_HDR_BYTES / 4096))
    dd if=$n.raw of=osluksheader-extracted bs=4096 skip=$((EX_HDR_OFF / 4096)) count=$((EX_HDR_BYTES / 4096))
    cryptsetup luksDump osluksheader-extracted
    luksconv convert --keep-guest --key-file bek $n.raw out.raw
    dd if=out.raw bs=512 skip=$EX_P2_START count=$EX_P2_SECTORS | sha256sum            # = plain.sha256
    dd if=out.raw of=rootlv.xfs bs=512 skip=$((EX_P2_START + EX_PE_START)) count=$((lvbytes / 512)) && xfs_repair -n rootlv.xfs
EOF
}

# ============================================================================================== main
if [ -n "$EXAMPLE" ]; then
  build_example
  # OUTDIR holds committed files: replace ours, keep anything else
  mkdir -p "$OUT"
  for f in "$EX_NAME.raw.zst" bek plain.sha256 image.sha256 README.md; do mv -f "$TMP/$f" "$OUT/$f"; done
  rm -rf "$TMP"
  log "done: $OUT"
  ls -l "$OUT" | awk 'NR>1 {printf "  %10d bytes  %s\n", $5, $9}'
  exit 0
elif [ -n "$BENCH" ]; then
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
