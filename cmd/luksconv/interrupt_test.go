package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/luksconv/luksconv/internal/fixture"
)

// TestInterrupt sends SIGINT or SIGTERM to convert at several points: an interrupted run exits 130 and
// leaves nothing behind (no output, no temporary file), the source stays byte-identical, and running
// the command again gives exactly the output of an uninterrupted run.
func TestInterrupt(t *testing.T) {
	set := fixture.Load(t)
	f, _ := set.Get("rhel8-lvm")
	before := sum(t, f.Image)
	ref := filepath.Join(t.TempDir(), "ref.raw")
	if _, se, code := run(t, nil, "convert", "-q", "--workers", "1", "--key-file", f.KeyFiles[0], f.Image, ref); code != 0 {
		t.Fatalf("reference run: exit %d: %s", code, se)
	}
	want := sum(t, ref)

	interrupted := 0
	for i, delay := range []time.Duration{20, 60, 120, 200, 300, 450} {
		dir := t.TempDir()
		out := filepath.Join(dir, "out.raw")
		cmd := exec.Command(binPath, "convert", "-q", "--workers", "1", "--key-file", f.KeyFiles[0], f.Image, out)
		var se bytes.Buffer
		cmd.Stderr = &se
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay * time.Millisecond)
		sig := syscall.SIGINT
		if i%2 == 1 {
			sig = syscall.SIGTERM
		}
		cmd.Process.Signal(sig)
		err := cmd.Wait()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		entries, _ := os.ReadDir(dir)
		switch code {
		case 0: // finished before the signal
			if sum(t, out) != want {
				t.Fatalf("after %v: a completed run differs from the reference", delay*time.Millisecond)
			}
		case exitInterrupted:
			interrupted++
			if len(entries) != 0 {
				t.Fatalf("after %v (%v): an interrupted run left %s behind", delay*time.Millisecond, sig, entries[0].Name())
			}
			// Run again: the result is the uninterrupted output.
			if _, se, code := run(t, nil, "convert", "-q", "--workers", "1", "--key-file", f.KeyFiles[0], f.Image, out); code != 0 {
				t.Fatalf("rerun: exit %d: %s", code, se)
			}
			if sum(t, out) != want {
				t.Fatal("the rerun differs from an uninterrupted run")
			}
		default:
			t.Fatalf("after %v (%v): exit %d, want 0 or %d:\n%s", delay*time.Millisecond, sig, code, exitInterrupted, se.String())
		}
	}
	if interrupted == 0 {
		t.Fatal("no run was interrupted; the delays no longer hit the conversion")
	}
	if sum(t, f.Image) != before {
		t.Fatal("the source image changed")
	}
}
