package luksconv_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/fixture"
	"github.com/luksconv/luksconv/luksconv"
)

// TestVMPlanArguments: NewVMPlan wants exactly one OS disk and each LUN once; a data disk that the OS
// disk's crypttab does not name is converted on its own, with a warning.
func TestVMPlanArguments(t *testing.T) {
	set := fixture.Load(t)
	osf, _ := set.Get("rhel8-lvm")
	df, _ := set.Get("data-luks2-4k")
	open := func(path string) *luksconv.Source {
		s, err := luksconv.OpenFile(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	osDisk := luksconv.VMDisk{LUN: luksconv.OSDisk, Source: open(osf.Image), Options: luksconv.PlanOptions{KeyFile: osf.KeyFiles[0]}}
	data := luksconv.VMDisk{LUN: 3, Source: open(df.Image), Options: luksconv.PlanOptions{KeyFile: df.KeyFiles[0]}}
	for name, c := range map[string]struct {
		disks []luksconv.VMDisk
		want  error
	}{
		"no OS disk":     {[]luksconv.VMDisk{data}, luksconv.ErrInvalidOption},
		"two OS disks":   {[]luksconv.VMDisk{osDisk, osDisk}, luksconv.ErrAmbiguous},
		"LUN twice":      {[]luksconv.VMDisk{osDisk, data, data}, luksconv.ErrAmbiguous},
		"negative LUN":   {[]luksconv.VMDisk{osDisk, {LUN: -5, Source: data.Source}}, luksconv.ErrInvalidOption},
		"wrong data key": {[]luksconv.VMDisk{osDisk, {LUN: 3, Source: data.Source, Options: luksconv.PlanOptions{KeyFile: osf.KeyFiles[0]}}}, nil},
	} {
		vp, err := luksconv.NewVMPlan(context.Background(), c.disks)
		if c.want == nil {
			var pe *luksconv.PassphraseError
			if !errors.As(err, &pe) || !strings.HasPrefix(err.Error(), "LUN 3: ") {
				t.Errorf("%s: %v, want a passphrase error naming LUN 3", name, err)
			}
			continue
		}
		if !errors.Is(err, c.want) || vp != nil {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	vp, err := luksconv.NewVMPlan(context.Background(), []luksconv.VMDisk{data, osDisk})
	if err != nil {
		t.Fatal(err)
	}
	defer vp.Close()
	if vp.OS == nil || len(vp.Data) != 1 || vp.Data[0].LUN != 3 || vp.Data[0].Plan == nil || vp.Data[0].Mapper != "" {
		t.Fatalf("plan: %+v", vp)
	}
	if len(vp.Warnings) != 1 || !strings.Contains(vp.Warnings[0].Message, "LUN 3: no ADE crypttab line") {
		t.Fatalf("warnings: %+v", vp.Warnings)
	}
}
