package guest_test

import (
	"fmt"

	"github.com/luksconv/luksconv/guest"
)

// Undoing ADE in a RHEL 8 LVM guest: the kernel arguments in grubenv's kernelopts and the osencrypt
// line ADE appended to /etc/crypttab without a newline.
func Example() {
	cmdline := "root=/dev/mapper/rootvg-rootlv ro rd.lvm.lv=rootvg/rootlv " +
		"rd.luks.ade.partuuid=5e1f2a3b-0008-4c5d-8e9f-0a1b2c3d4e14 rd.luks.ade.bootuuid=0b7e0c8a-8e21-4d3f-9c55-3f1e2d4c5b01 rd.debug"
	fixed, removed := guest.FixCmdline(cmdline)
	fmt.Println(fixed)
	fmt.Println(len(removed), "arguments removed")

	env := []byte("# GRUB Environment Block\nkernelopts=" + cmdline + "\n")
	for len(env) < guest.GrubenvSize {
		env = append(env, '#')
	}
	out, changes, err := guest.FixGrubenv(env)
	if err != nil {
		panic(err)
	}
	fmt.Println(len(out), changes[0].After[0])

	crypttab := []byte("osencrypt /dev/disk/by-partuuid/5e1f2a3b-0008-4c5d-8e9f-0a1b2c3d4e14 " +
		"/mnt/azure_bek_disk/LinuxPassPhraseFileName luks,discard,header=/boot/luks/osluksheader")
	out, changes = guest.FixCrypttab(crypttab)
	fmt.Printf("%q: %s\n", out, changes[0].Why)

	// A second pass finds nothing to do.
	out, _ = guest.FixCrypttab(out)
	fmt.Println(out == nil)
	// Output:
	// root=/dev/mapper/rootvg-rootlv ro rd.lvm.lv=rootvg/rootlv
	// 3 arguments removed
	// 1024 kernelopts=root=/dev/mapper/rootvg-rootlv ro rd.lvm.lv=rootvg/rootlv
	// "": drop the crypttab entry of ADE's OS volume osencrypt
	// true
}

// Scan lists what is left for a LEAPP readiness check.
func ExampleScan() {
	for _, f := range guest.Scan("/etc/default/grub", []byte("GRUB_CMDLINE_LINUX=\"ro rd.luks.ade.partuuid=x\"")) {
		fmt.Printf("%s:%d: %s\n", f.Path, f.Line, f.What)
	}
	// Output:
	// /etc/default/grub:0: no final newline (LEAPP's grub configuration check requires one)
	// /etc/default/grub:1: ADE kernel argument rd.luks.ade.*
}
