package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/luksconv/luksconv/internal/recovered"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/spf13/cobra"
)

// panicOutput panics in its third write: a bug on one of Execute's worker goroutines.
type panicOutput struct {
	luksconv.Output
	writes atomic.Int64
}

func (o *panicOutput) WriteAt(p []byte, off int64) (int, error) {
	if o.writes.Add(1) == 3 {
		panic("output bug")
	}
	return o.Output.WriteAt(p, off)
}

// errorReport decodes the one JSON object a failed `azure convert --json` prints.
func errorReport(t *testing.T, so string) azureErrorReport {
	t.Helper()
	var rep azureErrorReport
	dec := json.NewDecoder(strings.NewReader(so))
	if err := dec.Decode(&rep); err != nil || dec.More() {
		t.Fatalf("stdout is not one JSON report (%v):\n%s", err, so)
	}
	return rep
}

// TestAzureConvertWorkerPanic: a panic on a worker goroutine of the upload is the run's error, not the
// end of the process with Go's exit code 2 (permanent to a fleet engine): the run exits 1 with its
// JSON report (retryable), the stack on standard error, the source's grant revoked and the upload
// left open with its journal for a rerun, which then finishes the disk.
func TestAzureConvertWorkerPanic(t *testing.T) {
	f, _ := setupAzure(t, false)
	dir := t.TempDir()
	journal := filepath.Join(dir, "j")
	azureOutputHook = func(_ *uploadJob, o luksconv.Output) luksconv.Output { return &panicOutput{Output: o} }
	t.Cleanup(func() { azureOutputHook = nil })
	args := []string{"azure", "convert", "-q", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES, "--target-disk", "plain",
		"--journal", journal, "--workers", "2", "--json"}
	f.takeCalls()
	so, se, code := runCLI(t, args...)
	azureOutputHook = nil
	rep := errorReport(t, so)
	if code != exitFailure || rep.ExitCode != exitFailure || !rep.Retryable || !strings.Contains(rep.Error, "(panic): output bug") {
		t.Fatalf("worker panic: exit %d, report %+v:\n%s", code, rep, se)
	}
	if !strings.Contains(se, "panicOutput).WriteAt") {
		t.Errorf("the panic's stack is not on standard error:\n%s", se)
	}
	calls := f.takeCalls()
	if !hasCall(calls, "REVOKE snapshot snap") || hasCall(calls, "REVOKE disk plain") {
		t.Errorf("after the panic: calls %q, want the source revoked and the upload kept open", calls)
	}
	if st := f.DiskState(fakeRG, "plain"); st != armcompute.DiskStateActiveUpload {
		t.Errorf("after the panic the new disk is %s, want %s", st, armcompute.DiskStateActiveUpload)
	}
	if _, err := os.Stat(journal); err != nil {
		t.Errorf("no journal kept for a rerun: %v", err)
	}
	if _, se, code := runCLI(t, args...); code != 0 {
		t.Fatalf("rerun: exit %d:\n%s", code, se)
	}
}

// TestRunVMJobsPanic: a panic on the goroutine of one disk of `vm convert` (here Execute given a nil
// plan) is the run's error, which cancels the other disks and exits 1.
func TestRunVMJobsPanic(t *testing.T) {
	jobs := []vmJob{{lun: luksconv.OSDisk, plan: &luksconv.Plan{}}}
	agg := newAggregate(&strings.Builder{}, jobs, true)
	jobs[0].plan = nil
	err := runVMJobs(context.Background(), jobs, 1, 1, agg)
	var pe *recovered.Error
	if !errors.As(err, &pe) || exitCode(err) != exitFailure {
		t.Fatalf("runVMJobs returned %v (exit %d), want the disk's panic (exit %d)", err, exitCode(err), exitFailure)
	}
}

// TestAzureConvertVMDiskPanic: a panic on the goroutine of one disk of a whole-VM run fails that disk
// like an error: the other disks finish, every snapshot's grant is revoked, the VM is untouched, and the
// run exits 1 with its JSON report naming the VM.
func TestAzureConvertVMDiskPanic(t *testing.T) {
	f, _ := setupAzureVM(t)
	jdir := t.TempDir()
	vmID := fakeID("virtualMachines", "vm1")
	azureOutputHook = func(j *uploadJob, o luksconv.Output) luksconv.Output {
		if j.lun == 1 {
			panic("disk bug")
		}
		return o
	}
	t.Cleanup(func() { azureOutputHook = nil })
	f.takeCalls()
	so, se, code := runCLI(t, "azure", "convert", "-q", "--vm", vmID, "--des", fakeDES, "--parallel", "2", "--workers", "1",
		"--recreate-vm", "--json", "--journal-dir", jdir)
	azureOutputHook = nil
	rep := errorReport(t, so)
	if code != exitFailure || rep.ExitCode != exitFailure || !rep.Retryable || rep.VM != vmID || !strings.Contains(rep.Error, "LUN 1: internal error (panic): disk bug") {
		t.Fatalf("disk panic: exit %d, report %+v:\n%s", code, rep, se)
	}
	calls := f.takeCalls()
	grants, revokes := 0, 0
	for _, c := range calls {
		switch {
		case strings.Contains(c, " vm "):
			t.Errorf("the failed run touched the VM: %s", c)
		case strings.HasPrefix(c, "GRANT snapshot "):
			grants++
		case strings.HasPrefix(c, "REVOKE snapshot "):
			revokes++
		}
	}
	if grants == 0 || revokes != grants {
		t.Errorf("%d snapshot grants, %d revoked: %q", grants, revokes, calls)
	}
	for name, want := range map[string]armcompute.DiskState{"osdisk-luksconv": armcompute.DiskStateUnattached, "data0-luksconv": armcompute.DiskStateUnattached,
		"data1-luksconv": armcompute.DiskStateActiveUpload, "data3-luksconv": armcompute.DiskStateUnattached} {
		if got := f.DiskState(fakeRG, name); got != want {
			t.Errorf("after the panic %s is %s, want %s", name, got, want)
		}
	}
}

//go:noinline
func panicWithKey(key [4]uint64) { panic(fmt.Sprintf("command bug %d", len(key))) }

// TestCommandPanic: a panic on a command's own goroutine (here convert's run, holding a key by value)
// exits 1 with the internal-error message and the panic's stack, which names the function but not its
// argument words; the command's deferred clean-up ran. Go's own handling exits 2 and prints them.
func TestCommandPanic(t *testing.T) {
	root := newRootCmd()
	conv, _, err := root.Find([]string{"convert"})
	if err != nil || conv.Name() != "convert" {
		t.Fatalf("no convert command: %v", err)
	}
	cleaned := false
	conv.RunE = func(*cobra.Command, []string) error {
		defer func() { cleaned = true }()
		panicWithKey([4]uint64{0x5ec7e75ec7e7, 0x5ec7e75ec7e8, 0x5ec7e75ec7e9, 0x5ec7e75ec7ea})
		return nil
	}
	var so, se bytes.Buffer
	root.SetArgs([]string{"convert", "--key-file", "k", "in", "out"})
	root.SetOut(&so)
	root.SetErr(&se)
	err = execute(context.Background(), root)
	if err == nil {
		t.Fatal("a panicking command succeeded")
	}
	reportError(&se, err)
	out := se.String()
	if code := exitCode(err); code != exitFailure || !strings.Contains(out, "luksconv: internal error (panic): command bug 4") ||
		!strings.Contains(out, "panicWithKey(...)") {
		t.Fatalf("exit %d, standard error:\n%s", code, out)
	}
	if strings.Contains(out, "5ec7e75ec7e") {
		t.Errorf("the stack shows the key's words:\n%s", out)
	}
	if !cleaned {
		t.Error("the command's deferred clean-up did not run")
	}
}
