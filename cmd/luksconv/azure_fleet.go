package main

import (
	"cmp"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/luksconv/luksconv/azure"
	"github.com/spf13/cobra"
)

// A fleet runs on an engine that already schedules, retries and records tasks — Azure Batch or a
// Kubernetes Indexed Job — one VM per task, `azure convert --vm` in the image of deploy/Dockerfile.
// luksconv only writes the engine's input from an inventory (`azure inventory --json`): the contract
// that makes such runs safe is the CLI's own (idempotent reruns through the new disks' tags and the
// journals in --journal-dir, exit codes that say whether a retry can help, one JSON report per run).
//
// With --delta each VM gets two tasks instead of one: a stage task (`azure convert --stage`, the VM
// running: incremental snapshots converted into new disks left open, a record in --journal-dir) and a
// cutover task (`azure convert --cutover --deallocate`: the VM deallocated, the last round, the disks
// finished, the VM re-created) that the operator adds at the maintenance window. A VM is down for its
// cutover only. Both tasks of a VM name it the same way and share --journal-dir, where the stage
// record the cutover needs is kept.

// fleetVMs are the inventory's VMs a fleet converts, in the order task i (Batch) or index i
// (Kubernetes) takes them: the convertible ones, in the inventory's order.
func fleetVMs(inv *azure.Inventory) []azure.InventoryVM {
	var out []azure.InventoryVM
	for _, vm := range inv.VMs {
		if vm.Convertible {
			out = append(out, vm)
		}
	}
	return out
}

// readInventory reads an `azure inventory --json` document.
func readInventory(path string) (*azure.Inventory, error) {
	b, err := os.ReadFile(path)
	if missingDir(err) || errors.Is(err, syscall.EISDIR) {
		return nil, fmt.Errorf("%w: --inventory: %v", errUsage, err)
	} else if err != nil {
		// A share's EIO or ESTALE: a retry may read it.
		return nil, fmt.Errorf("--inventory: %w", err)
	}
	var inv azure.Inventory
	if err := json.Unmarshal(b, &inv); err != nil {
		return nil, fmt.Errorf("%w: --inventory %s: not an inventory: %v", errUsage, path, err)
	}
	if inv.SchemaVersion != azure.InventorySchemaVersion {
		return nil, fmt.Errorf("%w: --inventory %s: schema_version %d, this luksconv reads %d", errUsage, path, inv.SchemaVersion, azure.InventorySchemaVersion)
	}
	return &inv, nil
}

// inventoryVM is the VM `azure convert --inventory F --index N` converts.
func inventoryVM(path string, index int) (string, error) {
	inv, err := readInventory(path)
	if err != nil {
		return "", err
	}
	vms := fleetVMs(inv)
	if index < 0 || index >= len(vms) {
		return "", fmt.Errorf("%w: --index %d: the inventory has %d convertible VMs (0 to %d)", errUsage, index, len(vms), len(vms)-1)
	}
	return vms[index].ID, nil
}

// Exit codes a retry cannot change: the same input gives the same answer. The others (1: I/O and
// service errors, 130: interrupted) are worth a retry, which resumes from the journals.
var permanentExits = []int{exitUsage, exitWrongKey, exitUnsupported, exitCorrupt, exitReencrypting, exitOutput, exitNothingToDo, exitVerifyFailed, exitLimit, exitFollowUp}

type azureFleet struct {
	engine, inventory, outDir string
	image, des, identity      string
	journalDir                string
	retries, parallel         int
	diskParallel              int
	recreate, verify, delta   bool
	license, cloud            string
	pool, name, namespace     string
	serviceAccount            string
	journalClaim              string
	batchMount                string

	configMap string // Kubernetes: the name of the inventory's ConfigMap (inventoryMapName)
}

func newAzureFleetCmd() *cobra.Command {
	f := &azureFleet{}
	c := &cobra.Command{
		Use:   "fleet --engine batch|kubernetes --inventory F --image IMAGE --des DES_ID --output-dir DIR",
		Short: "Write an Azure Batch job or a Kubernetes Indexed Job that converts every VM of an inventory",
		Long: "fleet turns `luksconv azure inventory --json` into the input of a task engine, one VM per task,\n" +
			"each running `luksconv azure convert --vm VM --des DES [--recreate-vm] --journal-dir DIR --json` in the\n" +
			"image of deploy/Dockerfile. Blocked VMs are left out. Batch: batch-job.json and batch-tasks.json (az batch\n" +
			"job create / az batch task create --json-file); Kubernetes: kubernetes.json (kubectl apply -f), a\n" +
			"ConfigMap with the inventory and an Indexed Job whose index i converts the inventory's i-th convertible VM.\n\n" +
			"With --delta, two tasks per VM: a stage task (azure convert --stage, the VM running) and a cutover task\n" +
			"(azure convert --cutover --deallocate [--recreate-vm] [--verify]) added at the maintenance window. Batch:\n" +
			"batch-job.json (task dependencies on), batch-stage-tasks.json (stage-N) and batch-cutover-tasks.json\n" +
			"(cutover-N, each depending on stage-N: it runs only after that stage task succeeded); Kubernetes:\n" +
			"kubernetes-stage.json (ServiceAccount, ConfigMap, Indexed Job NAME-stage) and kubernetes-cutover.json\n" +
			"(Indexed Job NAME-cutover, same index → VM mapping; kubectl create -f at the window).",
		Args: cobra.NoArgs,
		RunE: f.run,
	}
	fl := c.Flags()
	fl.StringVar(&f.engine, "engine", "", "batch or kubernetes")
	fl.StringVar(&f.inventory, "inventory", "", "the `file` luksconv azure inventory --json wrote")
	fl.StringVar(&f.outDir, "output-dir", "", "directory the engine's files are written to")
	fl.StringVar(&f.image, "image", "", "the container image built from deploy/Dockerfile")
	fl.StringVar(&f.des, "des", "", "resource ID of the Disk Encryption Set of the new disks")
	fl.StringVar(&f.identity, "identity", "", "client ID of the managed identity (Batch: the pool's user-assigned identity; Kubernetes: the workload identity)")
	fl.StringVar(&f.journalDir, "journal-dir", "/journals", "where the tasks keep their resume journals: shared storage mounted there")
	fl.IntVar(&f.retries, "retries", 3, "retries per VM (a retry resumes; exit codes no retry can change are not retried where the engine allows)")
	fl.IntVar(&f.parallel, "parallel", 20, "VMs converted at the same time (Kubernetes; on Batch the pool's size and task slots decide)")
	fl.BoolVar(&f.recreate, "recreate-vm", false, "re-create each VM around its new disks (azure convert --recreate-vm; with --delta, in the cutover tasks)")
	fl.BoolVar(&f.verify, "verify", false, "read each new disk back and check it before any VM change (azure convert --verify; with --delta, in the cutover tasks)")
	fl.BoolVar(&f.delta, "delta", false, "write stage tasks (azure convert --stage, the VMs running, no --recreate-vm) and cutover tasks "+
		"(azure convert --cutover --deallocate, added at the maintenance window) instead of whole-VM tasks: each VM is down for its cutover only")
	fl.StringVar(&f.license, "license", "", "with --recreate-vm, for the VMs from Red Hat's pay-as-you-go image (rhel_payg in the inventory): payg or byos (azure convert --license)")
	fl.StringVar(&f.cloud, "cloud", "", "the Azure `cloud` of the tasks (azure convert --cloud; default: the inventory's)")
	fl.IntVar(&f.diskParallel, "disk-parallel", 0, "disks of a VM each task uploads at the same time (azure convert --parallel; default: the inventory's estimate_model.parallel, which its estimates assume)")
	fl.StringVar(&f.pool, "pool", "luksconv", "Batch: the pool's ID")
	fl.StringVar(&f.name, "name", "luksconv-fleet", "the job's name (Batch job ID, Kubernetes Job name and the ConfigMap's prefix)")
	fl.StringVar(&f.namespace, "namespace", "default", "Kubernetes: the namespace")
	fl.StringVar(&f.serviceAccount, "service-account", "luksconv", "Kubernetes: the service account federated with --identity")
	fl.StringVar(&f.journalClaim, "journal-claim", "luksconv-journals", "Kubernetes: the PersistentVolumeClaim (ReadWriteMany) mounted at --journal-dir")
	fl.StringVar(&f.batchMount, "batch-journal-mount", "/mnt/batch/tasks/fsmounts/journals", "Batch: the node's path of the journals' share "+
		"($AZ_BATCH_NODE_MOUNTS_DIR/journals: the pool's mountConfiguration relativeMountPath journals; /mnt/resource/batch/tasks/fsmounts/journals on images whose Batch root is there)")
	return c
}

// k8sName is what Kubernetes accepts as an object name (RFC 1123 label, at most 63 characters).
var k8sName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

func (f *azureFleet) run(c *cobra.Command, _ []string) error {
	switch {
	case f.engine != "batch" && f.engine != "kubernetes":
		return fmt.Errorf("%w: --engine %q: want batch or kubernetes", errUsage, f.engine)
	case f.inventory == "" || f.outDir == "" || f.image == "" || f.des == "":
		return fmt.Errorf("%w: --inventory, --output-dir, --image and --des are needed", errUsage)
	case f.retries < 0 || f.parallel < 1:
		return fmt.Errorf("%w: --retries must be at least 0 and --parallel at least 1", errUsage)
	case !filepath.IsAbs(f.journalDir):
		return fmt.Errorf("%w: --journal-dir %q: want an absolute path inside the container", errUsage, f.journalDir)
	case f.engine == "kubernetes" && f.identity == "" && !c.Flags().Changed("service-account"):
		// Without --identity no ServiceAccount is written, and pods naming one that does not exist are
		// never created: the Job would wait for ever.
		return fmt.Errorf("%w: Kubernetes: give --identity (the ServiceAccount --service-account is written with it) or --service-account naming an existing one federated with a managed identity", errUsage)
	case f.engine == "kubernetes" && !k8sName.MatchString(f.name):
		return fmt.Errorf("%w: --name %q is not a Kubernetes object name", errUsage, f.name)
	case f.engine == "kubernetes" && f.delta && !k8sName.MatchString(f.name+"-cutover"):
		return fmt.Errorf("%w: --name %q: with --delta, %s-cutover must be a Kubernetes object name (at most 63 characters)", errUsage, f.name, f.name)
	case f.license != "" && f.license != string(azure.LicensePAYG) && f.license != string(azure.LicenseBYOS):
		return fmt.Errorf("%w: --license %q: want payg or byos", errUsage, f.license)
	case f.license != "" && !f.recreate:
		return fmt.Errorf("%w: --license is for --recreate-vm: a VM not re-created keeps its image's billing", errUsage)
	case f.diskParallel < 0 || f.diskParallel > 64:
		return fmt.Errorf("%w: --disk-parallel %d: want 1 to 64", errUsage, f.diskParallel)
	case !filepath.IsAbs(f.batchMount):
		return fmt.Errorf("%w: --batch-journal-mount %q: want an absolute path on the node", errUsage, f.batchMount)
	}
	if f.cloud != "" {
		if _, err := azure.CloudByName(f.cloud); err != nil {
			return fmt.Errorf("%w: --cloud: %v", errUsage, err)
		}
	}
	inv, err := readInventory(f.inventory)
	if err != nil {
		return err
	}
	if inv.Truncated {
		fmt.Fprintf(c.ErrOrStderr(), "luksconv: warning: the inventory is marked truncated (Resource Graph cut a result short): VMs may be missing from the fleet; read it again with fewer --subscription at a time\n")
	}
	vms := fleetVMs(inv)
	if len(vms) == 0 {
		return fmt.Errorf("%w: the inventory has no convertible VM", errUsage)
	}
	if err := desServes(f.des, vms); err != nil {
		return err
	}
	if err := f.licensed(vms); err != nil {
		return err
	}
	if f.cloud == "" {
		f.cloud = inv.Cloud
	}
	if f.diskParallel == 0 {
		f.diskParallel = cmp.Or(inv.EstimateModel.Parallel, azure.DefaultInventoryParallel)
	}
	if err := os.MkdirAll(f.outDir, 0o755); err != nil {
		return err
	}
	var files map[string]any
	switch {
	case f.engine == "batch" && f.delta:
		files = f.batchDelta(vms)
	case f.engine == "batch":
		files = f.batch(vms)
	default:
		raw, err := podInventory(inv, vms)
		if err != nil {
			return err
		}
		f.configMap = inventoryMapName(f.name, raw)
		if f.delta {
			files = f.kubernetesDelta(len(vms), raw)
		} else {
			files = map[string]any{"kubernetes.json": f.kubernetes(len(vms), raw)}
		}
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		b, err := json.MarshalIndent(files[name], "", "  ")
		if err != nil {
			return err
		}
		p := filepath.Join(f.outDir, name)
		if err := os.WriteFile(p, append(b, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(c.OutOrStdout(), "wrote %s\n", p)
	}
	fmt.Fprintf(c.OutOrStdout(), "%d VMs (%d in the inventory, %d blocked)\n", len(vms), len(inv.VMs), len(inv.VMs)-len(vms))
	return nil
}

// desServes checks that the one --des of every task can encrypt each VM's new disks: a Disk
// Encryption Set serves disks of its own subscription and region only, and azure convert refuses any
// other (exit 2), so such a fleet is refused here rather than written to fail VM by VM.
func desServes(des string, vms []azure.InventoryVM) error {
	rid, err := arm.ParseResourceID(des)
	if err != nil || !strings.EqualFold(rid.ResourceType.String(), "Microsoft.Compute/diskEncryptionSets") {
		return fmt.Errorf("%w: --des %q is not the resource ID of a Disk Encryption Set", errUsage, des)
	}
	var other []string
	regions := map[string][]string{}
	for _, vm := range vms {
		sub := vm.Subscription
		if id, err := arm.ParseResourceID(vm.ID); err == nil {
			sub = id.SubscriptionID
		}
		if !strings.EqualFold(sub, rid.SubscriptionID) {
			other = append(other, vm.ID)
		}
		if loc := strings.ToLower(strings.ReplaceAll(vm.Location, " ", "")); loc != "" {
			regions[loc] = append(regions[loc], vm.Name)
		}
	}
	if len(other) > 0 {
		return fmt.Errorf("%w: %d of the inventory's convertible VMs are in another subscription than --des (%s), which cannot encrypt their disks, e.g. %s: "+
			"run one fleet per subscription, each with its own DES and an inventory of that subscription (azure inventory --subscription)", errUsage, len(other), rid.SubscriptionID, other[0])
	}
	if len(regions) > 1 {
		var list []string
		for _, r := range slices.Sorted(maps.Keys(regions)) {
			list = append(list, fmt.Sprintf("%s (%d VMs, e.g. %s)", r, len(regions[r]), regions[r][0]))
		}
		return fmt.Errorf("%w: the inventory's convertible VMs are in %d regions, %s, and a Disk Encryption Set serves one: "+
			"run one fleet per region, each with a DES of that region (jq '.vms |= map(select(.location == \"REGION\"))')", errUsage, len(regions), strings.Join(list, ", "))
	}
	return nil
}

// licensed refuses a fleet that re-creates VMs from Red Hat's pay-as-you-go image without --license:
// each such task would stop on azure convert's licensing check (exit 2) — with --delta only in the
// cutover, inside the maintenance window.
func (f *azureFleet) licensed(vms []azure.InventoryVM) error {
	if !f.recreate || f.license != "" {
		return nil
	}
	var payg []string
	for _, vm := range vms {
		if vm.RHELPAYG {
			payg = append(payg, vm.ID)
		}
	}
	if len(payg) == 0 {
		return nil
	}
	return &hintedError{fmt.Errorf("%w: %d of the inventory's convertible VMs run Red Hat's pay-as-you-go image (rhel_payg), e.g. %s: re-created on an upload disk "+
		"each would lose that billing and RHUI, so azure convert --recreate-vm needs a choice", errUsage, len(payg), payg[0]),
		"add --license payg (Azure Hybrid Benefit keeps both) or --license byos (your own Red Hat subscription), or make one fleet of those VMs (jq '.vms |= map(select(.rhel_payg))')"}
}

// fleetStep is what a task does to its VM: all of the conversion at once, or (--delta) one stage
// round or the cutover.
type fleetStep int

const (
	stepConvert fleetStep = iota // azure convert: the whole VM, deallocated beforehand
	stepStage                    // azure convert --stage: a round while the VM runs
	stepCutover                  // azure convert --cutover --deallocate: the last round, the VM down
)

// convertArgs are the arguments a task of the step gives the image's ENTRYPOINT (/luksconv), for the
// VM given by vmArgs: Docker appends a container's command to the ENTRYPOINT, and both a Batch
// container task's commandLine and a Kubernetes container's args are that command. A stage round
// never re-creates or verifies (the disks stay open); the cutover does both as a whole-VM run would.
func (f *azureFleet) convertArgs(step fleetStep, vmArgs ...string) []string {
	args := append([]string{"azure", "convert"}, vmArgs...)
	args = append(args, "--des", f.des, "--journal-dir", f.journalDir, "--json", "-q", "--parallel", strconv.Itoa(f.diskParallel))
	if f.cloud != "" && f.cloud != "AzureCloud" {
		args = append(args, "--cloud", f.cloud)
	}
	switch step {
	case stepStage:
		return append(args, "--stage")
	case stepCutover:
		args = append(args, "--cutover", "--deallocate")
	}
	if f.recreate {
		args = append(args, "--recreate-vm")
		if f.license != "" {
			args = append(args, "--license", f.license)
		}
	}
	if f.verify {
		args = append(args, "--verify")
	}
	return args
}

// batch returns the Batch job (Add Job body) and its tasks (Add Task Collection body), one task per
// VM. Batch retries any failing task up to maxTaskRetryCount. The job is created with
// onAllTasksComplete noaction: Batch counts a job without tasks as one whose tasks are all complete,
// so terminatejob at creation would end it before its tasks are added. The operator switches it to
// terminatejob once the tasks are in (az batch job set --on-all-tasks-complete terminatejob). The job
// has no task dependencies, so the tasks carry no dependencyAction (Batch refuses to add such a task
// to such a job); with no jobAction either (batchTask), they have no exit conditions at all.
func (f *azureFleet) batch(vms []azure.InventoryVM) map[string]any {
	job := map[string]any{
		"id":                   f.name,
		"poolInfo":             map[string]any{"poolId": f.pool},
		"onAllTasksComplete":   "noaction",
		"usesTaskDependencies": false,
		"constraints":          map[string]any{"maxTaskRetryCount": f.retries},
	}
	var tasks []map[string]any
	for i, vm := range vms {
		tasks = append(tasks, f.batchTask(fmt.Sprintf("vm-%04d", i), vm, stepConvert))
	}
	return map[string]any{"batch-job.json": job, "batch-tasks.json": map[string]any{"value": tasks}}
}

// batchTask is the task id running step for vm: the image's ENTRYPOINT, /luksconv, with the journals' share
// mounted at --journal-dir, the retries and the managed identity. A stage or cutover task (--delta,
// a job with task dependencies) also lists the exit codes no retry changes, which block the tasks
// depending on this one (stage → cutover). A whole-VM task does not: its job has no task
// dependencies, and Batch refuses a task with a dependencyAction there. No task sets a jobAction:
// the job's onTaskFailure is Batch's default, noaction, under which Batch refuses that field too.
func (f *azureFleet) batchTask(id string, vm azure.InventoryVM, step fleetStep) map[string]any {
	t := map[string]any{
		"id":          id,
		"displayName": vm.ID,
		"commandLine": strings.Join(f.convertArgs(step, "--vm", vm.ID), " "),
		"containerSettings": map[string]any{
			"imageName": f.image,
			// The pool mounts the journals' file share at fsmounts/journals (mountConfiguration).
			"containerRunOptions": "--rm -v " + f.batchMount + ":" + f.journalDir,
			"workingDirectory":    "containerImageDefault",
		},
		"userIdentity": map[string]any{"autoUser": map[string]any{"scope": "pool", "elevationLevel": "nonadmin"}},
		"constraints":  map[string]any{"maxTaskRetryCount": f.retries},
	}
	if step != stepConvert {
		var exits []map[string]any
		for _, code := range permanentExits {
			exits = append(exits, map[string]any{"code": code, "exitOptions": map[string]any{"dependencyAction": "block"}})
		}
		t["exitConditions"] = map[string]any{"exitCodes": exits}
	}
	if f.identity != "" {
		// DefaultAzureCredential takes the pool's user-assigned identity this client ID names.
		t["environmentSettings"] = []map[string]any{{"name": "AZURE_CLIENT_ID", "value": f.identity}}
	}
	return t
}

// batchDelta returns the --delta Batch input: the job, with task dependencies on, and two task
// collections, stage-N (added with the job, the VMs running) and cutover-N (added at the maintenance
// window), where cutover-N depends on stage-N: Batch schedules it only once stage-N completed with
// exit 0. A stage task that fails for good (a permanent exit code, or any other failure once its
// retries are spent: dependencyAction block is Batch's default for every failure) leaves its cutover
// waiting forever, its VM untouched. The job does not end when all its tasks complete
// (onAllTasksComplete noaction), or it would end between the stage tasks and the window.
func (f *azureFleet) batchDelta(vms []azure.InventoryVM) map[string]any {
	job := map[string]any{
		"id":                   f.name,
		"poolInfo":             map[string]any{"poolId": f.pool},
		"onAllTasksComplete":   "noaction",
		"usesTaskDependencies": true,
		"constraints":          map[string]any{"maxTaskRetryCount": f.retries},
	}
	var stage, cutover []map[string]any
	for i, vm := range vms {
		sid := fmt.Sprintf("stage-%04d", i)
		stage = append(stage, f.batchTask(sid, vm, stepStage))
		t := f.batchTask(fmt.Sprintf("cutover-%04d", i), vm, stepCutover)
		t["dependsOn"] = map[string]any{"taskIds": []string{sid}}
		cutover = append(cutover, t)
	}
	return map[string]any{
		"batch-job.json":           job,
		"batch-stage-tasks.json":   map[string]any{"value": stage},
		"batch-cutover-tasks.json": map[string]any{"value": cutover},
	}
}

// kubernetes returns a List of the ConfigMap holding the inventory and the Indexed Job: pod i runs
// `azure convert --inventory /inventory/inventory.json --index i`, so the index → VM mapping is the
// CLI's own (fleetVMs), not a copy in the manifest. Exit codes no retry can change fail the index at
// once (podFailurePolicy FailIndex); the others are retried up to --retries per index.
func (f *azureFleet) kubernetes(n int, inventory string) map[string]any {
	items := append(f.kubernetesShared(inventory), f.kubernetesJob(f.name, "", stepConvert, n))
	return map[string]any{"apiVersion": "v1", "kind": "List", "items": items}
}

// kubernetesDelta returns the --delta Kubernetes input: kubernetes-stage.json, the ServiceAccount,
// the ConfigMap and the Indexed Job NAME-stage (kubectl apply -f, the VMs running), and
// kubernetes-cutover.json, the Indexed Job NAME-cutover alone (kubectl create -f at the window), which
// uses the same ServiceAccount and ConfigMap, so the same index → VM mapping, and the same journal
// claim, where the stage pods left the stage records the cutover pods (on other nodes) read.
// Kubernetes has no dependency between Jobs: the cutover of a VM whose stage never finished fails on
// its own (no stage record: azure.ErrState, exit 1, retried like any exit 1 until the index fails).
func (f *azureFleet) kubernetesDelta(n int, inventory string) map[string]any {
	stage := append(f.kubernetesShared(inventory), f.kubernetesJob(f.name+"-stage", "stage", stepStage, n))
	cutover := []any{f.kubernetesJob(f.name+"-cutover", "cutover", stepCutover, n)}
	return map[string]any{
		"kubernetes-stage.json":   map[string]any{"apiVersion": "v1", "kind": "List", "items": stage},
		"kubernetes-cutover.json": map[string]any{"apiVersion": "v1", "kind": "List", "items": cutover},
	}
}

// maxPodInventory bounds the inventory in the Kubernetes ConfigMap: `kubectl apply` copies the whole
// object into an annotation, and Kubernetes allows 256 KiB of annotations (a ConfigMap 1 MiB); the
// rest is room for the object around it.
const maxPodInventory = 200 << 10

// podInventory is the inventory the pods read (azure convert --inventory --index): the convertible VMs
// alone, in their order, with what fleetVMs and inventoryVM read of them, as compact JSON. The whole
// document (about 4 KB a VM) would make a fleet of some 60 VMs too large to apply.
func podInventory(inv *azure.Inventory, vms []azure.InventoryVM) (string, error) {
	type vm struct {
		ID          string `json:"id"`
		Name        string `json:"name"`
		Convertible bool   `json:"convertible"`
	}
	doc := struct {
		SchemaVersion int       `json:"schema_version"`
		GeneratedAt   time.Time `json:"generated_at"`
		Source        string    `json:"source"`
		VMs           []vm      `json:"vms"`
	}{inv.SchemaVersion, inv.GeneratedAt, inv.Source, make([]vm, 0, len(vms))}
	for _, v := range vms {
		doc.VMs = append(doc.VMs, vm{v.ID, v.Name, v.Convertible})
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return "", err
	}
	if len(b) > maxPodInventory {
		per := len(b)/len(vms) + 1
		return "", fmt.Errorf("%w: the inventory's %d convertible VMs take %d bytes in the Kubernetes ConfigMap, over %d (kubectl apply keeps the object in an annotation of at most 256 KiB): "+
			"split the inventory into fleets of at most %d VMs, each with its own --name", errUsage, len(vms), len(b), maxPodInventory, maxPodInventory/per)
	}
	return string(b), nil
}

// fleetInventoryDir is where the pods mount the ConfigMap holding the inventory.
const fleetInventoryDir = "/inventory"

// inventoryMapName is the name of the ConfigMap holding inventory: NAME-inventory- and 8 hex digits
// of its SHA-256. A fleet written again from another inventory under the same --name (the next
// wave) makes another ConfigMap, so a Job still running reads the mapping it was made with: an index
// retried after the apply would otherwise convert (and, at a cutover, deallocate) the next wave's VM.
func inventoryMapName(name, inventory string) string {
	h := sha256.Sum256([]byte(inventory))
	return fmt.Sprintf("%s-inventory-%x", name, h[:4])
}

// kubernetesShared returns what every Job of the fleet uses: the ConfigMap holding the inventory,
// immutable (see inventoryMapName), and, with --identity, the ServiceAccount federated with it.
func (f *azureFleet) kubernetesShared(inventory string) []any {
	cm := map[string]any{
		"apiVersion": "v1",
		"kind":       "ConfigMap",
		"metadata":   map[string]any{"name": f.configMap, "namespace": f.namespace},
		"immutable":  true,
		"data":       map[string]any{"inventory.json": inventory},
	}
	items := []any{cm}
	if f.identity != "" {
		items = append([]any{map[string]any{
			"apiVersion": "v1",
			"kind":       "ServiceAccount",
			"metadata": map[string]any{"name": f.serviceAccount, "namespace": f.namespace,
				"annotations": map[string]any{"azure.workload.identity/client-id": f.identity}},
		}}, items...)
	}
	return items
}

// kubernetesJob returns the Indexed Job name whose pod i runs step for the inventory's i-th
// convertible VM; component, if set, labels its pods (stage or cutover).
func (f *azureFleet) kubernetesJob(name, component string, step fleetStep, n int) map[string]any {
	const invDir = fleetInventoryDir
	codes := make([]int, len(permanentExits))
	copy(codes, permanentExits)
	rules := []map[string]any{
		// A pod evicted by a node drain, an upgrade or preemption (luksconv then exits 130) is not the
		// VM's failure: it does not count against --retries (the rerun resumes).
		{"action": "Ignore", "onPodConditions": []map[string]any{{"type": "DisruptionTarget"}}},
		{"action": "FailIndex", "onExitCodes": map[string]any{"containerName": "luksconv", "operator": "In", "values": codes}},
	}
	labels := map[string]any{"app.kubernetes.io/name": "luksconv", "azure.workload.identity/use": "true"}
	if component != "" {
		labels["app.kubernetes.io/component"] = component
	}
	container := map[string]any{
		"name":  "luksconv",
		"image": f.image,
		"args":  f.convertArgs(step, "--inventory", invDir+"/inventory.json", "--index", "$(JOB_COMPLETION_INDEX)"),
		"volumeMounts": []map[string]any{
			{"name": "inventory", "mountPath": invDir, "readOnly": true},
			{"name": "journals", "mountPath": f.journalDir},
		},
		// Pod Security "restricted" asks for all of it, the seccomp profile included.
		"securityContext": map[string]any{"runAsNonRoot": true, "runAsUser": 65532, "allowPrivilegeEscalation": false,
			"readOnlyRootFilesystem": true, "capabilities": map[string]any{"drop": []string{"ALL"}},
			"seccompProfile": map[string]any{"type": "RuntimeDefault"}},
	}
	pod := map[string]any{
		"serviceAccountName": f.serviceAccount,
		"restartPolicy":      "Never",
		"securityContext":    map[string]any{"fsGroup": 65532},
		"containers":         []any{container},
		"volumes": []map[string]any{
			{"name": "inventory", "configMap": map[string]any{"name": f.configMap}},
			{"name": "journals", "persistentVolumeClaim": map[string]any{"claimName": f.journalClaim}},
		},
	}
	// Asked to stop, luksconv cleans up before it exits: an Azure operation under way is polled to its
	// end, the upload's finish once begun and the source grants' revoke are each given cleanupTimeout;
	// once a VM is deleted it is re-created or restored. The pod must not be killed in between (the
	// default grace is 30 s).
	grace := azure.SettleTime + 2*cleanupTimeout
	if slices.Contains(container["args"].([]string), "--recreate-vm") {
		grace = max(grace, azure.MaxRecreateTime+5*time.Minute)
	}
	pod["terminationGracePeriodSeconds"] = int64(grace.Seconds())
	return map[string]any{
		"apiVersion": "batch/v1",
		"kind":       "Job",
		"metadata":   map[string]any{"name": name, "namespace": f.namespace},
		"spec": map[string]any{
			"completionMode":       "Indexed",
			"completions":          n,
			"parallelism":          min(f.parallel, n),
			"backoffLimitPerIndex": f.retries,
			"maxFailedIndexes":     n,
			"podFailurePolicy":     map[string]any{"rules": rules},
			"template": map[string]any{
				"metadata": map[string]any{"labels": labels},
				"spec":     pod,
			},
		},
	}
}

// parseIndex reads --index, which a Kubernetes Indexed Job passes as $(JOB_COMPLETION_INDEX).
func parseIndex(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: --index %q: want a number from 0", errUsage, s)
	}
	return n, nil
}
