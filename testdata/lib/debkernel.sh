# debkernel.sh: the Debian 12 cloud kernel and busybox-static for the boot fixtures, sourced by
# testdata/boot/mkbootdisk.sh and testdata/ubuntu/mkubuntu.sh (both hash this file into their set's
# version). Nothing is installed on the host: the .debs are fetched with `apt-get download` and
# unpacked with `dpkg -x`. The sourcing script defines WORK, log and missing.
#
# $DEB_CACHE, if set, keeps the .debs between builds (else $WORK/debs); $DEB_SEED, if set, is a
# read-only directory of .debs copied from before anything is downloaded.

DEBS=${DEB_CACHE:-$WORK/debs}
mkdir -p "$DEBS"

# fetch PKG: the .deb of PKG's candidate version in $DEBS (copied from $DEB_SEED or downloaded); prints
# its path.
fetch() {
  local pkg=$1 ver f s
  ver=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
  [ -n "$ver" ] && [ "$ver" != "(none)" ] || return 1
  f=$(find "$DEBS" -maxdepth 1 -name "${pkg}_*.deb" | sort | tail -1)
  if [ -z "$f" ] || [ "$(dpkg-deb -f "$f" Version)" != "$ver" ]; then
    rm -f "$DEBS/${pkg}"_*.deb
    s=""
    [ -n "${DEB_SEED:-}" ] && s=$(find "$DEB_SEED" -maxdepth 1 -name "${pkg}_*.deb" 2>/dev/null | sort | tail -1)
    if [ -n "$s" ] && [ "$(dpkg-deb -f "$s" Version 2>/dev/null)" = "$ver" ]; then
      cp "$s" "$DEBS/.$$.deb" && mv "$DEBS/.$$.deb" "$DEBS/$(basename "$s")"
    else
      # apt drops privileges to _apt for downloads; a root-only directory only earns a warning
      (cd "$DEBS" && apt-get download -q "$pkg" 2>&1 | grep -v -e '^W: Download is performed unsandboxed' -e '^Get:' -e '^Fetched' >&2 || true)
    fi
    f=$(find "$DEBS" -maxdepth 1 -name "${pkg}_*.deb" | sort | tail -1)
  fi
  [ -n "$f" ] && [ -s "$f" ] || return 1
  echo "$f"
}

# kernel_deb: the .deb of the kernel that linux-image-cloud-amd64 (else linux-image-amd64) depends on.
kernel_deb() {
  local meta pkg deb
  for meta in linux-image-cloud-amd64 linux-image-amd64; do
    pkg=$(apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    [ -n "$pkg" ] || continue
    deb=$(fetch "$pkg") || continue
    echo "$deb"
    return 0
  done
  return 1
}

# debian_kernel: sets KDEB and BBDEB (the .debs), K (the kernel unpacked, modules indexed by depmod),
# KVER (its version) and BB (busybox-static unpacked: $BB/bin/busybox).
debian_kernel() {
  log "kernel: resolving the Debian cloud kernel package"
  if ! KDEB=$(kernel_deb) || ! BBDEB=$(fetch busybox-static); then
    # stale or missing package lists (a new machine, or a kernel update removed the old .deb)
    log "apt-get update (package lists stale or missing)"
    apt-get -o DPkg::Lock::Timeout=120 update -qq >/dev/null 2>&1 || true
    KDEB=$(kernel_deb) || missing "Debian kernel package (apt-get download linux-image-*-cloud-amd64 failed)"
    BBDEB=$(fetch busybox-static) || missing "Debian package busybox-static (apt-get download failed)"
  fi
  log "kernel: $(basename "$KDEB"), $(basename "$BBDEB")"
  K="$WORK/kernel"
  mkdir -p "$K"
  dpkg -x "$KDEB" "$K"
  KVER=$(basename "$(find "$K/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -1)")
  [ -n "$KVER" ] && [ -f "$K/boot/vmlinuz-$KVER" ] || { echo "no kernel in $KDEB" >&2; exit 1; }
  depmod -b "$K" "$KVER"
  BB="$WORK/busybox"
  dpkg -x "$BBDEB" "$BB"
  [ -x "$BB/bin/busybox" ] || { echo "no bin/busybox in $BBDEB" >&2; exit 1; }
}
