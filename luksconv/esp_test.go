package luksconv_test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/internal/fixture"
	"github.com/luksconv/luksconv/luksconv"
)

// TestESPEdits converts rhel8-lvm with the guest edits and checks the EFI System Partition of the
// output with dosfstools, mtools and grub-editenv.
func TestESPEdits(t *testing.T) {
	for _, tool := range []string{"fsck.fat", "mtype", "grub-editenv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIPPING: %s is not installed (%v); the ESP edits are not checked with the real tools", tool, err)
		}
	}
	set := fixture.Load(t)
	f, ok := set.Get("rhel8-lvm")
	if !ok {
		t.Fatal("no rhel8-lvm fixture")
	}
	key, err := os.ReadFile(f.KeyFiles[0])
	if err != nil {
		t.Fatal(err)
	}
	out, p, _ := convertOpts(t, f.Image, luksconv.PlanOptions{Passphrase: key}, 2)
	for _, w := range warnMessages(p.Warnings) {
		if strings.Contains(w, "FAT") && strings.Contains(w, "not edited") {
			t.Errorf("warning about the ESP: %s", w)
		}
	}
	const envPath, cfgPath = "/boot/efi/EFI/redhat/grubenv", "/boot/efi/EFI/redhat/grub.cfg"
	edited := false
	for _, e := range p.Edits {
		if e.Path == envPath {
			edited = true
			if !strings.HasPrefix(e.Filesystem, "/boot/efi (partition 1)") {
				t.Errorf("ESP edit filesystem %q", e.Filesystem)
			}
		}
	}
	if !edited {
		t.Errorf("no edit of %s in %+v", envPath, p.Edits)
	}
	checked := map[string]string{}
	for _, c := range p.Readiness.Checks {
		checked[c.Name] = c.Status
	}
	for _, want := range []string{envPath, cfgPath} {
		if checked[want] != luksconv.CheckPass {
			t.Errorf("readiness check of %s: %q, want pass (%+v)", want, checked[want], p.Readiness.Checks)
		}
	}
	if !p.Readiness.Ready {
		t.Errorf("not ready: %+v", p.Readiness)
	}

	// Extract partition 1 of the output.
	src, err := luksconv.OpenFile(out)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rep, err := luksconv.Inspect(context.Background(), src, luksconv.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var esp *luksconv.PartitionInfo
	for i := range rep.Partitions {
		if rep.Partitions[i].Content == luksconv.ContentFAT {
			esp = &rep.Partitions[i]
		}
	}
	if esp == nil {
		t.Fatal("no FAT partition in the output")
	}
	dir := t.TempDir()
	if d := os.Getenv("ESP_KEEP"); d != "" {
		dir = d
	}
	img := filepath.Join(dir, "esp.img")
	w, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(w, io.NewSectionReader(src, esp.Offset, esp.Size)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if o, err := exec.Command("fsck.fat", "-n", img).CombinedOutput(); err != nil {
		t.Fatalf("fsck.fat -n: %v\n%s", err, o)
	}
	env, err := exec.Command("mtype", "-i", img, "::EFI/redhat/grubenv").Output()
	if err != nil {
		t.Fatalf("mtype grubenv: %v", err)
	}
	if len(env) != 1024 {
		t.Errorf("grubenv on the ESP is %d bytes, want 1024", len(env))
	}
	if strings.Contains(string(env), "rd.luks.ade") {
		t.Errorf("grubenv on the ESP still names rd.luks.ade:\n%s", env)
	}
	envFile := filepath.Join(dir, "grubenv")
	if err := os.WriteFile(envFile, env, 0o644); err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command("grub-editenv", envFile, "list").CombinedOutput()
	if err != nil {
		t.Fatalf("grub-editenv list: %v\n%s", err, list)
	}
	if !strings.Contains(string(list), "kernelopts=") || !strings.Contains(string(list), "rd.ade=0") {
		t.Errorf("grub-editenv list:\n%s", list)
	}
	cfg, err := exec.Command("mtype", "-i", img, "::EFI/redhat/grub.cfg").Output()
	if err != nil {
		t.Fatalf("mtype grub.cfg: %v", err)
	}
	if !strings.Contains(string(cfg), "blscfg") || strings.Contains(string(cfg), "rd.luks.ade") {
		t.Errorf("grub.cfg on the ESP:\n%s", cfg)
	}
}
