package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/luksconv/luksconv/internal/azurefake"
	"github.com/luksconv/luksconv/internal/azurite"
	"github.com/luksconv/luksconv/internal/vmfixture"
	"github.com/luksconv/luksconv/luksconv"
)

// setupAzureDualPassVM puts a dual-pass ADE VM into the fake: the fixture's OS disk and its
// EncryptFormatAll data disks at LUN 0 and 3, with the encryption settings only on the VM model's
// OS disk (one Key Vault secret) and none on any disk, plus the plain data disk at LUN 9 (zeros: no
// LUKS, and no line on the OS disk names it). The disks' blobs are their images in Azurite.
func setupAzureDualPassVM(t *testing.T) (*fakeAzure, []vmTestDisk) {
	disks, zero := dualPassTestDisks(t)
	f := newAzureVM(t, disks)
	uploadImage(t, f.az.BlobSAS(t, "disks", "plain9.vhd", azurite.WriteSAS, time.Hour), zero)
	f.dualPass(disks)
	f.install(t)
	return f, disks
}

// dualPassTestDisks are the disks of a dual-pass VM: the fixture's OS disk and copies of its
// EncryptFormatAll data disks at LUN 0 and 3, and the image of the plain disk at LUN 9 (16 MiB of
// zeros). Dual pass keeps every volume under the VM's one passphrase; the fixture keys each volume on
// its own, so the copies get the OS disk's passphrase in a keyslot of their own (cryptsetup
// luksAddKey), their own keys still there. Each disk's key is the OS disk's.
func dualPassTestDisks(t *testing.T) (disks []vmTestDisk, plain string) {
	cs, err := exec.LookPath("cryptsetup")
	if err != nil {
		t.Skip("cryptsetup is needed to give the data disks the VM's one passphrase")
	}
	m := vmfixture.Load(t)
	osKey := m.Path(m.OS.KeyFile)
	dir := t.TempDir()
	disks = []vmTestDisk{{lun: luksconv.OSDisk, name: "osdisk", image: m.Path(m.OS.File), key: osKey, caching: armcompute.CachingTypesReadWrite}}
	for _, lun := range []int{0, 3} {
		d, ok := m.Disk("lun" + strconv.Itoa(lun))
		if !ok {
			t.Fatalf("no lun%d in the VM fixture", lun)
		}
		img := filepath.Join(dir, "lun"+strconv.Itoa(lun)+".raw")
		b, err := os.ReadFile(m.Path(d.File))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(img, b, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(cs, "luksAddKey", "--batch-mode", "--disable-locks", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
			"--key-file", m.Path(d.KeyFile), img, osKey).CombinedOutput()
		if err != nil {
			t.Skipf("cryptsetup luksAddKey: %v: %s", err, out)
		}
		disks = append(disks, vmTestDisk{lun: lun, name: "data" + strconv.Itoa(lun), image: img, key: osKey, caching: armcompute.CachingTypesNone})
	}
	plain = filepath.Join(dir, "plain9.raw")
	if err := os.WriteFile(plain, make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	return disks, plain
}

// dualPass turns addVM's VM into a dual-pass one: the OS disk's settings go to the VM model, no disk
// carries a stamp, and the only secret is the VM's. The plain disk at LUN 9 is sized for
// dualPassTestDisks' image.
func (f *fakeAzure) dualPass(disks []vmTestDisk) {
	f.Disks[azurefake.Key(fakeRG, "plain9")].Properties.DiskSizeBytes = to.Ptr(int64(16 << 20))
	osSettings := f.Disks[azurefake.Key(fakeRG, "osdisk")].Properties.EncryptionSettingsCollection.EncryptionSettings[0]
	for _, d := range disks {
		f.Disks[azurefake.Key(fakeRG, d.name)].Properties.EncryptionSettingsCollection = nil
	}
	vm := f.VMs[azurefake.Key(fakeRG, "vm1")]
	vm.Properties.StorageProfile.OSDisk.EncryptionSettings = &armcompute.DiskEncryptionSettings{Enabled: to.Ptr(true),
		DiskEncryptionKey: &armcompute.KeyVaultSecretReference{SecretURL: osSettings.DiskEncryptionKey.SecretURL,
			SourceVault: &armcompute.SubResource{ID: osSettings.DiskEncryptionKey.SourceVault.ID}}}
	vm.Resources[0].Properties.TypeHandlerVersion = to.Ptr("0.1")
	for _, d := range disks[1:] {
		delete(f.Secrets, "bek-"+d.name+"/v1") // one secret: the VM's
	}
}

// TestAzureConvertVMDualPass: a dual-pass VM stamps ADE only on the VM model, so its encrypted data
// disks carry no settings of their own. They were skipped ("carries no ADE settings") and --recreate-vm
// re-created the VM without ADE around volumes left encrypted. Now every unstamped data disk is a
// candidate read with the VM's one secret: those the OS disk's crypttab names (LUN 0 and 3) are
// converted, the plain one nothing names (LUN 9) is reported and stays attached as it is, no disk is
// created for it, and the dry run says the same.
func TestAzureConvertVMDualPass(t *testing.T) {
	f, _ := setupAzureDualPassVM(t)
	t.Chdir(t.TempDir()) // the journals
	vmID := fakeID("virtualMachines", "vm1")

	check := func(what, so, se string) {
		t.Helper()
		var rep vmReport
		if err := json.Unmarshal([]byte(so), &rep); err != nil {
			t.Fatalf("%s: report: %v\n%s", what, err, so)
		}
		convert := map[int]bool{}
		for _, d := range rep.Disks {
			convert[d.LUN] = d.Convert
		}
		if len(rep.Disks) != 4 || !convert[luksconv.OSDisk] || !convert[0] || !convert[3] || convert[9] {
			t.Errorf("%s: disks converted %v, want the OS disk, LUN 0 and 3, not 9:\n%s", what, convert, so)
		}
		if rep.VMPlan == nil || len(rep.VMPlan.DataDisks) != 2 {
			t.Errorf("%s: VM plan swaps %+v, want LUN 0 and 3", what, rep.VMPlan)
		}
		if !strings.Contains(so+se, "LUN 9 (plain9) carries no ADE settings (dual pass), no ADE line on the OS disk names it") {
			t.Errorf("%s: LUN 9 is not reported as left:\n%s%s", what, so, se)
		}
		for _, w := range []string{"LUN 0 (data0) carries no ADE settings", "LUN 3 (data3) carries no ADE settings"} {
			if strings.Contains(so+se, w) {
				t.Errorf("%s: says %q", what, w)
			}
		}
	}

	so, se, code := runCLI(t, "azure", "convert", "--vm", vmID, "--des", fakeDES, "--dry-run", "--recreate-vm", "--json")
	if code != 0 {
		t.Fatalf("dry run: exit %d: %s", code, se)
	}
	check("dry run", so, se)
	for _, c := range f.takeCalls() {
		if strings.HasPrefix(c, "PUT") || strings.HasPrefix(c, "DELETE") {
			t.Errorf("dry run made %s", c)
		}
	}

	so, se, code = runCLI(t, "azure", "convert", "--vm", vmID, "--des", fakeDES, "--recreate-vm", "--verify", "--json")
	if code != 0 {
		t.Fatalf("run: exit %d: %s", code, se)
	}
	check("run", so, se)
	f.assertNoSAS(t, so+se)
	for _, name := range []string{"osdisk-luksconv", "data0-luksconv", "data3-luksconv"} {
		if got := f.DiskState(fakeRG, name); got != armcompute.DiskStateAttached && got != armcompute.DiskStateReserved && got != armcompute.DiskStateUnattached {
			t.Errorf("%s is %q", name, got)
		}
	}
	if _, ok := f.Disks[azurefake.Key(fakeRG, "plain9-luksconv")]; ok {
		t.Error("a new disk was created for the skipped LUN 9")
	}
	f.Lock()
	put := f.VMPut
	f.Unlock()
	if put == nil {
		t.Fatal("VM not re-created")
	}
	sp := put.Properties.StorageProfile
	if *sp.OSDisk.ManagedDisk.ID != fakeID("disks", "osdisk-luksconv") || sp.OSDisk.EncryptionSettings != nil {
		t.Errorf("new OS disk %s, encryption settings %+v", *sp.OSDisk.ManagedDisk.ID, sp.OSDisk.EncryptionSettings)
	}
	want := map[int32]string{0: fakeID("disks", "data0-luksconv"), 3: fakeID("disks", "data3-luksconv"), 9: fakeID("disks", "plain9")}
	got := map[int32]string{}
	for _, dd := range sp.DataDisks {
		got[*dd.Lun] = *dd.ManagedDisk.ID
	}
	if len(got) != len(want) {
		t.Errorf("data disks %v, want %v", got, want)
	}
	for l, id := range want {
		if got[l] != id {
			t.Errorf("LUN %d attached as %s, want %s", l, got[l], id)
		}
	}
}

// TestAzureConvertVMDualPassTargets: the checks of a new disk (its name's length, checkTarget, a disk of
// its name that luksconv did not make) refused the whole run for an unstamped data disk of a dual-pass
// VM before the plan had read it, so a plain disk the plan then skips failed the run. Now such a
// disk's problem waits for the plan: the plain LUN 9 with a long name, in another region than the DES,
// or beside a foreign disk named like its new disk is skipped and stays attached as it is, and the
// run converts the others; LUN 3, which the OS disk names, beside a foreign data3-luksconv still
// refuses the run (exit 7), naming it.
func TestAzureConvertVMDualPassTargets(t *testing.T) {
	long := "plain9-" + strings.Repeat("x", maxDiskName-len("plain9-")) // 80 characters: its new disk's would be 89
	foreign := func(f *fakeAzure, name string) {
		f.Disks[azurefake.Key(fakeRG, name)] = &armcompute.Disk{ID: to.Ptr(fakeID("disks", name)), Name: to.Ptr(name), Location: to.Ptr("westeurope"),
			Properties: &armcompute.DiskProperties{DiskSizeBytes: to.Ptr(int64(16 << 20)), DiskState: to.Ptr(armcompute.DiskStateUnattached)}}
	}
	for _, c := range []struct {
		name  string
		plain string // LUN 9's disk
		setup func(t *testing.T, f *fakeAzure)
	}{
		{"long name", long, func(t *testing.T, f *fakeAzure) {
			uploadImage(t, f.az.BlobSAS(t, "disks", long+".vhd", azurite.WriteSAS, time.Hour), zeros(t))
			f.renamePlain9(long)
		}},
		{"region", "plain9", func(t *testing.T, f *fakeAzure) {
			f.Disks[azurefake.Key(fakeRG, "plain9")].Location = to.Ptr("northeurope") // the DES is in westeurope
		}},
		{"foreign new disk", "plain9", func(t *testing.T, f *fakeAzure) { foreign(f, "plain9-luksconv") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, _ := setupAzureDualPassVM(t)
			c.setup(t, f)
			t.Chdir(t.TempDir()) // the journals
			so, se, code := runCLI(t, "azure", "convert", "--vm", fakeID("virtualMachines", "vm1"), "--des", fakeDES, "--recreate-vm", "--json")
			if code != 0 {
				t.Fatalf("exit %d:\n%s", code, se)
			}
			var rep vmReport
			if err := json.Unmarshal([]byte(so), &rep); err != nil {
				t.Fatalf("report: %v\n%s", err, so)
			}
			convert := map[int]bool{}
			for _, d := range rep.Disks {
				convert[d.LUN] = d.Convert
			}
			if len(rep.Disks) != 4 || !convert[luksconv.OSDisk] || !convert[0] || !convert[3] || convert[9] {
				t.Errorf("disks converted %v, want the OS disk, LUN 0 and 3, not 9", convert)
			}
			if w := "LUN 9 (" + c.plain + ") carries no ADE settings (dual pass), no ADE line on the OS disk names it"; !strings.Contains(so+se, w) {
				t.Errorf("LUN 9 is not reported as left (%q):\n%s\n%s", w, so, se)
			}
			for _, call := range f.takeCalls() {
				if strings.HasPrefix(call, "PUT disk "+c.plain+"-luksconv") || strings.HasPrefix(call, "GRANT disk "+c.plain+"-luksconv") {
					t.Errorf("the run did %q", call)
				}
			}
			f.Lock()
			put := f.VMPut
			f.Unlock()
			if put == nil {
				t.Fatal("VM not re-created")
			}
			attached := map[int32]string{}
			for _, dd := range put.Properties.StorageProfile.DataDisks {
				attached[*dd.Lun] = *dd.ManagedDisk.ID
			}
			if len(attached) != 3 || attached[0] != fakeID("disks", "data0-luksconv") || attached[3] != fakeID("disks", "data3-luksconv") ||
				attached[9] != fakeID("disks", c.plain) {
				t.Errorf("the re-created VM's data disks: %v", attached)
			}
		})
	}

	t.Run("foreign new disk of a converted disk", func(t *testing.T) {
		f, _ := setupAzureDualPassVM(t)
		foreign(f, "data3-luksconv")
		t.Chdir(t.TempDir())
		so, se, code := runCLI(t, "azure", "convert", "--vm", fakeID("virtualMachines", "vm1"), "--des", fakeDES, "--recreate-vm")
		if code != exitOutput || !strings.Contains(se, "LUN 3: ") || !strings.Contains(se, "new disk "+fakeID("disks", "data3-luksconv")+" exists and was not made by luksconv") {
			t.Errorf("exit %d, want %d and data3-luksconv refused:\n%s\n%s", code, exitOutput, so, se)
		}
		for _, call := range f.takeCalls() {
			if strings.HasPrefix(call, "PUT disk") || strings.HasPrefix(call, "PUT vm") || strings.HasPrefix(call, "DELETE") {
				t.Errorf("the refused run did %q", call)
			}
		}
	})
}

// renamePlain9 gives the plain data disk at LUN 9 the name name: its disk and the VM's reference to
// it. The caller puts its blob under the new name.
func (f *fakeAzure) renamePlain9(name string) {
	d := f.Disks[azurefake.Key(fakeRG, "plain9")]
	delete(f.Disks, azurefake.Key(fakeRG, "plain9"))
	d.ID, d.Name = to.Ptr(fakeID("disks", name)), to.Ptr(name)
	f.Disks[azurefake.Key(fakeRG, name)] = d
	for _, dd := range f.VMs[azurefake.Key(fakeRG, "vm1")].Properties.StorageProfile.DataDisks {
		if *dd.Lun == 9 {
			dd.Name, dd.ManagedDisk.ID = d.Name, d.ID
		}
	}
}

// zeros is an image of 16 MiB of zeros, as dualPassTestDisks' plain one.
func zeros(t *testing.T) string {
	img := filepath.Join(t.TempDir(), "zeros.raw")
	if err := os.WriteFile(img, make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	return img
}
