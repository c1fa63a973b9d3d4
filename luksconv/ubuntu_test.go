package luksconv_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/ubuntufixture"
	"github.com/luksconv/luksconv/luksconv"
)

// TestUbuntuOSDisk: on each Ubuntu ADE OS disk of testdata/ubuntu (18.04 LUKS1 with the keyscript,
// 20.04 and 22.04 LUKS2 with crypt-ade-boot) the detached header is found on the ext2 /boot with the
// key file alone. The guest's boot path (initramfs-tools, root=/dev/mapper/osencrypt) is not undone
// yet, so a plan is refused with ErrGuestUnsupported; with KeepGuest and FullCopy the output is the
// plaintext disk byte for byte.
func TestUbuntuOSDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the Ubuntu fixture set")
	}
	m := ubuntufixture.Load(t)
	ctx := context.Background()
	for _, d := range m.Disks {
		t.Run(d.Name, func(t *testing.T) {
			src, err := luksconv.OpenFile(m.Path(d.Disk))
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			key := m.Path(m.Key)
			_, err = luksconv.NewPlan(ctx, src, luksconv.PlanOptions{KeyFile: key})
			if !errors.Is(err, luksconv.ErrGuestUnsupported) || !strings.Contains(err.Error(), "initramfs-tools") {
				t.Fatalf("plan with guest edits: %v", err)
			}
			p, err := luksconv.NewPlan(ctx, src, luksconv.PlanOptions{KeyFile: key, KeepGuest: true, FullCopy: true})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if p.Volume.Partition != d.LUKSPartition || !strings.Contains(p.Volume.HeaderPath, "/boot/luks/osluksheader") {
				t.Errorf("volume %+v", p.Volume)
			}
			out := filepath.Join(t.TempDir(), "out.raw")
			o, err := luksconv.CreateOutput(p, out, luksconv.OutputOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := luksconv.Execute(ctx, p, src, o, luksconv.ExecuteOptions{}); err != nil {
				o.Abort()
				t.Fatal(err)
			}
			if err := o.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(m.Path(d.PlainDisk))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("the --keep-guest --full-copy output differs from the plaintext disk (%d and %d bytes)", len(got), len(want))
			}
		})
	}
}
