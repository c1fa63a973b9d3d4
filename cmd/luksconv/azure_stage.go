package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/luksconv/luksconv/azure"
	"github.com/luksconv/luksconv/blobdisk"
	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/extent"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/spf13/cobra"
)

// A delta cutover converts one disk in rounds: each --stage round converts an incremental snapshot of
// the disk, taken while its VM may run, into the new disk, whose upload stays open (ActiveUpload, which
// no VM can attach); a round after the first writes only what changed since the last one's snapshot
// (luksconv.Delta, from the snapshots' page diff). --cutover, with the VM deallocated, is the last
// round, and finishes the disk. What a round needs of the ones before is in the stage record, a file
// in --journal-dir beside the journals: no secret and no SAS, only resource IDs and the last plan.

// stageRecord is the file .luksconv-stage-<target disk>.json.
type stageRecord struct {
	SourceDisk string `json:"source_disk"`
	TargetDisk string `json:"target_disk"`
	// DiskPlanTag is the planTag the new disk was created with (round 1's plan ID): later rounds
	// reopen the upload only when the disk carries it.
	DiskPlanTag string `json:"disk_plan_tag,omitempty"`
	// Disk is what the flags made of the new disk in round 1 (nil in records from before it was kept).
	Disk *stageDisk `json:"disk,omitempty"`
	// Snapshot is the snapshot whose conversion the disk holds: the last finished round's.
	Snapshot string `json:"snapshot,omitempty"`
	Round    int    `json:"round"` // rounds finished
	PlanID   string `json:"plan_id,omitempty"`
	// Plan is the full plan of Snapshot (patch data left out), the prev of the next round's Delta.
	Plan json.RawMessage `json:"plan,omitempty"`
	// Pending is the snapshot of a round that started and has not finished: a rerun reads it again,
	// so that its plan, and its journal, are the same.
	Pending     string    `json:"pending_snapshot,omitempty"`
	PendingTime time.Time `json:"pending_snapshot_time,omitzero"`
	// PendingCutover: Pending was taken by a cutover, with the VM deallocated; a stage round's was
	// taken while the VM could run, and only another stage round may finish it.
	PendingCutover bool `json:"pending_cutover,omitempty"`
	// PendingPlan is the ID of the pending round's delta plan, recorded before it writes anything: a
	// rerun must make the same plan, or the earlier attempt's writes where the two differ would stay.
	PendingPlan string       `json:"pending_plan_id,omitempty"`
	Rounds      []stageRound `json:"rounds,omitempty"`
	Created     time.Time    `json:"created"`
	Updated     time.Time    `json:"updated"`
}

// stageDisk is the new disk's settings that come from the flags, as round 1 created the disk: a
// later round writes into that disk and cannot change them.
type stageDisk struct {
	SKU            armcompute.DiskStorageAccountTypes `json:"sku,omitempty"`
	DES            string                             `json:"des,omitempty"`
	EncryptionType armcompute.EncryptionType          `json:"encryption_type,omitempty"`
	Access         azure.DataAccess                   `json:"access"`
}

func stageDiskOf(spec *azure.DiskSpec) *stageDisk {
	return &stageDisk{SKU: spec.SKU, DES: spec.DiskEncryptionSetID, EncryptionType: spec.EncryptionType, Access: spec.Access}
}

// checkDiskFlags refuses flags (--des, --sku, the data access flags) that ask for another disk than
// round 1 created, d (nil: not recorded): the round would write into that disk as it is, and a
// cutover would finish it with settings other than the ones given. label prefixes the message.
func (f *azureConvert) checkDiskFlags(d *stageDisk, diskID, label, recPath string) error {
	if d == nil {
		return nil
	}
	// The flags applied over the disk's settings as they were applied over the source's in round 1.
	spec := azure.DiskSpec{SKU: d.SKU, DiskEncryptionSetID: f.des, EncryptionType: d.EncryptionType, Access: d.Access}
	f.platformKey(&spec)
	if err := f.applyAccess(&spec); err != nil {
		return err
	}
	diff := diskDiff(&spec, d)
	if len(diff) == 0 {
		return nil
	}
	return &hintedError{fmt.Errorf("%w: %sthe new disk %s was created by round 1 of the stage record %s, and later rounds cannot change it: %s",
		errUsage, label, diskID, recPath, strings.Join(diff, "; ")),
		"give the flags round 1 was given, or delete the new disk (luksconv never deletes disks) and the stage record to start again"}
}

// diskDiff says, flag by flag, where the new disk's settings that come from the flags, in spec, are not
// the ones the disk d has.
func diskDiff(spec *azure.DiskSpec, d *stageDisk) []string {
	var diff []string
	if spec.SKU != d.SKU {
		diff = append(diff, fmt.Sprintf("--sku %s (the disk is %s)", spec.SKU, d.SKU))
	}
	if !strings.EqualFold(spec.DiskEncryptionSetID, d.DES) || spec.EncryptionType != d.EncryptionType {
		diff = append(diff, fmt.Sprintf("--des %q (the disk has %q, %s)", spec.DiskEncryptionSetID, d.DES, d.EncryptionType))
	}
	if spec.Access.AuthMode != d.Access.AuthMode {
		diff = append(diff, fmt.Sprintf("--data-access-auth-mode %s (the disk has %s)", spec.Access.AuthMode, d.Access.AuthMode))
	}
	if a, b := spec.Access, d.Access; a.NetworkAccessPolicy != b.NetworkAccessPolicy || !strings.EqualFold(a.DiskAccessID, b.DiskAccessID) ||
		a.PublicNetworkAccess != b.PublicNetworkAccess {
		net := func(a azure.DataAccess) string {
			return fmt.Sprintf("networkAccessPolicy %s, disk access %s, publicNetworkAccess %s",
				cmp.Or(string(a.NetworkAccessPolicy), "-"), cmp.Or(a.DiskAccessID, "-"), cmp.Or(string(a.PublicNetworkAccess), "-"))
		}
		diff = append(diff, fmt.Sprintf("--network-access-policy and --disk-access ask for %s (the disk has %s)", net(a), net(b)))
	}
	return diff
}

// checkReopened refuses to write into the new disk st, which an earlier run of this conversion
// created, when the flags now ask, in spec, for other settings than it was created with: the run would
// finish that disk as it is and report the flags as applied. A setting the spec leaves to Azure's
// default ("") is not compared, as Azure reports the default it chose.
func checkReopened(st *azure.DiskStatus, spec *azure.DiskSpec, diskID string) error {
	have := stageDisk{SKU: st.SKU, DES: st.DiskEncryptionSetID, EncryptionType: st.EncryptionType, Access: st.Access}
	unset := func(want string, have *string) {
		if want == "" {
			*have = ""
		}
	}
	unset(string(spec.SKU), (*string)(&have.SKU))
	unset(string(spec.EncryptionType), (*string)(&have.EncryptionType))
	unset(string(spec.Access.AuthMode), (*string)(&have.Access.AuthMode))
	unset(string(spec.Access.NetworkAccessPolicy), (*string)(&have.Access.NetworkAccessPolicy))
	unset(spec.Access.DiskAccessID, &have.Access.DiskAccessID)
	unset(string(spec.Access.PublicNetworkAccess), (*string)(&have.Access.PublicNetworkAccess))
	diff := diskDiff(spec, &have)
	if len(diff) == 0 {
		return nil
	}
	return &hintedError{fmt.Errorf("%w: %s was created by an earlier run of this conversion with other settings than asked for now: %s",
		errUsage, diskID, strings.Join(diff, "; ")),
		"give the flags the earlier run was given, or delete the new disk (luksconv never deletes disks) and its journal to start again"}
}

// stageRound is one finished round.
type stageRound struct {
	Round        int           `json:"round"`
	Snapshot     string        `json:"snapshot"`
	SnapshotTime time.Time     `json:"snapshot_time"`
	Cutover      bool          `json:"cutover,omitempty"`
	BytesChanged int64         `json:"bytes_changed,omitempty"` // the diff's changed and cleared bytes (rounds after the first)
	BytesRead    int64         `json:"bytes_read"`              // decrypted and copied
	BytesWritten int64         `json:"bytes_written"`
	Duration     time.Duration `json:"duration_ns"`
	// Plan is how long the plan of Snapshot took (key derivation, guest edits): the cutover plans its
	// final snapshot too, while the VM is down.
	Plan time.Duration `json:"plan_ns,omitempty"`
}

// stageReport is the part of the report a --stage or --cutover run adds.
type stageReport struct {
	Record   string     `json:"record"`
	Round    stageRound `json:"round"`
	Finished bool       `json:"finished"` // the upload was finished (cutover)
	// Snapshots: at the cutover, every round's incremental snapshot, kept (luksconv deletes no
	// snapshot) and listed nowhere else once the record is gone: delete them when the VM runs well on
	// the new disk; the first holds the whole disk and is billed for it.
	Snapshots []string `json:"snapshots,omitempty"`
	stageEstimate
}

// roundSnapshots are the snapshots of rec's rounds, each once, in order, the pending one (the
// cutover's, until the record goes) last.
func roundSnapshots(rec *stageRecord) []string {
	var snaps []string
	for _, r := range rec.Rounds {
		snaps = append(snaps, r.Snapshot)
	}
	snaps = append(snaps, rec.Pending)
	return slices.DeleteFunc(slices.Compact(snaps), func(s string) bool { return s == "" })
}

// printKeptSnapshots lists the stage snapshots a finished cutover leaves.
func printKeptSnapshots(out io.Writer, snaps []string) {
	if len(snaps) > 0 {
		fmt.Fprintf(out, "stage snapshots kept (delete them once the VM runs well on the new disks): %s\n", strings.Join(snaps, " "))
	}
}

// stageEstimate is what --dry-run --cutover adds to the report: the expected downtime and how it was
// estimated; --dry-run --stage adds ExpectedChange.
type stageEstimate struct {
	ExpectedDowntime time.Duration `json:"expected_downtime_ns,omitempty"`
	// ExpectedChange is what the stage rounds' change rate says has changed since the last round's
	// snapshot(s): what the next round would write (0 when two rounds have not measured it).
	ExpectedChange int64  `json:"expected_change_bytes,omitempty"`
	Estimate       string `json:"estimate,omitempty"`
}

// checkStaged validates --stage and --cutover against the other flags (exit 2).
func (f *azureConvert) checkStaged() error {
	if f.deallocate && !f.cutover {
		return fmt.Errorf("%w: --deallocate goes with --cutover: the stage rounds read a running VM's disk", errUsage)
	}
	if !f.stage && !f.cutover {
		return nil
	}
	switch {
	case f.stage && f.cutover:
		return fmt.Errorf("%w: --stage and --cutover are steps of their own: give one", errUsage)
	case !f.wholeVM() && f.src.sourceDisk == "":
		return fmt.Errorf("%w: --stage and --cutover need --source-disk or the whole VM (--vm alone): the rounds take incremental snapshots of the disks", errUsage)
	case f.stage && f.recreate:
		return fmt.Errorf("%w: --stage leaves the new disk uploading: --recreate-vm goes with --cutover", errUsage)
	case f.cutover && f.allowRunning:
		return fmt.Errorf("%w: --cutover needs the VM deallocated: its writes after the final snapshot would be lost (no --allow-running)", errUsage)
	}
	return nil
}

// stagePath is the stage record of --target-disk.
func (f *azureConvert) stagePath() string {
	return filepath.Join(f.journalDir, ".luksconv-stage-"+f.target+".json")
}

func loadStage(name string) (*stageRecord, error) {
	var r *stageRecord
	_, err := loadRecord(name, &r)
	return r, err
}

// loadRecord reads the stage record name into *v, which stays nil (and found false) when there is none.
func loadRecord[T any](name string, v **T) (found bool, err error) {
	b, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("stage record: %w", err)
	}
	r := new(T)
	err = json.Unmarshal(b, r)
	if c, ok := any(r).(interface{ check() error }); ok && err == nil {
		err = c.check()
	}
	if err != nil {
		return false, &hintedError{fmt.Errorf("%w %s: %v", errRecord, name, err),
			"luksconv writes its records whole (through a temporary file); restore this one, or delete it with the disks it names to start again"}
	}
	*v = r
	return true, nil
}

// errRecord is a stage record that is not what luksconv writes: damaged input, which no rerun mends.
var errRecord = errors.New("damaged stage record")

// pend records snap as the snapshot of the round that begins, taken by a cutover or not; "" records
// that no round is pending (the last one finished).
func (r *stageRecord) pend(snap string, cutover bool) {
	r.Pending, r.PendingTime, r.PendingCutover, r.PendingPlan = snap, time.Time{}, cutover, ""
	if snap != "" {
		r.PendingTime = time.Now().UTC()
	}
}

// save writes the record (see saveRecord).
func (r *stageRecord) save(name string) error {
	return saveRecord(name, r, &r.Updated)
}

// saveRecord sets *updated to now and writes the record v whole, mode 0600, through a temporary file,
// so that a crash leaves the old or the new.
func saveRecord(name string, v any, updated *time.Time) error {
	*updated = time.Now().UTC()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("stage record: %w", err)
	}
	if err := os.Rename(tmp, name); err != nil {
		return fmt.Errorf("stage record: %w", err)
	}
	return nil
}

// removeRecord removes the stage record of a finished conversion.
func removeRecord(recPath string) error {
	if err := os.Remove(recPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("stage record: %w", err)
	}
	return nil
}

// runStaged is a --stage round or the --cutover of the source disk id.
func (f *azureConvert) runStaged(c *cobra.Command, id string) (err error) {
	ctx := c.Context()
	stderr, out := c.ErrOrStderr(), c.OutOrStdout()
	recPath := f.stagePath()
	rec, err := loadStage(recPath)
	if err != nil {
		return err
	}
	diskID := f.targetID(id)
	if f.recreate {
		// A cutover that re-created the VM removed the record: run again, it has nothing to do. One
		// killed between the re-creation and the record's removal left it: it goes now (its pending
		// snapshot is stale, the old disk having changed hands, and no round can write to a disk in use).
		cl, err := f.src.client(id)
		if err != nil {
			return err
		}
		if done, err := f.recreatedBefore(ctx, cl, diskID); err != nil || done {
			if err == nil && rec != nil && !f.dryRun {
				err = removeRecord(recPath)
			}
			if err == nil {
				err = f.printRecreatedBefore(ctx, cl, out, &azureReport{Source: id, DryRun: f.dryRun}, diskID)
			}
			return err
		}
	}
	if rec != nil && (!strings.EqualFold(rec.SourceDisk, id) || !strings.EqualFold(rec.TargetDisk, diskID)) {
		return &hintedError{fmt.Errorf("%w: stage record %s is of %s -> %s, not %s -> %s", azure.ErrState, recPath, rec.SourceDisk, rec.TargetDisk, id, diskID),
			"give the --source-disk and --target-disk it was made for, or another --journal-dir"}
	}
	if f.cutover && (rec == nil || rec.Round == 0) {
		return &hintedError{fmt.Errorf("%w: no finished --stage round of %s into %s (no record at %s)", azure.ErrState, id, diskID, recPath),
			"run the same command with --stage first (or convert without --cutover)"}
	}
	if rec != nil {
		if err := f.checkDiskFlags(rec.Disk, diskID, "", recPath); err != nil {
			return err
		}
		// Before the dry run too: it must not promise a cutover that will be refused.
		if err := f.checkPendingStage(rec, diskID, ""); err != nil {
			return err
		}
	}
	rep := &azureReport{Source: id, DryRun: f.dryRun}
	if f.dryRun && f.stage {
		return f.estimateStage(out, rec, recPath, rep)
	} else if f.dryRun {
		return f.estimateCutover(out, rec, recPath, rep)
	}
	cl, err := f.src.client(id)
	if err != nil {
		return err
	}
	opts := f.pf.options(luksconv.FormatVHD)
	if err := f.key(ctx, cl, id, &opts, rep); err != nil {
		return err
	}
	defer func() { clear(opts.Passphrase) }() // useSnapshotKey may put another there
	if rec != nil {
		if err := checkSourceSize(ctx, cl, rec, id, "", recPath); err != nil {
			return err
		}
	}
	if f.recreate {
		if err := cl.CheckLicensing(ctx, f.vm, azure.Licensing(f.license)); err != nil {
			return err
		}
	}
	// A cutover's pending snapshot is checked before --deallocate: a VM started since it makes it stale,
	// and the cutover would take the VM down only to refuse.
	if rec != nil {
		if err := f.checkPending(ctx, cl, rec, id, diskID, "", recPath); err != nil {
			return err
		}
	}
	if err := f.roundOwner(ctx, cl, id, stderr); err != nil {
		return err
	}

	if rec == nil {
		now := time.Now().UTC()
		rec = &stageRecord{SourceDisk: id, TargetDisk: diskID, Created: now}
	}
	round := rec.Round + 1
	snap := rec.Pending
	reread := snap != ""
	if reread {
		fmt.Fprintf(stderr, "Reading snapshot %s again: round %d of the conversion into %s was interrupted\n", snap, round, diskID)
	} else {
		if round == 1 {
			if err := f.checkTarget(ctx, cl, id, f.target); err != nil {
				return err
			}
			if err := f.checkTargetFree(ctx, cl, diskID); err != nil {
				return err
			}
		}
		name := stageSnapshotName(f.target, round)
		debugAzure("snapshot disk (incremental)", id, "snapshot_name", name, "round", round)
		// A snapshot cut off by Ctrl-C that Azure made all the same comes back with the error: it is
		// recorded as well, so that the rerun reads it rather than taking another.
		var serr error
		snap, serr = cl.SnapshotDisk(ctx, id, name, &azure.SnapshotOptions{Incremental: true})
		if snap == "" {
			return serr
		}
		rep.SnapshotCreated = snap
		if !f.quiet {
			fmt.Fprintf(stderr, "Incremental snapshot: %s (kept; delete the stage snapshots when the new disk is verified)\n", snap)
		}
		// Before anything is written: a rerun must read this snapshot again.
		rec.pend(snap, f.cutover)
		if err := rec.save(recPath); err != nil {
			return errors.Join(serr, err)
		}
		if serr != nil {
			return serr
		}
	}

	if err := f.useSnapshotKey(ctx, cl, snap, &opts, rep, stderr); err != nil {
		return err
	}
	sas, src, done, err := grantReadSAS(ctx, cl, snap, f.workers, stderr)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, done()) }()
	planStart := time.Now()
	p, err := f.pf.makePlan(ctx, src, opts)
	if err != nil {
		return err
	}
	defer p.Close()
	planTime := time.Since(planStart)
	rep.Plan = p
	if !f.quiet {
		printPlan(stderr, p)
	} else {
		printWarnings(stderr, p.Warnings)
	}
	journal := f.journal
	stats := stageRound{Round: round, Snapshot: snap, SnapshotTime: rec.PendingTime, Cutover: f.cutover, Plan: planTime}
	var res *luksconv.Result
	if round == 1 {
		spec, err := f.diskSpec(ctx, cl, snap, path.Base(snap), p, rep)
		if err != nil {
			return err
		}
		rep.DiskSpec = spec
		if journal == "" {
			journal = f.defaultJournal(p)
		}
		pr := newProgress(stderr, p.Totals.Copy+p.Totals.Decrypt, f.quiet)
		tgt, r, err := f.upload(ctx, cl, uploadJob{plan: p, src: src, spec: spec, diskID: diskID, journal: journal,
			progress: debugProgress(pr.update), keepOpen: true}, stderr)
		if err != nil {
			return err
		}
		if r == nil {
			return fmt.Errorf("%w: %s is finished already, though the stage record %s says round 1 has not ended", azure.ErrState, diskID, recPath)
		}
		rep.Target, res = tgt, r
		rec.DiskPlanTag, rec.Disk = p.ID(), stageDiskOf(spec)
	} else if tgt := f.finishedCutover(ctx, cl, rec, diskID, reread, p.OutputSize, stderr); tgt != nil {
		rep.Target, rep.AlreadyUploaded = tgt, true
	} else {
		d, err := f.deltaPlan(ctx, cl, rec, p, sas, &stats, "", stderr)
		if err != nil {
			return err
		}
		if err := holdPendingPlan(rec, d, "", func() error { return rec.save(recPath) }); err != nil {
			return err
		}
		if journal == "" {
			journal = f.defaultJournal(d)
		}
		pr := newProgress(stderr, d.Totals.Copy+d.Totals.Decrypt, f.quiet)
		tgt, r, err := f.deltaWrite(ctx, cl, deltaJob{rec: rec, recPath: recPath, d: d, src: src, snapshot: snap, diskID: diskID, journal: journal,
			reread: reread, round: round, progress: debugProgress(pr.update)}, stderr)
		rep.Target = tgt
		if err != nil {
			return err
		}
		rep.AlreadyUploaded, res = r == nil, r
	}
	if res != nil {
		stats.BytesRead, stats.BytesWritten, stats.Duration = res.BytesDecrypted+res.BytesCopied, res.BytesWritten, res.Duration
		rep.Result = res
	}

	if f.stage {
		pj, err := json.Marshal(p)
		if err != nil {
			return err
		}
		rec.Snapshot, rec.Round, rec.PlanID, rec.Plan = snap, round, p.ID(), pj
		rec.pend("", false)
		rec.Rounds = append(rec.Rounds, stats)
		if err := rec.save(recPath); err != nil {
			return err
		}
		// The round is in the record: its journal is done with (a rerun starts the next round).
		if err := os.Remove(journal); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	// A cutover keeps its snapshot pending until the record is removed at the very end: a rerun after
	// a failed verification or VM re-creation reads that snapshot again and finds the disk finished
	// with it, rather than taking a snapshot the finished disk does not hold.
	rep.Stage = &stageReport{Record: recPath, Round: stats, Finished: f.cutover}
	if f.cutover {
		rep.Stage.Snapshots = roundSnapshots(rec)
	}

	if f.cutover {
		if f.verify {
			if err := f.verifyDisk(ctx, cl, p, src, diskID, stderr); err != nil {
				return stagedVerifyHint(err, fmt.Sprintf("do not attach %s: delete it (luksconv never deletes disks)", diskID), recPath)
			}
			rep.Verified = true
		}
		if f.recreate {
			if rep.VMPlan, err = f.recreateVM(ctx, cl, diskID, nil); err != nil {
				return finishedAnyway(err, recPath)
			}
			rep.VMRecreated = true
		}
		// The conversion is over: nothing is left to resume or to delta against.
		if err := removeRecord(recPath); err != nil {
			return err
		}
	}

	if f.asJSON {
		return writeJSON(out, rep)
	}
	if f.cutover {
		fmt.Fprintf(out, "cutover %s -> %s (round %d): read %s, wrote %s in %s; the disk is finished\n", id, diskID, round,
			human(stats.BytesRead), human(stats.BytesWritten), stats.Duration.Round(time.Millisecond))
		printKeptSnapshots(out, rep.Stage.Snapshots)
	} else {
		fmt.Fprintf(out, "stage round %d %s -> %s: read %s, wrote %s in %s; the upload stays open (ActiveUpload) for the next round or --cutover\n",
			round, id, diskID, human(stats.BytesRead), human(stats.BytesWritten), stats.Duration.Round(time.Millisecond))
	}
	if rep.VMRecreated {
		printRecreated(out, f.vm, "the new OS disk", rep.VMPlan)
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(out, "warning: %s\n", blobio.Redact(w))
	}
	return nil
}

// checkPending refuses a cutover that would finish the new disk diskID from a pending snapshot of
// the disk sourceID that is not the VM's final state: a stage round's (taken while the VM could run;
// the new disk may hold part of that round, so only a stage round can finish it), or a cutover's own
// that the VM has run since. label prefixes the error ("" for one disk).
func (f *azureConvert) checkPending(ctx context.Context, cl *azure.Client, rec *stageRecord, sourceID, diskID, label, recPath string) error {
	if err := f.checkPendingStage(rec, diskID, label); err != nil || !f.cutover || rec.Pending == "" {
		return err
	}
	err := cl.CheckSnapshotCurrent(ctx, rec.Pending, sourceID)
	if !errors.Is(err, azure.ErrState) {
		return err
	}
	if st, serr := cl.DiskStatus(ctx, diskID); serr == nil && finishedUpload(st.State) {
		return &hintedError{fmt.Errorf("%s%w; the new disk %s was finished from it", label, err, diskID),
			"the finished disk lacks what the VM wrote since and cannot take more: delete it (luksconv never deletes disks) and the stage record " +
				recPath + ", then convert again"}
	}
	return &hintedError{fmt.Errorf("%s%w", label, err), pendingAgain}
}

// checkSourceSize refuses a round after the first when the source disk sourceID is no longer the size
// the last round converted (its plan's source): Azure resized it, and the new disk, created at the
// old size, cannot take the disk as it is now (luksconv.Delta would refuse it). It runs before the
// round's snapshot and before --deallocate, so that neither is done for a round that cannot go on,
// and names the way out, which no rerun offers. label prefixes the error ("" for one disk).
func checkSourceSize(ctx context.Context, cl *azure.Client, rec *stageRecord, sourceID, label, recPath string) error {
	if rec.Round == 0 || len(rec.Plan) == 0 {
		return nil
	}
	var prev struct {
		Source luksconv.ImageInfo `json:"source"`
	}
	if err := json.Unmarshal(rec.Plan, &prev); err != nil {
		return fmt.Errorf("stage record: the plan of round %d: %w", rec.Round, err)
	}
	debugAzure("read source disk (size)", sourceID)
	st, err := cl.DiskStatus(ctx, sourceID)
	if err != nil {
		return err
	}
	if st.SizeBytes == 0 || prev.Source.Size == 0 || st.SizeBytes == prev.Source.Size {
		return nil
	}
	return &hintedError{fmt.Errorf("%w: %s%s was resized from %d to %d bytes since stage round %d of %s: the new disk %s was made for the old size",
		luksconv.ErrInvalidOption, label, sourceID, prev.Source.Size, st.SizeBytes, rec.Round, recPath, rec.TargetDisk),
		"a staged conversion cannot follow a resize: delete the new disk (luksconv never deletes disks), the stage record and the stage snapshots, then stage again"}
}

const pendingAgain = "finish that round first with the same command, --stage instead of --cutover; then cut over"

// checkPendingStage is the part of checkPending that needs nothing from Azure: a cutover refuses a
// stage round that was interrupted. It runs before --deallocate, which would otherwise take the VM
// down for a cutover that cannot go on.
func (f *azureConvert) checkPendingStage(rec *stageRecord, diskID, label string) error {
	if !f.cutover || rec.Pending == "" || rec.PendingCutover {
		return nil
	}
	return &hintedError{fmt.Errorf("%w: %sstage round %d, from snapshot %s taken at %s while the VM could run, was interrupted, and the new disk %s may hold part of it",
		azure.ErrState, label, rec.Round+1, rec.Pending, rec.PendingTime.Format(time.RFC3339), diskID), pendingAgain}
}

// stagedVerifyHint gives a cutover's failed verification (err) the way out, what (the disks to delete)
// and the stage record recPath, then staging again: deleting the disks alone would leave a record
// whose rounds no run can finish. Other errors are returned as they are.
func stagedVerifyHint(err error, what, recPath string) error {
	if !errors.Is(err, luksconv.ErrVerifyFailed) {
		return err
	}
	return &hintedError{err, fmt.Sprintf("%s and the stage record %s, then convert again: --stage, then --cutover", what, recPath)}
}

// finishedUpload reports whether an upload disk in state st was finished: Unattached, or with a read
// SAS open on it (a verification's grant, or an operator's), which a finished disk may have and an
// unfinished one (ActiveUpload) cannot.
func finishedUpload(st armcompute.DiskState) bool {
	switch st {
	case armcompute.DiskStateUnattached, armcompute.DiskStateActiveSAS, armcompute.DiskStateActiveSASFrozen:
		return true
	}
	return false
}

// finishedAnyway returns err, the failure of a cutover's VM re-creation, and removes the stage record
// recPath when the VM was re-created all the same (a *azure.LicenseError): the conversion is over, and
// a rerun must not act on a record of it.
func finishedAnyway(err error, recPath string) error {
	var le *azure.LicenseError
	if errors.As(err, &le) {
		if rerr := os.Remove(recPath); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return errors.Join(err, fmt.Errorf("stage record: %w", rerr))
		}
	}
	return err
}

// holdPendingPlan ties a round after the first to its delta plan d: the plan's ID is recorded (by
// save) before anything of the round is written, and a rerun that reads the round's snapshot again
// must make the same plan. Another plan (other flags, another luksconv version) would be written as if
// the disk held only the last finished round, leaving the earlier attempt's writes where the two plans
// differ. label prefixes the error ("" for one disk).
func holdPendingPlan(rec *stageRecord, d *luksconv.Plan, label string, save func() error) error {
	switch id := d.ID(); rec.PendingPlan {
	case "":
		rec.PendingPlan = id
		return save()
	case id:
		return nil
	default:
		// Exit 2: the same command gives the same plan, so no retry (a fleet engine's) can change it.
		return &hintedError{fmt.Errorf("%w: %sround %d was begun with another plan (%s; now %s): the flags or luksconv's version differ",
			errUsage, label, rec.Round+1, rec.PendingPlan, id),
			"run it again with the flags and the luksconv version it was begun with"}
	}
}

// stageSnapshotName names round's snapshot of the disk converted into the new disk target: the target's
// name, cut so that the whole fits Azure's 80 characters, then -luksconv-r<round>-<Unix time>. The
// record keeps the snapshot's ID, so nothing parses the name back.
func stageSnapshotName(target string, round int) string {
	suffix := fmt.Sprintf("-luksconv-r%d-%d", round, time.Now().Unix())
	return target[:max(0, min(len(target), maxDiskName-len(suffix)))] + suffix
}

// recreateVM plans the re-creation of --vm around the new OS disk osDisk and the new data disks by
// LUN, and carries it out (a cutover's last step: the disks are finished and verified).
func (f *azureConvert) recreateVM(ctx context.Context, cl *azure.Client, osDisk string, data map[int]string) (*azure.VMPlan, error) {
	debugAzure("plan VM re-creation", f.vm, "new_os_disk", osDisk)
	vp, err := cl.PlanRecreateVMWith(ctx, f.vm, osDisk, data, azure.RecreateOptions{EncryptionAtHost: f.eah, License: azure.Licensing(f.license)})
	if err != nil {
		return nil, err
	}
	debugAzure("re-create VM", f.vm)
	if err := cl.RecreateVM(ctx, vp); err != nil {
		return vp, recreateError(err)
	}
	return vp, nil
}

// roundOwner readies the VM of the disk id for a round: a stage round reads a running VM's disk
// (crash-consistent, warned: the planner copies a filesystem with a dirty log in full); the cutover
// must not lose a write, so its VM is deallocated, by --deallocate or beforehand.
func (f *azureConvert) roundOwner(ctx context.Context, cl *azure.Client, id string, stderr io.Writer) error {
	if f.cutover && f.deallocate {
		if err := f.deallocateOwner(ctx, cl, id, stderr); err != nil {
			return err
		}
	}
	allow := f.allowRunning
	f.allowRunning = f.stage
	defer func() { f.allowRunning = allow }()
	return f.checkQuiet(ctx, cl, id, stderr)
}

// How long --deallocate waits for the VM to report itself deallocated after the deallocation ended,
// and how often it looks.
var (
	deallocateWait = 10 * time.Minute
	deallocatePoll = 5 * time.Second
)

// deallocateOwner deallocates the VM the disk id is attached to, if it runs or is stopped (--cutover
// --deallocate), and waits until its power state says deallocated. A disk with no VM, or whose VM is
// deallocated already, is left alone.
func (f *azureConvert) deallocateOwner(ctx context.Context, cl *azure.Client, id string, stderr io.Writer) error {
	debugAzure("read disk owner", id)
	o, err := cl.ReadDiskOwner(ctx, id)
	if err != nil || o.VMID == "" || o.PowerState == "deallocated" {
		return err
	}
	vm := o.VMID
	if !f.quiet {
		fmt.Fprintf(stderr, "Deallocating VM %s (it is %s): the cutover reads %s with no guest writing to it\n", vm, o.PowerState, id)
	}
	debugAzure("deallocate VM", vm, "power_state", o.PowerState)
	if err := cl.DeallocateVM(ctx, vm); err != nil {
		return err
	}
	deadline := time.Now().Add(deallocateWait)
	for {
		debugAzure("read disk owner (after deallocate)", id)
		if o, err = cl.ReadDiskOwner(ctx, id); err != nil {
			return err
		}
		if o.VMID == "" || o.PowerState == "deallocated" {
			return nil
		}
		if !strings.EqualFold(o.VMID, vm) {
			return fmt.Errorf("%w: disk %s moved to VM %s while VM %s was deallocated", azure.ErrState, id, o.VMID, vm)
		}
		if time.Now().After(deadline) {
			return &hintedError{fmt.Errorf("%w: VM %s is still %s %s after its deallocation", azure.ErrState, vm, o.PowerState, deallocateWait),
				"deallocate it (az vm deallocate) and run the same command again"}
		}
		t := time.NewTimer(deallocatePoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// deltaPlan is the plan of a round after the first: what changed between the record's snapshot and
// the snapshot p was made from (read through sas), by luksconv.Delta of the record's plan and p. label
// prefixes its message ("" for one disk).
func (f *azureConvert) deltaPlan(ctx context.Context, cl *azure.Client, rec *stageRecord, p *luksconv.Plan, sas string, stats *stageRound,
	label string, stderr io.Writer) (*luksconv.Plan, error) {
	var prev luksconv.Plan
	if err := json.Unmarshal(rec.Plan, &prev); err != nil {
		return nil, fmt.Errorf("stage record: the plan of round %d: %w", rec.Round, err)
	}
	changed, err := f.changedSince(ctx, cl, sas, rec.Snapshot, stderr)
	if err != nil {
		return nil, err
	}
	for _, r := range changed {
		stats.BytesChanged += r.Len
	}
	d, err := luksconv.Delta(&prev, p, changed)
	if err != nil {
		return nil, err
	}
	if !f.quiet {
		fmt.Fprintf(stderr, "%sRound %d: %s changed since %s; rewriting %s (decrypt %s, copy %s, zero %s)\n", label, stats.Round, human(stats.BytesChanged),
			rec.Snapshot, human(d.Totals.Decrypt+d.Totals.Copy+d.Totals.Zero), human(d.Totals.Decrypt), human(d.Totals.Copy), human(d.Totals.Zero))
	}
	return d, nil
}

// finishedCutover returns the new disk diskID when an earlier run of this cutover finished it from
// the pending snapshot this run reads again (reread) and stopped after (a failed verification or VM
// re-creation, a killed process; the finish follows the last write, so the disk holds this round);
// nil otherwise. Such a disk takes no delta, so no page diff either:
// the last stage round's snapshot that the diff needs may be deleted by then.
func (f *azureConvert) finishedCutover(ctx context.Context, cl *azure.Client, rec *stageRecord, diskID string, reread bool, size int64, stderr io.Writer) *azure.UploadTarget {
	if !f.cutover || !reread {
		return nil
	}
	st, err := cl.DiskStatus(ctx, diskID)
	if err != nil || !finishedUpload(st.State) || st.Tags[planTag] != rec.DiskPlanTag {
		return nil // deltaWrite reads it again, and reports what it finds
	}
	fmt.Fprintf(stderr, "%s was finished by an earlier run of this cutover\n", diskID)
	return &azure.UploadTarget{DiskID: diskID, SizeBytes: size, UploadSizeBytes: size + azure.VHDFooterSize, Tags: st.Tags}
}

// deltaJob is a round after the first of one disk: the delta plan d, its source, the open upload it
// goes into and the journal.
type deltaJob struct {
	rec      *stageRecord
	recPath  string // the stage record, for the hint of a disk that is not this conversion's
	d        *luksconv.Plan
	src      *luksconv.Source
	snapshot string // the round's snapshot: a Trusted Launch disk's finish copies its VM guest state
	diskID   string
	journal  string
	reread   bool // the round's snapshot is the record's pending one: an earlier run started the round
	round    int
	progress func(luksconv.Progress)
}

// deltaWrite writes j.d into the open upload j.diskID; the cutover finishes the upload. The result is
// nil when an earlier run of this cutover finished the disk (finishedCutover, which the callers ask
// before they plan the delta; a disk that could not be read then is read again here).
func (f *azureConvert) deltaWrite(ctx context.Context, cl *azure.Client, j deltaJob, stderr io.Writer) (*azure.UploadTarget, *luksconv.Result, error) {
	diskID := j.diskID
	if tgt := f.finishedCutover(ctx, cl, j.rec, diskID, j.reread, j.d.OutputSize, stderr); tgt != nil {
		return tgt, nil, nil
	}
	if !f.cutover && j.reread && j.rec.PendingCutover {
		if st, err := cl.DiskStatus(ctx, diskID); err == nil && finishedUpload(st.State) && st.Tags[planTag] == j.rec.DiskPlanTag {
			return nil, nil, &hintedError{fmt.Errorf("%w: %s was finished by a cutover from snapshot %s, which stopped before its end", azure.ErrState, diskID, j.snapshot),
				"run the same command with --cutover instead of --stage: it finds the disk finished and completes the cutover"}
		}
	}
	found, err := journalFound(j.journal)
	if err != nil {
		return nil, nil, err
	}
	debugAzure("open upload disk (stage round)", diskID, "round", j.round, "journal", j.journal, "journal_found", found)
	sasFor := f.writeAccess // round 1 set it from the plan (diskSpec); later rounds make no disk
	if sasFor == 0 {
		sasFor = azure.UploadAccessFor(j.d.OutputSize)
	}
	tgt, err := cl.OpenUploadDisk(ctx, diskID, sasFor, map[string]string{planTag: j.rec.DiskPlanTag})
	if err != nil {
		if errors.Is(err, azure.ErrState) {
			return nil, nil, &hintedError{err, "the stage record's disk is not this conversion's open upload any more: delete the record " +
				j.recPath + " and the disk (luksconv never deletes disks) to start again"}
		}
		return nil, nil, err
	}
	// The cutover's snapshot is the VM's last state: its guest state (vTPM, UEFI variables) goes with
	// the disk, as in a one-pass conversion.
	tgt.GuestStateSource, tgt.GuestStateLogf = j.snapshot, blobLog
	access, err := cl.ReadDataAccess(ctx, diskID)
	if err != nil {
		return tgt, nil, err
	}
	oo := blobdisk.OutputOptions{
		Options: blobdisk.Options{Workers: f.workers, Logf: blobLog, Bearer: cl.DataBearer(access), Timeout: blobTimeout}, Journal: j.journal,
		// Reopened only when tagged by this conversion, and holding the last round's disk.
		SameTarget: true, HoldsData: true}
	if f.cutover {
		oo.Finish = func(ctx context.Context) error {
			debugAzure("finish upload (revoke write access)", tgt.DiskID)
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			defer cancel()
			return tgt.Finish(fctx)
		}
	}
	bo, err := blobdisk.CreateOutput(ctx, j.d, tgt.SASURL, oo)
	if err != nil {
		return tgt, nil, accessHint(err, access, tgt.Expires, diskID)
	}
	var o luksconv.Output = bo
	if azureOutputHook != nil {
		o = azureOutputHook(&uploadJob{plan: j.d, src: j.src, diskID: diskID, journal: j.journal}, o)
	}
	res, err := luksconv.Execute(ctx, j.d, j.src, o, luksconv.ExecuteOptions{Workers: f.workers, Progress: j.progress})
	if err != nil {
		o.Abort()
		fmt.Fprintf(stderr, "luksconv: the upload to %s stays open so that the same command resumes round %d (journal %s)\n", diskID, j.round, j.journal)
		return tgt, nil, accessHint(err, access, tgt.Expires, diskID)
	}
	if f.stage {
		// No footer and no revoke: the disk stays ActiveUpload for the next round.
		return tgt, res, o.Abort()
	}
	if err := o.Commit(ctx); err != nil {
		fmt.Fprintf(stderr, "luksconv: the upload to %s stays open so that the same command resumes the cutover (journal %s)\n", diskID, j.journal)
		return tgt, nil, err
	}
	return tgt, res, nil
}

// changedSince lists the bytes of the snapshot at sas that changed or were cleared since the
// snapshot prevID, from the page diff (x-ms-previous-snapshot-url); prevID is granted for reading only
// for the call.
func (f *azureConvert) changedSince(ctx context.Context, cl *azure.Client, sas, prevID string, stderr io.Writer) (_ []extent.Range, err error) {
	prevSAS, done, err := grantAccess(ctx, cl, prevID, stderr)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, done()) }()
	access, err := cl.ReadDataAccess(ctx, prevID)
	if err != nil {
		return nil, err
	}
	b, err := blobio.OpenPageBlob(ctx, sas, blobio.SourceOptions{Workers: f.workers, Logf: blobLog, Bearer: cl.DataBearer(access),
		Retry: blobio.RetryOptions{NoProgress: blobTimeout}})
	if err != nil {
		return nil, err
	}
	defer b.Close()
	changed, cleared, err := b.ChangedSince(ctx, blobio.Previous{URL: prevSAS})
	if err != nil {
		return nil, err
	}
	return append(changed, cleared...), nil
}

// targetID is the resource ID of --target-disk for the source disk id.
func (f *azureConvert) targetID(id string) string {
	rg := f.rg
	if rg == "" {
		if rid, err := arm.ParseResourceID(id); err == nil {
			rg = rid.ResourceGroupName
		}
	}
	return (&azure.DiskSpec{ResourceGroup: rg, Name: f.target}).ID(f.subscriptionOf(id))
}

// changeRate is the rate, in bytes per hour, at which the stage rounds after the first wrote into the
// disk, between each round's snapshot and the one before it, and the bytes that rate gives for the
// time since the last snapshot; ok is false until two rounds have run.
func changeRate(rounds []stageRound) (rate float64, expect int64, since time.Duration, ok bool) {
	var bytes int64
	var span time.Duration
	for i := 1; i < len(rounds); i++ {
		bytes += rounds[i].BytesWritten
		span += rounds[i].SnapshotTime.Sub(rounds[i-1].SnapshotTime)
	}
	if len(rounds) < 2 || span <= 0 {
		return 0, 0, 0, false
	}
	rate = float64(bytes) / span.Hours()
	since = time.Since(rounds[len(rounds)-1].SnapshotTime)
	return rate, int64(rate * since.Hours()), since, true
}

// downtime is the expected downtime of a cutover that plans its final snapshot(s) in plan, writes n
// bytes into a disk (or the disks that go at the same time) and, with --verify, reads verify bytes
// back.
func (f *azureConvert) downtime(plan time.Duration, n, verify int64) time.Duration {
	d := azure.CutoverDeallocate + azure.CutoverSnapshot + plan + time.Duration(float64(n)/float64(azure.StageRate)*float64(time.Second))
	if f.recreate {
		d += azure.CutoverRecreate
	}
	if f.verify {
		d += time.Duration(float64(verify) / float64(azure.StageRate) * float64(time.Second))
	}
	return d
}

// recordedReads is what the verification of the disk rec holds reads back: the data its last plan
// copies and decrypts (0 when the record holds no plan).
func recordedReads(rec *stageRecord) int64 {
	var p struct {
		Totals luksconv.Totals `json:"totals"`
	}
	if json.Unmarshal(rec.Plan, &p) != nil {
		return 0
	}
	return p.Totals.Copy + p.Totals.Decrypt
}

// stageRecorded reports whether the stage record name may exist: a dry run of --stage then says what
// the next round would do rather than show round 1's full plan. An error other than "not there" counts
// as there, and the record's reading reports it.
func stageRecorded(name string) bool {
	_, err := os.Stat(name)
	return !errors.Is(err, os.ErrNotExist)
}

// estimateStage prints what the next --stage round of the record would do, and how much it would
// write by the change rate the rounds measured; like estimateCutover it reads the record only.
func (f *azureConvert) estimateStage(out io.Writer, rec *stageRecord, recPath string, rep *azureReport) error {
	if rec == nil {
		return fmt.Errorf("%w: the stage record %s is gone", azure.ErrState, recPath)
	}
	msg, expect := nextStageRound(rec, "")
	rep.Stage = &stageReport{Record: recPath, Round: stageRound{Round: rec.Round + 1, Snapshot: rec.Pending},
		stageEstimate: stageEstimate{ExpectedChange: expect}}
	if f.asJSON {
		return writeJSON(out, rep)
	}
	fmt.Fprintln(out, msg)
	return nil
}

// nextStageRound says what the next stage round of one disk's record r would do (label prefixes it),
// and what it would write by the measured change rate (0: not measured).
func nextStageRound(r *stageRecord, label string) (string, int64) {
	n := r.Round + 1
	switch {
	case r.Pending != "":
		return fmt.Sprintf("%sstage round %d was interrupted: would read its snapshot %s again and resume the upload into %s from its journal",
			label, n, r.Pending, r.TargetDisk), 0
	case len(r.Rounds) == 0:
		return fmt.Sprintf("%sstage round %d: would take an incremental snapshot of %s and convert it into %s", label, n, r.SourceDisk, r.TargetDisk), 0
	}
	last := r.Rounds[len(r.Rounds)-1]
	msg := fmt.Sprintf("%sstage round %d: would take an incremental snapshot of %s and write what changed since round %d's snapshot (%s ago) into %s, whose upload stays open",
		label, n, r.SourceDisk, r.Round, time.Since(last.SnapshotTime).Round(time.Second), r.TargetDisk)
	rate, expect, _, ok := changeRate(r.Rounds)
	if !ok {
		return msg + "; the change rate needs two rounds", 0
	}
	return fmt.Sprintf("%s; about %s at the measured change rate of %s per hour", msg, human(expect), human(int64(rate))), expect
}

// estimateCutover prints the expected downtime of the cutover from the change rate the stage rounds
// measured (azure.MeasuredCutoverFormula); it reads the record only.
func (f *azureConvert) estimateCutover(out io.Writer, rec *stageRecord, recPath string, rep *azureReport) error {
	sr := &stageReport{Record: recPath, stageEstimate: stageEstimate{Estimate: azure.MeasuredCutoverFormula}}
	rep.Stage = sr
	var msg string
	if rate, expect, since, ok := changeRate(rec.Rounds); !ok {
		msg = fmt.Sprintf("cannot estimate the cutover's downtime: %d stage round(s), and the change rate needs two; run --stage again later", len(rec.Rounds))
	} else {
		plan := rec.Rounds[len(rec.Rounds)-1].Plan
		sr.ExpectedDowntime = f.downtime(plan, expect, recordedReads(rec))
		msg = fmt.Sprintf("expected downtime of the cutover: %s (change rate %s per hour, %s expected since the last snapshot %s ago; plan %s)",
			sr.ExpectedDowntime.Round(time.Second), human(int64(rate)), human(expect), since.Round(time.Second), plan.Round(time.Millisecond))
	}
	if f.asJSON {
		return writeJSON(out, rep)
	}
	if f.deallocate {
		fmt.Fprintf(out, "%s\n  %s\nWould deallocate the VM of %s if it runs, take an incremental snapshot of it, write what changed into %s and finish it\n",
			msg, azure.MeasuredCutoverFormula, rec.SourceDisk, rec.TargetDisk)
		return nil
	}
	fmt.Fprintf(out, "%s\n  %s\nWould take an incremental snapshot of %s, write what changed into %s and finish it\n", msg, azure.MeasuredCutoverFormula,
		rec.SourceDisk, rec.TargetDisk)
	return nil
}
