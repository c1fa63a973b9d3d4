#!/usr/bin/env bash
# make bench: end-to-end conversion throughput on a large disk built by the real tools, side by side with
# qemu-img convert of a LUKS1 image holding the same plaintext and a plain cat of the input (the I/O
# ceiling, to /dev/null and to a file beside the output), plus per-core XTS speed next to OpenSSL; then a
# mostly empty ADE-style LVM+XFS disk converted used-block-aware and with --full-copy, next to qemu-img
# convert of the very same partition (same file, same ciphertext: qemu-img 7.2 reads neither LUKS2 nor a
# detached header, so the disk carries, in a 2 MiB gap before partition 2, a LUKS1 header holding the
# LUKS2 volume key whose payload starts exactly at partition 2). One run, one machine, one table; peak
# RSS for every row. The dense conversion is also written to a file on a real filesystem, where the page
# cache and write-back are part of the cost (the main table's output is on tmpfs when it fits): on the
# filesystem holding bench-out/ (ext4 on the project machine) and on XFS (an image in bench-out/ on a loop
# device, made and removed by the run; those rows are skipped, loudly, without mkfs.xfs, a free loop
# device or the room), each next to `cat INPUT > FILE; sync FILE` on the same filesystem.
#   BENCH_GIB=8            size of the dense encrypted partition (default 8)
#   BENCH_SPARSE_GIB=64    size of the 10%-used LVM+XFS disk (0 leaves those rows out). Its ciphertext
#                          is dense (cryptsetup reencrypt --encrypt writes every sector), so it needs
#                          that much free disk space. Unset: 64, or the largest multiple of 8 GiB that
#                          fits in the free space and the caches (said in the output). Set: stops if it
#                          does not fit.
#   BENCH_BUILD_ONLY=1     build (or keep) the fixtures and stop, e.g. before a run on a quiet machine
#   BENCH_FS_RUNS=3        cold runs of each tool on each real filesystem (the median is shown)
#   BENCH_VM_RUNS=5        cold runs of each whole-VM row (testdata/vm's fixture VM: vm convert vs one
#                          convert per disk)
#   BENCH_VM_ONLY=1        only the whole-VM rows (no large fixtures; about a minute)
#   BENCH_DELTA_MIB=1024   size of the volume of the cutover row (a second pass after 1% of a 10%-used
#                          ext4 volume changed, against a full conversion of that state and against
#                          a --full-copy one: luksconv's BenchmarkDelta, 3 runs, page cache warm,
#                          output a flushed file where Go's temporary directory is, next to
#                          `cat IN > OUT; sync OUT` there)
#   BENCH_DELTA_ONLY=1     only the cutover row (about 20 s)
# Fixtures are cached in bench-out/ by size; caches of other sizes, and a sparse disk of an older layout
# (its meta lacks layout=2), are removed to free the space. When the dense fixtures and the sparse disk do
# not fit side by side, the run measures the cached one first and then builds the other in its place.
set -euo pipefail
cd "$(dirname "$0")/.."
gib=${BENCH_GIB:-8}
sgib=${BENCH_SPARSE_GIB:-auto}
[[ $gib =~ ^[1-9][0-9]*$ && $sgib =~ ^([0-9]+|auto)$ ]] || { echo "bench: BENCH_GIB and BENCH_SPARSE_GIB take whole GiB" >&2; exit 2; }
dir=bench-out
mkdir -p "$dir"
if [ "$sgib" = auto ]; then
  # Room for the sparse disk: free space now plus every cache (a sparse disk of any size, removed below
  # if its size changes, and the dense fixtures, which make way for it once their rows are measured when
  # both do not fit), less 2 GiB of margin.
  room=$(( $(df --output=avail -B1 "$dir" | tail -1) >> 30 ))
  for c in "$dir"/sparse-*g "$dir/fixtures-${gib}g"; do [ -d "$c" ] && room=$((room + $(du -s -BG "$c" | cut -dG -f1))); done
  room=$(( (room - 2) / 8 * 8 ))
  sgib=$(( room < 64 ? room : 64 ))
  ((sgib > 0)) || sgib=0
  ((sgib == 64)) || echo "bench: only ${sgib} GiB of free disk fits the 10%-used disk (64 wanted); set BENCH_SPARSE_GIB to choose"
fi
fx="$dir/fixtures-${gib}g"
sfx="$dir/sparse-${sgib}g"
bin=bin/luksconv
[ -x /usr/bin/time ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
avail() { df --output=avail -B1 "$1" | tail -1; }
dropcache() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }

# vm_rows: the whole-VM fixture of testdata/vm (mkvm.sh: the ADE OS disk, 212 MiB, and data disks of 64 MiB)
# converted in one run (`luksconv vm convert`, default --parallel 2 and --parallel 1) and one disk after
# another (`luksconv convert` per disk, the dual-pass lun6 with --header, its header being on the OS disk),
# BENCH_VM_RUNS cold runs of each (page cache dropped before every run), alternating. The disks are OS +
# lun0..lun6 in all three; lun7 (crypt-on-LVM) only a whole-VM run converts, so it is in a fourth row only.
# Measured: wall time (median, min-max), what luksconv read (bytes copied + decrypted) and wrote (its
# --json results, summed over the disks), what the kernel read from the disk (/usr/bin/time %I) and the
# peak RSS (%M: of the largest process for the one-by-one runs). Outputs on tmpfs when it has room.
vm_n=${BENCH_VM_RUNS:-5}
[[ $vm_n =~ ^[1-9][0-9]*$ ]] || { echo "bench: BENCH_VM_RUNS takes a positive count" >&2; exit 2; }
declare -A vmruns vmrss vmread vmwrote vmdisk
vmkeys=(vm vm1 seq vm7)
vmskip=""
vm_rows() {
  local sha vmfx rc out k r lun file key hdr s rs io cmd
  sha=$(sha256sum testdata/vm/mkvm.sh | cut -c1-16)
  vmfx="$dir/vmfixture-$sha"
  if [ ! -f "$vmfx/manifest.json" ]; then
    for old in "$dir"/vmfixture-*; do [ -e "$old" ] && rm -rf "$old"; done
    echo "bench: building the VM fixture (testdata/vm/mkvm.sh; once, cached in $vmfx)"
    rc=0
    testdata/vm/mkvm.sh "$vmfx" >"$dir/build-vm.log" 2>&1 || rc=$?
    if ((rc == 3)); then
      vmskip="VM rows: $(grep 'missing tool' "$dir/build-vm.log" | head -1)"
      echo "bench: SKIPPING the VM rows: $vmskip" >&2
      return 0
    elif ((rc != 0)); then
      tail -30 "$dir/build-vm.log"
      exit 1
    fi
  fi
  local m="$vmfx/manifest.json"
  out="$dir/vmout"
  if [ "$(avail /dev/shm 2>/dev/null)" -gt $((4 << 30)) ] 2>/dev/null; then out=/dev/shm/luksconv-bench-vm; fi
  local args=(--os "$vmfx/os.raw" --key-file "$vmfx/os.key")
  local seq="$dir/vm-one-by-one.sh"
  {
    echo 'set -e'
    printf '"%s" convert -q --json --key-file "%s" "%s" "$1/os.raw" >"$1/os.json"\n' "$bin" "$vmfx/os.key" "$vmfx/os.raw"
  } >"$seq"
  for lun in 0 1 2 3 4 5 6; do
    file=$vmfx/$(jq -r ".disks[] | select(.lun == $lun) | .file" "$m")
    key=$vmfx/$(jq -r ".disks[] | select(.lun == $lun) | .key_file" "$m")
    hdr=$(jq -r ".disks[] | select(.lun == $lun) | .luks.header_file" "$m")
    args+=(--data "$lun=$file" --data-key "$lun=$key")
    printf '"%s" convert -q --json --key-file "%s" %s "%s" "$1/lun%d.raw" >"$1/lun%d.json"\n' "$bin" "$key" \
      "${hdr:+--header \"$vmfx/$hdr\"}" "$file" "$lun" "$lun" >>"$seq"
  done
  local args7=("${args[@]}" --data "7=$vmfx/$(jq -r '.disks[] | select(.lun == 7) | .file' "$m")"
    --data-key "7=$vmfx/$(jq -r '.disks[] | select(.lun == 7) | .key_file' "$m")")
  for ((r = 0; r < vm_n; r++)); do
    for k in "${vmkeys[@]}"; do
      rm -rf "$out"
      mkdir -p "$out"
      dropcache
      case $k in
        vm) cmd=("$bin" vm convert -q --json "${args[@]}" "$out") ;;
        vm1) cmd=("$bin" vm convert -q --json --parallel 1 "${args[@]}" "$out") ;;
        vm7) cmd=("$bin" vm convert -q --json "${args7[@]}" "$out") ;;
        seq) cmd=(bash "$seq" "$out") ;;
      esac
      /usr/bin/time -f '%e %M %I' -o "$dir/time.txt" "${cmd[@]}" >"$dir/vm.json" 2>"$dir/vm.err" || { cat "$dir/vm.err"; exit 1; }
      read -r s rs io <"$dir/time.txt"
      vmruns[$k]+="$s "
      vmrss[$k]=$(( rs > ${vmrss[$k]:-0} ? rs : ${vmrss[$k]:-0} ))
      vmdisk[$k]+="$((io * 512)) "
      if [ "$k" = seq ]; then
        vmread[$k]=$(jq -s '[.[].result | .bytes_copied + .bytes_decrypted] | add' "$out"/*.json)
        vmwrote[$k]=$(jq -s '[.[].result.bytes_written] | add' "$out"/*.json)
      else
        vmread[$k]=$(jq '[.disks[].result | .bytes_copied + .bytes_decrypted] | add' "$dir/vm.json")
        vmwrote[$k]=$(jq '[.disks[].result.bytes_written] | add' "$dir/vm.json")
      fi
    done
  done
  rm -rf "$out" "$dir/vm.json"
}
vm_median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ a[NR] = $1 } END { printf "%s %s %s", (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2), a[1], a[NR] }'; }
vm_table() {
  if [ -n "$vmskip" ]; then
    printf '\n| SKIPPED: %s |\n|---|\n' "$vmskip"
    return
  fi
  printf '\n| the fixture VM (testdata/vm), cold cache, %s runs each, alternating | wall s: median (min-max) | read by luksconv (MiB) | written (MiB) | read from disk, kernel (MiB, median) | peak RSS (MiB) |\n|---|---|---|---|---|---|\n' "$vm_n"
  local k label med lo hi dmed
  for k in "${vmkeys[@]}"; do
    case $k in
      vm) label="luksconv vm convert: OS + lun0-lun6 in one run (--parallel 2, default)" ;;
      vm1) label="luksconv vm convert --parallel 1: OS + lun0-lun6" ;;
      seq) label="luksconv convert, one disk after another: OS, lun0-lun6 (lun6 with --header)" ;;
      vm7) label="luksconv vm convert: OS + lun0-lun7 (lun7 crypt-on-LVM: whole-VM only)" ;;
    esac
    read -r med lo hi <<<"$(vm_median "${vmruns[$k]}")"
    read -r dmed _ _ <<<"$(vm_median "${vmdisk[$k]}")"
    printf '| %s | %s (%s-%s) | %.1f | %.1f | %.1f | %d |\n' "$label" "$med" "$lo" "$hi" \
      "$(awk -v b="${vmread[$k]}" 'BEGIN { print b / 1048576 }')" "$(awk -v b="${vmwrote[$k]}" 'BEGIN { print b / 1048576 }')" \
      "$(awk -v b="$dmed" 'BEGIN { print b / 1048576 }')" $((vmrss[$k] / 1024))
  done
}
# The cutover row: luksconv.Delta's second pass next to a full conversion of the same final state.
delta_row() {
  local mib=${BENCH_DELTA_MIB:-1024} line
  [[ $mib =~ ^[1-9][0-9]*$ ]] || { echo "bench: BENCH_DELTA_MIB takes a whole number of MiB" >&2; exit 2; }
  line=$(LUKSCONV_BENCH_DELTA_MIB=$mib go test -run '^$' -bench '^BenchmarkDelta$' -benchtime 3x -timeout 30m ./luksconv/ | grep -E '^BenchmarkDelta' || true)
  [ -n "$line" ] || { echo "bench: BenchmarkDelta did not run" >&2; exit 1; }
  m() { awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($(i+1) == k) print $i }' <<<"$line"; }
  printf '\n| cutover (%s MiB ext4 volume, 10%% in use, 1%% overwritten; warm cache, mean of 3) | value |\n|---|---|\n' "$mib"
  printf '| ciphertext changed | %s%% of the volume |\n| second pass moves (Delta regions) | %s%% |\n' "$(m changed-%)" "$(m moved-%)"
  printf '| full conversion reads (decrypts) | %s%% |\n' "$(m full-read-%)"
  printf '| full conversion of the final state (plan + execute) | %s s |\n| cutover (plan + Delta + execute into the first output) | %s s |\n' "$(m full-s)" "$(m cutover-s)"
  printf '| cutover / full | %s |\n| bytes the cutover moves / bytes the full conversion reads (the time ratio at equal cost per byte) | %s |\n' "$(m ratio)" "$(m bytes-ratio)"
  printf '| --full-copy conversion of the final state (the whole volume decrypted) | %s s |\n| cutover / --full-copy | %s |\n' "$(m full-copy-s)" "$(m ratio-full-copy)"
  printf '| cat of the final state > a file; sync (same filesystem, the copy ceiling) | %s s |\n' "$(m cat-sync-s)"
}
if [ -n "${BENCH_DELTA_ONLY:-}" ]; then
  delta_row
  printf '
(command: BENCH_DELTA_ONLY=1 BENCH_DELTA_MIB=%s make bench)
' "${BENCH_DELTA_MIB:-1024}"
  exit 0
fi
if [ -n "${BENCH_VM_ONLY:-}" ]; then
  vm_rows
  vm_table
  printf '\n(command: BENCH_VM_ONLY=1 BENCH_VM_RUNS=%s make bench)\n' "$vm_n"
  exit 0
fi

mkdir -p "$dir"
for old in "$dir"/fixtures-*g "$dir"/sparse-*g; do
  if [ ! -e "$old" ] || [ "$old" = "$fx" ] || [ "$old" = "$sfx" ]; then continue; fi
  echo "bench: removing the cache $old (another size)"
  rm -rf "$old"
done

# ensure_dense builds the dense fixtures once (cached in $fx). A cached sparse disk beside which they do
# not fit is removed first; the run builds it again after the dense rows.
ensure_dense() {
  [ ! -f "$fx/manifest.json" ] || return 0
  if [ "$(avail "$dir")" -lt $(((2 * gib + 2) << 30)) ] && [ -e "$sfx" ]; then
    echo "bench: removing $sfx to make room for the ${gib} GiB fixtures (rebuilt after their rows)"
    rm -rf "$sfx"
  fi
  echo "bench: building the ${gib} GiB fixtures (once; cached in $fx)"
  rm -rf "$fx"
  testdata/mkfixtures.sh --bench "$gib" "$fx" >"$dir/build.log" 2>&1 || { tail -30 "$dir/build.log"; exit 1; }
}

# build_sparse DIR GIB: an ADE-style OS disk of GIB GiB with 10% of it in use. GPT: partition 1 an empty
# 1 GiB /boot (xfs), a 2 MiB gap, partition 2 an LVM PV (rootvg, rootlv over every extent) holding an XFS
# root filled with GIB/10 GiB of random files, then encrypted in place by `cryptsetup reencrypt --encrypt`
# with a detached LUKS2 header (the RHEL 8+ ADE flow, so every sector holds ciphertext). Made with the
# real tools on loop devices (LVs are never activated: mkfs.xfs and the mount use a loop device at the
# LV's offset, which is the PV's pe_start since rootlv is one linear segment). The gap gets a LUKS1
# header made by cryptsetup luksFormat with the LUKS2 volume key and its payload 4096 sectors on, i.e. at
# partition 2, so that qemu-img can read the same ciphertext. Writes DIR/meta (layout version, sizes,
# offsets, bytes in use, the LUKS1 view's key file), DIR/files.sha256, DIR/key (LUKS2) and DIR/luks1.key.
# It runs in a subshell so that set -e applies inside and the EXIT trap releases its loop devices.
build_sparse() (
  set -euo pipefail
  export LVM_SUPPRESS_FD_WARNINGS=1
  local d=$1 g=$2 mib=$(($2 * 1024)) loops=() tmp="$1.tmp" ok="" inuse
  attach() { local l; l=$(losetup -f --show "$@"); loops+=("$l"); echo "$l"; }
  detach() {
    local l keep=()
    losetup -d "$1"
    for l in "${loops[@]}"; do [ "$l" = "$1" ] || keep+=("$l"); done
    loops=("${keep[@]}")
  }
  # shellcheck disable=SC2317 # run by the EXIT trap
  cleanup() {
    for l in "${loops[@]}"; do
      umount "$l" 2>/dev/null || true
      losetup -d "$l" 2>/dev/null || true
    done
    [ -n "$ok" ] || rm -rf "$tmp"
  }
  trap cleanup EXIT
  rm -rf "$tmp"; mkdir -p "$tmp"
  # p1 at 1 MiB for 1 GiB, the gap at 1025 MiB for 2 MiB, p2 from 1027 MiB to 1 MiB before the end
  # (room for the backup GPT).
  local img="$tmp/disk.raw" gap=$((1025 * 1048576)) pstart=$((1027 * 1048576)) psize=$(((mib - 1028) * 1048576))
  truncate -s $((mib * 1048576)) "$img"
  sgdisk -o -n 1:2048:$((1025 * 2048 - 1)) -t 1:0700 -n 2:$((pstart / 512)):$(((mib - 1) * 2048 - 1)) -t 2:8E00 "$img" >/dev/null
  attach -o 1048576 --sizelimit $((1024 * 1048576)) "$img" >"$tmp/loop"; loop=$(<"$tmp/loop")
  mkfs.xfs -q -f -K "$loop"
  detach "$loop"
  attach -o "$pstart" --sizelimit "$psize" "$img" >"$tmp/loop"; loop=$(<"$tmp/loop")
  cfg="devices{filter=[\"a|^$loop\$|\",\"r|.*|\"] global_filter=[\"a|^$loop\$|\",\"r|.*|\"] obtain_device_list_from_udev=0 use_devicesfile=0} activation{udev_sync=0 udev_rules=0 monitoring=0} global{activation=0} backup{backup=0 archive=0}"
  {
    pvcreate --config "$cfg" -q -y -ff --norestorefile "$loop"
    vgcreate --config "$cfg" -q -s 4M rootvg "$loop"
    lvcreate --config "$cfg" -q -an -Zn -y -l 100%FREE -n rootlv rootvg
  } 2>&1 | { grep -v -e 'WARNING: Activation disabled' -e 'not zeroed' -e 'leaked on' -e 'device-mapper' -e 'libdevmapper' || true; }
  pe=$(pvs --config "$cfg" --noheadings --units b --nosuffix -o pe_start "$loop" 2>/dev/null | tr -d ' ')
  lvsize=$(lvs --config "$cfg" --noheadings --units b --nosuffix -o lv_size rootvg/rootlv 2>/dev/null | tr -d ' ')
  [[ $pe =~ ^[0-9]+$ && $lvsize =~ ^[0-9]+$ ]] || { echo "bench: cannot read the LV layout (pe_start '$pe', size '$lvsize')" >&2; return 1; }
  detach "$loop"
  attach -o $((pstart + pe)) --sizelimit "$lvsize" "$img" >"$tmp/loop"; loop=$(<"$tmp/loop")
  mkfs.xfs -q -f -K "$loop"
  mnt="$tmp/mnt"; mkdir -p "$mnt"
  mount "$loop" "$mnt"
  fill=$((g * 1024 * 1048576 / 10))
  mkdir -p "$mnt/data"
  head -c "$fill" /dev/zero | openssl enc -aes-128-ctr -pass pass:bench-sparse -nosalt -pbkdf2 -iter 1 |
    split -b 256M -a 3 - "$mnt/data/f."
  (cd "$mnt" && sha256sum data/*) >"$tmp/files.sha256"
  inuse=$(df --output=used -B1 "$mnt" | tail -1)
  umount "$mnt"
  detach "$loop"
  attach -o "$pstart" --sizelimit "$psize" "$img" >"$tmp/loop"; loop=$(<"$tmp/loop")
  head -c 127 /dev/urandom | base64 -w0 >"$tmp/key"
  head -c 33554432 /dev/zero >"$tmp/header"
  echo "bench: cryptsetup reencrypt --encrypt of the ${g} GiB PV"
  cryptsetup reencrypt --encrypt --type luks2 --header "$tmp/header" --key-file "$tmp/key" \
    --pbkdf-memory 32768 --pbkdf-force-iterations 4 -q "$loop"
  detach "$loop"
  # The LUKS1 view for qemu-img. plain64 IVs count 512-byte sectors from the payload start; LUKS2's
  # segment must then start at the partition's first byte with 512-byte sectors for both views to
  # decrypt alike (what reencrypt --encrypt --header makes: checked, not assumed).
  seg=$(cryptsetup luksDump "$tmp/header" | sed -n '/^Data segments:/,/^Keyslots:/p')
  cipher=$(awk '$1 == "cipher:" { print $2; exit }' <<<"$seg")
  if ! grep -Eq '^[[:space:]]+offset: 0 \[bytes\]' <<<"$seg" || ! grep -Eq '^[[:space:]]+sector: 512 \[bytes\]' <<<"$seg" ||
    [ -z "$cipher" ]; then
    echo "bench: the LUKS2 data segment is not at offset 0 with 512-byte sectors; no LUKS1 view possible:" >&2
    echo "$seg" >&2
    return 1
  fi
  # The volume key goes to a file only (never to the log) and is deleted once the LUKS1 header holds it.
  cryptsetup luksDump --dump-volume-key --volume-key-file "$tmp/vk" --key-file "$tmp/key" -q "$tmp/header" >/dev/null
  head -c 127 /dev/urandom | base64 -w0 >"$tmp/luks1.key"
  # 3 MiB: luksFormat wants the device larger than the 2 MiB payload offset; only the header part is kept.
  truncate -s 3M "$tmp/luks1.hdr"
  cryptsetup luksFormat --type luks1 --cipher "$cipher" --key-size $(($(stat -c %s "$tmp/vk") * 8)) --hash sha256 \
    --volume-key-file "$tmp/vk" --align-payload 4096 --key-file "$tmp/luks1.key" --pbkdf-force-iterations 1000 -q "$tmp/luks1.hdr"
  dd if="$tmp/luks1.hdr" of="$img" bs=1M count=2 seek=$((gap >> 20)) conv=notrunc status=none
  rm -f "$tmp/luks1.hdr"
  # What qemu-img will see: payload exactly at partition 2, and the very volume key of the LUKS2 header.
  attach -r -o "$gap" --sizelimit $((pstart - gap + psize)) "$img" >"$tmp/loop"; loop=$(<"$tmp/loop")
  payload=$(cryptsetup luksDump "$loop" | awk '/^Payload offset:/ { print $3 }')
  [ "$payload" = $(((pstart - gap) / 512)) ] || { echo "bench: the LUKS1 view's payload offset is '$payload' sectors" >&2; return 1; }
  cryptsetup luksDump --dump-volume-key --volume-key-file "$tmp/vk1" --key-file "$tmp/luks1.key" -q "$loop" >/dev/null
  detach "$loop"
  cmp -s "$tmp/vk" "$tmp/vk1" || { rm -f "$tmp/vk" "$tmp/vk1"; echo "bench: the LUKS1 view holds another volume key" >&2; return 1; }
  rm -f "$tmp/vk" "$tmp/vk1"
  printf 'layout=2\nlv_offset=%s\nlv_size=%s\npe_start=%s\npart_offset=%s\npart_size=%s\nluks1_offset=%s\nluks1_key=luks1.key\nused=%s\nfill=%s\n' \
    $((pstart + pe)) "$lvsize" "$pe" "$pstart" "$psize" "$gap" "$inuse" "$fill" >"$tmp/meta"
  rm -rf "$mnt" "$tmp/loop"
  mv "$tmp" "$d"
  ok=1
)
sparse_cached() { ((sgib > 0)) && grep -qx 'layout=2' "$sfx/meta" 2>/dev/null; }
# ensure_sparse builds the sparse disk once (cached in $sfx). If it does not fit beside the dense
# fixtures, they are removed first (their rows are measured by then; the next run rebuilds them), except
# with BENCH_BUILD_ONLY, which then leaves the disk to the run.
ensure_sparse() {
  ((sgib > 0)) || return 0
  ! sparse_cached || return 0
  # A cache without layout=2 has no LUKS1 view for the qemu-img row (or is half built): start afresh.
  [ ! -e "$sfx" ] || { echo "bench: removing $sfx (an older layout)"; rm -rf "$sfx"; }
  local need=$((sgib * 1024 * 1048576 + (2 << 30)))
  if [ "$(avail "$dir")" -lt "$need" ] && [ -e "$fx" ]; then
    if [ -n "${BENCH_BUILD_ONLY:-}" ]; then
      echo "bench: the ${sgib} GiB disk does not fit beside $fx; the run builds it after the dense rows, in their place"
      return 0
    fi
    echo "bench: removing $fx to make room for the ${sgib} GiB disk (the next run rebuilds it)"
    rm -rf "$fx"
  fi
  if [ "$(avail "$dir")" -lt "$need" ]; then
    echo "bench: the ${sgib} GiB disk needs $((need >> 30)) GiB free beside $dir, which has $(($(avail "$dir") >> 30)) GiB;" \
      "set BENCH_SPARSE_GIB smaller (or 0 to leave those rows out)" >&2
    exit 1
  fi
  echo "bench: building the ${sgib} GiB disk with 10% in use (once; cached in $sfx)"
  build_sparse "$sfx" "$sgib" >"$dir/build-sparse.log" 2>&1 &
  wait $! || { tail -30 "$dir/build-sparse.log"; exit 1; }
}
if [ -n "${BENCH_BUILD_ONLY:-}" ]; then
  ensure_dense
  ensure_sparse
  echo "bench: fixtures ready in $fx$(sparse_cached && echo " and $sfx")"
  exit 0
fi

declare -A secs rss wrote
# measure NAME INPUT CMD...: once with a cold page cache (disk-bound) and once with INPUT already cached
# (CPU-bound); wall seconds and peak RSS from /usr/bin/time.
measure() {
  local name=$1 input=$2; shift 2
  rm -f "$out"; dropcache
  /usr/bin/time -f '%e %M' -o "$dir/time.txt" "$@" >/dev/null 2>"$dir/$name.err" || { cat "$dir/$name.err"; exit 1; }
  read -r "secs[$name,cold]" "rss[$name,cold]" <"$dir/time.txt"
  rm -f "$out"; sync
  cat "$input" >/dev/null
  /usr/bin/time -f '%e %M' -o "$dir/time.txt" "$@" >/dev/null 2>"$dir/$name.err" || { cat "$dir/$name.err"; exit 1; }
  read -r "secs[$name,warm]" "rss[$name,warm]" <"$dir/time.txt"
}

# dense_rows measures cat, luksconv and qemu-img on the dense fixtures.
dense_rows() {
  m="$fx/manifest.json"
  get() { jq -r ".fixtures[] | select(.name==\"$1\") | .$2" "$m"; }
  n="bench-${gib}g"
  img="$fx/$(get "$n" image)"
  hdr="$fx/$(get "$n" header)"
  key="$fx/$(get "$n" 'key_files[0]')"
  want=$(get "$n" plaintext_sha256)
  l1="$fx/$(get "$n-luks1" image)"
  l1key="$fx/$(get "$n-luks1" 'key_files[0]')"
  bytes=$((gib * 1024 * 1024 * 1024))
  # Outputs go to tmpfs when it has room, so the table measures the converters rather than the disk's
  # write-back (both tools get the same sink).
  out="$dir/out.raw"
  if [ "$(avail /dev/shm 2>/dev/null)" -gt $((bytes + (1 << 30))) ] 2>/dev/null; then
    out=/dev/shm/luksconv-bench.raw
  fi

  measure cat "$img" cat "$img"
  # The same bytes written to a file on the output's filesystem: the ceiling for a converter that must write.
  # shellcheck disable=SC2016 # $1 and $2 are the inner shell's
  measure catout "$img" sh -c 'cat "$1" >"$2"' _ "$img" "$out"
  measure luksconv "$img" "$bin" convert -q --allow-unknown-content --key-file "$key" --header "$hdr" --partition 1 "$img" "$out"
  got=$(dd if="$out" bs=1M skip=1 count=$((gib * 1024)) status=none | sha256sum | cut -d' ' -f1)
  [ "$got" = "$want" ] || { echo "bench: luksconv output does not hold the expected plaintext" >&2; exit 1; }
  measure luksconv1 "$l1" "$bin" convert -q --allow-unknown-content --key-file "$l1key" "$l1" "$out"
  got=$(head -c "$bytes" "$out" | sha256sum | cut -d' ' -f1)
  [ "$got" = "$want" ] || { echo "bench: luksconv output of the LUKS1 image does not hold the expected plaintext" >&2; exit 1; }
  measure qemu "$l1" qemu-img convert --object "secret,id=s,file=$l1key" --image-opts \
    "driver=luks,key-secret=s,file.filename=$l1" -O raw "$out"
  got=$(sha256sum <"$out" | cut -d' ' -f1)
  [ "$got" = "$want" ] || { echo "bench: qemu-img output does not hold the expected plaintext" >&2; exit 1; }
  rm -f "$out"
  sink="disk"
  if [[ $out == /dev/shm/* ]]; then sink="tmpfs"; fi
  fs_rows
}

# fs_rows: the dense conversion written to a file on a real filesystem: in a directory beside the fixtures
# (bench-out/fsout, on the filesystem holding bench-out) and on XFS (an image in bench-out on a loop device
# with direct I/O, so that its writes reach the disk without a second page cache, as a disk's would). On
# each, BENCH_FS_RUNS cold runs of `cat INPUT > FILE; sync FILE` (the ceiling: the same bytes read, written
# and made durable) and of luksconv convert (which fsyncs before its rename), alternating; the median.
declare -A fsruns fssys fsalloc fsname
fskeys=() fsskip=() xfs_loop=""
fs_n=${BENCH_FS_RUNS:-3}
[[ $fs_n =~ ^[1-9][0-9]*$ ]] || { echo "bench: BENCH_FS_RUNS takes a positive count" >&2; exit 2; }
xfs_img="$dir/xfs.img" xfs_mnt="$dir/xfs-mnt"
# xfs_down also takes down what a run killed half way left: the mount, loop devices over the image.
xfs_down() {
  local l
  ! mountpoint -q "$xfs_mnt" 2>/dev/null || umount "$xfs_mnt" 2>/dev/null || true
  if [ -e "$xfs_img" ]; then
    for l in $xfs_loop $(losetup -n -O NAME -j "$xfs_img" 2>/dev/null); do losetup -d "$l" 2>/dev/null || true; done
  fi
  xfs_loop=""
  rm -f "$xfs_img"
  rmdir "$xfs_mnt" 2>/dev/null || true
}
fs_down() {
  xfs_down
  rm -rf "$dir/fsout"
}
# xfs_up BYTES: an XFS of BYTES (a multiple of 4 MiB) mounted on $xfs_mnt, or the reason it is not in
# fsskip.
xfs_up() {
  local size=$1 l
  command -v mkfs.xfs >/dev/null || { fsskip+=("XFS: mkfs.xfs is not installed (xfsprogs)"); return 1; }
  [ "$(avail "$dir")" -gt $((size + (1 << 30))) ] ||
    { fsskip+=("XFS: no room for its $((size >> 20)) MiB image beside $dir"); return 1; }
  # Written in full, so that the loop device writes to allocated blocks of the image, as to a disk.
  dd if=/dev/zero of="$xfs_img" bs=4M count=$((size >> 22)) conv=fsync status=none ||
    { fsskip+=("XFS: cannot write its image $xfs_img"); xfs_down; return 1; }
  l=$(losetup -f --show --direct-io=on "$xfs_img" 2>/dev/null) ||
    { fsskip+=("XFS: no loop device (losetup -f --show failed)"); xfs_down; return 1; }
  xfs_loop=$l
  mkdir -p "$xfs_mnt"
  { mkfs.xfs -q -f -K "$l" && mount "$l" "$xfs_mnt"; } >"$dir/xfs.err" 2>&1 ||
    { fsskip+=("XFS: mkfs.xfs or mount of $l failed: $(tr '\n' ' ' <"$dir/xfs.err" | sed 's/ $//')"); xfs_down; return 1; }
}
# fs_pair KEY LABEL FILE: the alternating cold runs on the filesystem holding FILE.
fs_pair() {
  local k=$1 f=$3 r t s y cmd
  fskeys+=("$k")
  fsname[$k]=$2
  for r in $(seq "$fs_n"); do
    for t in cat luksconv; do
      # shellcheck disable=SC2016 # $1 and $2 are the inner shell's
      cmd=(sh -c 'cat "$1" >"$2" && sync "$2"' _ "$img" "$f")
      [ $t = cat ] || cmd=("$bin" convert -q --allow-unknown-content --key-file "$key" --header "$hdr" --partition 1 "$img" "$f")
      rm -f "$f"; dropcache
      /usr/bin/time -f '%e %S' -o "$dir/time.txt" "${cmd[@]}" >/dev/null 2>"$dir/fs-$t.err" || { cat "$dir/fs-$t.err"; exit 1; }
      read -r s y <"$dir/time.txt"
      fsruns[$k,$t]+="$s "
      fssys[$k,$t]+="$y "
    done
    if [ "$r" = 1 ]; then
      got=$(dd if="$f" bs=1M skip=1 count=$((gib * 1024)) status=none | sha256sum | cut -d' ' -f1)
      [ "$got" = "$want" ] || { echo "bench: luksconv output on $2 does not hold the expected plaintext" >&2; exit 1; }
      fsalloc[$k]=$(du -B1 "$f" | cut -f1)
    fi
  done
  rm -f "$f"
}
fs_rows() {
  local size d r
  size=$(stat -c %s "$img")
  d="$dir/fsout"
  fs_down
  trap fs_down EXIT
  trap 'fs_down; exit 130' INT TERM
  if [ "$(avail "$dir")" -gt $((size + (1 << 30))) ]; then
    mkdir -p "$d"
    fs_pair root "$(findmnt -n -o FSTYPE -T "$d") ($(findmnt -n -o SOURCE -T "$d"), a directory in $dir)" "$d/out.raw"
  else
    fsskip+=("$(findmnt -n -o FSTYPE -T "$dir"): no room for a $((size >> 20)) MiB output beside $dir")
  fi
  # The image: the disk and 1 GiB for XFS's own metadata and log, in whole 4 MiB.
  if xfs_up $(((size + (1 << 30) + (4 << 20) - 1) >> 22 << 22)); then
    fs_pair xfs "xfs ($(losetup -n -O NAME,DIO "$xfs_loop" | awk '{ print $1 ($2 == 1 ? " with" : " WITHOUT") " direct I/O" }') on $xfs_img)" \
      "$xfs_mnt/out.raw"
  fi
  fs_down
  trap - EXIT INT TERM
  for r in "${fsskip[@]}"; do echo "bench: SKIPPING the rows on a real filesystem for $r" >&2; done
}

# sparse_rows measures the 10%-used disk: one cold run each (the input does not fit in the page cache at
# full size).
sparse_rows() {
  ((sgib > 0)) || return 0
  # What build_sparse wrote; a value missing from meta stops the run.
  meta() { sed -n "s/^$1=//p" "$sfx/meta" | grep . || { echo "bench: $sfx/meta has no $1" >&2; exit 1; }; }
  # (One assignment a line: set -e sees only the last command substitution of a line.)
  lv_offset=$(meta lv_offset)
  lv_size=$(meta lv_size)
  pe_start=$(meta pe_start)
  part_offset=$(meta part_offset)
  part_size=$(meta part_size)
  luks1_offset=$(meta luks1_offset)
  luks1_key=$(meta luks1_key)
  used=$(meta used)
  sout="$dir/sparse-out.raw"
  [ "$(avail /dev/shm 2>/dev/null)" -gt $((used + (2 << 30))) ] 2>/dev/null && sout=/dev/shm/luksconv-bench-sparse.raw
  for k in used full qemu; do
    case $k in
      used) cmd=("$bin" convert --json -q --keep-guest) off=$lv_offset ;;
      full) cmd=("$bin" convert --json -q --keep-guest --full-copy) off=$lv_offset ;;
      # qemu-img reads partition 2 of the same file through the LUKS1 header in the gap before it (raw
      # driver offset/size); its output is the partition alone, so the LV starts at pe_start there.
      qemu) cmd=(qemu-img convert --object "secret,id=s,file=$sfx/$luks1_key" --image-opts
        "driver=luks,key-secret=s,file.driver=raw,file.offset=$luks1_offset,file.size=$((part_offset - luks1_offset + part_size)),file.file.driver=file,file.file.filename=$sfx/disk.raw"
        -O raw "$sout") off=$pe_start ;;
    esac
    so="$dir/sparse-$k.out"
    [ $k = qemu ] || { cmd+=(--key-file "$sfx/key" --header "$sfx/header" --partition 2 "$sfx/disk.raw" "$sout"); so="$dir/sparse-$k.json"; }
    rm -f "$sout"; dropcache
    /usr/bin/time -f '%e %M' -o "$dir/time.txt" "${cmd[@]}" >"$so" 2>"$dir/sparse-$k.err" ||
      { cat "$dir/sparse-$k.err"; exit 1; }
    read -r "secs[sparse$k,cold]" "rss[sparse$k,cold]" <"$dir/time.txt"
    # qemu-img reports nothing; what its output holds (it skips zero blocks) stands in for bytes written.
    if [ $k = qemu ]; then wrote[$k]="$(du -B1 "$sout" | cut -f1) (allocated)"; else wrote[$k]=$(jq -r .result.bytes_written "$so"); fi
    # The output's root must pass xfs_repair -n and hold every file.
    l=$(losetup -f --show -r -o "$off" --sizelimit "$lv_size" "$sout")
    xfs_repair -n "$l" >"$dir/sparse-$k.repair" 2>&1 || { losetup -d "$l"; echo "bench: xfs_repair -n fails on the $k output" >&2; tail "$dir/sparse-$k.repair"; exit 1; }
    mkdir -p "$dir/mnt"
    mount -o ro,norecovery "$l" "$dir/mnt"
    ok=0; (cd "$dir/mnt" && sha256sum -c --quiet "$OLDPWD/$sfx/files.sha256") || ok=$?
    umount "$dir/mnt"; losetup -d "$l"
    ((ok == 0)) || { echo "bench: files differ in the $k output" >&2; exit 1; }
  done
  rm -f "$sout"
}

echo "bench: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
# Cached fixtures are measured first, so that when the dense fixtures and the sparse disk do not fit
# side by side, one run builds the missing one only after the other's rows (and in its place).
if sparse_cached && [ ! -f "$fx/manifest.json" ]; then
  sparse_rows
  ensure_dense
  dense_rows
else
  ensure_dense
  dense_rows
  ensure_sparse
  sparse_rows
fi
vm_rows

rate() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.2f", b / s / 1e9 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }

# Per-core XTS: our cipher (Go benchmark, one goroutine) next to OpenSSL on 4 KiB sectors.
gobench=$(go test -run '^$' -bench 'BenchmarkXTSDecrypt' -benchtime 2s ./diskcipher/ 2>/dev/null | grep -E '^Benchmark' || true)
ossl() { openssl speed -seconds 2 -decrypt -evp "$1" -bytes 4096 2>/dev/null | awk -v c="$1" 'toupper($1)==toupper(c) {v=$2; sub(/k$/,"",v); printf "%.2f", v*1000/1e9}'; }

printf '\n| measurement | cold cache: s | GB/s | warm cache: s | GB/s | vs qemu-img (warm) | peak RSS (MiB) |\n|---|---|---|---|---|---|---|\n'
for k in cat catout luksconv luksconv1 qemu; do
  case $k in
    cat) label="cat of the input > /dev/null (read ceiling)" ;;
    catout) label="cat of the input > a file beside the output (read+write ceiling)" ;;
    luksconv) label="luksconv convert (LUKS2, aes-xts-plain64 512-bit)" ;;
    luksconv1) label="luksconv convert (the LUKS1 image qemu-img reads)" ;;
    qemu) label="qemu-img convert (LUKS1, aes-xts-plain64 512-bit)" ;;
  esac
  printf '| %s | %s | %s | %s | %s | %sx | %d |\n' "$label" "${secs[$k,cold]}" "$(rate "${secs[$k,cold]}")" \
    "${secs[$k,warm]}" "$(rate "${secs[$k,warm]}")" "$(ratio "${secs[$k,warm]}" "${secs[qemu,warm]}")" \
    $(( (rss[$k,cold] > rss[$k,warm] ? rss[$k,cold] : rss[$k,warm]) / 1024 ))
done
printf '\nluksconv speed / cat > /dev/null speed: %s cold, %s warm\n' "$(ratio "${secs[luksconv,cold]}" "${secs[cat,cold]}")" \
  "$(ratio "${secs[luksconv,warm]}" "${secs[cat,warm]}")"
printf 'luksconv speed / cat > file speed: %s cold, %s warm\n' "$(ratio "${secs[luksconv,cold]}" "${secs[catout,cold]}")" \
  "$(ratio "${secs[luksconv,warm]}" "${secs[catout,warm]}")"
# The same conversion to a file on a real filesystem (fs_rows): medians of BENCH_FS_RUNS cold runs.
stat3() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{ a[NR] = $1 } END { printf "%s %s %s", (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2), a[1], a[NR] }'; }
if ((${#fskeys[@]} + ${#fsskip[@]})); then
  printf '\n| output to a file on a real filesystem (cold cache, %s runs each, alternating) | filesystem | s: median (min-max) | GB/s | system s (median) | luksconv time / cat time | output allocated (MiB) |\n|---|---|---|---|---|---|---|\n' "$fs_n"
  for k in "${fskeys[@]}"; do
    read -r cmed _ _ <<<"$(stat3 "${fsruns[$k,cat]}")"
    for t in cat luksconv; do
      read -r med lo hi <<<"$(stat3 "${fsruns[$k,$t]}")"
      read -r smed _ _ <<<"$(stat3 "${fssys[$k,$t]}")"
      if [ $t = cat ]; then
        label='cat INPUT > FILE; sync FILE (read+write+fsync ceiling)' rt='-' al='-'
      else
        label='luksconv convert (LUKS2, aes-xts-plain64 512-bit) to FILE'
        rt="$(awk -v a="$med" -v b="$cmed" 'BEGIN { printf "%.2fx", a / b }')" al=$((fsalloc[$k] >> 20))
      fi
      printf '| %s | %s | %s (%s-%s) | %s | %s | %s | %s |\n' "$label" "${fsname[$k]}" "$med" "$lo" "$hi" "$(rate "$med")" "$smed" "$rt" "$al"
    done
  done
  for r in "${fsskip[@]}"; do printf '| SKIPPED: %s | | | | | | |\n' "$r"; done
fi
if ((sgib > 0)); then
  printf '\n| %s GiB disk, %s GiB in use (cold cache) | s | bytes written | vs --full-copy time | vs qemu-img | peak RSS (MiB) |\n|---|---|---|---|---|---|\n' \
    "$sgib" "$(awk -v u="$used" 'BEGIN { printf "%.1f", u / 2^30 }')"
  for k in used full qemu; do
    case $k in
      used) label="luksconv convert (used-block-aware, default)" ;;
      full) label="luksconv convert --full-copy" ;;
      qemu) label="qemu-img convert (partition 2 of the same file, via a LUKS1 header with the same volume key)" ;;
    esac
    printf '| %s | %s | %s | %sx | %sx | %d |\n' "$label" "${secs[sparse$k,cold]}" "${wrote[$k]}" \
      "$(awk -v a="${secs[sparse$k,cold]}" -v b="${secs[sparsefull,cold]}" 'BEGIN { printf "%.3f", a / b }')" \
      "$(ratio "${secs[sparse$k,cold]}" "${secs[sparseqemu,cold]}")" $((${rss[sparse$k,cold]} / 1024))
  done
  printf '\nqemu-img time / luksconv time on this disk: %s used-block-aware, %s --full-copy\n' \
    "$(ratio "${secs[sparseused,cold]}" "${secs[sparseqemu,cold]}")" "$(ratio "${secs[sparsefull,cold]}" "${secs[sparseqemu,cold]}")"
  printf '\nbytes in use (df of the root before encryption): %s; written by the used-block-aware run / in use: %s\n' "$used" \
    "$(awk -v a="${wrote[used]}" -v b="$used" 'BEGIN { printf "%.3f", a / b }')"
fi
printf '\nXTS decrypt, one core, 4 KiB sectors:\n'
printf '  openssl speed -evp aes-256-xts: %s GB/s\n' "$(ossl aes-256-xts)"
printf '  openssl speed -evp aes-128-xts: %s GB/s\n' "$(ossl aes-128-xts)"
echo "$gobench" | awk '/4096/ { for (i=1;i<=NF;i++) if ($i=="MB/s") printf "  %s: %.2f GB/s\n", $1, $(i-1)/1000 }'
vm_table
delta_row
printf '\n(%s GiB partition; cold = page cache dropped before the run, warm = input read once before; output on %s; command: BENCH_GIB=%s BENCH_SPARSE_GIB=%s make bench)\n' "$gib" "$sink" "$gib" "$sgib"
