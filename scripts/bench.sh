#!/usr/bin/env bash
# make bench: end-to-end conversion throughput on a large disk built by the real tools, side by side with
# qemu-img convert of a LUKS1 image holding the same plaintext and a plain cat of the input (the read
# ceiling), plus per-core XTS speed next to OpenSSL. One run, one machine, one table.
#   BENCH_GIB=4 make bench      (size of the encrypted partition; default 4)
set -euo pipefail
cd "$(dirname "$0")/.."
gib=${BENCH_GIB:-4}
dir=bench-out
fx="$dir/fixtures-${gib}g"
bin=bin/luksconv
[ -x /usr/bin/time ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
mkdir -p "$dir"

if [ ! -f "$fx/manifest.json" ]; then
  echo "bench: building the ${gib} GiB fixtures (once; cached in $fx)"
  rm -rf "$fx"
  testdata/mkfixtures.sh --bench "$gib" "$fx" >"$dir/build.log" 2>&1 || { tail -30 "$dir/build.log"; exit 1; }
fi
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
if [ "$(df --output=avail -B1 /dev/shm 2>/dev/null | tail -1)" -gt $((bytes + (1 << 30))) ] 2>/dev/null; then
  out=/dev/shm/luksconv-bench.raw
fi

dropcache() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
# measure NAME CMD...: cold page cache, wall seconds and peak RSS from /usr/bin/time.
# measure NAME INPUT CMD...: once with a cold page cache (disk-bound) and once with INPUT already cached
# (CPU-bound); wall seconds and peak RSS from /usr/bin/time.
declare -A secs rss
measure() {
  local name=$1 input=$2; shift 2
  rm -f "$out"; dropcache
  /usr/bin/time -f '%e %M' -o "$dir/time.txt" "$@" >/dev/null 2>"$dir/$name.err" || { cat "$dir/$name.err"; exit 1; }
  read -r secs[$name,cold] rss[$name,cold] <"$dir/time.txt"
  rm -f "$out"; sync
  cat "$input" >/dev/null
  /usr/bin/time -f '%e %M' -o "$dir/time.txt" "$@" >/dev/null 2>"$dir/$name.err" || { cat "$dir/$name.err"; exit 1; }
  read -r secs[$name,warm] rss[$name,warm] <"$dir/time.txt"
}

echo "bench: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
measure cat "$img" cat "$img"
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
sink="disk"; [[ $out == /dev/shm/* ]] && sink="tmpfs"

rate() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.2f", b / s / 1e9 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }

# Per-core XTS: our cipher (Go benchmark, one goroutine) next to OpenSSL on 4 KiB sectors.
gobench=$(go test -run '^$' -bench 'BenchmarkXTSDecrypt' -benchtime 2s ./diskcipher/ 2>/dev/null | grep -E '^Benchmark' || true)
ossl() { openssl speed -seconds 2 -decrypt -evp "$1" -bytes 4096 2>/dev/null | awk -v c="$1" 'toupper($1)==toupper(c) {v=$2; sub(/k$/,"",v); printf "%.2f", v*1000/1e9}'; }

printf '\n| measurement | cold cache: s | GB/s | warm cache: s | GB/s | vs qemu-img (warm) | peak RSS (MiB) |\n|---|---|---|---|---|---|---|\n'
for k in cat luksconv luksconv1 qemu; do
  case $k in
    cat) label="cat of the input (read ceiling)" ;;
    luksconv) label="luksconv convert (LUKS2, aes-xts-plain64 512-bit)" ;;
    luksconv1) label="luksconv convert (the LUKS1 image qemu-img reads)" ;;
    qemu) label="qemu-img convert (LUKS1, aes-xts-plain64 512-bit)" ;;
  esac
  printf '| %s | %s | %s | %s | %s | %sx | %d |\n' "$label" "${secs[$k,cold]}" "$(rate "${secs[$k,cold]}")" \
    "${secs[$k,warm]}" "$(rate "${secs[$k,warm]}")" "$(ratio "${secs[$k,warm]}" "${secs[qemu,warm]}")" \
    $(( (rss[$k,cold] > rss[$k,warm] ? rss[$k,cold] : rss[$k,warm]) / 1024 ))
done
printf '\nluksconv / cat ceiling: %s cold, %s warm\n' "$(ratio "${secs[luksconv,cold]}" "${secs[cat,cold]}")" \
  "$(ratio "${secs[luksconv,warm]}" "${secs[cat,warm]}")"
printf '\nXTS decrypt, one core, 4 KiB sectors:\n'
printf '  openssl speed -evp aes-256-xts: %s GB/s\n' "$(ossl aes-256-xts)"
printf '  openssl speed -evp aes-128-xts: %s GB/s\n' "$(ossl aes-128-xts)"
echo "$gobench" | awk '/4096/ { for (i=1;i<=NF;i++) if ($i=="MB/s") printf "  %s: %.2f GB/s\n", $1, $(i-1)/1000 }'
printf '\n(%s GiB partition; cold = page cache dropped before the run, warm = input read once before; output on %s; command: BENCH_GIB=%s make bench)\n' "$gib" "$sink" "$gib"
