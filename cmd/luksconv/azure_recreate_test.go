package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"

	"github.com/luksconv/luksconv/azure"
	"github.com/luksconv/luksconv/internal/azurefake"
	"github.com/luksconv/luksconv/internal/testenv"
)

// retryWithin makes the CLI's Azure client retry a refused VM PUT for bound only.
func (f *fakeAzure) retryWithin(t *testing.T, bound time.Duration) {
	old := azureClientHook
	azureClientHook = func() (azcore.TokenCredential, *azure.Options) {
		cred, o := f.hook()
		o.VMCreateRetry = bound
		return cred, o
	}
	t.Cleanup(func() { azureClientHook = old })
}

// vmOSDisk is the name of the OS disk of vm1 in the fake, "" when the VM is deleted (or left Failed).
func (f *fakeAzure) vmOSDisk() string {
	f.Lock()
	defer f.Unlock()
	vm, ok := f.VMs[azurefake.Key(fakeRG, "vm1")]
	if !ok || vm.Properties.ProvisioningState != nil && *vm.Properties.ProvisioningState == "Failed" {
		return ""
	}
	return filepath.Base(*vm.Properties.StorageProfile.OSDisk.ManagedDisk.ID)
}

// vmProvisioning sets the provisioning state of vm1 in the fake.
func (f *fakeAzure) vmProvisioning(state string) {
	f.Lock()
	defer f.Unlock()
	f.VMs[azurefake.Key(fakeRG, "vm1")].Properties.ProvisioningState = to.Ptr(state)
}

// rerunNotProvisioned runs args, an `azure convert --recreate-vm` whose VM stands on its new disks,
// with the VM left Failed and then Updating by the fake: each must exit 1 with what is wrong (exit 0,
// nothing to do, would call a VM that does not run converted); the VM is left Succeeded.
func rerunNotProvisioned(t *testing.T, f *fakeAzure, args ...string) {
	t.Helper()
	for state, want := range map[string]string{"Failed": "its provisioning state is Failed", "Updating": "is still Updating"} {
		f.vmProvisioning(state)
		so, se, code := runCLI(t, args...)
		if code != exitFailure || !strings.Contains(so+se, want) || (state == "Failed" && !strings.Contains(so+se, "az vm redeploy")) {
			t.Errorf("rerun on a VM %s: exit %d, want %d and %q:\n%s%s", state, code, exitFailure, want, so, se)
		}
	}
	f.vmProvisioning("Succeeded")
}

func modelFiles(t *testing.T) []string {
	m, err := filepath.Glob("luksconv-vm-vm1-*.json")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestAzureRecreateVM: --recreate-vm refused by the preflight (an Azure Policy denial in ARM's
// validation) leaves the VM alone and says so; a PUT that fails for good (AllocationFailed) is followed
// by the automatic restore of the original VM, which the error reports; a NIC still held for the deleted
// VM is waited out and the VM re-created. After every run the VM exists.
func TestAzureRecreateVM(t *testing.T) {
	f, _ := setupAzureVM(t)
	t.Chdir(t.TempDir())
	f.retryWithin(t, time.Minute)
	vmID := fakeID("virtualMachines", "vm1")
	args := []string{"azure", "convert", "-q", "--vm", vmID, "--des", fakeDES, "--recreate-vm"}

	f.Lock()
	f.PolicyDeny = func(vm *armcompute.VirtualMachine) string { return "require-encryption-at-host" }
	f.Unlock()
	f.takeCalls()
	_, se, code := runCLI(t, args...)
	if code == 0 || !strings.Contains(se, "RequestDisallowedByPolicy") || !strings.Contains(se, "require-encryption-at-host") ||
		!strings.Contains(se, "the VM was not changed") || !strings.Contains(se, "hint: nothing was deleted") {
		t.Fatalf("policy denial: exit %d: %s", code, se)
	}
	calls := f.takeCalls()
	if !slices.Contains(calls, "VALIDATE deployment luksconv-preflight-vm1") {
		t.Errorf("no validation in %q", calls)
	}
	for _, c := range calls {
		if strings.HasSuffix(c, " vm vm1") {
			t.Errorf("refused by the preflight, yet %s", c)
		}
	}
	if d := f.vmOSDisk(); d != "osdisk" {
		t.Fatalf("VM on %q after a refused preflight", d)
	}

	f.Lock()
	f.PolicyDeny = nil
	f.VMPutErrors = []azurefake.Refusal{azurefake.AllocationFail}
	f.Unlock()
	_, se, code = runCLI(t, args...)
	// Azure starts the VM it re-creates: the hint says to deallocate it before converting again.
	if code == 0 || !strings.Contains(se, "AllocationFailed") || !strings.Contains(se, "the original VM was restored") || !strings.Contains(se, "hint: the VM runs on its old ADE disks") ||
		!strings.Contains(se, "deallocate it") || strings.Contains(se, "deallocated as before") {
		t.Fatalf("failed create: exit %d: %s", code, se)
	}
	if d := f.vmOSDisk(); d != "osdisk" {
		t.Fatalf("VM on %q after the restore", d)
	}
	if m := modelFiles(t); len(m) != 0 {
		t.Errorf("model file kept after a restore: %q", m)
	}

	f.Lock()
	f.NICHold = 2
	f.PowerStates[azurefake.Key(fakeRG, "vm1")] = "deallocated" // az vm deallocate, as the hint says
	f.Unlock()
	f.takeCalls()
	so, se, code := runCLI(t, args...)
	if code != 0 || !strings.Contains(so, "re-created VM") {
		t.Fatalf("NIC held: exit %d: %s%s", code, so, se)
	}
	var puts int
	for _, c := range f.takeCalls() {
		if c == "PUT vm vm1" {
			puts++
		}
	}
	if puts != 3 || f.vmOSDisk() == "osdisk" || f.vmOSDisk() == "" {
		t.Errorf("%d PUTs, VM on %q", puts, f.vmOSDisk())
	}
	if m := modelFiles(t); len(m) != 0 {
		t.Errorf("model file kept after a re-creation: %q", m)
	}
}

// TestAzureRecreateVMRestoreFails: the NIC stays held past the retry bound for the new VM and its
// restore alike: the error says the VM is deleted and where its model is (in --journal-dir, beside the
// journals), the hint gives the command that restores it, and the file is the rollback body.
func TestAzureRecreateVMRestoreFails(t *testing.T) {
	f, _ := setupAzureVM(t)
	t.Chdir(t.TempDir())
	dir := t.TempDir()
	f.retryWithin(t, 20*time.Millisecond)
	f.Lock()
	f.NICHold = 1 << 30
	f.Unlock()
	_, se, code := runCLI(t, "azure", "convert", "-q", "--vm", fakeID("virtualMachines", "vm1"), "--des", fakeDES, "--recreate-vm", "--journal-dir", dir)
	m, _ := filepath.Glob(filepath.Join(dir, "luksconv-vm-vm1-*.json"))
	if code == 0 || len(m) != 1 || len(modelFiles(t)) != 0 {
		t.Fatalf("exit %d, model files %q in --journal-dir, %q in the current directory: %s", code, m, modelFiles(t), se)
	}
	path := m[0]
	for _, w := range []string{"NicReservedForAnotherVm", "restoring the original VM failed too", "the VM is deleted, its model is saved in " + path,
		"hint: restore it by hand: az rest --method put", "--body @" + path} {
		if !strings.Contains(se, w) {
			t.Errorf("stderr lacks %q:\n%s", w, se)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(b), `"osdisk"`) || strings.Contains(string(b), "AzureDiskEncryption") {
		t.Errorf("model file: %v\n%s", err, b)
	}
	f.assertNoSAS(t, se+string(b))
}

// TestAzureRecreateVMGoneWithModel: a run killed between the DELETE and the PUT leaves the VM gone and
// its model in --journal-dir; the rerun, which cannot find the VM, names the file and the command that
// restores it. The command is for the cloud the VM is in: its URL is the VM's ID, which az rest
// prefixes with the Resource Manager endpoint of the cloud it is set to (management.azure.com is the
// public cloud's only).
func TestAzureRecreateVMGoneWithModel(t *testing.T) {
	f, _ := setupAzureVM(t)
	t.Chdir(t.TempDir())
	dir := t.TempDir()
	vmID := fakeID("virtualMachines", "vm1")
	model := filepath.Join(dir, azure.ModelName(vmID, time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)))
	if err := os.WriteFile(model, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.Lock()
	delete(f.VMs, azurefake.Key(fakeRG, "vm1"))
	f.Unlock()
	for _, cloud := range []string{"AzureCloud", "AzureUSGovernment"} {
		_, se, code := runCLI(t, "azure", "convert", "-q", "--cloud", cloud, "--vm", vmID, "--des", fakeDES, "--recreate-vm", "--journal-dir", dir)
		if code != exitUsage || !strings.Contains(se, "saved its model in "+model) || !strings.Contains(se, "az rest --method put --url '"+vmID+"?api-version=") {
			t.Fatalf("%s: exit %d, want %d and the model and the restore command named:\n%s", cloud, code, exitUsage, se)
		}
	}
}

// TestAzureRecreateVMFollowUps: what the re-created VM lost and a person must redo (an extension not
// re-created, the system-assigned identity's new principal, Backup protection) is said at the end of a
// run that re-created it, not only by the dry run; what the plan noted and the re-creation checked (the
// new disks did not exist yet at planning) is not.
func TestAzureRecreateVMFollowUps(t *testing.T) {
	f, _ := setupAzureVM(t)
	t.Chdir(t.TempDir())
	f.Lock()
	vm := f.VMs[azurefake.Key(fakeRG, "vm1")]
	vm.Resources = append(vm.Resources, &armcompute.VirtualMachineExtension{Name: to.Ptr("AzureMonitorLinuxAgent"),
		Properties: &armcompute.VirtualMachineExtensionProperties{Publisher: to.Ptr("Microsoft.Azure.Monitor"), Type: to.Ptr("AzureMonitorLinuxAgent")}})
	vm.Identity = &armcompute.VirtualMachineIdentity{Type: to.Ptr(armcompute.ResourceIdentityTypeSystemAssigned)}
	f.Unlock()
	so, se, code := runCLI(t, "azure", "convert", "-q", "--vm", fakeID("virtualMachines", "vm1"), "--des", fakeDES, "--recreate-vm")
	if code != 0 || !strings.Contains(so, "re-created VM") {
		t.Fatalf("exit %d:\n%s%s", code, so, se)
	}
	for _, w := range []string{"warning: extension AzureMonitorLinuxAgent (Microsoft.Azure.Monitor/AzureMonitorLinuxAgent) is not re-created",
		"warning: the system-assigned identity gets a new principal", "warning: if Azure Backup or Azure Site Recovery protects the VM"} {
		if !strings.Contains(so+se, w) {
			t.Errorf("the run does not say %q:\n%s%s", w, so, se)
		}
	}
	if strings.Contains(so+se, "does not exist yet") {
		t.Errorf("the run repeats a planning note the re-creation settled:\n%s%s", so, se)
	}
}

// TestAzureRecreateVMRerunOneDisk: the same one-disk `azure convert --recreate-vm` run again once the
// VM runs on the new OS disk (a run that ended after the PUT: killed, or exit 11 for its licensing)
// has nothing to do: exit 0, no snapshot, grant or VM call; it failed with "new OS disk is the VM's
// current OS disk" (exit 1, which a fleet engine retries) after reading the source again. While the
// VM's provisioning state is Failed or Updating the rerun exits 1 and says so. A rollback model of the
// VM an earlier run left is removed then (listed by a dry run), another VM's is not.
func TestAzureRecreateVMRerunOneDisk(t *testing.T) {
	s, dir := setupZonalStage(t)
	s.powerState("deallocated")
	args := []string{"azure", "convert", "--source-disk", fakeID("disks", "osdisk"), "--des", fakeDES, "--target-disk", "plain", "--header", s.set.S1.Header,
		"--journal-dir", dir, "-q", "--workers", "2", "--recreate-vm", "--vm", fakeID("virtualMachines", "vm1")}
	mustRun(t, "first run", args...)
	// A model file an earlier run left (stopped unsure whether the new VM existed), and those of VM
	// vm1-2 and of VM vm1 of another resource group beside it in the shared journal directory.
	at := time.Date(2026, 12, 8, 1, 2, 3, 0, time.UTC)
	mine := filepath.Join(dir, azure.ModelName(fakeID("virtualMachines", "vm1"), at))
	others := []string{filepath.Join(dir, azure.ModelName(fakeID("virtualMachines", "vm1-2"), at)),
		filepath.Join(dir, azure.ModelName(strings.Replace(fakeID("virtualMachines", "vm1"), "/resourceGroups/"+fakeRG+"/", "/resourceGroups/rg-other/", 1), at))}
	for _, m := range append([]string{mine}, others...) {
		testenv.WriteFile(t, dir, filepath.Base(m), []byte("{}"))
	}
	rerunNotProvisioned(t, s.fakeAzure, args...)
	if so, se, code := runCLI(t, append(slices.Clone(args), "--dry-run")...); code != 0 || !strings.Contains(so, "would remove "+mine) {
		t.Errorf("dry rerun: exit %d:\n%s%s", code, so, se)
	}
	s.takeCalls()
	so, se, code := runCLI(t, args...)
	if code != 0 || !strings.Contains(so, "already runs on "+fakeID("disks", "plain")) || !strings.Contains(so, "removed "+mine) {
		t.Fatalf("rerun: exit %d:\n%s%s", code, so, se)
	}
	if _, err := os.Stat(mine); !os.IsNotExist(err) {
		t.Errorf("the VM's stale model is still there (%v)", err)
	}
	for _, m := range others {
		if _, err := os.Stat(m); err != nil {
			t.Errorf("another VM's model: %v", err)
		}
	}
	for _, c := range s.takeCalls() {
		if !strings.HasPrefix(c, "GET secret") {
			t.Errorf("the rerun did %q", c)
		}
	}
}

// TestAzureCutoverRecreateVMRerun: `--cutover --recreate-vm` run again once the VM runs on the new OS
// disk has nothing to do (exit 0), as the one-disk conversion: it failed asking for a --stage round
// (exit 1, retryable) since the cutover removes the stage record.
func TestAzureCutoverRecreateVMRerun(t *testing.T) {
	s, dir := setupZonalStage(t)
	mustRun(t, "stage round 1", s.stageArgs(dir, "--stage")...)
	s.powerState("deallocated")
	args := s.stageArgs(dir, "--cutover", "--recreate-vm", "--vm", fakeID("virtualMachines", "vm1"))
	mustRun(t, "cutover", args...)
	s.takeCalls()
	so, se, code := runCLI(t, args...)
	if code != 0 || !strings.Contains(so, `"already_converted": true`) {
		t.Fatalf("rerun: exit %d:\n%s%s", code, so, se)
	}
	for _, c := range s.takeCalls() {
		t.Errorf("the rerun did %q", c)
	}
}
