package ext

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

// wantRefused checks that Writable, FreeSpace and Rewrite all refuse fs
// with an error wrapping ErrCannotEdit (and extra, when not nil) whose
// message contains substr, and that reading still works.
func wantRefused(t *testing.T, fs *FS, extra error, substr string) {
	t.Helper()
	errs := map[string]error{"Writable": fs.Writable()}
	_, errs["FreeSpace"] = fs.FreeSpace()
	_, errs["Rewrite"] = fs.Rewrite("/small/f1000", []byte("x"), nil)
	for what, err := range errs {
		if !errors.Is(err, ErrCannotEdit) || extra != nil && !errors.Is(err, extra) || !strings.Contains(err.Error(), substr) {
			t.Errorf("%s = %v, want ErrCannotEdit (and %v) saying %q", what, err, extra, substr)
		}
	}
	if _, err := fs.ReadFile("/deep/a/b/c/d/file.txt"); err != nil {
		t.Errorf("reading a refused filesystem: %v", err)
	}
}

func TestStateRefusals(t *testing.T) {
	needE2fs(t)
	img, _ := image(t, variantByName(t, "ext4-4k"))
	for _, c := range []struct {
		name   string
		cmds   []string
		extra  error
		substr string
	}{
		{"needs_recovery", []string{"feature needs_recovery"}, ErrNeedsRecovery, "needs_recovery"},
		{"journal-not-empty", []string{"jo", "jw -b 300 /etc/hostname", "jc", "feature -needs_recovery"}, ErrNeedsRecovery, "not empty"},
		{"errors", []string{"ssv state 3"}, nil, "errors"},
		{"not-clean", []string{"ssv state 0"}, nil, "not cleanly unmounted"},
		{"orphan-list", []string{"ssv last_orphan 13"}, nil, "orphan inodes are pending"},
		{"orphan-file", []string{"feature orphan_file", "feature orphan_present"}, nil, "orphan file"},
		{"unknown-ro-compat", []string{"feature FEATURE_R20"}, nil, "unknown ro_compat"},
		{"shared-blocks", []string{"feature shared_blocks"}, nil, "shared"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cp := copyImage(t, img)
			if len(c.cmds) > 1 && c.cmds[0] == "jo" {
				cmdFile := filepath.Join(t.TempDir(), "cmds")
				if err := os.WriteFile(cmdFile, []byte(strings.Join(c.cmds[:3], "\n")+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				testenv.Run(t, "debugfs", "-w", "-f", cmdFile, cp)
				debugfsW(t, cp, c.cmds[3:]...)
			} else {
				debugfsW(t, cp, c.cmds...)
			}
			fs := openImage(t, cp)
			wantRefused(t, fs, c.extra, c.substr)
		})
	}
	t.Run("unknown-incompat", func(t *testing.T) {
		cp := copyImage(t, img)
		debugfsW(t, cp, "feature FEATURE_I20")
		if _, err := Open(testenv.Open(t, cp)); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "0x100000") {
			t.Errorf("Open = %v, want ErrUnsupported naming the bit", err)
		}
	})
	t.Run("journal_dev", func(t *testing.T) {
		jdev := testenv.SparseFile(t, t.TempDir(), "journal.img", 8<<20)
		testenv.Run(t, "mkfs.ext4", "-q", "-F", "-O", "journal_dev", "-b", "4096", jdev)
		if _, err := Open(testenv.Open(t, jdev)); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "journal_dev") {
			t.Errorf("Open(external journal) = %v, want ErrUnsupported", err)
		}
	})
}

// TestMMP: a cleanly unmounted MMP filesystem is writable; one whose MMP
// block says a node has it open is not.
func TestMMP(t *testing.T) {
	needE2fs(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "mmp.img")
	testenv.Run(t, "mkfs.ext4", "-q", "-F", "-O", "mmp", "-b", "4096", img, "32M")
	fs := openImage(t, img)
	if err := fs.Writable(); err != nil {
		t.Fatalf("fresh MMP filesystem: %v", err)
	}
	// What a node that has it mounted writes (debugfs -w would wait for
	// the MMP interval; the sequence is all that matters here).
	data := readImage(t, img)
	binary.LittleEndian.PutUint32(data[int64(fs.SB.MMPBlock)*fs.bs+4:], 0x12345)
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	fs = openImage(t, img)
	if err := fs.Writable(); !errors.Is(err, ErrCannotEdit) || !strings.Contains(err.Error(), "in use") {
		t.Errorf("Writable = %v, want a refusal naming MMP", err)
	}
}

// TestMountedSnapshot copies an image while it is mounted, as a snapshot of
// a running VM's disk would be: needs_recovery is set and the journal
// holds transactions. Everything readable must still be read; nothing may
// be edited and no free space (nor journal log area) is offered.
func TestMountedSnapshot(t *testing.T) {
	cp, mnt := mountedCopy(t)
	if err := os.WriteFile(filepath.Join(mnt, "small", "new"), []byte("written while mounted\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "sync", "-f", mnt)
	snap := filepath.Join(t.TempDir(), "snap.img")
	testenv.Run(t, "cp", "--sparse=always", cp, snap)
	testenv.Run(t, "umount", mnt)

	fs := openImage(t, snap)
	if !fs.SB.NeedsRecovery() {
		t.Fatal("the snapshot of a mounted filesystem has no needs_recovery")
	}
	if len(fs.Warnings) == 0 || !strings.Contains(strings.Join(fs.Warnings, "\n"), "needs_recovery") {
		t.Errorf("warnings %q do not mention needs_recovery", fs.Warnings)
	}
	wantRefused(t, fs, ErrNeedsRecovery, "needs_recovery")
	if got := fs.JournalLog(); got != nil {
		t.Errorf("a mounted snapshot's JournalLog() = %v", got)
	}
	// The unmounted image has replayed everything: writable again, and
	// the new file is there.
	fs = openImage(t, cp)
	if err := fs.Writable(); err != nil {
		t.Errorf("after umount: %v", err)
	}
	if got, err := fs.ReadFile("/small/new"); err != nil || !bytes.Equal(got, []byte("written while mounted\n")) {
		t.Errorf("ReadFile(/small/new) = %q, %v", got, err)
	}
	if err := fsckClean(cp); err != nil {
		t.Fatal(err)
	}
}
