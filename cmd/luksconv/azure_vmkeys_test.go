package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/luksconv/luksconv/luksconv"
)

// TestPlanVMErrorClearsKeys: when the VM's plan fails, no disk's passphrase is left in memory. runVM
// took the disks back from planVM, nil on an error, so its deferred clear saw none of them.
func TestPlanVMErrorClearsKeys(t *testing.T) {
	zeros := make([]byte, 4<<20) // no partition table, no LUKS: NewVMPlan fails
	var disks []*azureVMDisk
	for _, lun := range []int{luksconv.OSDisk, 0} {
		src, err := luksconv.NewSource(bytes.NewReader(zeros), int64(len(zeros)))
		if err != nil {
			t.Fatal(err)
		}
		disks = append(disks, &azureVMDisk{LUN: lun, pass: []byte("the VM's passphrase"), src: src})
	}
	f := &azureConvert{pf: planFlags{keyslot: -1}}
	if _, _, err := f.planVM(context.Background(), disks, &azureVMReport{}); err == nil {
		t.Fatal("planVM of all-zero disks succeeded")
	}
	for _, d := range disks {
		if !bytes.Equal(d.pass, make([]byte, len(d.pass))) {
			t.Errorf("%s: passphrase %q not cleared after a failed plan", diskName(d.LUN), d.pass)
		}
	}
}
