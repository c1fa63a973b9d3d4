#!/usr/bin/env bash
# mkexample.sh rebuilds example-pv.img.gz, the PV used by the package's
# Example: a 4 MiB PV (32 KiB metadata area, 64 KiB extents) holding VG "vg0"
# with LV "root" (two segments, out of PV order) and LV "swap" (linear), each
# starting with a short text. Needs root and a loop device; never needs
# device-mapper (vgcfgrestore writes metadata only).
#   lvm/testdata/mkexample.sh [OUT]    (default: next to this script)
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin" LC_ALL=C
here=$(dirname "$(readlink -f "$0")")
out=${1:-$here/example-pv.img.gz}
work=$(mktemp -d)
dev=""
cleanup() { [ -n "$dev" ] && losetup -d "$dev"; rm -rf "$work"; }
trap cleanup EXIT

truncate -s 4M "$work/pv.img"
dev=$(losetup -f --show "$work/pv.img")
mkdir -p "$work/lock"
cat >"$work/lvm.conf" <<CONF
devices { use_devicesfile=0 obtain_device_list_from_udev=0 hints="none" filter=["a|^$dev\$|","r|.*|"] }
global { locking_dir="$work/lock" }
activation { udev_sync=0 udev_rules=0 monitoring=0 }
backup { backup=0 archive=0 }
CONF
export LVM_SYSTEM_DIR=$work LVM_SUPPRESS_FD_WARNINGS=1

pvcreate -q -y --metadatasize 32k --dataalignment 4k "$dev"
vgcreate -q -s 64k vg0 "$dev"
vgcfgbackup -q -f "$work/bk" vg0
# Insert the LVs before the VG section's closing brace.
head -n -$(( $(wc -l <"$work/bk") - $(grep -n '^}$' "$work/bk" | tail -1 | cut -d: -f1) + 1 )) "$work/bk" >"$work/in"
cat >>"$work/in" <<'LVS'
	logical_volumes {
		root {
			id = "Root00-0000-0000-0000-0000-0000-000001"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			segment_count = 2
			segment1 {
				start_extent = 0
				extent_count = 2
				type = "striped"
				stripe_count = 1
				stripes = ["pv0", 10]
			}
			segment2 {
				start_extent = 2
				extent_count = 1
				type = "striped"
				stripe_count = 1
				stripes = ["pv0", 3]
			}
		}
		swap {
			id = "Swap00-0000-0000-0000-0000-0000-000002"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = 2
				type = "striped"
				stripe_count = 1
				stripes = ["pv0", 5]
			}
		}
	}
}
LVS
sed -n "$(grep -n '^}$' "$work/bk" | tail -1 | cut -d: -f1),\$p" "$work/bk" | tail -n +2 >>"$work/in"
vgcfgrestore -q -f "$work/in" vg0 2>/dev/null
pe_start=$(pvs --noheadings --units b --nosuffix -o pe_start "$dev" | tr -d ' ')
ext=65536
# LV byte 0 of root is PE 10; byte 0 of swap is PE 5; root's third extent is PE 3.
printf 'root filesystem starts here' | dd of="$work/pv.img" bs=1 seek=$((pe_start + 10 * ext)) conv=notrunc status=none
printf 'third extent of root' | dd of="$work/pv.img" bs=1 seek=$((pe_start + 3 * ext)) conv=notrunc status=none
printf 'swap' | dd of="$work/pv.img" bs=1 seek=$((pe_start + 5 * ext)) conv=notrunc status=none
lvs --segments -o lv_name,seg_start_pe,seg_size_pe,seg_pe_ranges vg0 2>/dev/null
gzip -9n <"$work/pv.img" >"$out"
ls -l "$out"
