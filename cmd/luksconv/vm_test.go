package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/luksconv/luksconv/internal/fixture"
	"github.com/luksconv/luksconv/internal/vmfixture"
)

// TestVMConvert converts an OS disk and a data disk in one run: each output equals what convert makes
// of that disk alone (the OS disk's crypttab names no data volume here), and a run in which one disk
// fails leaves no output at all.
func TestVMConvert(t *testing.T) {
	set := fixture.Load(t)
	osf, _ := set.Get("rhel8-lvm")
	df, _ := set.Get("data-luks2-4k")
	dir := t.TempDir()
	vmArgs := []string{"--os", osf.Image, "--key-file", osf.KeyFiles[0], "--data", "3=" + df.Image, "--data-key", "3=" + df.KeyFiles[0]}

	so, se, code := run(t, nil, append([]string{"vm", "plan"}, vmArgs...)...)
	if code != 0 || !strings.Contains(so, "== OS disk") || !strings.Contains(so, "== LUN 3") || !strings.Contains(so, "LUN 3: no ADE crypttab line") {
		t.Fatalf("vm plan: exit %d\n%s%s", code, so, se)
	}
	out := filepath.Join(dir, "vm")
	os.Mkdir(out, 0o700)
	if _, se, code := run(t, nil, append(append([]string{"vm", "convert", "-q", "--verify"}, vmArgs...), out)...); code != 0 {
		t.Fatalf("vm convert: exit %d: %s", code, se)
	}
	for _, c := range []struct{ image, key, got string }{
		{osf.Image, osf.KeyFiles[0], filepath.Join(out, "os.raw")},
		{df.Image, df.KeyFiles[0], filepath.Join(out, "lun3.raw")},
	} {
		want := filepath.Join(dir, filepath.Base(c.got)+".single")
		if _, se, code := run(t, nil, "convert", "-q", "--key-file", c.key, c.image, want); code != 0 {
			t.Fatalf("convert %s: exit %d: %s", c.image, code, se)
		}
		if sum(t, c.got) != sum(t, want) {
			t.Errorf("%s differs from the single-disk conversion", c.got)
		}
	}

	// A wrong key for the data disk: exit 3, the disk named, nothing written.
	bad := filepath.Join(dir, "bad")
	os.Mkdir(bad, 0o700)
	args := append([]string{"vm", "convert", "-q"}, vmArgs...)
	args[len(args)-1] = "3=" + osf.KeyFiles[0]
	_, se, code = run(t, nil, append(args, bad)...)
	if code != exitWrongKey || !strings.Contains(se, "LUN 3") {
		t.Fatalf("wrong data key: exit %d: %s", code, se)
	}
	if ents, _ := os.ReadDir(bad); len(ents) != 0 {
		t.Fatalf("a failed run left %s", ents[0].Name())
	}
	// The same LUN twice, and a data disk without a key: usage errors.
	for _, a := range [][]string{
		append(append([]string{}, vmArgs...), "--data", "3="+df.Image),
		{"--os", osf.Image, "--key-file", osf.KeyFiles[0], "--data", "4=" + df.Image},
	} {
		if _, se, code := run(t, nil, append(append([]string{"vm", "convert", "-q"}, a...), bad)...); code != exitUsage {
			t.Errorf("%v: exit %d: %s", a, code, se)
		}
	}
}

// TestVMConvertVGMemberMissing: the fixture VM's lun4 holds one PV of datavg, lun5 the other. A run
// given lun4 without lun5 stops before writing anything: exit 2, the disk, the VG and the missing PV
// named, with the hint to add the disk. With lun5 (and the crypt-on-LVM disk lun7) it converts.
func TestVMConvertVGMemberMissing(t *testing.T) {
	m := vmfixture.Load(t)
	lun4, _ := m.Disk("lun4")
	lun5, _ := m.Disk("lun5")
	lun7, _ := m.Disk("lun7")
	pv1, _ := m.DataVG.PV("pv1")
	args := []string{"vm", "convert", "-q", "--os", m.Path(m.OS.File), "--key-file", m.Path(m.OS.KeyFile),
		"--data", "4=" + m.Path(lun4.File), "--data-key", "4=" + m.Path(lun4.KeyFile)}
	out := filepath.Join(t.TempDir(), "vm")
	os.Mkdir(out, 0o700)
	_, se, code := run(t, nil, append(args, out)...)
	if code != exitUsage {
		t.Fatalf("lun4 without lun5: exit %d, want %d: %s", code, exitUsage, se)
	}
	for _, want := range []string{"LUN 4", "volume group datavg", "PV pv1", pv1.UUID, "none of the disks given", "--data"} {
		if !strings.Contains(se, want) {
			t.Errorf("stderr does not say %q:\n%s", want, se)
		}
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Fatalf("a refused run left %s", ents[0].Name())
	}

	args = append(args, "--data", "5="+m.Path(lun5.File), "--data-key", "5="+m.Path(lun5.KeyFile),
		"--data", "7="+m.Path(lun7.File), "--data-key", "7="+m.Path(lun7.KeyFile), "--verify")
	if _, se, code := run(t, nil, append(args, out)...); code != 0 {
		t.Fatalf("lun4 + lun5 + lun7: exit %d: %s", code, se)
	}
	for _, f := range []string{"os.raw", "lun4.raw", "lun5.raw", "lun7.raw"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
}

// TestVMConvertCommitFailure: when the last output cannot be committed (here a directory appeared at
// its name during the run), the outputs committed before it go too: "if one fails, none is left behind".
// The run is stopped once its temporary files exist, the directory made, and the run continued.
func TestVMConvertCommitFailure(t *testing.T) {
	set := fixture.Load(t)
	osf, _ := set.Get("rhel8-lvm")
	df, _ := set.Get("data-luks2-4k")
	out := filepath.Join(t.TempDir(), "vm")
	os.Mkdir(out, 0o700)
	cmd := exec.Command(binPath, "vm", "convert", "-q", "--os", osf.Image, "--key-file", osf.KeyFiles[0],
		"--data", "3="+df.Image, "--data-key", "3="+df.KeyFiles[0], out)
	var se strings.Builder
	cmd.Stderr = &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	for i := 0; i < 20000 && !stopped; i++ {
		if m, _ := filepath.Glob(filepath.Join(out, ".lun3.raw.partial-*")); len(m) > 0 {
			cmd.Process.Signal(syscall.SIGSTOP)
			stopped = true
			break
		}
		time.Sleep(time.Millisecond)
	}
	if !stopped {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("the run's temporary outputs never appeared")
	}
	if err := os.Mkdir(filepath.Join(out, "lun3.raw"), 0o700); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGCONT)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("vm convert: %v, want a failure: %s", err, se.String())
	}
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		if e.Name() != "lun3.raw" {
			t.Errorf("a failed run left %s behind (stderr: %s)", e.Name(), se.String())
		}
	}
}
