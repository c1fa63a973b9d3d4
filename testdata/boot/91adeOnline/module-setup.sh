#!/bin/bash
# 91adeOnline/module-setup.sh: a stand-in for Azure Disk Encryption's dracut module of the same name,
# written for luksconv's boot tests from the description in docs/ade-internals.md §4.1 (not ADE's code).
# Like ADE's it has no check(), so dracut includes it whenever it is asked for (ADE's is always present).

# called by dracut
depends() {
    echo crypt systemd
    return 0
}

# called by dracut
installkernel() {
    hostonly='' instmods drbg dm_crypt =crypto =drivers/crypto =arch/x86/crypto
}

# called by dracut
install() {
    inst_hook cmdline 30 "$moddir/parse-crypt-ade.sh"
    inst_script "$moddir/crypt-run-generator-ade.sh" /sbin/crypt-run-generator-ade
    dracut_need_initqueue
}
