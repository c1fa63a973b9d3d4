package qemuboot_test

import (
	"fmt"

	"github.com/luksconv/luksconv/internal/qemuboot"
)

// ParseConsole reads what the boot disk's init printed: the marker line and the device-mapper stack
// under the root filesystem.
func ExampleParseConsole() {
	log := "[   26.29] ADE: crypt-run-generator-ade: /dev/mapper/osencrypt is open; unmounting /boot and /bek\r\n" +
		"LUKSCONV-BOOT-DM dm-0 name=osencrypt uuid=CRYPT-LUKS2-3563467a-osencrypt slaves=vda4 \r\n" +
		"LUKSCONV-BOOT-DM dm-1 name=rootvg-rootlv uuid=LVM-fgo2mbfj slaves=dm-0 \r\n" +
		"LUKSCONV-BOOT-OK root=/dev/mapper/rootvg-rootlv\r\n"
	r := qemuboot.ParseConsole(log, qemuboot.DefaultMarker)
	fmt.Println(r.MarkerFound, r.Root)
	for _, d := range r.DM {
		fmt.Println(d.Dev, d.Name, d.Slaves)
	}
	// Output:
	// true /dev/mapper/rootvg-rootlv
	// dm-0 osencrypt [vda4]
	// dm-1 rootvg-rootlv [dm-0]
}
