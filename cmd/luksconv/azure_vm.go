package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/luksconv/luksconv/azure"
	"github.com/luksconv/luksconv/internal/recovered"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/spf13/cobra"
)

// A whole VM in Azure (`azure convert --vm VM` without a source): every ADE-stamped disk of the VM
// is snapshotted, unlocked with its own Key Vault secret, planned together (luksconv.NewVMPlan: the OS
// disk's edits use what the data disks hold), uploaded in parallel into new DES disks, each with
// its own journal, and with --recreate-vm the VM is re-created with every new disk at its LUN.

// maxDiskName is Azure's limit on a managed disk's name.
const maxDiskName = 80

// azureVMDisk is one disk of the VM in a whole-VM run, and its report.
type azureVMDisk struct {
	LUN    int    `json:"lun"` // luksconv.OSDisk (-1) for the OS disk
	Source string `json:"source"`
	// Convert is false for a data disk without ADE settings: it is re-attached as it is. On a dual-pass
	// VM such a disk is Optional, and Convert turns false when the plan skips it.
	Convert bool `json:"convert"`
	// Optional: a data disk of a dual-pass VM without ADE settings (dual pass stamps only the VM), read
	// with the VM's key and converted only if the OS disk names it or it holds a LUKS volume.
	Optional        bool                `json:"optional,omitempty"`
	Snapshot        string              `json:"snapshot,omitempty"`
	SnapshotCreated bool                `json:"snapshot_created,omitempty"`
	KeySource       *azure.KeySource    `json:"key_source,omitempty"`
	DiskSpec        *azure.DiskSpec     `json:"disk_spec,omitempty"`
	Target          *azure.UploadTarget `json:"target,omitempty"`
	// AlreadyUploaded: an earlier run of this conversion finished this disk; it is not written again.
	AlreadyUploaded bool             `json:"already_uploaded,omitempty"`
	Result          *luksconv.Result `json:"result,omitempty"`
	Verified        bool             `json:"verified,omitempty"`
	Error           string           `json:"error,omitempty"`
	// Stage is the disk's round in a --stage or --cutover run.
	Stage *stageRound `json:"stage,omitempty"`

	disk    azure.VMDisk
	readID  string // what is read: the snapshot, or the disk itself in a dry run
	target  string // the new disk's name
	diskID  string // the new disk's ID
	pass    []byte
	base64  bool
	src     *luksconv.Source
	plan    *luksconv.Plan
	journal string
	// noTarget is why an Optional disk's new disk cannot be made (its name too long, checkTarget, a
	// disk of that name not made by luksconv): the error a disk to convert fails the run with. It
	// matters only if the plan converts the disk, which is known only once the disk is read, so planVM
	// fails then, and a disk the plan skips does not fail the run.
	noTarget error
}

// azureVMReport is the final report of a whole-VM run; it holds no secret and no SAS URL.
type azureVMReport struct {
	VM          string           `json:"vm"`
	DryRun      bool             `json:"dry_run"`
	Disks       []*azureVMDisk   `json:"disks"`
	Plan        *luksconv.VMPlan `json:"plan"`
	VMPlan      *azure.VMPlan    `json:"vm_plan,omitempty"`
	VMRecreated bool             `json:"vm_recreated,omitempty"`
	Stage       *vmStageReport   `json:"stage,omitempty"` // a --stage or --cutover run
	Warnings    []string         `json:"warnings,omitempty"`
	// AlreadyConverted: the VM runs on disks an earlier run converted; nothing was done but
	// LicensingSet.
	AlreadyConverted bool `json:"already_converted,omitempty"`
	// LicensingSet: as azureReport's.
	LicensingSet string `json:"licensing_set,omitempty"`
	// StaleModels: as azureReport's.
	StaleModels []string `json:"stale_models,omitempty"`

	provisioning string // the VM's provisioning state as vmDisks read it
}

// wholeVM reports whether the flags ask for a whole-VM run: --vm without a source.
func (f *azureConvert) wholeVM() bool {
	return f.vm != "" && f.src.snapshot == "" && f.src.sourceDisk == ""
}

func (f *azureConvert) checkVM() error {
	switch {
	case f.des == "" && !f.eah:
		return fmt.Errorf("%w: --des DES_ID is needed (the Disk Encryption Set of the new disks), or --encryption-at-host", errUsage)
	case f.eah && !f.recreate:
		return fmt.Errorf("%w: --encryption-at-host is a setting of the VM: it goes with --recreate-vm", errUsage)
	case f.license != "" && f.license != string(azure.LicensePAYG) && f.license != string(azure.LicenseBYOS):
		return fmt.Errorf("%w: --license %q: want payg or byos", errUsage, f.license)
	case f.target != "":
		return fmt.Errorf("%w: --target-disk names one disk; a whole VM's new disks are named <disk name>%s (--target-suffix)", errUsage, f.suffix)
	case f.keyFile != "":
		return fmt.Errorf("%w: --key-file is for one disk; a whole VM's keys are read from each disk's Key Vault secret", errUsage)
	case f.journal != "":
		return fmt.Errorf("%w: --journal is for one disk; a whole VM's journals are .luksconv-<plan id>.journal in --journal-dir", errUsage)
	case f.suffix == "" || strings.ContainsAny(f.suffix, "/?#%\\ "):
		return fmt.Errorf("%w: --target-suffix %q: want a non-empty suffix of disk-name characters", errUsage, f.suffix)
	case f.pf.partition != 0 || f.pf.header != "":
		return fmt.Errorf("%w: --partition and --header name one disk's volume; a whole VM's volumes are found on its OS disk", errUsage)
	case f.parallel < 1:
		return fmt.Errorf("%w: --parallel must be at least 1", errUsage)
	case f.recreate && f.allowRunning:
		return fmt.Errorf("%w: --allow-running cannot go with --recreate-vm: the VM's writes after the snapshots would be lost", errUsage)
	}
	return f.checkSubscription()
}

func (f *azureConvert) runVM(c *cobra.Command) (err error) {
	ctx := c.Context()
	// The disks' goroutines write to it too.
	stderr := &lockedWriter{w: c.ErrOrStderr()}
	if err := f.checkVM(); err != nil {
		return err
	}
	cl, err := f.src.client(f.vm)
	if err != nil {
		return err
	}
	rep := &azureVMReport{VM: f.vm, DryRun: f.dryRun}

	disks, err := f.vmDisks(ctx, cl, rep)
	if err != nil {
		return err
	}
	defer func() {
		for _, d := range disks {
			clear(d.pass)
		}
	}()
	if done, err := f.convertedVM(ctx, cl, rep); err != nil {
		return err
	} else if done {
		return f.printConverted(ctx, cl, c.OutOrStdout(), rep)
	}

	if !f.dryRun {
		if err := f.checkQuiet(ctx, cl, disks[0].disk.DiskID, stderr); err != nil {
			return err
		}
	}
	if f.recreate {
		if err := cl.CheckLicensing(ctx, f.vm, azure.Licensing(f.license)); err != nil {
			return err
		}
	}

	// Every key first: they need no grant, and a missing secret fails before anything is created.
	if err := f.vmKeys(ctx, cl, disks, rep); err != nil {
		return err
	}

	if !f.dryRun {
		if err := f.checkVMTargets(ctx, cl, disks); err != nil {
			return err
		}
	}
	all := disks // planVM may drop disks whose snapshots were taken
	defer func() {
		if err == nil || f.dryRun {
			return
		}
		var snaps, targets []string
		for _, d := range all {
			if d.SnapshotCreated {
				snaps = append(snaps, d.Snapshot)
			}
			targets = append(targets, d.diskID)
		}
		keptSnapshots(ctx, cl, stderr, snaps, targets)
	}()
	if err := f.vmSnapshots(ctx, cl, disks, stderr); err != nil {
		return err
	}
	if err := f.vmSnapshotKeys(ctx, cl, disks, stderr); err != nil {
		return err
	}
	for _, d := range disks {
		src, done, err := grantRead(ctx, cl, d.readID, f.workers, stderr)
		if err != nil {
			if f.dryRun {
				err = &hintedError{err, "a dry run reads the VM's disks directly, which Azure allows only while the VM is deallocated"}
			}
			return fmt.Errorf("%s (%s): %w", diskName(d.LUN), d.disk.Name, err)
		}
		// Every source SAS is revoked on every path, also after Ctrl-C.
		defer func() { err = errors.Join(err, done()) }()
		d.src = src
	}

	vp, kept, err := f.planVM(ctx, disks, rep)
	if err != nil {
		return err
	}
	disks = kept
	defer vp.Close()
	rep.Plan = vp
	if !f.quiet || f.dryRun {
		printVMPlan(stderr, vp)
	} else {
		printVMWarnings(stderr, vp)
	}

	newData := map[int]string{}
	for _, d := range disks {
		if err := f.vmDiskSpec(ctx, cl, d, rep); err != nil {
			return err
		}
		d.journal = f.defaultJournal(d.plan)
		if d.LUN != luksconv.OSDisk {
			newData[d.LUN] = d.diskID
		}
	}

	if f.recreate {
		debugAzure("plan VM re-creation", f.vm, "new_os_disk", disks[0].diskID)
		rp, err := cl.PlanRecreateVMWith(ctx, f.vm, disks[0].diskID, newData, azure.RecreateOptions{EncryptionAtHost: f.eah, License: azure.Licensing(f.license)})
		if err != nil {
			return err
		}
		rep.VMPlan = rp
	}

	if f.dryRun {
		out := c.OutOrStdout()
		if f.asJSON {
			return writeJSON(out, rep)
		}
		for _, d := range disks {
			fmt.Fprintf(out, "%s: would create managed disk %s (CreateOption=%s, %d bytes + 512)\n", diskName(d.LUN), d.diskID, d.DiskSpec.CreateOption(), d.DiskSpec.SizeBytes)
		}
		if rep.VMPlan != nil {
			fmt.Fprintf(out, "Would re-create the VM:\n%s\n", rep.VMPlan)
		}
		for _, w := range rep.Warnings {
			fmt.Fprintf(out, "warning: %s\n", w)
		}
		return nil
	}

	if err := f.uploadVM(ctx, cl, disks, stderr); err != nil {
		return err
	}

	if rep.VMPlan != nil {
		debugAzure("re-create VM", f.vm)
		if err := cl.RecreateVM(ctx, rep.VMPlan); err != nil {
			return recreateError(err)
		}
		rep.VMRecreated = true
	}

	out := c.OutOrStdout()
	if f.asJSON {
		return writeJSON(out, rep)
	}
	for _, d := range disks {
		if d.AlreadyUploaded {
			fmt.Fprintf(out, "%s: %s -> %s: uploaded by an earlier run\n", diskName(d.LUN), d.Source, d.diskID)
			continue
		}
		fmt.Fprintf(out, "%s: %s -> %s: decrypted %s, copied %s, wrote %s in %s\n", diskName(d.LUN), d.Source, d.diskID,
			human(d.Result.BytesDecrypted), human(d.Result.BytesCopied), human(d.Result.BytesWritten), d.Result.Duration.Round(time.Millisecond))
	}
	if rep.VMRecreated {
		printRecreated(out, f.vm, "the new disks", rep.VMPlan)
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(out, "warning: %s\n", w)
	}
	return nil
}

// vmDisks reads the VM's disks into rep.Disks and returns those to convert: the OS disk first, then
// every data disk carrying ADE settings, each with the name and ID of its new disk. A dual-pass VM
// stamps its settings only on the VM model, so there every data disk without them is an Optional
// candidate: planVM converts it if the OS disk names it or it holds a LUKS volume.
func (f *azureConvert) vmDisks(ctx context.Context, cl *azure.Client, rep *azureVMReport) ([]*azureVMDisk, error) {
	debugAzure("read VM disks", f.vm)
	vmd, err := cl.ReadVMDisks(ctx, f.vm)
	if err != nil {
		return nil, err
	}
	rep.provisioning = vmd.ProvisioningState
	var disks []*azureVMDisk // the disks to convert: the OS disk first
	for _, d := range vmd.Disks {
		optional := vmd.DualPass && !d.ADE && d.LUN != azure.OSDiskLUN
		vd := &azureVMDisk{LUN: d.LUN, Source: d.DiskID, disk: d, Convert: d.ADE || d.LUN == azure.OSDiskLUN || optional, Optional: optional}
		if d.LUN == azure.OSDiskLUN {
			vd.LUN = luksconv.OSDisk
		}
		rep.Disks = append(rep.Disks, vd)
		if !vd.Convert {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("LUN %d (%s) carries no ADE settings: it is not converted and stays attached as it is", d.LUN, d.Name))
			continue
		}
		vd.target = d.Name + f.suffix
		if len(vd.target) > maxDiskName {
			err := fmt.Errorf("%w: %s: new disk name %q is longer than %d characters: choose a shorter --target-suffix", errUsage, diskName(vd.LUN), vd.target, maxDiskName)
			if !vd.Optional {
				return nil, err
			}
			vd.noTarget = err // planVM fails if it converts the disk
		}
		rg := f.rg
		if rg == "" {
			rg = rgOf(d.DiskID)
		}
		vd.diskID = (&azure.DiskSpec{ResourceGroup: rg, Name: vd.target}).ID(f.subscriptionOf(d.DiskID))
		disks = append(disks, vd)
	}
	return disks, nil
}

// convertedVM reports whether the VM runs on the disks of a finished whole-VM conversion: none of its
// disks (rep.Disks, from vmDisks) carries ADE settings, and its OS disk bears luksconv's plan tag. A
// rerun then has nothing to do (a fleet's Job applied again, a task ended after the re-creation),
// where the OS disk's missing ADE key would fail it with exit 8.
func (f *azureConvert) convertedVM(ctx context.Context, cl *azure.Client, rep *azureVMReport) (bool, error) {
	if len(rep.Disks) == 0 || rep.Disks[0].LUN != luksconv.OSDisk {
		return false, nil
	}
	for _, d := range rep.Disks {
		if d.disk.ADE {
			return false, nil
		}
	}
	st, err := cl.DiskStatus(ctx, rep.Disks[0].disk.DiskID)
	if err != nil || st.Tags[planTag] == "" {
		return false, err
	}
	return true, recreatedState(f.vm, rep.provisioning)
}

// printConverted reports a VM convertedVM found converted, after finishRerun.
func (f *azureConvert) printConverted(ctx context.Context, cl *azure.Client, out io.Writer, rep *azureVMReport) (err error) {
	rep.AlreadyConverted = true
	if rep.LicensingSet, rep.StaleModels, err = f.finishRerun(ctx, cl); err != nil {
		return err
	}
	if f.asJSON {
		return writeJSON(out, rep)
	}
	f.printRerun(out, fmt.Sprintf("VM %s runs on disks luksconv converted (OS disk %s)", f.vm, rep.Disks[0].Source), rep.LicensingSet, rep.StaleModels)
	return nil
}

// vmDiskSpec sets d.DiskSpec: the new disk's settings, read from what d is read from, with the flags
// applied, sized and tagged for d's plan (and with the snapshot the run took, when it took one).
func (f *azureConvert) vmDiskSpec(ctx context.Context, cl *azure.Client, d *azureVMDisk, rep *azureVMReport) error {
	debugAzure("read source and disk encryption set", d.readID, "des", f.des, "target", d.target)
	spec, err := cl.DiskSpecFrom(ctx, d.readID, f.rg, d.target, f.des)
	if err != nil {
		return fmt.Errorf("%s: %w", diskName(d.LUN), err)
	}
	f.platformKey(spec)
	if err := f.applyAccess(spec); err != nil {
		return err
	}
	if d.plan.OutputSize%(1<<20) != 0 {
		return fmt.Errorf("%s: plan output size %d is not a whole MiB", diskName(d.LUN), d.plan.OutputSize)
	}
	spec.SizeBytes = d.plan.OutputSize
	if err := spec.Check(); err != nil {
		return fmt.Errorf("%s: %w", diskName(d.LUN), err)
	}
	if note, err := cl.SecureUploadNote(spec); err != nil {
		return fmt.Errorf("%s: %w", diskName(d.LUN), err)
	} else if note != "" {
		rep.Warnings = append(rep.Warnings, diskName(d.LUN)+": "+note)
	}
	spec.AccessDuration = f.writeAccess
	if spec.AccessDuration == 0 {
		spec.AccessDuration = azure.UploadAccessFor(d.plan.OutputSize)
	}
	spec.Tags = maps.Clone(spec.Tags)
	if spec.Tags == nil {
		spec.Tags = map[string]string{}
	}
	spec.Tags[planTag] = d.plan.ID()
	if d.Snapshot != "" {
		spec.Tags[sourceTag] = path.Base(d.Snapshot)
	}
	d.DiskSpec = spec
	return nil
}

// checkVMTargets runs checkTarget for each disk to convert, before any of them is snapshotted. An
// Optional disk's failure is recorded (noTarget) for planVM: the plan may skip the disk.
func (f *azureConvert) checkVMTargets(ctx context.Context, cl *azure.Client, disks []*azureVMDisk) error {
	for _, d := range disks {
		if d.noTarget != nil {
			continue // its new disk is refused already
		}
		if err := f.checkTarget(ctx, cl, d.disk.DiskID, d.target); err != nil {
			err = fmt.Errorf("%s (%s): %w", diskName(d.LUN), d.disk.Name, err)
			if !d.Optional {
				return err
			}
			d.noTarget = err
		}
	}
	return nil
}

// planVM plans the disks together (luksconv.NewVMPlan), from their sources and keys, sets each
// disk's plan and returns the disks to convert. An optional disk the plan skips (VMPlan.Skipped) is
// then like a data disk without ADE settings: not converted, it stays attached as it is; its key is
// cleared, and the snapshot the run took of it is kept, as every source snapshot is (a rerun of the
// conversion reads the run's snapshots again). On an error every disk's key is cleared.
func (f *azureConvert) planVM(ctx context.Context, disks []*azureVMDisk, rep *azureVMReport) (_ *luksconv.VMPlan, _ []*azureVMDisk, err error) {
	defer func() {
		if err != nil {
			for _, d := range disks {
				clear(d.pass)
			}
		}
	}()
	vds := make([]luksconv.VMDisk, len(disks))
	for i, d := range disks {
		opts := f.pf.options(luksconv.FormatVHD)
		opts.Passphrase, opts.Base64Fallback = d.pass, d.base64
		vds[i] = luksconv.VMDisk{LUN: d.LUN, Source: d.src, Options: opts, Optional: d.Optional}
	}
	vp, err := luksconv.NewVMPlan(ctx, vds)
	if err != nil {
		return nil, nil, err
	}
	kept := disks[:0:0]
	for _, d := range disks {
		d.plan = vp.Disk(d.LUN)
		if d.plan != nil && d.noTarget != nil {
			// Converted after all: the check its new disk failed earlier refuses the run now.
			vp.Close()
			return nil, nil, d.noTarget
		}
		if d.plan != nil {
			kept = append(kept, d)
			continue
		}
		if !d.Optional || !slices.Contains(vp.Skipped, d.LUN) {
			vp.Close()
			return nil, nil, fmt.Errorf("%w: %s has no plan", azure.ErrState, diskName(d.LUN))
		}
		d.Convert = false
		clear(d.pass)
		w := fmt.Sprintf("LUN %d (%s) carries no ADE settings (dual pass), no ADE line on the OS disk names it and it holds no LUKS volume: it is not converted and stays attached as it is", d.LUN, d.disk.Name)
		if d.SnapshotCreated {
			w += fmt.Sprintf("; its snapshot %s is kept with the others", d.Snapshot)
		}
		rep.Warnings = append(rep.Warnings, w)
	}
	return vp, kept, nil
}

// vmKeys recovers every disk's passphrase. The OS disk's comes first: an optional disk (dual pass)
// has no secret of its own, its volumes are under the VM's one passphrase, the OS disk's.
func (f *azureConvert) vmKeys(ctx context.Context, cl *azure.Client, disks []*azureVMDisk, rep *azureVMReport) error {
	for _, d := range disks {
		if d.Optional {
			// A copy: each disk's passphrase is cleared on its own.
			osd := disks[0]
			d.pass, d.base64, d.KeySource = bytes.Clone(osd.pass), osd.base64, osd.KeySource
			continue
		}
		if err := f.vmKey(ctx, cl, d, rep); err != nil {
			return fmt.Errorf("%s (%s): %w", diskName(d.LUN), d.disk.Name, err)
		}
	}
	return nil
}

// vmSnapshotKeys recovers the passphrase of each disk's snapshot (d.readID) whose settings name another
// key than its disk's (snapshotKey); an optional disk's is the OS disk's again.
func (f *azureConvert) vmSnapshotKeys(ctx context.Context, cl *azure.Client, disks []*azureVMDisk, stderr io.Writer) error {
	for _, d := range disks {
		if d.Optional {
			if osd := disks[0]; !bytes.Equal(d.pass, osd.pass) {
				clear(d.pass)
				d.pass, d.base64, d.KeySource = bytes.Clone(osd.pass), osd.base64, osd.KeySource
			}
			continue
		}
		pass, ks, err := f.snapshotPass(ctx, cl, d.readID, d.KeySource, diskName(d.LUN)+": snapshot ", stderr)
		if err != nil {
			return fmt.Errorf("%s (%s): %w", diskName(d.LUN), d.disk.Name, err)
		}
		if ks != nil {
			clear(d.pass)
			d.pass, d.base64, d.KeySource = pass, ks.KEKURL != "", ks
		}
	}
	return nil
}

// vmKey recovers the disk's passphrase from its own Key Vault secret (the OS disk's may be on the VM
// model: dual pass).
func (f *azureConvert) vmKey(ctx context.Context, cl *azure.Client, d *azureVMDisk, rep *azureVMReport) error {
	debugAzure("read ADE key references", d.disk.DiskID)
	ks, err := cl.KeySources(ctx, d.disk.DiskID)
	if err != nil {
		return err
	}
	if len(ks) > 1 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s: %d ADE key references found; using the first (%s)", diskName(d.LUN), len(ks), ks[0].SecretURL))
	}
	d.KeySource = &ks[0]
	debugAzure("recover key from Key Vault", ks[0].ResourceID, "secret", ks[0].SecretURL, "kek", ks[0].KEKURL, "from", ks[0].From)
	pass, err := cl.RecoverKey(ctx, &ks[0])
	if err != nil {
		return err
	}
	d.pass, d.base64 = pass, ks[0].KEKURL != ""
	return nil
}

// vmSnapshots chooses what the disks are read from: in a dry run the disks themselves; else one
// snapshot each, all named srcSnapshotName(<new disk>, <time of the run>). A rerun must read the very
// snapshots the interrupted run read — the disks it finished were made from them, and a VM's disks
// belong to one moment — so when any new disk of this conversion exists, its tag names the run's
// snapshot and every disk reads its snapshot of that run. A new disk of that name that is not this
// conversion's is refused before anything is created.
func (f *azureConvert) vmSnapshots(ctx context.Context, cl *azure.Client, disks []*azureVMDisk, stderr io.Writer) error {
	if f.dryRun {
		for _, d := range disks {
			d.readID = d.disk.DiskID
		}
		return nil
	}
	stamp := ""
	for _, d := range disks {
		if d.noTarget != nil {
			// An Optional disk whose new disk is refused already (a name too long may not even be
			// looked up): planVM fails if it converts the disk.
			continue
		}
		st, err := cl.DiskStatus(ctx, d.diskID)
		switch {
		case errors.Is(err, azure.ErrNotFound):
			continue
		case err != nil:
			return fmt.Errorf("%s: %w", diskName(d.LUN), err)
		case st.Tags[planTag] == "":
			err := &hintedError{fmt.Errorf("%s: %w: new disk %s exists and was not made by luksconv", diskName(d.LUN), azure.ErrExists, d.diskID),
				"choose another --target-suffix, or delete the disk (luksconv never deletes disks)"}
			if !d.Optional {
				return err
			}
			// The disk is still read: planVM fails if it converts it, and a skipped disk needs no new disk.
			d.noTarget = err
			continue
		}
		name := st.Tags[sourceTag]
		i := strings.LastIndex(name, snapshotInfix)
		if i < 0 || name != srcSnapshotName(d.target, name[i+len(snapshotInfix):]) || strings.ContainsAny(name, "/?#") {
			return &hintedError{fmt.Errorf("%s: %w: new disk %s names no snapshot of this conversion (tag %s=%q)", diskName(d.LUN), azure.ErrState, d.diskID, sourceTag, name),
				"delete the new disks of the VM (luksconv never deletes disks) to start over"}
		}
		s := name[i+len(snapshotInfix):]
		if stamp != "" && s != stamp {
			return &hintedError{fmt.Errorf("%w: the VM's new disks were made from snapshots of different runs (%s and %s)", azure.ErrState, stamp, s),
				"delete the new disks of the VM (luksconv never deletes disks) to start over"}
		}
		stamp = s
	}
	resume := stamp != ""
	if !resume {
		stamp = fmt.Sprint(time.Now().Unix())
	}
	for _, d := range disks {
		rid, err := arm.ParseResourceID(d.disk.DiskID)
		if err != nil {
			return fmt.Errorf("%s: %w", diskName(d.LUN), err)
		}
		name := srcSnapshotName(d.target, stamp)
		snap := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/snapshots/%s", rid.SubscriptionID, rid.ResourceGroupName, name)
		if resume {
			if err := cl.CheckSnapshotCurrent(ctx, snap, d.disk.DiskID); err != nil {
				return &hintedError{fmt.Errorf("%s: the interrupted run's snapshot cannot be read again: %w", diskName(d.LUN), err),
					"a VM's disks must come from one moment: delete the new disks of the VM (luksconv never deletes disks) to start over"}
			}
			fmt.Fprintf(stderr, "%s: reading snapshot %s again, as the interrupted run did\n", diskName(d.LUN), snap)
			d.readID, d.Snapshot = snap, snap
			continue
		}
		debugAzure("snapshot disk", d.disk.DiskID, "snapshot_name", name)
		// One cut off by Ctrl-C that Azure made all the same comes back with the error.
		id, err := cl.SnapshotDisk(ctx, d.disk.DiskID, name, nil)
		if id != "" {
			d.readID, d.Snapshot, d.SnapshotCreated = id, id, true
		}
		if err != nil {
			return fmt.Errorf("%s (%s): %w", diskName(d.LUN), d.disk.Name, err)
		}
		if !f.quiet {
			fmt.Fprintf(stderr, "%s: snapshot %s (kept; delete it when the new disk is verified)\n", diskName(d.LUN), id)
		}
	}
	return nil
}

// snapshotInfix joins a new disk's name and the run's time in the name of its source's snapshot.
const snapshotInfix = "-luksconv-src-"

// srcSnapshotName names the snapshot a run takes of the disk converted into the new disk target:
// <target>-luksconv-src-<stamp>, the target's name cut so that the whole fits Azure's 80 characters.
func srcSnapshotName(target, stamp string) string {
	suffix := snapshotInfix + stamp
	return target[:max(0, min(len(target), maxDiskName-len(suffix)))] + suffix
}

// uploadVM uploads the disks, --parallel at a time, with one progress display. A disk that fails does
// not stop the others (each keeps its journal); the error then names every failed disk and what to
// rerun. Ctrl-C stops them all.
func (f *azureConvert) uploadVM(ctx context.Context, cl *azure.Client, disks []*azureVMDisk, stderr io.Writer) error {
	plans := make([]*luksconv.Plan, len(disks))
	for i, d := range disks {
		plans[i] = d.plan
	}
	return f.eachDisk(ctx, disks, plans, func(ctx context.Context, d *azureVMDisk, progress func(luksconv.Progress)) error {
		return f.uploadVMDisk(ctx, cl, d, progress, stderr)
	}, "the VM is untouched; run the same command again: finished disks are kept, unfinished uploads resume from their journals", stderr)
}

// eachDisk runs run for every disk, --parallel at a time (the OS disk first, then by LUN), with one
// progress display over plans (what each disk's run executes). A disk that fails does not stop the
// others; the error names every failed disk, and hint says what to do. Ctrl-C stops them all.
func (f *azureConvert) eachDisk(ctx context.Context, disks []*azureVMDisk, plans []*luksconv.Plan,
	run func(ctx context.Context, d *azureVMDisk, progress func(luksconv.Progress)) error, hint string, stderr io.Writer) error {
	jobs := make([]vmJob, len(disks))
	for i, d := range disks {
		jobs[i] = vmJob{lun: d.LUN, plan: plans[i], src: d.src}
	}
	agg := newAggregate(stderr, jobs, f.quiet)
	next := make(chan int)
	go func() {
		defer close(next)
		for i := range disks {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	var errs []error
	for range min(f.parallel, len(disks)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				d := disks[i]
				if ctx.Err() != nil {
					return
				}
				// A panic fails this disk like an error: it would end the process, the VM's clean-up
				// (grants revoked, journals kept) undone, with Go's exit code 2.
				err := recovered.Call(func() error { return run(ctx, d, func(p luksconv.Progress) { agg.update(i, p) }) })
				if err != nil {
					d.Error = err.Error()
					mu.Lock()
					failed = append(failed, fmt.Sprintf("%s (%s)", diskName(d.LUN), d.diskID))
					errs = append(errs, fmt.Errorf("%s: %w", diskName(d.LUN), err))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	agg.finish()
	if ctx.Err() != nil && len(errs) == 0 {
		errs = append(errs, context.Cause(ctx))
	}
	if len(errs) == 0 {
		return nil
	}
	if len(failed) > 0 {
		hint = fmt.Sprintf("not finished: %s. %s", strings.Join(failed, ", "), hint)
	}
	return &hintedError{errors.Join(errs...), hint}
}

// uploadVMDisk uploads one disk of the VM, or skips it when an earlier run finished it, and verifies
// it with --verify.
func (f *azureConvert) uploadVMDisk(ctx context.Context, cl *azure.Client, d *azureVMDisk, progress func(luksconv.Progress), stderr io.Writer) error {
	tgt, res, err := f.upload(ctx, cl, uploadJob{plan: d.plan, src: d.src, spec: d.DiskSpec, diskID: d.diskID, journal: d.journal,
		lun: d.LUN, progress: debugProgress(progress)}, stderr)
	d.Target, d.Result = tgt, res
	if err != nil {
		return err
	}
	if res == nil {
		d.AlreadyUploaded = true
		total := d.plan.Totals.Copy + d.plan.Totals.Decrypt
		progress(luksconv.Progress{Done: total, Total: total, Final: true})
	}
	if f.verify {
		if err := f.verifyDisk(ctx, cl, d.plan, d.src, d.diskID, stderr); err != nil {
			return err
		}
		d.Verified = true
	}
	return nil
}

// lockedWriter serialises writes from the disks' goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// rgOf is the resource group in a resource ID.
func rgOf(id string) string {
	if rid, err := arm.ParseResourceID(id); err == nil {
		return rid.ResourceGroupName
	}
	return ""
}
