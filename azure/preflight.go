package azure

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"

	"github.com/luksconv/luksconv/blobio"
)

// ErrPreflight: Azure would refuse the new VM (Azure Policy, a VM size not
// available or restricted in the VM's region or zone, a setting the new
// disk does not support). The VM was not changed.
var ErrPreflight = errors.New("azure: the new VM would be refused")

// DefaultVMCreateRetry is how long RecreateVM and RestoreVM retry a VM PUT
// that Azure refuses for a while only: NicReservedForAnotherVm (Azure holds
// a deleted VM's NICs for it for up to about 180 seconds), HTTP 429 and 5xx.
const DefaultVMCreateRetry = 5 * time.Minute

// MaxRecreateTime bounds, with the default VMCreateRetry, the part of RecreateVM that a cancelled
// context does not stop (from the DELETE: the PUT, its retries and a restore): how long a job engine
// should let the process run on after asking it to stop.
const MaxRecreateTime = 2 * (DefaultVMCreateRetry + recreateStepTime)

// recreateStepTime is what each of the DELETE, PUT and restore may take beyond the PUT's retries.
const recreateStepTime = 15 * time.Minute

// vmAPIVersion is the Microsoft.Compute API version of armcompute's VM
// calls (v8.4.0), which the validated template and the manual-restore
// command name so that they mean what the PUT means.
const vmAPIVersion = "2026-04-01"

// PreflightVM checks, without changing anything, that Azure would accept
// plan.New: that a VM with hibernationEnabled gets an OS disk with
// supportsHibernation, that its size is offered and not restricted in its
// location and zone (resource SKUs), and that Azure Resource Manager
// validates a deployment of exactly that PUT body in the VM's resource
// group (which evaluates Azure Policy and the Compute provider's own
// checks). A refusal is an *Error wrapping ErrPreflight. RecreateVM runs it
// before anything is changed.
func (c *Client) PreflightVM(ctx context.Context, plan *VMPlan) error {
	const op = "preflight of VM"
	if plan == nil || plan.New == nil {
		return errors.New("azure: preflight of VM: no plan")
	}
	rid, err := parseID(plan.VMID, typeVM)
	if err != nil {
		return opError(op, plan.VMID, err)
	}
	vm := plan.New
	if err := c.checkHibernation(ctx, vm, plan.NewOSDiskID); err != nil {
		return err
	}
	if err := c.checkSKU(ctx, rid, vm); err != nil {
		return err
	}
	return c.validateVM(ctx, rid, vm, true)
}

// checkHibernation refuses a VM body with hibernationEnabled whose OS disk
// does not declare supportsHibernation (Azure refuses the PUT).
func (c *Client) checkHibernation(ctx context.Context, vm *armcompute.VirtualMachine, osDiskID string) error {
	p := vm.Properties
	if p == nil || p.AdditionalCapabilities == nil || !deref(p.AdditionalCapabilities.HibernationEnabled) {
		return nil
	}
	ok, err := c.diskSupportsHibernation(ctx, osDiskID)
	if err != nil {
		return err
	}
	if !ok {
		return newError("preflight of VM", osDiskID, ErrPreflight, "the VM has hibernationEnabled, the new OS disk no supportsHibernation: plan again (the plan then turns hibernation off)")
	}
	return nil
}

func (c *Client) diskSupportsHibernation(ctx context.Context, diskID string) (bool, error) {
	d, err := c.getDisk(ctx, "read", diskID)
	if err != nil {
		return false, err
	}
	return d.Properties != nil && deref(d.Properties.SupportsHibernation), nil
}

// checkSKU refuses a VM whose size Azure does not offer in its location
// and zones, or restricts there for this subscription (NotAvailableForSubscription,
// QuotaId): the PUT would fail with SkuNotAvailable.
func (c *Client) checkSKU(ctx context.Context, rid resourceID, vm *armcompute.VirtualMachine) error {
	const op = "preflight of VM"
	p := vm.Properties
	if p == nil || p.HardwareProfile == nil || p.HardwareProfile.VMSize == nil {
		return nil
	}
	size, loc := string(*p.HardwareProfile.VMSize), str(vm.Location)
	zones := ptrStrings(vm.Zones)
	f, err := c.compute(rid.Subscription)
	if err != nil {
		return opError(op, rid.ID, err)
	}
	pager := f.NewResourceSKUsClient().NewListPager(&armcompute.ResourceSKUsClientListOptions{Filter: to.Ptr(fmt.Sprintf("location eq '%s'", loc))})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return opError("list the resource SKUs of", loc, err)
		}
		for _, s := range page.Value {
			if s == nil || !strings.EqualFold(str(s.ResourceType), "virtualMachines") || !strings.EqualFold(str(s.Name), size) || !skuInLocation(s, loc) {
				continue
			}
			if why := skuRefusal(s, loc, zones); why != "" {
				return newError(op, rid.ID, ErrPreflight, "SkuNotAvailable: %s (pick another size, or zone, before re-creating the VM)", why)
			}
			if sp := p.SecurityProfile; sp != nil && deref(sp.EncryptionAtHost) && !skuCapability(s, "EncryptionAtHostSupported") {
				return newError(op, rid.ID, ErrPreflight, "size %s does not support encryption at host (resource SKU capability EncryptionAtHostSupported)", size)
			}
			return nil
		}
	}
	return newError(op, rid.ID, ErrPreflight, "SkuNotAvailable: size %s is not offered in %s to this subscription", size, loc)
}

// skuCapability reports whether the SKU has the capability name with the value True.
func skuCapability(s *armcompute.ResourceSKU, name string) bool {
	for _, c := range s.Capabilities {
		if c != nil && strings.EqualFold(str(c.Name), name) && strings.EqualFold(str(c.Value), "True") {
			return true
		}
	}
	return false
}

func skuInLocation(s *armcompute.ResourceSKU, loc string) bool {
	for _, l := range s.Locations {
		if sameLocation(str(l), loc) {
			return true
		}
	}
	return false
}

// skuRefusal says why a VM of SKU s cannot be placed in loc and zones, ""
// if it can.
func skuRefusal(s *armcompute.ResourceSKU, loc string, zones []string) string {
	size := str(s.Name)
	for _, z := range zones {
		offered := false
		for _, li := range s.LocationInfo {
			if li != nil && sameLocation(str(li.Location), loc) && contains(ptrStrings(li.Zones), z) {
				offered = true
			}
		}
		if !offered {
			return fmt.Sprintf("size %s is not offered in zone %s of %s", size, z, loc)
		}
	}
	for _, r := range s.Restrictions {
		if r == nil || r.Type == nil {
			continue
		}
		reason := ""
		if r.ReasonCode != nil {
			reason = " (" + string(*r.ReasonCode) + ")"
		}
		switch *r.Type {
		case armcompute.ResourceSKURestrictionsTypeLocation:
			for _, v := range r.Values {
				if sameLocation(str(v), loc) {
					return fmt.Sprintf("size %s is restricted in %s%s", size, loc, reason)
				}
			}
		case armcompute.ResourceSKURestrictionsTypeZone:
			if r.RestrictionInfo == nil {
				continue
			}
			for _, z := range ptrStrings(r.RestrictionInfo.Zones) {
				if contains(zones, z) {
					return fmt.Sprintf("size %s is restricted in zone %s of %s%s", size, z, loc, reason)
				}
			}
		}
	}
	return ""
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// validateVM has Azure Resource Manager validate a deployment, in the VM's
// resource group, of a template holding exactly the VM's PUT body: what
// `az deployment group validate` does. Nothing is deployed.
//
// exists says the VM still exists: refusals of only an update of it are
// then no verdict (see updateOnly).
func (c *Client) validateVM(ctx context.Context, rid resourceID, vm *armcompute.VirtualMachine, exists bool) error {
	const op = "preflight of VM"
	res, err := vmTemplateResource(vm)
	if err != nil {
		return opError(op, rid.ID, err)
	}
	template := map[string]any{
		"$schema":        "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
		"contentVersion": "1.0.0.0",
		"resources":      []any{res},
	}
	dc, err := armresources.NewDeploymentsClient(rid.Subscription, c.cred, c.opts.ARM)
	if err != nil {
		return opError(op, rid.ID, err)
	}
	name := "luksconv-preflight-" + rid.Name
	if len(name) > 64 {
		name = name[:64]
	}
	_, err = started(dc.BeginValidate(ctx, rid.ResourceGroup, name, armresources.Deployment{Properties: &armresources.DeploymentProperties{
		Mode: to.Ptr(armresources.DeploymentModeIncremental), Template: template,
	}}, nil)).wait(ctx, c)
	if err == nil {
		return nil
	}
	e := opError("validate (ARM deployment preflight) the new VM", rid.ID, err).(*Error)
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode >= 500 || re.StatusCode == 429 || re.StatusCode == 401 || strings.HasSuffix(re.ErrorCode, "AuthorizationFailed") {
		// Not a verdict on the VM: the validation itself failed.
		return e
	}
	d, codes := validationDetails(re)
	if exists && len(codes) > 0 && !slices.ContainsFunc(codes, func(c string) bool { return !updateOnly[strings.ToLower(c)] }) {
		// The VM still exists, so the Compute provider may judge the body as an update of it; what
		// only an update is refused (changing osDisk.createOption, swapping an ADE VM's OS disk) does
		// not apply to the creation after the DELETE. Azure Policy was evaluated all the same.
		// [live behaviour unverified]
		return nil
	}
	if d != "" {
		e.Message = redactMessage(e.Message + " [" + d + "]")
	}
	e.cause = ErrPreflight
	return e
}

// updateOnly are validation error codes that refuse a change to an existing VM, not its creation.
var updateOnly = map[string]bool{
	"propertychangenotallowed":                        true,
	"osdiskswapnotsupportedforvmsusingdiskencryption": true,
}

func redactMessage(s string) string {
	s = blobio.Redact(s)
	if len(s) > maxMessage {
		s = s[:maxMessage] + "…"
	}
	return s
}

// validationDetails renders the inner errors of a failed validation
// (error.details: RequestDisallowedByPolicy, SkuNotAvailable, …) and
// returns their codes, innermost ones only.
func validationDetails(re *azcore.ResponseError) (string, []string) {
	if re.RawResponse == nil {
		return "", nil
	}
	body, err := runtime.Payload(re.RawResponse)
	if err != nil || len(body) == 0 {
		return "", nil
	}
	var v armresources.DeploymentValidateResult
	if json.Unmarshal(body, &v) != nil || v.Error == nil {
		return "", nil
	}
	var parts, codes []string
	var walk func(es []*armresources.ErrorResponse)
	walk = func(es []*armresources.ErrorResponse) {
		for _, d := range es {
			if d == nil {
				continue
			}
			parts = append(parts, strings.TrimSpace(str(d.Code)+": "+str(d.Message)))
			if len(d.Details) == 0 {
				codes = append(codes, str(d.Code))
			}
			walk(d.Details)
		}
	}
	walk(v.Error.Details)
	return strings.Join(parts, "; "), codes
}

// vmTemplateResource is the VM's PUT body as a template resource: type,
// apiVersion and name added, and every string that ARM would read as a
// template expression ("[…]") escaped to its literal ("[[…]").
func vmTemplateResource(vm *armcompute.VirtualMachine) (map[string]any, error) {
	b, err := json.Marshal(vm)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m = escapeExpressions(m).(map[string]any)
	m["type"] = typeVM
	m["apiVersion"] = vmAPIVersion
	m["name"] = str(vm.Name)
	return m, nil
}

func escapeExpressions(v any) any {
	switch t := v.(type) {
	case string:
		if strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]") {
			return "[" + t
		}
	case map[string]any:
		for k, x := range t {
			t[k] = escapeExpressions(x)
		}
	case []any:
		for i, x := range t {
			t[i] = escapeExpressions(x)
		}
	}
	return v
}

// retryablePut reports whether a failed VM PUT is worth repeating: the NIC
// still held for the deleted VM, throttling, or a service error.
func retryablePut(err error) bool {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	switch strings.ToLower(re.ErrorCode) {
	case "nicreservedforanothervm", "toomanyrequests", "internalservererror", "internalexecutionerror", "serviceunavailable", "retryableerror":
		return true
	}
	return re.StatusCode == 429 || re.StatusCode >= 500
}

// putVM PUTs a VM body and waits for it, retrying what retryablePut allows
// for Options.VMCreateRetry with a doubling delay (5 to 30 poll intervals:
// 10 s to 1 min by default). It returns the number of attempts.
func (c *Client) putVM(ctx context.Context, vms *armcompute.VirtualMachinesClient, rg, name string, body armcompute.VirtualMachine) (int, error) {
	bound := c.opts.VMCreateRetry
	if bound == 0 {
		bound = DefaultVMCreateRetry
	}
	poll := c.pollOptions().Frequency
	delay, maxDelay := 5*poll, 30*poll
	deadline := time.Now().Add(bound)
	for n := 1; ; n++ {
		_, err := started(vms.BeginCreateOrUpdate(ctx, rg, name, body, nil)).wait(ctx, c)
		if err == nil || !retryablePut(err) || ctx.Err() != nil || bound < 0 || time.Now().Add(delay).After(deadline) {
			return n, err
		}
		if sleep(ctx, delay) != nil {
			return n, err
		}
		delay = min(2*delay, maxDelay)
	}
}

// VMRecreateError is the failure of RecreateVM. Before the DELETE
// (Deleted false) the VM is as it was. After it, RecreateVM has tried to
// restore the original VM from the plan's rollbackVm: Restored says whether
// it is back (on its old disks, without extensions); if not, ModelFile is
// the file holding the rollback PUT body for a manual restore.
type VMRecreateError struct {
	VMID    string // the VM's resource ID
	Deleted bool   // the original VM was deleted, and the new VM's PUT failed
	// Uncertain: the DELETE failed, but the VM may be deleted (it was left Failed, or could not be
	// read); State is its provisioningState when last read and ModelFile holds its model.
	Uncertain bool
	State     string // see Uncertain
	Attempts  int    // PUTs of the new VM
	Restored  bool   // the original VM was re-created
	ModelFile string // where the rollback body was saved when the restore failed ("" if it could not be written)
	Err       error  // why the new VM is not there (an *Error)
	Restore   error  // why the restore failed, nil if it did not
	SaveErr   error  // why the model could not be saved
}

// Error says why the new VM is not there and where the original VM stands: unchanged, restored, or
// deleted with its model saved (and where).
func (e *VMRecreateError) Error() string {
	var b strings.Builder
	b.WriteString(e.Err.Error())
	switch {
	case e.Uncertain:
		state := e.State
		if state == "" {
			state = "unknown"
		}
		fmt.Fprintf(&b, " (the VM may be deleted: its state is %s; its model is saved in %s)", state, e.ModelFile)
	case !e.Deleted:
		b.WriteString(" (the VM was not changed)")
	case e.Restored:
		fmt.Fprintf(&b, " (after %d attempt(s)); the original VM was restored on its old disks, without extensions", e.Attempts)
	default:
		fmt.Fprintf(&b, " (after %d attempt(s)); restoring the original VM failed too: %v", e.Attempts, e.Restore)
		if e.ModelFile != "" {
			fmt.Fprintf(&b, "; the VM is deleted, its model is saved in %s", e.ModelFile)
		} else {
			fmt.Fprintf(&b, "; the VM is deleted and its model could not be saved (%v): it is the plan's rollbackVm", e.SaveErr)
		}
	}
	return b.String()
}

// Unwrap returns why the new VM is not there (an *Error).
func (e *VMRecreateError) Unwrap() error { return e.Err }

// Hint is what a person does next.
func (e *VMRecreateError) Hint() string {
	switch {
	case e.Uncertain:
		return fmt.Sprintf("look at the VM (az vm show): if it is gone, restore it by hand with %s; if it is there and Succeeded, run again",
			RestoreCommand(e.VMID, e.ModelFile))
	case !e.Deleted:
		return "nothing was deleted: fix the cause and run again (the converted disks are kept)"
	case e.Restored:
		return "the VM runs on its old ADE disks again, started (Azure starts a VM it creates): deallocate it before converting again (az vm deallocate), " +
			"re-add its extensions (the ADE extension need not come back) and fix the cause"
	case e.ModelFile != "":
		return "restore it by hand: " + RestoreCommand(e.VMID, e.ModelFile)
	}
	return "re-create it from the plan's rollbackVm (luksconv azure convert --dry-run --json prints it)"
}

// saveModel writes the rollback PUT body to luksconv-vm-NAME-HASH-TIME.json in
// Options.VMModelDir (default: the current directory), mode 0600. The body
// holds no secret the service returns (no SAS, key or password; userData
// is kept: the restored VM needs it).
func (c *Client) saveModel(plan *VMPlan) (string, error) {
	b, err := json.MarshalIndent(plan.Rollback, "", "  ")
	if err != nil {
		return "", err
	}
	name := ModelName(plan.VMID, time.Now())
	p := filepath.Join(c.opts.VMModelDir, name)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		os.Remove(p)
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(p)
		return "", err
	}
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	return p, nil
}

var safeName = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// RestoreCommand is the Azure CLI command that re-creates the VM vmID from a rollback model file that
// RecreateVM saved. Its URL is the VM's ID without a host: az rest prefixes it with the Resource
// Manager endpoint of the cloud it is set to, so the command holds in every cloud.
func RestoreCommand(vmID, file string) string {
	return fmt.Sprintf("az rest --method put --url '%s?api-version=%s' --body @%s", vmID, vmAPIVersion, file)
}

// SavedModels lists the rollback model files RecreateVM saved in dir for the VM vmID, oldest first:
// what is left of a re-creation that stopped between the DELETE and the end (a killed process). A
// file's name holds the VM's name and a hash of its resource ID, then the time: VM vm1 of another
// resource group, or VM vm1-2, share a fleet's journal directory without sharing files.
func SavedModels(dir, vmID string) []string {
	prefix := modelPrefix(vmID)
	ents, _ := os.ReadDir(dir) // sorted by name, and the names end in the UTC time: oldest first
	var m []string
	for _, e := range ents {
		if rest, ok := strings.CutPrefix(e.Name(), prefix); ok && e.Type().IsRegular() {
			if _, err := time.Parse(modelTime, rest); err == nil {
				m = append(m, filepath.Join(dir, e.Name()))
			}
		}
	}
	return m
}

// ModelName is the name of the rollback model file of the VM vmID saved at t, as SavedModels finds it.
func ModelName(vmID string, t time.Time) string {
	return modelPrefix(vmID) + t.UTC().Format(modelTime)
}

// modelTime is the end of a model file's name: the UTC time it was saved.
const modelTime = "20060102T150405Z.json"

// modelPrefix is the start of the names of the VM vmID's model files: luksconv-vm-NAME-HASH-.
func modelPrefix(vmID string) string { return "luksconv-vm-" + vmFileStem(vmID) + "-" }

// vmFileStem is NAME-HASH, what names the files RecreateVM keeps for the VM vmID: the name in lower
// case and the hash the first 4 bytes of SHA-256 of the lower-case ID, as Azure's IDs are
// case-insensitive (an inventory's and ARM's spelling may differ).
func vmFileStem(vmID string) string {
	id := strings.ToLower(vmID)
	h := sha256.Sum256([]byte(id))
	return fmt.Sprintf("%s-%x", safeName.ReplaceAllString(path.Base(id), "_"), h[:4])
}
