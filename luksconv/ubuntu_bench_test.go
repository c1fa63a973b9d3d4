package luksconv_test

import (
	"context"
	"testing"

	"github.com/luksconv/luksconv/internal/ubuntufixture"
	"github.com/luksconv/luksconv/luksconv"
)

// BenchmarkPlanUbuntu plans each Ubuntu fixture disk with its guest edits, as every conversion and
// every stage round and cutover of one does: mostly the initrd rewritten without ADE's files,
// re-compressed in its own format and padded back to its blocks on the ext /boot.
//
//	go test -run '^$' -bench BenchmarkPlanUbuntu -benchtime 2x ./luksconv/
func BenchmarkPlanUbuntu(b *testing.B) {
	m := ubuntufixture.Load(b)
	for i := range m.Disks {
		d := &m.Disks[i]
		b.Run(d.Name, func(b *testing.B) {
			src, err := luksconv.OpenFile(m.Path(d.Disk))
			if err != nil {
				b.Fatal(err)
			}
			defer src.Close()
			for b.Loop() {
				p, err := luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{KeyFile: m.Path(m.Key)})
				if err != nil {
					b.Fatal(err)
				}
				p.Close()
			}
		})
	}
}
