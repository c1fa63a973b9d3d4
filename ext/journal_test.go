package ext

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/internal/testenv"
)

// TestJournalLog compares JournalLog with e2fsprogs on every variant: the blocks debugfs maps logical
// blocks 1 to n-1 of the journal inode to (bmap <8> L), n being dumpe2fs's "Total journal blocks":
// everything but the journal superblock; nothing without a journal.
func TestJournalLog(t *testing.T) {
	needE2fs(t)
	total := regexp.MustCompile(`(?m)^Total journal blocks:\s+(\d+)$`)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			img, _ := image(t, v)
			got := openImage(t, img).JournalLog()
			var gotBlocks []string
			for _, r := range got {
				for off := r.Off; off < r.End(); off += v.bs {
					gotBlocks = append(gotBlocks, strconv.FormatInt(off/v.bs, 10))
				}
			}
			if !v.wantJournal {
				if got != nil {
					t.Fatalf("JournalLog() = %v without a journal", got)
				}
				return
			}
			h := testenv.Run(t, "dumpe2fs", "-h", img)
			m := total.FindStringSubmatch(h)
			if m == nil {
				t.Fatalf("dumpe2fs -h prints no total journal blocks:\n%s", h)
			}
			n, _ := strconv.Atoi(m[1])
			// debugfs's blocks command lists the indirect and index blocks too: map each logical block.
			var cmds strings.Builder
			for l := 1; l < n; l++ {
				cmds.WriteString("bmap <8> " + strconv.Itoa(l) + "\n")
			}
			cmdFile := filepath.Join(t.TempDir(), "cmds")
			if err := os.WriteFile(cmdFile, []byte(cmds.String()), 0o600); err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, l := range strings.Split(testenv.Run(t, "debugfs", "-f", cmdFile, img), "\n") {
				if _, err := strconv.ParseUint(strings.TrimSpace(l), 10, 64); err == nil {
					want = append(want, strings.TrimSpace(l))
				}
			}
			if len(want) != n-1 || n < 2 {
				t.Fatalf("debugfs maps %d journal blocks past the superblock, dumpe2fs counts %d in all", len(want), n)
			}
			if strings.Join(gotBlocks, " ") != strings.Join(want, " ") {
				t.Fatalf("JournalLog covers %d blocks %v..., debugfs maps %d after the superblock %v...",
					len(gotBlocks), gotBlocks[:min(4, len(gotBlocks))], n-1, want[:4])
			}
		})
	}
}

// TestJournalLogKernel: the kernel writes transactions into the journal of a mounted filesystem and
// leaves them there on umount; zeroing the log area JournalLog names then leaves a filesystem that
// e2fsck finds clean and the kernel mounts, reads and writes, after which it is clean again.
// (TestMountedSnapshot: a mounted snapshot's journal gives nothing.)
func TestJournalLogKernel(t *testing.T) {
	cp, mnt := mountedCopy(t)
	content := bytes.Repeat([]byte("journalled\n"), 5000)
	for i := range 20 {
		p := filepath.Join(mnt, "small", "j"+strconv.Itoa(i))
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			os.Remove(p)
		}
	}
	testenv.Run(t, "umount", mnt)

	fs := openImage(t, cp)
	log := fs.JournalLog()
	if len(log) == 0 {
		t.Fatal("no journal log after a clean umount")
	}
	f, err := os.OpenFile(cp, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	stale := false
	for _, r := range log {
		b := make([]byte, r.Len)
		if _, err := f.ReadAt(b, r.Off); err != nil {
			t.Fatal(err)
		}
		stale = stale || !bytes.Equal(b, make([]byte, len(b)))
		if _, err := f.WriteAt(make([]byte, r.Len), r.Off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	t.Logf("zeroed %d journal log ranges, %d bytes", len(log), extent.Total(log))
	if !stale {
		t.Fatal("the journal log held no transactions: the test zeroed zeros")
	}
	if err := fsckClean(cp); err != nil {
		t.Fatalf("e2fsck -fn after zeroing the log: %v", err)
	}
	mountExt(t, cp, mnt)
	got, err := os.ReadFile(filepath.Join(mnt, "small", "j0"))
	werr := os.WriteFile(filepath.Join(mnt, "small", "after"), content, 0o644)
	testenv.Run(t, "umount", mnt)
	if err != nil || !bytes.Equal(got, content) || werr != nil {
		t.Fatalf("after zeroing the log: read %d bytes (%v), write %v", len(got), err, werr)
	}
	if err := fsckClean(cp); err != nil {
		t.Fatalf("e2fsck -fn after a mount on the zeroed log: %v", err)
	}
	if b, err := openImage(t, cp).ReadFile("/small/after"); err != nil || !bytes.Equal(b, content) {
		t.Fatalf("ReadFile(/small/after): %d bytes, %v", len(b), err)
	}
}
