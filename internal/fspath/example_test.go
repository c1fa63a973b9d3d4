package fspath_test

import (
	"fmt"

	"github.com/luksconv/luksconv/internal/fspath"
)

func Example() {
	fmt.Printf("%q\n", fspath.Split("/boot//./grub2/../luks/osluksheader"))
	fmt.Println(fspath.Clean("boot//./luks"))
	rel, ok := fspath.Strip("/boot", "/boot/luks/osluksheader")
	fmt.Printf("%q %v\n", rel, ok)
	rel, ok = fspath.Strip("/boot", "/etc/fstab")
	fmt.Printf("%q %v\n", rel, ok)
	// Output:
	// ["boot" "grub2" ".." "luks" "osluksheader"]
	// /boot/luks
	// "luks/osluksheader" true
	// "" false
}
