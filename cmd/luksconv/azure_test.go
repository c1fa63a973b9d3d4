package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
	"github.com/luksconv/luksconv/azure"
	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/internal/azurefake"
	"github.com/luksconv/luksconv/internal/azurite"
	"github.com/luksconv/luksconv/internal/fixture"
)

// A fake Azure behind the SDK's fake servers: Microsoft.Compute hands out Azurite SAS URLs for
// grant-access, Key Vault holds the fixture's key.

const (
	fakeSub   = "00000000-0000-0000-0000-0000000000aa"
	fakeRG    = "rg-ade"
	fakeVault = "https://adevault.vault.azure.net"
)

func fakeID(typ, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/%s/%s", fakeSub, fakeRG, typ, name)
}

var fakeDES = "/subscriptions/" + fakeSub + "/resourceGroups/rg-keys/providers/Microsoft.Compute/diskEncryptionSets/des1"

// fakeAzure is the shared fake cloud with Azurite behind its SAS URLs. The fields below are guarded by
// the cloud's lock: the fake calls grantSAS and hasFooter with it held.
type fakeAzure struct {
	*azurefake.Cloud
	t  *testing.T
	az *azurite.Server

	sas      []string             // every SAS handed out
	writeExp map[string]time.Time // expiry of each disk's last write SAS
	expired  bool                 // write grants hand out a SAS that has already expired
	// corruptOnRead names a disk whose blob gets one page of 0xAA at 1 MiB when it is granted for
	// reading, as if the upload had gone wrong: what verification must catch.
	corruptOnRead string
	// corruptFooterOnRead names a disk whose VHD footer gets one byte flipped (its checksum then fails)
	// when it is granted for reading.
	corruptFooterOnRead string
	// snapshotsOfDisks: a snapshot's blob is the blob of the disk it was taken from (else "snap").
	snapshotsOfDisks bool
	// rewrite, if set, replaces each SAS URL handed out (to route it through a test's proxy).
	rewrite func(kind, name, sasURL string) string
}

// flipFooterByte flips a reserved byte of the footer of blob name in the disks container.
func (f *fakeAzure) flipFooterByte(name string) {
	ctx := context.Background()
	pb, err := pageblob.NewClientWithNoCredential(f.az.BlobSAS(f.t, "disks", name, azurite.WriteSAS, time.Minute), nil)
	var page []byte
	var props blob.GetPropertiesResponse
	if err == nil {
		props, err = pb.GetProperties(ctx, nil)
	}
	if err == nil {
		page = make([]byte, 512)
		_, err = pb.DownloadBuffer(ctx, page, &blob.DownloadBufferOptions{Range: blob.HTTPRange{Offset: *props.ContentLength - 512, Count: 512}})
	}
	if err == nil {
		page[100] ^= 1
		_, err = pb.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(page)), blob.HTTPRange{Offset: *props.ContentLength - 512, Count: 512}, nil)
	}
	if err != nil {
		f.t.Errorf("corrupting the footer of %s: %v", name, err)
	}
}

// writeExpiry is when the last write SAS of the disk name expires.
func (f *fakeAzure) writeExpiry(name string) (time.Time, bool) {
	f.Lock()
	defer f.Unlock()
	e, ok := f.writeExp[name]
	return e, ok
}

// grantSAS mints the SAS a grant gives, valid for the grant's duration (Azurite enforces the expiry).
func (f *fakeAzure) grantSAS(kind, name string, g armcompute.GrantAccessData) string {
	p, ttl := azurite.ReadSAS, time.Hour
	if g.DurationInSeconds != nil {
		ttl = time.Duration(*g.DurationInSeconds) * time.Second
	}
	if *g.Access == armcompute.AccessLevelWrite {
		p = azurite.WriteSAS
		f.writeExp[name] = time.Now().Add(ttl)
		if f.expired {
			ttl = -30 * time.Second
		}
	}
	if kind == "disk" && *g.Access == armcompute.AccessLevelRead && name == f.corruptOnRead {
		pb, err := pageblob.NewClientWithNoCredential(f.az.BlobSAS(f.t, "disks", name+".vhd", azurite.WriteSAS, time.Minute), nil)
		if err == nil {
			_, err = pb.UploadPages(context.Background(), streaming.NopCloser(bytes.NewReader(bytes.Repeat([]byte{0xAA}, 512))),
				blob.HTTPRange{Offset: 1 << 20, Count: 512}, nil)
		}
		if err != nil {
			f.t.Errorf("corrupting %s: %v", name, err)
		}
	}
	if kind == "disk" && *g.Access == armcompute.AccessLevelRead && name == f.corruptFooterOnRead {
		f.flipFooterByte(name + ".vhd")
	}
	blobName := name
	if kind == "snapshot" {
		// Every snapshot in these tests is of the one ADE disk uploaded as snap.vhd, or a copy of a disk.
		blobName = "snap"
		if s, ok := f.Snapshots[azurefake.Key(fakeRG, name)]; ok && f.snapshotsOfDisks && s.Properties != nil && s.Properties.CreationData != nil &&
			s.Properties.CreationData.SourceResourceID != nil {
			blobName = path.Base(*s.Properties.CreationData.SourceResourceID)
		}
	}
	u := f.az.BlobSAS(f.t, "disks", blobName+".vhd", p, ttl)
	if f.rewrite != nil {
		u = f.rewrite(kind, name, u)
	}
	f.sas = append(f.sas, u)
	return u
}

// hasFooter reports whether the blob of the disk name ends in a VHD footer, which Azure checks when the
// write access of an upload is revoked (failing with InvalidVhd otherwise).
func (f *fakeAzure) hasFooter(name string, size int64) bool {
	src, err := blobio.OpenPageBlob(context.Background(), f.az.BlobSAS(f.t, "disks", name+".vhd", azurite.ReadSAS, time.Minute), blobio.SourceOptions{})
	if err != nil {
		return false
	}
	defer src.Close()
	b := make([]byte, 512)
	if _, err := src.ReadAt(b, size-512); err != nil {
		return false
	}
	return string(b[:8]) == "conectix"
}

func (f *fakeAzure) hook() (azcore.TokenCredential, *azure.Options) {
	return &azfake.TokenCredential{}, &azure.Options{
		ARM:           f.ARMOptions(),
		Secrets:       f.SecretsOptions(),
		Keys:          f.KeysOptions(),
		PollFrequency: time.Millisecond,
	}
}

// hasCall reports whether calls holds want; a GRANT matches whatever duration it asked for.
func hasCall(calls []string, want string) bool {
	return slices.ContainsFunc(calls, func(c string) bool {
		return c == want || strings.HasPrefix(want, "GRANT ") && strings.HasPrefix(c, want+" ")
	})
}

// fakeVM is the ADE VM whose OS disk the snapshot was taken of.
func fakeVM() armcompute.VirtualMachine {
	vmID := fakeID("virtualMachines", "vm1")
	return armcompute.VirtualMachine{
		ID: to.Ptr(vmID), Name: to.Ptr("vm1"), Location: to.Ptr("westeurope"), Zones: []*string{to.Ptr("1")},
		Properties: &armcompute.VirtualMachineProperties{
			HardwareProfile: &armcompute.HardwareProfile{VMSize: to.Ptr(armcompute.VirtualMachineSizeTypesStandardD4SV3)},
			NetworkProfile: &armcompute.NetworkProfile{NetworkInterfaces: []*armcompute.NetworkInterfaceReference{{
				ID: to.Ptr("/subscriptions/" + fakeSub + "/resourceGroups/" + fakeRG + "/providers/Microsoft.Network/networkInterfaces/nic1")}}},
			StorageProfile: &armcompute.StorageProfile{OSDisk: &armcompute.OSDisk{
				CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesFromImage), OSType: to.Ptr(armcompute.OperatingSystemTypesLinux),
				Name: to.Ptr("osdisk"), ManagedDisk: &armcompute.ManagedDiskParameters{ID: to.Ptr(fakeID("disks", "osdisk"))},
			}},
		},
		Resources: []*armcompute.VirtualMachineExtension{{ID: to.Ptr(vmID + "/extensions/AzureDiskEncryptionForLinux"), Name: to.Ptr("AzureDiskEncryptionForLinux"),
			Properties: &armcompute.VirtualMachineExtensionProperties{Publisher: to.Ptr("Microsoft.Azure.Security"), Type: to.Ptr("AzureDiskEncryptionForLinux")}}},
	}
}

// setupAzure uploads the rhel8-lvm fixture to Azurite as the snapshot "snap" of an ADE disk whose
// settings point at a Key Vault secret holding the fixture's key (KEK-wrapped when wrapped is set).
func setupAzure(t *testing.T, wrapped bool) (*fakeAzure, fixture.Fixture) {
	set := fixture.Load(t)
	fx, ok := set.Get("rhel8-lvm")
	if !ok {
		t.Fatal("no rhel8-lvm fixture")
	}
	az := azurite.Start(t)
	az.CreateContainer(t, "disks")
	uploadImage(t, az.BlobSAS(t, "disks", "snap.vhd", azurite.WriteSAS, time.Hour), fx.Image)

	key, err := os.ReadFile(fx.KeyFiles[0])
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAzure{Cloud: azurefake.New(fakeSub), t: t, az: az, writeExp: map[string]time.Time{}}
	f.SAS, f.HasFooter = f.grantSAS, f.hasFooter
	ade := &armcompute.EncryptionSettingsElement{DiskEncryptionKey: &armcompute.KeyVaultAndSecretReference{
		SecretURL: to.Ptr(fakeVault + "/secrets/bek/v1"), SourceVault: &armcompute.SourceVault{ID: to.Ptr("/subscriptions/" + fakeSub + "/resourceGroups/rg-keys/providers/Microsoft.KeyVault/vaults/adevault")}}}
	if wrapped {
		w, err := f.Wrap(azkeys.EncryptionAlgorithmRSAOAEP, key)
		if err != nil {
			t.Fatal(err)
		}
		kek := fakeVault + "/keys/" + azurefake.KEKName + "/" + azurefake.KEKVersion
		f.Secrets["bek/v1"] = azsecrets.Secret{Value: to.Ptr(base64.RawURLEncoding.EncodeToString(w)), ContentType: to.Ptr(azure.ContentTypeWBEK),
			Tags: map[string]*string{azure.TagKEKURL: to.Ptr(kek)}}
		ade.KeyEncryptionKey = &armcompute.KeyVaultAndKeyReference{KeyURL: to.Ptr(kek), SourceVault: ade.DiskEncryptionKey.SourceVault}
	} else {
		f.Secrets["bek/v1"] = azsecrets.Secret{Value: to.Ptr(base64.StdEncoding.EncodeToString(key)), ContentType: to.Ptr(azure.ContentTypeBEK)}
	}
	f.Snapshots[azurefake.Key(fakeRG, "snap")] = &armcompute.Snapshot{
		ID: to.Ptr(fakeID("snapshots", "snap")), Location: to.Ptr("westeurope"),
		SKU: &armcompute.SnapshotSKU{Name: to.Ptr(armcompute.SnapshotStorageAccountTypesStandardLRS)},
		Properties: &armcompute.SnapshotProperties{
			CreationData:  &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionCopy), SourceResourceID: to.Ptr(fakeID("disks", "osdisk"))},
			DiskSizeBytes: to.Ptr(fx.DiskSize), OSType: to.Ptr(armcompute.OperatingSystemTypesLinux),
			HyperVGeneration: to.Ptr(armcompute.HyperVGenerationV2),
			EncryptionSettingsCollection: &armcompute.EncryptionSettingsCollection{Enabled: to.Ptr(true),
				EncryptionSettingsVersion: to.Ptr("1.1"), EncryptionSettings: []*armcompute.EncryptionSettingsElement{ade}},
		},
	}
	f.VMs[azurefake.Key(fakeRG, "vm1")] = to.Ptr(fakeVM())
	// The snapshot's disk, still the VM's OS disk (the VM is deallocated: the fake's default).
	f.Disks[azurefake.Key(fakeRG, "osdisk")] = &armcompute.Disk{ID: to.Ptr(fakeID("disks", "osdisk")), Name: to.Ptr("osdisk"), Location: to.Ptr("westeurope"),
		SKU:       &armcompute.DiskSKU{Name: to.Ptr(armcompute.DiskStorageAccountTypesPremiumLRS)},
		ManagedBy: to.Ptr(fakeID("virtualMachines", "vm1")), Properties: &armcompute.DiskProperties{DiskState: to.Ptr(armcompute.DiskStateReserved)}}
	f.install(t)
	return f, fx
}

// install adds the Disk Encryption Set des1 and points the CLI's Azure client at the fake until the
// test ends.
func (f *fakeAzure) install(t *testing.T) {
	f.DiskEncryptionSets[azurefake.Key("rg-keys", "des1")] = &armcompute.DiskEncryptionSet{
		ID: to.Ptr(fakeDES), Location: to.Ptr("westeurope"),
		Properties: &armcompute.EncryptionSetProperties{EncryptionType: to.Ptr(armcompute.DiskEncryptionSetTypeEncryptionAtRestWithCustomerKey)},
	}
	old := azureClientHook
	azureClientHook = f.hook
	t.Cleanup(func() { azureClientHook = old })
}

// runCLI runs the command in this process, as main does, and returns stdout, stderr and the exit code.
// localConversion converts fx with `luksconv convert` to dir/local.raw and returns the bytes: what every
// Azure path must upload.
func localConversion(t *testing.T, fx fixture.Fixture, dir string) []byte {
	t.Helper()
	local := filepath.Join(dir, "local.raw")
	if _, se, code := runCLI(t, "convert", "-q", "--key-file", fx.KeyFiles[0], fx.Image, local); code != 0 {
		t.Fatalf("local convert: exit %d: %s", code, se)
	}
	b, err := os.ReadFile(local)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkStillRunning checks that a refused or failed run (what) made none of the calls starting with
// a prefix of forbidden since the last takeCalls, and that it left vm1 running.
func (f *fakeAzure) checkStillRunning(t *testing.T, what string, forbidden ...string) {
	t.Helper()
	for _, c := range f.takeCalls() {
		if slices.ContainsFunc(forbidden, func(p string) bool { return strings.HasPrefix(c, p) }) {
			t.Errorf("the %s did %q", what, c)
		}
	}
	f.Lock()
	st := f.PowerStates[azurefake.Key(fakeRG, "vm1")]
	f.Unlock()
	if st != "running" {
		t.Errorf("after the %s the VM is %s, want running", what, st)
	}
}

// takeCalls returns the calls the fake recorded so far and forgets them.
func (f *fakeAzure) takeCalls() []string {
	f.Lock()
	defer f.Unlock()
	c := slices.Clone(f.Calls)
	f.Calls = nil
	return c
}

// runCutOff runs the CLI with args and presses Ctrl-C while it waits for Azure on the first operation
// whose call starts with prefix: that operation takes two polls and the run's context is cancelled at
// the first; Azure goes on with it (Settle ends it). The run must exit interrupted; runCutOff returns
// its standard error.
func (f *fakeAzure) runCutOff(t *testing.T, prefix string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.Lock()
	f.Slow = func(call string) int {
		if strings.HasPrefix(call, prefix) {
			return 2
		}
		return 0
	}
	f.Polled = func(call string) {
		if strings.HasPrefix(call, prefix) {
			cancel()
		}
	}
	f.Unlock()
	_, se, code := runCLICtx(t, ctx, args...)
	f.Lock()
	f.Slow, f.Polled = nil, nil
	f.Unlock()
	if code != exitInterrupted {
		t.Fatalf("%q cut off at %q: exit %d, want %d:\n%s", args, prefix, code, exitInterrupted, se)
	}
	return se
}

// calledWith returns the first call that starts with prefix, less the prefix ("" if none).
func calledWith(calls []string, prefix string) string {
	if i := slices.IndexFunc(calls, func(c string) bool { return strings.HasPrefix(c, prefix) }); i >= 0 {
		return strings.TrimPrefix(calls[i], prefix)
	}
	return ""
}

// reportBytes reads the bytes a run's --json report says it resumed from its journal and wrote.
func reportBytes(t *testing.T, so string) (resumed, written int64) {
	t.Helper()
	var rep struct {
		Result struct {
			Resumed int64 `json:"bytes_resumed"`
			Written int64 `json:"bytes_written"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(so), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, so)
	}
	return rep.Result.Resumed, rep.Result.Written
}

func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	return runCLICtx(t, context.Background(), args...)
}

func (f *fakeAzure) assertNoSAS(t *testing.T, out string) {
	t.Helper()
	for _, u := range f.sas {
		if sig := sasSig(t, u); strings.Contains(out, sig) {
			t.Fatalf("a SAS signature was printed:\n%s", out)
		}
	}
	if strings.Contains(out, "sig=") && !strings.Contains(out, "sig=REDACTED") {
		t.Logf("output mentions sig=; check redaction:\n%s", out)
	}
}

func TestAzureConvert(t *testing.T) {
	for _, wrapped := range []bool{false, true} {
		t.Run(fmt.Sprintf("wrapped=%v", wrapped), func(t *testing.T) {
			f, fx := setupAzure(t, wrapped)
			dir := t.TempDir()
			want := localConversion(t, fx, dir)
			so, se, code := runCLI(t, "--debug", "azure", "convert", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES,
				"--target-disk", "plain", "--journal", filepath.Join(dir, "j"), "--json")
			if code != 0 {
				t.Fatalf("azure convert: exit %d:\n%s", code, se)
			}
			f.assertNoSAS(t, so+se)
			// Debug lines on, and nothing printed holds the passphrase, the volume key or a SAS signature
			// (every SAS the fake handed out, as sent and decoded).
			sec := fixtureSecrets(t, fx)
			if len(f.sas) < 2 {
				t.Fatalf("%d SAS URLs handed out", len(f.sas))
			}
			for _, u := range f.sas {
				sec.addSAS(t, u)
			}
			sec.check(t, "the standard output of azure convert", []byte(so))
			sec.check(t, "the standard error of azure convert", []byte(se))
			for _, w := range []string{`msg=azure op="read ADE key references" resource=` + fakeID("snapshots", "snap"),
				`msg=azure op="recover key from Key Vault"`, `op="grant read access"`, `op="read access granted"`, "sig=REDACTED",
				`op="create upload disk" resource=` + fakeID("disks", "plain"), `op="upload access granted"`, `op="finish upload`,
				`op="revoke read access"`, `msg="LUKS header found"`, `msg="keyslot opened"`, `msg="execute progress"`, `msg="guest edit"`} {
				if !strings.Contains(se, w) {
					t.Errorf("the debug output lacks %q:\n%s", w, se)
				}
			}

			var rep struct {
				Target struct {
					DiskID    string `json:"diskId"`
					SizeBytes int64  `json:"sizeBytes"`
				} `json:"target"`
				Plan struct {
					OutputSize int64 `json:"output_size"`
				} `json:"plan"`
				KeySource *azure.KeySource `json:"key_source"`
			}
			if err := json.Unmarshal([]byte(so), &rep); err != nil {
				t.Fatalf("report: %v\n%s", err, so)
			}
			if rep.Target.DiskID != fakeID("disks", "plain") || rep.Target.SizeBytes != rep.Plan.OutputSize || rep.KeySource == nil {
				t.Errorf("report %+v", rep)
			}
			if rep.Plan.OutputSize != int64(len(want)) {
				t.Fatalf("output size %d, local conversion %d bytes", rep.Plan.OutputSize, len(want))
			}
			got := download(t, f.az.BlobSAS(t, "disks", "plain.vhd", azurite.ReadSAS, time.Hour), int64(len(want)))
			if !bytes.Equal(got, want) {
				t.Fatal("the uploaded disk differs from the local conversion")
			}
			sec.check(t, "the uploaded disk", got)
			sec.checkDir(t, dir)

			d := f.DiskPut
			if d == nil {
				t.Fatal("no disk PUT")
			}
			p := d.Properties
			if p.Encryption == nil || *p.Encryption.DiskEncryptionSetID != fakeDES ||
				*p.Encryption.Type != armcompute.EncryptionTypeEncryptionAtRestWithCustomerKey {
				t.Errorf("disk encryption %+v", p.Encryption)
			}
			if b, _ := json.Marshal(d); p.EncryptionSettingsCollection != nil || strings.Contains(string(b), "encryptionSettings") {
				t.Errorf("the new disk carries ADE settings: %s", b)
			}
			if *p.CreationData.CreateOption != armcompute.DiskCreateOptionUpload || *p.CreationData.UploadSizeBytes != int64(len(want))+512 {
				t.Errorf("creation data %+v", p.CreationData)
			}
			for _, c := range []string{"GRANT snapshot snap Read", "REVOKE snapshot snap", "PUT disk plain", "GRANT disk plain Write", "REVOKE disk plain", "GET secret bek"} {
				if !hasCall(f.Calls, c) {
					t.Errorf("no %q in calls %q", c, f.Calls)
				}
			}
			if wrapped && !slices.Contains(f.Calls, "UNWRAP RSA-OAEP") {
				t.Errorf("no unwrap in calls %q", f.Calls)
			}
			if slices.Contains(f.Calls, "DELETE disk plain") {
				t.Errorf("the new disk was deleted: %q", f.Calls)
			}
			if _, err := os.Stat(filepath.Join(dir, "j")); !os.IsNotExist(err) {
				t.Errorf("journal left after a complete run: %v", err)
			}

			// The target exists now, finished with this plan: a second run does not write it again, and
			// still revokes the source.
			f.Calls = nil
			_, se, code = runCLI(t, "azure", "convert", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES,
				"--target-disk", "plain", "--journal", filepath.Join(dir, "j2"), "-q")
			if code != 0 || !strings.Contains(se, "was uploaded by an earlier run") || slices.ContainsFunc(f.Calls, func(c string) bool { return strings.HasPrefix(c, "PUT disk") }) {
				t.Errorf("existing finished target: exit %d: %q\n%s", code, f.Calls, se)
			}
			if !slices.Contains(f.Calls, "REVOKE snapshot snap") {
				t.Errorf("source not revoked after a failure: %q", f.Calls)
			}
			// So with a read SAS open on it (a run stopped during --verify, whose grant Azure carried
			// out): ActiveSAS is a finished disk, which cannot be reopened as an upload.
			f.Lock()
			f.Disks[azurefake.Key(fakeRG, "plain")].Properties.DiskState = to.Ptr(armcompute.DiskStateActiveSAS)
			f.Calls = nil
			f.Unlock()
			_, se, code = runCLI(t, "azure", "convert", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES,
				"--target-disk", "plain", "--journal", filepath.Join(dir, "j3"), "-q")
			if code != 0 || !strings.Contains(se, "was uploaded by an earlier run") || slices.ContainsFunc(f.Calls, func(c string) bool { return strings.HasPrefix(c, "PUT disk") }) {
				t.Errorf("finished target with a read SAS open: exit %d: %q\n%s", code, f.Calls, se)
			}
		})
	}
}

func TestAzureConvertDryRun(t *testing.T) {
	f, fx := setupAzure(t, false)
	so, se, code := runCLI(t, "azure", "convert", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES,
		"--target-disk", "plain", "--dry-run", "--key-file", fx.KeyFiles[0], "--recreate-vm", "--vm", fakeID("virtualMachines", "vm1"))
	if code != 0 {
		t.Fatalf("dry run: exit %d:\n%s", code, se)
	}
	f.assertNoSAS(t, so+se)
	for _, c := range f.Calls {
		if strings.HasPrefix(c, "PUT") || strings.HasPrefix(c, "DELETE") || hasCall([]string{c}, "GRANT disk plain Write") {
			t.Errorf("dry run changed something: %q", f.Calls)
		}
	}
	if slices.Contains(f.Calls, "GET secret bek") {
		t.Errorf("--key-file given, yet Key Vault was read: %q", f.Calls)
	}
	if !slices.Contains(f.Calls, "REVOKE snapshot snap") {
		t.Errorf("source not revoked: %q", f.Calls)
	}
	for _, w := range []string{"Would create managed disk " + fakeID("disks", "plain"), fakeDES, `"sizeBytes": ` + fmt.Sprint(fx.DiskSize),
		"Would re-create the VM", fakeID("disks", "plain"), "AzureDiskEncryptionForLinux"} {
		if !strings.Contains(so, w) {
			t.Errorf("dry-run output lacks %q:\n%s", w, so)
		}
	}
	spec, _, _ := strings.Cut(so, "Would re-create the VM")
	if strings.Contains(spec, "encryptionSettings") {
		t.Errorf("dry-run disk spec mentions ADE settings:\n%s", so)
	}
}

func TestAzureInspect(t *testing.T) {
	f, _ := setupAzure(t, false)
	so, se, code := runCLI(t, "azure", "inspect", "--snapshot", fakeID("snapshots", "snap"))
	if code != 0 {
		t.Fatalf("inspect: exit %d:\n%s", code, se)
	}
	f.assertNoSAS(t, so+se)
	for _, w := range []string{"osluksheader", fakeVault + "/secrets/bek/v1"} {
		if !strings.Contains(so, w) {
			t.Errorf("inspect output lacks %q:\n%s", w, so)
		}
	}
	if slices.Contains(f.Calls, "GET secret bek") {
		t.Errorf("inspect read the secret: %q", f.Calls)
	}
	if !slices.Contains(f.Calls, "REVOKE snapshot snap") {
		t.Errorf("source not revoked: %q", f.Calls)
	}
	// Usage errors.
	if _, _, code := runCLI(t, "azure", "convert", "--snapshot", "x", "--source-disk", "y", "--des", fakeDES, "--target-disk", "t"); code != exitUsage {
		t.Errorf("--snapshot with --source-disk: exit %d, want %d", code, exitUsage)
	}
	if _, _, code := runCLI(t, "azure", "convert", "--snapshot", fakeID("snapshots", "snap"), "--target-disk", "t"); code != exitUsage {
		t.Errorf("no --des: exit %d, want %d", code, exitUsage)
	}
}
