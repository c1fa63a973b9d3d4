package azure

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

// TestAzureDeallocateVM: a running VM is deallocated (the operation waited out) and then reports so; a VM
// that is not there is an error naming the operation and the VM.
func TestAzureDeallocateVM(t *testing.T) {
	c := newCloud(t)
	vmID := resID(typeVM, "vm1")
	c.VMs[key(rg, "vm1")] = &armcompute.VirtualMachine{ID: to.Ptr(vmID), Name: to.Ptr("vm1"), Location: to.Ptr(region)}
	c.PowerStates[key(rg, "vm1")] = "running"
	cl := c.client()
	ctx := context.Background()
	if err := cl.DeallocateVM(ctx, vmID); err != nil {
		t.Fatal(err)
	}
	if ps, err := cl.VMPowerState(ctx, vmID); err != nil || ps != "deallocated" {
		t.Errorf("after DeallocateVM the VM is %q (%v)", ps, err)
	}
	if !slices.Equal(c.Calls, []string{"DEALLOCATE vm vm1"}) {
		t.Errorf("calls %q", c.Calls)
	}
	err := cl.DeallocateVM(ctx, resID(typeVM, "gone"))
	if err == nil || !strings.Contains(err.Error(), "deallocate VM") || !strings.Contains(err.Error(), "gone") {
		t.Errorf("deallocating a missing VM: %v", err)
	}
	if err := cl.DeallocateVM(ctx, resID(typeDisk, "vm1")); err == nil {
		t.Error("deallocated a disk ID")
	}
}
