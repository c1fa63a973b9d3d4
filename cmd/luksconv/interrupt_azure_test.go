package main

import (
	"bytes"
	"context"
	"math/rand"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/luksconv/luksconv/internal/azurefake"
	"github.com/luksconv/luksconv/internal/azurite"
)

// markWriter is a standard error that closes hit when a line holding mark was written.
type markWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	mark string
	hit  chan struct{}
	seen bool
}

func (w *markWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.seen && strings.Contains(w.buf.String(), w.mark) {
		w.seen = true
		close(w.hit)
	}
	return len(p), nil
}

func (w *markWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// runCLISignalled runs the command in this process behind main's signal handling (signal.NotifyContext
// for SIGINT and SIGTERM) and sends the process sig, delay after a line holding mark was written to
// standard error. It reports whether the signal was sent before the command returned.
func runCLISignalled(t *testing.T, sig syscall.Signal, mark string, delay time.Duration, args ...string) (string, string, int, bool) {
	t.Helper()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var so bytes.Buffer
	se := &markWriter{mark: mark, hit: make(chan struct{})}
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&so)
	root.SetErr(se)
	root.SetIn(strings.NewReader(""))
	finished, sent := make(chan struct{}), make(chan bool, 1)
	go func() {
		select {
		case <-se.hit:
			time.Sleep(delay)
			select {
			case <-finished:
				sent <- false
			default:
				syscall.Kill(os.Getpid(), sig)
				sent <- true
			}
		case <-finished:
			sent <- false
		}
	}()
	err := execute(ctx, root)
	close(finished)
	if <-sent {
		// The handler must have taken the signal before stop() restores the default action, which
		// would end the test binary.
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the signal did not reach the handler")
		}
		if err == nil {
			return so.String(), se.String(), 0, false
		}
	}
	if err != nil {
		reportError(se, err)
	}
	return so.String(), se.String(), exitCode(err), ctx.Err() != nil
}

// interruptUpload runs the azure convert args, whose target disk is target, and sends SIGINT a random
// delay below maxDelay (seed logged) after the first progress event; the run must exit 130. An upload
// that ends before the signal (Azurite is fast) is not what the caller wants to see: its disk and blob
// are deleted, the fake's calls forgotten, and the run tried again with half the delay.
func (f *fakeAzure) interruptUpload(t *testing.T, target string, maxDelay time.Duration, args ...string) (so, se string, delay time.Duration) {
	t.Helper()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewSource(seed))
	for try := 0; try < 6; try, maxDelay = try+1, max(maxDelay/2, time.Microsecond) {
		delay = time.Duration(r.Int63n(int64(maxDelay)))
		so, se, code, signalled := runCLISignalled(t, syscall.SIGINT, `msg="execute progress"`, delay, args...)
		if signalled {
			if code != exitInterrupted {
				t.Fatalf("SIGINT %v after the first progress: exit %d, want %d:\n%s", delay, code, exitInterrupted, se)
			}
			return so, se, delay
		}
		if code != 0 {
			t.Fatalf("azure convert: exit %d:\n%s", code, se)
		}
		t.Logf("the upload ended within %v of its first progress; deleting disk %s and trying again", delay, target)
		f.Lock()
		delete(f.Disks, azurefake.Key(fakeRG, target))
		f.Unlock()
		if _, err := f.az.ContainerClient(t, "disks").NewBlobClient(target+".vhd").Delete(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		f.takeCalls()
	}
	t.Fatal("no upload was interrupted in six tries")
	return
}

// TestInterruptAzureConvert interrupts `azure convert` with SIGINT during the upload, against the SDK
// fakes and Azurite: it exits 130, revokes the snapshot's read grant, keeps the new disk uploading (not
// revoked: that would end the upload, and the fake refuses it with InvalidVhd as Azure does until the
// footer is written) with a write SAS that expires when the run asked, keeps the journal, says so and
// prints no secret; the same command then grants write access again, resumes from the journal and the
// disk equals a local conversion.
//
// The fakes record the ARM calls; Azurite enforces every SAS's expiry, but knows nothing of grants, so a
// revocation is asserted as the calls made, not as a refused SAS.
func TestInterruptAzureConvert(t *testing.T) {
	f, fx := setupAzure(t, false)
	dir := t.TempDir()
	want := localConversion(t, fx, dir)
	before := sum(t, fx.Image)
	journal := filepath.Join(dir, "j")
	args := []string{"--debug", "azure", "convert", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES,
		"--target-disk", "plain", "--journal", journal, "--workers", "1", "--json", "--write-access", "20m"}

	so, se, delay := f.interruptUpload(t, "plain", 30*time.Millisecond, args...)
	sec := fixtureSecrets(t, fx)
	for _, u := range f.sas {
		sec.addSAS(t, u)
	}
	sec.check(t, "the standard output of an interrupted azure convert", []byte(so))
	sec.check(t, "the standard error of an interrupted azure convert", []byte(se))
	f.assertNoSAS(t, so+se)
	c := f.takeCalls()
	t.Logf("SIGINT %v after the first progress: calls %q", delay, c)
	for _, w := range []string{"GRANT snapshot snap Read", "REVOKE snapshot snap", "PUT disk plain", "GRANT disk plain Write"} {
		if !hasCall(c, w) {
			t.Errorf("interrupted run: no %q in calls %q", w, c)
		}
	}
	if slices.Contains(c, "DELETE disk plain") || slices.Contains(c, "REVOKE disk plain") {
		t.Errorf("the interrupted run ended the upload or deleted the new disk: %q", c)
	}
	if st := f.DiskState(fakeRG, "plain"); st != armcompute.DiskStateActiveUpload {
		t.Errorf("after the interruption the disk is %s, want %s (not attachable, resumable)", st, armcompute.DiskStateActiveUpload)
	}
	for _, w := range []string{`op="keep write access for a resume"`, `op="revoke read access"`} {
		if !strings.Contains(se, w) {
			t.Errorf("the interrupted run's debug output lacks %q", w)
		}
	}
	// The SAS lives as long as --write-access asked, and the run says until when.
	if exp, ok := f.writeExpiry("plain"); !ok {
		t.Error("no write SAS was handed out")
	} else if d := time.Until(exp); d < 15*time.Minute || d > 20*time.Minute {
		t.Errorf("the write SAS expires in %v, want the 20m --write-access asked", d)
	} else if !strings.Contains(se, "stays open so that the same command resumes it (journal "+journal+")") ||
		!strings.Contains(se, "its write access ends at "+exp.UTC().Format(time.RFC3339)[:14]) {
		t.Errorf("the interrupted run does not say the upload stays open and until when (%s):\n%s", exp.UTC().Format(time.RFC3339), se)
	}
	if strings.Contains(se, `op="finish upload`) {
		t.Error("the interrupted run finished the upload")
	}
	jb, err := os.ReadFile(journal)
	if err != nil || len(jb) == 0 {
		t.Fatalf("the interrupted run left no journal to resume from (%d bytes): %v", len(jb), err)
	}
	sec.check(t, "the journal", jb)
	jbytes, records := journalWritten(jb)

	// The same command again resumes the upload into the same disk.
	so, se, code := runCLI(t, args...)
	for _, u := range f.sas {
		sec.addSAS(t, u)
	}
	sec.check(t, "the output of the rerun", []byte(so+se))
	c = f.takeCalls()
	if code != 0 {
		t.Fatalf("rerun: exit %d:\n%s", code, se)
	}
	for _, w := range []string{"GRANT disk plain Write", "REVOKE disk plain", "REVOKE snapshot snap"} {
		if !hasCall(c, w) {
			t.Errorf("rerun: no %q in calls %q", w, c)
		}
	}
	if slices.Contains(c, "DELETE disk plain") {
		t.Errorf("the rerun deleted the disk: %q", c)
	}
	if !strings.Contains(se, "Resuming the upload to "+fakeID("disks", "plain")) {
		t.Errorf("the rerun does not say it resumes:\n%s", se)
	}
	resumed, written := reportBytes(t, so)
	t.Logf("journal %d bytes, %d write records (%d bytes); the rerun resumed %d bytes and wrote %d",
		len(jb), records, jbytes, resumed, written)
	if resumed != jbytes {
		t.Errorf("the journal records %d bytes written, the rerun resumed %d", jbytes, resumed)
	}
	if st := f.DiskState(fakeRG, "plain"); st != armcompute.DiskStateUnattached {
		t.Errorf("after the rerun the disk is %s, want %s", st, armcompute.DiskStateUnattached)
	}
	if _, err := os.Stat(journal); !os.IsNotExist(err) {
		t.Errorf("the journal stays after the completed rerun: %v", err)
	}
	got := download(t, f.az.BlobSAS(t, "disks", "plain.vhd", azurite.ReadSAS, time.Hour), int64(len(want)))
	if !bytes.Equal(got, want) {
		t.Fatal("after an interruption and a rerun, the uploaded disk differs from the local conversion")
	}
	if sum(t, fx.Image) != before {
		t.Fatal("the source image changed")
	}
	sec.checkDir(t, dir)
}

// TestAzureConvertRerun: when the new disk's write SAS has expired (Azurite refuses it, as Azure does),
// `azure convert` stops with a line saying so and what to do, leaves the disk uploading, and the same
// command (which finds no journal: nothing was written) grants write access anew and completes the disk.
// A rerun never touches a target disk that is not its own unfinished upload.
func TestAzureConvertRerun(t *testing.T) {
	f, fx := setupAzure(t, false)
	dir := t.TempDir()
	want := localConversion(t, fx, dir)
	args := []string{"azure", "convert", "-q", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES,
		"--target-disk", "plain", "--journal", filepath.Join(dir, "j")}
	f.Lock()
	f.expired = true
	f.Unlock()
	_, se, code := runCLI(t, args...)
	if code == 0 || code == exitInterrupted {
		t.Fatalf("upload with an expired write SAS: exit %d:\n%s", code, se)
	}
	for _, w := range []string{"403", "it may have been revoked or have expired early (run the same command again to grant it anew and resume)", "stays open so that the same command resumes it"} {
		if !strings.Contains(se, w) {
			t.Errorf("the refused upload does not say %q:\n%s", w, se)
		}
	}
	if st := f.DiskState(fakeRG, "plain"); st != armcompute.DiskStateActiveUpload {
		t.Errorf("after the refused upload the disk is %s, want %s", st, armcompute.DiskStateActiveUpload)
	}
	f.Lock()
	f.expired = false
	f.Unlock()
	// A rerun that asks for another disk than the one the first run created is refused before any
	// grant, unfinished or finished: it would go on into that disk and report the flag as applied.
	otherSKU := append(slices.Clone(args), "--sku", string(armcompute.DiskStorageAccountTypesStandardSSDLRS))
	checkOtherSKU := func(what string) {
		t.Helper()
		f.Lock()
		f.Calls = nil
		f.Unlock()
		if _, se, code := runCLI(t, otherSKU...); code != exitUsage || !strings.Contains(se, "--sku StandardSSD_LRS (the disk is Premium_LRS)") {
			t.Errorf("rerun into %s with another --sku: exit %d, want %d naming the flag:\n%s", what, code, exitUsage, se)
		}
		f.Lock()
		defer f.Unlock()
		for _, c := range f.Calls {
			if strings.HasPrefix(c, "GRANT disk") {
				t.Errorf("the refused rerun into %s called %q", what, c)
			}
		}
	}
	checkOtherSKU("the unfinished disk")
	if _, se, code = runCLI(t, args...); code != 0 {
		t.Fatalf("rerun: exit %d:\n%s", code, se)
	}
	checkOtherSKU("the finished disk")
	if !strings.Contains(se, "Resuming the upload to "+fakeID("disks", "plain")+" (no journal at ") {
		t.Errorf("the rerun does not say it resumes without a journal:\n%s", se)
	}
	got := download(t, f.az.BlobSAS(t, "disks", "plain.vhd", azurite.ReadSAS, time.Hour), int64(len(want)))
	if !bytes.Equal(got, want) {
		t.Fatal("after an expired write SAS and a rerun, the uploaded disk differs from the local conversion")
	}

	// A finished disk of this plan (a rerun after a finish that outlasted its wait) is not written
	// again: with --verify it is read back and the run goes on; another upload of that name is refused
	// with no grant.
	f.Lock()
	other := *f.Disks[azurefake.Key(fakeRG, "plain")]
	op := *other.Properties
	op.DiskState = to.Ptr(armcompute.DiskStateActiveUpload)
	other.Properties, other.Tags = &op, map[string]*string{"luksconv-plan": to.Ptr("0123")}
	f.Disks[azurefake.Key(fakeRG, "other")] = &other
	f.Calls = nil
	f.Unlock()
	so, se, code := runCLI(t, append(slices.Clone(args), "--verify", "--json")...)
	if code != 0 || !strings.Contains(se, fakeID("disks", "plain")+" was uploaded by an earlier run") || !strings.Contains(so, `"already_uploaded": true`) {
		t.Errorf("rerun into its finished disk: exit %d:\n%s%s", code, so, se)
	}
	f.Lock()
	for _, c := range f.Calls {
		if strings.HasPrefix(c, "GRANT disk plain Write") || strings.HasPrefix(c, "PUT disk") {
			t.Errorf("a rerun into its finished disk called %q", c)
		}
	}
	f.Calls = nil
	f.Unlock()
	for _, target := range []string{"other"} {
		args[8] = target
		_, se, code := runCLI(t, args...)
		t.Logf("rerun into %s: exit %d: %s", target, code, se)
		if code != exitOutput || !strings.Contains(se, "is not this conversion's unfinished upload; choose another --target-disk") {
			t.Errorf("rerun into the existing disk %s: exit %d, want %d and a line saying why:\n%s", target, code, exitOutput, se)
		}
	}
	f.Lock()
	defer f.Unlock()
	for _, c := range f.Calls {
		if strings.HasPrefix(c, "GRANT disk") || strings.HasPrefix(c, "PUT disk") {
			t.Errorf("a refused rerun called %q", c)
		}
	}
}

// TestAzureConvertVerify: --verify reads the finished disk back through a read grant (revoked after) and
// checks it against the plan; when the disk differs (one page changed behind the upload's back) the run
// fails with the verify exit code and leaves the VM alone although --recreate-vm was asked.
func TestAzureConvertVerify(t *testing.T) {
	f, _ := setupAzure(t, false)
	dir := t.TempDir()
	convert := func(target string, extra ...string) (string, int, []string) {
		f.takeCalls()
		args := append([]string{"azure", "convert", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES,
			"--target-disk", target, "--journal", filepath.Join(dir, target+".j"), "--verify"}, extra...)
		_, se, code := runCLI(t, args...)
		return se, code, f.takeCalls()
	}
	// readBack checks the read grant of the new disk came after its upload ended, and was revoked.
	readBack := func(target string, calls []string) {
		t.Helper()
		fin := slices.Index(calls, "REVOKE disk "+target)
		rd := slices.IndexFunc(calls, func(c string) bool { return strings.HasPrefix(c, "GRANT disk "+target+" Read ") })
		if fin < 0 || rd < fin || !slices.Contains(calls[rd:], "REVOKE disk "+target) {
			t.Errorf("%s: want the upload finished, then a read grant, then its revoke: %q", target, calls)
		}
	}

	se, code, calls := convert("plain")
	if code != 0 || !strings.Contains(se, "Verify "+fakeID("disks", "plain")+": PASS") {
		t.Fatalf("azure convert --verify: exit %d, no PASS line:\n%s", code, se)
	}
	readBack("plain", calls)

	f.Lock()
	f.corruptOnRead = "bad"
	f.Unlock()
	se, code, calls = convert("bad", "--recreate-vm", "--vm", fakeID("virtualMachines", "vm1"))
	if code != exitVerifyFailed || !strings.Contains(se, "Verify "+fakeID("disks", "bad")+": FAIL") || !strings.Contains(se, "mismatches: 1 ranges, ") {
		t.Fatalf("azure convert --verify of a changed disk: exit %d, want %d and the mismatch:\n%s", code, exitVerifyFailed, se)
	}
	if !strings.Contains(se, "hint: do not attach "+fakeID("disks", "bad")+": delete it") {
		t.Errorf("the failed verification does not say what to do with the disk:\n%s", se)
	}
	readBack("bad", calls)
	for _, c := range calls {
		if strings.Contains(c, " vm ") {
			t.Errorf("the VM was touched although verification failed: %q", c)
		}
	}

	// A footer that fails its checksum is a disk that differs from the plan too: exit 9 with the footer
	// named and the hint, not the exit code of a damaged input (5).
	f.Lock()
	f.corruptFooterOnRead = "badfooter"
	f.Unlock()
	se, code, calls = convert("badfooter", "--recreate-vm", "--vm", fakeID("virtualMachines", "vm1"))
	if code != exitVerifyFailed || !strings.Contains(se, "footer") || !strings.Contains(se, "hint: do not attach "+fakeID("disks", "badfooter")+": delete it") {
		t.Fatalf("azure convert --verify of a disk whose footer is damaged: exit %d, want %d, the footer named and the hint:\n%s", code, exitVerifyFailed, se)
	}
	readBack("badfooter", calls)
	for _, c := range calls {
		if strings.Contains(c, " vm ") {
			t.Errorf("the VM was touched although verification failed: %q", c)
		}
	}
}

// TestInterruptAzureConvertSourceDisk: with --source-disk, luksconv snapshots the disk; after an
// interruption the same command must read that snapshot again (a new one could hold other data), not
// take another, and resume into the same disk. The target is tagged with the snapshot's name.
func TestInterruptAzureConvertSourceDisk(t *testing.T) {
	f, fx := setupAzure(t, false)
	dir := t.TempDir()
	want := localConversion(t, fx, dir)
	// The ADE OS disk the snapshot "snap" was taken from, as the fake's snapshots copy it.
	f.Lock()
	snap := f.Snapshots[azurefake.Key(fakeRG, "snap")]
	f.Disks[azurefake.Key(fakeRG, "osdisk")] = &armcompute.Disk{
		ID: to.Ptr(fakeID("disks", "osdisk")), Name: to.Ptr("osdisk"), Location: snap.Location, Zones: []*string{to.Ptr("1")},
		SKU: &armcompute.DiskSKU{Name: to.Ptr(armcompute.DiskStorageAccountTypesPremiumLRS)},
		Properties: &armcompute.DiskProperties{DiskSizeBytes: snap.Properties.DiskSizeBytes, OSType: snap.Properties.OSType,
			HyperVGeneration: snap.Properties.HyperVGeneration, DiskState: to.Ptr(armcompute.DiskStateReserved),
			EncryptionSettingsCollection: snap.Properties.EncryptionSettingsCollection},
	}
	f.Unlock()
	journal := filepath.Join(dir, "j")
	args := []string{"--debug", "azure", "convert", "--source-disk", fakeID("disks", "osdisk"), "--des", fakeDES,
		"--target-disk", "plain", "--journal", journal, "--workers", "1", "--json"}

	f.interruptUpload(t, "plain", 30*time.Millisecond, args...)
	c := f.takeCalls()
	i := slices.IndexFunc(c, func(s string) bool { return strings.HasPrefix(s, "PUT snapshot plain-luksconv-src-") })
	if i < 0 {
		t.Fatalf("no snapshot taken: %q", c)
	}
	snapName := strings.TrimPrefix(c[i], "PUT snapshot ")
	f.Lock()
	tag := f.DiskPut.Tags["luksconv-source"]
	f.Unlock()
	if tag == nil || *tag != snapName {
		t.Errorf("the new disk's luksconv-source tag is %v, want %q", tag, snapName)
	}
	jb, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	jbytes, _ := journalWritten(jb)

	so, se, code := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("rerun: exit %d:\n%s", code, se)
	}
	c = f.takeCalls()
	if slices.ContainsFunc(c, func(s string) bool { return strings.HasPrefix(s, "PUT snapshot") }) {
		t.Errorf("the rerun took another snapshot: %q", c)
	}
	if !strings.Contains(se, "Reading snapshot "+fakeID("snapshots", snapName)+" again") ||
		!strings.Contains(se, "Resuming the upload to "+fakeID("disks", "plain")+" (journal ") {
		t.Errorf("the rerun does not say it reads the same snapshot and resumes:\n%s", se)
	}
	resumed, _ := reportBytes(t, so)
	t.Logf("journal %d bytes written; the rerun resumed %d", jbytes, resumed)
	if resumed != jbytes {
		t.Errorf("the journal records %d bytes written, the rerun resumed %d", jbytes, resumed)
	}
	got := download(t, f.az.BlobSAS(t, "disks", "plain.vhd", azurite.ReadSAS, time.Hour), int64(len(want)))
	if !bytes.Equal(got, want) {
		t.Fatal("after an interruption and a rerun from --source-disk, the uploaded disk differs from the local conversion")
	}
}

// TestAzureConvertFinishFails: when ending the upload fails (the revoke is refused), the run fails, keeps
// the journal and says the upload stays open; the rerun writes nothing again and only finishes.
func TestAzureConvertFinishFails(t *testing.T) {
	f, _ := setupAzure(t, false)
	journal := filepath.Join(t.TempDir(), "j")
	args := []string{"azure", "convert", "-q", "--json", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES,
		"--target-disk", "plain", "--journal", journal}
	f.Lock()
	f.FailRevoke = "InternalServerError"
	f.Unlock()
	_, se, code := runCLI(t, args...)
	if code == 0 || !strings.Contains(se, "stays open so that the same command resumes it") {
		t.Fatalf("refused revoke: exit %d:\n%s", code, se)
	}
	if _, err := os.Stat(journal); err != nil {
		t.Fatalf("the journal is gone after a failed finish: %v", err)
	}
	f.Lock()
	f.FailRevoke = ""
	f.Unlock()
	so, se, code := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("rerun: exit %d:\n%s", code, se)
	}
	resumed, written := reportBytes(t, so)
	if written != 0 || resumed == 0 {
		t.Errorf("the rerun after a failed finish wrote %d bytes and resumed %d; want 0 written, all resumed", written, resumed)
	}
	if st := f.DiskState(fakeRG, "plain"); st != armcompute.DiskStateUnattached {
		t.Errorf("after the rerun the disk is %s", st)
	}
}

// TestAzureConvertStaleJournal: an interrupted upload leaves its journal; its disk is then deleted (as
// luksconv's hints suggest, to start again) and the same command creates the disk afresh, whose blob
// exists empty at once, as on Azure. The old journal is discarded, not applied: the new disk equals a
// local conversion (the journal's ranges were skipped before, leaving them empty).
func TestAzureConvertStaleJournal(t *testing.T) {
	f, fx := setupAzure(t, false)
	dir := t.TempDir()
	want := localConversion(t, fx, dir)
	journal := filepath.Join(dir, "j")
	args := []string{"--debug", "azure", "convert", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES,
		"--target-disk", "plain", "--journal", journal, "--workers", "1", "--json", "--write-access", "20m"}
	f.interruptUpload(t, "plain", 30*time.Millisecond, args...)
	jb, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := journalWritten(jb); n == 0 {
		t.Skip("nothing was journalled before the interruption") // the test then shows nothing
	}
	cc := f.az.ContainerClient(t, "disks")
	props, err := cc.NewBlobClient("plain.vhd").GetProperties(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	f.Lock()
	delete(f.Disks, azurefake.Key(fakeRG, "plain"))
	f.Unlock()
	if _, err := cc.NewBlobClient("plain.vhd").Delete(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.NewPageBlobClient("plain.vhd").Create(context.Background(), *props.ContentLength, nil); err != nil {
		t.Fatal(err)
	}
	so, se, code := runCLI(t, args...)
	if code != 0 || !strings.Contains(se, "Discarding journal "+journal) {
		t.Fatalf("rerun into the new disk: exit %d, want 0 and the journal discarded:\n%s", code, se)
	}
	if resumed, _ := reportBytes(t, so); resumed != 0 {
		t.Errorf("the new disk resumed %d bytes", resumed)
	}
	if got := download(t, f.az.BlobSAS(t, "disks", "plain.vhd", azurite.ReadSAS, time.Hour), int64(len(want))); !bytes.Equal(got, want) {
		t.Fatal("the new disk differs from a local conversion")
	}
}
