package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
	"github.com/luksconv/luksconv/azure"
	"github.com/luksconv/luksconv/internal/azurefake"
	"github.com/luksconv/luksconv/internal/azurite"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/internal/vmfixture"
	"github.com/luksconv/luksconv/luksconv"
)

// vmTestDisk is a disk of the fake whole VM: its name in the fake, its image and key, and how the VM
// attaches it.
type vmTestDisk struct {
	lun     int // luksconv.OSDisk for the OS disk
	name    string
	image   string
	key     string
	caching armcompute.CachingTypes
	wa      bool
}

// setupAzureVM puts the VM fixture's OS disk and three of its data disks (EncryptFormatAll ext4 with
// 4096-byte sectors at LUN 0, in-place ext4 on a partition at LUN 1, EncryptFormatAll XFS at LUN 3)
// into the fake as the ADE disks of VM vm1, each with its own Key Vault secret, plus a data disk at
// LUN 9 without ADE settings. The disks' blobs are their images in Azurite.
func setupAzureVM(t *testing.T) (*fakeAzure, []vmTestDisk) {
	disks := vmTestDisks(t, vmfixture.Load(t))
	f := newAzureVM(t, disks)
	f.install(t)
	return f, disks
}

// newAzureVM puts disks into a new fake as the disks of VM vm1 (addVM), their blobs their images in
// Azurite; the caller installs it.
func newAzureVM(t *testing.T, disks []vmTestDisk) *fakeAzure {
	az := azurite.Start(t)
	az.CreateContainer(t, "disks")
	f := &fakeAzure{Cloud: azurefake.New(fakeSub), t: t, az: az, writeExp: map[string]time.Time{}, snapshotsOfDisks: true}
	f.SAS, f.HasFooter = f.grantSAS, f.hasFooter
	f.addVM(t, disks, func(d vmTestDisk) {
		uploadImage(t, az.BlobSAS(t, "disks", d.name+".vhd", azurite.WriteSAS, time.Hour), d.image)
	})
	return f
}

// vmTestDisks are the disks of the fake VM: the fixture's OS disk and its data disks at LUN 0, 1 and 3.
func vmTestDisks(t *testing.T, m *vmfixture.Manifest) []vmTestDisk {
	disks := []vmTestDisk{{lun: luksconv.OSDisk, name: "osdisk", image: m.Path(m.OS.File), key: m.Path(m.OS.KeyFile), caching: armcompute.CachingTypesReadWrite}}
	for _, c := range []struct {
		lun     int
		caching armcompute.CachingTypes
		wa      bool
	}{{0, armcompute.CachingTypesReadOnly, true}, {1, armcompute.CachingTypesNone, false}, {3, armcompute.CachingTypesReadWrite, false}} {
		d, ok := m.Disk("lun" + string(rune('0'+c.lun)))
		if !ok {
			t.Fatalf("no lun%d in the VM fixture", c.lun)
		}
		disks = append(disks, vmTestDisk{lun: c.lun, name: "data" + string(rune('0'+c.lun)), image: m.Path(d.File), key: m.Path(d.KeyFile), caching: c.caching, wa: c.wa})
	}
	return disks
}

// addVM puts VM vm1 into the fake: the disks, each with ADE settings naming its own Key Vault secret
// and its blob written by upload, and a data disk at LUN 9 without ADE settings.
func (f *fakeAzure) addVM(t *testing.T, disks []vmTestDisk, upload func(vmTestDisk)) {
	vmID := fakeID("virtualMachines", "vm1")
	vm := fakeVM()
	sp := vm.Properties.StorageProfile
	vault := &armcompute.SourceVault{ID: to.Ptr("/subscriptions/" + fakeSub + "/resourceGroups/rg-keys/providers/Microsoft.KeyVault/vaults/adevault")}
	for _, d := range disks {
		upload(d)
		key, err := os.ReadFile(d.key)
		if err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(d.image)
		if err != nil {
			t.Fatal(err)
		}
		secret := "bek-" + d.name
		f.Secrets[secret+"/v1"] = azsecrets.Secret{Value: to.Ptr(base64.StdEncoding.EncodeToString(key)), ContentType: to.Ptr(azure.ContentTypeBEK)}
		props := &armcompute.DiskProperties{DiskSizeBytes: to.Ptr(st.Size()), DiskState: to.Ptr(armcompute.DiskStateAttached),
			HyperVGeneration: to.Ptr(armcompute.HyperVGenerationV2),
			EncryptionSettingsCollection: &armcompute.EncryptionSettingsCollection{Enabled: to.Ptr(true), EncryptionSettingsVersion: to.Ptr("1.1"),
				EncryptionSettings: []*armcompute.EncryptionSettingsElement{{DiskEncryptionKey: &armcompute.KeyVaultAndSecretReference{
					SecretURL: to.Ptr(fakeVault + "/secrets/" + secret + "/v1"), SourceVault: vault}}}}}
		id := fakeID("disks", d.name)
		if d.lun == luksconv.OSDisk {
			props.OSType = to.Ptr(armcompute.OperatingSystemTypesLinux)
			sp.OSDisk.Name, sp.OSDisk.ManagedDisk.ID, sp.OSDisk.Caching = to.Ptr(d.name), to.Ptr(id), to.Ptr(d.caching)
		} else {
			sp.DataDisks = append(sp.DataDisks, &armcompute.DataDisk{Lun: to.Ptr(int32(d.lun)), Name: to.Ptr(d.name), Caching: to.Ptr(d.caching),
				WriteAcceleratorEnabled: to.Ptr(d.wa), CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesAttach),
				ManagedDisk: &armcompute.ManagedDiskParameters{ID: to.Ptr(id)}})
		}
		f.Disks[azurefake.Key(fakeRG, d.name)] = &armcompute.Disk{ID: to.Ptr(id), Name: to.Ptr(d.name), Location: to.Ptr("westeurope"),
			Zones: []*string{to.Ptr("1")}, ManagedBy: to.Ptr(vmID), SKU: &armcompute.DiskSKU{Name: to.Ptr(armcompute.DiskStorageAccountTypesPremiumLRS)},
			Properties: props}
	}
	// A plain data disk: not converted, re-attached as it is.
	sp.DataDisks = append(sp.DataDisks, &armcompute.DataDisk{Lun: to.Ptr(int32(9)), Name: to.Ptr("plain9"), Caching: to.Ptr(armcompute.CachingTypesNone),
		CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesAttach), ManagedDisk: &armcompute.ManagedDiskParameters{ID: to.Ptr(fakeID("disks", "plain9"))}})
	f.Disks[azurefake.Key(fakeRG, "plain9")] = &armcompute.Disk{ID: to.Ptr(fakeID("disks", "plain9")), Name: to.Ptr("plain9"), Location: to.Ptr("westeurope"),
		ManagedBy: to.Ptr(vmID), Properties: &armcompute.DiskProperties{DiskSizeBytes: to.Ptr(int64(1 << 30)), DiskState: to.Ptr(armcompute.DiskStateAttached)}}
	f.VMs[azurefake.Key(fakeRG, "vm1")] = &vm
}

// interruptOutput cancels the run after its first writes, as Ctrl-C would during the upload.
type interruptOutput struct {
	luksconv.Output
	cancel context.CancelFunc
	writes atomic.Int64
}

func (o *interruptOutput) WriteAt(p []byte, off int64) (int, error) {
	if o.writes.Add(1) == 3 {
		o.cancel()
		return 0, context.Canceled
	}
	return o.Output.WriteAt(p, off)
}

// runCLICtx is runCLI with a context.
func runCLICtx(t *testing.T, ctx context.Context, args ...string) (string, string, int) {
	t.Helper()
	var so, se bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&so)
	root.SetErr(&se)
	root.SetIn(strings.NewReader(""))
	err := execute(ctx, root)
	if err != nil {
		reportError(&se, err)
	}
	return so.String(), se.String(), exitCode(err)
}

// vmReport is the part of azure convert --vm's JSON report the tests read.
type vmReport struct {
	Disks []struct {
		LUN             int    `json:"lun"`
		Convert         bool   `json:"convert"`
		AlreadyUploaded bool   `json:"already_uploaded"`
		Verified        bool   `json:"verified"`
		Snapshot        string `json:"snapshot"`
		SnapshotCreated bool   `json:"snapshot_created"`
		Result          *struct {
			Resumed int64 `json:"bytes_resumed"`
			Written int64 `json:"bytes_written"`
		} `json:"result"`
		DiskSpec *struct {
			Name string `json:"name"`
		} `json:"disk_spec"`
	} `json:"disks"`
	VMPlan *azure.VMPlan `json:"vm_plan"`
}

// TestAzureConvertVM converts a whole ADE VM against the SDK fakes and Azurite: the OS disk and three
// data disks, each unlocked with its own Key Vault secret, in parallel into four DES upload disks equal
// to the local `vm convert` of the same disks; an interruption during the third upload leaves the
// VM untouched, and the rerun reads the same snapshots, keeps the two finished disks, resumes only the
// third from its journal and uploads the fourth; --recreate-vm then attaches every new disk at its LUN
// with its caching and write accelerator, and the disk without ADE settings stays as it was.
func TestAzureConvertVM(t *testing.T) {
	f, disks := setupAzureVM(t)
	dir := t.TempDir()
	t.Chdir(dir) // the journals
	vmID := fakeID("virtualMachines", "vm1")

	// The local conversion every upload must equal.
	local := filepath.Join(dir, "local")
	os.Mkdir(local, 0o700)
	largs := []string{"vm", "convert", "-q", "--os", disks[0].image, "--key-file", disks[0].key}
	for _, d := range disks[1:] {
		l := string(rune('0' + d.lun))
		largs = append(largs, "--data", l+"="+d.image, "--data-key", l+"="+d.key)
	}
	if _, se, code := runCLI(t, append(largs, local)...); code != 0 {
		t.Fatalf("local vm convert: exit %d: %s", code, se)
	}

	// Bad usage first: a whole VM takes no --target-disk or --key-file.
	for _, extra := range [][]string{{"--target-disk", "x"}, {"--key-file", disks[0].key}, {"--journal", "j"}, {"--journal-dir", filepath.Join(dir, "none")}} {
		if _, se, code := runCLI(t, append([]string{"azure", "convert", "--vm", vmID, "--des", fakeDES}, extra...)...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d: %s", extra, code, exitUsage, se)
		}
	}

	// A dry run reads the disks themselves and creates nothing.
	f.takeCalls()
	so, se, code := runCLI(t, "azure", "convert", "--vm", vmID, "--des", fakeDES, "--dry-run", "--recreate-vm", "--json")
	if code != 0 {
		t.Fatalf("dry run: exit %d: %s", code, se)
	}
	f.assertNoSAS(t, so+se)
	for _, c := range f.takeCalls() {
		if strings.HasPrefix(c, "PUT") || strings.HasPrefix(c, "DELETE") || strings.HasPrefix(c, "PATCH") {
			t.Errorf("dry run made %s", c)
		}
	}
	var rep vmReport
	if err := json.Unmarshal([]byte(so), &rep); err != nil {
		t.Fatalf("dry-run report: %v\n%s", err, so)
	}
	if len(rep.Disks) != 5 || rep.Disks[4].LUN != 9 || rep.Disks[4].Convert || rep.VMPlan == nil || len(rep.VMPlan.DataDisks) != 3 {
		t.Fatalf("dry-run report:\n%s", so)
	}
	for _, w := range []string{"LUN 9 (plain9) carries no ADE settings", "LUN 2 (4d943217", "LUN 6 ("} {
		if !strings.Contains(so+se, w) {
			t.Errorf("dry run does not say %q:\n%s%s", w, so, se)
		}
	}

	// The real run, interrupted during its third upload (LUN 1): disks go one at a time, in order.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	azureOutputHook = func(j *uploadJob, o luksconv.Output) luksconv.Output {
		if j.lun == 1 {
			return &interruptOutput{Output: o, cancel: cancel}
		}
		return o
	}
	t.Cleanup(func() { azureOutputHook = nil })
	// The journals in a directory of their own, as a fleet engine's shared storage would hold them.
	jdir := filepath.Join(dir, "journals")
	if err := os.Mkdir(jdir, 0o700); err != nil {
		t.Fatal(err)
	}
	args := []string{"azure", "convert", "--vm", vmID, "--des", fakeDES, "--parallel", "1", "--workers", "1", "--recreate-vm", "--verify", "--json",
		"--journal-dir", jdir}
	so, se, code = runCLICtx(t, ctx, args...)
	azureOutputHook = nil
	if code != exitInterrupted {
		t.Fatalf("interrupted run: exit %d, want %d:\n%s", code, exitInterrupted, se)
	}
	for _, w := range []string{"the VM is untouched; run the same command again", "LUN 1 (" + fakeID("disks", "data1-luksconv") + ")"} {
		if !strings.Contains(se, w) {
			t.Errorf("the interrupted run does not say %q:\n%s", w, se)
		}
	}
	calls := f.takeCalls()
	for _, c := range calls {
		if strings.Contains(c, " vm ") {
			t.Errorf("the interrupted run touched the VM: %s", c)
		}
	}
	snapshots := 0
	for _, c := range calls {
		if strings.HasPrefix(c, "PUT snapshot ") {
			snapshots++
		}
	}
	if snapshots != 4 {
		t.Errorf("%d snapshots taken, want 4: %q", snapshots, calls)
	}
	for name, want := range map[string]armcompute.DiskState{"osdisk-luksconv": armcompute.DiskStateUnattached, "data0-luksconv": armcompute.DiskStateUnattached,
		"data1-luksconv": armcompute.DiskStateActiveUpload} {
		if got := f.DiskState(fakeRG, name); got != want {
			t.Errorf("after the interruption %s is %s, want %s", name, got, want)
		}
	}
	if _, ok := f.Disks[azurefake.Key(fakeRG, "data3-luksconv")]; ok {
		t.Error("the fourth disk was created although the run stopped during the third")
	}
	if ents, _ := filepath.Glob(filepath.Join(jdir, ".luksconv-*.journal")); len(ents) != 1 {
		t.Errorf("journals in --journal-dir after the interruption: %v, want the third disk's", ents)
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, ".luksconv-*.journal")); len(ents) != 0 {
		t.Errorf("journals outside --journal-dir: %v", ents)
	}

	// The same command again, with debug lines: nothing printed holds a key or a secret's value.
	so, se, code = runCLI(t, append([]string{"--debug"}, args...)...)
	if code != 0 {
		t.Fatalf("rerun: exit %d:\n%s", code, se)
	}
	f.assertNoSAS(t, so+se)
	for _, d := range disks {
		key, _ := os.ReadFile(d.key)
		for _, sec := range []string{string(key), base64.StdEncoding.EncodeToString(key), string(key[:24])} {
			if strings.Contains(so+se, sec) {
				t.Errorf("the output holds %s's key", d.name)
			}
		}
	}
	calls = f.takeCalls()
	for _, c := range calls {
		if strings.HasPrefix(c, "PUT snapshot ") {
			t.Errorf("the rerun took a new snapshot: %s", c)
		}
	}
	rep = vmReport{}
	if err := json.Unmarshal([]byte(so), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, so)
	}
	for _, d := range rep.Disks {
		if !d.Convert {
			continue
		}
		if !d.Verified {
			t.Errorf("LUN %d not verified", d.LUN)
		}
		switch d.LUN {
		case luksconv.OSDisk, 0:
			if !d.AlreadyUploaded || d.Result != nil {
				t.Errorf("LUN %d was uploaded again (already_uploaded %v)", d.LUN, d.AlreadyUploaded)
			}
		case 1:
			if d.AlreadyUploaded || d.Result == nil || d.Result.Resumed == 0 {
				t.Errorf("LUN 1 was not resumed from its journal: %+v", d.Result)
			}
		case 3:
			if d.AlreadyUploaded || d.Result == nil || d.Result.Resumed != 0 || d.Result.Written == 0 {
				t.Errorf("LUN 3: %+v", d.Result)
			}
		}
	}
	if ents, _ := filepath.Glob(filepath.Join(jdir, ".luksconv-*.journal")); len(ents) != 0 {
		t.Errorf("journals left after the finished run: %v", ents)
	}

	// Every new disk equals the local conversion of its disk.
	for _, d := range disks {
		want := filepath.Join(local, "os.raw")
		if d.lun != luksconv.OSDisk {
			want = filepath.Join(local, "lun"+string(rune('0'+d.lun))+".raw")
		}
		wb, err := os.ReadFile(want)
		if err != nil {
			t.Fatal(err)
		}
		got := download(t, f.az.BlobSAS(t, "disks", d.name+"-luksconv.vhd", azurite.ReadSAS, time.Hour), int64(len(wb)))
		if !bytes.Equal(got, wb) {
			t.Errorf("the new disk of %s differs from the local conversion", diskName(d.lun))
		}
	}

	// The VM: deleted and created again with every new disk at its LUN, same caching and write
	// accelerator; LUN 9 as it was; no ADE extension.
	f.Lock()
	put := f.VMPut
	f.Unlock()
	if put == nil || !hasCall(calls, "DELETE vm vm1") || !hasCall(calls, "PUT vm vm1") {
		t.Fatalf("VM not re-created: %q", calls)
	}
	sp := put.Properties.StorageProfile
	if got := *sp.OSDisk.ManagedDisk.ID; got != fakeID("disks", "osdisk-luksconv") || *sp.OSDisk.Caching != armcompute.CachingTypesReadWrite {
		t.Errorf("new OS disk %s", got)
	}
	if len(put.Resources) != 0 {
		t.Errorf("the new VM has extensions: %d", len(put.Resources))
	}
	found := map[int32]bool{}
	for _, dd := range sp.DataDisks {
		lun := *dd.Lun
		found[lun] = true
		if lun == 9 {
			if *dd.ManagedDisk.ID != fakeID("disks", "plain9") {
				t.Errorf("LUN 9 is now %s", *dd.ManagedDisk.ID)
			}
			continue
		}
		var want vmTestDisk
		for _, d := range disks {
			if d.lun == int(lun) {
				want = d
			}
		}
		if *dd.ManagedDisk.ID != fakeID("disks", want.name+"-luksconv") || *dd.Name != want.name+"-luksconv" || *dd.Caching != want.caching ||
			(dd.WriteAcceleratorEnabled != nil && *dd.WriteAcceleratorEnabled) != want.wa {
			t.Errorf("LUN %d attached as %s caching %s write accelerator %v", lun, *dd.ManagedDisk.ID, *dd.Caching, dd.WriteAcceleratorEnabled)
		}
	}
	if len(found) != 4 || !found[0] || !found[1] || !found[3] || !found[9] {
		t.Errorf("data disks of the new VM: %v", found)
	}
}

// TestAzureConvertVMMissingSecret: a data disk whose Key Vault secret is gone stops the run before
// anything is created, naming the disk.
func TestAzureConvertVMMissingSecret(t *testing.T) {
	f, _ := setupAzureVM(t)
	t.Chdir(t.TempDir())
	f.Lock()
	delete(f.Secrets, "bek-data3/v1")
	f.Unlock()
	f.takeCalls()
	_, se, code := runCLI(t, "azure", "convert", "--vm", fakeID("virtualMachines", "vm1"), "--des", fakeDES)
	if code == 0 || !strings.Contains(se, "LUN 3 (data3)") {
		t.Fatalf("exit %d: %s", code, se)
	}
	for _, c := range f.takeCalls() {
		if strings.HasPrefix(c, "PUT") || strings.HasPrefix(c, "GRANT") {
			t.Errorf("a run without every key made %s", c)
		}
	}
}

// TestAzureConvertVMRunning: the disks of a running VM are not snapshotted (writes after it would be
// missing), --allow-running does not go with --recreate-vm, and re-creating a VM that was started
// after its disks were read is refused before the DELETE.
func TestAzureConvertVMRunning(t *testing.T) {
	f, _ := setupAzureVM(t)
	t.Chdir(t.TempDir())
	vmID := fakeID("virtualMachines", "vm1")
	f.Lock()
	f.PowerStates[azurefake.Key(fakeRG, "vm1")] = "running"
	f.Unlock()
	f.takeCalls()
	_, se, code := runCLI(t, "azure", "convert", "--vm", vmID, "--des", fakeDES)
	if code == 0 || !strings.Contains(se, "which is running") || !strings.Contains(se, "deallocate the VM first") {
		t.Fatalf("running VM: exit %d: %s", code, se)
	}
	if calls := f.takeCalls(); len(calls) != 0 {
		t.Errorf("a refused run made %q", calls)
	}
	if _, se, code := runCLI(t, "azure", "convert", "--vm", vmID, "--des", fakeDES, "--allow-running", "--recreate-vm"); code != exitUsage {
		t.Errorf("--allow-running --recreate-vm: exit %d: %s", code, se)
	}

	// Started after the disks were read: the ownership time of the OS disk moves, the VM is not deleted.
	f.Lock()
	f.PowerStates[azurefake.Key(fakeRG, "vm1")] = "deallocated"
	f.Unlock()
	azureOutputHook = func(j *uploadJob, o luksconv.Output) luksconv.Output {
		if j.lun == 3 {
			f.Lock()
			f.Disks[azurefake.Key(fakeRG, "osdisk")].Properties.LastOwnershipUpdateTime = to.Ptr(time.Now())
			f.Unlock()
		}
		return o
	}
	t.Cleanup(func() { azureOutputHook = nil })
	_, se, code = runCLI(t, "azure", "convert", "-q", "--vm", vmID, "--des", fakeDES, "--recreate-vm")
	if code == 0 || !strings.Contains(se, "changed hands since the plan") {
		t.Fatalf("VM started during the run: exit %d: %s", code, se)
	}
	for _, c := range f.takeCalls() {
		if strings.HasSuffix(c, " vm vm1") {
			t.Errorf("the VM was touched: %s", c)
		}
	}
}

// TestAzureConvertVMEncryptionAtHost converts a whole VM with --encryption-at-host and no DES: every new
// disk is encrypted with platform-managed keys and the re-created VM has encryption at host on.
func TestAzureConvertVMEncryptionAtHost(t *testing.T) {
	f, disks := setupAzureVM(t)
	t.Chdir(t.TempDir())
	vmID := fakeID("virtualMachines", "vm1")
	if _, se, code := runCLI(t, "azure", "convert", "--vm", vmID, "--encryption-at-host"); code != exitUsage || !strings.Contains(se, "--recreate-vm") {
		t.Errorf("--encryption-at-host without --recreate-vm: exit %d: %s", code, se)
	}
	f.Lock()
	f.EncryptionAtHostRegistered = true
	f.Unlock()
	if _, se, code := runCLI(t, "azure", "convert", "-q", "--vm", vmID, "--encryption-at-host", "--recreate-vm"); code != 0 {
		t.Fatalf("exit %d:\n%s", code, se)
	}
	f.Lock()
	defer f.Unlock()
	for _, d := range disks {
		nd, ok := f.Disks[azurefake.Key(fakeRG, d.name+"-luksconv")]
		if !ok || nd.Properties.Encryption == nil || *nd.Properties.Encryption.Type != armcompute.EncryptionTypeEncryptionAtRestWithPlatformKey ||
			nd.Properties.Encryption.DiskEncryptionSetID != nil {
			t.Errorf("%s: new disk encryption %+v", d.name, nd.Properties.Encryption)
		}
	}
	if sp := f.VMPut.Properties.SecurityProfile; sp == nil || sp.EncryptionAtHost == nil || !*sp.EncryptionAtHost {
		t.Errorf("the re-created VM's security profile %+v", sp)
	}
}

// TestAzureConvertVMLicense: a VM from Red Hat's pay-as-you-go image is not re-created without
// --license (exit 2, before anything is created); with --license payg the re-created VM gets the
// AHBForRHEL extension and licenseType RHEL_BASE.
func TestAzureConvertVMLicense(t *testing.T) {
	f, vmID := setupPAYGVM(t)
	f.takeCalls()
	_, se, code := runCLI(t, "azure", "convert", "-q", "--vm", vmID, "--des", fakeDES, "--recreate-vm")
	if code != exitUsage || !strings.Contains(se, "pay-as-you-go") || !strings.Contains(se, "--license payg or --license byos") {
		t.Fatalf("no --license: exit %d:\n%s", code, se)
	}
	for _, c := range f.takeCalls() {
		if strings.HasPrefix(c, "PUT") || strings.HasPrefix(c, "GRANT") {
			t.Errorf("a refused run made %s", c)
		}
	}
	if _, se, code := runCLI(t, "azure", "convert", "-q", "--vm", vmID, "--des", fakeDES, "--recreate-vm", "--license", "payg"); code != 0 {
		t.Fatalf("--license payg: exit %d:\n%s", code, se)
	}
	calls := f.takeCalls()
	if !hasCall(calls, "PUT extension AHBForRHEL") {
		t.Errorf("no AHBForRHEL extension: %q", calls)
	}
	f.Lock()
	defer f.Unlock()
	if lt := f.VMs[azurefake.Key(fakeRG, "vm1")].Properties.LicenseType; lt == nil || *lt != "RHEL_BASE" {
		t.Errorf("licenseType %v", lt)
	}
}

// TestAzureConvertVMLicenseFails: the AHBForRHEL extension refused after the new VM was created: exit 11
// (not retried by the fleet's engines), the error says the VM is re-created, and the hint gives the
// commands that finish the licensing.
func TestAzureConvertVMLicenseFails(t *testing.T) {
	f, vmID := setupPAYGVM(t)
	f.Lock()
	f.ExtensionFails = true
	f.Unlock()
	_, se, code := runCLI(t, "azure", "convert", "-q", "--vm", vmID, "--des", fakeDES, "--recreate-vm", "--license", "payg")
	if code != exitFollowUp || !strings.Contains(se, "the VM is re-created on the new disks") || !strings.Contains(se, "--license-type RHEL_BASE") ||
		strings.Contains(se, "not changed") {
		t.Fatalf("extension refused: exit %d, want %d:\n%s", code, exitFollowUp, se)
	}
	if !slices.Contains(permanentExits, exitFollowUp) {
		t.Errorf("exit %d is retried by the fleet's engines", exitFollowUp)
	}
	if d := f.vmOSDisk(); !strings.HasSuffix(d, "-luksconv") {
		t.Errorf("VM on OS disk %s after the licensing failed", d)
	}
	// The licensing stays pending: a rerun (a fleet engine's retry) tries it again and exits 11 while
	// it fails — it exited 0, "already converted", leaving the VM unlicensed — and sets it once the
	// cause is gone; a dry run says it would.
	args := []string{"azure", "convert", "-q", "--vm", vmID, "--des", fakeDES, "--recreate-vm", "--license", "payg"}
	if so, se, code := runCLI(t, args...); code != exitFollowUp || !strings.Contains(se, "run the same command again") {
		t.Errorf("rerun, the extension still refused: exit %d, want %d:\n%s%s", code, exitFollowUp, so, se)
	}
	f.Lock()
	f.ExtensionFails = false
	f.Unlock()
	if so, se, code := runCLI(t, append(slices.Clone(args), "--dry-run")...); code != 0 || !strings.Contains(so, "would set licenseType RHEL_BASE") {
		t.Errorf("dry rerun: exit %d:\n%s%s", code, so, se)
	}
	f.takeCalls()
	so, se, code := runCLI(t, append(slices.Clone(args), "--json")...)
	var rep struct {
		AlreadyConverted bool   `json:"already_converted"`
		LicensingSet     string `json:"licensing_set"`
	}
	if err := json.Unmarshal([]byte(so), &rep); err != nil || code != 0 || !rep.AlreadyConverted || rep.LicensingSet != "RHEL_BASE" {
		t.Fatalf("rerun: exit %d, report %s (%v):\n%s", code, so, err, se)
	}
	f.Lock()
	lt := f.VMs[azurefake.Key(fakeRG, "vm1")].Properties.LicenseType
	f.Unlock()
	if lt == nil || *lt != "RHEL_BASE" {
		t.Errorf("licenseType after the rerun: %v (calls %q)", lt, f.takeCalls())
	}
	if so, se, code := runCLI(t, args...); code != 0 || strings.Contains(so, "licenseType") {
		t.Errorf("second rerun: exit %d, want 0 and nothing set:\n%s%s", code, so, se)
	}
}

// setupPAYGVM is setupAzureVM with vm1 from Red Hat's pay-as-you-go image, run in a directory of its
// own; it returns the fake and vm1's ID.
func setupPAYGVM(t *testing.T) (*fakeAzure, string) {
	f, _ := setupAzureVM(t)
	t.Chdir(t.TempDir())
	f.Lock()
	f.VMs[azurefake.Key(fakeRG, "vm1")].Properties.StorageProfile.ImageReference = rhelPAYG()
	f.Unlock()
	return f, fakeID("virtualMachines", "vm1")
}

// rhelPAYG is the image reference of a VM from Red Hat's pay-as-you-go image (with no plan).
func rhelPAYG() *armcompute.ImageReference {
	return &armcompute.ImageReference{Publisher: to.Ptr("RedHat"), Offer: to.Ptr("RHEL"), SKU: to.Ptr("8-lvm-gen2"), Version: to.Ptr("latest")}
}

// TestAzureConvertVMRerun: a whole-VM task run again once its VM is converted (a fleet's Job applied
// again, a task ended after the re-creation) has nothing to do and succeeds: the VM runs on disks
// luksconv made (plan tag) and none carries ADE settings. It was exit 8 (no ADE key on the new OS
// disk), which a fleet engine counts as a failed VM. The same for a cutover or a stage round run
// again, and nothing is snapshotted, granted or created. A VM left Failed or Updating exits 1. The
// first rerun removes a rollback model an earlier run left (stale_models).
func TestAzureConvertVMRerun(t *testing.T) {
	f, _ := setupAzureVM(t)
	dir := t.TempDir()
	vmID := fakeID("virtualMachines", "vm1")
	base := []string{"azure", "convert", "-q", "--vm", vmID, "--des", fakeDES, "--journal-dir", dir, "--json"}
	if _, se, code := runCLI(t, append(base, "--recreate-vm")...); code != 0 {
		t.Fatalf("first run: exit %d\n%s", code, se)
	}
	rerunNotProvisioned(t, f, append(slices.Clone(base), "--recreate-vm")...)
	// A rollback model an earlier run left: the first rerun that finds the VM converted removes it.
	stale := testenv.WriteFile(t, dir, azure.ModelName(vmID, time.Date(2026, 12, 8, 1, 2, 3, 0, time.UTC)), []byte("{}"))
	f.takeCalls()
	for _, extra := range [][]string{{"--recreate-vm"}, {"--recreate-vm", "--verify"}, {"--cutover", "--deallocate", "--recreate-vm"}, {"--stage"}, {}} {
		so, se, code := runCLI(t, append(slices.Clone(base), extra...)...)
		var rep struct {
			VM               string   `json:"vm"`
			AlreadyConverted bool     `json:"already_converted"`
			StaleModels      []string `json:"stale_models"`
		}
		if err := json.Unmarshal([]byte(so), &rep); err != nil || code != 0 || !rep.AlreadyConverted || rep.VM != vmID ||
			len(extra) == 1 && extra[0] == "--recreate-vm" && !slices.Equal(rep.StaleModels, []string{stale}) {
			t.Errorf("rerun %q: exit %d, report %s (%v)\n%s", extra, code, so, err, se)
		}
		for _, c := range f.takeCalls() {
			if !strings.HasPrefix(c, "GET") {
				t.Errorf("rerun %q made %s", extra, c)
			}
		}
	}
}

// TestAzureRecreateOtherSubscription: --recreate-vm with a --subscription (where the new disks go)
// other than the VM's is refused (exit 2) before anything is read: the VM could not attach the disks,
// and Azure would refuse the new VM only after the old one is deleted.
func TestAzureRecreateOtherSubscription(t *testing.T) {
	t.Chdir(t.TempDir())
	vm, disk := fakeID("virtualMachines", "vm1"), fakeID("disks", "osdisk")
	const other = "00000000-0000-0000-0000-0000000000bb"
	for _, args := range [][]string{
		{"--vm", vm, "--recreate-vm", "--subscription", other},
		{"--source-disk", disk, "--target-disk", "t", "--vm", vm, "--recreate-vm", "--subscription", other},
	} {
		args = append([]string{"azure", "convert", "--des", fakeDES, "--license", "byos"}, args...)
		if _, se, code := runCLI(t, args...); code != exitUsage || !strings.Contains(se, "another subscription than VM vm1's") {
			t.Errorf("%q: exit %d, want %d:\n%s", args, code, exitUsage, se)
		}
	}
}

// TestAzureVMSnapshotCutOff: as TestAzureConvertSnapshotCutOff for a whole VM: the snapshot of the
// first disk, cut off by Ctrl-C and made by Azure all the same, is named as kept and to be deleted.
func TestAzureVMSnapshotCutOff(t *testing.T) {
	f, _ := setupAzureVM(t)
	se := f.runCutOff(t, "PUT snapshot ", "azure", "convert", "--vm", fakeID("virtualMachines", "vm1"), "--des", fakeDES, "--journal-dir", t.TempDir(), "-q")
	f.Settle()
	snap := calledWith(f.takeCalls(), "PUT snapshot ")
	if snap == "" || !strings.Contains(se, fakeID("snapshots", snap)) {
		t.Errorf("the interrupted run does not name the snapshot %q it leaves behind:\n%s", snap, se)
	}
}
