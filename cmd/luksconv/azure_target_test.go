package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/luksconv/luksconv/azure"
	"github.com/luksconv/luksconv/internal/azurefake"
	"github.com/luksconv/luksconv/internal/testenv"
	"github.com/luksconv/luksconv/luksconv"
)

// TestAzureConvertBadTargetFirst: a --des that cannot encrypt the new disk (another region, none
// of that name) and a bad disk flag are refused before anything is created: no snapshot of the
// source disk (one disk or a whole VM, converted at once or in --stage rounds) is taken, and no
// access is granted. Each is a usage error (exit 2): the same --des fails the same way on a retry,
// which a fleet engine must not spend its retries on.
func TestAzureConvertBadTargetFirst(t *testing.T) {
	f, _ := setupAzure(t, false)
	dir := t.TempDir()
	otherRegion := "/subscriptions/" + fakeSub + "/resourceGroups/rg-keys/providers/Microsoft.Compute/diskEncryptionSets/des-east"
	missing := "/subscriptions/" + fakeSub + "/resourceGroups/rg-keys/providers/Microsoft.Compute/diskEncryptionSets/nosuch"
	f.Lock()
	f.DiskEncryptionSets[azurefake.Key("rg-keys", "des-east")] = &armcompute.DiskEncryptionSet{
		ID: to.Ptr(otherRegion), Location: to.Ptr("eastus"),
		Properties: &armcompute.EncryptionSetProperties{EncryptionType: to.Ptr(armcompute.DiskEncryptionSetTypeEncryptionAtRestWithCustomerKey)},
	}
	// The source disk carries the ADE settings its snapshot has (single pass), so that its key is found.
	f.Disks[azurefake.Key(fakeRG, "osdisk")].Properties.EncryptionSettingsCollection =
		f.Snapshots[azurefake.Key(fakeRG, "snap")].Properties.EncryptionSettingsCollection
	f.Unlock()
	disk, vm := fakeID("disks", "osdisk"), fakeID("virtualMachines", "vm1")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"DES in another region", []string{"--source-disk", disk, "--des", otherRegion, "--target-disk", "plain"}, "same region"},
		{"no such DES", []string{"--source-disk", disk, "--des", missing, "--target-disk", "plain"}, "nosuch"},
		{"bad --sku", []string{"--source-disk", disk, "--des", fakeDES, "--target-disk", "plain", "--sku", "Premium"}, "--sku"},
		{"stage, DES in another region", []string{"--source-disk", disk, "--des", otherRegion, "--target-disk", "plain", "--stage"}, "same region"},
		{"whole VM, DES in another region", []string{"--vm", vm, "--des", otherRegion}, "same region"},
		{"whole VM, stage, DES in another region", []string{"--vm", vm, "--des", otherRegion, "--stage"}, "same region"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.takeCalls()
			args := append([]string{"azure", "convert", "-q", "--journal-dir", dir}, tc.args...)
			_, se, code := runCLI(t, args...)
			calls := f.takeCalls()
			if code != exitUsage || !strings.Contains(se, tc.want) {
				t.Errorf("exit %d, want %d and an error naming %q:\n%s", code, exitUsage, tc.want, se)
			}
			if i := slices.IndexFunc(calls, func(c string) bool {
				return strings.HasPrefix(c, "PUT") || strings.HasPrefix(c, "GRANT")
			}); i >= 0 {
				t.Errorf("%q before the refusal: calls %q", calls[i], calls)
			}
		})
	}
}

// TestAzureConvertKEKFromTagLegacy: a secret that names its KEK only in its tag (the disk's settings
// have no keyEncryptionKey) is unwrapped, and, as for a KEK named by the settings, a passphrase that
// an old ADE build base64-encoded before wrapping it is tried decoded.
func TestAzureConvertKEKFromTagLegacy(t *testing.T) {
	f, fx := setupAzure(t, true)
	key, err := os.ReadFile(fx.KeyFiles[0])
	if err != nil {
		t.Fatal(err)
	}
	// RSA1_5: the base64 of a 172-byte key file is too long for RSA-OAEP with a 2048-bit KEK.
	w, err := f.Wrap(azkeys.EncryptionAlgorithmRSA15, []byte(base64.StdEncoding.EncodeToString(key)))
	if err != nil {
		t.Fatal(err)
	}
	f.Lock()
	s := f.Secrets["bek/v1"]
	s.Value = to.Ptr(base64.RawURLEncoding.EncodeToString(w))
	s.Tags[azure.TagKEKAlgorithm] = to.Ptr("RSA1_5")
	f.Secrets["bek/v1"] = s
	f.Snapshots[azurefake.Key(fakeRG, "snap")].Properties.EncryptionSettingsCollection.EncryptionSettings[0].KeyEncryptionKey = nil
	f.Unlock()
	_, se, code := runCLI(t, "azure", "convert", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES, "--target-disk", "plain", "--dry-run", "--json")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, se)
	}
	if calls := f.takeCalls(); !slices.Contains(calls, "UNWRAP RSA1_5") {
		t.Errorf("no unwrap with RSA1_5: %q", calls)
	}
}

// TestAzureConvertSKUDropsTier: the source disk's performance tier (P30) and on-demand bursting are
// Premium SSD settings; a --sku of another type does not carry them into the new disk.
func TestAzureConvertSKUDropsTier(t *testing.T) {
	f, _ := setupAzure(t, false)
	f.Lock()
	p := f.Disks[azurefake.Key(fakeRG, "osdisk")].Properties
	p.Tier, p.BurstingEnabled = to.Ptr("P30"), to.Ptr(true)
	f.Unlock()
	for _, tc := range []struct{ sku, tier string }{{"", "P30"}, {"Premium_LRS", "P30"}, {"StandardSSD_LRS", ""}} {
		args := []string{"azure", "convert", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES, "--target-disk", "plain", "--dry-run", "--json"}
		if tc.sku != "" {
			args = append(args, "--sku", tc.sku)
		}
		so, se, code := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("--sku %q: exit %d:\n%s", tc.sku, code, se)
		}
		var rep struct {
			Spec azure.DiskSpec `json:"disk_spec"`
		}
		if err := json.Unmarshal([]byte(so), &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Spec.Tier != tc.tier || rep.Spec.BurstingEnabled != (tc.tier != "") {
			t.Errorf("--sku %q: SKU %s with tier %q, bursting %v", tc.sku, rep.Spec.SKU, rep.Spec.Tier, rep.Spec.BurstingEnabled)
		}
	}
}

// TestAzureConvertForeignTargetFirst: a --target-disk that exists and was not made by luksconv, or
// that cannot be read (403: no read access to its resource group, so it can be neither created nor
// resumed), is refused before the source disk is snapshotted (one disk, a first --stage round): the
// snapshot would be left behind.
func TestAzureConvertForeignTargetFirst(t *testing.T) {
	f, _ := setupAzure(t, false)
	f.Lock()
	f.Disks[azurefake.Key(fakeRG, "osdisk")].Properties.EncryptionSettingsCollection =
		f.Snapshots[azurefake.Key(fakeRG, "snap")].Properties.EncryptionSettingsCollection
	f.Disks[azurefake.Key(fakeRG, "plain")] = &armcompute.Disk{ID: to.Ptr(fakeID("disks", "plain")), Name: to.Ptr("plain"), Location: to.Ptr("westeurope"),
		Properties: &armcompute.DiskProperties{DiskState: to.Ptr(armcompute.DiskStateUnattached)}}
	f.DiskGetRefusals = map[string]azurefake.Refusal{azurefake.Key(fakeRG, "hidden"): {Status: http.StatusForbidden, Code: "AuthorizationFailed"}}
	f.Unlock()
	for target, want := range map[string]string{"plain": "exists and was not made by luksconv", "hidden": "HTTP 403 AuthorizationFailed"} {
		for _, extra := range [][]string{nil, {"--stage"}} {
			f.takeCalls()
			args := append([]string{"azure", "convert", "-q", "--journal-dir", t.TempDir(), "--source-disk", fakeID("disks", "osdisk"),
				"--des", fakeDES, "--target-disk", target}, extra...)
			_, se, code := runCLI(t, args...)
			calls := f.takeCalls()
			if code == 0 || !strings.Contains(se, want) {
				t.Errorf("%s %q: exit %d:\n%s", target, extra, code, se)
			}
			if slices.ContainsFunc(calls, func(c string) bool { return strings.HasPrefix(c, "PUT") || strings.HasPrefix(c, "GRANT") }) {
				t.Errorf("%s %q: snapshot or grant before refusing the disk: %q", target, extra, calls)
			}
		}
	}
}

// TestAzureConvertLocked: a run of a conversion that another run holds (a fleet task retried while the
// first runs on, a manual run beside a fleet's) stops before it does anything in Azure, with exit 1
// (a retry once the other has ended resumes or finds the work done), for one disk (its lock beside
// --journal, or in --journal-dir for --stage) and a whole VM (in --journal-dir); once the other
// releases the lock, the run goes on.
func TestAzureConvertLocked(t *testing.T) {
	f, fx := setupAzure(t, false)
	dir := t.TempDir()
	for _, tc := range []struct {
		key  string
		args []string
	}{
		{fakeID("disks", "plain"), []string{"--snapshot", fakeID("snapshots", "snap"), "--target-disk", "plain", "--journal", filepath.Join(dir, "j")}},
		{fakeID("disks", "plain"), []string{"--source-disk", fakeID("disks", "osdisk"), "--target-disk", "plain", "--stage", "--journal-dir", dir}},
		{fakeID("virtualMachines", "vm1"), []string{"--vm", fakeID("virtualMachines", "vm1"), "--journal-dir", dir}},
	} {
		release, err := lockConversion(dir, tc.key)
		if err != nil {
			t.Fatal(err)
		}
		f.takeCalls()
		args := append([]string{"azure", "convert", "-q", "--des", fakeDES, "--key-file", fx.KeyFiles[0]}, tc.args...)
		_, se, code := runCLI(t, args...)
		if code != 1 || !strings.Contains(se, "another run of this conversion is in progress") {
			t.Errorf("%q while another run holds the lock: exit %d:\n%s", tc.args, code, se)
		}
		if calls := f.takeCalls(); len(calls) > 0 {
			t.Errorf("%q while another run holds the lock: %q", tc.args, calls)
		}
		if _, err := lockConversion(dir, tc.key); err == nil {
			t.Errorf("%q: the lock was taken twice", tc.args)
		}
		release()
		r2, err := lockConversion(dir, tc.key)
		if err != nil {
			t.Errorf("%q: the lock after its release: %v", tc.args, err)
		} else {
			r2()
		}
	}
	// Released, a run goes on.
	if _, se, code := runCLI(t, "azure", "convert", "-q", "--des", fakeDES, "--snapshot", fakeID("snapshots", "snap"), "--target-disk", "plain",
		"--journal", filepath.Join(dir, "j")); code != 0 {
		t.Errorf("after the release: exit %d:\n%s", code, se)
	}
}

// TestAzureConvertJournalDirUnreadable: only a --journal-dir (or --journal directory) that does not
// exist or is not a directory is a usage error (exit 2, not retried); one whose stat fails otherwise (a
// share's EIO, ESTALE or EACCES; here ELOOP, which root meets too) may pass and is exit 1, retryable,
// whether met checking --journal-dir or opening the run's lock file.
func TestAzureConvertJournalDirUnreadable(t *testing.T) {
	dir := t.TempDir()
	loop := testenv.LoopPath(t, dir)
	file := testenv.WriteFile(t, dir, "file", nil)
	vm := []string{"--vm", fakeID("virtualMachines", "vm1")}
	disk := []string{"--snapshot", fakeID("snapshots", "snap"), "--target-disk", "plain"}
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"--journal-dir missing", append([]string{"--journal-dir", filepath.Join(dir, "none")}, vm...), exitUsage},
		{"--journal-dir a file", append([]string{"--journal-dir", file}, vm...), exitUsage},
		{"--journal-dir through a file", append([]string{"--journal-dir", filepath.Join(file, "d")}, vm...), exitUsage},
		{"--journal-dir unreadable", append([]string{"--journal-dir", loop}, vm...), exitFailure},
		{"--journal in a missing directory", append([]string{"--journal", filepath.Join(dir, "none", "j")}, disk...), exitUsage},
		{"--journal through a file", append([]string{"--journal", filepath.Join(file, "j")}, disk...), exitUsage},
		{"--journal in an unreadable directory", append([]string{"--journal", filepath.Join(loop, "j")}, disk...), exitFailure},
	} {
		so, se, code := runCLI(t, append([]string{"azure", "convert", "--des", fakeDES, "--json"}, tc.args...)...)
		rep := errorReport(t, so)
		if code != tc.code || rep.ExitCode != tc.code || rep.Retryable != (tc.code == exitFailure) {
			t.Errorf("%s: exit %d, report %+v, want exit %d:\n%s", tc.name, code, rep, tc.code, se)
		}
	}
}

// TestAzureConvertInventoryUnreadable: an --inventory that does not exist is a usage error (exit 2), one
// that cannot be read otherwise (a share's EIO; here ELOOP) may be read on a retry: exit 1.
func TestAzureConvertInventoryUnreadable(t *testing.T) {
	dir := t.TempDir()
	loop := testenv.LoopPath(t, dir)
	for inv, want := range map[string]int{filepath.Join(dir, "none"): exitUsage, loop: exitFailure} {
		so, se, code := runCLI(t, "azure", "convert", "--des", fakeDES, "--journal-dir", dir, "--json", "--inventory", inv, "--index", "0")
		if rep := errorReport(t, so); code != want || rep.ExitCode != want {
			t.Errorf("--inventory %s: exit %d, want %d:\n%s", inv, code, want, se)
		}
	}
}

// TestAzureConvertResumeJournalUnreadable: a rerun whose journal cannot be read for another reason than
// its absence (a share's EIO; here ELOOP) stops with exit 1 before it grants write access again, instead
// of announcing that every page is written again and then failing to open the journal.
func TestAzureConvertResumeJournalUnreadable(t *testing.T) {
	f, _ := setupAzure(t, false)
	dir := t.TempDir()
	journal := filepath.Join(dir, "j")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	azureOutputHook = func(_ *uploadJob, o luksconv.Output) luksconv.Output {
		return &interruptOutput{Output: o, cancel: cancel}
	}
	t.Cleanup(func() { azureOutputHook = nil })
	args := []string{"azure", "convert", "-q", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES, "--target-disk", "plain",
		"--journal", journal, "--workers", "1"}
	if _, se, code := runCLICtx(t, ctx, args...); code != exitInterrupted {
		t.Fatalf("interrupted run: exit %d:\n%s", code, se)
	}
	azureOutputHook = nil
	if err := os.Remove(journal); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("j", journal); err != nil {
		t.Fatal(err)
	}
	f.takeCalls()
	_, se, code := runCLI(t, args...)
	if code != exitFailure || strings.Contains(se, "every page is written again") || hasCall(f.takeCalls(), "GRANT disk plain Write") {
		t.Errorf("rerun with an unreadable journal: exit %d, want %d without a new write grant:\n%s", code, exitFailure, se)
	}
}
