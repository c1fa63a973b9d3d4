package main

import (
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/internal/azurefake"
	"github.com/luksconv/luksconv/internal/vmfixture"
	"github.com/luksconv/luksconv/luksconv"
)

// runningDualPassVM installs the dual-pass VM of setupAzureDualPassVM, running, on blobs: its disks'
// images and, for LUN 9, zeros.
func runningDualPassVM(t *testing.T) (*vmStage, []vmTestDisk) {
	t.Helper()
	disks, zero := dualPassTestDisks(t)
	s := &vmStage{blobCloud: newBlobCloud(t), m: vmfixture.Load(t), disks: disks}
	s.addVM(t, disks, func(d vmTestDisk) { uploadImage(t, s.url("/acct/disks/"+d.name), d.image) })
	uploadImage(t, s.url("/acct/disks/plain9"), zero)
	s.dualPass(disks)
	s.PowerStates[azurefake.Key(fakeRG, "vm1")] = "running"
	s.install(t)
	return s, disks
}

// TestAzureVMStageDualPass: the delta cutover of a dual-pass VM (settings only on the VM model, one
// secret; the OS disk, LUN 0 and 3, which its crypttab names, and the plain LUN 9, which nothing names).
// Round 1, interrupted during LUN 0 once its plan has left LUN 9 out, resumes from the same snapshots
// and leaves LUN 9 out again; LUN 9's snapshot is the only one of it. The guest writes on LUN 0 and on
// LUN 9; round 2 moves LUN 0's change and touches nothing of LUN 9. The guest takes LUN 0 back; the
// cutover (--deallocate), interrupted during LUN 0, resumes, verifies the three new disks and
// re-creates the VM on them with LUN 9 attached as it was; they equal a local `vm convert` of the
// final state. LUN 9 gets no new disk and is never in the stage record, and every run says it stays
// as it is. A rerun of the finished cutover does nothing.
func TestAzureVMStageDualPass(t *testing.T) {
	s, disks := runningDualPassVM(t)

	img2, changed := s.lun0State2(t)
	want := s.localVM(t, disks[1].image)
	dir := t.TempDir()
	t.Chdir(t.TempDir()) // where the VM's rollback model is saved
	vmID := fakeID("virtualMachines", "vm1")
	args := vmStageArgs(dir)
	record := (&azureConvert{journalDir: dir, vm: vmID}).vmStagePath()
	newDisks := []string{"osdisk-luksconv", "data0-luksconv", "data3-luksconv"}

	// readRecord checks that the record holds the three disks converted, and not LUN 9.
	readRecord := func(after string) *vmStageRecord {
		t.Helper()
		b, err := os.ReadFile(record)
		if err != nil {
			t.Fatalf("after %s: no stage record: %v", after, err)
		}
		var rec vmStageRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			t.Fatal(err)
		}
		var luns []int
		for _, d := range rec.Disks {
			luns = append(luns, d.LUN)
		}
		if !slices.Equal(luns, []int{luksconv.OSDisk, 0, 3}) {
			t.Errorf("after %s the stage record has the disks %v, want the OS disk, LUN 0 and 3", after, luns)
		}
		if len(rec.Skipped) != 1 || rec.Skipped[0].LUN != 9 || rec.Skipped[0].SourceDisk != fakeID("disks", "plain9") {
			t.Errorf("after %s the stage record has the skipped disks %+v, want LUN 9", after, rec.Skipped)
		}
		return &rec
	}
	// checkReport checks a run's report: the three disks converted, LUN 9 not, and a warning naming it.
	// It returns the report.
	checkReport := func(what, so, se, warning string) vmStageRep {
		t.Helper()
		r := reportOf[vmStageRep](t, so)
		convert := map[int]bool{}
		for _, d := range r.Disks {
			convert[d.LUN] = d.Convert
			if d.LUN == 9 && d.Stage != nil {
				t.Errorf("%s: LUN 9 has a stage round: %+v", what, *d.Stage)
			}
		}
		if len(r.Disks) != 4 || !convert[luksconv.OSDisk] || !convert[0] || !convert[3] || convert[9] {
			t.Errorf("%s: disks converted %v, want the OS disk, LUN 0 and 3, not 9", what, convert)
		}
		if !strings.Contains(so+se, warning) {
			t.Errorf("%s: LUN 9 is not reported as left (%q):\n%s\n%s", what, warning, so, se)
		}
		return r
	}
	// plain9Calls fails on any call of the run that wrote LUN 9, or created or snapshotted anything for it.
	plain9Calls := func(what string, calls []string) {
		t.Helper()
		for _, c := range calls {
			if strings.Contains(c, "plain9") && !strings.HasPrefix(c, "GET") {
				t.Errorf("%s did %q", what, c)
			}
		}
	}
	interrupt := func(extra ...string) string {
		t.Helper()
		return runInterruptedAt(t, "data0-luksconv", args(extra...)...)
	}
	const dropped = "LUN 9 (plain9) carries no ADE settings (dual pass) and the first stage round found nothing to convert on it"

	// Round 1, interrupted: the plan has left LUN 9 out of the record, whose disks wait on their
	// pending snapshots.
	if se := interrupt("--stage"); !strings.Contains(se, "LUN 9: no ADE line on the OS disk names it and it holds no LUKS volume") {
		t.Errorf("the interrupted round 1 does not say LUN 9 is left:\n%s", se)
	}
	calls := s.takeCalls()
	var snaps []string
	for _, c := range calls {
		if strings.HasPrefix(c, "PUT snapshot ") {
			snaps = append(snaps, strings.TrimPrefix(c, "PUT snapshot "))
		}
	}
	if len(snaps) != 4 || !slices.ContainsFunc(snaps, func(n string) bool { return strings.HasPrefix(n, "plain9") }) {
		t.Errorf("the interrupted round 1 took the snapshots %q, want one of each of the four disks", snaps)
	}
	if hasCall(calls, "PUT disk plain9-luksconv") {
		t.Error("the interrupted round 1 created a disk for LUN 9")
	}
	rec := readRecord("the interrupted round 1")
	if rec.Round != 0 {
		t.Errorf("the interrupted round 1 recorded round %d", rec.Round)
	}
	for _, d := range rec.Disks {
		if d.Pending == "" {
			t.Errorf("after the interrupted round 1 %s has no pending snapshot", diskName(d.LUN))
		}
	}

	so, se, code := runCLI(t, args("--stage", "--parallel", "1")...)
	if code != 0 {
		t.Fatalf("resumed stage round 1: exit %d:\n%s", code, se)
	}
	s.assertNoSAS(t, so+se)
	calls = s.takeCalls()
	plain9Calls("the resumed round 1", calls)
	for _, c := range calls {
		if strings.HasPrefix(c, "PUT snapshot") {
			t.Errorf("the resumed round 1 took a new snapshot: %q", c)
		}
	}
	r1 := checkReport("resumed round 1", so, se, dropped)
	for _, d := range r1.Disks {
		if d.LUN == 0 && (d.Result == nil || d.Result.Resumed == 0) {
			t.Errorf("the resumed round 1 did not resume LUN 0 from its journal: %+v", d.Result)
		}
	}
	if r1.Stage.Round != 1 || r1.Stage.Finished {
		t.Errorf("round 1 report: %+v", r1.Stage)
	}
	if rec := readRecord("round 1"); rec.Round != 1 {
		t.Errorf("round 1 recorded round %d", rec.Round)
	}
	for _, name := range newDisks {
		if st := s.DiskState(fakeRG, name); st != armcompute.DiskStateActiveUpload {
			t.Errorf("after round 1 %s is %s, want ActiveUpload", name, st)
		}
	}

	// The guest writes on LUN 0 and on LUN 9 (no LUKS: a filesystem's worth of anything).
	b1, err := os.ReadFile(disks[1].image)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := os.ReadFile(img2)
	if err != nil {
		t.Fatal(err)
	}
	n := s.writePages(t, "/acct/disks/data0", b2, changed)
	junk := make([]byte, 1<<20)
	for i := range junk {
		junk[i] = byte(i*7 + 1)
	}
	s.writePages(t, "/acct/disks/plain9", append(make([]byte, 4<<20), junk...), []extent.Range{{Off: 4 << 20, Len: 1 << 20}})

	so, se, code = runCLI(t, args("--stage")...)
	if code != 0 {
		t.Fatalf("stage round 2: exit %d:\n%s", code, se)
	}
	plain9Calls("round 2", s.takeCalls())
	r2 := checkReport("round 2", so, se, dropped)
	if r2.Stage.Round != 2 || r2.Stage.Finished {
		t.Errorf("round 2 report: %+v", r2.Stage)
	}
	for _, d := range r2.Disks {
		if d.LUN == 0 && (d.Stage == nil || d.Stage.Round != 2 || d.Stage.BytesChanged < n) {
			t.Errorf("round 2 of LUN 0 (the guest wrote %d bytes): %+v", n, d.Stage)
		}
	}
	if rec := readRecord("round 2"); rec.Round != 2 {
		t.Errorf("round 2 recorded round %d", rec.Round)
	}

	// The dry run counts the three disks.
	so, se, code = runCLI(t, "azure", "convert", "--vm", vmID, "--des", fakeDES, "--journal-dir", dir, "--cutover", "--deallocate", "--dry-run")
	if code != 0 || !strings.Contains(so, "each of its 3 converted disks") {
		t.Errorf("dry-run cutover: exit %d:\n%s\n%s", code, so, se)
	}
	plain9Calls("the dry run", s.takeCalls())

	// The guest takes LUN 0 back to its first state; the cutover is interrupted during LUN 0.
	s.writePages(t, "/acct/disks/data0", b1, changed)
	interrupt("--cutover", "--deallocate")
	calls = s.takeCalls()
	plain9Calls("the interrupted cutover", calls)
	if !hasCall(calls, "DEALLOCATE vm vm1") || hasCall(calls, "DELETE vm vm1") || hasCall(calls, "PUT vm vm1") {
		t.Errorf("the interrupted cutover: %q", calls)
	}
	readRecord("the interrupted cutover")

	so, se, code = runCLI(t, args("--cutover", "--deallocate", "--verify", "--recreate-vm", "--parallel", "1")...)
	if code != 0 {
		t.Fatalf("resumed cutover: exit %d:\n%s", code, se)
	}
	s.assertNoSAS(t, so+se)
	calls = s.takeCalls()
	plain9Calls("the resumed cutover", calls)
	for _, c := range calls {
		if strings.HasPrefix(c, "PUT snapshot") || c == "DEALLOCATE vm vm1" {
			t.Errorf("the resumed cutover did %q", c)
		}
	}
	r3 := checkReport("resumed cutover", so, se, dropped)
	if !r3.Stage.Finished || r3.Stage.Round != 3 || !r3.VMRecreated {
		t.Errorf("cutover report: %+v, vm_recreated %v", r3.Stage, r3.VMRecreated)
	}
	for _, d := range r3.Disks {
		if d.Convert && !d.Verified {
			t.Errorf("%s not verified", diskName(d.LUN))
		}
		if d.LUN == 0 && (d.AlreadyUploaded || d.Result == nil || d.Result.Resumed == 0) {
			t.Errorf("the cutover did not resume LUN 0 from its journal: %+v", d.Result)
		}
	}
	for _, name := range newDisks {
		if st := s.DiskState(fakeRG, name); st == armcompute.DiskStateActiveUpload || st == armcompute.DiskStateReadyToUpload {
			t.Errorf("after the cutover %s is %s", name, st)
		}
	}
	s.sameAs(t, want, "the cutover")
	if _, ok := s.Disks[azurefake.Key(fakeRG, "plain9-luksconv")]; ok {
		t.Error("a new disk was created for LUN 9")
	}
	s.Lock()
	put := s.VMPut
	s.Unlock()
	if put == nil || *put.Properties.StorageProfile.OSDisk.ManagedDisk.ID != fakeID("disks", "osdisk-luksconv") ||
		put.Properties.StorageProfile.OSDisk.EncryptionSettings != nil {
		t.Fatalf("the VM was not re-created on the new OS disk without encryption settings")
	}
	attached := map[int32]string{}
	for _, dd := range put.Properties.StorageProfile.DataDisks {
		attached[*dd.Lun] = path.Base(*dd.ManagedDisk.ID)
	}
	if len(attached) != 3 || attached[0] != "data0-luksconv" || attached[3] != "data3-luksconv" || attached[9] != "plain9" {
		t.Errorf("the re-created VM's data disks: %v", attached)
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, ".luksconv-*")); len(ents) != 0 {
		t.Errorf("files left after the cutover: %v", ents)
	}

	// The cutover again: the VM runs on the converted disks, nothing is done, and it succeeds.
	so, se, code = runCLI(t, args("--cutover", "--deallocate", "--verify", "--recreate-vm")...)
	if code != 0 || !strings.Contains(so, `"already_converted": true`) {
		t.Errorf("cutover after the cutover: exit %d:\n%s\n%s", code, so, se)
	}
	for _, c := range s.takeCalls() {
		if !strings.HasPrefix(c, "GET") {
			t.Errorf("the cutover after the cutover did %q", c)
		}
	}
}

// TestAzureVMStageDualPassAttached: the stage rounds after the first leave out the unstamped data disks
// of a dual-pass VM that round 1 read and found nothing to convert on, and only those. A data disk
// attached after round 1 (here one holding a LUKS volume, which the whole-VM run converts) or put in
// the place of the skipped one at its LUN was never read: a later round refuses the record, as it
// does when a stamped disk is attached or replaced, rather than leave the disk out unread and
// re-create the VM without ADE around it.
func TestAzureVMStageDualPassAttached(t *testing.T) {
	s, disks := runningDualPassVM(t)
	dir := t.TempDir()
	vmID := fakeID("virtualMachines", "vm1")
	args := vmStageArgs(dir)
	mustRun(t, "stage round 1", args("--stage")...)

	// Another copy of LUN 3's disk, unstamped as dual pass leaves every data disk, with its blob.
	uploadImage(t, s.url("/acct/disks/data8"), disks[2].image)
	st, err := os.Stat(disks[2].image)
	if err != nil {
		t.Fatal(err)
	}
	vm := s.VMs[azurefake.Key(fakeRG, "vm1")]
	plain9 := s.Disks[azurefake.Key(fakeRG, "plain9")]
	data8 := &armcompute.Disk{ID: to.Ptr(fakeID("disks", "data8")), Name: to.Ptr("data8"), Location: to.Ptr("westeurope"),
		ManagedBy: to.Ptr(vmID), Properties: &armcompute.DiskProperties{DiskSizeBytes: to.Ptr(st.Size()), DiskState: to.Ptr(armcompute.DiskStateAttached)}}
	attach := func(lun int32, d *armcompute.Disk) {
		s.Lock()
		defer s.Unlock()
		sp := vm.Properties.StorageProfile
		sp.DataDisks = slices.DeleteFunc(sp.DataDisks, func(dd *armcompute.DataDisk) bool { return *dd.Lun == lun })
		if d != nil {
			sp.DataDisks = append(sp.DataDisks, &armcompute.DataDisk{Lun: to.Ptr(lun), Name: d.Name, Caching: to.Ptr(armcompute.CachingTypesNone),
				CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesAttach), ManagedDisk: &armcompute.ManagedDiskParameters{ID: d.ID}})
			s.Disks[azurefake.Key(fakeRG, *d.Name)] = d
		}
	}
	refused := func(what string) {
		t.Helper()
		s.takeCalls()
		so, se, code := runCLI(t, args("--stage")...)
		if code != 1 || !strings.Contains(se, "are not those of its stage record") {
			t.Errorf("stage round 2 with %s: exit %d, want 1 and the record refused:\n%s\n%s", what, code, so, se)
		}
		for _, c := range s.takeCalls() {
			if !strings.HasPrefix(c, "GET") {
				t.Errorf("the refused round 2 (%s) did %q", what, c)
			}
		}
	}

	attach(8, data8)
	refused("a LUKS disk attached at LUN 8 after round 1")
	attach(8, nil)
	attach(9, data8)
	refused("another disk at the skipped disk's LUN 9")
	attach(9, plain9)
	so := mustRun(t, "stage round 2 on round 1's disks", args("--stage")...)
	if r := reportOf[vmStageRep](t, so); r.Stage.Round != 2 {
		t.Errorf("round 2 on round 1's disks: %+v", r.Stage)
	}
}

// TestAzureVMStageDualPassTargets: as TestAzureConvertVMDualPassTargets for the stage rounds. The plain
// LUN 9 of a dual-pass VM, with a name too long for its new disk's or in another region than the DES,
// refused round 1 before the plan had read it; now the plan skips it, round 1 and 2 convert the
// others, and LUN 9 gets no new disk and is recorded as skipped.
func TestAzureVMStageDualPassTargets(t *testing.T) {
	long := "plain9-" + strings.Repeat("x", maxDiskName-len("plain9-"))
	for _, c := range []struct {
		name  string
		plain string // LUN 9's disk
		setup func(t *testing.T, s *vmStage, zero string)
	}{
		{"long name", long, func(t *testing.T, s *vmStage, zero string) {
			uploadImage(t, s.url("/acct/disks/"+long), zero)
			s.renamePlain9(long)
		}},
		{"region", "plain9", func(_ *testing.T, s *vmStage, zero string) {
			s.Disks[azurefake.Key(fakeRG, "plain9")].Location = to.Ptr("northeurope") // the DES is in westeurope
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			disks, zero := dualPassTestDisks(t)
			s := &vmStage{blobCloud: newBlobCloud(t), m: vmfixture.Load(t), disks: disks}
			s.addVM(t, disks, func(d vmTestDisk) { uploadImage(t, s.url("/acct/disks/"+d.name), d.image) })
			uploadImage(t, s.url("/acct/disks/plain9"), zero)
			s.dualPass(disks)
			c.setup(t, s, zero)
			s.PowerStates[azurefake.Key(fakeRG, "vm1")] = "running"
			s.install(t)
			dir := t.TempDir()
			vmID := fakeID("virtualMachines", "vm1")
			args := []string{"azure", "convert", "--vm", vmID, "--des", fakeDES, "--journal-dir", dir, "--json", "-q", "--workers", "2", "--stage"}
			for round := 1; round <= 2; round++ {
				so, se, code := runCLI(t, args...)
				if code != 0 {
					t.Fatalf("stage round %d: exit %d:\n%s", round, code, se)
				}
				r := reportOf[vmStageRep](t, so)
				convert := map[int]bool{}
				for _, d := range r.Disks {
					convert[d.LUN] = d.Convert
				}
				if r.Stage.Round != round || len(r.Disks) != 4 || !convert[luksconv.OSDisk] || !convert[0] || !convert[3] || convert[9] {
					t.Errorf("stage round %d: round %d, disks converted %v, want the OS disk, LUN 0 and 3, not 9", round, r.Stage.Round, convert)
				}
				if w := "LUN 9 (" + c.plain + ") carries no ADE settings (dual pass)"; !strings.Contains(so+se, w) {
					t.Errorf("stage round %d: LUN 9 is not reported as left (%q):\n%s\n%s", round, w, so, se)
				}
				if calls := s.takeCalls(); hasCall(calls, "PUT disk "+c.plain+"-luksconv") {
					t.Errorf("stage round %d created a disk for LUN 9", round)
				}
			}
			b, err := os.ReadFile((&azureConvert{journalDir: dir, vm: vmID}).vmStagePath())
			if err != nil {
				t.Fatal(err)
			}
			var rec vmStageRecord
			if err := json.Unmarshal(b, &rec); err != nil {
				t.Fatal(err)
			}
			if len(rec.Disks) != 3 || len(rec.Skipped) != 1 || rec.Skipped[0].SourceDisk != fakeID("disks", c.plain) {
				t.Errorf("the stage record has %d disks and the skipped %+v, want 3 and LUN 9", len(rec.Disks), rec.Skipped)
			}
		})
	}
}
