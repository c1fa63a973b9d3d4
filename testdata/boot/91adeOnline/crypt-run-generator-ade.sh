#!/bin/sh
# 91adeOnline generator (stand-in written from docs/ade-internals.md §4.1), run from dracut's initqueue
# by the udev rule of parse-crypt-ade.sh:
#   crypt-run-generator-ade DEVNAME osencrypt BOOTUUID
# It adds the osencrypt line (key on the BEK volume, detached header on /boot) to the initramfs'
# crypttab, /boot and the BEK volume to its fstab, lets systemd's generators turn them into units, starts
# them, and unmounts /boot and /bek once /dev/mapper/osencrypt exists.

. /lib/dracut-lib.sh

dev=$1
luks=$2
bootuuid=$3

kmsg() { echo "ADE: crypt-run-generator-ade: $*" > /dev/kmsg; }

if grep -q "^$luks " /etc/crypttab 2> /dev/null; then
    kmsg "$luks already in /etc/crypttab (device $dev ignored)"
    exit 0
fi
kmsg "adding $luks for $dev (header /boot/luks/osluksheader on UUID=$bootuuid, key on the BEK VOLUME)"

# printf, not echo: dash's echo would turn the fstab escape \040 into a blank
printf '%s\n' "$luks $dev /bek/LinuxPassPhraseFileName timeout=10,discard,header=/boot/luks/osluksheader" >> /etc/crypttab
mkdir -p /boot /bek
printf '%s\n' "UUID=$bootuuid /boot auto defaults 0 0" >> /etc/fstab
printf '%s\n' 'LABEL=BEK\040VOLUME /bek auto defaults,nofail 0 0' >> /etc/fstab

systemctl daemon-reload
# one at a time, each waiting for its job: without the BEK disk bek.mount's device times out (90 s)
systemctl start bek.mount
systemctl start boot.mount
systemctl start cryptsetup.target

i=0
while [ ! -b "/dev/mapper/$luks" ] && [ $i -lt 15 ]; do
    sleep 1
    i=$((i + 1))
done
if [ -b "/dev/mapper/$luks" ]; then
    kmsg "/dev/mapper/$luks is open; unmounting /boot and /bek"
    umount /boot /bek 2> /dev/null
else
    kmsg "/dev/mapper/$luks did not appear"
fi
exit 0
