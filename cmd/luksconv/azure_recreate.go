package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/luksconv/luksconv/azure"
)

// recreateError is the CLI's error for a failed --recreate-vm step. An *azure.VMRecreateError says what
// became of the VM — not changed (the preflight refused), re-created as it was (restored), or deleted
// with its model saved in a file named in the message — and its Hint what to do next; any other error
// is a check that failed before anything was changed.
func recreateError(err error) error {
	var re *azure.VMRecreateError
	var le *azure.LicenseError
	if errors.As(err, &re) || errors.As(err, &le) {
		return err // each says what happened to the VM
	}
	return &hintedError{err, "the VM was not changed; the converted disks are kept"}
}

// printRecreated says that the VM vmID was re-created on the new disks (on names them), then what the
// re-created VM lacks or changed that a person must see to (the plan's warnings: extensions not
// re-created, a new identity principal, Backup protection, …), which otherwise only a dry run or the
// --json report would say.
func printRecreated(out io.Writer, vmID, on string, vp *azure.VMPlan) {
	fmt.Fprintf(out, "re-created VM %s on %s\n", vmID, on)
	if vp == nil {
		return
	}
	for _, w := range vp.Warnings {
		fmt.Fprintf(out, "warning: %s\n", w)
	}
}

// recreatedBefore reports whether, with --recreate-vm, the VM already runs on the new OS disk diskID:
// an earlier run re-created it and ended after the PUT (killed, or its licensing failed), and planning
// it again would refuse the disk the VM runs on.
func (f *azureConvert) recreatedBefore(ctx context.Context, cl *azure.Client, diskID string) (bool, error) {
	if !f.recreate {
		return false, nil
	}
	vmd, err := cl.ReadVMDisks(ctx, f.vm)
	if err != nil {
		return false, err
	}
	if !strings.EqualFold(vmd.Disks[0].DiskID, diskID) {
		return false, nil
	}
	return true, recreatedState(f.vm, vmd.ProvisioningState)
}

// recreatedState refuses to call a VM found on the new disks done while its provisioning state says
// otherwise: the PUT of a run that ended after sending it failed (the run that sent it would have
// restored the old VM) or is still under way. A run that then saw nothing to do would exit 0 on a
// VM that does not run.
func recreatedState(vmID, state string) error {
	switch {
	case state == "" || strings.EqualFold(state, "Succeeded"):
		return nil
	case strings.EqualFold(state, "Failed"):
		return &hintedError{fmt.Errorf("%w: VM %s stands on the new disks an earlier run made, but its provisioning state is Failed", azure.ErrState, vmID),
			"see the VM's activity log and instance view (az vm get-instance-view); az vm redeploy or az vm start usually brings it up; then run the same command again"}
	default:
		return fmt.Errorf("%w: VM %s stands on the new disks an earlier run made and is still %s: run the same command again once that ends", azure.ErrState, vmID, state)
	}
}

// printRecreatedBefore reports a run recreatedBefore found done, after finishRerun.
func (f *azureConvert) printRecreatedBefore(ctx context.Context, cl *azure.Client, out io.Writer, rep *azureReport, diskID string) (err error) {
	rep.AlreadyConverted = true
	if rep.LicensingSet, rep.StaleModels, err = f.finishRerun(ctx, cl); err != nil {
		return err
	}
	if f.asJSON {
		return writeJSON(out, rep)
	}
	f.printRerun(out, fmt.Sprintf("VM %s already runs on %s, the new OS disk an earlier run made", f.vm, diskID), rep.LicensingSet, rep.StaleModels)
	return nil
}

// finishRerun does what is left for a run that finds the VM converted by an earlier one: the RHEL
// licensing that run left pending (finishLicensing), then its stale rollback models (dropModels).
func (f *azureConvert) finishRerun(ctx context.Context, cl *azure.Client) (licensing string, stale []string, err error) {
	if licensing, err = f.finishLicensing(ctx, cl); err != nil {
		return "", nil, err
	}
	return licensing, f.dropModels(), nil
}

// printRerun says what finishRerun did, after found, where the VM stands: "nothing to do" when it set
// no licensing.
func (f *azureConvert) printRerun(out io.Writer, found, licensing string, stale []string) {
	if licensing == "" {
		fmt.Fprintf(out, "%s: nothing to do\n", found)
	} else {
		verb := "set"
		if f.dryRun {
			verb = "would set"
		}
		fmt.Fprintf(out, "%s\n%s licenseType %s and the AHBForRHEL extension on VM %s, which an earlier run re-created without them\n", found, verb, licensing, f.vm)
	}
	f.printStaleModels(out, stale)
}

// finishLicensing sets the RHEL licensing an earlier run's re-creation of the VM left unset (it
// ended after the PUT: killed, or the extension refused, exit 11), as the run saved it in
// --journal-dir; a dry run only reads it. It returns the licenseType ("" when none was pending).
func (f *azureConvert) finishLicensing(ctx context.Context, cl *azure.Client) (string, error) {
	if f.dryRun {
		return azure.PendingLicense(f.journalDir, f.vm), nil
	}
	debugAzure("finish licensing", f.vm)
	return cl.FinishLicensing(ctx, f.vm)
}

// dropModels removes the rollback models of the VM that an earlier run saved in --journal-dir and
// left (it ended between the DELETE and its end: killed, or unsure whether the new VM existed), once
// the VM is found on its new disks, as a run that sees its re-creation through removes its own: they
// would bring back the ADE VM, and a later run's restore hint for a VM gone would offer them. A dry
// run only lists them.
func (f *azureConvert) dropModels() []string {
	var stale []string
	for _, m := range azure.SavedModels(f.journalDir, f.vm) {
		if f.dryRun || os.Remove(m) == nil {
			stale = append(stale, m)
		}
	}
	return stale
}

// printStaleModels says what dropModels did.
func (f *azureConvert) printStaleModels(out io.Writer, stale []string) {
	verb := "removed"
	if f.dryRun {
		verb = "would remove"
	}
	for _, m := range stale {
		fmt.Fprintf(out, "%s %s, the rollback model of the VM an earlier run saved: the VM stands on its new disks\n", verb, m)
	}
}
