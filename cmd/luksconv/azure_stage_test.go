package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
	"github.com/luksconv/luksconv/azure"
	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/internal/azurefake"
	"github.com/luksconv/luksconv/internal/blobfake"
	"github.com/luksconv/luksconv/internal/deltafixture"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/luksconv/luksconv/vhd"
)

// The delta cutover's tests run the Azure control plane on the SDK fakes (as setupAzure) and the data
// plane on internal/blobfake, which implements the page diff between two snapshots that Azurite lacks.
//
// The source is internal/deltafixture's encrypted ext4 volume, an ADE-style volume with a detached
// header (given with --header, as ADE's /boot/luks/osluksheader would be): it already comes in two
// states encrypted under one volume key, made by the real tools, so that unchanged sectors have the
// same ciphertext in both as on a disk ADE encrypted once. Re-encrypting a changed rhel8-lvm image
// would need its LVM volumes mounted or parsed to change files in them, for no more coverage of the
// CLI flow. The passphrase is in the fake Key Vault, and the disk carries ADE settings naming it.

const stageSig = "stage-test-signature"

// blobCloud is the fake cloud of the delta-cutover tests: the SDK fakes for the control plane, and
// internal/blobfake for the data plane, a disk's blob at /acct/disks/<name>, a snapshot's at
// /md-<name>/abcd, as Azure exports a managed snapshot under a URL of its own.
type blobCloud struct {
	*fakeAzure
	bf   *blobfake.Server
	base string
}

// stageAzure is the fake cloud of the one-disk stage tests.
type stageAzure struct {
	*blobCloud
	set *deltafixture.Set
}

// url is a SAS URL of the blobfake blob path.
func (s *blobCloud) url(p string) string {
	return s.base + p + "?sv=2024-08-04&sr=b&sp=rw&sig=" + stageSig
}

const stageSource = "/acct/disks/osdisk"

// newBlobCloud starts the fakes; a snapshot's blob is a blobfake snapshot of its source disk's blob.
// The caller adds resources and installs the fake.
func newBlobCloud(t *testing.T) *blobCloud {
	bf := blobfake.New()
	bf.Signature = stageSig
	ts := httptest.NewServer(bf)
	t.Cleanup(ts.Close)
	f := &fakeAzure{Cloud: azurefake.New(fakeSub), t: t, writeExp: map[string]time.Time{}}
	s := &blobCloud{fakeAzure: f, bf: bf, base: ts.URL}
	f.SAS = func(kind, name string, g armcompute.GrantAccessData) string {
		u := s.url("/acct/disks/" + name)
		if kind == "snapshot" {
			u = s.url("/md-" + name + "/abcd")
		}
		f.sas = append(f.sas, u)
		return u
	}
	f.HasFooter = func(name string, size int64) bool { return s.hasFooter(name, size) }
	f.SnapshotTaken = func(rg, name string, snap *armcompute.Snapshot) {
		from := stageSource
		if snap.Properties != nil && snap.Properties.CreationData != nil && snap.Properties.CreationData.SourceResourceID != nil {
			from = "/acct/disks/" + path.Base(*snap.Properties.CreationData.SourceResourceID)
		}
		pb, err := pageblob.NewClientWithNoCredential(s.url(from), nil)
		if err != nil {
			t.Error(err)
			return
		}
		r, err := pb.CreateSnapshot(context.Background(), nil)
		if err == nil {
			err = bf.Publish("/md-"+name+"/abcd", from, *r.Snapshot)
		}
		if err != nil {
			t.Errorf("snapshot %s: %v", name, err)
		}
	}
	return s
}

func setupStage(t *testing.T) *stageAzure {
	set := deltafixture.Build(t)
	s := &stageAzure{blobCloud: newBlobCloud(t), set: set}
	f := s.fakeAzure
	uploadImage(t, s.url(stageSource), set.S1.Disk)
	pass, err := os.ReadFile(set.Pass)
	if err != nil {
		t.Fatal(err)
	}
	f.Secrets["bek/v1"] = azsecrets.Secret{Value: to.Ptr(base64.StdEncoding.EncodeToString(pass)), ContentType: to.Ptr(azure.ContentTypeBEK)}
	ade := &armcompute.EncryptionSettingsElement{DiskEncryptionKey: &armcompute.KeyVaultAndSecretReference{
		SecretURL: to.Ptr(fakeVault + "/secrets/bek/v1"), SourceVault: &armcompute.SourceVault{ID: to.Ptr("/subscriptions/" + fakeSub + "/resourceGroups/rg-keys/providers/Microsoft.KeyVault/vaults/adevault")}}}
	st, err := os.Stat(set.S1.Disk)
	if err != nil {
		t.Fatal(err)
	}
	f.VMs[azurefake.Key(fakeRG, "vm1")] = to.Ptr(fakeVM())
	f.PowerStates[azurefake.Key(fakeRG, "vm1")] = "running"
	f.Disks[azurefake.Key(fakeRG, "osdisk")] = &armcompute.Disk{ID: to.Ptr(fakeID("disks", "osdisk")), Name: to.Ptr("osdisk"), Location: to.Ptr("westeurope"),
		SKU:       &armcompute.DiskSKU{Name: to.Ptr(armcompute.DiskStorageAccountTypesPremiumLRS)},
		ManagedBy: to.Ptr(fakeID("virtualMachines", "vm1")),
		Properties: &armcompute.DiskProperties{DiskSizeBytes: to.Ptr(st.Size()), OSType: to.Ptr(armcompute.OperatingSystemTypesLinux),
			HyperVGeneration: to.Ptr(armcompute.HyperVGenerationV2), DiskState: to.Ptr(armcompute.DiskStateAttached),
			EncryptionSettingsCollection: &armcompute.EncryptionSettingsCollection{Enabled: to.Ptr(true),
				EncryptionSettingsVersion: to.Ptr("1.1"), EncryptionSettings: []*armcompute.EncryptionSettingsElement{ade}}}}
	f.install(t)
	return s
}

// setupZonalStage is setupStage for the tests that re-create vm1: vm1 is zonal (zone 1), so its OS
// disk is too, as Azure requires, and the new disk must follow it. The working directory, where a
// re-creation saves the VM's rollback model, and the journal directory it returns are temporary.
func setupZonalStage(t *testing.T) (*stageAzure, string) {
	s := setupStage(t)
	s.Lock()
	s.Disks[azurefake.Key(fakeRG, "osdisk")].Zones = []*string{to.Ptr("1")}
	s.Unlock()
	t.Chdir(t.TempDir())
	return s, t.TempDir()
}

// setupStaged is setupStage with stage round 1 run into dir: it returns the fake, dir and the local
// conversion of state 2, which the cutovers must give.
func setupStaged(t *testing.T) (*stageAzure, string, []byte) {
	s := setupStage(t)
	dir := t.TempDir()
	want2 := s.local(t, s.set.S2, t.TempDir())
	mustRun(t, "stage round 1", s.stageArgs(dir, "--stage")...)
	return s, dir, want2
}

func (s *blobCloud) hasFooter(name string, size int64) bool {
	src, err := blobio.OpenPageBlob(context.Background(), s.url("/acct/disks/"+name), blobio.SourceOptions{})
	if err != nil {
		return false
	}
	defer src.Close()
	if size == 0 {
		size = src.Size()
	}
	b := make([]byte, 512)
	if _, err := src.ReadAt(b, size-512); err != nil {
		return false
	}
	return string(b[:8]) == "conectix"
}

// powerState sets the VM's power state.
func (s *blobCloud) powerState(st string) {
	s.Lock()
	defer s.Unlock()
	s.PowerStates[azurefake.Key(fakeRG, "vm1")] = st
}

// toState2 writes the pages in which state 2 differs from state 1 into the source disk's blob, as the
// VM would, so that the next snapshot's diff lists them. It returns how many bytes changed.
func (s *stageAzure) toState2(t *testing.T) int64 {
	t.Helper()
	changed := deltafixture.ChangedPages(t, s.set.S1.Disk, s.set.S2.Disk)
	b, err := os.ReadFile(s.set.S2.Disk)
	if err != nil {
		t.Fatal(err)
	}
	return s.writePages(t, stageSource, b, changed)
}

// writePages writes the ranges changed of b into the blob path, as a VM writes its disk. It returns how
// many bytes it wrote.
func (s *blobCloud) writePages(t *testing.T, blobPath string, b []byte, changed []extent.Range) int64 {
	t.Helper()
	pb, err := pageblob.NewClientWithNoCredential(s.url(blobPath), nil)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, r := range changed {
		n += r.Len
		for off := r.Off; off < r.End(); off += blobfake.MaxPutPage {
			l := min(r.End()-off, blobfake.MaxPutPage)
			if _, err := pb.UploadPages(context.Background(), streaming.NopCloser(bytes.NewReader(b[off:off+l])),
				blob.HTTPRange{Offset: off, Count: l}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	return n
}

// local converts a state with `luksconv convert` and returns its bytes.
func (s *stageAzure) local(t *testing.T, st deltafixture.State, dir string) []byte {
	t.Helper()
	out := filepath.Join(dir, filepath.Base(st.Disk)+".conv")
	if _, se, code := runCLI(t, "convert", "-q", "--key-file", s.set.Pass, "--header", s.set.S1.Header, st.Disk, out); code != 0 {
		t.Fatalf("local convert: exit %d: %s", code, se)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// target reads the first n bytes of the new disk's blob.
func (s *stageAzure) target(t *testing.T, n int) []byte {
	return download(t, s.url("/acct/disks/plain"), int64(n))
}

// assertCutOver checks what a finished cutover leaves: the new disk Unattached and equal to want, a
// local conversion of state 2, and no stage record in dir. after names the run in the messages.
func (s *stageAzure) assertCutOver(t *testing.T, dir string, want []byte, after string) {
	t.Helper()
	if st := s.DiskState(fakeRG, "plain"); st != armcompute.DiskStateUnattached {
		t.Errorf("after %s the disk is %s, want Unattached", after, st)
	}
	if got := s.target(t, len(want)); !bytes.Equal(got, want) {
		t.Fatalf("after %s the new disk differs from a local conversion of state 2", after)
	}
	if _, err := os.Stat(filepath.Join(dir, ".luksconv-stage-plain.json")); !os.IsNotExist(err) {
		t.Errorf("stage record left after %s: %v", after, err)
	}
}

// stageRep is the part of a --stage or --cutover run's JSON report the tests read.
type stageRep struct {
	Stage struct {
		Record string `json:"record"`
		Round  struct {
			Round        int           `json:"round"`
			BytesChanged int64         `json:"bytes_changed"`
			BytesRead    int64         `json:"bytes_read"`
			BytesWritten int64         `json:"bytes_written"`
			Plan         time.Duration `json:"plan_ns"`
		} `json:"round"`
		Finished       bool     `json:"finished"`
		ExpectedChange int64    `json:"expected_change_bytes"`
		Snapshots      []string `json:"snapshots"`
	} `json:"stage"`
	Result struct {
		Resumed int64 `json:"bytes_resumed"`
	} `json:"result"`
	Verified bool `json:"verified"`
}

// reportOf decodes a run's --json report so, of type T (stageRep, vmStageRep).
func reportOf[T any](t *testing.T, so string) T {
	t.Helper()
	var r T
	if err := json.Unmarshal([]byte(so), &r); err != nil {
		t.Fatalf("report: %v\n%s", err, so)
	}
	return r
}

func (s *stageAzure) stageArgs(dir string, extra ...string) []string {
	return append([]string{"azure", "convert", "--source-disk", fakeID("disks", "osdisk"), "--des", fakeDES, "--target-disk", "plain",
		"--header", s.set.S1.Header, "--journal-dir", dir, "--json", "-q", "--workers", "2"}, extra...)
}

// TestAzureStageCutover: two --stage rounds and a --cutover of one disk. Round 1 (the VM running)
// converts state 1 into the new disk and leaves it uploading; the source then changes; round 2 writes
// only about what changed, and the disk holds state 2's conversion; the dry run estimates the downtime
// and creates nothing; the cutover (VM deallocated, --verify) finishes the disk, which equals a local
// conversion of state 2, and removes the record. No SAS signature is printed or stored.
func TestAzureStageCutover(t *testing.T) {
	s := setupStage(t)
	dir := t.TempDir()
	want1, want2 := s.local(t, s.set.S1, t.TempDir()), s.local(t, s.set.S2, t.TempDir())
	record := filepath.Join(dir, ".luksconv-stage-plain.json")

	so, se, code := runCLI(t, s.stageArgs(dir, "--stage")...)
	if code != 0 {
		t.Fatalf("stage round 1: exit %d:\n%s", code, se)
	}
	s.assertNoSAS(t, so+se)
	if !strings.Contains(se, "crash-consistent") {
		t.Errorf("stage of a running VM's disk without the crash-consistency warning:\n%s", se)
	}
	r1 := reportOf[stageRep](t, so)
	calls := s.takeCalls()
	if st := s.DiskState(fakeRG, "plain"); st != armcompute.DiskStateActiveUpload {
		t.Errorf("after round 1 the disk is %s, want ActiveUpload", st)
	}
	if hasCall(calls, "REVOKE disk plain") || s.hasFooter("plain", 0) {
		t.Errorf("round 1 finished the upload: footer %v, calls %q", s.hasFooter("plain", 0), calls)
	}
	s.Lock()
	incr := s.SnapshotPut != nil && s.SnapshotPut.Properties != nil && s.SnapshotPut.Properties.Incremental != nil && *s.SnapshotPut.Properties.Incremental
	s.Unlock()
	if !incr {
		t.Errorf("the stage snapshot is not incremental")
	}
	if got := s.target(t, len(want1)); !bytes.Equal(got, want1) {
		t.Fatal("after round 1 the new disk differs from a local conversion of state 1")
	}
	st, err := os.Stat(record)
	if err != nil {
		t.Fatalf("no stage record: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("stage record mode %v", st.Mode().Perm())
	}
	rb, _ := os.ReadFile(record)
	var rec stageRecord
	if err := json.Unmarshal(rb, &rec); err != nil {
		t.Fatal(err)
	}
	if rec.Round != 1 || rec.SourceDisk != fakeID("disks", "osdisk") || rec.TargetDisk != fakeID("disks", "plain") || rec.Snapshot == "" ||
		rec.PlanID == "" || len(rec.Plan) == 0 || rec.Pending != "" || bytes.Contains(rb, []byte(stageSig)) || bytes.Contains(rb, []byte("sig=")) {
		t.Errorf("stage record after round 1:\n%s", rb)
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, "*.journal")); len(ents) != 0 {
		t.Errorf("journals left after a finished round: %v", ents)
	}
	// One round: no change rate yet.
	so, se, code = runCLI(t, "azure", "convert", "--source-disk", fakeID("disks", "osdisk"), "--des", fakeDES,
		"--target-disk", "plain", "--journal-dir", dir, "--cutover", "--dry-run")
	if code != 0 || !strings.Contains(so, "cannot estimate") {
		t.Errorf("dry-run cutover after one round: exit %d:\n%s\n%s", code, so, se)
	}

	changed := s.toState2(t)
	so, se, code = runCLI(t, s.stageArgs(dir, "--stage")...)
	if code != 0 {
		t.Fatalf("stage round 2: exit %d:\n%s", code, se)
	}
	r2 := reportOf[stageRep](t, so)
	// Round 2 makes no disk, and its write access lasts --write-access's default too, not Azure's day.
	if g := "GRANT disk plain Write " + strconv.Itoa(int(azure.UploadAccessFor(int64(len(want2))).Seconds())); !slices.Contains(s.takeCalls(), g) {
		t.Errorf("round 2 made no %q", g)
	}
	t.Logf("round 1 wrote %d bytes; %d bytes changed, the diff said %d, round 2 read %d and wrote %d", r1.Stage.Round.BytesWritten, changed,
		r2.Stage.Round.BytesChanged, r2.Stage.Round.BytesRead, r2.Stage.Round.BytesWritten)
	if r2.Stage.Round.Round != 2 || r2.Stage.Round.BytesChanged < changed || r2.Stage.Round.BytesWritten == 0 ||
		r2.Stage.Round.BytesWritten >= r1.Stage.Round.BytesWritten || r2.Stage.Round.BytesWritten > 2*changed+(1<<20) {
		t.Errorf("round 2 moved more than what changed: %+v (round 1 %+v, %d bytes changed)", r2.Stage.Round, r1.Stage.Round, changed)
	}
	if st := s.DiskState(fakeRG, "plain"); st != armcompute.DiskStateActiveUpload {
		t.Errorf("after round 2 the disk is %s, want ActiveUpload", st)
	}
	if got := s.target(t, len(want2)); !bytes.Equal(got, want2) {
		t.Fatal("after round 2 the new disk differs from a local conversion of state 2")
	}

	// The dry run: an estimate, and nothing taken, granted or created.
	s.takeCalls()
	so, se, code = runCLI(t, "azure", "convert", "--source-disk", fakeID("disks", "osdisk"), "--des", fakeDES, "--target-disk", "plain",
		"--journal-dir", dir, "--cutover", "--dry-run")
	// The estimate counts the final snapshot's plan as long as round 2's.
	if plan := r2.Stage.Round.Plan; plan <= 0 || code != 0 || !strings.Contains(so, "expected downtime of the cutover: ") ||
		!strings.Contains(so, azure.MeasuredCutoverFormula) || !strings.Contains(so, "; plan "+plan.Round(time.Millisecond).String()+")") {
		t.Errorf("dry-run cutover (round 2 planned in %s): exit %d:\n%s\n%s", plan, code, so, se)
	}
	// --verify reads the disk's data back while the VM is down: the estimate adds it at 60 MiB/s.
	est := func(extra ...string) time.Duration {
		so, se, code := runCLI(t, append([]string{"azure", "convert", "--source-disk", fakeID("disks", "osdisk"), "--des", fakeDES, "--target-disk", "plain",
			"--journal-dir", dir, "--cutover", "--dry-run", "--json"}, extra...)...)
		var r struct {
			Stage struct {
				Downtime time.Duration `json:"expected_downtime_ns"`
			} `json:"stage"`
		}
		if err := json.Unmarshal([]byte(so), &r); code != 0 || err != nil || r.Stage.Downtime <= 0 {
			t.Fatalf("dry-run cutover %q: exit %d, %v:\n%s\n%s", extra, code, err, so, se)
		}
		return r.Stage.Downtime
	}
	// (--verify's first: the expected change grows with the time since the snapshot, against it.)
	if dv, d0 := est("--verify"), est(); dv-d0 < time.Duration(float64(r2.Stage.Round.BytesRead)/float64(azure.StageRate)*float64(time.Second))/2 {
		t.Errorf("the estimate with --verify (%s) adds too little to the one without (%s)", dv, d0)
	}
	// So does the next stage round's, from the record: not round 1's full plan.
	so, se, code = runCLI(t, s.stageArgs(dir, "--stage", "--dry-run")...)
	if sr := reportOf[stageRep](t, so); code != 0 || sr.Stage.Round.Round != 3 || sr.Stage.ExpectedChange <= 0 {
		t.Errorf("dry-run stage round 3: exit %d:\n%s\n%s", code, so, se)
	}
	so, se, code = runCLI(t, "azure", "convert", "--source-disk", fakeID("disks", "osdisk"), "--des", fakeDES, "--target-disk", "plain",
		"--journal-dir", dir, "--stage", "--dry-run")
	if code != 0 || !strings.Contains(so, "stage round 3: would take an incremental snapshot of "+fakeID("disks", "osdisk")) ||
		!strings.Contains(so, "at the measured change rate of ") {
		t.Errorf("dry-run stage round 3: exit %d:\n%s\n%s", code, so, se)
	}
	for _, c := range s.takeCalls() {
		if strings.HasPrefix(c, "PUT") || strings.HasPrefix(c, "GRANT") || strings.HasPrefix(c, "DELETE") {
			t.Errorf("the dry run did %q", c)
		}
	}

	// The cutover refuses a running VM.
	if _, se, code := runCLI(t, s.stageArgs(dir, "--cutover")...); code == 0 || !strings.Contains(se, "running") {
		t.Errorf("cutover of a running VM: exit %d:\n%s", code, se)
	}
	s.powerState("deallocated")
	so, se, code = runCLI(t, s.stageArgs(dir, "--cutover", "--verify")...)
	if code != 0 {
		t.Fatalf("cutover: exit %d:\n%s", code, se)
	}
	s.assertNoSAS(t, so+se)
	r3 := reportOf[stageRep](t, so)
	if !r3.Verified || !r3.Stage.Finished || r3.Stage.Round.Round != 3 {
		t.Errorf("cutover report %+v", r3)
	}
	// The three rounds' snapshots, kept, are named once the record that listed them is gone.
	if sn := r3.Stage.Snapshots; len(sn) != 3 || !strings.Contains(sn[0], "-luksconv-r1-") || !strings.Contains(sn[2], "-luksconv-r3-") {
		t.Errorf("cutover report's snapshots %q, want rounds 1 to 3", sn)
	}
	s.assertCutOver(t, dir, want2, "the cutover")
	if ents, _ := filepath.Glob(filepath.Join(dir, ".luksconv-*")); len(ents) != 0 {
		t.Errorf("files left after the cutover: %v", ents)
	}
}

// cancelOutput cancels the run after its second write.
type cancelOutput struct {
	luksconv.Output
	cancel func()
	n      atomic.Int32
}

func (o *cancelOutput) WriteAt(b []byte, off int64) (int, error) {
	if o.n.Add(1) == 2 {
		o.cancel()
	}
	return o.Output.WriteAt(b, off)
}

// runInterrupted runs the CLI with args and cancels it (Ctrl-C) at the upload's second write (cancelOutput);
// it returns standard error and the exit code.
func runInterrupted(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	azureOutputHook = func(j *uploadJob, o luksconv.Output) luksconv.Output { return &cancelOutput{Output: o, cancel: cancel} }
	defer func() { azureOutputHook = nil }()
	_, se, code := runCLICtx(t, ctx, args...)
	return se, code
}

// mustInterrupt is runInterrupted of a run that must exit interrupted; it returns standard error.
func mustInterrupt(t *testing.T, args ...string) string {
	t.Helper()
	se, code := runInterrupted(t, args...)
	if code != exitInterrupted {
		t.Fatalf("%q cancelled mid-upload: exit %d, want %d:\n%s", args, code, exitInterrupted, se)
	}
	return se
}

// TestAzureCutoverInterrupted: a first stage round, then a cutover, each cancelled mid-upload; the
// cutover leaves the disk uploading, the record and its journal. The same command resumes each from
// its snapshot and journal, and the disk equals a local conversion of state 2.
func TestAzureCutoverInterrupted(t *testing.T) {
	s := setupStage(t)
	dir := t.TempDir()
	want2 := s.local(t, s.set.S2, t.TempDir())
	// An interrupted first round resumes from the same snapshot.
	mustInterrupt(t, s.stageArgs(dir, "--stage", "--workers", "1")...)
	s.takeCalls()
	so, se, code := runCLI(t, s.stageArgs(dir, "--stage")...)
	if code != 0 {
		t.Fatalf("resumed stage: exit %d:\n%s", code, se)
	}
	if r := reportOf[stageRep](t, so); r.Result.Resumed == 0 || r.Stage.Round.Round != 1 {
		t.Errorf("the resumed stage round: %+v", r)
	}
	for _, c := range s.takeCalls() {
		if strings.HasPrefix(c, "PUT snapshot") || strings.HasPrefix(c, "PUT disk") {
			t.Errorf("the resumed stage round did %q", c)
		}
	}
	s.toState2(t)
	s.powerState("deallocated")
	mustInterrupt(t, s.stageArgs(dir, "--cutover", "--workers", "1")...)
	if st := s.DiskState(fakeRG, "plain"); st != armcompute.DiskStateActiveUpload {
		t.Errorf("after the interruption the disk is %s", st)
	}
	if j, _ := filepath.Glob(filepath.Join(dir, "*.journal")); len(j) != 1 {
		t.Errorf("journals after the interruption: %v", j)
	}
	s.takeCalls()
	so, se, code = runCLI(t, s.stageArgs(dir, "--cutover", "--verify")...)
	if code != 0 {
		t.Fatalf("resumed cutover: exit %d:\n%s", code, se)
	}
	for _, c := range s.takeCalls() {
		if strings.HasPrefix(c, "PUT snapshot") {
			t.Errorf("the resumed cutover took another snapshot: %q", c)
		}
	}
	r := reportOf[stageRep](t, so)
	if r.Result.Resumed == 0 || !r.Verified {
		t.Errorf("the resumed cutover resumed %d bytes, verified %v", r.Result.Resumed, r.Verified)
	}
	s.assertCutOver(t, dir, want2, "the resumed cutover")
}

// TestAzureCutoverPendingStale: a cutover never finishes the disk from a pending snapshot older than
// the VM's last write. A stage round interrupted after its snapshot (taken while the VM ran), then the
// VM's writes: the cutover refuses, and names the stage rerun that finishes the round; after it the
// cutover holds the last state. A cutover interrupted after its snapshot, then the VM started again
// (its disk changes hands): the rerun refuses that snapshot too, with --deallocate before it takes
// the VM down.
func TestAzureCutoverPendingStale(t *testing.T) {
	s := setupStage(t)
	dir := t.TempDir()
	want2 := s.local(t, s.set.S2, t.TempDir())
	ran := func() { // the VM runs (and is deallocated again): its disk changes hands
		s.Lock()
		s.Disks[azurefake.Key(fakeRG, "osdisk")].Properties.LastOwnershipUpdateTime = to.Ptr(time.Now().Add(time.Hour))
		s.Unlock()
	}
	mustRun(t, "stage round 1", s.stageArgs(dir, "--stage")...)
	s.Lock()
	s.FailGrant = "transport" // round 2 stops after its snapshot is recorded
	s.Unlock()
	if _, se, code := runCLI(t, s.stageArgs(dir, "--stage")...); code == 0 {
		t.Fatalf("stage round 2 with its read grant refused: exit 0:\n%s", se)
	}
	s.Lock()
	s.FailGrant = ""
	s.Unlock()
	s.toState2(t)
	s.powerState("deallocated")
	ran()
	_, se, code := runCLI(t, s.stageArgs(dir, "--cutover", "--verify")...)
	if code != exitFailure || !strings.Contains(se, "stage round 2") || !strings.Contains(se, "--stage instead of --cutover") {
		t.Fatalf("cutover over a pending stage snapshot: exit %d, want %d and the stage rerun named:\n%s", code, exitFailure, se)
	}
	if st := s.DiskState(fakeRG, "plain"); st != armcompute.DiskStateActiveUpload {
		t.Fatalf("the refused cutover left the disk %s", st)
	}
	mustRun(t, "stage round 2 finished", s.stageArgs(dir, "--stage")...)

	// A cutover interrupted after its snapshot; the VM then runs again.
	se, code = runInterrupted(t, s.stageArgs(dir, "--cutover", "--workers", "1")...)
	if code != exitInterrupted && code != 0 {
		t.Fatalf("cancelled cutover: exit %d:\n%s", code, se)
	}
	if code == 0 {
		t.Skip("the cutover had nothing left to write when it was cancelled") // the delta is one chunk
	}
	ran()
	// Started again: --deallocate must not take it down for a cutover that refuses the snapshot.
	s.powerState("running")
	s.takeCalls()
	if _, se, code = runCLI(t, s.stageArgs(dir, "--cutover", "--deallocate")...); code != exitFailure || !strings.Contains(se, "stale") || hasCall(s.takeCalls(), "DEALLOCATE vm vm1") {
		t.Fatalf("cutover --deallocate of the running VM over a stale snapshot: exit %d, want %d, the stale snapshot named and no deallocation:\n%s", code, exitFailure, se)
	}
	s.powerState("deallocated")
	if _, se, code = runCLI(t, s.stageArgs(dir, "--cutover")...); code != exitFailure || !strings.Contains(se, "stale") {
		t.Fatalf("cutover rerun after the VM ran: exit %d, want %d and the stale snapshot named:\n%s", code, exitFailure, se)
	}
	mustRun(t, "stage round finishing the stale cutover's", s.stageArgs(dir, "--stage")...)
	mustRun(t, "cutover", s.stageArgs(dir, "--cutover", "--verify")...)
	s.assertCutOver(t, dir, want2, "the cutover")
}

// TestAzureSnapshotRecreateStale: --snapshot with --recreate-vm re-creates the VM only on a snapshot
// of its OS disk taken since it last ran. An earlier run's kept snapshot of state 1, then the VM runs
// and writes state 2: the conversion of that snapshot is refused before any disk is made or the VM is
// touched; a snapshot taken after the VM stopped converts.
func TestAzureSnapshotRecreateStale(t *testing.T) {
	s, dir := setupZonalStage(t)
	s.powerState("deallocated")
	snap := func(disk, name string) string {
		t.Helper()
		cred, opts := s.fakeAzure.hook()
		cl, err := azure.New(fakeSub, cred, opts)
		if err != nil {
			t.Fatal(err)
		}
		id, err := cl.SnapshotDisk(context.Background(), fakeID("disks", disk), name, nil)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	args := func(snapID, target string) []string {
		return []string{"azure", "convert", "--snapshot", snapID, "--des", fakeDES, "--target-disk", target, "--header", s.set.S1.Header,
			"--journal-dir", dir, "-q", "--workers", "2", "--recreate-vm", "--vm", fakeID("virtualMachines", "vm1")}
	}
	old := snap("osdisk", "old")
	s.toState2(t) // the VM runs, writes and is deallocated again: its disk changes hands
	s.Lock()
	s.Disks[azurefake.Key(fakeRG, "osdisk")].Properties.LastOwnershipUpdateTime = to.Ptr(time.Now().Add(time.Hour))
	s.Unlock()
	s.takeCalls()
	_, se, code := runCLI(t, args(old, "plain")...)
	if code != exitFailure || !strings.Contains(se, "stale") {
		t.Fatalf("--snapshot of state 1 after the VM ran: exit %d, want %d and the stale snapshot named:\n%s", code, exitFailure, se)
	}
	for _, c := range s.takeCalls() {
		if strings.HasPrefix(c, "PUT disk") || strings.Contains(c, " vm ") {
			t.Errorf("the refused run did %q", c)
		}
	}
	s.Lock()
	s.Disks[azurefake.Key(fakeRG, "osdisk")].Properties.LastOwnershipUpdateTime = to.Ptr(time.Now().Add(-time.Hour))
	s.Unlock()
	mustRun(t, "--snapshot taken after the VM stopped", args(snap("osdisk", "new"), "plain")...)
}

// TestAzureStagePendingPlan: an interrupted round after the first is finished only by the plan it
// was begun with; a rerun whose plan differs (here --full-copy) is refused before it writes, with exit
// 2 (the same command makes the same plan: a fleet engine must not retry it), and the rerun with the
// first flags finishes the round.
func TestAzureStagePendingPlan(t *testing.T) {
	s, dir, want2 := setupStaged(t)
	s.toState2(t)
	mustInterrupt(t, s.stageArgs(dir, "--stage", "--workers", "1")...)
	s.takeCalls()
	if _, se, code := runCLI(t, s.stageArgs(dir, "--stage", "--full-copy")...); code != exitUsage || !strings.Contains(se, "round 2 was begun with another plan") {
		t.Fatalf("stage round 2 again with --full-copy: exit %d, want %d (no retry changes the plan) and the plan named:\n%s", code, exitUsage, se)
	}
	for _, c := range s.takeCalls() {
		if strings.HasPrefix(c, "GRANT disk plain Write") {
			t.Errorf("the refused rerun opened the new disk for writing: %q", c)
		}
	}
	mustRun(t, "stage round 2 again", s.stageArgs(dir, "--stage")...)
	s.powerState("deallocated")
	mustRun(t, "cutover", s.stageArgs(dir, "--cutover", "--verify")...)
	s.assertCutOver(t, dir, want2, "the cutover")
}

// TestAzureCutoverLicenseFails: a cutover whose VM is re-created but whose licensing then fails exits
// 11 and removes the stage record: the conversion is over, and a rerun must not act on it.
func TestAzureCutoverLicenseFails(t *testing.T) {
	s, dir := setupZonalStage(t)
	s.Lock()
	s.VMs[azurefake.Key(fakeRG, "vm1")].Properties.StorageProfile.ImageReference = rhelPAYG()
	s.ExtensionFails = true
	s.Unlock()
	mustRun(t, "stage round 1", s.stageArgs(dir, "--stage")...)
	s.powerState("deallocated")
	_, se, code := runCLI(t, s.stageArgs(dir, "--cutover", "--recreate-vm", "--vm", fakeID("virtualMachines", "vm1"), "--license", "payg")...)
	if code != exitFollowUp || !strings.Contains(se, "the VM is re-created") {
		t.Fatalf("cutover: exit %d, want %d:\n%s", code, exitFollowUp, se)
	}
	if _, err := os.Stat(filepath.Join(dir, ".luksconv-stage-plain.json")); !os.IsNotExist(err) {
		t.Errorf("stage record left: %v", err)
	}
	if d := s.vmOSDisk(); d != "plain" {
		t.Errorf("VM on OS disk %q", d)
	}
}

// mustRun runs the CLI with args and fails the test unless it exits 0; what names the run.
func mustRun(t *testing.T, what string, args ...string) string {
	t.Helper()
	so, se, code := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("%s: exit %d:\n%s", what, code, se)
	}
	return so
}

// TestAzureStageUsage: --stage and --cutover misused exit 2.
func TestAzureStageUsage(t *testing.T) {
	disk, snap := fakeID("disks", "osdisk"), fakeID("snapshots", "snap")
	vm := fakeID("virtualMachines", "vm1")
	for _, args := range [][]string{
		{"--source-disk", disk, "--target-disk", "t", "--stage", "--cutover"},
		{"--snapshot", snap, "--target-disk", "t", "--stage"},
		{"--snapshot", snap, "--target-disk", "t", "--cutover"},
		{"--vm", vm, "--stage", "--recreate-vm"},
		{"--vm", vm, "--cutover", "--allow-running"},
		{"--vm", vm, "--stage", "--target-disk", "t"},
		{"--vm", vm, "--cutover", "--journal", "j"},
		{"--source-disk", disk, "--target-disk", "t", "--stage", "--recreate-vm", "--vm", vm},
		{"--source-disk", disk, "--target-disk", "t", "--cutover", "--allow-running"},
		{"--source-disk", disk, "--target-disk", "t", "--stage", "--deallocate"},
		{"--source-disk", disk, "--target-disk", "t", "--deallocate"},
		{"--vm", vm, "--deallocate"},
		{"--source-disk", disk, "--target-disk", "t", "--cutover", "--deallocate", "--allow-running"},
	} {
		args = append([]string{"azure", "convert", "--des", fakeDES}, args...)
		if _, se, code := runCLI(t, args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d:\n%s", args, code, exitUsage, se)
		}
	}
}

// TestAzureCutoverRecreateVM: a stage round, a change, then `--cutover --recreate-vm --verify` with the
// VM deallocated: the cutover finishes the disk, verifies it (a read grant after the finish), and only
// then re-creates the VM around the new OS disk as `azure convert --recreate-vm` does: ARM's validation
// before the DELETE, the PUT after it, carrying the new disk and no ADE extension. The disk equals a
// local conversion of state 2, and the stage record and the VM model file are gone. A run killed after
// the re-creation and before the record's removal: the rerun removes the record and exits 0.
func TestAzureCutoverRecreateVM(t *testing.T) {
	s, dir := setupZonalStage(t)
	want2 := s.local(t, s.set.S2, t.TempDir())
	if _, se, code := runCLI(t, s.stageArgs(dir, "--stage")...); code != 0 {
		t.Fatalf("stage round 1: exit %d:\n%s", code, se)
	}
	s.toState2(t)
	s.powerState("deallocated")
	s.takeCalls()
	// The record as it is once the disk is finished, for the rerun of a run killed after the VM's
	// re-creation and before the record's removal.
	record := filepath.Join(dir, ".luksconv-stage-plain.json")
	var saved []byte
	azureOutputHook = func(_ *uploadJob, o luksconv.Output) luksconv.Output {
		return commitSpy{o, func() { saved, _ = os.ReadFile(record) }}
	}
	t.Cleanup(func() { azureOutputHook = nil })
	args := s.stageArgs(dir, "--cutover", "--verify", "--recreate-vm", "--vm", fakeID("virtualMachines", "vm1"))
	so, se, code := runCLI(t, args...)
	azureOutputHook = nil
	if code != 0 {
		t.Fatalf("cutover --recreate-vm: exit %d:\n%s", code, se)
	}
	s.assertNoSAS(t, so+se)
	calls := s.takeCalls()
	var rep struct {
		stageRep
		VMRecreated bool `json:"vm_recreated"`
	}
	if err := json.Unmarshal([]byte(so), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, so)
	}
	if !rep.Verified || !rep.Stage.Finished || rep.Stage.Round.Round != 2 || !rep.VMRecreated {
		t.Errorf("cutover report: verified %v, finished %v, round %d, vm_recreated %v", rep.Verified, rep.Stage.Finished, rep.Stage.Round.Round, rep.VMRecreated)
	}

	// The order: final snapshot, finish, verification read, validation, DELETE, PUT.
	idx := func(pred func(string) bool) int { return slices.IndexFunc(calls, pred) }
	is := func(want string) func(string) bool { return func(c string) bool { return c == want } }
	snap := idx(func(c string) bool { return strings.HasPrefix(c, "PUT snapshot plain-luksconv-r2-") })
	fin := idx(is("REVOKE disk plain"))
	rd := idx(func(c string) bool { return strings.HasPrefix(c, "GRANT disk plain Read ") })
	val := idx(is("VALIDATE deployment luksconv-preflight-vm1"))
	del := idx(is("DELETE vm vm1"))
	put := idx(is("PUT vm vm1"))
	if snap < 0 || fin < snap || rd < fin || val < rd || del < val || put < del {
		t.Errorf("want the snapshot, the finish, the verification read, the validation, the DELETE, then the PUT: %q", calls)
	}
	s.Lock()
	vm := s.VMPut
	s.Unlock()
	if vm == nil || *vm.Properties.StorageProfile.OSDisk.ManagedDisk.ID != fakeID("disks", "plain") {
		t.Fatalf("the VM PUT does not carry the new OS disk: %+v", vm)
	}
	for _, e := range vm.Resources {
		if e.Name != nil && strings.Contains(*e.Name, "AzureDiskEncryption") {
			t.Errorf("the re-created VM keeps the ADE extension")
		}
	}
	if d := s.vmOSDisk(); d != "plain" {
		t.Errorf("after the cutover the VM runs on %q", d)
	}
	s.Lock()
	if z := s.Disks[azurefake.Key(fakeRG, "plain")].Zones; len(z) != 1 || *z[0] != "1" {
		t.Errorf("the new disk is not in the VM's zone: %v", z)
	}
	s.Unlock()
	if st := s.DiskState(fakeRG, "plain"); st == armcompute.DiskStateActiveUpload || st == armcompute.DiskStateReadyToUpload {
		t.Errorf("after the cutover the disk is %s", st)
	}
	if got := s.target(t, len(want2)); !bytes.Equal(got, want2) {
		t.Fatal("after the cutover the new disk differs from a local conversion of state 2")
	}
	if !strings.Contains(so, `"vm_plan"`) {
		t.Errorf("no VM plan in the report")
	}
	if _, err := os.Stat(filepath.Join(dir, ".luksconv-stage-plain.json")); !os.IsNotExist(err) {
		t.Errorf("stage record left after the cutover: %v", err)
	}
	if m := modelFiles(t); len(m) != 0 {
		t.Errorf("model file kept after the re-creation: %q", m)
	}

	// Killed after the re-creation, before the record went: the rerun finds the VM on the new disk
	// and removes the record (its pending snapshot is stale: the old disk changed hands), exit 0.
	if len(saved) == 0 {
		t.Fatal("no stage record at the finish")
	}
	testenv.WriteFile(t, dir, filepath.Base(record), saved)
	s.Lock()
	od := s.Disks[azurefake.Key(fakeRG, "osdisk")]
	od.ManagedBy, od.Properties.LastOwnershipUpdateTime = nil, to.Ptr(time.Now().Add(time.Hour))
	s.Unlock()
	so, se, code = runCLI(t, args...)
	if code != 0 || !strings.Contains(so, `"already_converted": true`) {
		t.Errorf("rerun with the record left: exit %d:\n%s%s", code, so, se)
	}
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Errorf("stage record left after the rerun: %v", err)
	}
}

// TestAzureCutoverFinishedPrevSnapshotGone: a cutover that finished the disk and stopped before its
// end (here: killed before the record went), after which the operator deleted the earlier stage
// snapshots: the rerun has nothing to write and takes no page diff, which needed round 1's snapshot
// (it failed with ResourceNotFound), and completes.
func TestAzureCutoverFinishedPrevSnapshotGone(t *testing.T) {
	s := setupStage(t)
	dir := t.TempDir()
	want2 := s.local(t, s.set.S2, t.TempDir())
	mustRun(t, "stage round 1", s.stageArgs(dir, "--stage")...)
	s.toState2(t)
	s.powerState("deallocated")
	record := filepath.Join(dir, ".luksconv-stage-plain.json")
	var saved []byte
	azureOutputHook = func(_ *uploadJob, o luksconv.Output) luksconv.Output {
		return commitSpy{o, func() { saved, _ = os.ReadFile(record) }}
	}
	t.Cleanup(func() { azureOutputHook = nil })
	mustRun(t, "cutover", s.stageArgs(dir, "--cutover")...)
	azureOutputHook = nil
	if len(saved) == 0 {
		t.Fatal("no stage record at the finish")
	}
	testenv.WriteFile(t, dir, filepath.Base(record), saved)
	s.Lock()
	for k := range s.Snapshots {
		if strings.Contains(k, "-luksconv-r1-") {
			delete(s.Snapshots, k)
		}
	}
	s.Unlock()
	so, se, code := runCLI(t, s.stageArgs(dir, "--cutover", "--verify")...)
	if code != 0 || !strings.Contains(se, "finished by an earlier run of this cutover") {
		t.Fatalf("rerun of a finished cutover, round 1's snapshot deleted: exit %d:\n%s\n%s", code, so, se)
	}
	if r := reportOf[stageRep](t, so); !r.Verified || !r.Stage.Finished {
		t.Errorf("rerun report: %s", so)
	}
	s.assertCutOver(t, dir, want2, "the rerun")
}

// commitSpy calls after once the output it wraps is committed.
type commitSpy struct {
	luksconv.Output
	after func()
}

func (c commitSpy) Commit(ctx context.Context) error {
	err := c.Output.Commit(ctx)
	c.after()
	return err
}

// TestAzureCutoverDeallocate: with the VM running, `--dry-run --cutover --deallocate` deallocates
// nothing (and says it would); `--cutover --deallocate` deallocates the VM before it takes the final
// snapshot, and the cutover completes: the disk is finished and equals a local conversion of state 2.
func TestAzureCutoverDeallocate(t *testing.T) {
	s := setupStage(t)
	dir := t.TempDir()
	want2 := s.local(t, s.set.S2, t.TempDir())
	if _, se, code := runCLI(t, s.stageArgs(dir, "--stage")...); code != 0 {
		t.Fatalf("stage round 1: exit %d:\n%s", code, se)
	}
	s.toState2(t)
	running := func() bool {
		s.Lock()
		defer s.Unlock()
		return s.PowerStates[azurefake.Key(fakeRG, "vm1")] == "running"
	}

	s.takeCalls()
	so, se, code := runCLI(t, "azure", "convert", "--source-disk", fakeID("disks", "osdisk"), "--des", fakeDES, "--target-disk", "plain",
		"--journal-dir", dir, "--cutover", "--deallocate", "--dry-run")
	if code != 0 || !strings.Contains(so, "Would deallocate the VM of ") {
		t.Errorf("dry-run cutover --deallocate: exit %d:\n%s\n%s", code, so, se)
	}
	for _, c := range s.takeCalls() {
		if strings.HasPrefix(c, "DEALLOCATE") || strings.HasPrefix(c, "PUT") || strings.HasPrefix(c, "GRANT") || strings.HasPrefix(c, "DELETE") {
			t.Errorf("the dry run did %q", c)
		}
	}
	if !running() {
		t.Fatal("the dry run changed the VM's power state")
	}
	// A stopped VM keeps its allocation and may start without its disk changing hands: a cutover
	// refuses it, before any snapshot, and --deallocate deallocates it like a running one.
	s.powerState("stopped")
	if _, se, code := runCLI(t, s.stageArgs(dir, "--cutover")...); code != exitFailure || !strings.Contains(se, "stopped but not deallocated") {
		t.Errorf("cutover of a stopped VM: exit %d, want %d:\n%s", code, exitFailure, se)
	}
	for _, c := range s.takeCalls() {
		if strings.HasPrefix(c, "PUT") || strings.HasPrefix(c, "GRANT") || strings.HasPrefix(c, "DEALLOCATE") {
			t.Errorf("the refused cutover did %q", c)
		}
	}

	so, se, code = runCLI(t, s.stageArgs(dir, "--cutover", "--deallocate", "--verify")...)
	if code != 0 {
		t.Fatalf("cutover --deallocate: exit %d:\n%s", code, se)
	}
	calls := s.takeCalls()
	dealloc := slices.Index(calls, "DEALLOCATE vm vm1")
	snap := slices.IndexFunc(calls, func(c string) bool { return strings.HasPrefix(c, "PUT snapshot ") })
	if dealloc < 0 || snap < dealloc || slices.Index(calls[dealloc+1:], "DEALLOCATE vm vm1") >= 0 {
		t.Errorf("want one DEALLOCATE, before the final snapshot: %q", calls)
	}
	if running() {
		t.Error("the VM still runs")
	}
	r := reportOf[stageRep](t, so)
	if !r.Verified || !r.Stage.Finished || r.Stage.Round.Round != 2 {
		t.Errorf("cutover report %+v", r)
	}
	s.assertCutOver(t, dir, want2, "the cutover")
}

// TestAzureCutoverDeallocating: a VM that still reports "deallocating" after its deallocation ended is
// waited for, not read: past --deallocate's wait the cutover stops (exit 1) with a hint and writes
// nothing; the rerun deallocates again, waits the state out and finishes the disk.
func TestAzureCutoverDeallocating(t *testing.T) {
	s := setupStage(t)
	dir := t.TempDir()
	if _, se, code := runCLI(t, s.stageArgs(dir, "--stage")...); code != 0 {
		t.Fatalf("stage round 1: exit %d:\n%s", code, se)
	}
	wait, poll := deallocateWait, deallocatePoll
	t.Cleanup(func() { deallocateWait, deallocatePoll = wait, poll })
	deallocateWait, deallocatePoll = 50*time.Millisecond, time.Millisecond

	s.Lock()
	s.DeallocatingReads = 1 << 30
	s.Unlock()
	s.takeCalls()
	_, se, code := runCLI(t, s.stageArgs(dir, "--cutover", "--deallocate")...)
	if code != 1 || !strings.Contains(se, "still deallocating") || !strings.Contains(se, "run the same command again") {
		t.Errorf("cutover of a VM stuck deallocating: exit %d:\n%s", code, se)
	}
	for _, c := range s.takeCalls() {
		if strings.HasPrefix(c, "PUT snapshot") || strings.HasPrefix(c, "GRANT") {
			t.Errorf("the cutover did %q before the VM was deallocated", c)
		}
	}

	s.Lock()
	s.DeallocatingReads = 3
	s.Unlock()
	so, se, code := runCLI(t, s.stageArgs(dir, "--cutover", "--deallocate")...)
	if code != 0 {
		t.Fatalf("cutover after the wait: exit %d:\n%s", code, se)
	}
	if r := reportOf[stageRep](t, so); !r.Stage.Finished {
		t.Errorf("cutover report %+v", r)
	}
	if st := s.DiskState(fakeRG, "plain"); st != armcompute.DiskStateUnattached {
		t.Errorf("after the cutover the disk is %s, want Unattached", st)
	}
}

// TestSnapshotNames: the names of the snapshots luksconv takes fit Azure's 80 characters whatever the
// new disk's name, and a whole VM's resume reads its run's time back from one.
func TestSnapshotNames(t *testing.T) {
	for _, target := range []string{"plain", strings.Repeat("d", maxDiskName)} {
		n := stageSnapshotName(target, 12)
		if len(n) > maxDiskName || !strings.Contains(n, "-luksconv-r12-") || !strings.HasPrefix(n, target[:min(len(target), 20)]) {
			t.Errorf("stage snapshot of %q: %q (%d characters)", target, n, len(n))
		}
		n = srcSnapshotName(target, "1796000000")
		i := strings.LastIndex(n, snapshotInfix)
		if len(n) > maxDiskName || i < 0 || n[i+len(snapshotInfix):] != "1796000000" || srcSnapshotName(target, n[i+len(snapshotInfix):]) != n {
			t.Errorf("source snapshot of %q: %q (%d characters)", target, n, len(n))
		}
	}
}

// putGuestState writes a VM guest state blob at u as Azure keeps one, a fixed VHD: data, then the
// footer.
func putGuestState(u string, data []byte) error {
	ctx := context.Background()
	sink, err := blobio.CreatePageBlobSink(ctx, u, int64(len(data)), blobio.SinkOptions{})
	if err != nil {
		return err
	}
	defer sink.Close()
	if _, err := sink.WriteAt(data, 0); err != nil {
		return err
	}
	return sink.Commit(ctx)
}

// TestAzureStageCutoverTrustedLaunch: the delta cutover of a Trusted Launch VM's OS disk. Round 1
// creates the new disk UploadPreparedSecure and leaves it uploading; the cutover finishes it with the
// VM guest state of the final snapshot, not round 1's, copied in (the fake, as Azure, refuses the
// finish without one), and the disk equals a local conversion of state 2.
func TestAzureStageCutoverTrustedLaunch(t *testing.T) {
	s := setupStage(t)
	dir := t.TempDir()
	want2 := s.local(t, s.set.S2, t.TempDir())
	tl := &armcompute.DiskSecurityProfile{SecurityType: to.Ptr(armcompute.DiskSecurityTypesTrustedLaunch)}
	s.Lock()
	d := s.Disks[azurefake.Key(fakeRG, "osdisk")]
	d.Properties.SecurityProfile, d.Zones = tl, []*string{to.Ptr("1")}
	s.VMs[azurefake.Key(fakeRG, "vm1")].Properties.SecurityProfile = &armcompute.SecurityProfile{SecurityType: to.Ptr(armcompute.SecurityTypesTrustedLaunch),
		UefiSettings: &armcompute.UefiSettings{SecureBootEnabled: to.Ptr(true), VTpmEnabled: to.Ptr(true)}}
	s.GuestStateSAS = func(kind, name string, g armcompute.GrantAccessData) string {
		u := s.url("/vmgs/" + name)
		s.sas = append(s.sas, u)
		return u
	}
	s.GuestStateWritten = func(name string) bool {
		src, err := blobio.OpenPageBlob(context.Background(), s.url("/vmgs/"+name), blobio.SourceOptions{})
		if err != nil {
			return false
		}
		defer src.Close()
		return src.Size() > 0
	}
	// Each snapshot gets a guest state of its own: 1 MiB of its number.
	taken, n := s.SnapshotTaken, byte(0)
	s.SnapshotTaken = func(rg, name string, snap *armcompute.Snapshot) {
		taken(rg, name, snap)
		n++
		if err := putGuestState(s.url("/vmgs/"+name), bytes.Repeat([]byte{n}, guestStateSize-512)); err != nil {
			t.Errorf("guest state of %s: %v", name, err)
		}
	}
	s.Unlock()

	if _, se, code := runCLI(t, s.stageArgs(dir, "--stage")...); code != 0 {
		t.Fatalf("stage round 1: exit %d:\n%s", code, se)
	}
	s.Lock()
	put := s.DiskPut
	s.Unlock()
	if put == nil || *put.Properties.CreationData.CreateOption != armcompute.DiskCreateOptionUploadPreparedSecure {
		t.Fatalf("round 1 did not create the disk UploadPreparedSecure: %+v", put)
	}
	s.toState2(t)
	s.powerState("deallocated")
	so, se, code := runCLI(t, s.stageArgs(dir, "--cutover", "--verify")...)
	if code != 0 {
		t.Fatalf("cutover: exit %d:\n%s", code, se)
	}
	s.assertNoSAS(t, so+se)
	if got := download(t, s.url("/vmgs/plain"), guestStateSize-512); !bytes.Equal(got, bytes.Repeat([]byte{2}, guestStateSize-512)) {
		t.Errorf("the new disk's guest state is not the final snapshot's (first byte %d)", got[0])
	}
	s.assertCutOver(t, dir, want2, "the cutover")
}

// diskFlagsRefused runs what, args(flag, value), once with each of a --sku, a --des (des2, added to the
// fake) and a data access flag other than the new disk's: each must exit 2 naming the flag, make no
// call that starts with one of forbid, and leave the disk uploading.
func (s *stageAzure) diskFlagsRefused(t *testing.T, what string, args func(flag, value string) []string, forbid ...string) {
	t.Helper()
	des2 := strings.Replace(fakeDES, "/des1", "/des2", 1)
	s.Lock()
	s.DiskEncryptionSets[azurefake.Key("rg-keys", "des2")] = &armcompute.DiskEncryptionSet{ID: to.Ptr(des2), Location: to.Ptr("westeurope"),
		Properties: &armcompute.EncryptionSetProperties{EncryptionType: to.Ptr(armcompute.DiskEncryptionSetTypeEncryptionAtRestWithCustomerKey)}}
	s.Unlock()
	for _, c := range []struct{ flag, value string }{
		{"--sku", string(armcompute.DiskStorageAccountTypesStandardLRS)},
		{"--des", des2},
		{"--network-access-policy", string(armcompute.NetworkAccessPolicyDenyAll)},
	} {
		s.takeCalls()
		_, se, code := runCLI(t, args(c.flag, c.value)...)
		if code != exitUsage || !strings.Contains(se, c.flag) {
			t.Errorf("%s with %s %s: exit %d, want %d naming the flag:\n%s", what, c.flag, c.value, code, exitUsage, se)
		}
		for _, call := range s.takeCalls() {
			for _, f := range forbid {
				if strings.HasPrefix(call, f) {
					t.Errorf("the refused %s with %s did %q", what, c.flag, call)
				}
			}
		}
		if st := s.DiskState(fakeRG, "plain"); st != armcompute.DiskStateActiveUpload {
			t.Fatalf("after the refused %s with %s the disk is %s", what, c.flag, st)
		}
	}
}

// TestAzureStageDiskFlags: the rounds after the first write into the disk round 1 created, and cannot
// change its settings. A later round whose --sku, --des or --network-access-policy asks for another disk
// than round 1 made is refused (exit 2) before it takes a snapshot or opens the disk, rather than
// finishing a disk of round 1's SKU or Disk Encryption Set as if it had the ones given; flags that name
// what the disk has (--sku Premium_LRS, which round 1 took from the source) are accepted, and the
// cutover finishes the disk.
func TestAzureStageDiskFlags(t *testing.T) {
	s, dir, want2 := setupStaged(t)
	s.toState2(t)
	s.powerState("deallocated")
	s.diskFlagsRefused(t, "cutover", func(flag, value string) []string { return s.stageArgs(dir, "--cutover", flag, value) }, "PUT snapshot", "GRANT disk plain")
	mustRun(t, "cutover", s.stageArgs(dir, "--cutover", "--verify", "--sku", string(armcompute.DiskStorageAccountTypesPremiumLRS))...)
	s.assertCutOver(t, dir, want2, "the cutover")
}

// TestAzureStageRound1DiskFlags: an interrupted round 1 rerun with another --sku, --des or data access
// flag is refused (exit 2, naming the flag) before it writes: the disk was created with round 1's
// first flags, and the rerun would go on into it as it is and record the new flags as the disk's.
// With the first flags the round finishes, and a cutover with others is refused from the record.
func TestAzureStageRound1DiskFlags(t *testing.T) {
	s := setupStage(t)
	dir := t.TempDir()
	if se := mustInterrupt(t, s.stageArgs(dir, "--stage", "--workers", "1")...); !strings.Contains(se, "luksconv: stopping: an Azure operation under way is awaited") {
		t.Fatalf("cancelled stage round 1 does not say what the run still does:\n%s", se)
	}
	s.diskFlagsRefused(t, "round 1 rerun", func(flag, value string) []string { return s.stageArgs(dir, "--stage", flag, value) }, "GRANT disk plain")
	mustRun(t, "stage round 1 again", s.stageArgs(dir, "--stage")...)
	s.toState2(t)
	s.powerState("deallocated")
	if _, se, code := runCLI(t, s.stageArgs(dir, "--cutover", "--sku", string(armcompute.DiskStorageAccountTypesStandardLRS))...); code != exitUsage {
		t.Errorf("cutover with another --sku: exit %d, want %d:\n%s", code, exitUsage, se)
	}
}

// rotateKey points the ADE settings of the disk name at the new secret (name/version), whose passphrase
// opens none of the test's volumes, as ADE's key rotation stamps them; snapshots taken before keep the
// old settings.
func (f *fakeAzure) rotateKey(name, secret string) {
	f.Lock()
	defer f.Unlock()
	f.Secrets[secret] = azsecrets.Secret{Value: to.Ptr(base64.StdEncoding.EncodeToString([]byte("a rotated passphrase"))), ContentType: to.Ptr(azure.ContentTypeBEK)}
	d := f.Disks[azurefake.Key(fakeRG, name)]
	p := *d.Properties
	esc := *p.EncryptionSettingsCollection
	el := *esc.EncryptionSettings[0]
	dek := *el.DiskEncryptionKey
	dek.SecretURL = to.Ptr(fakeVault + "/secrets/" + secret)
	el.DiskEncryptionKey = &dek
	esc.EncryptionSettings = []*armcompute.EncryptionSettingsElement{&el}
	p.EncryptionSettingsCollection = &esc
	d.Properties = &p
}

// TestAzureStageKeyRotated: ADE rotated the disk's key (its settings name another secret) while a round
// was pending: the rerun reads the pending snapshot, whose header opens only with the key that
// snapshot's own settings name, and uses that key, saying so. The disk's new key would open nothing
// in it (exit 3 before).
func TestAzureStageKeyRotated(t *testing.T) {
	s := setupStage(t)
	dir := t.TempDir()
	mustInterrupt(t, s.stageArgs(dir, "--stage", "--workers", "1")...)
	s.rotateKey("osdisk", "bek/v2")
	_, se, code := runCLI(t, s.stageArgs(dir, "--stage")...)
	if code != 0 || !strings.Contains(se, "names another ADE key than its disk") || strings.Contains(se, "a rotated passphrase") {
		t.Fatalf("stage round 1 again after a key rotation: exit %d:\n%s", code, se)
	}
	if want := s.local(t, s.set.S1, t.TempDir()); !bytes.Equal(s.target(t, len(want)), want) {
		t.Fatal("after round 1 the new disk differs from a local conversion of state 1")
	}
}

// TestAzureCutoverPendingStageRunning: a cutover --deallocate that must refuse an interrupted stage
// round (taken while the VM ran) refuses before it deallocates the VM: the VM keeps running, no
// snapshot is taken, and exit 1 names the stage rerun, which the cutover then follows. Its dry run
// refuses the same way instead of estimating a downtime.
func TestAzureCutoverPendingStageRunning(t *testing.T) {
	s, dir, want2 := setupStaged(t)
	s.toState2(t)
	mustInterrupt(t, s.stageArgs(dir, "--stage", "--workers", "1")...)
	s.takeCalls()
	// The dry run says so too, rather than an expected downtime.
	if so, se, code := runCLI(t, s.stageArgs(dir, "--cutover", "--deallocate", "--dry-run")...); code != exitFailure || !strings.Contains(se, "stage round 2") {
		t.Errorf("dry-run cutover over an interrupted stage round: exit %d, want %d naming the round:\n%s\n%s", code, exitFailure, so, se)
	}
	// A stage round's dry run says it would resume that round.
	if so, se, code := runCLI(t, s.stageArgs(dir, "--stage", "--dry-run", "--json=false")...); code != 0 || !strings.Contains(so, "stage round 2 was interrupted: would read its snapshot ") {
		t.Errorf("dry-run stage over an interrupted stage round: exit %d:\n%s\n%s", code, so, se)
	}
	_, se, code := runCLI(t, s.stageArgs(dir, "--cutover", "--deallocate")...)
	if code != exitFailure || !strings.Contains(se, "stage round 2") || !strings.Contains(se, "--stage instead of --cutover") {
		t.Errorf("cutover --deallocate over an interrupted stage round: exit %d, want %d naming the round:\n%s", code, exitFailure, se)
	}
	s.checkStillRunning(t, "refused cutover", "DEALLOCATE", "PUT snapshot", "GRANT")
	mustRun(t, "stage round 2 again", s.stageArgs(dir, "--stage")...)
	mustRun(t, "cutover", s.stageArgs(dir, "--cutover", "--deallocate", "--verify")...)
	s.assertCutOver(t, dir, want2, "the cutover")
}

// growDisk grows the disk name by n bytes as an Azure disk resize does: the disk's size, and its blob,
// whose VHD footer moves to the new end.
func (s *blobCloud) growDisk(t *testing.T, name string, n int64) {
	t.Helper()
	s.Lock()
	p := s.Disks[azurefake.Key(fakeRG, name)].Properties
	old := *p.DiskSizeBytes
	p.DiskSizeBytes = to.Ptr(old + n)
	s.Unlock()
	pb, err := pageblob.NewClientWithNoCredential(s.url("/acct/disks/"+name), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	footer, err := vhd.FixedFooterBytes(old + n)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pb.Resize(ctx, old+n+512, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pb.ClearPages(ctx, blob.HTTPRange{Offset: old, Count: 512}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pb.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(footer)), blob.HTTPRange{Offset: old + n, Count: 512}, nil); err != nil {
		t.Fatal(err)
	}
}

// TestAzureStageSourceResized: the source disk grown in Azure after round 1. The new disk was created
// at the old size and cannot take the disk as it is now: a later --stage, and the --cutover, refuse
// (exit 2, naming both sizes and what to delete) before they take a snapshot or deallocate the VM,
// rather than leaving a pending round behind that no command can finish.
func TestAzureStageSourceResized(t *testing.T) {
	s := setupStage(t)
	dir := t.TempDir()
	mustRun(t, "stage round 1", s.stageArgs(dir, "--stage")...)
	s.growDisk(t, "osdisk", 1<<20)
	for _, step := range [][]string{{"--stage"}, {"--cutover", "--deallocate"}, {"--stage"}} {
		s.takeCalls()
		_, se, code := runCLI(t, s.stageArgs(dir, step...)...)
		if code != exitUsage || !strings.Contains(se, "resized") || !strings.Contains(se, ".luksconv-stage-plain.json") {
			t.Errorf("%v after the source grew: exit %d, want %d naming the resize and the record:\n%s", step, code, exitUsage, se)
		}
		for _, c := range s.takeCalls() {
			if strings.HasPrefix(c, "PUT snapshot") || strings.HasPrefix(c, "DEALLOCATE") || strings.HasPrefix(c, "GRANT") {
				t.Errorf("%v after the source grew did %q", step, c)
			}
		}
	}
}

// cancelAfterCommit cancels the run once its output is committed (the upload finished).
type cancelAfterCommit struct {
	luksconv.Output
	cancel func()
}

func (o *cancelAfterCommit) Commit(ctx context.Context) error {
	err := o.Output.Commit(ctx)
	o.cancel()
	return err
}

// TestAzureCutoverFinishedActiveSAS: a cutover stopped after it finished the new disk (Ctrl-C during
// --verify) keeps its snapshot pending, and the disk may be left with a read SAS open (ActiveSAS: the
// verification's grant carried out although the run stopped, a revoke that failed, an operator's `az
// disk grant-access`). The disk is finished all the same: a --stage run must not tell the user to
// delete it and start over but name the cutover, and the cutover run again finds the disk finished,
// verifies it and removes the record, as it does when the disk is Unattached.
func TestAzureCutoverFinishedActiveSAS(t *testing.T) {
	s, dir, want2 := setupStaged(t)
	s.toState2(t)
	s.powerState("deallocated")
	ctx, cancel := context.WithCancel(context.Background())
	azureOutputHook = func(j *uploadJob, o luksconv.Output) luksconv.Output {
		return &cancelAfterCommit{Output: o, cancel: cancel}
	}
	_, se, code := runCLICtx(t, ctx, s.stageArgs(dir, "--cutover", "--verify")...)
	azureOutputHook = nil
	cancel()
	// The verification's grant, stopped by the cancel, may still be carried out: ActiveSAS.
	if st := s.DiskState(fakeRG, "plain"); code != exitInterrupted || st != armcompute.DiskStateUnattached && st != armcompute.DiskStateActiveSAS {
		t.Fatalf("cutover stopped after the finish: exit %d, disk %s:\n%s", code, st, se)
	}
	s.Lock()
	s.Disks[azurefake.Key(fakeRG, "plain")].Properties.DiskState = to.Ptr(armcompute.DiskStateActiveSAS)
	s.Unlock()
	_, se, code = runCLI(t, s.stageArgs(dir, "--stage")...)
	if code == 0 || strings.Contains(se, "delete") || !strings.Contains(se, "--cutover") {
		t.Errorf("stage after a finished cutover: exit %d; want a failure naming the cutover, not a deletion:\n%s", code, se)
	}
	s.takeCalls()
	so := mustRun(t, "cutover again", s.stageArgs(dir, "--cutover", "--verify")...)
	if r := reportOf[stageRep](t, so); !r.Verified {
		t.Errorf("the cutover run again did not verify: %+v", r)
	}
	for _, c := range s.takeCalls() {
		if strings.HasPrefix(c, "PUT snapshot") || strings.HasPrefix(c, "GRANT disk plain Write") {
			t.Errorf("the cutover run again did %q", c)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".luksconv-stage-plain.json")); !os.IsNotExist(err) {
		t.Errorf("stage record left: %v", err)
	}
	if got := s.target(t, len(want2)); !bytes.Equal(got, want2) {
		t.Fatal("the new disk differs from a local conversion of state 2")
	}
}

// TestAzureCutoverVerifyFails: a cutover whose --verify finds the new disk wrong (here a page of it
// overwritten after round 1, where no later round writes) exits 9 with a hint that names the stage
// record as well as the disk: deleting the disk alone leaves a record whose rounds nothing can finish.
// Following the hint (delete both, stage again, cut over) gives the right disk.
func TestAzureCutoverVerifyFails(t *testing.T) {
	s := setupStage(t)
	dir := t.TempDir()
	want2 := s.local(t, s.set.S2, t.TempDir())
	record := filepath.Join(dir, ".luksconv-stage-plain.json")
	mustRun(t, "stage round 1", s.stageArgs(dir, "--stage")...)
	// The last page of the disk: past the volume's files, never in the diff.
	last := int64(len(want2)) - 512
	s.writePages(t, "/acct/disks/plain", append(make([]byte, last), bytes.Repeat([]byte{0xa5}, 512)...), []extent.Range{{Off: last, Len: 512}})
	s.toState2(t)
	s.powerState("deallocated")
	_, se, code := runCLI(t, s.stageArgs(dir, "--cutover", "--verify")...)
	if code != exitVerifyFailed || !strings.Contains(se, record) {
		t.Fatalf("cutover over a damaged disk: exit %d, want %d with a hint naming %s:\n%s", code, exitVerifyFailed, record, se)
	}
	// The disk deleted: its data goes with it.
	s.Lock()
	delete(s.Disks, azurefake.Key(fakeRG, "plain"))
	s.Unlock()
	pb, err := pageblob.NewClientWithNoCredential(s.url("/acct/disks/plain"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pb.ClearPages(context.Background(), blob.HTTPRange{Offset: 0, Count: int64(len(want2)) + 512}, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(record); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "stage again", s.stageArgs(dir, "--stage")...)
	mustRun(t, "cutover again", s.stageArgs(dir, "--cutover", "--verify")...)
	s.assertCutOver(t, dir, want2, "the cutover after the hint")
}

// TestAzureStageJournalUnreadable: a stage round whose journal cannot be read for another reason than
// its absence (a share's EIO; here ELOOP) stops with exit 1 before it opens the new disk for writing.
func TestAzureStageJournalUnreadable(t *testing.T) {
	s, dir, _ := setupStaged(t)
	s.toState2(t)
	mustInterrupt(t, s.stageArgs(dir, "--stage", "--workers", "1")...)
	js, _ := filepath.Glob(filepath.Join(dir, ".luksconv-*.journal"))
	if len(js) != 1 {
		t.Fatalf("journals after the interrupted round: %v", js)
	}
	if err := os.Remove(js[0]); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Base(js[0]), js[0]); err != nil {
		t.Fatal(err)
	}
	s.takeCalls()
	if _, se, code := runCLI(t, s.stageArgs(dir, "--stage")...); code != exitFailure || !strings.Contains(se, "too many levels of symbolic links") {
		t.Errorf("stage round 2 with an unreadable journal: exit %d, want %d:\n%s", code, exitFailure, se)
	}
	for _, c := range s.takeCalls() {
		if strings.HasPrefix(c, "GRANT disk plain Write") {
			t.Errorf("the refused round opened the new disk for writing: %q", c)
		}
	}
}

// TestAzureStageSnapshotCutOff: Ctrl-C while Azure takes a stage round's incremental snapshot. Azure
// makes it all the same: the run waits for it and records it as the round's pending snapshot, and the
// same command then reads that snapshot again rather than taking another, which left the first behind
// named nowhere (-q).
func TestAzureStageSnapshotCutOff(t *testing.T) {
	s := setupStage(t)
	dir := t.TempDir()
	s.runCutOff(t, "PUT snapshot ", s.stageArgs(dir, "--stage")...)
	s.Settle()
	snap := calledWith(s.takeCalls(), "PUT snapshot ")
	if snap == "" {
		t.Fatal("no snapshot taken")
	}
	so, se, code := runCLI(t, s.stageArgs(dir, "--stage")...)
	if code != 0 {
		t.Fatalf("rerun: exit %d:\n%s", code, se)
	}
	if again := calledWith(s.takeCalls(), "PUT snapshot "); again != "" || !strings.Contains(se, "Reading snapshot "+fakeID("snapshots", snap)+" again") {
		t.Errorf("the rerun took snapshot %q, leaving the cut-off %s behind:\n%s", again, snap, se)
	}
	if r := reportOf[stageRep](t, so); r.Stage.Round.Round != 1 {
		t.Errorf("the rerun did round %d, want 1", r.Stage.Round.Round)
	}
}

// convertCutOff runs azure convert --source-disk of osdisk into plain (-q), cut off at the first call
// that starts with prefix (runCutOff), and returns the arguments and stderr.
func (s *stageAzure) convertCutOff(t *testing.T, prefix string) ([]string, string) {
	t.Helper()
	args := []string{"azure", "convert", "--source-disk", fakeID("disks", "osdisk"), "--des", fakeDES, "--target-disk", "plain",
		"--header", s.set.S1.Header, "--journal-dir", t.TempDir(), "-q", "--workers", "2"}
	return args, s.runCutOff(t, prefix, args...)
}

// TestAzureConvertSnapshotCutOff: Ctrl-C while Azure takes the snapshot of azure convert --source-disk
// (-q). Azure makes it all the same, and no new disk names it, so the rerun takes another: the
// interrupted run must say that it is kept and that it is to be deleted. It was named nowhere.
func TestAzureConvertSnapshotCutOff(t *testing.T) {
	s := setupStage(t)
	s.powerState("deallocated")
	_, se := s.convertCutOff(t, "PUT snapshot ")
	s.Settle()
	snap := calledWith(s.takeCalls(), "PUT snapshot ")
	if snap == "" {
		t.Fatal("no snapshot taken")
	}
	if !strings.Contains(se, "delete "+fakeID("snapshots", snap)) {
		t.Errorf("the interrupted run does not name the snapshot %s it leaves behind:\n%s", snap, se)
	}
	s.assertNoSAS(t, se)
}

// TestAzureConvertDiskCutOff: Ctrl-C while Azure creates the new disk of azure convert --source-disk.
// Azure creates it all the same, tagged with the snapshot: the run waits for it, so it does not tell
// that a rerun takes another snapshot, and the rerun resumes into that disk from that snapshot.
func TestAzureConvertDiskCutOff(t *testing.T) {
	s := setupStage(t)
	s.powerState("deallocated")
	args, se := s.convertCutOff(t, "PUT disk ")
	if n := s.InFlight(); n != 0 || strings.Contains(se, "a rerun takes new ones") {
		t.Errorf("the run returned with %d operation(s) in flight, saying:\n%s", n, se)
	}
	s.Settle()
	snap := calledWith(s.takeCalls(), "PUT snapshot ")
	if _, se, code := runCLI(t, args...); code != 0 {
		t.Fatalf("rerun: exit %d:\n%s", code, se)
	}
	if again := calledWith(s.takeCalls(), "PUT snapshot "); again != "" || snap == "" {
		t.Errorf("the rerun took snapshot %q after %q", again, snap)
	}
}
