package luksconv

import "testing"

// TestLVDevice: the crypttab device names of an LV, as device-mapper and udev give them, with a dash
// inside a VG or LV name doubled in the dm name; other devices are not LVs.
func TestLVDevice(t *testing.T) {
	for _, c := range []struct {
		dev, vg, lv string
		ok          bool
	}{
		{"/dev/mapper/datavg-datalv", "datavg", "datalv", true},
		{"/dev/mapper/lun7vg-crypt--lv", "lun7vg", "crypt-lv", true},
		{"/dev/mapper/my--vg-my--lv--x", "my-vg", "my-lv-x", true},
		{"/dev/datavg/datalv", "datavg", "datalv", true},
		{"/dev/my-vg/crypt-lv", "my-vg", "crypt-lv", true},
		{"/dev/mapper/osencrypt", "", "", false},
		{"/dev/mapper/-lv", "", "", false},
		{"/dev/mapper/vg-", "", "", false},
		{"/dev/disk/azure/scsi1/lun3", "", "", false},
		{"/dev/disk/by-uuid/abc", "", "", false},
		{"/dev/sdc", "", "", false},
		{"/dev/md/data", "", "", false},
		{"UUID=0a0e-5d15", "", "", false},
	} {
		vg, lv, ok := lvDevice(c.dev)
		if vg != c.vg || lv != c.lv || ok != c.ok {
			t.Errorf("%s: got %q %q %v, want %q %q %v", c.dev, vg, lv, ok, c.vg, c.lv, c.ok)
		}
	}
}
