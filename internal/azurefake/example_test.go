package azurefake_test

import (
	"context"
	"fmt"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/luksconv/luksconv/internal/azurefake"
)

// An upload disk created through the real SDK client moves through the states Azure gives it; the
// fake records each call.
func Example() {
	ctx := context.Background()
	cloud := azurefake.New("sub")
	disks, err := armcompute.NewDisksClient("sub", &azfake.TokenCredential{}, cloud.ARMOptions())
	if err != nil {
		panic(err)
	}
	poll, err := disks.BeginCreateOrUpdate(ctx, "rg", "new", armcompute.Disk{
		Location: to.Ptr("westeurope"),
		Properties: &armcompute.DiskProperties{CreationData: &armcompute.CreationData{
			CreateOption: to.Ptr(armcompute.DiskCreateOptionUpload), UploadSizeBytes: to.Ptr(int64(32<<20 + 512))}},
	}, nil)
	if err != nil {
		panic(err)
	}
	if _, err := poll.PollUntilDone(ctx, nil); err != nil {
		panic(err)
	}
	fmt.Println(cloud.DiskState("rg", "new"))
	grant, err := disks.BeginGrantAccess(ctx, "rg", "new", armcompute.GrantAccessData{
		Access: to.Ptr(armcompute.AccessLevelWrite), DurationInSeconds: to.Ptr(int32(3600))}, nil)
	if err != nil {
		panic(err)
	}
	if _, err := grant.PollUntilDone(ctx, nil); err != nil {
		panic(err)
	}
	fmt.Println(cloud.DiskState("rg", "new"))
	fmt.Println(cloud.Calls)
	// Output:
	// ReadyToUpload
	// ActiveUpload
	// [PUT disk new GRANT disk new Write 3600]
}
