package azure_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8/fake"

	"github.com/luksconv/luksconv/azure"
	"github.com/luksconv/luksconv/blobio"
)

// Options.ARM takes the armcompute fake servers, so the control plane runs
// without Azure; Options.Secrets and Options.Keys take the azsecrets and
// azkeys fakes the same way.
func ExampleOptions_fake() {
	srv := fake.ServerFactory{SnapshotsServer: fake.SnapshotsServer{
		Get: func(ctx context.Context, rg, name string, _ *armcompute.SnapshotsClientGetOptions) (resp azfake.Responder[armcompute.SnapshotsClientGetResponse], errResp azfake.ErrorResponder) {
			s := armcompute.Snapshot{Properties: &armcompute.SnapshotProperties{EncryptionSettingsCollection: &armcompute.EncryptionSettingsCollection{
				Enabled:                   to.Ptr(true),
				EncryptionSettingsVersion: to.Ptr("1.1"),
				EncryptionSettings: []*armcompute.EncryptionSettingsElement{{
					DiskEncryptionKey: &armcompute.KeyVaultAndSecretReference{SecretURL: to.Ptr("https://kv1.vault.azure.net/secrets/9d1c/0a1b")},
					KeyEncryptionKey:  &armcompute.KeyVaultAndKeyReference{KeyURL: to.Ptr("https://kv1.vault.azure.net/keys/kek/77ee")},
				}},
			}}}
			resp.SetResponse(http.StatusOK, armcompute.SnapshotsClientGetResponse{Snapshot: s}, nil)
			return
		},
	}}
	c, err := azure.New("sub1", &azfake.TokenCredential{}, &azure.Options{
		ARM: &arm.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: fake.NewServerFactoryTransport(&srv)}},
	})
	if err != nil {
		log.Fatal(err)
	}
	ks, err := c.KeySources(context.Background(), "/subscriptions/sub1/resourceGroups/rg/providers/Microsoft.Compute/snapshots/snap1")
	if err != nil {
		log.Fatal(err)
	}
	for _, k := range ks {
		fmt.Println(k.From, k.Version, k.SecretURL, k.KEKURL)
	}
	// Output:
	// snapshot 1.1 https://kv1.vault.azure.net/secrets/9d1c/0a1b https://kv1.vault.azure.net/keys/kek/77ee
}

func ExampleAlgorithm() {
	fmt.Println(azure.Algorithm("RSA-OAEP-256"), azure.Algorithm("rsa1_5"), azure.Algorithm(""))
	// Output: RSA-OAEP-256 RSA1_5 RSA-OAEP
}

// The whole conversion, as `luksconv azure convert` does it (not run: it
// needs a subscription).
func ExampleClient_CreateUploadDisk() {
	ctx := context.Background()
	cred, err := azure.DefaultCredential()
	if err != nil {
		log.Fatal(err)
	}
	c, err := azure.New("00000000-0000-0000-0000-000000000000", cred, nil)
	if err != nil {
		log.Fatal(err)
	}
	snap := "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Compute/snapshots/os-snap"
	des := "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Compute/diskEncryptionSets/des1"

	// 1. The key file.
	ks, err := c.KeySources(ctx, snap)
	if err != nil {
		log.Fatal(err)
	}
	key, err := c.RecoverKey(ctx, &ks[0])
	if err != nil {
		log.Fatal(err)
	}
	defer clear(key)

	// 2. Read access to the source; revoke on every path.
	srcSAS, revokeSrc, err := c.GrantRead(ctx, snap, 6*time.Hour)
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		if err := revokeSrc(context.WithoutCancel(ctx)); err != nil {
			log.Print(err)
		}
	}()

	// 3. The target: a direct-upload disk under the DES.
	spec, err := c.DiskSpecFrom(ctx, snap, "", "os-disk-plain", des)
	if err != nil {
		log.Fatal(err)
	}
	tgt, err := c.CreateUploadDisk(ctx, *spec)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("source", blobio.Redact(srcSAS), "target", blobio.Redact(tgt.SASURL))

	// 4. … decrypt srcSAS into tgt.SASURL with package luksconv/blobio …

	// 5. Finalize: revoke (Azure checks the VHD footer), expect Unattached.
	if err := tgt.Finish(ctx); err != nil {
		log.Fatal(err)
	}
}

// The --recreate-vm dry run prints the plan; the real run executes it.
func ExampleClient_PlanRecreateVM() {
	ctx := context.Background()
	cred, err := azure.DefaultCredential()
	if err != nil {
		log.Fatal(err)
	}
	c, err := azure.New("00000000-0000-0000-0000-000000000000", cred, nil)
	if err != nil {
		log.Fatal(err)
	}
	plan, err := c.PlanRecreateVM(ctx,
		"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
		"/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Compute/disks/os-disk-plain")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(plan) // steps, changes, warnings
	if err := json.NewEncoder(os.Stdout).Encode(plan); err != nil {
		log.Fatal(err)
	}
	// A refusal by the preflight changes nothing; a failed creation after the DELETE restores the
	// original VM by itself, or names the file that holds its model.
	if err := c.RecreateVM(ctx, plan); err != nil {
		var re *azure.VMRecreateError
		if errors.As(err, &re) {
			log.Print(re.Hint())
		}
		log.Fatal(err)
	}
}

// How long the write SAS of an upload lives by default: long enough for a slow upload, short enough
// that an interrupted one (whose grant is left to expire) does not stay writable for days.
func ExampleUploadAccessFor() {
	for _, gib := range []int64{30, 128, 1024} {
		fmt.Printf("%4d GiB: %v\n", gib, azure.UploadAccessFor(gib<<30))
	}
	// Output:
	//   30 GiB: 1h32m0s
	//  128 GiB: 3h17m0s
	// 1024 GiB: 19h13m0s
}
