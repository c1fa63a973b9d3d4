package main

import (
	"context"
	"crypto/sha256"
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

	"github.com/luksconv/luksconv/azure"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/spf13/cobra"
)

// The delta cutover of a whole VM (`azure convert --vm VM --stage`, then `--cutover`) is the one-disk
// delta cutover (azure_stage.go) for every disk the whole-VM run converts, planned together as that
// run plans them (luksconv.NewVMPlan: the OS disk's edits use what the data disks hold), with one
// record for the VM. The disks advance together: round n of the VM is round n of every disk, and a
// round is recorded only when every disk has finished it, so a rerun after a failure reads each
// disk's pending snapshot again and resumes from its journal.
//
// The stage rounds snapshot a running VM's disks one after the other: each snapshot is
// crash-consistent, but the disks are not of one moment. That does not matter for the result: each
// round moves what changed since that disk's own last snapshot, and the cutover's snapshots, taken
// with the VM deallocated, are of one moment.

// vmStageRecord is the file .luksconv-stage-vm-<VM name>-<hash of its ID>.json in --journal-dir.
type vmStageRecord struct {
	VM      string         `json:"vm"`
	Round   int            `json:"round"` // rounds every disk has finished
	Disks   []*vmStageDisk `json:"disks"` // the OS disk first, then by LUN, as the run converts them
	Created time.Time      `json:"created"`
	Updated time.Time      `json:"updated"`
	// Skipped are the optional disks (dual pass) round 1 read and found nothing to convert on: later
	// rounds leave out these disks, at these LUNs, and no other, so that a disk attached since is
	// refused as check refuses any other change of the disks rather than left out unread.
	Skipped []vmStageSkipped `json:"skipped,omitempty"`
}

// vmStageSkipped is an optional disk round 1 skipped.
type vmStageSkipped struct {
	LUN        int    `json:"lun"`
	SourceDisk string `json:"source_disk"`
}

// vmStageDisk is one disk's stage record within the VM's.
type vmStageDisk struct {
	LUN int `json:"lun"` // luksconv.OSDisk (-1) for the OS disk
	stageRecord
}

// vmStageReport is the part of the report a whole VM's --stage or --cutover run adds; each disk's
// round is in its own entry of the report's disks.
type vmStageReport struct {
	Record   string `json:"record"`
	Round    int    `json:"round"`
	Finished bool   `json:"finished"` // the uploads were finished (cutover)
	// Snapshots: at the cutover, every disk's round snapshots, kept (as stageReport's).
	Snapshots []string `json:"snapshots,omitempty"`
	stageEstimate
}

// vmStagePath is the stage record of --vm: named for the VM, and for a hash of its resource ID, since a
// fleet's VMs in several resource groups or subscriptions share one --journal-dir and may share names.
func (f *azureConvert) vmStagePath() string {
	h := sha256.Sum256([]byte(strings.ToLower(f.vm)))
	return filepath.Join(f.journalDir, fmt.Sprintf(".luksconv-stage-vm-%s-%x.json", path.Base(f.vm), h[:4]))
}

// check refuses a record in which a disk is missing (null): its code reads every disk's.
func (r *vmStageRecord) check() error {
	for i, d := range r.Disks {
		if d == nil {
			return fmt.Errorf("disks[%d] is null", i)
		}
	}
	return nil
}

// checkDisks refuses a record whose disks are not the ones the run would convert now.
func (r *vmStageRecord) checkDisks(disks []*azureVMDisk) error {
	same := len(r.Disks) == len(disks)
	for i := 0; same && i < len(disks); i++ {
		rd, d := r.Disks[i], disks[i]
		same = rd.LUN == d.LUN && strings.EqualFold(rd.SourceDisk, d.Source) && strings.EqualFold(rd.TargetDisk, d.diskID)
	}
	if same {
		return nil
	}
	var was, is []string
	for _, d := range r.Disks {
		was = append(was, fmt.Sprintf("%s %s", diskName(d.LUN), path.Base(d.SourceDisk)))
	}
	for _, d := range disks {
		is = append(is, fmt.Sprintf("%s %s", diskName(d.LUN), path.Base(d.Source)))
	}
	return fmt.Errorf("%w: the VM's ADE disks (%s) are not those of its stage record (%s)", azure.ErrState, strings.Join(is, ", "), strings.Join(was, ", "))
}

// dropSkipped leaves out the optional disks (dual pass) that round 1 skipped (r.Skipped). They stay
// attached as they are, as planVM reports.
func (r *vmStageRecord) dropSkipped(disks []*azureVMDisk, rep *azureVMReport) []*azureVMDisk {
	kept := disks[:0:0]
	for _, d := range disks {
		if d.Optional && slices.ContainsFunc(r.Skipped, func(s vmStageSkipped) bool { return s.LUN == d.LUN && strings.EqualFold(s.SourceDisk, d.Source) }) {
			d.Convert = false
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("LUN %d (%s) carries no ADE settings (dual pass) and the first stage round found nothing to convert on it: it is not converted and stays attached as it is",
				d.LUN, d.disk.Name))
			continue
		}
		kept = append(kept, d)
	}
	return kept
}

// runVMStaged is a --stage round or the --cutover of the whole VM --vm.
func (f *azureConvert) runVMStaged(c *cobra.Command) (err error) {
	ctx := c.Context()
	stderr := &lockedWriter{w: c.ErrOrStderr()}
	out := c.OutOrStdout()
	if err := f.checkVM(); err != nil {
		return err
	}
	recPath := f.vmStagePath()
	var rec *vmStageRecord
	if found, err := loadRecord(recPath, &rec); err != nil {
		return err
	} else if found && !strings.EqualFold(rec.VM, f.vm) {
		return &hintedError{fmt.Errorf("%w: stage record %s is of VM %s, not %s", azure.ErrState, recPath, rec.VM, f.vm), "give another --journal-dir"}
	}
	rep := &azureVMReport{VM: f.vm, DryRun: f.dryRun}
	if f.cutover && (rec == nil || rec.Round == 0) {
		err := &hintedError{fmt.Errorf("%w: no finished --stage round of VM %s (no record at %s)", azure.ErrState, f.vm, recPath),
			"run the same command with --stage first (or convert without --cutover)"}
		if rec != nil || f.dryRun {
			return err
		}
		// The cutover removes the record once the VM is converted: a cutover run again finds none.
		cl, cerr := f.src.client(f.vm)
		if cerr != nil {
			return cerr
		}
		if _, cerr := f.vmDisks(ctx, cl, rep); cerr != nil {
			return cerr
		}
		if done, cerr := f.convertedVM(ctx, cl, rep); cerr != nil {
			return cerr
		} else if !done {
			return err
		}
		return f.printConverted(ctx, cl, out, rep)
	}
	if rec != nil {
		for _, d := range rec.Disks {
			if err := f.checkDiskFlags(d.Disk, d.TargetDisk, diskName(d.LUN)+": ", recPath); err != nil {
				return err
			}
			// Before the dry run too: it must not promise a cutover that will be refused.
			if err := f.checkPendingStage(&d.stageRecord, d.TargetDisk, diskName(d.LUN)+": "); err != nil {
				return err
			}
		}
	}
	if f.dryRun && f.stage {
		return f.estimateVMStage(out, rec, recPath, rep)
	} else if f.dryRun {
		return f.estimateVMCutover(out, rec, recPath, rep)
	}
	cl, err := f.src.client(f.vm)
	if err != nil {
		return err
	}
	disks, err := f.vmDisks(ctx, cl, rep)
	if err != nil {
		return err
	}
	defer func() {
		for _, d := range disks {
			clear(d.pass)
		}
	}()
	// Converted already: a record left means a run killed between the VM's re-creation and the
	// record's removal; it goes now (no round can write to disks in use).
	if done, err := f.convertedVM(ctx, cl, rep); err != nil {
		return err
	} else if done {
		if rec != nil {
			if err := removeRecord(recPath); err != nil {
				return err
			}
		}
		return f.printConverted(ctx, cl, out, rep)
	}
	if rec != nil {
		disks = rec.dropSkipped(disks, rep)
		if err := rec.checkDisks(disks); err != nil {
			return &hintedError{err, "a disk was attached, detached or replaced since the first round: delete the record " + recPath +
				" and the VM's new disks (luksconv never deletes disks) to start again"}
		}
		for _, d := range rec.Disks {
			if err := checkSourceSize(ctx, cl, &d.stageRecord, d.SourceDisk, diskName(d.LUN)+": ", recPath); err != nil {
				return err
			}
		}
	}
	if f.recreate {
		if err := cl.CheckLicensing(ctx, f.vm, azure.Licensing(f.license)); err != nil {
			return err
		}
	}
	// The keys before the VM is deallocated (--deallocate): a cutover that cannot unlock the disks
	// must not take the VM down.
	if err := f.vmKeys(ctx, cl, disks, rep); err != nil {
		return err
	}
	// Each pending snapshot is checked before --deallocate (see runStaged), and only here: a record
	// made below, for round 1, has none.
	if rec != nil {
		for i, d := range disks {
			if err := f.checkPending(ctx, cl, &rec.Disks[i].stageRecord, d.disk.DiskID, d.diskID, diskName(d.LUN)+": ", recPath); err != nil {
				return err
			}
		}
	}
	if err := f.roundOwner(ctx, cl, disks[0].disk.DiskID, stderr); err != nil {
		return err
	}

	if rec == nil {
		now := time.Now().UTC()
		rec = &vmStageRecord{VM: f.vm, Created: now}
		for _, d := range disks {
			rec.Disks = append(rec.Disks, &vmStageDisk{LUN: d.LUN, stageRecord: stageRecord{SourceDisk: d.Source, TargetDisk: d.diskID, Created: now}})
		}
	}
	round := rec.Round + 1
	if round == 1 {
		if err := f.checkVMTargets(ctx, cl, disks); err != nil {
			return err
		}
	}
	rereads, err := f.vmStageSnapshots(ctx, cl, rec, recPath, disks, round, stderr)
	if err != nil {
		return err
	}
	for _, d := range disks {
		d.readID = d.Snapshot
	}
	if err := f.vmSnapshotKeys(ctx, cl, disks, stderr); err != nil {
		return err
	}
	sas := make([]string, len(disks))
	for i, d := range disks {
		s, src, done, err := grantReadSAS(ctx, cl, d.Snapshot, f.workers, stderr)
		if err != nil {
			return fmt.Errorf("%s (%s): %w", diskName(d.LUN), d.disk.Name, err)
		}
		// Every source SAS is revoked on every path, also after Ctrl-C.
		defer func() { err = errors.Join(err, done()) }()
		d.src, d.readID, sas[i] = src, d.Snapshot, s
	}
	planStart := time.Now()
	vp, kept, err := f.planVM(ctx, disks, rep)
	if err != nil {
		return err
	}
	defer vp.Close()
	planTime := time.Since(planStart)
	if len(kept) < len(disks) {
		// The record keeps only the disks converted: later rounds leave the skipped ones out before
		// snapshotting them (dropSkipped). A disk converted in an earlier round must not turn skipped.
		if rec.Round > 0 {
			return fmt.Errorf("%w: %d of the disks of the stage record hold no volume to convert any more (%v): delete the record %s and the VM's new disks to start again",
				azure.ErrState, len(disks)-len(kept), vp.Skipped, recPath)
		}
		// A skipped disk's snapshot leaves the record here; the plan's warning names it.
		recDisks, rr, ss := rec.Disks[:0:0], rereads[:0:0], sas[:0:0]
		for i, d := range disks {
			if d.plan != nil {
				recDisks, rr, ss = append(recDisks, rec.Disks[i]), append(rr, rereads[i]), append(ss, sas[i])
				continue
			}
			rec.Skipped = append(rec.Skipped, vmStageSkipped{LUN: d.LUN, SourceDisk: d.Source})
		}
		rec.Disks, rereads, sas, disks = recDisks, rr, ss, kept
		if err := saveRecord(recPath, rec, &rec.Updated); err != nil {
			return err
		}
	}
	rep.Plan = vp
	if !f.quiet {
		printVMPlan(stderr, vp)
	} else {
		printVMWarnings(stderr, vp)
	}

	// What each disk's round executes: the whole plan in round 1, its delta after.
	stats := make([]stageRound, len(disks))
	work := make([]*luksconv.Plan, len(disks))
	deltas := map[*azureVMDisk]deltaJob{}
	for i, d := range disks {
		sr := &rec.Disks[i].stageRecord
		stats[i] = stageRound{Round: round, Snapshot: d.Snapshot, SnapshotTime: sr.PendingTime, Cutover: f.cutover, Plan: planTime}
		if round == 1 {
			if err := f.vmDiskSpec(ctx, cl, d, rep); err != nil {
				return err
			}
			d.journal, work[i] = f.defaultJournal(d.plan), d.plan
			continue
		}
		if tgt := f.finishedCutover(ctx, cl, sr, d.diskID, rereads[i], d.plan.OutputSize, stderr); tgt != nil {
			d.Target, d.AlreadyUploaded, work[i] = tgt, true, &luksconv.Plan{} // nothing to write
			continue
		}
		dp, err := f.deltaPlan(ctx, cl, sr, d.plan, sas[i], &stats[i], diskName(d.LUN)+": ", stderr)
		if err != nil {
			return fmt.Errorf("%s: %w", diskName(d.LUN), err)
		}
		if err := holdPendingPlan(sr, dp, diskName(d.LUN)+": ", func() error { return saveRecord(recPath, rec, &rec.Updated) }); err != nil {
			return err
		}
		d.journal, work[i] = f.defaultJournal(dp), dp
		deltas[d] = deltaJob{rec: sr, recPath: recPath, d: dp, src: d.src, snapshot: d.Snapshot, diskID: d.diskID, journal: d.journal,
			reread: rereads[i], round: round}
	}
	run := func(ctx context.Context, d *azureVMDisk, progress func(luksconv.Progress)) error {
		if round == 1 {
			tgt, res, err := f.upload(ctx, cl, uploadJob{plan: d.plan, src: d.src, spec: d.DiskSpec, diskID: d.diskID, journal: d.journal,
				lun: d.LUN, progress: debugProgress(progress), keepOpen: true}, stderr)
			d.Target, d.Result = tgt, res
			if err == nil && res == nil {
				err = fmt.Errorf("%w: %s is finished already, though the stage record %s says round 1 has not ended", azure.ErrState, d.diskID, recPath)
			}
			return err
		}
		if d.AlreadyUploaded {
			return nil // finishedCutover
		}
		j := deltas[d]
		j.progress = debugProgress(progress)
		tgt, res, err := f.deltaWrite(ctx, cl, j, stderr)
		d.Target, d.Result, d.AlreadyUploaded = tgt, res, err == nil && res == nil
		return err
	}
	hint := "the VM is untouched; run the same command again: it reads the same snapshots and resumes each disk from its journal"
	if err := f.eachDisk(ctx, disks, work, run, hint, stderr); err != nil {
		return err
	}
	for i, d := range disks {
		if d.Result != nil {
			stats[i].BytesRead, stats[i].BytesWritten, stats[i].Duration = d.Result.BytesDecrypted+d.Result.BytesCopied, d.Result.BytesWritten, d.Result.Duration
		}
		d.Stage = &stats[i]
	}

	if f.stage {
		for i, d := range disks {
			pj, err := json.Marshal(d.plan)
			if err != nil {
				return err
			}
			sr := &rec.Disks[i].stageRecord
			if round == 1 {
				sr.DiskPlanTag, sr.Disk = d.plan.ID(), stageDiskOf(d.DiskSpec)
			}
			sr.Snapshot, sr.Round, sr.PlanID, sr.Plan = d.Snapshot, round, d.plan.ID(), pj
			sr.pend("", false)
			sr.Rounds = append(sr.Rounds, stats[i])
		}
		rec.Round = round
		if err := saveRecord(recPath, rec, &rec.Updated); err != nil {
			return err
		}
		// The round is in the record: its journals are done with.
		for _, d := range disks {
			if err := os.Remove(d.journal); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	rep.Stage = &vmStageReport{Record: recPath, Round: round, Finished: f.cutover}
	if f.cutover {
		for _, d := range rec.Disks {
			rep.Stage.Snapshots = append(rep.Stage.Snapshots, roundSnapshots(&d.stageRecord)...)
		}
	}

	if f.cutover {
		// As for one disk, the snapshots stay pending until the record goes: a rerun after a failed
		// verification or re-creation finds the disks finished with them.
		if f.verify {
			for _, d := range disks {
				if err := f.verifyDisk(ctx, cl, d.plan, d.src, d.diskID, stderr); err != nil {
					return stagedVerifyHint(fmt.Errorf("%s: %w", diskName(d.LUN), err),
						fmt.Sprintf("do not attach %s: delete it and the VM's other new disks (luksconv never deletes disks)", d.diskID), recPath)
				}
				d.Verified = true
			}
		}
		if f.recreate {
			newData := map[int]string{}
			for _, d := range disks[1:] {
				newData[d.LUN] = d.diskID
			}
			if rep.VMPlan, err = f.recreateVM(ctx, cl, disks[0].diskID, newData); err != nil {
				return finishedAnyway(err, recPath)
			}
			rep.VMRecreated = true
		}
		if err := removeRecord(recPath); err != nil {
			return err
		}
	}

	if f.asJSON {
		return writeJSON(out, rep)
	}
	step := fmt.Sprintf("stage round %d", round)
	if f.cutover {
		step = fmt.Sprintf("cutover (round %d)", round)
	}
	for _, d := range disks {
		if d.AlreadyUploaded {
			fmt.Fprintf(out, "%s %s: %s -> %s: finished by an earlier run\n", step, diskName(d.LUN), d.Source, d.diskID)
			continue
		}
		fmt.Fprintf(out, "%s %s: %s -> %s: read %s, wrote %s in %s\n", step, diskName(d.LUN), d.Source, d.diskID,
			human(d.Stage.BytesRead), human(d.Stage.BytesWritten), d.Stage.Duration.Round(time.Millisecond))
	}
	if f.cutover {
		fmt.Fprintf(out, "the new disks of VM %s are finished\n", f.vm)
		printKeptSnapshots(out, rep.Stage.Snapshots)
	} else {
		fmt.Fprintf(out, "the uploads stay open (ActiveUpload) for the next round or --cutover\n")
	}
	if rep.VMRecreated {
		printRecreated(out, f.vm, "the new disks", rep.VMPlan)
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(out, "warning: %s\n", w)
	}
	return nil
}

// vmStageSnapshots sets each disk's Snapshot for this round: its pending snapshot when an earlier run
// started the round (rereads[i] is then true; checkPending vetted it before --deallocate), else a new
// incremental one, recorded as pending before anything is written so that a rerun reads it again.
func (f *azureConvert) vmStageSnapshots(ctx context.Context, cl *azure.Client, rec *vmStageRecord, recPath string, disks []*azureVMDisk, round int,
	stderr io.Writer) (rereads []bool, err error) {
	rereads = make([]bool, len(disks))
	for i, d := range disks {
		sr := &rec.Disks[i].stageRecord
		if sr.Pending != "" {
			fmt.Fprintf(stderr, "%s: reading snapshot %s again: round %d was interrupted\n", diskName(d.LUN), sr.Pending, round)
			d.Snapshot, rereads[i] = sr.Pending, true
			continue
		}
		name := stageSnapshotName(d.target, round)
		debugAzure("snapshot disk (incremental)", d.disk.DiskID, "snapshot_name", name, "round", round)
		// A snapshot cut off by Ctrl-C that Azure made all the same comes back with the error: it is
		// recorded as well, so that the rerun reads it rather than taking another.
		snap, serr := cl.SnapshotDisk(ctx, d.disk.DiskID, name, &azure.SnapshotOptions{Incremental: true})
		if serr != nil {
			serr = fmt.Errorf("%s (%s): %w", diskName(d.LUN), d.disk.Name, serr)
		}
		if snap == "" {
			return nil, serr
		}
		d.Snapshot, d.SnapshotCreated = snap, true
		if !f.quiet {
			fmt.Fprintf(stderr, "%s: incremental snapshot %s (kept; delete the stage snapshots when the new disks are verified)\n", diskName(d.LUN), snap)
		}
		sr.pend(snap, f.cutover)
		if err := saveRecord(recPath, rec, &rec.Updated); err != nil {
			return nil, errors.Join(serr, err)
		}
		if serr != nil {
			return nil, serr
		}
	}
	return rereads, nil
}

// estimateVMStage prints what the VM's next --stage round would do on each disk; it reads the record only.
func (f *azureConvert) estimateVMStage(out io.Writer, rec *vmStageRecord, recPath string, rep *azureVMReport) error {
	if rec == nil {
		return fmt.Errorf("%w: the stage record %s is gone", azure.ErrState, recPath)
	}
	sr := &vmStageReport{Record: recPath, Round: rec.Round + 1}
	rep.Stage = sr
	var lines []string
	for _, d := range rec.Disks {
		msg, expect := nextStageRound(&d.stageRecord, diskName(d.LUN)+": ")
		lines = append(lines, msg)
		sr.ExpectedChange += expect
	}
	if f.asJSON {
		return writeJSON(out, rep)
	}
	fmt.Fprintf(out, "stage round %d of VM %s (record %s):\n  %s\n", rec.Round+1, rec.VM, recPath, strings.Join(lines, "\n  "))
	return nil
}

// estimateVMCutover prints the expected downtime of the VM's cutover from the change rate each disk's
// stage rounds measured: the disks' changes go --parallel disks at a time.
func (f *azureConvert) estimateVMCutover(out io.Writer, rec *vmStageRecord, recPath string, rep *azureVMReport) error {
	sr := &vmStageReport{Record: recPath, Round: rec.Round, stageEstimate: stageEstimate{Estimate: azure.MeasuredVMCutoverFormula}}
	rep.Stage = sr
	var msg string
	var total, largest int64
	var plan time.Duration // the whole VM's plan, which each disk's round records
	ok := true
	for _, d := range rec.Disks {
		_, expect, _, measured := changeRate(d.Rounds)
		ok = ok && measured
		total += expect
		largest = max(largest, expect)
		if n := len(d.Rounds); n > 0 {
			plan = max(plan, d.Rounds[n-1].Plan)
		}
	}
	if !ok {
		msg = fmt.Sprintf("cannot estimate the cutover's downtime: %d stage round(s), and the change rate needs two; run --stage again later", rec.Round)
	} else {
		transfer := max(largest, total/int64(max(1, min(f.parallel, len(rec.Disks)))))
		var reads int64 // --verify reads the disks back one after the other
		for _, d := range rec.Disks {
			reads += recordedReads(&d.stageRecord)
		}
		sr.ExpectedDowntime = f.downtime(plan, transfer, reads)
		msg = fmt.Sprintf("expected downtime of the cutover: %s (%s expected to have changed on %d disks since their last snapshots; plan %s)",
			sr.ExpectedDowntime.Round(time.Second), human(total), len(rec.Disks), plan.Round(time.Millisecond))
	}
	if f.asJSON {
		return writeJSON(out, rep)
	}
	fmt.Fprintf(out, "%s\n  %s\n", msg, azure.MeasuredVMCutoverFormula)
	if f.deallocate {
		fmt.Fprintf(out, "Would deallocate VM %s if it runs, ", rec.VM)
	} else {
		fmt.Fprintf(out, "Would ")
	}
	fmt.Fprintf(out, "take an incremental snapshot of each of its %d converted disks, write what changed into their new disks and finish them\n", len(rec.Disks))
	return nil
}
