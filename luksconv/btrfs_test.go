package luksconv

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/testenv"
)

// TestBtrfsDataVolume converts an EncryptFormatAll data disk holding btrfs (ADE allows it as the
// volume's previous filesystem), made with mkfs.btrfs and cryptsetup: the volume is recognised, its
// filesystem UUID read as blkid reads it (fstab mounts the converted volume by it), and it is
// decrypted in full, with a warning, to the disk's start: byte for byte the filesystem mkfs.btrfs
// made, which `btrfs check --readonly` accepts.
func TestBtrfsDataVolume(t *testing.T) {
	testenv.Need(t, "mkfs.btrfs", "btrfs", "blkid", "cryptsetup")
	testenv.NeedRoot(t)
	dir := t.TempDir()
	const fsSize, hdr = 64 << 20, 16 << 20
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(filepath.Join(root, "projects"), 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.WriteFile(t, filepath.Join(root, "projects"), "data.bin", bytes.Repeat([]byte("luksconv btrfs "), 40000))
	plain := testenv.SparseFile(t, dir, "plain.img", fsSize)
	testenv.Run(t, "mkfs.btrfs", "-q", "-f", "--mixed", "--rootdir", root, plain)
	uuid := strings.TrimSpace(testenv.Run(t, "blkid", "-s", "UUID", "-o", "value", plain))
	want, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}

	// ADE's luksFormat + mkfs on the mapper, offline: the filesystem, 32 MiB more, encrypted in place
	// with the header in the room it makes, cut back to the disk: the data segment is the filesystem.
	disk := testenv.CopyFile(t, plain)
	if err := os.Truncate(disk, fsSize+32<<20); err != nil {
		t.Fatal(err)
	}
	key := testenv.WriteFile(t, dir, "key", []byte("btrfs data disk passphrase"))
	testenv.Run(t, "cryptsetup", "reencrypt", "-q", "--encrypt", "--type", "luks2", "--reduce-device-size", "32M",
		"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", key, disk)
	if err := os.Truncate(disk, hdr+fsSize); err != nil {
		t.Fatal(err)
	}

	src, err := OpenFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ctx := context.Background()
	p, err := NewPlan(ctx, src, PlanOptions{KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Volume.Content != string(ContentBtrfs) || p.Volume.PayloadSize != fsSize {
		t.Fatalf("volume %+v", p.Volume)
	}
	if !hasWarning(p.Warnings, WarnCopiedInFull, "btrfs") {
		t.Errorf("no copied-in-full warning: %+v", p.Warnings)
	}
	out := filepath.Join(dir, "out.raw")
	o, err := CreateOutput(p, out, OutputOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Execute(ctx, p, src, o, ExecuteOptions{}); err != nil {
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
	if len(got) < fsSize || !bytes.Equal(got[:fsSize], want) {
		t.Fatal("the converted disk does not start with the btrfs filesystem mkfs.btrfs made")
	}
	if u := filesystemUUID(bytes.NewReader(got), fsSize, ContentBtrfs); u != uuid {
		t.Errorf("filesystem UUID %q, blkid says %q", u, uuid)
	}
	fsImg := testenv.WriteFile(t, dir, "out.btrfs", got[:fsSize])
	if out, err := testenv.RunErr("btrfs", "check", "--readonly", fsImg); err != nil {
		t.Errorf("btrfs check --readonly: %v\n%s", err, out)
	}
}

func hasWarning(ws []Warning, code WarningCode, sub string) bool {
	for _, w := range ws {
		if w.Code == code && strings.Contains(w.Message, sub) {
			return true
		}
	}
	return false
}
