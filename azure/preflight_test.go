package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"

	"github.com/luksconv/luksconv/internal/azurefake"
)

const validateCall = "VALIDATE deployment luksconv-preflight-vm1"

// noModelFiles fails when a rollback model file or a pending licensing was left behind.
func noModelFiles(t *testing.T, cl *Client) {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(cl.opts.VMModelDir, "luksconv-vm-*.json"))
	l, _ := filepath.Glob(filepath.Join(cl.opts.VMModelDir, "luksconv-license-*"))
	if len(m)+len(l) != 0 {
		t.Errorf("model files left: %q %q", m, l)
	}
}

// vmBack asserts the invariant of every path: the VM exists, provisioned, on the new or the old OS
// disk (wantDisk), with no VM left deleted.
func vmBack(t *testing.T, c *cloud, wantDisk string) {
	t.Helper()
	c.Lock()
	defer c.Unlock()
	vm, ok := c.VMs[key(rg, "vm1")]
	if !ok {
		t.Fatalf("the VM is deleted; calls %q", c.Calls)
	}
	if strings.EqualFold(str(vm.Properties.ProvisioningState), "Failed") {
		t.Fatalf("the VM is left Failed; calls %q", c.Calls)
	}
	if id := str(vm.Properties.StorageProfile.OSDisk.ManagedDisk.ID); id != wantDisk {
		t.Errorf("VM on OS disk %s, want %s", id, wantDisk)
	}
}

// untouched asserts that a refusal changed nothing: no PATCH, DELETE or PUT of the VM.
func untouched(t *testing.T, c *cloud) {
	t.Helper()
	for _, call := range c.Calls {
		if strings.HasSuffix(call, " vm vm1") {
			t.Errorf("refused, yet %q in calls %q", call, c.Calls)
		}
	}
	vmBack(t, c, resID(typeDisk, "osdisk"))
}

// retryClient is the fakes' client with a short retry bound.
func (c *cloud) retryClient(bound time.Duration) *Client {
	cl, err := New(sub, &azfake.TokenCredential{}, &Options{ARM: c.ARMOptions(), PollFrequency: time.Millisecond, VMCreateRetry: bound, VMModelDir: c.t.TempDir()})
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// recreatedOnce asserts a re-creation with nothing retried or restored: the validation, the PATCH, the
// DELETE and one PUT, the VM on the new OS disk, and no model file left.
func recreatedOnce(t *testing.T, c *cloud, cl *Client) {
	t.Helper()
	if want := []string{validateCall, "PATCH vm vm1", "DELETE vm vm1", "PUT vm vm1"}; !slices.Equal(c.Calls, want) {
		t.Errorf("calls %q, want %q", c.Calls, want)
	}
	vmBack(t, c, resID(typeDisk, "osdisk-plain"))
	noModelFiles(t, cl)
}

func planVM1(t *testing.T, c *cloud, cl *Client) *VMPlan {
	t.Helper()
	plan, err := cl.PlanRecreateVM(context.Background(), resID(typeVM, "vm1"), resID(typeDisk, "osdisk-plain"))
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

// TestRecreateVMPreflight: what Azure would refuse at the PUT is refused before the DELETE — a policy
// denial in ARM's validation of the exact body, a size not offered or restricted in the VM's region or
// zone (resource SKUs), hibernation on a disk that does not support it — and the VM is not touched.
func TestRecreateVMPreflight(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		setup func(c *cloud, plan *VMPlan)
		want  []string // in the error
		calls []string
	}{
		{"policy denies", func(c *cloud, _ *VMPlan) {
			c.PolicyDeny = func(vm *armcompute.VirtualMachine) string {
				if sp := vm.Properties.SecurityProfile; sp == nil || !deref(sp.EncryptionAtHost) {
					return "vms-need-encryption-at-host"
				}
				return ""
			}
		}, []string{"InvalidTemplateDeployment", "RequestDisallowedByPolicy", "vms-need-encryption-at-host"}, []string{validateCall}},
		{"size restricted in the zone", func(c *cloud, _ *VMPlan) {
			c.Restrict(string(armcompute.VirtualMachineSizeTypesStandardD4SV3), region, "1")
		}, []string{"SkuNotAvailable", "restricted in zone 1 of westeurope", "NotAvailableForSubscription"}, nil},
		{"size restricted in the region", func(c *cloud, _ *VMPlan) {
			c.Restrict(string(armcompute.VirtualMachineSizeTypesStandardD4SV3), region)
		}, []string{"SkuNotAvailable", "restricted in westeurope"}, nil},
		{"size not offered in the zone", func(c *cloud, _ *VMPlan) {
			c.ResourceSKUs = []*armcompute.ResourceSKU{azurefake.VMSKU(string(armcompute.VirtualMachineSizeTypesStandardD4SV3), region, "2", "3")}
		}, []string{"SkuNotAvailable", "not offered in zone 1"}, nil},
		{"size not offered in the region", func(c *cloud, _ *VMPlan) {
			c.ResourceSKUs = []*armcompute.ResourceSKU{azurefake.VMSKU(string(armcompute.VirtualMachineSizeTypesStandardD4SV3), "northeurope", "1")}
		}, []string{"SkuNotAvailable", "not offered in westeurope"}, nil},
		{"allowed-sizes policy (seen by the validation only)", func(c *cloud, plan *VMPlan) {
			// No size: the SKU check has nothing to check, ARM's validation of the exact body refuses it.
			plan.New.Properties.HardwareProfile.VMSize = nil
			c.PolicyDeny = func(vm *armcompute.VirtualMachine) string {
				if vm.Properties.HardwareProfile.VMSize == nil {
					return "allowed-vm-sizes"
				}
				return ""
			}
		}, []string{"RequestDisallowedByPolicy", "allowed-vm-sizes"}, []string{validateCall}},
		{"hibernation without supportsHibernation", func(c *cloud, plan *VMPlan) {
			plan.New.Properties.AdditionalCapabilities = &armcompute.AdditionalCapabilities{HibernationEnabled: to.Ptr(true)}
		}, []string{"hibernationEnabled", "supportsHibernation"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCloud(t)
			adeVM(c)
			cl := c.client()
			plan := planVM1(t, c, cl)
			tc.setup(c, plan)
			err := cl.RecreateVM(ctx, plan)
			var re *VMRecreateError
			if !errors.Is(err, ErrPreflight) || !errors.As(err, &re) || re.Deleted || !strings.Contains(re.Hint(), "nothing was deleted") ||
				!strings.Contains(err.Error(), "the VM was not changed") {
				t.Fatalf("err = %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if !slices.Equal(c.Calls, tc.calls) {
				t.Errorf("calls %q, want %q", c.Calls, tc.calls)
			}
			untouched(t, c)
			noModelFiles(t, cl)
		})
	}
	// Without the preflight the fakes refuse the same at the PUT, as Azure does after the DELETE.
	t.Run("fake refuses at the PUT too", func(t *testing.T) {
		c := newCloud(t)
		adeVM(c)
		c.PolicyDeny = func(vm *armcompute.VirtualMachine) string { return "deny-all" }
		ae := &Error{}
		_, err := c.client().putVM(ctx, mustVMs(t, c), rg, "vm2", *c.VMs[key(rg, "vm1")])
		if !errors.As(opError("x", "y", err), &ae) || ae.Code != "RequestDisallowedByPolicy" || ae.StatusCode != 403 {
			t.Errorf("policy at PUT: %v", err)
		}
		c.PolicyDeny = nil
		c.Restrict(string(armcompute.VirtualMachineSizeTypesStandardD4SV3), region, "1")
		_, err = c.client().putVM(ctx, mustVMs(t, c), rg, "vm2", *c.VMs[key(rg, "vm1")])
		if !errors.As(opError("x", "y", err), &ae) || ae.Code != "SkuNotAvailable" {
			t.Errorf("SKU at PUT: %v", err)
		}
	})
}

func mustVMs(t *testing.T, c *cloud) *armcompute.VirtualMachinesClient {
	f, err := c.client().compute(sub)
	if err != nil {
		t.Fatal(err)
	}
	return f.NewVirtualMachinesClient()
}

// TestPlanRecreateVMHibernation: the plan turns hibernation off in the new VM when the new OS disk does
// not declare supportsHibernation (warned; the rollback keeps it), keeps it when the disk does, and the
// re-creation then passes the fake's check.
func TestPlanRecreateVMHibernation(t *testing.T) {
	ctx := context.Background()
	for _, supports := range []bool{false, true} {
		c := newCloud(t)
		adeVM(c)
		c.VMs[key(rg, "vm1")].Properties.AdditionalCapabilities = &armcompute.AdditionalCapabilities{HibernationEnabled: to.Ptr(true)}
		c.Disks[key(rg, "osdisk")].Properties.SupportsHibernation = to.Ptr(true)
		if supports {
			c.Disks[key(rg, "osdisk-plain")].Properties.SupportsHibernation = to.Ptr(true)
		}
		cl := c.client()
		plan := planVM1(t, c, cl)
		got := *plan.New.Properties.AdditionalCapabilities.HibernationEnabled
		warned := strings.Contains(strings.Join(plan.Warnings, "\n"), "hibernation is turned off")
		if got != supports || warned == supports || !*plan.Rollback.Properties.AdditionalCapabilities.HibernationEnabled {
			t.Errorf("supportsHibernation %v: new VM hibernationEnabled %v, warned %v", supports, got, warned)
		}
		if !supports && hasChange(plan.Changes, "replace", "properties.additionalCapabilities.hibernationEnabled") == nil {
			t.Errorf("no change listed for hibernationEnabled: %v", plan.Changes)
		}
		if err := cl.RecreateVM(ctx, plan); err != nil {
			t.Fatalf("supportsHibernation %v: %v", supports, err)
		}
		vmBack(t, c, resID(typeDisk, "osdisk-plain"))
	}
}

// TestRecreateVMRetries: the PUT after the DELETE is retried while Azure holds the NIC for the deleted VM
// (NicReservedForAnotherVm), throttles (429) or fails inside (5xx), and the new VM is created.
func TestRecreateVMRetries(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		setup func(c *cloud)
		puts  int
	}{
		{"NIC held for the deleted VM", func(c *cloud) { c.NICHold = 2 }, 3},
		{"429 then 500", func(c *cloud) {
			c.VMPutErrors = []azurefake.Refusal{azurefake.TooManyRequests, azurefake.InternalError}
		}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCloud(t)
			adeVM(c)
			tc.setup(c)
			cl := c.retryClient(time.Minute)
			plan := planVM1(t, c, cl)
			if err := cl.RecreateVM(ctx, plan); err != nil {
				t.Fatal(err)
			}
			want := []string{validateCall, "PATCH vm vm1", "DELETE vm vm1"}
			for range tc.puts {
				want = append(want, "PUT vm vm1")
			}
			if !slices.Equal(c.Calls, want) {
				t.Errorf("calls %q, want %q", c.Calls, want)
			}
			vmBack(t, c, resID(typeDisk, "osdisk-plain"))
			noModelFiles(t, cl)
		})
	}
}

// TestRecreateVMRestores: a PUT that fails for good (AllocationFailed leaves a Failed VM behind) is not
// retried; the failed VM is deleted and the original re-created on its old disks.
func TestRecreateVMRestores(t *testing.T) {
	c := newCloud(t)
	adeVM(c)
	c.VMPutErrors = []azurefake.Refusal{azurefake.AllocationFail}
	cl := c.retryClient(time.Minute)
	plan := planVM1(t, c, cl)
	err := cl.RecreateVM(context.Background(), plan)
	var re *VMRecreateError
	if !errors.As(err, &re) || !re.Deleted || !re.Restored || re.Attempts != 1 || re.ModelFile != "" || !strings.Contains(err.Error(), "AllocationFailed") ||
		!strings.Contains(re.Hint(), "old ADE disks") || !strings.Contains(re.Hint(), "deallocate it before converting again") {
		t.Fatalf("err = %v", err)
	}
	want := []string{validateCall, "PATCH vm vm1", "DELETE vm vm1", "PUT vm vm1", "DELETE vm vm1", "PUT vm vm1"}
	if !slices.Equal(c.Calls, want) {
		t.Errorf("calls %q, want %q", c.Calls, want)
	}
	vmBack(t, c, resID(typeDisk, "osdisk"))
	noModelFiles(t, cl)
}

// TestRecreateVMRestoreFails: the NIC stays held past the retry bound, so neither the new VM nor the
// restore can be created: the error says so and names the file that holds the rollback body, which
// is the PUT body a manual restore sends, mode 0600, with no SAS in it.
func TestRecreateVMRestoreFails(t *testing.T) {
	c := newCloud(t)
	adeVM(c)
	c.NICHold = 1 << 30
	cl := c.retryClient(20 * time.Millisecond)
	plan := planVM1(t, c, cl)
	err := cl.RecreateVM(context.Background(), plan)
	var re *VMRecreateError
	if !errors.As(err, &re) || !re.Deleted || re.Restored || re.Attempts < 2 || re.ModelFile == "" || re.Restore == nil {
		t.Fatalf("err = %v", err)
	}
	for _, w := range []string{"NicReservedForAnotherVm", "restoring the original VM failed too", "its model is saved in " + re.ModelFile} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	if h := re.Hint(); !strings.Contains(h, "az rest --method put") || !strings.Contains(h, "--body @"+re.ModelFile) || !strings.Contains(h, plan.VMID+"?api-version="+vmAPIVersion) {
		t.Errorf("hint %q", h)
	}
	if !strings.HasPrefix(filepath.Base(re.ModelFile), "luksconv-vm-vm1-") || filepath.Dir(re.ModelFile) != cl.opts.VMModelDir {
		t.Errorf("model file %s", re.ModelFile)
	}
	st, err := os.Stat(re.ModelFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("model file: %v %v", st, err)
	}
	b, _ := os.ReadFile(re.ModelFile)
	var saved armcompute.VirtualMachine
	if err := json.Unmarshal(b, &saved); err != nil || str(saved.Properties.StorageProfile.OSDisk.ManagedDisk.ID) != resID(typeDisk, "osdisk") ||
		saved.Properties.StorageProfile.OSDisk.EncryptionSettings == nil || saved.Resources != nil {
		t.Errorf("saved model: %v\n%s", err, b)
	}
	rb, _ := json.Marshal(plan.Rollback)
	sb, _ := json.Marshal(saved)
	if string(rb) != string(sb) || strings.Contains(string(b), sasSecret) {
		t.Errorf("saved model is not the rollback body")
	}
	// Once Azure lets the NIC go, the saved body brings the VM back.
	c.ReleaseNICs()
	if err := cl.RestoreVM(context.Background(), &VMPlan{VMID: plan.VMID, Rollback: &saved}); err != nil {
		t.Fatal(err)
	}
	vmBack(t, c, resID(typeDisk, "osdisk"))
}

// TestVMTemplateResource: the validated template resource is the PUT body with type, apiVersion and
// name, and a string ARM would evaluate as an expression is escaped to the literal.
func TestVMTemplateResource(t *testing.T) {
	vm := &armcompute.VirtualMachine{Name: to.Ptr("vm1"), Location: to.Ptr(region),
		Tags: map[string]*string{"e": to.Ptr("[concat('a')]"), "a": to.Ptr("a[b]"), "o": to.Ptr("[open")}}
	m, err := vmTemplateResource(vm)
	if err != nil {
		t.Fatal(err)
	}
	tags := m["tags"].(map[string]any)
	if m["type"] != typeVM || m["apiVersion"] != vmAPIVersion || m["name"] != "vm1" || tags["e"] != "[[concat('a')]" || tags["a"] != "a[b]" || tags["o"] != "[open" {
		t.Errorf("resource %v", m)
	}
}

// TestRecreateVMValidatedAsUpdate: when the Compute provider judges the validated body as an update of
// the VM that still exists (PropertyChangeNotAllowed on osDisk.createOption), that is no verdict on the
// creation after the DELETE: the re-creation goes on; a policy denial still stops it.
func TestRecreateVMValidatedAsUpdate(t *testing.T) {
	for _, deny := range []bool{false, true} {
		c := newCloud(t)
		adeVM(c)
		c.ValidateAsUpdate = true
		if deny {
			c.PolicyDeny = func(*armcompute.VirtualMachine) string { return "allowed-locations" }
		}
		cl := c.client()
		plan := planVM1(t, c, cl)
		if !deny {
			// The fake does refuse the body as an update.
			rid, _ := parseID(plan.VMID, typeVM)
			c.ValidateAsUpdate = true
			cl2 := c.client()
			err := cl2.validateVM(context.Background(), rid, plan.New, false)
			if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), "PropertyChangeNotAllowed") {
				t.Fatalf("fake validation as update: %v", err)
			}
			c.Calls = nil
		}
		err := cl.RecreateVM(context.Background(), plan)
		if deny {
			if !errors.Is(err, ErrPreflight) {
				t.Fatalf("policy: err = %v", err)
			}
			untouched(t, c)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(c.Calls, []string{validateCall, "PATCH vm vm1", "DELETE vm vm1", "PUT vm vm1"}) {
			t.Errorf("calls %q", c.Calls)
		}
		vmBack(t, c, resID(typeDisk, "osdisk-plain"))
	}
}

// TestRecreateVMInterrupted: a run interrupted while the VM is being deleted does not stop with the VM
// gone: the DELETE's end is checked and the new VM created all the same.
func TestRecreateVMInterrupted(t *testing.T) {
	c := newCloud(t)
	adeVM(c)
	cl := c.client()
	plan := planVM1(t, c, cl)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.OnCall = func(call string) {
		if call == "DELETE vm vm1" {
			cancel()
		}
	}
	if err := cl.RecreateVM(ctx, plan); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() == nil {
		t.Fatal("not interrupted")
	}
	vmBack(t, c, resID(typeDisk, "osdisk-plain"))
	noModelFiles(t, cl)
}

// TestRecreateVMDeleteOutcome: a DELETE whose operation ends in an error while Azure goes on deleting
// the VM (as when its poll fails) is waited out: the VM is re-created once it is gone. A VM the failed
// delete leaves in the Failed state may be half deleted: RecreateVM stops, says so, and keeps the model.
func TestRecreateVMDeleteOutcome(t *testing.T) {
	ctx := context.Background()
	t.Run("deleted after the error", func(t *testing.T) {
		c := newCloud(t)
		adeVM(c)
		c.DeleteFails, c.DeletingReads = true, 3
		cl := c.client()
		if err := cl.RecreateVM(ctx, planVM1(t, c, cl)); err != nil {
			t.Fatal(err)
		}
		recreatedOnce(t, c, cl)
	})
	t.Run("left Failed", func(t *testing.T) {
		c := newCloud(t)
		adeVM(c)
		c.DeleteFails, c.DeletingReads, c.DeleteLeavesFailed = true, 2, true
		cl := c.client()
		err := cl.RecreateVM(ctx, planVM1(t, c, cl))
		var re *VMRecreateError
		if !errors.As(err, &re) || !re.Uncertain || re.State != "Failed" || re.ModelFile == "" {
			t.Fatalf("RecreateVM: %v (%+v), want an uncertain delete with the model kept", err, re)
		}
		if _, serr := os.Stat(re.ModelFile); serr != nil {
			t.Errorf("model file: %v", serr)
		}
		if !strings.Contains(err.Error(), "may be deleted") || !strings.Contains(re.Hint(), re.ModelFile) {
			t.Errorf("error %q, hint %q: want the doubt and the model file named", err, re.Hint())
		}
		if slices.Contains(c.Calls, "PUT vm vm1") {
			t.Errorf("a PUT over a VM whose delete failed half-way: %q", c.Calls)
		}
	})
}

// lostPut forwards the first VM PUT and then loses its answer, as a broken connection would, and
// fails the failGets reads of the VM after it the same way.
type lostPut struct {
	inner    policy.Transporter
	lost     bool
	failGets int
}

func (l *lostPut) Do(req *http.Request) (*http.Response, error) {
	vm1 := strings.HasSuffix(strings.ToLower(req.URL.Path), "/virtualmachines/vm1")
	if vm1 && req.Method == http.MethodGet && l.lost && l.failGets > 0 {
		l.failGets--
		return nil, errors.New("connection reset by peer")
	}
	resp, err := l.inner.Do(req)
	if req.Method == http.MethodPut && vm1 && !l.lost {
		l.lost = true
		return nil, errors.New("connection reset by peer")
	}
	return resp, err
}

// lostPutClient returns a fake cloud holding the ADE VM vm1 and a client whose transport loses the
// answer of the first PUT of vm1 and fails the failGets reads of it after that, without retries.
func lostPutClient(t *testing.T, failGets int) (*cloud, *Client) {
	t.Helper()
	c := newCloud(t)
	adeVM(c)
	arm := c.ARMOptions()
	arm.Transport = &lostPut{inner: arm.Transport, failGets: failGets}
	arm.Retry.MaxRetries = -1
	cl, err := New(sub, &azfake.TokenCredential{}, &Options{ARM: arm, PollFrequency: time.Millisecond, VMModelDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return c, cl
}

// TestRecreateVMPutAnswerLost: a PUT whose answer is lost may have created the VM: RecreateVM reads it
// before restoring, and finds it re-created on the new disk (a restore would have raced it). When the
// reads after it fail for a while, it reads again until one answers: it took the first failure for
// "not created" and restored the original VM over the new one, or failed that restore and called the
// VM deleted.
func TestRecreateVMPutAnswerLost(t *testing.T) {
	for _, failGets := range []int{0, 3} {
		t.Run(fmt.Sprintf("failed reads %d", failGets), func(t *testing.T) {
			c, cl := lostPutClient(t, failGets)
			plan := planVM1(t, c, cl)
			if err := cl.RecreateVM(context.Background(), plan); err != nil {
				t.Fatal(err)
			}
			recreatedOnce(t, c, cl)
		})
	}
}

// TestRecreateVMPutAnswerLostUnreadable: after a lost PUT answer the VM cannot be read at all within
// the wait: RecreateVM cannot tell whether the new VM exists, so it does not restore (a PUT of the old
// model could overwrite the new VM) and says the VM's state is unknown, its model kept.
func TestRecreateVMPutAnswerLostUnreadable(t *testing.T) {
	defer func(d time.Duration) { createdWait = d }(createdWait)
	createdWait = 50 * time.Millisecond
	c, cl := lostPutClient(t, 1<<30)
	plan := planVM1(t, c, cl)
	err := cl.RecreateVM(context.Background(), plan)
	var re *VMRecreateError
	if !errors.As(err, &re) || !re.Uncertain || re.Restored || re.Restore != nil || re.ModelFile == "" {
		t.Fatalf("RecreateVM: %v (%+v), want an uncertain failure without a restore", err, re)
	}
	if _, err := os.Stat(re.ModelFile); err != nil {
		t.Errorf("model file: %v", err)
	}
	if n := strings.Count(strings.Join(c.Calls, "\n"), "PUT vm vm1"); n != 1 {
		t.Errorf("calls %q: want the one PUT of the new VM, no restore", c.Calls)
	}
	if !strings.Contains(err.Error(), "its state is unknown") || !strings.Contains(re.Hint(), "az vm show") {
		t.Errorf("error %q, hint %q", err, re.Hint())
	}
}

// TestRecreateVMStartedDuringPreflight: a VM started while the preflight runs is not deleted.
func TestRecreateVMStartedDuringPreflight(t *testing.T) {
	c := newCloud(t)
	adeVM(c)
	cl := c.client()
	plan := planVM1(t, c, cl)
	c.PolicyDeny = func(*armcompute.VirtualMachine) string {
		c.PowerStates[key(rg, "vm1")] = "running" // the lock is held
		return ""
	}
	err := cl.RecreateVM(context.Background(), plan)
	var re *VMRecreateError
	if !errors.As(err, &re) || re.Deleted || !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "running") {
		t.Fatalf("RecreateVM: %v, want a refusal before the DELETE", err)
	}
	if slices.Contains(c.Calls, "DELETE vm vm1") {
		t.Errorf("the running VM was deleted: %q", c.Calls)
	}
	vmBack(t, c, resID(typeDisk, "osdisk"))
	noModelFiles(t, cl)
}

// TestRecreateVMEditedDuringPreflight: a VM edited while the preflight runs (a data disk attached: Azure
// gives it a new etag) is not deleted: its re-creation from the plan would drop the disk, and the PATCH's
// data disk list would detach it. Edited as the PATCH is sent alike (its If-Match refuses it).
func TestRecreateVMEditedDuringPreflight(t *testing.T) {
	attach := func(c *cloud) { // the lock is held
		vm := c.VMs[key(rg, "vm1")]
		vm.Etag = to.Ptr(`"edited"`)
		vm.Properties.StorageProfile.DataDisks = append(vm.Properties.StorageProfile.DataDisks, &armcompute.DataDisk{
			Lun: to.Ptr[int32](1), CreateOption: to.Ptr(armcompute.DiskCreateOptionTypesAttach), ManagedDisk: &armcompute.ManagedDiskParameters{ID: to.Ptr(resID(typeDisk, "logs"))}})
	}
	for _, tc := range []struct {
		name   string
		detach bool // the VM has a deleteOption Delete: the PATCH runs
		at     string
	}{
		{"during the preflight", true, validateCall},
		{"during the preflight, nothing to detach", false, validateCall},
		{"as the PATCH is sent", true, "PATCH vm vm1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCloud(t)
			adeVM(c)
			if !tc.detach {
				p := c.VMs[key(rg, "vm1")].Properties
				p.NetworkProfile.NetworkInterfaces[0].Properties.DeleteOption = nil
				p.StorageProfile.DataDisks[0].DeleteOption = nil
			}
			cl := c.client()
			plan := planVM1(t, c, cl)
			if (plan.DetachUpdate != nil) != tc.detach {
				t.Fatalf("detach update %v", plan.DetachUpdate)
			}
			c.OnCall = func(call string) {
				if call == tc.at {
					attach(c)
				}
			}
			err := cl.RecreateVM(context.Background(), plan)
			var re *VMRecreateError
			if !errors.As(err, &re) || re.Deleted || !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "changed since the plan") {
				t.Fatalf("RecreateVM: %v, want a refusal before the DELETE", err)
			}
			if slices.Contains(c.Calls, "DELETE vm vm1") {
				t.Errorf("the edited VM was deleted: %q", c.Calls)
			}
			vmBack(t, c, resID(typeDisk, "osdisk"))
			if dd := c.VMs[key(rg, "vm1")].Properties.StorageProfile.DataDisks; len(dd) != 2 {
				t.Errorf("data disks %d, want 2", len(dd))
			}
			noModelFiles(t, cl)
		})
	}
}

// TestSavedModels: the model files of VM vm1 are those named for its resource ID and a time, oldest
// first; those of VM vm1 of another resource group and of VM vm1-2 in the same directory (a fleet's
// shared journal directory) are not, nor other files.
func TestSavedModels(t *testing.T) {
	dir := t.TempDir()
	sub := "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/"
	vm1, vm1b, vm12 := sub+"rg-a/providers/Microsoft.Compute/virtualMachines/vm1", sub+"rg-b/providers/Microsoft.Compute/virtualMachines/vm1",
		sub+"rg-a/providers/Microsoft.Compute/virtualMachines/vm1-2"
	t1, t2 := time.Date(2025, 12, 8, 1, 2, 3, 0, time.UTC), time.Date(2026, 12, 8, 1, 2, 3, 0, time.UTC)
	if n := ModelName(vm1, t2); !strings.HasPrefix(n, "luksconv-vm-vm1-") || !strings.HasSuffix(n, "-20261208T010203Z.json") || n == ModelName(vm1b, t2) {
		t.Errorf("ModelName: %s (rg-b: %s)", n, ModelName(vm1b, t2))
	}
	if ModelName(vm1, t2) != ModelName(strings.ToUpper(vm1), t2) {
		t.Error("ModelName depends on the ID's case")
	}
	for _, n := range []string{ModelName(vm1, t2), ModelName(vm1, t1), ModelName(vm1b, t2), ModelName(vm12, t2),
		"luksconv-vm-vm1-20261208T010203Z.json", ModelName(vm1, t2) + ".bak", strings.TrimSuffix(ModelName(vm1, t2), "20261208T010203Z.json") + "notes.json"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{filepath.Join(dir, ModelName(vm1, t1)), filepath.Join(dir, ModelName(vm1, t2))}
	if got := SavedModels(dir, vm1); !slices.Equal(got, want) {
		t.Errorf("SavedModels(vm1) = %q, want %q", got, want)
	}
	for _, id := range []string{vm1b, vm12} {
		if got := SavedModels(dir, id); len(got) != 1 || filepath.Base(got[0]) != ModelName(id, t2) {
			t.Errorf("SavedModels(%s) = %q", id, got)
		}
	}
}
