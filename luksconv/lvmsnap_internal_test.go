package luksconv

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/lvm"
)

// TestLVMSnapshotOrigin: an LV that is the origin of a (thick) snapshot keeps its free space. The
// snapshot reads from the origin every chunk the origin has not overwritten since it was taken, so
// a file deleted from the origin afterwards is free in the origin's bitmaps and still in the
// snapshot. The VG is written by pvcreate, vgcreate and vgcfgrestore (lvs reports the origin), the
// origin's ext4 by mkfs.ext4 -d with the file then removed by debugfs; without the snapshot the same
// LV's free space is skipped, as before.
func TestLVMSnapshotOrigin(t *testing.T) {
	testenv.Need(t, "pvcreate", "vgcreate", "vgcfgbackup", "vgcfgrestore", "lvs", "losetup", "mkfs.ext4", "debugfs")
	testenv.NeedRoot(t)
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 11))
	tree := filepath.Join(dir, "tree")
	os.Mkdir(tree, 0o755)
	testenv.WriteFile(t, tree, "gone", testenv.RandBytes(rng, 4<<20))
	rootFS := filepath.Join(dir, "root.ext4")
	testenv.Run(t, "mkfs.ext4", "-q", "-b", "4096", "-d", tree, rootFS, "16M")
	var blocks []int64
	for _, f := range strings.Fields(testenv.Run(t, "debugfs", "-R", "blocks /gone", rootFS)) {
		if n, err := strconv.ParseInt(f, 10, 64); err == nil { // not the banner
			blocks = append(blocks, n)
		}
	}
	if len(blocks) != 1024 {
		t.Fatalf("debugfs blocks /gone: %d blocks, want 1024", len(blocks))
	}
	testenv.Run(t, "debugfs", "-w", "-R", "rm /gone", rootFS)
	fsb, err := os.ReadFile(rootFS)
	if err != nil {
		t.Fatal(err)
	}

	lv := func(name, id, status, seg string) string {
		return fmt.Sprintf("\t\t%s {\n\t\t\tid = %q\n\t\t\tstatus = [%s]\n\t\t\tflags = []\n\t\t\tsegment_count = 1\n\t\t\tsegment1 {\n%s\t\t\t}\n\t\t}\n", name, id, status, seg)
	}
	linear := func(n, pe int) string {
		return fmt.Sprintf("\t\t\t\tstart_extent = 0\n\t\t\t\textent_count = %d\n\t\t\t\ttype = \"striped\"\n\t\t\t\tstripe_count = 1\n\t\t\t\tstripes = [\"pv0\", %d]\n", n, pe)
	}
	rw := `"READ", "WRITE", "VISIBLE"`
	lvs := lv("root", "RootLV-0000-0000-0000-0000-0000-000001", rw, linear(16, 0)) +
		lv("snap", "SnapLV-0000-0000-0000-0000-0000-000002", rw, linear(4, 16))
	snapshot := lv("snapshot0", "SnapSh-0000-0000-0000-0000-0000-000003", `"READ"`,
		"\t\t\t\tstart_extent = 0\n\t\t\t\textent_count = 16\n\t\t\t\ttype = \"snapshot\"\n\t\t\t\tchunk_size = 8\n\t\t\t\torigin = \"root\"\n\t\t\t\tcow_store = \"snap\"\n")

	for _, tc := range []struct {
		name     string
		lvs      string
		skipRoot bool
	}{{"snapshot", lvs + snapshot, false}, {"no snapshot", lvs, true}} { // skipRoot: the origin's free space is skipped
		t.Run(tc.name, func(t *testing.T) {
			img := testenv.SparseFile(t, t.TempDir(), "pv.img", 32<<20)
			dev, detach := testenv.AttachLoop(t, img)
			sys := testenv.LVMSystemDir(t, dev)
			run := func(args ...string) string { t.Helper(); return testenv.RunLVM(t, sys, args...) }
			run("pvcreate", "-y", "-ff", "--norestorefile", dev)
			run("vgcreate", "-s", "1m", "snapvg", dev)
			testenv.VGRestore(t, sys, "snapvg", testenv.AddToVG(t, testenv.VGBackup(t, sys, "snapvg"), "\tlogical_volumes {\n"+tc.lvs+"\t}"))
			origin := strings.TrimSpace(run("lvs", "--noheadings", "-o", "origin", "snapvg/snap"))
			if want := map[bool]string{false: "root", true: ""}[tc.skipRoot]; origin != want {
				t.Fatalf("lvs: snap's origin %q, want %q", origin, want)
			}
			detach()

			f, err := os.OpenFile(img, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			pv, err := lvm.Open(f, 32<<20)
			if err != nil {
				t.Fatal(err)
			}
			info, ok := pv.Info()
			if !ok {
				t.Fatal("the PV is not in its VG's metadata")
			}
			if _, err := f.WriteAt(fsb, info.PEStart); err != nil {
				t.Fatal(err)
			}
			spans, _, warns := lvmFree(f, 32<<20, 0, 0, "vol", "LVM", map[string]bool{})
			// How many of the deleted file's blocks the plan would skip.
			skipped := 0
			for _, s := range spans {
				if !strings.HasSuffix(s.why, "snapvg/root") {
					continue
				}
				for _, n := range blocks {
					if at := info.PEStart + n*4096; at >= s.off && at < s.off+s.n {
						skipped++
					}
				}
			}
			warned := false
			for _, w := range warns {
				warned = warned || strings.Contains(w.Message, "snapvg/root is the origin of a snapshot")
			}
			switch {
			case tc.skipRoot && (skipped != len(blocks) || warned):
				t.Errorf("without a snapshot: %d of the deleted file's %d blocks skipped, warnings %v", skipped, len(blocks), warns)
			case !tc.skipRoot && (skipped != 0 || !warned):
				t.Errorf("the snapshot's origin: %d of the deleted file's blocks skipped (the snapshot still holds them), warnings %v", skipped, warns)
			}
		})
	}
}
