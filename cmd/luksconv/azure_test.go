package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	computefake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	keysfake "github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
	secretsfake "github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets/fake"
	"github.com/luksconv/luksconv/azure"
	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/internal/azurite"
	"github.com/luksconv/luksconv/internal/fixture"
)

// A fake Azure behind the SDK's fake servers: Microsoft.Compute hands out Azurite SAS URLs for
// grant-access, Key Vault holds the fixture's key.

const (
	fakeSub   = "00000000-0000-0000-0000-0000000000aa"
	fakeRG    = "rg-ade"
	fakeVault = "https://adevault.vault.azure.net"
	kekVer    = "0123456789abcdef0123456789abcdef"
)

func fakeID(typ, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/%s/%s", fakeSub, fakeRG, typ, name)
}

var fakeDES = "/subscriptions/" + fakeSub + "/resourceGroups/rg-keys/providers/Microsoft.Compute/diskEncryptionSets/des1"

type fakeAzure struct {
	t  *testing.T
	az *azurite.Server
	mu sync.Mutex

	disks     map[string]*armcompute.Disk
	snapshots map[string]*armcompute.Snapshot
	secret    azsecrets.Secret
	kek       *rsa.PrivateKey
	calls     []string
	diskPut   *armcompute.Disk
	sas       []string             // every SAS handed out
	writeExp  map[string]time.Time // expiry of each disk's last write SAS
	expired   bool                 // write grants hand out a SAS that has already expired
}

// diskState is the state of the disk name ("" if there is none).
func (f *fakeAzure) diskState(name string) armcompute.DiskState {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d, ok := f.disks[name]; ok && d.Properties != nil && d.Properties.DiskState != nil {
		return *d.Properties.DiskState
	}
	return ""
}

// writeExpiry is when the last write SAS of the disk name expires.
func (f *fakeAzure) writeExpiry(name string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.writeExp[name]
	return e, ok
}

func (f *fakeAzure) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

// blobSAS is the SAS a grant gives, valid for the grant's duration (Azurite enforces the expiry).
func (f *fakeAzure) blobSAS(name string, perms string, secs *int32) string {
	p := azurite.ReadSAS
	if perms == "w" {
		p = azurite.WriteSAS
	}
	ttl := time.Hour
	if secs != nil {
		ttl = time.Duration(*secs) * time.Second
	}
	if perms == "w" && f.expired {
		ttl = -30 * time.Second
	}
	u := f.az.BlobSAS(f.t, "disks", name+".vhd", p, ttl)
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

func notFound(e *azfake.ErrorResponder) { e.SetResponseError(http.StatusNotFound, "ResourceNotFound") }

func (f *fakeAzure) hook() (azcore.TokenCredential, *azure.Options) {
	fac := &computefake.ServerFactory{
		DisksServer: computefake.DisksServer{
			Get: func(ctx context.Context, rg, name string, _ *armcompute.DisksClientGetOptions) (resp azfake.Responder[armcompute.DisksClientGetResponse], errResp azfake.ErrorResponder) {
				f.mu.Lock()
				defer f.mu.Unlock()
				d, ok := f.disks[name]
				if !ok {
					notFound(&errResp)
					return
				}
				resp.SetResponse(http.StatusOK, armcompute.DisksClientGetResponse{Disk: *d}, nil)
				return
			},
			BeginCreateOrUpdate: func(ctx context.Context, rg, name string, disk armcompute.Disk, _ *armcompute.DisksClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armcompute.DisksClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
				f.mu.Lock()
				defer f.mu.Unlock()
				f.record("PUT disk %s", name)
				body := disk
				f.diskPut = &body
				stored := disk
				stored.ID, stored.Name = to.Ptr(fakeID("disks", name)), to.Ptr(name)
				p := *disk.Properties
				p.DiskState = to.Ptr(armcompute.DiskStateReadyToUpload)
				p.DiskSizeBytes = to.Ptr(*p.CreationData.UploadSizeBytes - 512)
				stored.Properties = &p
				f.disks[name] = &stored
				resp.SetTerminalResponse(http.StatusOK, armcompute.DisksClientCreateOrUpdateResponse{Disk: stored}, nil)
				return
			},
			BeginGrantAccess: func(ctx context.Context, rg, name string, g armcompute.GrantAccessData, _ *armcompute.DisksClientBeginGrantAccessOptions) (resp azfake.PollerResponder[armcompute.DisksClientGrantAccessResponse], errResp azfake.ErrorResponder) {
				f.mu.Lock()
				defer f.mu.Unlock()
				f.record("GRANT disk %s %s", name, *g.Access)
				d, ok := f.disks[name]
				if !ok {
					notFound(&errResp)
					return
				}
				perm := "r"
				if *g.Access == armcompute.AccessLevelWrite {
					perm = "w"
					d.Properties.DiskState = to.Ptr(armcompute.DiskStateActiveUpload)
					f.writeExp[name] = time.Now().Add(time.Duration(*g.DurationInSeconds) * time.Second)
				}
				out := armcompute.DisksClientGrantAccessResponse{}
				out.AccessURI.AccessSAS = to.Ptr(f.blobSAS(name, perm, g.DurationInSeconds))
				resp.AddNonTerminalResponse(http.StatusAccepted, nil)
				resp.SetTerminalResponse(http.StatusOK, out, nil)
				return
			},
			BeginRevokeAccess: func(ctx context.Context, rg, name string, _ *armcompute.DisksClientBeginRevokeAccessOptions) (resp azfake.PollerResponder[armcompute.DisksClientRevokeAccessResponse], errResp azfake.ErrorResponder) {
				f.mu.Lock()
				defer f.mu.Unlock()
				f.record("REVOKE disk %s", name)
				if d, ok := f.disks[name]; ok {
					if *d.Properties.DiskState == armcompute.DiskStateActiveUpload && !f.hasFooter(name, *d.Properties.CreationData.UploadSizeBytes) {
						// As Azure: revoking ends the upload, and only a disk that ends in a footer can end.
						errResp.SetResponseError(http.StatusBadRequest, "InvalidVhd")
						return
					}
					d.Properties.DiskState = to.Ptr(armcompute.DiskStateUnattached)
				}
				resp.SetTerminalResponse(http.StatusOK, armcompute.DisksClientRevokeAccessResponse{}, nil)
				return
			},
			BeginDelete: func(ctx context.Context, rg, name string, _ *armcompute.DisksClientBeginDeleteOptions) (resp azfake.PollerResponder[armcompute.DisksClientDeleteResponse], errResp azfake.ErrorResponder) {
				f.mu.Lock()
				defer f.mu.Unlock()
				f.record("DELETE disk %s", name)
				delete(f.disks, name)
				resp.SetTerminalResponse(http.StatusOK, armcompute.DisksClientDeleteResponse{}, nil)
				return
			},
		},
		SnapshotsServer: computefake.SnapshotsServer{
			Get: func(ctx context.Context, rg, name string, _ *armcompute.SnapshotsClientGetOptions) (resp azfake.Responder[armcompute.SnapshotsClientGetResponse], errResp azfake.ErrorResponder) {
				f.mu.Lock()
				defer f.mu.Unlock()
				s, ok := f.snapshots[name]
				if !ok {
					notFound(&errResp)
					return
				}
				resp.SetResponse(http.StatusOK, armcompute.SnapshotsClientGetResponse{Snapshot: *s}, nil)
				return
			},
			BeginGrantAccess: func(ctx context.Context, rg, name string, g armcompute.GrantAccessData, _ *armcompute.SnapshotsClientBeginGrantAccessOptions) (resp azfake.PollerResponder[armcompute.SnapshotsClientGrantAccessResponse], errResp azfake.ErrorResponder) {
				f.mu.Lock()
				defer f.mu.Unlock()
				f.record("GRANT snapshot %s %s", name, *g.Access)
				if _, ok := f.snapshots[name]; !ok {
					notFound(&errResp)
					return
				}
				out := armcompute.SnapshotsClientGrantAccessResponse{}
				out.AccessURI.AccessSAS = to.Ptr(f.blobSAS(name, "r", g.DurationInSeconds))
				resp.AddNonTerminalResponse(http.StatusAccepted, nil)
				resp.SetTerminalResponse(http.StatusOK, out, nil)
				return
			},
			BeginRevokeAccess: func(ctx context.Context, rg, name string, _ *armcompute.SnapshotsClientBeginRevokeAccessOptions) (resp azfake.PollerResponder[armcompute.SnapshotsClientRevokeAccessResponse], errResp azfake.ErrorResponder) {
				f.mu.Lock()
				defer f.mu.Unlock()
				f.record("REVOKE snapshot %s", name)
				resp.SetTerminalResponse(http.StatusOK, armcompute.SnapshotsClientRevokeAccessResponse{}, nil)
				return
			},
		},
		VirtualMachinesServer: computefake.VirtualMachinesServer{
			Get: func(ctx context.Context, rg, name string, _ *armcompute.VirtualMachinesClientGetOptions) (resp azfake.Responder[armcompute.VirtualMachinesClientGetResponse], errResp azfake.ErrorResponder) {
				if name != "vm1" {
					notFound(&errResp)
					return
				}
				resp.SetResponse(http.StatusOK, armcompute.VirtualMachinesClientGetResponse{VirtualMachine: fakeVM()}, nil)
				return
			},
		},
		DiskEncryptionSetsServer: computefake.DiskEncryptionSetsServer{
			Get: func(ctx context.Context, rg, name string, _ *armcompute.DiskEncryptionSetsClientGetOptions) (resp azfake.Responder[armcompute.DiskEncryptionSetsClientGetResponse], errResp azfake.ErrorResponder) {
				if name != "des1" {
					notFound(&errResp)
					return
				}
				resp.SetResponse(http.StatusOK, armcompute.DiskEncryptionSetsClientGetResponse{DiskEncryptionSet: armcompute.DiskEncryptionSet{
					ID: to.Ptr(fakeDES), Location: to.Ptr("westeurope"),
					Properties: &armcompute.EncryptionSetProperties{EncryptionType: to.Ptr(armcompute.DiskEncryptionSetTypeEncryptionAtRestWithCustomerKey)},
				}}, nil)
				return
			},
		},
	}
	ss := secretsfake.Server{
		GetSecret: func(ctx context.Context, name, version string, _ *azsecrets.GetSecretOptions) (resp azfake.Responder[azsecrets.GetSecretResponse], errResp azfake.ErrorResponder) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.record("GET secret %s", name)
			resp.SetResponse(http.StatusOK, azsecrets.GetSecretResponse{Secret: f.secret}, nil)
			return
		},
	}
	ks := keysfake.Server{
		UnwrapKey: func(ctx context.Context, name, version string, p azkeys.KeyOperationParameters, _ *azkeys.UnwrapKeyOptions) (resp azfake.Responder[azkeys.UnwrapKeyResponse], errResp azfake.ErrorResponder) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.record("UNWRAP %s", *p.Algorithm)
			out, err := rsa.DecryptOAEP(sha1.New(), nil, f.kek, p.Value, nil)
			if err != nil || *p.Algorithm != azkeys.EncryptionAlgorithmRSAOAEP {
				errResp.SetResponseError(http.StatusBadRequest, "BadParameter")
				return
			}
			resp.SetResponse(http.StatusOK, azkeys.UnwrapKeyResponse{KeyOperationResult: azkeys.KeyOperationResult{Result: out}}, nil)
			return
		},
	}
	return &azfake.TokenCredential{}, &azure.Options{
		ARM:           &arm.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: computefake.NewServerFactoryTransport(fac)}},
		Secrets:       &azsecrets.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: secretsfake.NewServerTransport(&ss)}},
		Keys:          &azkeys.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: keysfake.NewServerTransport(&ks)}},
		PollFrequency: time.Millisecond,
	}
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
	f := &fakeAzure{t: t, az: az, disks: map[string]*armcompute.Disk{}, snapshots: map[string]*armcompute.Snapshot{}, writeExp: map[string]time.Time{}}
	ade := &armcompute.EncryptionSettingsElement{DiskEncryptionKey: &armcompute.KeyVaultAndSecretReference{
		SecretURL: to.Ptr(fakeVault + "/secrets/bek/v1"), SourceVault: &armcompute.SourceVault{ID: to.Ptr("/subscriptions/" + fakeSub + "/resourceGroups/rg-keys/providers/Microsoft.KeyVault/vaults/adevault")}}}
	if wrapped {
		f.kek, err = rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		w, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, &f.kek.PublicKey, key, nil)
		if err != nil {
			t.Fatal(err)
		}
		kek := fakeVault + "/keys/kek/" + kekVer
		f.secret = azsecrets.Secret{Value: to.Ptr(base64.RawURLEncoding.EncodeToString(w)), ContentType: to.Ptr(azure.ContentTypeWBEK),
			Tags: map[string]*string{azure.TagKEKURL: to.Ptr(kek)}}
		ade.KeyEncryptionKey = &armcompute.KeyVaultAndKeyReference{KeyURL: to.Ptr(kek), SourceVault: ade.DiskEncryptionKey.SourceVault}
	} else {
		f.secret = azsecrets.Secret{Value: to.Ptr(base64.StdEncoding.EncodeToString(key)), ContentType: to.Ptr(azure.ContentTypeBEK)}
	}
	f.snapshots["snap"] = &armcompute.Snapshot{
		ID: to.Ptr(fakeID("snapshots", "snap")), Location: to.Ptr("westeurope"),
		SKU: &armcompute.SnapshotSKU{Name: to.Ptr(armcompute.SnapshotStorageAccountTypesStandardLRS)},
		Properties: &armcompute.SnapshotProperties{
			DiskSizeBytes: to.Ptr(fx.DiskSize), OSType: to.Ptr(armcompute.OperatingSystemTypesLinux),
			HyperVGeneration: to.Ptr(armcompute.HyperVGenerationV2),
			EncryptionSettingsCollection: &armcompute.EncryptionSettingsCollection{Enabled: to.Ptr(true),
				EncryptionSettingsVersion: to.Ptr("1.1"), EncryptionSettings: []*armcompute.EncryptionSettingsElement{ade}},
		},
	}
	old := azureClientHook
	azureClientHook = f.hook
	t.Cleanup(func() { azureClientHook = old })
	return f, fx
}

// runCLI runs the command in this process, as main does, and returns stdout, stderr and the exit code.
func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var so, se bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&so)
	root.SetErr(&se)
	root.SetIn(strings.NewReader(""))
	err := root.ExecuteContext(context.Background())
	if err != nil {
		reportError(&se, err)
	}
	return so.String(), se.String(), exitCode(err)
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
			local := filepath.Join(dir, "local.raw")
			if _, se, code := runCLI(t, "convert", "-q", "--key-file", fx.KeyFiles[0], fx.Image, local); code != 0 {
				t.Fatalf("local convert: exit %d: %s", code, se)
			}
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
			want, err := os.ReadFile(local)
			if err != nil {
				t.Fatal(err)
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

			d := f.diskPut
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
				if !slices.Contains(f.calls, c) {
					t.Errorf("no %q in calls %q", c, f.calls)
				}
			}
			if wrapped && !slices.Contains(f.calls, "UNWRAP RSA-OAEP") {
				t.Errorf("no unwrap in calls %q", f.calls)
			}
			if slices.Contains(f.calls, "DELETE disk plain") {
				t.Errorf("the new disk was deleted: %q", f.calls)
			}
			if _, err := os.Stat(filepath.Join(dir, "j")); !os.IsNotExist(err) {
				t.Errorf("journal left after a complete run: %v", err)
			}

			// The target exists now: a second run refuses to overwrite it, and still revokes the source.
			f.calls = nil
			_, se, code = runCLI(t, "azure", "convert", "--snapshot", fakeID("snapshots", "snap"), "--des", fakeDES,
				"--target-disk", "plain", "--journal", filepath.Join(dir, "j2"), "-q")
			if code != exitOutput {
				t.Errorf("existing target: exit %d, want %d:\n%s", code, exitOutput, se)
			}
			if !slices.Contains(f.calls, "REVOKE snapshot snap") {
				t.Errorf("source not revoked after a failure: %q", f.calls)
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
	for _, c := range f.calls {
		if strings.HasPrefix(c, "PUT") || strings.HasPrefix(c, "DELETE") || c == "GRANT disk plain Write" {
			t.Errorf("dry run changed something: %q", f.calls)
		}
	}
	if slices.Contains(f.calls, "GET secret bek") {
		t.Errorf("--key-file given, yet Key Vault was read: %q", f.calls)
	}
	if !slices.Contains(f.calls, "REVOKE snapshot snap") {
		t.Errorf("source not revoked: %q", f.calls)
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
	if slices.Contains(f.calls, "GET secret bek") {
		t.Errorf("inspect read the secret: %q", f.calls)
	}
	if !slices.Contains(f.calls, "REVOKE snapshot snap") {
		t.Errorf("source not revoked: %q", f.calls)
	}
	// Usage errors.
	if _, _, code := runCLI(t, "azure", "convert", "--snapshot", "x", "--source-disk", "y", "--des", fakeDES, "--target-disk", "t"); code != exitUsage {
		t.Errorf("--snapshot with --source-disk: exit %d, want %d", code, exitUsage)
	}
	if _, _, code := runCLI(t, "azure", "convert", "--snapshot", fakeID("snapshots", "snap"), "--target-disk", "t"); code != exitUsage {
		t.Errorf("no --des: exit %d, want %d", code, exitUsage)
	}
}
