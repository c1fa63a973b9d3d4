#!/bin/sh
# luksconv test stand-in for ADE's Ubuntu 16.04/18.04 keyscript, installed like ADE's as
# /usr/sbin/azure_crypt_key.sh and named by crypttab's keyscript= option. Written for the tests from the
# documented behaviour (shared docs/ade-internals.md §10.3; Azure/azure-linux-extensions
# VMEncryption/main/oscrypto/ubuntu_1604/encryptscripts/), not ADE's code: cryptroot runs it in the
# initrd and reads the passphrase from its standard output. It loads the vfat and code page modules,
# mounts the first partition of each SCSI disk (sd*) read-only as vfat on a scratch directory and prints
# LinuxPassPhraseFileName from the first one holding it; with none it asks on the console.
keydir=/tmp-keydisk-mount
keyname=LinuxPassPhraseFileName
echo "Trying to get the key from disks ..." >&2
mkdir -p "$keydir"
for m in nls_utf8 nls_cp437 vfat; do modprobe "$m" >/dev/null 2>&1; done
sleep 2
for blk in /sys/block/sd*; do
	[ -e "$blk" ] || continue
	disk=${blk##*/}
	echo "> Trying device: $disk ..." >&2
	if mount -t vfat -r "/dev/${disk}1" "$keydir" >/dev/null 2>&1; then
		if [ -f "$keydir/$keyname" ]; then
			cat "$keydir/$keyname"
			echo "Success loading keyfile!" >&2
			umount "$keydir" 2>/dev/null
			exit 0
		fi
		umount "$keydir" 2>/dev/null
	fi
done
echo "FAILED to find suitable passphrase file ..." >&2
printf 'Try to enter your password: ' >&2
read -r pass </dev/console
printf '%s' "$pass"
