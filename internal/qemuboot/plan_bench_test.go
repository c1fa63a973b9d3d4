package qemuboot_test

import (
	"context"
	"os"
	"testing"

	"github.com/luksconv/luksconv/internal/qemuboot"
	"github.com/luksconv/luksconv/luksconv"
)

// BenchmarkPlanBootDisk plans the dracut-built ADE boot disk with its guest edits, as every conversion
// and every stage round and cutover of such a disk does: mostly its gzip initramfs rewritten without
// ADE's hooks, which luksconv's gzip does not fit back into the file's blocks, so re-compressed as xz.
//
//	go test -run '^$' -bench BenchmarkPlanBootDisk -benchtime 3x ./internal/qemuboot/
func BenchmarkPlanBootDisk(b *testing.B) {
	set := qemuboot.Fixture(b)
	key, err := os.ReadFile(set.Key)
	if err != nil {
		b.Fatal(err)
	}
	src, err := luksconv.OpenFile(set.Disk)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	for b.Loop() {
		p, err := luksconv.NewPlan(context.Background(), src, luksconv.PlanOptions{Passphrase: key})
		if err != nil {
			b.Fatal(err)
		}
		p.Close()
	}
}
