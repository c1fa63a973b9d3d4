package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
		// --debug's first line comes after main installed its signal handler: the delays count from
		// there, so a loaded machine cannot deliver the signal while the process is still starting.
		cmd := exec.Command(binPath, "--debug", "convert", "-q", "--workers", "1", "--key-file", f.KeyFiles[0], f.Image, out)
		pr, pw := io.Pipe()
		var se bytes.Buffer
		cmd.Stderr = pw
		started := make(chan struct{})
		copied := make(chan struct{})
		go func() {
			defer close(copied)
			sc := bufio.NewScanner(pr)
			once := false
			for sc.Scan() {
				se.WriteString(sc.Text() + "\n")
				if !once && strings.Contains(sc.Text(), "msg=start") {
					once = true
					close(started)
				}
			}
			io.Copy(io.Discard, pr)
		}()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-started:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatal("convert --debug wrote no start line within 30 s")
		}
		time.Sleep(delay * time.Millisecond)
		sig := syscall.SIGINT
		if i%2 == 1 {
			sig = syscall.SIGTERM
		}
		cmd.Process.Signal(sig)
		err := cmd.Wait()
		pw.Close()
		<-copied
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
