package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/luksconv/luksconv/azure"
	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/internal/azurefake"
	"github.com/luksconv/luksconv/internal/deltafixture"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/internal/vmfixture"
	"github.com/luksconv/luksconv/luksconv"
)

// vmStage is the fake cloud of the whole-VM delta cutover test: setupAzureVM's VM (the fixture's OS
// disk and data disks at LUN 0, 1 and 3, each with its own secret, and a plain disk at LUN 9), running,
// with its blobs in internal/blobfake, which answers the page diff.
type vmStage struct {
	*blobCloud
	m     *vmfixture.Manifest
	disks []vmTestDisk
}

func setupVMStage(t *testing.T) *vmStage {
	m := vmfixture.Load(t)
	s := &vmStage{blobCloud: newBlobCloud(t), m: m, disks: vmTestDisks(t, m)}
	s.addVM(t, s.disks, func(d vmTestDisk) { uploadImage(t, s.url("/acct/disks/"+d.name), d.image) })
	s.PowerStates[azurefake.Key(fakeRG, "vm1")] = "running"
	s.install(t)
	return s
}

// vmStageArgs returns the arguments of a whole-VM azure convert of vm1 with the records in dir, and
// extra after them.
func vmStageArgs(dir string) func(extra ...string) []string {
	return func(extra ...string) []string {
		return append([]string{"azure", "convert", "--vm", fakeID("virtualMachines", "vm1"), "--des", fakeDES, "--journal-dir", dir, "--json", "-q", "--workers", "2"}, extra...)
	}
}

// lun0State2 changes LUN 0's ext4 as its guest would (debugfs -w writes a 2 MiB file) and encrypts the
// result with cryptsetup under the disk's own volume key, cipher and sector size. With a detached
// header and the data at 0 that is the ciphertext of the disk's data segment (the plain64 IV counts
// from the segment's start), so sectors the guest did not change keep their ciphertext. It returns the
// disk's image in the new state and the pages that differ from the old.
func (s *vmStage) lun0State2(t *testing.T) (string, []extent.Range) {
	testenv.Need(t, "cryptsetup", "debugfs")
	d, ok := s.m.Disk("lun0")
	if !ok || d.Filesystem == nil || d.Filesystem.Type != "ext4" || d.Filesystem.Offset != 0 || d.LUKS.Header != "attached" || d.DeviceOffset != 0 {
		t.Fatalf("the fixture's lun0 is not a whole-disk LUKS2 volume holding ext4 at 0: %+v", d)
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	testenv.Run(t, "cp", "--sparse=always", s.m.Path(d.Plaintext), data)
	file := testenv.WriteFile(t, dir, "staged", testenv.RandBytes(rand.New(rand.NewPCG(7, 7)), 2<<20))
	if out := testenv.Run(t, "debugfs", "-w", "-R", "write "+file+" /written-after-round-1", data); strings.Contains(out, "ould not") {
		t.Fatalf("debugfs write: %s", out)
	}
	vk, err := hex.DecodeString(d.LUKS.VolumeKey)
	if err != nil {
		t.Fatal(err)
	}
	hdr := filepath.Join(dir, "hdr")
	testenv.Run(t, "truncate", "-s", "16M", hdr)
	testenv.Run(t, "cryptsetup", "reencrypt", "--encrypt", "--type", "luks2", "--header", hdr, "--key-file", s.m.Path(d.KeyFile),
		"--volume-key-file", testenv.WriteFile(t, dir, "vk", vk), "--cipher", d.LUKS.Cipher, "--key-size", strconv.Itoa(d.LUKS.KeySizeBits),
		"--sector-size", strconv.Itoa(d.LUKS.SectorSize), "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "-q", data)
	img := filepath.Join(dir, "lun0-2.raw")
	testenv.Run(t, "cp", "--sparse=always", s.m.Path(d.File), img)
	testenv.Run(t, "dd", "if="+data, "of="+img, "oflag=seek_bytes", "seek="+strconv.FormatInt(d.LUKS.DataOffset, 10), "bs=1M", "conv=notrunc", "status=none")
	changed := deltafixture.ChangedPages(t, s.m.Path(d.File), img)
	var n int64
	for _, r := range changed {
		n += r.Len
	}
	// The file, its inode, bitmaps, group descriptors and the journal: more than 2 MiB, and far less
	// than the disk unless the ciphertext of unchanged sectors changed (another key or IV rule).
	if n < 2<<20 || n > 8<<20 {
		t.Fatalf("LUN 0's new state differs from the old in %d bytes", n)
	}
	return img, changed
}

// localVM converts the VM's disks, LUN 0 from lun0 instead of the fixture's image, with `luksconv vm
// convert`, and returns the outputs by LUN (luksconv.OSDisk for the OS disk).
func (s *vmStage) localVM(t *testing.T, lun0 string) map[int]string {
	out := t.TempDir()
	args := []string{"vm", "convert", "-q", "--os", s.disks[0].image, "--key-file", s.disks[0].key}
	res := map[int]string{luksconv.OSDisk: filepath.Join(out, "os.raw")}
	for _, d := range s.disks[1:] {
		l := strconv.Itoa(d.lun)
		img := d.image
		if d.lun == 0 {
			img = lun0
		}
		args = append(args, "--data", l+"="+img, "--data-key", l+"="+d.key)
		res[d.lun] = filepath.Join(out, "lun"+l+".raw")
	}
	if _, se, code := runCLI(t, append(args, out)...); code != 0 {
		t.Fatalf("local vm convert: exit %d: %s", code, se)
	}
	return res
}

// sameAs checks that each new disk equals the local conversion want of its disk.
func (s *vmStage) sameAs(t *testing.T, want map[int]string, after string) {
	t.Helper()
	for _, d := range s.disks {
		wb, err := os.ReadFile(want[d.lun])
		if err != nil {
			t.Fatal(err)
		}
		if got := download(t, s.url("/acct/disks/"+d.name+"-luksconv"), int64(len(wb))); !bytes.Equal(got, wb) {
			t.Errorf("after %s the new disk of %s differs from the local conversion", after, diskName(d.lun))
		}
	}
}

// vmStageRep is the part of a whole VM's --stage or --cutover JSON report the test reads.
type vmStageRep struct {
	Disks []struct {
		LUN             int  `json:"lun"`
		Convert         bool `json:"convert"`
		AlreadyUploaded bool `json:"already_uploaded"`
		Verified        bool `json:"verified"`
		Stage           *struct {
			Round        int           `json:"round"`
			BytesChanged int64         `json:"bytes_changed"`
			BytesWritten int64         `json:"bytes_written"`
			Plan         time.Duration `json:"plan_ns"`
		} `json:"stage"`
		Result *struct {
			Resumed int64 `json:"bytes_resumed"`
		} `json:"result"`
	} `json:"disks"`
	Stage struct {
		Record    string   `json:"record"`
		Round     int      `json:"round"`
		Finished  bool     `json:"finished"`
		Snapshots []string `json:"snapshots"`
	} `json:"stage"`
	VMRecreated bool `json:"vm_recreated"`
}

// TestAzureVMStageCutover: the delta cutover of a whole VM. Round 1 (the VM running) converts its four
// ADE disks into new disks left uploading and writes the VM's record. The guest then writes a file on
// LUN 0; round 2, interrupted during LUN 0 (disks one at a time), resumes from the same snapshots and
// LUN 0's journal, moves about what changed on LUN 0 and nothing on the others, and every disk equals
// a local `vm convert` of that state. The dry run estimates the downtime. The guest takes LUN 0 back
// to its first state; the cutover (--deallocate) is interrupted during LUN 0 after the OS disk was
// finished, and the rerun reads the same snapshots, finds the OS disk finished, resumes LUN 0,
// verifies every disk and re-creates the VM on the new disks, which equal a local `vm convert` of
// the final state; the record and journals are gone. No SAS signature is printed or stored.
func TestAzureVMStageCutover(t *testing.T) {
	s := setupVMStage(t)
	img2, changed := s.lun0State2(t)
	want1, want2 := s.localVM(t, s.disks[1].image), s.localVM(t, img2)
	dir := t.TempDir()
	t.Chdir(t.TempDir()) // where the VM's rollback model is saved
	vmID := fakeID("virtualMachines", "vm1")
	args := vmStageArgs(dir)
	record := (&azureConvert{journalDir: dir, vm: vmID}).vmStagePath()
	if !strings.HasPrefix(filepath.Base(record), ".luksconv-stage-vm-vm1-") {
		t.Fatalf("stage record %s", record)
	}
	newDisks := []string{"osdisk-luksconv", "data0-luksconv", "data1-luksconv", "data3-luksconv"}

	so, se, code := runCLI(t, args("--stage")...)
	if code != 0 {
		t.Fatalf("stage round 1: exit %d:\n%s", code, se)
	}
	s.assertNoSAS(t, so+se)
	if !strings.Contains(se, "crash-consistent") {
		t.Errorf("stage of a running VM without the crash-consistency warning:\n%s", se)
	}
	r1 := reportOf[vmStageRep](t, so)
	snaps := 0
	for _, c := range s.takeCalls() {
		if strings.HasPrefix(c, "PUT snapshot ") {
			snaps++
		}
		if strings.HasPrefix(c, "REVOKE disk") || strings.Contains(c, " vm ") && !strings.HasPrefix(c, "GET") {
			t.Errorf("round 1 did %q", c)
		}
	}
	if snaps != 4 {
		t.Errorf("round 1 took %d snapshots, want 4", snaps)
	}
	for _, name := range newDisks {
		if st := s.DiskState(fakeRG, name); st != armcompute.DiskStateActiveUpload || s.hasFooter(name, 0) {
			t.Errorf("after round 1 %s is %s (footer %v), want ActiveUpload without a footer", name, st, s.hasFooter(name, 0))
		}
	}
	rb, err := os.ReadFile(record)
	if err != nil {
		t.Fatalf("no stage record: %v", err)
	}
	var rec vmStageRecord
	if err := json.Unmarshal(rb, &rec); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(record); st.Mode().Perm() != 0o600 || rec.Round != 1 || len(rec.Disks) != 4 || rec.Disks[0].LUN != luksconv.OSDisk ||
		bytes.Contains(rb, []byte(stageSig)) || bytes.Contains(rb, []byte("sig=")) {
		t.Errorf("stage record after round 1 (mode %v):\n%.2000s", st.Mode().Perm(), rb)
	}
	for _, d := range rec.Disks {
		if d.Round != 1 || d.Snapshot == "" || d.Pending != "" || d.DiskPlanTag == "" || len(d.Plan) == 0 {
			t.Errorf("record of %s: round %d, snapshot %q, pending %q, plan tag %q", diskName(d.LUN), d.Round, d.Snapshot, d.Pending, d.DiskPlanTag)
		}
	}
	if j, _ := filepath.Glob(filepath.Join(dir, "*.journal")); len(j) != 0 {
		t.Errorf("journals left after a finished round: %v", j)
	}

	// A record whose disks are not the VM's (a data disk swapped since round 1) is refused before
	// anything is taken.
	other := t.TempDir()
	rec.Disks[1].SourceDisk = fakeID("disks", "another")
	if b, err := json.Marshal(rec); err != nil {
		t.Fatal(err)
	} else if err := os.WriteFile(filepath.Join(other, filepath.Base(record)), b, 0o600); err != nil {
		t.Fatal(err)
	}
	s.takeCalls()
	_, se, code = runCLI(t, "azure", "convert", "--vm", vmID, "--des", fakeDES, "--journal-dir", other, "--stage")
	if code != 1 || !strings.Contains(se, "are not those of its stage record") {
		t.Errorf("stage with a record of other disks: exit %d:\n%s", code, se)
	}
	for _, c := range s.takeCalls() {
		if !strings.HasPrefix(c, "GET") {
			t.Errorf("the refused stage did %q", c)
		}
	}

	b1, err := os.ReadFile(s.disks[1].image)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := os.ReadFile(img2)
	if err != nil {
		t.Fatal(err)
	}
	n := s.writePages(t, "/acct/disks/data0", b2, changed)

	// Round 2, interrupted during LUN 0's upload (disks one at a time, the OS disk first), resumes
	// from the same snapshots.
	interrupt := func(extra ...string) {
		t.Helper()
		runInterruptedAt(t, "data0-luksconv", args(extra...)...)
	}
	interrupt("--stage")
	if j, _ := filepath.Glob(filepath.Join(dir, "*.journal")); len(j) == 0 {
		t.Error("no journal after the interrupted round")
	}
	s.takeCalls()
	so, se, code = runCLI(t, args("--stage", "--parallel", "1")...)
	if code != 0 {
		t.Fatalf("stage round 2: exit %d:\n%s", code, se)
	}
	for _, c := range s.takeCalls() {
		if strings.HasPrefix(c, "PUT snapshot") {
			t.Errorf("the resumed round 2 took a new snapshot: %q", c)
		}
	}
	r2 := reportOf[vmStageRep](t, so)
	if r2.Stage.Round != 2 || r2.Stage.Finished {
		t.Errorf("round 2 report: %+v", r2.Stage)
	}
	s.sameAs(t, want2, "round 2")
	var first = map[int]int64{}
	for _, d := range r1.Disks {
		if d.Stage != nil {
			first[d.LUN] = d.Stage.BytesWritten
		}
	}
	for _, d := range r2.Disks {
		if !d.Convert {
			continue
		}
		if d.Stage == nil || d.Stage.Round != 2 {
			t.Fatalf("round 2: %s has no round 2: %+v", diskName(d.LUN), d.Stage)
		}
		t.Logf("%s: round 1 wrote %d bytes; round 2: %d changed, wrote %d", diskName(d.LUN), first[d.LUN], d.Stage.BytesChanged, d.Stage.BytesWritten)
		switch {
		case d.LUN == 0 && (d.Stage.BytesChanged < n || d.Stage.BytesWritten == 0 || d.Stage.BytesWritten > 2*n+(1<<20) || d.Result == nil || d.Result.Resumed == 0):
			t.Errorf("round 2 of LUN 0 (%d bytes written by the guest): %+v", n, *d.Stage)
		case d.Stage.Plan <= 0:
			t.Errorf("round 2 of %s recorded no plan time", diskName(d.LUN))
		case d.LUN != 0 && d.Stage.BytesChanged != 0:
			t.Errorf("round 2: %s changed by %d bytes, though only LUN 0 was written", diskName(d.LUN), d.Stage.BytesChanged)
		case d.LUN != 0 && d.Stage.BytesWritten > first[d.LUN]/2: // LUN 0's bound is the guest's write, above
			t.Errorf("round 2 of %s wrote %d bytes, round 1 %d", diskName(d.LUN), d.Stage.BytesWritten, first[d.LUN])
		}
	}

	// The dry run: an estimate from the rounds, and nothing taken, granted or created.
	s.takeCalls()
	so, se, code = runCLI(t, "azure", "convert", "--vm", vmID, "--des", fakeDES, "--journal-dir", dir, "--cutover", "--deallocate", "--dry-run")
	if code != 0 || !strings.Contains(so, "expected downtime of the cutover: ") || !strings.Contains(so, azure.MeasuredVMCutoverFormula) ||
		!strings.Contains(so, "Would deallocate VM ") || !strings.Contains(so, "; plan ") {
		t.Errorf("dry-run cutover: exit %d:\n%s\n%s", code, so, se)
	}
	so, se, code = runCLI(t, "azure", "convert", "--vm", vmID, "--des", fakeDES, "--journal-dir", dir, "--stage", "--dry-run")
	if code != 0 || !strings.Contains(so, "stage round 3 of VM ") || !strings.Contains(so, "LUN 0: stage round 3: would take an incremental snapshot of ") {
		t.Errorf("dry-run stage round 3: exit %d:\n%s\n%s", code, so, se)
	}
	for _, c := range s.takeCalls() {
		if !strings.HasPrefix(c, "GET") {
			t.Errorf("the dry run did %q", c)
		}
	}

	// The guest takes LUN 0 back to its first state; the cutover, interrupted during LUN 0's upload
	// after the OS disk was finished, then resumes.
	s.writePages(t, "/acct/disks/data0", b1, changed)
	interrupt("--cutover", "--deallocate")
	calls := s.takeCalls()
	if !hasCall(calls, "DEALLOCATE vm vm1") || hasCall(calls, "DELETE vm vm1") || hasCall(calls, "PUT vm vm1") {
		t.Errorf("the interrupted cutover: %q", calls)
	}
	for name, st := range map[string]armcompute.DiskState{"osdisk-luksconv": armcompute.DiskStateUnattached, "data0-luksconv": armcompute.DiskStateActiveUpload,
		"data3-luksconv": armcompute.DiskStateActiveUpload} {
		if got := s.DiskState(fakeRG, name); got != st {
			t.Errorf("after the interrupted cutover %s is %s, want %s", name, got, st)
		}
	}
	if _, err := os.Stat(record); err != nil {
		t.Errorf("the interrupted cutover removed the record: %v", err)
	}

	saved, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	so, se, code = runCLI(t, args("--cutover", "--deallocate", "--verify", "--recreate-vm", "--parallel", "1")...)
	if code != 0 {
		t.Fatalf("resumed cutover: exit %d:\n%s", code, se)
	}
	s.assertNoSAS(t, so+se)
	calls = s.takeCalls()
	for _, c := range calls {
		if strings.HasPrefix(c, "PUT snapshot") || c == "DEALLOCATE vm vm1" {
			t.Errorf("the resumed cutover did %q", c)
		}
	}
	r3 := reportOf[vmStageRep](t, so)
	if !r3.Stage.Finished || r3.Stage.Round != 3 || !r3.VMRecreated {
		t.Errorf("cutover report: %+v, vm_recreated %v", r3.Stage, r3.VMRecreated)
	}
	// Every disk's round snapshots, kept, named in the report (three rounds of four disks).
	if sn := r3.Stage.Snapshots; len(sn) != 12 {
		t.Errorf("cutover report's snapshots %q, want 12", sn)
	}
	for _, d := range r3.Disks {
		if !d.Convert {
			continue
		}
		if !d.Verified {
			t.Errorf("%s not verified", diskName(d.LUN))
		}
		switch d.LUN {
		case luksconv.OSDisk:
			if !d.AlreadyUploaded {
				t.Errorf("the OS disk, finished before the interruption, was written again")
			}
		case 0:
			if d.AlreadyUploaded || d.Result == nil || d.Result.Resumed == 0 {
				t.Errorf("LUN 0 did not resume from its journal: %+v", d.Result)
			}
		}
	}
	for _, name := range newDisks {
		if st := s.DiskState(fakeRG, name); st == armcompute.DiskStateActiveUpload || st == armcompute.DiskStateReadyToUpload {
			t.Errorf("after the cutover %s is %s", name, st)
		}
	}
	s.sameAs(t, want1, "the cutover")
	s.Lock()
	put := s.VMPut
	s.Unlock()
	if put == nil || *put.Properties.StorageProfile.OSDisk.ManagedDisk.ID != fakeID("disks", "osdisk-luksconv") {
		t.Fatalf("the VM was not re-created on the new OS disk")
	}
	attached := map[int32]string{}
	for _, dd := range put.Properties.StorageProfile.DataDisks {
		attached[*dd.Lun] = path.Base(*dd.ManagedDisk.ID)
	}
	if attached[0] != "data0-luksconv" || attached[1] != "data1-luksconv" || attached[3] != "data3-luksconv" || attached[9] != "plain9" {
		t.Errorf("the re-created VM's data disks: %v", attached)
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, ".luksconv-*")); len(ents) != 0 {
		t.Errorf("files left after the cutover: %v", ents)
	}
	// A run killed after the re-creation, before the record went: the rerun removes it, exit 0.
	if err := os.WriteFile(record, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	so, se, code = runCLI(t, args("--cutover", "--deallocate", "--verify", "--recreate-vm")...)
	if code != 0 || !strings.Contains(so, `"already_converted": true`) {
		t.Errorf("rerun with the record left: exit %d:\n%s%s", code, so, se)
	}
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Errorf("stage record left after the rerun: %v", err)
	}
}

// runInterruptedAt runs the CLI with args, one disk and one worker at a time, and cancels it once the
// upload into the new disk named target has begun: the run must exit interrupted. It returns stderr.
func runInterruptedAt(t *testing.T, target string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	azureOutputHook = func(j *uploadJob, o luksconv.Output) luksconv.Output {
		if path.Base(j.diskID) == target {
			return &interruptOutput{Output: o, cancel: cancel}
		}
		return o
	}
	defer func() { azureOutputHook = nil }()
	_, se, code := runCLICtx(t, ctx, slices.Concat(args, []string{"--parallel", "1", "--workers", "1"})...)
	if code != exitInterrupted {
		t.Fatalf("interrupted %q: exit %d, want %d:\n%s", args, code, exitInterrupted, se)
	}
	return se
}

// TestAzureVMStageKeyRotated: as TestAzureStageKeyRotated for a whole VM whose round 1 was interrupted
// on LUN 0's upload: the rerun opens LUN 0's pending snapshot with the key its settings name.
func TestAzureVMStageKeyRotated(t *testing.T) {
	s := setupVMStage(t)
	dir := t.TempDir()
	args := vmStageArgs(dir)
	runInterruptedAt(t, "data0-luksconv", args("--stage")...)
	s.rotateKey("data0", "bek-data0/v2")
	_, se, code := runCLI(t, args("--stage")...)
	if code != 0 || !strings.Contains(se, "LUN 0: snapshot ") || !strings.Contains(se, "names another ADE key than its disk") {
		t.Fatalf("stage round 1 again after a key rotation: exit %d:\n%s", code, se)
	}
}

// TestAzureVMStageDiskFlags: as TestAzureStageDiskFlags for a whole VM: a cutover whose --sku asks for
// other disks than round 1 created is refused (exit 2, naming the OS disk) before any snapshot is
// taken or any new disk opened, and the new disks stay uploading.
func TestAzureVMStageDiskFlags(t *testing.T) {
	s := setupVMStage(t)
	dir := t.TempDir()
	args := vmStageArgs(dir)
	mustRun(t, "stage round 1", args("--stage")...)
	s.powerState("deallocated")
	s.takeCalls()
	_, se, code := runCLI(t, args("--cutover", "--sku", string(armcompute.DiskStorageAccountTypesStandardSSDLRS))...)
	if code != exitUsage || !strings.Contains(se, "OS disk: ") || !strings.Contains(se, "--sku StandardSSD_LRS") {
		t.Errorf("cutover with another --sku: exit %d, want %d naming the disk and the flag:\n%s", code, exitUsage, se)
	}
	for _, c := range s.takeCalls() {
		if strings.HasPrefix(c, "PUT snapshot") || strings.HasPrefix(c, "GRANT disk") {
			t.Errorf("the refused cutover did %q", c)
		}
	}
	for _, name := range []string{"osdisk-luksconv", "data0-luksconv", "data1-luksconv", "data3-luksconv"} {
		if st := s.DiskState(fakeRG, name); st != armcompute.DiskStateActiveUpload {
			t.Errorf("after the refused cutover %s is %s", name, st)
		}
	}

	// A record that is not what luksconv writes is damaged input (exit 5), not a crash.
	rec := (&azureConvert{journalDir: dir, vm: fakeID("virtualMachines", "vm1")}).vmStagePath()
	b, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	var r map[string]any
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	r["disks"].([]any)[1] = nil
	nulled, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ what, text, want string }{{"a null disk", string(nulled), "disks[1] is null"}, {"no JSON", "{", "unexpected end of JSON input"}} {
		if err := os.WriteFile(rec, []byte(c.text), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, se, code := runCLI(t, args("--cutover")...); code != exitCorrupt || !strings.Contains(se, c.want) {
			t.Errorf("cutover with %s in the stage record: exit %d, want %d saying %q:\n%s", c.what, code, exitCorrupt, c.want, se)
		}
	}
}

// TestAzureVMCutoverPendingStageRunning: as TestAzureCutoverPendingStageRunning for a whole VM whose
// round 2 was interrupted (on LUN 0's upload): the cutover --deallocate refuses before it deallocates the VM
// or snapshots any disk.
func TestAzureVMCutoverPendingStageRunning(t *testing.T) {
	s := setupVMStage(t)
	dir := t.TempDir()
	vmID := fakeID("virtualMachines", "vm1")
	args := func(extra ...string) []string {
		return append([]string{"azure", "convert", "--vm", vmID, "--des", fakeDES, "--journal-dir", dir, "--json", "-q"}, extra...)
	}
	mustRun(t, "stage round 1", args("--stage", "--workers", "2")...)
	img2, changed := s.lun0State2(t)
	b, err := os.ReadFile(img2)
	if err != nil {
		t.Fatal(err)
	}
	s.writePages(t, "/acct/disks/data0", b, changed)
	runInterruptedAt(t, "data0-luksconv", args("--stage")...)
	s.takeCalls()
	_, se, code := runCLI(t, args("--cutover", "--deallocate", "--workers", "2")...)
	if code != exitFailure || !strings.Contains(se, ": stage round 2") {
		t.Errorf("cutover --deallocate over an interrupted stage round: exit %d, want %d naming the round:\n%s", code, exitFailure, se)
	}
	s.checkStillRunning(t, "refused cutover", "DEALLOCATE", "PUT snapshot")
}

// TestAzureVMCutoverKeysFirst: a whole VM's cutover --deallocate recovers the disks' keys before it
// deallocates the VM, as the one-disk cutover does: with the secrets gone from Key Vault it fails
// with the VM still running.
func TestAzureVMCutoverKeysFirst(t *testing.T) {
	s := setupVMStage(t)
	dir := t.TempDir()
	args := vmStageArgs(dir)
	mustRun(t, "stage round 1", args("--stage")...)
	s.Lock()
	clear(s.Secrets)
	s.Unlock()
	s.takeCalls()
	if _, se, code := runCLI(t, args("--cutover", "--deallocate")...); code == 0 {
		t.Errorf("cutover without the secrets: exit 0:\n%s", se)
	}
	s.checkStillRunning(t, "failed cutover", "DEALLOCATE", "PUT snapshot")
}

// TestAzureVMStageSourceResized: as TestAzureStageSourceResized for a whole VM whose LUN 1 disk grew
// after round 1: the next round refuses (exit 2, naming LUN 1) before it snapshots any disk.
func TestAzureVMStageSourceResized(t *testing.T) {
	s := setupVMStage(t)
	dir := t.TempDir()
	args := vmStageArgs(dir)
	mustRun(t, "stage round 1", args("--stage")...)
	s.growDisk(t, "data1", 1<<20)
	s.takeCalls()
	_, se, code := runCLI(t, args("--stage")...)
	if code != exitUsage || !strings.Contains(se, "LUN 1: ") || !strings.Contains(se, "resized") {
		t.Errorf("stage round 2 after LUN 1 grew: exit %d, want %d naming LUN 1 and the resize:\n%s", code, exitUsage, se)
	}
	for _, c := range s.takeCalls() {
		if strings.HasPrefix(c, "PUT snapshot") {
			t.Errorf("the refused round did %q", c)
		}
	}
}

// TestAzureVMStageSnapshotCutOff: as TestAzureStageSnapshotCutOff for a whole VM: the snapshot of the
// first disk, cut off by Ctrl-C and made by Azure all the same, is recorded, and the rerun reads it
// again and takes the other disks' snapshots only.
func TestAzureVMStageSnapshotCutOff(t *testing.T) {
	s := setupVMStage(t)
	dir := t.TempDir()
	args := vmStageArgs(dir)
	s.runCutOff(t, "PUT snapshot ", args("--stage")...)
	s.Settle()
	c := s.takeCalls()
	snap := calledWith(c, "PUT snapshot ")
	if snap == "" {
		t.Fatalf("no snapshot taken: %q", c)
	}
	_, se, code := runCLI(t, args("--stage")...)
	if code != 0 {
		t.Fatalf("rerun: exit %d:\n%s", code, se)
	}
	snaps := 0
	for _, c := range s.takeCalls() {
		if strings.HasPrefix(c, "PUT snapshot ") {
			snaps++
		}
	}
	if snaps != 3 || !strings.Contains(se, "reading snapshot "+fakeID("snapshots", snap)+" again") {
		t.Errorf("the rerun took %d snapshots (want 3) and did not read the cut-off %s again:\n%s", snaps, snap, se)
	}
}
