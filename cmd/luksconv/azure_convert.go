package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/luksconv/luksconv/azure"
	"github.com/luksconv/luksconv/blobdisk"
	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/internal/recovered"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/spf13/cobra"
)

// azureConvert holds the flags of `azure convert`.
type azureConvert struct {
	src     azureSource
	pf      planFlags
	keyFile string

	des, target, rg  string
	dryRun, recreate bool
	allowRunning     bool
	eah              bool   // --encryption-at-host
	license          string // --license
	dataAuth         string // --data-access-auth-mode
	netPolicy        string // --network-access-policy
	diskAccess       string // --disk-access
	sku              string // --sku
	vm               string
	suffix           string
	parallel         int
	workers          int
	journal          string
	journalDir       string // --journal-dir: where the default journals go (shared storage for a fleet engine)
	inventory, index string // --inventory F --index N: the VM is the inventory's N-th convertible one (azure fleet)
	writeAccess      time.Duration
	verify           bool
	asJSON, quiet    bool
	stage, cutover   bool // --stage, --cutover: a delta cutover in rounds (azure_stage.go)
	deallocate       bool // --deallocate: with --cutover, deallocate a running VM first
}

// The tags on a new disk: the ID of the plan that fills it (Plan.ID), and with --source-disk the name of
// the snapshot luksconv took (in the source disk's resource group), so that a rerun reads that snapshot
// rather than taking another. Names, not resource IDs: a tag value holds at most 256 characters.
const (
	planTag   = "luksconv-plan"
	sourceTag = "luksconv-source"
)

// azureReport is the final report of `azure convert`; it holds no secret and no SAS URL.
type azureReport struct {
	Source          string              `json:"source"`
	SnapshotCreated string              `json:"snapshot_created,omitempty"`
	KeySource       *azure.KeySource    `json:"key_source,omitempty"`
	DryRun          bool                `json:"dry_run"`
	DiskSpec        *azure.DiskSpec     `json:"disk_spec"`
	Target          *azure.UploadTarget `json:"target,omitempty"`
	Plan            *luksconv.Plan      `json:"plan"`
	Result          *luksconv.Result    `json:"result,omitempty"`
	// AlreadyUploaded: an earlier run of this conversion finished the new disk; it was not written again.
	AlreadyUploaded bool          `json:"already_uploaded,omitempty"`
	VMPlan          *azure.VMPlan `json:"vm_plan,omitempty"`
	Verified        bool          `json:"verified,omitempty"`
	VMRecreated     bool          `json:"vm_recreated,omitempty"`
	// Stage is the round a --stage or --cutover run did.
	Stage    *stageReport `json:"stage,omitempty"`
	Warnings []string     `json:"warnings,omitempty"`
	// AlreadyConverted: with --recreate-vm, the VM runs on the new OS disk (an earlier run re-created
	// it); nothing was done but LicensingSet.
	AlreadyConverted bool `json:"already_converted,omitempty"`
	// LicensingSet: with AlreadyConverted, the licenseType (and the AHBForRHEL extension) an earlier
	// run's re-creation left unset (exit 11, or killed after the VM's PUT) and this run set (with
	// --dry-run: would set).
	LicensingSet string `json:"licensing_set,omitempty"`
	// StaleModels: with AlreadyConverted, the rollback models of the VM an earlier run saved in
	// --journal-dir, removed (with --dry-run: to be removed).
	StaleModels []string `json:"stale_models,omitempty"`
}

func newAzureConvertCmd() *cobra.Command {
	var f azureConvert
	c := &cobra.Command{
		Use: "convert (--snapshot ID | --source-disk ID) --des DES_ID --target-disk NAME [--resource-group RG] " +
			"[--dry-run] [--recreate-vm --vm VM_ID] [--stage | --cutover [--deallocate]]\n" +
			"  luksconv azure convert --vm VM_ID --des DES_ID [--target-suffix S] [--dry-run] [--recreate-vm] [--stage | --cutover [--deallocate]]",
		Short: "Convert an ADE disk, or every ADE disk of a VM, into new plaintext managed disks encrypted at rest by a Disk Encryption Set",
		Long: "With --snapshot or --source-disk, one disk is converted into --target-disk.\n\n" +
			"With --vm alone, the whole VM is: every disk carrying ADE settings is snapshotted, unlocked with its own\n" +
			"Key Vault secret and converted into a new disk named <disk name><--target-suffix>, --parallel at a time,\n" +
			"each with its own resume journal; the OS disk is edited for all of them (crypttab, fstab by filesystem\n" +
			"UUID, LVM devices file, ADE's files). With --recreate-vm the VM is then re-created with every new disk at\n" +
			"its LUN, with its caching and write-accelerator settings. If a disk fails, the VM is untouched and the\n" +
			"same command resumes: finished disks are kept, unfinished ones resume from their journals.\n\n" +
			"With --stage (one disk or the whole VM), the VM may run: its disks are converted from incremental snapshots\n" +
			"into new disks whose uploads stay open; each further --stage moves only what changed since the last round.\n" +
			"--cutover (VM deallocated, or --deallocate) does the last round and finishes the disks.",
		Args: usageArgs(0),
		RunE: f.runReported,
	}
	f.reportEarly(c)
	f.src.register(c)
	f.pf.register(c)
	fl := c.Flags()
	fl.StringVar(&f.keyFile, "key-file", "", "the BEK key file, instead of recovering it from Key Vault")
	fl.StringVar(&f.des, "des", "", "resource ID of the Disk Encryption Set of the new disk")
	fl.StringVar(&f.target, "target-disk", "", "name of the new managed disk")
	fl.StringVar(&f.rg, "resource-group", "", "resource group of the new disk (default: the source's)")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print the plan and the ARM changes; create nothing")
	fl.BoolVar(&f.allowRunning, "allow-running", false, "read the disk of a running VM (a crash-consistent snapshot; never with --recreate-vm)")
	fl.StringVar(&f.dataAuth, "data-access-auth-mode", "", "the new disk's dataAccessAuthMode: AzureActiveDirectory or None (default: the source's)")
	fl.StringVar(&f.netPolicy, "network-access-policy", "", "the new disk's networkAccessPolicy: AllowAll (with publicNetworkAccess Enabled), AllowPrivate (with --disk-access) or DenyAll (default: the source's)")
	fl.StringVar(&f.sku, "sku", "", "the new disk's SKU, e.g. Premium_LRS (default: the source disk's)")
	fl.StringVar(&f.diskAccess, "disk-access", "", "resource ID of the disk access for --network-access-policy AllowPrivate")
	fl.StringVar(&f.license, "license", "", "for a VM from Red Hat's pay-as-you-go image (with --recreate-vm): payg (Azure Hybrid Benefit keeps the billing and RHUI) or byos (your own Red Hat subscription)")
	fl.BoolVar(&f.eah, "encryption-at-host", false, "re-create the VM with encryption at host (with --recreate-vm); without --des the new disks use platform-managed keys")
	fl.BoolVar(&f.recreate, "recreate-vm", false, "re-create the VM --vm around the new OS disk, without ADE")
	fl.StringVar(&f.inventory, "inventory", "", "with --index, instead of --vm: the VM is the index-th convertible VM of this `file` (the output of azure inventory --json), as azure fleet numbers them")
	fl.StringVar(&f.index, "index", "", "with --inventory: which VM, from 0 (a Kubernetes Indexed Job passes $(JOB_COMPLETION_INDEX))")
	fl.StringVar(&f.vm, "vm", "", "resource ID of the VM: alone, every ADE disk of it is converted; with a source, the VM --recreate-vm re-creates")
	fl.StringVar(&f.suffix, "target-suffix", "-luksconv", "with --vm alone: the new disks are named <disk name><suffix>")
	fl.IntVar(&f.parallel, "parallel", 2, "with --vm alone: disks uploaded at the same time")
	fl.IntVar(&f.workers, "workers", 0, workersUsage("chunks processed in parallel"))
	fl.StringVar(&f.journal, "journal", "", "resume journal (default: .luksconv-<plan id>.journal in --journal-dir)")
	fl.StringVar(&f.journalDir, "journal-dir", ".", "directory of the default resume journals, one per disk, the stage records and a re-created VM's rollback model (shared storage when the run may move to another machine)")
	fl.DurationVar(&f.writeAccess, "write-access", 0, "lifetime of the new disk's write SAS, which an interrupted upload keeps for a rerun (default: 1h + the disk at 16 MiB/s)")
	fl.BoolVar(&f.verify, "verify", false, "read the new disk back and check it against the plan before any VM change (see verify)")
	fl.BoolVar(&f.asJSON, "json", false, "print the final report as JSON on standard output (on a failure: the error, its exit code and whether a retry can help)")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no plan summary and no progress (warnings are still printed)")
	fl.BoolVar(&f.stage, "stage", false, "with --source-disk, or the whole VM: convert incremental snapshots of the disks, VM running or not, into the new disks and leave their uploads open; "+
		"run again for another round that moves only what changed (the record is .luksconv-stage-<target>.json, or .luksconv-stage-vm-<VM name>-<hash>.json, in --journal-dir)")
	fl.BoolVar(&f.cutover, "cutover", false, "after --stage, with the VM deallocated: a last round from final incremental snapshots, then finish the new disks "+
		"(with --dry-run: print the expected downtime from the measured change rate)")
	fl.BoolVar(&f.deallocate, "deallocate", false, "with --cutover: deallocate the disk's VM first if it runs, and wait until it is deallocated (not with --dry-run, which deallocates nothing)")
	return c
}

func (f *azureConvert) check() (string, error) {
	id, err := f.src.id()
	if err != nil {
		return "", err
	}
	switch {
	case f.des == "" && !f.eah:
		return "", fmt.Errorf("%w: --des DES_ID is needed (the Disk Encryption Set of the new disk), or --encryption-at-host", errUsage)
	case f.eah && !f.recreate:
		return "", fmt.Errorf("%w: --encryption-at-host is a setting of the VM: it goes with --recreate-vm", errUsage)
	case f.license != "" && f.license != string(azure.LicensePAYG) && f.license != string(azure.LicenseBYOS):
		return "", fmt.Errorf("%w: --license %q: want payg or byos", errUsage, f.license)
	case f.target == "":
		return "", fmt.Errorf("%w: --target-disk NAME is needed", errUsage)
	case f.recreate && f.vm == "":
		return "", fmt.Errorf("%w: --recreate-vm needs --vm VM_ID", errUsage)
	case !f.recreate && f.vm != "":
		return "", fmt.Errorf("%w: --vm is only used with --recreate-vm", errUsage)
	case f.recreate && f.allowRunning:
		return "", fmt.Errorf("%w: --allow-running cannot go with --recreate-vm: the VM's writes after the snapshot would be lost", errUsage)
	}
	return id, f.checkSubscription()
}

// checkSubscription refuses --recreate-vm with a --subscription, where the new disks go, other than the
// VM's: a VM attaches only disks of its own subscription, and Azure would refuse the new VM only after
// the old one is deleted.
func (f *azureConvert) checkSubscription() error {
	if !f.recreate || f.src.subscription == "" {
		return nil
	}
	rid, err := arm.ParseResourceID(f.vm)
	if err != nil || strings.EqualFold(rid.SubscriptionID, f.src.subscription) {
		return nil // a VM ID that does not parse is refused where it is read
	}
	return fmt.Errorf("%w: --subscription %s puts the new disks in another subscription than VM %s's (%s), which --recreate-vm cannot attach: drop --subscription",
		errUsage, f.src.subscription, rid.Name, rid.SubscriptionID)
}

// key puts the passphrase into opts: the --key-file, or the key recovered from Key Vault (then
// Base64Fallback is set for a KEK-wrapped secret: old ADE builds base64-encoded the passphrase before
// wrapping it).
func (f *azureConvert) key(ctx context.Context, cl *azure.Client, id string, opts *luksconv.PlanOptions, rep *azureReport) error {
	if f.keyFile != "" {
		debugKeySource(keyFlags{file: f.keyFile})
		opts.KeyFile = f.keyFile
		return nil
	}
	debugAzure("read ADE key references", id)
	ks, err := cl.KeySources(ctx, id)
	if err != nil {
		if errors.Is(err, azure.ErrNoEncryptionSettings) {
			return &hintedError{err, "give the BEK file with --key-file"}
		}
		return err
	}
	if len(ks) > 1 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%d ADE key references found; using the first (%s)", len(ks), ks[0].SecretURL))
	}
	rep.KeySource = &ks[0]
	debugAzure("recover key from Key Vault", ks[0].ResourceID, "secret", ks[0].SecretURL, "kek", ks[0].KEKURL, "from", ks[0].From)
	pass, err := cl.RecoverKey(ctx, &ks[0])
	if err != nil {
		return err
	}
	opts.Passphrase = pass
	opts.Base64Fallback = ks[0].KEKURL != ""
	return nil
}

// snapshotKey returns the key reference of readID, the snapshot a run reads, when it is not ks, the one
// the passphrase was recovered from (the source disk's, read before the snapshot was taken or, for a
// rerun, long after): ADE's key rotation adds the new passphrase to the header, stamps the disk's
// settings with it, then removes the old one, and a snapshot copies the settings with the data, so a
// snapshot opens with the key its own settings name. nil: the same key, or one given by file.
func (f *azureConvert) snapshotKey(ctx context.Context, cl *azure.Client, readID string, ks *azure.KeySource) (*azure.KeySource, error) {
	if f.keyFile != "" || ks == nil || strings.EqualFold(readID, ks.ResourceID) {
		return nil, nil
	}
	debugAzure("read ADE key references of the snapshot read", readID)
	sks, err := cl.KeySources(ctx, readID)
	if err != nil {
		return nil, err
	}
	if strings.EqualFold(sks[0].SecretURL, ks.SecretURL) && strings.EqualFold(sks[0].KEKURL, ks.KEKURL) {
		return nil, nil
	}
	return &sks[0], nil
}

// snapshotPass recovers the passphrase of readID when its settings name another key than ks
// (snapshotKey), and says so on stderr after label; a nil key: the same key.
func (f *azureConvert) snapshotPass(ctx context.Context, cl *azure.Client, readID string, ks *azure.KeySource, label string, stderr io.Writer) ([]byte, *azure.KeySource, error) {
	sks, err := f.snapshotKey(ctx, cl, readID, ks)
	if err != nil || sks == nil {
		return nil, nil, err
	}
	fmt.Fprintf(stderr, "%s%s names another ADE key than its disk (%s, not %s; rotated in between): using the snapshot's\n", label, readID, sks.SecretURL, ks.SecretURL)
	debugAzure("recover key from Key Vault", sks.ResourceID, "secret", sks.SecretURL, "kek", sks.KEKURL, "from", sks.From)
	pass, err := cl.RecoverKey(ctx, sks)
	if err != nil {
		return nil, nil, err
	}
	return pass, sks, nil
}

// useSnapshotKey puts the passphrase of the snapshot readID into opts when its settings name another
// key than the one there (snapshotPass).
func (f *azureConvert) useSnapshotKey(ctx context.Context, cl *azure.Client, readID string, opts *luksconv.PlanOptions, rep *azureReport, stderr io.Writer) error {
	pass, ks, err := f.snapshotPass(ctx, cl, readID, rep.KeySource, "Snapshot ", stderr)
	if err != nil || ks == nil {
		return err
	}
	clear(opts.Passphrase)
	opts.Passphrase, opts.Base64Fallback, rep.KeySource = pass, ks.KEKURL != "", ks
	return nil
}

// azureErrorReport is what `azure convert --json` prints when the run fails: a fleet engine keeps each
// task's standard output, so every VM leaves one JSON object there, whatever the outcome.
type azureErrorReport struct {
	VM       string `json:"vm,omitempty"`
	Source   string `json:"source,omitempty"`
	Error    string `json:"error"`
	Hint     string `json:"hint,omitempty"`
	ExitCode int    `json:"exit_code"`
	// Retryable: a rerun may succeed (and resumes); false for the exit codes azure fleet tells the
	// engines are permanent.
	Retryable bool `json:"retryable"`
}

// countingWriter counts what was written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// runReported runs the conversion. A panic on this goroutine, as on those the run starts, becomes an
// error (exit 1; reportError prints its stack): Go's own exit code for a panic is 2, the usage code,
// which a fleet engine takes as permanent. With --json a failed run that printed nothing on standard
// output prints an azureErrorReport there.
func (f *azureConvert) runReported(c *cobra.Command, args []string) (err error) {
	out := &countingWriter{w: c.OutOrStdout()}
	c.SetOut(out)
	defer func() {
		if err == nil || !f.asJSON || out.n > 0 {
			return
		}
		f.writeErrorReport(out, err)
	}()
	return recovered.Call(func() error { return f.run(c, args) })
}

// writeErrorReport prints the azureErrorReport of err on w.
func (f *azureConvert) writeErrorReport(w io.Writer, err error) {
	code := exitCode(err)
	writeJSON(w, azureErrorReport{VM: f.vm, Source: cmp.Or(f.src.snapshot, f.src.sourceDisk), Error: blobio.Redact(err.Error()),
		Hint: blobio.Redact(hintFor(err)), ExitCode: code, Retryable: !slices.Contains(permanentExits, code)})
}

// reportEarly makes a usage error found before the run, which runReported never sees, leave its JSON
// report with --json too: a flag this version does not know (fleet files of another version than the
// image), a bad flag value, --workers out of range.
func (f *azureConvert) reportEarly(c *cobra.Command) {
	c.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		err = flagError(c, err)
		// The flags after the bad one are not parsed: --json is looked for in the arguments, those
		// of the process, which cobra parses when no test set others.
		if f.asJSON || jsonArg(os.Args[1:]) {
			f.writeErrorReport(c.OutOrStdout(), err)
		}
		return err
	})
	// The root's hook runs in its stead otherwise (cobra runs the nearest PersistentPreRunE only).
	c.PersistentPreRunE = func(c *cobra.Command, args []string) error {
		err := c.Root().PersistentPreRunE(c, args)
		if err != nil && f.asJSON {
			f.writeErrorReport(c.OutOrStdout(), err)
		}
		return err
	}
}

// jsonArg reports whether args, unparsed, ask for --json: the last --json or --json=BOOL before any
// "--" decides, as in parsing.
func jsonArg(args []string) bool {
	on := false
	for _, a := range args {
		if a == "--" {
			break
		}
		if v, ok := strings.CutPrefix(a, "--json"); ok && v == "" {
			on = true
		} else if ok && v[0] == '=' {
			b, err := strconv.ParseBool(v[1:])
			on = err == nil && b
		}
	}
	return on
}

func (f *azureConvert) run(c *cobra.Command, _ []string) (err error) {
	if st, err := os.Stat(f.journalDir); missingDir(err) || err == nil && !st.IsDir() {
		return fmt.Errorf("%w: --journal-dir %q is not a directory", errUsage, f.journalDir)
	} else if err != nil {
		return fmt.Errorf("--journal-dir: %w", err)
	}
	// The VM's rollback model goes beside the journals: the storage that outlives this run.
	f.src.modelDir = f.journalDir
	// Asked to stop, the run cleans up before it returns, which may take minutes; the user who does
	// not know that may stop it again, which ends the process at once (main).
	stderr := &lockedWriter{w: c.ErrOrStderr()}
	c.SetErr(stderr)
	var stopping sync.Once
	sayStopping := func() {
		stopping.Do(func() {
			fmt.Fprintf(stderr, "luksconv: stopping: an Azure operation under way is awaited (at most %v), then the read grants are revoked "+
				"and what is left is named; a second Ctrl-C ends the process at once and may leave a grant open\n", azure.SettleTime)
		})
	}
	stopSaying := context.AfterFunc(c.Context(), sayStopping)
	defer func() {
		// AfterFunc's goroutine may not have printed yet when a cancelled run ends: the line is out
		// before the run returns, not after the error it ends with, or never.
		if !stopSaying() {
			sayStopping()
		}
	}()
	defer func() {
		// A VM that is gone while a model of it is saved: a re-creation stopped after the DELETE.
		if !f.recreate || f.vm == "" || !errors.Is(err, azure.ErrNotFound) {
			return
		}
		if m := azure.SavedModels(f.journalDir, f.vm); len(m) > 0 {
			file := m[len(m)-1]
			err = &hintedError{err, fmt.Sprintf("an earlier run deleted the VM to re-create it and saved its model in %s: if the VM is gone, restore it with %s, then run again",
				file, azure.RestoreCommand(f.vm, file))}
		}
	}()
	switch {
	case f.inventory != "" && f.vm != "":
		return fmt.Errorf("%w: --inventory and --index choose the VM: no --vm with them", errUsage)
	case (f.inventory == "") != (f.index == ""):
		return fmt.Errorf("%w: --inventory and --index go together", errUsage)
	case f.inventory != "":
		n, err := parseIndex(f.index)
		if err != nil {
			return err
		}
		if f.vm, err = inventoryVM(f.inventory, n); err != nil {
			return err
		}
	}
	if err := f.checkStaged(); err != nil {
		return err
	}
	if f.wholeVM() {
		if !f.dryRun {
			release, err := lockConversion(f.journalDir, f.vm)
			if err != nil {
				return err
			}
			defer release()
		}
		if f.cutover || f.stage && (!f.dryRun || stageRecorded(f.vmStagePath())) {
			return f.runVMStaged(c)
		}
		return f.runVM(c)
	}
	ctx := c.Context()
	id, err := f.check()
	if err != nil {
		return err
	}
	if !f.dryRun {
		dir := f.journalDir
		if f.journal != "" && !f.stage && !f.cutover {
			dir = filepath.Dir(f.journal) // beside the state a rerun resumes from (a stage record is in --journal-dir)
		}
		release, err := lockConversion(dir, f.targetID(id))
		if err != nil {
			return err
		}
		defer release()
	}
	if f.cutover || f.stage && (!f.dryRun || stageRecorded(f.stagePath())) {
		return f.runStaged(c, id)
	}
	cl, err := f.src.client(id)
	if err != nil {
		return err
	}
	rep := &azureReport{Source: id, DryRun: f.dryRun}
	if done, err := f.recreatedBefore(ctx, cl, f.targetID(id)); err != nil || done {
		if err == nil {
			err = f.printRecreatedBefore(ctx, cl, c.OutOrStdout(), rep, f.targetID(id))
		}
		return err
	}
	defer func() {
		if err != nil && rep.SnapshotCreated != "" {
			keptSnapshots(ctx, cl, stderr, []string{rep.SnapshotCreated}, []string{f.targetID(id)})
		}
	}()

	// The key first: it needs no grant, and a wrong vault fails before anything is created.
	opts := f.pf.options(luksconv.FormatVHD)
	if err := f.key(ctx, cl, id, &opts, rep); err != nil {
		return err
	}
	defer func() { clear(opts.Passphrase) }() // useSnapshotKey may put another there

	if f.recreate {
		if err := cl.CheckLicensing(ctx, f.vm, azure.Licensing(f.license)); err != nil {
			return err
		}
	}

	readID, snapName := id, ""
	if f.src.sourceDisk != "" {
		if err := f.checkQuiet(ctx, cl, id, stderr); err != nil {
			return err
		}
		if err := f.checkTarget(ctx, cl, id, f.target); err != nil {
			return err
		}
		if f.dryRun {
			// Creating nothing means reading the disk itself, which Azure allows only while it is
			// unattached or its VM deallocated.
			fmt.Fprintf(stderr, "dry run: would snapshot %s; reading the disk directly\n", id)
		} else if snap, err := f.interruptedSnapshot(ctx, cl, id); err != nil {
			return err
		} else if snap != "" {
			// A resume must read the very snapshot the interrupted run uploaded from.
			fmt.Fprintf(stderr, "Reading snapshot %s again: the unfinished upload to --target-disk %s was made from it\n", snap, f.target)
			readID, snapName = snap, path.Base(snap)
		} else if err := f.checkTargetFree(ctx, cl, f.targetID(id)); err != nil {
			return err
		} else {
			name := srcSnapshotName(f.target, fmt.Sprint(time.Now().Unix()))
			snapName = name
			debugAzure("snapshot disk", id, "snapshot_name", name)
			// One cut off by Ctrl-C that Azure made all the same comes back with the error.
			snap, serr := cl.SnapshotDisk(ctx, id, name, nil)
			rep.SnapshotCreated = snap
			if serr != nil {
				return serr
			}
			readID = snap
			if !f.quiet {
				fmt.Fprintf(stderr, "Snapshot: %s (kept; delete it when the new disk is verified)\n", snap)
			}
		}
	}

	if err := f.useSnapshotKey(ctx, cl, readID, &opts, rep, stderr); err != nil {
		return err
	}
	src, done, err := grantRead(ctx, cl, readID, f.workers, stderr)
	if err != nil {
		if f.dryRun && f.src.sourceDisk != "" {
			return &hintedError{err, "a dry run reads an attached disk only through a snapshot: snapshot it and use --snapshot"}
		}
		return err
	}
	// The source SAS is revoked on every path, also after Ctrl-C.
	defer func() { err = errors.Join(err, done()) }()

	p, err := f.pf.makePlan(ctx, src, opts)
	if err != nil {
		return err
	}
	defer p.Close()
	rep.Plan = p
	if !f.quiet || f.dryRun {
		printPlan(stderr, p)
	} else {
		printWarnings(stderr, p.Warnings)
	}

	spec, err := f.diskSpec(ctx, cl, readID, snapName, p, rep)
	if err != nil {
		return err
	}
	rep.DiskSpec = spec
	diskID := spec.ID(f.subscriptionOf(id))

	if f.recreate {
		debugAzure("plan VM re-creation", f.vm, "new_os_disk", diskID)
		vp, err := cl.PlanRecreateVMWith(ctx, f.vm, diskID, nil, azure.RecreateOptions{EncryptionAtHost: f.eah, License: azure.Licensing(f.license)})
		if err != nil {
			return err
		}
		rep.VMPlan = vp
		if f.src.snapshot != "" {
			// A snapshot the user names becomes the VM's disk only when it is of the VM's OS disk and the VM
			// has not run since it was taken (RecreateVM then checks that it did not run since this plan).
			if err := cl.CheckSnapshotCurrent(ctx, id, vp.OldOSDiskID); err != nil {
				return &hintedError{err, "take a snapshot after the VM is deallocated, or give --source-disk: luksconv then snapshots the deallocated disk itself"}
			}
		}
	}

	if f.dryRun {
		out := c.OutOrStdout()
		if f.asJSON {
			return writeJSON(out, rep)
		}
		fmt.Fprintf(out, "Would create managed disk %s (CreateOption=%s, %d bytes + 512):\n", diskID, spec.CreateOption(), spec.SizeBytes)
		writeJSON(out, spec)
		if rep.VMPlan != nil {
			fmt.Fprintf(out, "Would re-create the VM:\n%s\n", rep.VMPlan)
		}
		for _, w := range rep.Warnings {
			fmt.Fprintf(out, "warning: %s\n", w)
		}
		return nil
	}

	journal := f.journal
	if journal == "" {
		journal = f.defaultJournal(p)
	}
	pr := newProgress(stderr, p.Totals.Copy+p.Totals.Decrypt, f.quiet)
	tgt, res, err := f.upload(ctx, cl, uploadJob{plan: p, src: src, spec: spec, diskID: diskID, journal: journal,
		progress: debugProgress(pr.update)}, stderr)
	if err != nil {
		return err
	}
	rep.Target, rep.Result, rep.AlreadyUploaded = tgt, res, res == nil

	if f.verify {
		// The finished disk is read back through its own read grant (revoked on every path), and a
		// failed check stops before the VM is touched.
		if err := f.verifyDisk(ctx, cl, p, src, tgt.DiskID, stderr); err != nil {
			return err
		}
		rep.Verified = true
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
	if res == nil {
		fmt.Fprintf(out, "converted %s -> %s by an earlier run\n", id, tgt.DiskID)
	} else {
		fmt.Fprintf(out, "converted %s -> %s: decrypted %s, copied %s, wrote %s in %s\n", id, tgt.DiskID,
			human(res.BytesDecrypted), human(res.BytesCopied), human(res.BytesWritten), res.Duration.Round(time.Millisecond))
	}
	if rep.VMRecreated {
		printRecreated(out, f.vm, "the new OS disk", rep.VMPlan)
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(out, "warning: %s\n", blobio.Redact(w))
	}
	return nil
}

// diskSpec is the spec of the new disk for plan p, read from readID: the source's settings with the
// flags applied, sized and tagged for p (snapName is the snapshot luksconv took, or ""). Notes go
// to rep's warnings.
func (f *azureConvert) diskSpec(ctx context.Context, cl *azure.Client, readID, snapName string, p *luksconv.Plan, rep *azureReport) (*azure.DiskSpec, error) {
	debugAzure("read source and disk encryption set", readID, "des", f.des, "target", f.target)
	spec, err := cl.DiskSpecFrom(ctx, readID, f.rg, f.target, f.des)
	if err != nil {
		return nil, err
	}
	f.platformKey(spec)
	if err := f.applyAccess(spec); err != nil {
		return nil, err
	}
	if p.OutputSize%(1<<20) != 0 {
		return nil, fmt.Errorf("plan output size %d is not a whole MiB", p.OutputSize)
	}
	spec.SizeBytes = p.OutputSize
	if err := spec.Check(); err != nil {
		return nil, err
	}
	// A Trusted Launch source: an UploadPreparedSecure disk that gets the source's VM guest state.
	if note, err := cl.SecureUploadNote(spec); err != nil {
		return nil, err
	} else if note != "" {
		rep.Warnings = append(rep.Warnings, note)
	}
	if f.writeAccess == 0 {
		f.writeAccess = azure.UploadAccessFor(p.OutputSize)
	}
	spec.AccessDuration = f.writeAccess
	// The tag lets a rerun tell this conversion's unfinished upload from any other disk of that name,
	// also when the journal is lost (another directory) or was never written.
	spec.Tags = maps.Clone(spec.Tags)
	if spec.Tags == nil {
		spec.Tags = map[string]string{}
	}
	spec.Tags[planTag] = p.ID()
	if snapName != "" {
		spec.Tags[sourceTag] = snapName
	}
	return spec, nil
}

// checkTarget refuses, before a snapshot of the source disk sourceID is taken, what would refuse its
// new disk target later: a --des that is missing or cannot encrypt it (another region or
// subscription, a confidential type) and the flags that shape the disk. Taken first, the snapshot
// would be left behind by each such run. The size is the plan's, checked once it is known.
func (f *azureConvert) checkTarget(ctx context.Context, cl *azure.Client, sourceID, target string) error {
	debugAzure("check new disk and disk encryption set", sourceID, "des", f.des, "target", target)
	spec, err := cl.DiskSpecFrom(ctx, sourceID, f.rg, target, f.des)
	if err != nil {
		return err
	}
	f.platformKey(spec)
	if err := f.applyAccess(spec); err != nil {
		return err
	}
	spec.SizeBytes = azure.MinUploadDisk
	return spec.Check()
}

// checkTargetFree refuses, before a snapshot is taken for it, a new disk diskID that exists and was
// not made by luksconv: creating it would fail after the snapshot, which would be left behind.
func (f *azureConvert) checkTargetFree(ctx context.Context, cl *azure.Client, diskID string) error {
	st, err := cl.DiskStatus(ctx, diskID)
	if errors.Is(err, azure.ErrNotFound) || err == nil && st.Tags[planTag] != "" {
		// No such disk, or one this conversion may resume: creating the disk decides.
		return nil
	}
	if err != nil {
		// A disk that cannot be read (no read access, throttling) cannot be created or resumed either:
		// refused now, before a snapshot would be left behind.
		return err
	}
	return &hintedError{fmt.Errorf("%w: new disk %s exists and was not made by luksconv", azure.ErrExists, diskID),
		"choose another --target-disk, or delete it (luksconv never deletes disks)"}
}

// uploadJob is one disk to upload: the plan, its source, the new disk and its resume journal.
type uploadJob struct {
	plan     *luksconv.Plan
	src      *luksconv.Source
	spec     *azure.DiskSpec
	diskID   string
	journal  string
	lun      int // the disk's LUN in a whole-VM run (luksconv.OSDisk for the OS disk)
	progress func(luksconv.Progress)
	// keepOpen leaves the upload open once every byte is written (a --stage round): no footer, no
	// revoke, and the journal is the caller's to remove.
	keepOpen bool
}

// azureOutputHook, when set (by tests only), wraps the output of each upload, to interrupt one.
var azureOutputHook func(j *uploadJob, o luksconv.Output) luksconv.Output

// upload creates the upload disk of j.spec, or reopens this conversion's unfinished upload of that
// name, writes the plan into it and finishes it. An unfinished upload keeps its write access and its
// journal, so that the same command resumes it. A disk an earlier run of this conversion finished is
// not written again: the result is then nil.
func (f *azureConvert) upload(ctx context.Context, cl *azure.Client, j uploadJob, stderr io.Writer) (tgt *azure.UploadTarget, res *luksconv.Result, err error) {
	p, diskID, journal := j.plan, j.diskID, j.journal
	if st, err := cl.DiskStatus(ctx, diskID); err == nil && st.Tags[planTag] == p.ID() {
		// This conversion's disk, made by an earlier run.
		if err := checkReopened(st, j.spec, diskID); err != nil {
			return nil, nil, err
		}
		if finishedUpload(st.State) {
			// Finished by an earlier run (whose finish may have outlasted its wait): the tag proves it
			// holds this very plan, and an upload disk leaves ActiveUpload only through the finish that
			// follows the last write.
			debugAzure("upload finished by an earlier run", diskID)
			fmt.Fprintf(stderr, "%s was uploaded by an earlier run of this conversion\n", diskID)
			return &azure.UploadTarget{DiskID: diskID, SizeBytes: p.OutputSize, UploadSizeBytes: p.OutputSize + azure.VHDFooterSize, Tags: st.Tags}, nil, nil
		}
	}
	debugAzure("create upload disk", diskID, "size", j.spec.SizeBytes)
	tgt, err = cl.CreateUploadDisk(ctx, *j.spec)
	created := err == nil
	switch {
	case errors.Is(err, azure.ErrExists):
		tgt, err = f.resume(ctx, cl, err, diskID, journal, p.ID(), stderr)
	case err == nil:
		// A disk this run created holds nothing: a journal at its path is of another disk (one deleted
		// since, or another --target-disk) and must not mark a single byte of this one done.
		if rerr := os.Remove(journal); rerr == nil {
			fmt.Fprintf(stderr, "Discarding journal %s: it is of an earlier upload, and %s was just created\n", journal, diskID)
		} else if !errors.Is(rerr, os.ErrNotExist) {
			err = fmt.Errorf("journal: %w", rerr)
		}
	}
	if err != nil {
		return nil, nil, err
	}
	// A Trusted Launch disk's finish copies the VM guest state of the source it was planned from.
	tgt.GuestStateSource, tgt.GuestStateLogf = cmp.Or(tgt.GuestStateSource, j.spec.SourceID), blobLog
	finished := false
	defer func() {
		if !finished {
			// Write access is not revoked: revoking ends an upload in Azure, which refuses it
			// (InvalidVhd) until the footer is written, and with a footer would make a half-written
			// disk attachable. The disk stays ActiveUpload, which no VM can attach, and the SAS, held
			// only in this process, expires; the same command grants again and resumes.
			debugAzure("keep write access for a resume", diskID, "expires", tgt.Expires.UTC().Format(time.RFC3339))
			fmt.Fprintf(stderr, "luksconv: the upload to %s stays open so that the same command resumes it (journal %s); "+
				"no VM can attach the disk while it is uploading, and its write access ends at %s or when the disk is deleted\n",
				diskID, journal, tgt.Expires.UTC().Format(time.RFC3339))
		}
	}()

	debugAzure("upload access granted", tgt.DiskID, "sas", blobio.Redact(tgt.SASURL), "expires", tgt.Expires)
	bo, err := blobdisk.CreateOutput(ctx, p, tgt.SASURL, blobdisk.OutputOptions{
		Options: blobdisk.Options{Workers: f.workers, Logf: blobLog, Bearer: cl.DataBearer(j.spec.Access), Timeout: blobTimeout}, Journal: journal,
		// The disk was created by this run or reopened only when tagged with this plan: the journal
		// follows the disk, not the upload URL of one grant.
		SameTarget: true,
		// A disk this run created holds nothing: its page list need not be read.
		Empty: created,
		// Once every byte is written, finishing is not cut short by Ctrl-C: Azure may carry out a
		// revoke whose reply the run no longer waits for, leaving a finished disk the run would call
		// open. If it fails, the journal stays: a rerun skips every page and only finishes.
		Finish: func(ctx context.Context) error {
			debugAzure("finish upload (revoke write access)", tgt.DiskID)
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			defer cancel()
			return tgt.Finish(fctx)
		}})
	if err != nil {
		return tgt, nil, accessHint(err, j.spec.Access, tgt.Expires, diskID)
	}
	dlog.Debug("output opened", "kind", "page blob", "url", bo.URL(), "size", p.OutputSize, "journal", journal)
	var o luksconv.Output = bo
	if azureOutputHook != nil {
		o = azureOutputHook(&j, o)
	}
	dlog.Debug("execute", "workers", f.workers, "output", tgt.DiskID)
	res, err = luksconv.Execute(ctx, p, j.src, o, luksconv.ExecuteOptions{Workers: f.workers, Progress: j.progress})
	if err != nil {
		dlog.Debug("execute failed; the journal stays for a resume", "journal", journal, "error", err)
		o.Abort()
		return tgt, nil, accessHint(err, j.spec.Access, tgt.Expires, diskID)
	}
	dlog.Debug("execute done", "decrypted", res.BytesDecrypted, "copied", res.BytesCopied, "written", res.BytesWritten,
		"skipped_zero", res.BytesSkipped, "resumed", res.BytesResumed, "duration", res.Duration.String())
	if j.keepOpen {
		// Abort flushes the journal and writes no footer: the disk stays ActiveUpload, which no VM
		// can attach, and the next round writes into it.
		finished = true
		return tgt, res, o.Abort()
	}
	if err := o.Commit(ctx); err != nil {
		return tgt, nil, err
	}
	finished = true
	return tgt, res, nil
}

// platformKey gives a disk without --des (with --encryption-at-host) platform-managed keys.
func (f *azureConvert) platformKey(spec *azure.DiskSpec) {
	if f.des == "" {
		spec.EncryptionType = armcompute.EncryptionTypeEncryptionAtRestWithPlatformKey
	}
}

// applyAccess sets the new disk's data access and SKU from the flags over what the spec copied from
// the source.
func (f *azureConvert) applyAccess(spec *azure.DiskSpec) error {
	if f.sku != "" {
		if !slices.Contains(armcompute.PossibleDiskStorageAccountTypesValues(), armcompute.DiskStorageAccountTypes(f.sku)) {
			return fmt.Errorf("%w: --sku %q: want one of %v", errUsage, f.sku, armcompute.PossibleDiskStorageAccountTypesValues())
		}
		if sku := armcompute.DiskStorageAccountTypes(f.sku); sku != spec.SKU {
			// The source's performance tier (P30) and bursting are settings of its SKU, which
			// Azure refuses on another.
			spec.Tier, spec.BurstingEnabled = "", false
			spec.SKU = sku
		}
		spec.SKUFromSnapshot = false
	}
	switch f.dataAuth {
	case "":
	case string(armcompute.DataAccessAuthModeAzureActiveDirectory), string(armcompute.DataAccessAuthModeNone):
		spec.Access.AuthMode = armcompute.DataAccessAuthMode(f.dataAuth)
	default:
		return fmt.Errorf("%w: --data-access-auth-mode %q: want AzureActiveDirectory or None", errUsage, f.dataAuth)
	}
	switch f.netPolicy {
	case "":
	case string(armcompute.NetworkAccessPolicyAllowAll):
		// publicNetworkAccess Disabled, copied from the source, would keep the data private "even when
		// NetworkAccessPolicy is set to AllowAll" (armcompute).
		spec.Access.NetworkAccessPolicy, spec.Access.DiskAccessID = armcompute.NetworkAccessPolicyAllowAll, ""
		spec.Access.PublicNetworkAccess = armcompute.PublicNetworkAccessEnabled
	case string(armcompute.NetworkAccessPolicyDenyAll):
		spec.Access.NetworkAccessPolicy, spec.Access.DiskAccessID = armcompute.NetworkAccessPolicyDenyAll, ""
	case string(armcompute.NetworkAccessPolicyAllowPrivate):
		spec.Access.NetworkAccessPolicy = armcompute.NetworkAccessPolicyAllowPrivate
		if f.diskAccess != "" {
			spec.Access.DiskAccessID = f.diskAccess
		}
	default:
		return fmt.Errorf("%w: --network-access-policy %q: want AllowAll, AllowPrivate or DenyAll", errUsage, f.netPolicy)
	}
	if f.diskAccess != "" && f.netPolicy != string(armcompute.NetworkAccessPolicyAllowPrivate) {
		return fmt.Errorf("%w: --disk-access goes with --network-access-policy AllowPrivate", errUsage)
	}
	if spec.Access.NetworkAccessPolicy == armcompute.NetworkAccessPolicyAllowPrivate && spec.Access.DiskAccessID == "" {
		return fmt.Errorf("%w: networkAccessPolicy AllowPrivate needs a disk access: give --disk-access ID", errUsage)
	}
	return nil
}

// checkQuiet refuses to read a disk whose VM runs — writes after the snapshot would be missing from
// the new disk — unless --allow-running.
func (f *azureConvert) checkQuiet(ctx context.Context, cl *azure.Client, diskID string, stderr io.Writer) error {
	debugAzure("read disk owner", diskID)
	o, err := cl.ReadDiskOwner(ctx, diskID)
	if err != nil {
		return err
	}
	if o.Quiet() && !(f.cutover && o.PowerState == "stopped") {
		return nil
	}
	if f.cutover && o.PowerState == "stopped" {
		// A stopped VM keeps its allocation: started again, it writes without Azure marking the disk's
		// owner changed, so an interrupted cutover's snapshot could not be known stale. Deallocated, any
		// start changes the disk's ownership time, which the rerun checks.
		return &hintedError{fmt.Errorf("%w: disk %s is attached to VM %s, which is stopped but not deallocated: a cutover needs it deallocated",
			azure.ErrState, diskID, o.VMID), "deallocate the VM first (az vm deallocate), or let the cutover do it (--deallocate)"}
	}
	if !f.allowRunning {
		hint := "deallocate the VM first (az vm deallocate); --allow-running takes a crash-consistent snapshot instead (never with --recreate-vm)"
		if f.cutover {
			hint = "deallocate the VM first (az vm deallocate), or let the cutover do it (--deallocate)"
		}
		return &hintedError{fmt.Errorf("%w: disk %s is attached to VM %s, which is %s: writes after the snapshot would be missing from the new disk",
			azure.ErrState, diskID, o.VMID, o.PowerState), hint}
	}
	fmt.Fprintf(stderr, "luksconv: warning: VM %s is %s: the snapshot of %s is only crash-consistent, and what the VM writes after it is not in the new disk\n",
		o.VMID, o.PowerState, diskID)
	return nil
}

// verifyDisk reads the finished disk diskID back and checks it against p and the source src; the
// report goes to stderr (only on failure when the output is JSON or -q).
func (f *azureConvert) verifyDisk(ctx context.Context, cl *azure.Client, p *luksconv.Plan, src *luksconv.Source, diskID string, stderr io.Writer) (err error) {
	out, done, err := grantRead(ctx, cl, diskID, f.workers, stderr)
	if err != nil {
		if err = outputUnreadable(err); errors.Is(err, luksconv.ErrVerifyFailed) {
			return &hintedError{fmt.Errorf("verify: %w", err), fmt.Sprintf("do not attach %s: delete it (luksconv never deletes disks) and run again", diskID)}
		}
		return fmt.Errorf("verify: %w", err)
	}
	defer func() { err = errors.Join(err, done()) }()
	var buf strings.Builder
	err = runVerify(ctx, &buf, p, src, out, diskID, f.workers, 20, false)
	if err != nil || !(f.quiet || f.asJSON) {
		fmt.Fprint(stderr, buf.String())
	}
	if errors.Is(err, luksconv.ErrVerifyFailed) {
		return &hintedError{err, fmt.Sprintf("do not attach %s: delete it (luksconv never deletes disks) and run again", diskID)}
	}
	return err
}

// interruptedSnapshot returns the snapshot an earlier run of this conversion read, when the target
// disk exists, unfinished or finished, tagged with a snapshot of the source disk; "" otherwise. A
// snapshot the disk's VM has run since is stale: reading it again would lose those writes.
func (f *azureConvert) interruptedSnapshot(ctx context.Context, cl *azure.Client, diskID string) (string, error) {
	rid, err := arm.ParseResourceID(diskID)
	if err != nil {
		return "", nil
	}
	rg := f.rg
	if rg == "" {
		rg = rid.ResourceGroupName
	}
	target := (&azure.DiskSpec{ResourceGroup: rg, Name: f.target}).ID(f.subscriptionOf(diskID))
	st, err := cl.DiskStatus(ctx, target)
	if err != nil {
		// No disk of that name (or it cannot be read): a new snapshot; creating the target disk
		// then says what is wrong with an existing one.
		return "", nil
	}
	name := st.Tags[sourceTag]
	if name == "" || strings.ContainsAny(name, "/?#") {
		return "", nil
	}
	snap := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/snapshots/%s", rid.SubscriptionID, rid.ResourceGroupName, name)
	// Only a snapshot of this very disk: a target name reused for another VM must not resume with
	// that VM's data.
	if from, err := cl.SnapshotSource(ctx, snap); err != nil || !strings.EqualFold(from, diskID) {
		return "", nil
	}
	if err := cl.CheckSnapshotCurrent(ctx, snap, diskID); err != nil {
		return "", &hintedError{err, fmt.Sprintf("the new disk %s was made from it: delete that disk (luksconv never deletes disks) to convert the disk as it is now", target)}
	}
	return snap, nil
}

// keptSnapshots names on stderr the snapshots snaps that a failed run took when none of its new disks
// (targets) names one of them in its luksconv-source tag yet: a rerun finds a run's snapshots only
// through that tag, so it takes new ones, and these stay behind (also with -q, and when Ctrl-C cut
// off their creation, which Azure finished all the same).
func keptSnapshots(ctx context.Context, cl *azure.Client, stderr io.Writer, snaps, targets []string) {
	if len(snaps) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	for _, t := range targets {
		if st, err := cl.DiskStatus(ctx, t); err == nil && st.Tags[sourceTag] != "" &&
			slices.ContainsFunc(snaps, func(s string) bool { return strings.EqualFold(path.Base(s), st.Tags[sourceTag]) }) {
			return
		}
	}
	fmt.Fprintf(stderr, "luksconv: the snapshots this run took are kept, and no new disk names them, so a rerun takes new ones: delete %s\n",
		strings.Join(snaps, ", "))
}

// journalFound reports whether the resume journal at path exists. An error other than its absence (a
// share's EIO or ESTALE) is returned: a rerun may read that journal, so nothing is granted now, and the
// pages it lists are not written again.
func journalFound(path string) (bool, error) {
	_, err := os.Stat(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("journal: %w", err)
	}
	return err == nil, nil
}

// resume reopens the target disk that CreateUploadDisk found existing (exists) when it is this
// conversion's unfinished upload: still uploading and tagged with the plan's ID. The journal, if there
// is one, then names what is done; without it every page is written again.
func (f *azureConvert) resume(ctx context.Context, cl *azure.Client, exists error, diskID, journal, planID string, stderr io.Writer) (*azure.UploadTarget, error) {
	found, err := journalFound(journal)
	if err != nil {
		return nil, err
	}
	debugAzure("open upload disk (resume)", diskID, "journal", journal, "journal_found", found)
	// Only a disk tagged with this plan is reopened: another disk of that name, a finished upload
	// (Unattached) or another conversion's upload, is refused before any access is granted.
	tgt, err := cl.OpenUploadDisk(ctx, diskID, f.writeAccess, map[string]string{planTag: planID})
	switch {
	case errors.Is(err, azure.ErrState):
		return nil, &hintedError{errors.Join(exists, err), "the target disk exists and is not this conversion's unfinished upload; " +
			"choose another --target-disk, or delete it (luksconv never deletes disks)"}
	case err != nil:
		return nil, err
	case !found:
		fmt.Fprintf(stderr, "Resuming the upload to %s (no journal at %s: every page is written again)\n", diskID, journal)
	default:
		fmt.Fprintf(stderr, "Resuming the upload to %s (journal %s)\n", diskID, journal)
	}
	return tgt, nil
}

// accessHint adds what to do to a refused data request: a 401 is the Entra token a disk with
// dataAccessAuthMode=AzureActiveDirectory needs; a 403 while the SAS is still valid (expires) is the
// disk's network access; else the SAS expired (--write-access), which the same command grants anew.
func accessHint(err error, access azure.DataAccess, expires time.Time, id string) error {
	switch st := blobio.HTTPStatus(err); {
	case st == http.StatusUnauthorized:
		return &hintedError{err, fmt.Sprintf("%s needs an Entra token besides its SAS (dataAccessAuthMode=AzureActiveDirectory): "+
			"the signed-in identity needs the role Data Operator for Managed Disks on it", id)}
	case st != http.StatusForbidden:
		return err
	case !expires.IsZero() && time.Now().After(expires):
		return &hintedError{err, "the disk's write access expired (--write-access): run the same command again to grant it anew and resume"}
	case access.Private():
		return &hintedError{err, fmt.Sprintf("%s accepts data only through its private endpoint (networkAccessPolicy=%s, publicNetworkAccess=%s): "+
			"run luksconv inside that virtual network, or give the new disk --network-access-policy AllowAll", id, access.NetworkAccessPolicy, access.PublicNetworkAccess)}
	case expires.IsZero():
		return &hintedError{err, "the disk's access may have expired or the network may be refused: run the same command again to grant access anew and resume"}
	}
	return &hintedError{err, fmt.Sprintf("refused although the SAS should be valid until %s: it may have been revoked or have expired early "+
		"(run the same command again to grant it anew and resume), or a firewall or policy refuses this machine", expires.UTC().Format(time.RFC3339))}
}

// subscriptionOf is --subscription, or the subscription of the resource ID.
func (f *azureConvert) subscriptionOf(id string) string {
	if f.src.subscription != "" {
		return f.src.subscription
	}
	if rid, err := arm.ParseResourceID(id); err == nil {
		return rid.SubscriptionID
	}
	return ""
}

// defaultJournal is the plan's resume journal in --journal-dir: the same name for the same plan, so a
// rerun on any machine that mounts the directory resumes the upload.
func (f *azureConvert) defaultJournal(p *luksconv.Plan) string {
	return filepath.Join(f.journalDir, blobdisk.DefaultJournal(p))
}
