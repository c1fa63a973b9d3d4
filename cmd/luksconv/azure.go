package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/luksconv/luksconv/azure"
	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/luks"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/spf13/cobra"
)

// azureClientHook, when set (by tests only), replaces the credential and options of the Azure client.
var azureClientHook func() (azcore.TokenCredential, *azure.Options)

// azureSource is the resource a command reads: a snapshot, or a managed disk.
type azureSource struct {
	subscription string
	snapshot     string
	sourceDisk   string
}

func (s *azureSource) register(c *cobra.Command) {
	c.Flags().StringVar(&s.snapshot, "snapshot", "", "resource ID of the ADE disk's snapshot")
	c.Flags().StringVar(&s.sourceDisk, "source-disk", "", "resource ID of the ADE managed disk")
	c.Flags().StringVar(&s.subscription, "subscription", "", "subscription ID (default: the one in the resource ID)")
}

// id returns the source resource ID; exactly one of --snapshot and --source-disk must be given.
func (s *azureSource) id() (string, error) {
	switch {
	case s.snapshot != "" && s.sourceDisk != "":
		return "", fmt.Errorf("%w: give either --snapshot or --source-disk, not both", errUsage)
	case s.snapshot != "":
		return s.snapshot, nil
	case s.sourceDisk != "":
		return s.sourceDisk, nil
	}
	return "", fmt.Errorf("%w: --snapshot ID or --source-disk ID is needed", errUsage)
}

// client creates the control-plane client for the subscription of --subscription or of id.
func (s *azureSource) client(id string) (*azure.Client, error) {
	sub := s.subscription
	if sub == "" {
		rid, err := arm.ParseResourceID(id)
		if err != nil || rid.SubscriptionID == "" {
			return nil, fmt.Errorf("%w: cannot read a subscription from resource ID %q; give --subscription", errUsage, id)
		}
		sub = rid.SubscriptionID
	}
	if azureClientHook != nil {
		cred, opts := azureClientHook()
		return azure.New(sub, cred, opts)
	}
	cred, err := azure.DefaultCredential()
	if err != nil {
		return nil, fmt.Errorf("azure credential: %w", err)
	}
	return azure.New(sub, cred, nil)
}

func newAzureCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "azure",
		Short: "Convert an ADE managed disk or snapshot into a plaintext managed disk under a Disk Encryption Set",
	}
	c.AddCommand(newAzureInspectCmd(), newAzureConvertCmd())
	return c
}

// grantRead opens src for reading and returns the source and a cleanup that closes it and revokes
// the SAS with a context that outlives cancellation (Ctrl-C). The cleanup's error is reported on w.
func grantRead(ctx context.Context, cl *azure.Client, id string, workers int, w io.Writer) (*luksconv.Source, func() error, error) {
	debugAzure("grant read access", id)
	sas, revoke, err := cl.GrantRead(ctx, id, 0)
	if err != nil {
		return nil, nil, err
	}
	debugAzure("read access granted", id, "sas", blobio.Redact(sas))
	done := func() error {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		debugAzure("revoke read access", id)
		if err := revoke(rctx); err != nil {
			fmt.Fprintf(w, "luksconv: warning: revoking read access to %s: %v\n", id, err)
			return err
		}
		return nil
	}
	src, err := luksconv.OpenPageBlob(ctx, sas, luksconv.BlobOptions{Workers: workers, Logf: blobLog})
	if err != nil {
		return nil, nil, errors.Join(err, done())
	}
	debugSource(sas, src)
	// The plan, the report and the resume journal name the resource, which stays the same across
	// grants, rather than the SAS URL, which changes with each.
	src.Path = id
	return src, func() error { src.Close(); return done() }, nil
}

func newAzureInspectCmd() *cobra.Command {
	var as azureSource
	var vf volumeFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "inspect (--snapshot ID | --source-disk ID)",
		Short: "Show the partitions of an ADE disk in Azure and where its key lives in Key Vault (never the key)",
		Args:  usageArgs(0),
		RunE: func(c *cobra.Command, args []string) (err error) {
			ctx := c.Context()
			id, err := as.id()
			if err != nil {
				return err
			}
			cl, err := as.client(id)
			if err != nil {
				return err
			}
			debugAzure("read ADE key references", id)
			ks, kerr := cl.KeySources(ctx, id)
			if kerr != nil && !errors.Is(kerr, azure.ErrNoEncryptionSettings) {
				return kerr
			}
			src, done, err := grantRead(ctx, cl, id, 0, c.ErrOrStderr())
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, done()) }()
			hdr, closeHdr, err := vf.openHeader()
			if err != nil {
				return err
			}
			defer closeHdr()
			rep, err := luksconv.Inspect(ctx, src, luksconv.InspectOptions{Header: hdr, Partition: vf.partition})
			if err != nil {
				return err
			}
			rep.Image.Path = id
			debugReport(rep)
			if asJSON {
				return writeJSON(c.OutOrStdout(), struct {
					Resource   string            `json:"resource"`
					KeySources []azure.KeySource `json:"key_sources"`
					Report     *luksconv.Report  `json:"report"`
				}{id, ks, rep})
			}
			printReport(c.OutOrStdout(), rep)
			printKeySources(c.OutOrStdout(), ks)
			return nil
		},
	}
	as.register(c)
	vf.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return c
}

func printKeySources(w io.Writer, ks []azure.KeySource) {
	fmt.Fprintln(w)
	if len(ks) == 0 {
		fmt.Fprintln(w, "Key Vault: no ADE encryption settings found on the resource, its source disk or VM (give --key-file to convert)")
		return
	}
	for _, k := range ks {
		fmt.Fprintf(w, "Key Vault (ADE %s settings on the %s %s, enabled=%v):\n  secret %s\n", k.Version, k.From, k.ResourceID, k.Enabled, k.SecretURL)
		if k.KEKURL != "" {
			fmt.Fprintf(w, "  wrapped with key %s\n", k.KEKURL)
		}
	}
}

// azureConvert holds the flags of `azure convert`.
type azureConvert struct {
	src          azureSource
	vol          volumeFlags
	keyFile      string
	keyslot      int
	allowUnknown bool
	fullCopy     bool
	keepGuest    bool
	strictInitrd bool

	des, target, rg  string
	dryRun, recreate bool
	vm               string
	workers          int
	journal          string
	writeAccess      time.Duration
	verify           bool
	asJSON, quiet    bool
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
	VMPlan          *azure.VMPlan       `json:"vm_plan,omitempty"`
	Verified        bool                `json:"verified,omitempty"`
	VMRecreated     bool                `json:"vm_recreated,omitempty"`
	Warnings        []string            `json:"warnings,omitempty"`
}

func newAzureConvertCmd() *cobra.Command {
	var f azureConvert
	c := &cobra.Command{
		Use: "convert (--snapshot ID | --source-disk ID) --des DES_ID --target-disk NAME [--resource-group RG] " +
			"[--dry-run] [--recreate-vm --vm VM_ID]",
		Short: "Convert an ADE disk into a new plaintext managed disk encrypted at rest by a Disk Encryption Set",
		Args:  usageArgs(0),
		RunE:  f.run,
	}
	f.src.register(c)
	f.vol.register(c)
	fl := c.Flags()
	fl.StringVar(&f.keyFile, "key-file", "", "the BEK key file, instead of recovering it from Key Vault")
	fl.IntVar(&f.keyslot, "keyslot", -1, "try only this keyslot (-1: every active one)")
	fl.BoolVar(&f.allowUnknown, "allow-unknown-content", false, "convert even if the plaintext has no recognisable signature")
	fl.BoolVar(&f.fullCopy, "full-copy", false, "read and write free space too")
	fl.BoolVar(&f.keepGuest, "keep-guest", false, "do not edit the guest (it will still expect ADE at boot)")
	fl.BoolVar(&f.strictInitrd, "strict-initramfs", false, "fail if an initramfs holding ADE's hooks cannot be rewritten in place")
	fl.StringVar(&f.des, "des", "", "resource ID of the Disk Encryption Set of the new disk")
	fl.StringVar(&f.target, "target-disk", "", "name of the new managed disk")
	fl.StringVar(&f.rg, "resource-group", "", "resource group of the new disk (default: the source's)")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print the plan and the ARM changes; create nothing")
	fl.BoolVar(&f.recreate, "recreate-vm", false, "re-create the VM --vm around the new OS disk, without ADE")
	fl.StringVar(&f.vm, "vm", "", "resource ID of the VM to re-create (with --recreate-vm)")
	fl.IntVar(&f.workers, "workers", 0, "chunks processed in parallel (default: number of CPUs)")
	fl.StringVar(&f.journal, "journal", "", "resume journal (default: .luksconv-<plan id>.journal in the current directory)")
	fl.DurationVar(&f.writeAccess, "write-access", 0, "lifetime of the new disk's write SAS, which an interrupted upload keeps for a rerun (default: 1h + the disk at 16 MiB/s)")
	fl.BoolVar(&f.verify, "verify", false, "read the new disk back and check it against the plan before any VM change (see verify)")
	fl.BoolVar(&f.asJSON, "json", false, "print the final report as JSON on standard output")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "no plan summary and no progress (warnings are still printed)")
	return c
}

func (f *azureConvert) check() (string, error) {
	id, err := f.src.id()
	if err != nil {
		return "", err
	}
	switch {
	case f.des == "":
		return "", fmt.Errorf("%w: --des DES_ID is needed (the Disk Encryption Set of the new disk)", errUsage)
	case f.target == "":
		return "", fmt.Errorf("%w: --target-disk NAME is needed", errUsage)
	case f.recreate && f.vm == "":
		return "", fmt.Errorf("%w: --recreate-vm needs --vm VM_ID", errUsage)
	case !f.recreate && f.vm != "":
		return "", fmt.Errorf("%w: --vm is only used with --recreate-vm", errUsage)
	}
	return id, nil
}

// key returns the key-file bytes: from --key-file, or recovered from Key Vault.
func (f *azureConvert) key(ctx context.Context, cl *azure.Client, id string, c *cobra.Command, rep *azureReport) ([]byte, error) {
	if f.keyFile != "" {
		debugKeySource(keyFlags{file: f.keyFile})
		return keyFlags{file: f.keyFile}.read(c.InOrStdin())
	}
	debugAzure("read ADE key references", id)
	ks, err := cl.KeySources(ctx, id)
	if err != nil {
		if errors.Is(err, azure.ErrNoEncryptionSettings) {
			return nil, &hintedError{err, "give the BEK file with --key-file"}
		}
		return nil, err
	}
	if len(ks) > 1 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%d ADE key references found; using the first (%s)", len(ks), ks[0].SecretURL))
	}
	rep.KeySource = &ks[0]
	debugAzure("recover key from Key Vault", ks[0].ResourceID, "secret", ks[0].SecretURL, "kek", ks[0].KEKURL, "from", ks[0].From)
	return cl.RecoverKey(ctx, &ks[0])
}

// plan unlocks the volume with pass. Old ADE builds base64-encoded the passphrase before wrapping it,
// so a wrapped key that does not open the volume is tried once more base64-decoded.
func (f *azureConvert) plan(ctx context.Context, src *luksconv.Source, pass []byte, wrapped bool) (*luksconv.Plan, error) {
	hdr, closeHdr, err := f.vol.openHeader()
	if err != nil {
		return nil, err
	}
	defer closeHdr()
	opts := luksconv.PlanOptions{Passphrase: pass, Header: hdr, Partition: f.vol.partition, Format: luksconv.FormatVHD,
		AllowUnknownContent: f.allowUnknown, FullCopy: f.fullCopy, KeepGuest: f.keepGuest, StrictInitramfs: f.strictInitrd}
	if f.keyslot >= 0 {
		opts.Keyslot = &f.keyslot
	}
	debugUnlock(opts)
	p, err := luksconv.NewPlan(ctx, src, opts)
	if err != nil && wrapped && errors.Is(err, luks.ErrWrongPassphrase) {
		if alt, derr := decodeBase64Key(pass); derr == nil {
			dlog.Debug("the unwrapped key opens no keyslot; trying it base64-decoded (old ADE builds)")
			opts.Passphrase = alt
			p2, err2 := luksconv.NewPlan(ctx, src, opts)
			clear(alt)
			if err2 == nil {
				debugPlan(p2)
				return p2, nil
			}
		}
	}
	if err != nil {
		return nil, explainKeyError(err, pass)
	}
	debugPlan(p)
	return p, nil
}

func (f *azureConvert) run(c *cobra.Command, _ []string) (err error) {
	ctx := c.Context()
	stderr := c.ErrOrStderr()
	id, err := f.check()
	if err != nil {
		return err
	}
	cl, err := f.src.client(id)
	if err != nil {
		return err
	}
	rep := &azureReport{Source: id, DryRun: f.dryRun}

	// The key first: it needs no grant, and a wrong vault fails before anything is created.
	pass, err := f.key(ctx, cl, id, c, rep)
	if err != nil {
		return err
	}
	defer clear(pass)
	wrapped := rep.KeySource != nil && rep.KeySource.KEKURL != ""

	readID, snapName := id, ""
	if f.src.sourceDisk != "" {
		if f.dryRun {
			// Creating nothing means reading the disk itself, which Azure allows only while it is
			// unattached or its VM deallocated.
			fmt.Fprintf(stderr, "dry run: would snapshot %s; reading the disk directly\n", id)
		} else if snap := f.interruptedSnapshot(ctx, cl, id); snap != "" {
			// A resume must read the very snapshot the interrupted run uploaded from.
			fmt.Fprintf(stderr, "Reading snapshot %s again: the unfinished upload to --target-disk %s was made from it\n", snap, f.target)
			readID, snapName = snap, path.Base(snap)
		} else {
			name := fmt.Sprintf("%s-luksconv-src-%d", f.target, time.Now().Unix())
			snapName = name
			debugAzure("snapshot disk", id, "snapshot_name", name)
			snap, err := cl.SnapshotDisk(ctx, id, name, nil)
			if err != nil {
				return err
			}
			rep.SnapshotCreated = snap
			readID = snap
			if !f.quiet {
				fmt.Fprintf(stderr, "Snapshot: %s (kept; delete it when the new disk is verified)\n", snap)
			}
		}
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

	p, err := f.plan(ctx, src, pass, wrapped)
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

	debugAzure("read source and disk encryption set", readID, "des", f.des, "target", f.target)
	spec, err := cl.DiskSpecFrom(ctx, readID, f.rg, f.target, f.des)
	if err != nil {
		return err
	}
	if p.OutputSize%(1<<20) != 0 {
		return fmt.Errorf("plan output size %d is not a whole MiB", p.OutputSize)
	}
	spec.SizeBytes = p.OutputSize
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
	rep.DiskSpec = spec
	diskID := spec.ID(f.subscriptionOf(id))

	if f.recreate {
		debugAzure("plan VM re-creation", f.vm, "new_os_disk", diskID)
		vp, err := cl.PlanRecreateVM(ctx, f.vm, diskID)
		if err != nil {
			return err
		}
		rep.VMPlan = vp
	}

	if f.dryRun {
		out := c.OutOrStdout()
		if f.asJSON {
			return writeJSON(out, rep)
		}
		fmt.Fprintf(out, "Would create managed disk %s (CreateOption=Upload, %d bytes + 512):\n", diskID, spec.SizeBytes)
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
		journal = ".luksconv-" + p.ID()[:16] + ".journal"
	}
	debugAzure("create upload disk", diskID, "size", spec.SizeBytes)
	tgt, err := cl.CreateUploadDisk(ctx, *spec)
	if errors.Is(err, azure.ErrExists) {
		tgt, err = f.resume(ctx, cl, err, diskID, journal, p.ID(), stderr)
	}
	if err != nil {
		return err
	}
	rep.Target = tgt
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
	sink, err := luksconv.CreatePageBlobSink(ctx, tgt.SASURL, p.OutputSize, journal, p.ID(),
		luksconv.BlobOptions{Workers: f.workers, Logf: blobLog})
	if err != nil {
		return expiredHint(err)
	}
	dlog.Debug("output opened", "kind", "page blob", "url", blobio.Redact(tgt.SASURL), "size", p.OutputSize, "journal", journal)
	pr := newProgress(stderr, p.Totals.Copy+p.Totals.Decrypt, f.quiet)
	dlog.Debug("execute", "workers", f.workers, "output", tgt.DiskID)
	res, err := luksconv.Execute(ctx, p, src, sink, luksconv.ExecuteOptions{Workers: f.workers, Progress: debugProgress(pr.update)})
	if err != nil {
		dlog.Debug("execute failed; the journal stays for a resume", "journal", journal, "error", err)
		sink.Close()
		return expiredHint(err)
	}
	dlog.Debug("execute done", "decrypted", res.BytesDecrypted, "copied", res.BytesCopied, "written", res.BytesWritten,
		"skipped_zero", res.BytesSkipped, "resumed", res.BytesResumed, "duration", res.Duration.String())
	if err := sink.Commit(ctx); err != nil {
		sink.Close()
		return err
	}
	if err := sink.Close(); err != nil {
		return err
	}
	rep.Result = res
	debugAzure("finish upload (revoke write access)", tgt.DiskID)
	// Once every byte is written, finishing is not cut short by Ctrl-C: Azure may carry out a revoke
	// whose reply the run no longer waits for, leaving a finished disk the run would call open.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	err = tgt.Finish(fctx)
	cancel()
	if err != nil {
		// The journal stays: a rerun skips every page and only finishes.
		return err
	}
	finished = true
	os.Remove(journal)

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
			return &hintedError{err, "the VM may be deleted: `luksconv` left the old OS disk untouched; re-create it from the plan's rollbackVm (azure.RestoreVM)"}
		}
		rep.VMRecreated = true
	}

	out := c.OutOrStdout()
	if f.asJSON {
		return writeJSON(out, rep)
	}
	fmt.Fprintf(out, "converted %s -> %s: decrypted %s, copied %s, wrote %s in %s\n", id, tgt.DiskID,
		human(res.BytesDecrypted), human(res.BytesCopied), human(res.BytesWritten), res.Duration.Round(time.Millisecond))
	if rep.VMRecreated {
		fmt.Fprintf(out, "re-created VM %s on the new OS disk\n", f.vm)
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(out, "warning: %s\n", blobio.Redact(w))
	}
	return nil
}

// verifyDisk reads the finished disk diskID back and checks it against p and the source src; the
// report goes to stderr (only on failure when the output is JSON or -q).
func (f *azureConvert) verifyDisk(ctx context.Context, cl *azure.Client, p *luksconv.Plan, src *luksconv.Source, diskID string, stderr io.Writer) (err error) {
	out, done, err := grantRead(ctx, cl, diskID, f.workers, stderr)
	if err != nil {
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

// interruptedSnapshot returns the snapshot an interrupted run of this conversion read, when the
// target disk is still an unfinished upload tagged with a snapshot of the source disk; "" otherwise.
func (f *azureConvert) interruptedSnapshot(ctx context.Context, cl *azure.Client, diskID string) string {
	rid, err := arm.ParseResourceID(diskID)
	if err != nil {
		return ""
	}
	rg := f.rg
	if rg == "" {
		rg = rid.ResourceGroupName
	}
	target := (&azure.DiskSpec{ResourceGroup: rg, Name: f.target}).ID(f.subscriptionOf(diskID))
	tags, err := cl.UploadTags(ctx, target)
	if err != nil {
		// No unfinished upload of that name (or it cannot be read): a new snapshot; creating the
		// target disk then says what is wrong with an existing one.
		return ""
	}
	name := tags[sourceTag]
	if name == "" || strings.ContainsAny(name, "/?#") {
		return ""
	}
	snap := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/snapshots/%s", rid.SubscriptionID, rid.ResourceGroupName, name)
	// Only a snapshot of this very disk: a target name reused for another VM must not resume with
	// that VM's data.
	if from, err := cl.SnapshotSource(ctx, snap); err != nil || !strings.EqualFold(from, diskID) {
		return ""
	}
	return snap
}

// resume reopens the target disk that CreateUploadDisk found existing (exists) when it is this
// conversion's unfinished upload: still uploading and tagged with the plan's ID. The journal, if there
// is one, then names what is done; without it every page is written again.
func (f *azureConvert) resume(ctx context.Context, cl *azure.Client, exists error, diskID, journal, planID string, stderr io.Writer) (*azure.UploadTarget, error) {
	_, jerr := os.Stat(journal)
	debugAzure("open upload disk (resume)", diskID, "journal", journal, "journal_found", jerr == nil)
	// Only a disk tagged with this plan is reopened: another disk of that name, a finished upload
	// (Unattached) or another conversion's upload, is refused before any access is granted.
	tgt, err := cl.OpenUploadDisk(ctx, diskID, f.writeAccess, map[string]string{planTag: planID})
	switch {
	case errors.Is(err, azure.ErrState):
		return nil, &hintedError{errors.Join(exists, err), "the target disk exists and is not this conversion's unfinished upload; " +
			"choose another --target-disk, or delete it (luksconv never deletes disks)"}
	case err != nil:
		return nil, err
	case jerr != nil:
		fmt.Fprintf(stderr, "Resuming the upload to %s (no journal at %s: every page is written again)\n", diskID, journal)
	default:
		fmt.Fprintf(stderr, "Resuming the upload to %s (journal %s)\n", diskID, journal)
	}
	return tgt, nil
}

// expiredHint adds what to do to a refused upload: a write SAS that expired (--write-access) is
// granted anew by the same command, which resumes from the journal.
func expiredHint(err error) error {
	if blobio.HTTPStatus(err) == http.StatusForbidden {
		return &hintedError{err, "the disk's write access may have expired (--write-access): run the same command again to grant it anew and resume"}
	}
	return err
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

// decodeBase64Key decodes a key that an old ADE build base64-encoded before wrapping.
func decodeBase64Key(b []byte) ([]byte, error) {
	s := strings.TrimRight(string(b), "=")
	return base64.RawStdEncoding.DecodeString(s)
}
