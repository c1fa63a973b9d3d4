package azurefake

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	computefake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	resourcesfake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/fake"
)

// Refusal is an error a VM PUT fails with: an HTTP status and ARM error
// code. Async accepts the PUT and fails the operation instead, leaving the
// VM in the Failed state (as AllocationFailed does).
type Refusal struct {
	Status int
	Code   string
	Async  bool
}

// Refusals Azure answers a VM PUT with.
var (
	TooManyRequests = Refusal{Status: http.StatusTooManyRequests, Code: "TooManyRequests"}
	InternalError   = Refusal{Status: http.StatusInternalServerError, Code: "InternalServerError"}
	AllocationFail  = Refusal{Status: http.StatusOK, Code: "AllocationFailed", Async: true}
	NICReserved     = Refusal{Status: http.StatusBadRequest, Code: "NicReservedForAnotherVm"}
)

// router sends Microsoft.Resources requests to the fake deployments,
// Microsoft.ResourceGraph requests to the fake Resource Graph (graph.go) and
// everything else to the fake Microsoft.Compute: one ARM endpoint, as in
// Azure.
type router struct {
	c          *Cloud
	newCompute func() transporter
	compute    transporter // guarded by c
	resources  transporter
	graph      transporter
}

type transporter interface {
	Do(*http.Request) (*http.Response, error)
}

func (r *router) Do(req *http.Request) (*http.Response, error) {
	if strings.Contains(strings.ToLower(req.URL.Path), "/providers/microsoft.resourcegraph/") {
		return r.graph.Do(req)
	}
	if strings.Contains(strings.ToLower(req.URL.Path), "/providers/microsoft.resources/") {
		return r.resources.Do(req)
	}
	r.c.Lock()
	// The SDK fake keeps the poller of a failed operation for its URL and answers the next PUT there
	// with it, exhausted; after an asynchronous refusal a PUT gets a fresh transport, as a new
	// operation gets in Azure. (Pollers of other operations in flight are lost: the tests that use
	// Async refusals run one operation at a time.) So does any request after Settle, which leaves
	// the pollers of the operations it ended unfinished.
	if r.c.settled || r.c.failedAsync && req.Method == http.MethodPut {
		r.c.settled, r.c.failedAsync = false, false
		r.compute = r.newCompute()
	}
	if req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, pollSuffix) {
		r.c.polled(req.URL.Path)
	} else {
		req = req.WithContext(context.WithValue(req.Context(), pathKey{}, req.URL.Path))
	}
	t := r.compute
	r.c.Unlock()
	return t.Do(req)
}

// Region is where DefaultSKUs offers its sizes.
const Region = "westeurope"

// DefaultSKUs is the resource-SKU catalogue of a new Cloud: Standard_D2s_v3
// and Standard_D4s_v3 in Region, zones 1 to 3, unrestricted.
func DefaultSKUs() []*armcompute.ResourceSKU {
	return []*armcompute.ResourceSKU{
		VMSKU(string(armcompute.VirtualMachineSizeTypesStandardD2SV3), Region, "1", "2", "3"),
		VMSKU(string(armcompute.VirtualMachineSizeTypesStandardD4SV3), Region, "1", "2", "3"),
	}
}

// VMSKU is the resource SKU of a VM size offered in a location and zones.
func VMSKU(size, location string, zones ...string) *armcompute.ResourceSKU {
	return &armcompute.ResourceSKU{
		ResourceType: to.Ptr("virtualMachines"), Name: to.Ptr(size), Tier: to.Ptr("Standard"),
		Locations:    []*string{to.Ptr(location)},
		LocationInfo: []*armcompute.ResourceSKULocationInfo{{Location: to.Ptr(location), Zones: to.SliceOfPtrs(zones...)}},
		Capabilities: []*armcompute.ResourceSKUCapabilities{{Name: to.Ptr("HibernationSupported"), Value: to.Ptr("True")},
			{Name: to.Ptr("EncryptionAtHostSupported"), Value: to.Ptr("True")}},
	}
}

// Restrict adds a restriction to the SKU of size: in the whole location
// when no zones are given, else in those zones (reason NotAvailableForSubscription).
func (c *Cloud) Restrict(size, location string, zones ...string) {
	c.Lock()
	defer c.Unlock()
	for _, s := range c.ResourceSKUs {
		if s == nil || !strings.EqualFold(deref(s.Name), size) {
			continue
		}
		r := &armcompute.ResourceSKURestrictions{ReasonCode: to.Ptr(armcompute.ResourceSKURestrictionsReasonCodeNotAvailableForSubscription),
			Values: []*string{to.Ptr(location)}, RestrictionInfo: &armcompute.ResourceSKURestrictionInfo{Locations: []*string{to.Ptr(location)}}}
		if len(zones) == 0 {
			r.Type = to.Ptr(armcompute.ResourceSKURestrictionsTypeLocation)
		} else {
			r.Type = to.Ptr(armcompute.ResourceSKURestrictionsTypeZone)
			r.RestrictionInfo.Zones = to.SliceOfPtrs(zones...)
		}
		s.Restrictions = append(s.Restrictions, r)
	}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func sameRegion(a, b string) bool {
	n := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, " ", "")) }
	return n(a) == n(b)
}

// skuRefusal is why Azure would not place vm, "" if it would: its size not
// offered in its location or zone, or restricted there.
func (c *Cloud) skuRefusal(vm *armcompute.VirtualMachine) string {
	if vm.Properties == nil || vm.Properties.HardwareProfile == nil || vm.Properties.HardwareProfile.VMSize == nil {
		return ""
	}
	size, loc := string(*vm.Properties.HardwareProfile.VMSize), deref(vm.Location)
	var zones []string
	for _, z := range vm.Zones {
		zones = append(zones, deref(z))
	}
	for _, s := range c.ResourceSKUs {
		if s == nil || !strings.EqualFold(deref(s.ResourceType), "virtualMachines") || !strings.EqualFold(deref(s.Name), size) {
			continue
		}
		offered := false
		for _, l := range s.Locations {
			offered = offered || sameRegion(deref(l), loc)
		}
		if !offered {
			continue
		}
		for _, z := range zones {
			inZone := false
			for _, li := range s.LocationInfo {
				if li != nil && sameRegion(deref(li.Location), loc) {
					for _, lz := range li.Zones {
						inZone = inZone || deref(lz) == z
					}
				}
			}
			if !inZone {
				return fmt.Sprintf("size %s is not offered in zone %s of %s", size, z, loc)
			}
		}
		for _, r := range s.Restrictions {
			if r == nil || r.Type == nil {
				continue
			}
			switch *r.Type {
			case armcompute.ResourceSKURestrictionsTypeLocation:
				for _, v := range r.Values {
					if sameRegion(deref(v), loc) {
						return fmt.Sprintf("size %s is restricted in %s", size, loc)
					}
				}
			case armcompute.ResourceSKURestrictionsTypeZone:
				if r.RestrictionInfo != nil {
					for _, rz := range r.RestrictionInfo.Zones {
						for _, z := range zones {
							if deref(rz) == z {
								return fmt.Sprintf("size %s is restricted in zone %s of %s", size, z, loc)
							}
						}
					}
				}
			}
		}
		return ""
	}
	return fmt.Sprintf("size %s is not offered in %s", size, loc)
}

func osCreateOption(vm *armcompute.VirtualMachine) string {
	if p := vm.Properties; p != nil && p.StorageProfile != nil && p.StorageProfile.OSDisk != nil && p.StorageProfile.OSDisk.CreateOption != nil {
		return string(*p.StorageProfile.OSDisk.CreateOption)
	}
	return ""
}

// ReleaseNICs ends every NICHold, as Azure does when the hold times out.
func (c *Cloud) ReleaseNICs() {
	c.Lock()
	defer c.Unlock()
	clear(c.nicHeld)
}

// nicIDs are the IDs of a VM's NICs, lower case.
func nicIDs(vm *armcompute.VirtualMachine) []string {
	var out []string
	if vm.Properties == nil || vm.Properties.NetworkProfile == nil {
		return nil
	}
	for _, n := range vm.Properties.NetworkProfile.NetworkInterfaces {
		if n != nil && n.ID != nil {
			out = append(out, strings.ToLower(*n.ID))
		}
	}
	return out
}

// hibernationRefusal: Azure refuses hibernationEnabled on a VM whose OS
// disk does not declare supportsHibernation. The exact error code is not
// documented; the fake answers InvalidParameter.
func (c *Cloud) hibernationRefusal(vm *armcompute.VirtualMachine) bool {
	p := vm.Properties
	if p == nil || p.AdditionalCapabilities == nil || p.AdditionalCapabilities.HibernationEnabled == nil || !*p.AdditionalCapabilities.HibernationEnabled {
		return false
	}
	if p.StorageProfile == nil || p.StorageProfile.OSDisk == nil || p.StorageProfile.OSDisk.ManagedDisk == nil {
		return true
	}
	id := deref(p.StorageProfile.OSDisk.ManagedDisk.ID)
	for _, d := range c.Disks {
		if strings.EqualFold(deref(d.ID), id) {
			return d.Properties == nil || d.Properties.SupportsHibernation == nil || !*d.Properties.SupportsHibernation
		}
	}
	return true
}

// refusePut is what a VM PUT of vm fails with, if anything; called with
// the lock held. It consumes VMPutErrors and NIC holds.
func (c *Cloud) refusePut(vm *armcompute.VirtualMachine) (Refusal, bool) {
	if len(c.VMPutErrors) > 0 {
		r := c.VMPutErrors[0]
		c.VMPutErrors = c.VMPutErrors[1:]
		return r, true
	}
	if c.PolicyDeny != nil && c.PolicyDeny(vm) != "" {
		return Refusal{Status: http.StatusForbidden, Code: "RequestDisallowedByPolicy"}, true
	}
	if c.skuRefusal(vm) != "" {
		return Refusal{Status: http.StatusConflict, Code: "SkuNotAvailable"}, true
	}
	held := false
	for _, id := range nicIDs(vm) {
		if c.nicHeld[id] > 0 {
			c.nicHeld[id]--
			held = true
		}
	}
	if held {
		return NICReserved, true
	}
	if c.hibernationRefusal(vm) {
		return Refusal{Status: http.StatusBadRequest, Code: "InvalidParameter"}, true
	}
	if c.vmSecurityRefusal(vm) != "" {
		return Refusal{Status: http.StatusBadRequest, Code: "InvalidParameter"}, true
	}
	return Refusal{}, false
}

func (c *Cloud) skusServer() computefake.ResourceSKUsServer {
	return computefake.ResourceSKUsServer{
		// Only the location filter is supported, as in Azure: "location eq 'westeurope'".
		NewListPager: func(o *armcompute.ResourceSKUsClientListOptions) (resp azfake.PagerResponder[armcompute.ResourceSKUsClientListResponse]) {
			c.Lock()
			defer c.Unlock()
			var loc string
			if o != nil && o.Filter != nil {
				f := strings.TrimSpace(*o.Filter)
				if v, ok := strings.CutPrefix(f, "location eq "); ok {
					loc = strings.Trim(v, "'")
				}
			}
			var page []*armcompute.ResourceSKU
			for _, s := range c.ResourceSKUs {
				keep := loc == ""
				for _, l := range s.Locations {
					keep = keep || sameRegion(deref(l), loc)
				}
				if keep {
					page = append(page, s)
				}
			}
			// Two pages, as a long catalogue comes.
			half := len(page) / 2
			resp.AddPage(http.StatusOK, armcompute.ResourceSKUsClientListResponse{ResourceSKUsResult: armcompute.ResourceSKUsResult{Value: page[:half]}}, nil)
			resp.AddPage(http.StatusOK, armcompute.ResourceSKUsClientListResponse{ResourceSKUsResult: armcompute.ResourceSKUsResult{Value: page[half:]}}, nil)
			return
		},
	}
}

// deploymentsServer validates a template of virtual machines as Azure's
// preflight does for the refusals the fake models: policy, SKU.
func (c *Cloud) deploymentsServer() resourcesfake.DeploymentsServer {
	return resourcesfake.DeploymentsServer{
		BeginValidate: func(ctx context.Context, rg, name string, d armresources.Deployment, _ *armresources.DeploymentsClientBeginValidateOptions) (resp azfake.PollerResponder[armresources.DeploymentsClientValidateResponse], errResp azfake.ErrorResponder) {
			c.Lock()
			defer c.Unlock()
			c.record("VALIDATE deployment %s", name)
			fail := func(code, target, msg string) {
				resp.SetTerminalResponse(http.StatusBadRequest, armresources.DeploymentsClientValidateResponse{DeploymentValidateResult: armresources.DeploymentValidateResult{
					Error: &armresources.ErrorResponse{Code: to.Ptr("InvalidTemplateDeployment"),
						Message: to.Ptr(fmt.Sprintf("The template deployment '%s' is not valid according to the validation procedure. See inner errors for details.", name)),
						Details: []*armresources.ErrorResponse{{Code: to.Ptr(code), Target: to.Ptr(target), Message: to.Ptr(msg)}}},
				}}, nil)
			}
			if d.Properties == nil || d.Properties.Template == nil {
				errResp.SetResponseError(http.StatusBadRequest, "InvalidTemplate")
				return
			}
			b, err := json.Marshal(d.Properties.Template)
			var t struct {
				Resources []json.RawMessage `json:"resources"`
			}
			if err != nil || json.Unmarshal(b, &t) != nil || len(t.Resources) == 0 {
				errResp.SetResponseError(http.StatusBadRequest, "InvalidTemplate")
				return
			}
			for _, r := range t.Resources {
				var head struct {
					Type       string `json:"type"`
					APIVersion string `json:"apiVersion"`
				}
				var vm armcompute.VirtualMachine
				if json.Unmarshal(r, &head) != nil || head.APIVersion == "" || json.Unmarshal(r, &vm) != nil {
					errResp.SetResponseError(http.StatusBadRequest, "InvalidTemplate")
					return
				}
				if !strings.EqualFold(head.Type, "Microsoft.Compute/virtualMachines") {
					continue
				}
				c.Validated = &vm
				if a := c.PolicyDeny; a != nil && a(&vm) != "" {
					fail("RequestDisallowedByPolicy", deref(vm.Name), fmt.Sprintf("Resource '%s' was disallowed by policy. Policy identifiers: '%s'.", deref(vm.Name), a(&vm)))
					return
				}
				if cur, ok := c.VMs[Key(rg, deref(vm.Name))]; ok && c.ValidateAsUpdate && osCreateOption(cur) != osCreateOption(&vm) {
					fail("PropertyChangeNotAllowed", "osDisk.createOption", "Changing property 'osDisk.createOption' is not allowed.")
					return
				}
				if why := c.vmSecurityRefusal(&vm); why != "" {
					fail("InvalidParameter", "storageProfile.osDisk.managedDisk.id", why)
					return
				}
				if why := c.skuRefusal(&vm); why != "" {
					fail("SkuNotAvailable", deref(vm.Name), "The requested VM size is currently not available: "+why+".")
					return
				}
				if vp := vm.Properties; vp != nil && vp.SecurityProfile != nil && vp.SecurityProfile.EncryptionAtHost != nil && *vp.SecurityProfile.EncryptionAtHost && !c.EncryptionAtHostRegistered {
					fail("InvalidParameter", "securityProfile.encryptionAtHost", "The property 'securityProfile.encryptionAtHost' is not valid because the 'Microsoft.Compute/EncryptionAtHost' feature is not enabled for this subscription.")
					return
				}
			}
			resp.SetTerminalResponse(http.StatusOK, armresources.DeploymentsClientValidateResponse{DeploymentValidateResult: armresources.DeploymentValidateResult{
				Properties: &armresources.DeploymentPropertiesExtended{ProvisioningState: to.Ptr(armresources.ProvisioningStateSucceeded), Mode: to.Ptr(armresources.DeploymentModeIncremental)},
			}}, nil)
			return
		},
	}
}
