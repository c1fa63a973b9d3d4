package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/luksconv/luksconv/azure"
	"github.com/luksconv/luksconv/internal/testenv"
)

// fleetDES is a Disk Encryption Set in the subscription of fleetInventory's VMs.
const fleetDES = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Compute/diskEncryptionSets/des"

// fleetInventory writes an inventory of four VMs, the third blocked, the first from Red Hat's
// pay-as-you-go image, its estimates for 3 disks of a VM at a time, and returns its path.
func fleetInventory(t *testing.T, dir string) (string, []string) {
	t.Helper()
	inv := azure.Inventory{SchemaVersion: azure.InventorySchemaVersion, Source: "test", EstimateModel: azure.InventoryEstimateModel{Parallel: 3}}
	var ids []string
	for i, name := range []string{"rhel-a", "rhel-b", "cvm", "ubuntu"} {
		id := "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/" + name
		vm := azure.InventoryVM{ID: id, Name: name, Convertible: i != 2, RHELPAYG: name == "rhel-a"}
		if i == 2 {
			vm.Blockers = []azure.InventoryBlocker{{Code: "confidential-vm", Message: "Confidential VM"}}
		} else {
			ids = append(ids, id)
		}
		inv.VMs = append(inv.VMs, vm)
	}
	b, err := json.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "inventory.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, ids
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestAzureFleet: `azure fleet` turns an inventory into the engines' input, with the fields each engine
// requires, and every task's command is one `azure convert` resolves to the right VM.
//   - Batch: a job on the pool with retries, created with onAllTasksComplete noaction (it has no
//     tasks yet) and no task dependencies, and one task per convertible VM (the blocked one left out)
//     running the image's /luksconv with --vm, --des, --journal-dir (the mounted share) and --json,
//     the managed identity's client ID in AZURE_CLIENT_ID, and no exit conditions (no
//     dependencyAction or jobAction, which Batch refuses in such a job).
//   - Kubernetes: a ServiceAccount federated with the identity, the inventory in a ConfigMap and an
//     Indexed Job (completions = convertible VMs, backoffLimitPerIndex, FailIndex on the permanent
//     exit codes, workload identity label, the journals' claim) whose pod i runs `azure convert
//     --inventory … --index $(JOB_COMPLETION_INDEX)`; that index resolves to the i-th VM.
func TestAzureFleet(t *testing.T) {
	dir := t.TempDir()
	invPath, ids := fleetInventory(t, dir)
	const image, des, identity = "registry.example/luksconv:1", fleetDES, "11111111-2222-3333-4444-555555555555"
	common := []string{"azure", "fleet", "--inventory", invPath, "--image", image, "--des", des, "--identity", identity, "--recreate-vm", "--license", "payg", "--retries", "2"}

	out := filepath.Join(dir, "batch")
	if _, se, code := runCLI(t, append(common, "--engine", "batch", "--output-dir", out, "--pool", "p1")...); code != 0 {
		t.Fatalf("batch: exit %d\n%s", code, se)
	}
	var job struct {
		ID                   string
		PoolInfo             struct{ PoolID string }
		Constr               struct{ MaxTaskRetryCount int } `json:"constraints"`
		OnAllTasksComplete   string
		UsesTaskDependencies *bool
	}
	readJSON(t, filepath.Join(out, "batch-job.json"), &job)
	if job.ID != "luksconv-fleet" || job.PoolInfo.PoolID != "p1" || job.Constr.MaxTaskRetryCount != 2 {
		t.Errorf("batch job: %+v", job)
	}
	// Batch counts a job without tasks as all tasks complete: terminatejob at creation would end the
	// job before its tasks are added. The runbook switches it to terminatejob afterwards.
	if job.OnAllTasksComplete != "noaction" {
		t.Errorf("batch job: onAllTasksComplete %q, want noaction (the job is created before its tasks)", job.OnAllTasksComplete)
	}
	if job.UsesTaskDependencies == nil || *job.UsesTaskDependencies {
		t.Errorf("batch job: usesTaskDependencies %v, want false", job.UsesTaskDependencies)
	}
	var tasks struct {
		Value []struct {
			ID, DisplayName, CommandLine string
			ContainerSettings            struct{ ImageName, ContainerRunOptions string }
			Constraints                  struct{ MaxTaskRetryCount int }
			EnvironmentSettings          []struct{ Name, Value string }
		}
	}
	readJSON(t, filepath.Join(out, "batch-tasks.json"), &tasks)
	if len(tasks.Value) != len(ids) {
		t.Fatalf("%d Batch tasks, want %d (the blocked VM left out)", len(tasks.Value), len(ids))
	}
	// The job has no task dependencies, so no task may carry a dependencyAction (Batch refuses to add
	// it), nor a jobAction (refused under the job's default onTaskFailure, noaction): no exit
	// conditions at all.
	var rawTasks struct{ Value []map[string]json.RawMessage }
	readJSON(t, filepath.Join(out, "batch-tasks.json"), &rawTasks)
	for i, tk := range rawTasks.Value {
		if ec, ok := tk["exitConditions"]; ok {
			t.Errorf("task %d: exitConditions %s, want none (no task dependencies in the job)", i, ec)
		}
	}
	noWallClockLimit(t, out, "batch-job.json", "batch-tasks.json")
	for i, tk := range tasks.Value {
		args := strings.Fields(tk.CommandLine)
		want := []string{"azure", "convert", "--vm", ids[i], "--des", des, "--journal-dir", "/journals", "--json", "-q", "--parallel", "3", "--recreate-vm", "--license", "payg"}
		if !slices.Equal(args, want) || tk.DisplayName != ids[i] {
			t.Errorf("task %d: %q, want %q", i, args, want)
		}
		if tk.ContainerSettings.ImageName != image || !strings.Contains(tk.ContainerSettings.ContainerRunOptions, ":/journals") || tk.Constraints.MaxTaskRetryCount != 2 {
			t.Errorf("task %d: %+v", i, tk)
		}
		if len(tk.EnvironmentSettings) != 1 || tk.EnvironmentSettings[0] != (struct{ Name, Value string }{"AZURE_CLIENT_ID", identity}) {
			t.Errorf("task %d environment: %+v", i, tk.EnvironmentSettings)
		}
	}

	out = filepath.Join(dir, "k8s")
	if _, se, code := runCLI(t, append(common, "--engine", "kubernetes", "--output-dir", out, "--parallel", "2")...); code != 0 {
		t.Fatalf("kubernetes: exit %d\n%s", code, se)
	}
	var list struct {
		Kind  string
		Items []fleetK8sJob
	}
	readJSON(t, filepath.Join(out, "kubernetes.json"), &list)
	kinds := map[string]fleetK8sJob{}
	for _, it := range list.Items {
		kinds[it.Kind] = it
	}
	sa, cm, job2 := kinds["ServiceAccount"], kinds["ConfigMap"], kinds["Job"]
	if list.Kind != "List" || len(list.Items) != 3 || sa.Metadata.Annotations["azure.workload.identity/client-id"] != identity {
		t.Fatalf("kubernetes list: %+v", list)
	}
	// The pods read the ConfigMap's copy of the inventory (its convertible VMs, in order).
	mounted := filepath.Join(dir, "mounted-inventory.json")
	if err := os.WriteFile(mounted, []byte(cm.Data["inventory.json"]), 0o644); err != nil {
		t.Fatal(err)
	}
	sp := job2.Spec
	if job2.APIVersion != "batch/v1" || sp.CompletionMode != "Indexed" || sp.Completions != len(ids) || sp.Parallelism != 2 || sp.BackoffLimitPerIndex != 2 {
		t.Errorf("job spec: %+v", sp)
	}
	checkPodFailurePolicy(t, "", sp.PodFailurePolicy.Rules)
	ps := sp.Template.Spec
	if ps.ServiceAccountName != sa.Metadata.Name || ps.RestartPolicy != "Never" || sp.Template.Metadata.Labels["azure.workload.identity/use"] != "true" || len(ps.Containers) != 1 {
		t.Fatalf("pod spec: %+v", ps)
	}
	ct := ps.Containers[0]
	wantArgs := []string{"azure", "convert", "--inventory", "/inventory/inventory.json", "--index", "$(JOB_COMPLETION_INDEX)", "--des", des, "--journal-dir", "/journals", "--json", "-q", "--parallel", "3", "--recreate-vm", "--license", "payg"}
	if ct.Image != image || !slices.Equal(ct.Args, wantArgs) || ct.SecurityContext.SeccompProfile.Type != "RuntimeDefault" {
		t.Errorf("container: %+v", ct)
	}
	if !regexp.MustCompile(`^luksconv-fleet-inventory-[0-9a-f]{8}$`).MatchString(cm.Metadata.Name) || cm.Immutable == nil || !*cm.Immutable {
		t.Errorf("ConfigMap %s, immutable %v: want it named for its content, and immutable", cm.Metadata.Name, cm.Immutable)
	}
	mounts := map[string]string{}
	for _, m := range ct.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	vols := map[string]bool{}
	for _, v := range ps.Volumes {
		vols[v.Name] = (v.ConfigMap != nil && v.ConfigMap.Name == cm.Metadata.Name) || (v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == "luksconv-journals")
	}
	if mounts["inventory"] != "/inventory" || mounts["journals"] != "/journals" || !vols["inventory"] || !vols["journals"] {
		t.Errorf("volumes %v, mounts %v", vols, mounts)
	}

	// The index → VM mapping is the CLI's: index i is the i-th convertible VM, past the end is exit 2.
	for i, id := range ids {
		for _, p := range []string{invPath, mounted} {
			if vm, err := inventoryVM(p, i); err != nil || vm != id {
				t.Errorf("%s: index %d: %q, %v; want %s", p, i, vm, err, id)
			}
		}
	}
	jdir := t.TempDir()
	for _, bad := range [][]string{
		{"--inventory", invPath, "--index", "3"},
		{"--inventory", invPath, "--index", "$(JOB_COMPLETION_INDEX)"},
		{"--inventory", invPath},
		{"--inventory", invPath, "--index", "0", "--vm", ids[0]},
	} {
		if _, se, code := runCLI(t, append([]string{"azure", "convert", "--des", des, "--journal-dir", jdir, "--dry-run"}, bad...)...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d\n%s", bad, code, exitUsage, se)
		}
	}
	for _, bad := range [][]string{{"--engine", "slurm"}, {"--engine", "kubernetes", "--name", "Not_A_Name"}, {"--engine", "batch", "--journal-dir", "rel"}} {
		if _, se, code := runCLI(t, append(append([]string{}, common...), append(bad, "--output-dir", filepath.Join(dir, "bad"))...)...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d\n%s", bad, code, exitUsage, se)
		}
	}
	// Kubernetes without --identity writes no ServiceAccount, so its pods must name an existing one.
	noID := slices.Clone(common)
	i := slices.Index(noID, "--identity")
	noID = slices.Delete(noID, i, i+2)
	if _, se, code := runCLI(t, append(noID, "--engine", "kubernetes", "--output-dir", filepath.Join(dir, "noid"))...); code != exitUsage || !strings.Contains(se, "--service-account") {
		t.Errorf("kubernetes without --identity or --service-account: exit %d, want %d\n%s", code, exitUsage, se)
	}
	if _, se, code := runCLI(t, append(noID, "--engine", "kubernetes", "--service-account", "federated", "--output-dir", filepath.Join(dir, "sa"))...); code != 0 {
		t.Errorf("kubernetes with an existing --service-account: exit %d\n%s", code, se)
	}
	if _, se, code := runCLI(t, append(noID, "--engine", "batch", "--output-dir", filepath.Join(dir, "batchnoid"))...); code != 0 {
		t.Errorf("batch without --identity: exit %d\n%s", code, se)
	}
}

// TestAzureFleetOptions: what the tasks inherit from the fleet's flags and the inventory. --license
// goes to every re-creating task, and a fleet re-creating VMs from Red Hat's pay-as-you-go image
// without it is refused (each task would stop on azure convert's licensing check, with --delta only
// in the window); --cloud, else the inventory's cloud, goes to every task (the default, AzureCloud,
// is left out); --disk-parallel, else the inventory's estimate_model.parallel, is each task's
// --parallel; --batch-journal-mount is the node's side of the journals' mount. The ConfigMap of
// another inventory under the same --name is another object, so a Job still running keeps its
// index → VM mapping. A truncated inventory is warned about.
func TestAzureFleetOptions(t *testing.T) {
	dir := t.TempDir()
	invPath, ids := fleetInventory(t, dir)
	base := []string{"azure", "fleet", "--inventory", invPath, "--image", "img", "--des", fleetDES, "--identity", "cid"}
	tasks := func(out string) []fleetBatchTask {
		var ts struct{ Value []fleetBatchTask }
		readJSON(t, filepath.Join(out, "batch-tasks.json"), &ts)
		return ts.Value
	}
	for _, bad := range [][]string{
		{"--recreate-vm"}, // rhel-a needs a licensing choice
		{"--recreate-vm", "--license", "paygo"},
		{"--license", "payg"},
		{"--disk-parallel", "65"},
		{"--cloud", "AzureMars"},
		{"--batch-journal-mount", "journals"},
	} {
		_, se, code := runCLI(t, slices.Concat(base, []string{"--engine", "batch", "--output-dir", filepath.Join(dir, "bad")}, bad)...)
		if code != exitUsage || bad[0] == "--recreate-vm" && len(bad) == 1 && (!strings.Contains(se, ids[0]) || !strings.Contains(se, "--license payg")) {
			t.Errorf("%q: exit %d, want %d\n%s", bad, code, exitUsage, se)
		}
	}

	out := filepath.Join(dir, "gov")
	mustRun(t, "fleet", slices.Concat(base, []string{"--engine", "batch", "--output-dir", out, "--recreate-vm", "--license", "byos", "--cloud", "AzureUSGovernment",
		"--disk-parallel", "5", "--batch-journal-mount", "/mnt/resource/batch/tasks/fsmounts/journals"})...)
	for i, tk := range tasks(out) {
		want := []string{"azure", "convert", "--vm", ids[i], "--des", fleetDES, "--journal-dir", "/journals", "--json", "-q", "--parallel", "5",
			"--cloud", "AzureUSGovernment", "--recreate-vm", "--license", "byos"}
		if args := strings.Fields(tk.CommandLine); !slices.Equal(args, want) {
			t.Errorf("task %d: %q, want %q", i, args, want)
		}
		if tk.ContainerSettings.ContainerRunOptions != "--rm -v /mnt/resource/batch/tasks/fsmounts/journals:/journals" {
			t.Errorf("task %d: containerRunOptions %q", i, tk.ContainerSettings.ContainerRunOptions)
		}
	}

	// The inventory's cloud; a truncated inventory warned about.
	var inv azure.Inventory
	readJSON(t, invPath, &inv)
	inv.Cloud, inv.Truncated = "AzureChinaCloud", true
	inv.VMs = inv.VMs[:2]
	b, err := json.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	china := testenv.WriteFile(t, dir, "china.json", b)
	out = filepath.Join(dir, "china")
	_, se, code := runCLI(t, "azure", "fleet", "--inventory", china, "--image", "img", "--des", fleetDES, "--engine", "batch", "--output-dir", out)
	if code != 0 || !strings.Contains(se, "truncated") {
		t.Fatalf("fleet of a truncated inventory: exit %d, want 0 and a warning:\n%s", code, se)
	}
	for i, tk := range tasks(out) {
		if args := strings.Fields(tk.CommandLine); !slices.Contains(args, "AzureChinaCloud") {
			t.Errorf("task %d: %q, want the inventory's --cloud", i, args)
		}
	}

	// Another inventory under the same --name: another ConfigMap.
	cmName := func(inv, out string) string {
		mustRun(t, "fleet", "azure", "fleet", "--inventory", inv, "--image", "img", "--des", fleetDES, "--identity", "cid", "--engine", "kubernetes", "--output-dir", out)
		var list struct{ Items []fleetK8sJob }
		readJSON(t, filepath.Join(out, "kubernetes.json"), &list)
		for _, it := range list.Items {
			if it.Kind == "ConfigMap" {
				return it.Metadata.Name
			}
		}
		t.Fatalf("%s: no ConfigMap", out)
		return ""
	}
	a, a2, c := cmName(invPath, filepath.Join(dir, "k1")), cmName(invPath, filepath.Join(dir, "k2")), cmName(china, filepath.Join(dir, "k3"))
	if a != a2 || a == c {
		t.Errorf("ConfigMaps %s (again: %s) and %s of another inventory: want one name per content", a, a2, c)
	}
}

// TestAzureFleetFromInventory: the inventory the CLI prints for the fake's mixed fleet is the fleet's
// input as it is: every convertible VM gets one Kubernetes index and one Batch task, in the
// inventory's order, and no blocked VM gets either.
func TestAzureFleetFromInventory(t *testing.T) {
	inventoryCloud(t)
	// One subscription: a fleet's one DES serves disks of its own subscription only.
	so, se, code := runCLI(t, "azure", "inventory", "--subscription", fakeSub, "--json")
	if code != 0 {
		t.Fatalf("inventory: exit %d:\n%s", code, se)
	}
	dir := t.TempDir()
	invPath := filepath.Join(dir, "inventory.json")
	if err := os.WriteFile(invPath, []byte(so), 0o644); err != nil {
		t.Fatal(err)
	}
	var inv azure.Inventory
	readJSON(t, invPath, &inv)
	var want, blocked []string
	for _, vm := range inv.VMs {
		if vm.Convertible {
			want = append(want, vm.ID)
		} else {
			blocked = append(blocked, vm.ID)
		}
	}
	if len(want) < 2 || len(blocked) == 0 {
		t.Fatalf("the fake fleet should have convertible and blocked VMs: %d and %d", len(want), len(blocked))
	}
	out := filepath.Join(dir, "batch")
	if _, se, code := runCLI(t, "azure", "fleet", "--engine", "batch", "--inventory", invPath, "--image", "i", "--des", fakeDES, "--output-dir", out); code != 0 {
		t.Fatalf("fleet: exit %d\n%s", code, se)
	}
	var tasks struct {
		Value []struct{ DisplayName string }
	}
	readJSON(t, filepath.Join(out, "batch-tasks.json"), &tasks)
	var got []string
	for _, tk := range tasks.Value {
		got = append(got, tk.DisplayName)
	}
	if !slices.Equal(got, want) {
		t.Errorf("Batch tasks for %q, want %q", got, want)
	}
	for i, id := range want {
		if vm, err := inventoryVM(invPath, i); err != nil || vm != id {
			t.Errorf("index %d: %q %v, want %s", i, vm, err, id)
		}
	}
}

// fleetBatchTask is the part of a Batch task (Add Task body) the --delta tests check.
type fleetBatchTask struct {
	ID, DisplayName, CommandLine string
	ContainerSettings            struct{ ImageName, ContainerRunOptions string }
	Constraints                  struct{ MaxTaskRetryCount int }
	EnvironmentSettings          []struct{ Name, Value string }
	ExitConditions               struct {
		ExitCodes []struct {
			Code        int
			ExitOptions map[string]string
		}
	}
	DependsOn *struct{ TaskIDs []string } `json:"dependsOn"`
}

// TestAzureFleetDeltaBatch: with --delta the Batch job uses task dependencies and stays active when its
// tasks are done (the cutover tasks come later); the stage tasks (stage-N, added with the job) run
// `azure convert --vm VM --stage` with no --recreate-vm, --verify or --deallocate; the cutover tasks
// (cutover-N, a second file for the maintenance window) run `--cutover --deallocate --recreate-vm
// --verify` and each depends on the stage task of the same VM, the i-th convertible VM of the
// inventory, as `--inventory F --index i` resolves it. Both keep the identity, the retries and the
// permanent exit codes, which block the dependent cutover; no whole-VM task file is written.
func TestAzureFleetDeltaBatch(t *testing.T) {
	dir := t.TempDir()
	invPath, ids := fleetInventory(t, dir)
	const image, des, identity = "registry.example/luksconv:1", fleetDES, "11111111-2222-3333-4444-555555555555"
	out := filepath.Join(dir, "batch")
	so, se, code := runCLI(t, "azure", "fleet", "--engine", "batch", "--delta", "--inventory", invPath, "--image", image, "--des", des,
		"--identity", identity, "--recreate-vm", "--license", "payg", "--verify", "--retries", "2", "--pool", "p1", "--output-dir", out)
	if code != 0 {
		t.Fatalf("batch --delta: exit %d\n%s", code, se)
	}
	for _, name := range []string{"batch-job.json", "batch-stage-tasks.json", "batch-cutover-tasks.json"} {
		if !strings.Contains(so, filepath.Join(out, name)) {
			t.Errorf("stdout does not name %s:\n%s", name, so)
		}
	}
	if _, err := os.Stat(filepath.Join(out, "batch-tasks.json")); !os.IsNotExist(err) {
		t.Errorf("--delta wrote the whole-VM tasks too: %v", err)
	}

	var job struct {
		ID                   string
		PoolInfo             struct{ PoolID string }
		OnAllTasksComplete   string
		UsesTaskDependencies *bool
		Constraints          struct{ MaxTaskRetryCount int }
	}
	readJSON(t, filepath.Join(out, "batch-job.json"), &job)
	noWallClockLimit(t, out, "batch-job.json", "batch-stage-tasks.json", "batch-cutover-tasks.json")
	if job.ID != "luksconv-fleet" || job.PoolInfo.PoolID != "p1" || job.Constraints.MaxTaskRetryCount != 2 {
		t.Errorf("batch job: %+v", job)
	}
	if job.UsesTaskDependencies == nil || !*job.UsesTaskDependencies {
		t.Errorf("batch job: usesTaskDependencies %v, want true (cutover tasks depend on stage tasks)", job.UsesTaskDependencies)
	}
	if job.OnAllTasksComplete != "noaction" {
		t.Errorf("batch job: onAllTasksComplete %q, want noaction: the job must outlive its stage tasks until the cutover tasks are added", job.OnAllTasksComplete)
	}

	var stage, cutover struct{ Value []fleetBatchTask }
	readJSON(t, filepath.Join(out, "batch-stage-tasks.json"), &stage)
	readJSON(t, filepath.Join(out, "batch-cutover-tasks.json"), &cutover)
	if len(stage.Value) != len(ids) || len(cutover.Value) != len(ids) {
		t.Fatalf("%d stage and %d cutover tasks, want %d each (the blocked VM left out)", len(stage.Value), len(cutover.Value), len(ids))
	}
	stageVM := map[string]string{} // stage task ID → the VM its command converts
	common := func(kind string, i int, tk fleetBatchTask) {
		t.Helper()
		if tk.ContainerSettings.ImageName != image || !strings.HasSuffix(tk.ContainerSettings.ContainerRunOptions, ":/journals") || tk.Constraints.MaxTaskRetryCount != 2 {
			t.Errorf("%s task %d: %+v", kind, i, tk)
		}
		if len(tk.EnvironmentSettings) != 1 || tk.EnvironmentSettings[0] != (struct{ Name, Value string }{"AZURE_CLIENT_ID", identity}) {
			t.Errorf("%s task %d environment: %+v", kind, i, tk.EnvironmentSettings)
		}
		var codes []int
		for _, c := range tk.ExitConditions.ExitCodes {
			codes = append(codes, c.Code)
			// dependencyAction block, and no jobAction: Batch refuses one under the job's default
			// onTaskFailure (noaction), which already keeps the job going.
			if len(c.ExitOptions) != 1 || c.ExitOptions["dependencyAction"] != "block" {
				t.Errorf("%s task %d: exit %d: %v, want only dependencyAction block", kind, i, c.Code, c.ExitOptions)
			}
		}
		if !slices.Equal(codes, permanentExits) || slices.Contains(codes, exitFailure) || slices.Contains(codes, exitInterrupted) {
			t.Errorf("%s task %d exit conditions %v", kind, i, codes)
		}
	}
	for i, tk := range stage.Value {
		common("stage", i, tk)
		want := []string{"azure", "convert", "--vm", ids[i], "--des", des, "--journal-dir", "/journals", "--json", "-q", "--parallel", "3", "--stage"}
		if args := strings.Fields(tk.CommandLine); !slices.Equal(args, want) {
			t.Errorf("stage task %d: %q, want %q", i, args, want)
		}
		if tk.ID != fmt.Sprintf("stage-%04d", i) || tk.DisplayName != ids[i] || tk.DependsOn != nil {
			t.Errorf("stage task %d: id %q, display name %q, depends on %+v", i, tk.ID, tk.DisplayName, tk.DependsOn)
		}
		stageVM[tk.ID] = ids[i]
	}
	for i, tk := range cutover.Value {
		common("cutover", i, tk)
		want := []string{"azure", "convert", "--vm", ids[i], "--des", des, "--journal-dir", "/journals", "--json", "-q", "--parallel", "3",
			"--cutover", "--deallocate", "--recreate-vm", "--license", "payg", "--verify"}
		if args := strings.Fields(tk.CommandLine); !slices.Equal(args, want) {
			t.Errorf("cutover task %d: %q, want %q", i, args, want)
		}
		if tk.ID != fmt.Sprintf("cutover-%04d", i) || tk.DisplayName != ids[i] {
			t.Errorf("cutover task %d: id %q, display name %q", i, tk.ID, tk.DisplayName)
		}
		if tk.DependsOn == nil || len(tk.DependsOn.TaskIDs) != 1 || stageVM[tk.DependsOn.TaskIDs[0]] != ids[i] {
			t.Errorf("cutover task %d (%s) depends on %+v, want the stage task of the same VM", i, ids[i], tk.DependsOn)
		}
	}
	// Task i, stage or cutover, is the VM `azure convert --inventory F --index i` converts.
	for i := range ids {
		vm, err := inventoryVM(invPath, i)
		if err != nil || vm != stage.Value[i].DisplayName || vm != cutover.Value[i].DisplayName {
			t.Errorf("index %d: %q, %v; stage task %s, cutover task %s", i, vm, err, stage.Value[i].DisplayName, cutover.Value[i].DisplayName)
		}
	}

	// Without --delta, nothing of this: one whole-VM task per VM, no dependencies, no stage or cutover.
	plain := filepath.Join(dir, "plain")
	if _, se, code := runCLI(t, "azure", "fleet", "--engine", "batch", "--inventory", invPath, "--image", image, "--des", des, "--verify", "--output-dir", plain); code != 0 {
		t.Fatalf("batch: exit %d\n%s", code, se)
	}
	var plainJob struct{ UsesTaskDependencies bool }
	var plainTasks struct{ Value []fleetBatchTask }
	readJSON(t, filepath.Join(plain, "batch-job.json"), &plainJob)
	readJSON(t, filepath.Join(plain, "batch-tasks.json"), &plainTasks)
	if plainJob.UsesTaskDependencies || len(plainTasks.Value) != len(ids) {
		t.Fatalf("whole-VM job: %+v, %d tasks", plainJob, len(plainTasks.Value))
	}
	for i, tk := range plainTasks.Value {
		want := []string{"azure", "convert", "--vm", ids[i], "--des", des, "--journal-dir", "/journals", "--json", "-q", "--parallel", "3", "--verify"}
		if args := strings.Fields(tk.CommandLine); !slices.Equal(args, want) || tk.DependsOn != nil {
			t.Errorf("whole-VM task %d: %q (depends on %+v), want %q", i, args, tk.DependsOn, want)
		}
	}
}

// fleetK8sJob is the part of a Kubernetes object the fleet tests check.
type fleetK8sJob struct {
	APIVersion string `json:"apiVersion"`
	Kind       string
	Metadata   struct {
		Name, Namespace string
		Annotations     map[string]string
	}
	Data      map[string]string
	Immutable *bool
	Spec      struct {
		CompletionMode       string
		Completions          int
		Parallelism          int
		BackoffLimitPerIndex int
		PodFailurePolicy     struct {
			Rules []fleetK8sRule
		}
		Template struct {
			Metadata struct{ Labels map[string]string }
			Spec     struct {
				ServiceAccountName            string
				RestartPolicy                 string
				TerminationGracePeriodSeconds int64
				Containers                    []struct {
					Name, Image     string
					Args            []string
					VolumeMounts    []struct{ Name, MountPath string }
					SecurityContext struct{ SeccompProfile struct{ Type string } }
				}
				Volumes []struct {
					Name                  string
					ConfigMap             *struct{ Name string }
					PersistentVolumeClaim *struct{ ClaimName string }
				}
			}
		}
	}
}

// fleetK8sRule is a rule of a Job's podFailurePolicy.
type fleetK8sRule struct {
	Action      string
	OnExitCodes *struct {
		ContainerName, Operator string
		Values                  []int
	}
	OnPodConditions []struct{ Type string }
}

// checkPodFailurePolicy checks the rules of a fleet Job: a pod disrupted (drained node, preemption) is
// ignored, not counted against the retries; the exit codes no retry changes fail the index.
func checkPodFailurePolicy(t *testing.T, what string, r []fleetK8sRule) {
	t.Helper()
	if len(r) != 2 || r[0].Action != "Ignore" || r[0].OnExitCodes != nil || len(r[0].OnPodConditions) != 1 || r[0].OnPodConditions[0].Type != "DisruptionTarget" ||
		r[1].Action != "FailIndex" || r[1].OnExitCodes == nil || r[1].OnExitCodes.Operator != "In" || r[1].OnExitCodes.ContainerName != "luksconv" ||
		!slices.Equal(r[1].OnExitCodes.Values, permanentExits) {
		t.Errorf("%s pod failure policy: %+v", what, r)
	}
}

// TestAzureFleetDeltaKubernetes: with --delta, kubernetes-stage.json holds the ServiceAccount, the
// inventory's ConfigMap and the Indexed Job NAME-stage, kubernetes-cutover.json the Indexed Job
// NAME-cutover alone (created at the window, on the objects the stage file made). Both Jobs have
// the same completions, the same inventory (so index i is the same VM in both, the i-th convertible
// one), the same service account and workload identity, retries and FailIndex rule, and mount the
// same ReadWriteMany claim at --journal-dir: the stage records the cutover pods read are there. The
// stage pods run `--stage` with no --recreate-vm; the cutover pods `--cutover --deallocate
// --recreate-vm`.
func TestAzureFleetDeltaKubernetes(t *testing.T) {
	dir := t.TempDir()
	invPath, ids := fleetInventory(t, dir)
	const image, des, identity = "registry.example/luksconv:1", fleetDES, "11111111-2222-3333-4444-555555555555"
	common := []string{"azure", "fleet", "--engine", "kubernetes", "--delta", "--inventory", invPath, "--image", image, "--des", des,
		"--identity", identity, "--recreate-vm", "--license", "payg", "--retries", "2", "--parallel", "2", "--name", "wave1", "--namespace", "conv",
		"--journal-dir", "/var/journals", "--journal-claim", "shared-rwx"}
	out := filepath.Join(dir, "k8s")
	if _, se, code := runCLI(t, append(common, "--output-dir", out)...); code != 0 {
		t.Fatalf("kubernetes --delta: exit %d\n%s", code, se)
	}
	if _, err := os.Stat(filepath.Join(out, "kubernetes.json")); !os.IsNotExist(err) {
		t.Errorf("--delta wrote the whole-VM Job too: %v", err)
	}
	var stageList, cutoverList struct {
		Kind  string
		Items []fleetK8sJob
	}
	readJSON(t, filepath.Join(out, "kubernetes-stage.json"), &stageList)
	readJSON(t, filepath.Join(out, "kubernetes-cutover.json"), &cutoverList)
	kinds := map[string]fleetK8sJob{}
	for _, it := range stageList.Items {
		kinds[it.Kind] = it
	}
	sa, cm, stage := kinds["ServiceAccount"], kinds["ConfigMap"], kinds["Job"]
	if stageList.Kind != "List" || len(stageList.Items) != 3 || sa.Metadata.Annotations["azure.workload.identity/client-id"] != identity ||
		sa.Metadata.Namespace != "conv" || cm.Metadata.Namespace != "conv" {
		t.Fatalf("stage list: %+v", stageList)
	}
	if cutoverList.Kind != "List" || len(cutoverList.Items) != 1 || cutoverList.Items[0].Kind != "Job" {
		t.Fatalf("cutover list: %+v, want the cutover Job alone (kubectl create -f next to the stage file's objects)", cutoverList)
	}
	cutover := cutoverList.Items[0]
	if stage.Metadata.Name != "wave1-stage" || cutover.Metadata.Name != "wave1-cutover" || stage.Metadata.Namespace != "conv" || cutover.Metadata.Namespace != "conv" {
		t.Errorf("jobs %s/%s and %s/%s", stage.Metadata.Namespace, stage.Metadata.Name, cutover.Metadata.Namespace, cutover.Metadata.Name)
	}

	inventoryArgs := []string{"azure", "convert", "--inventory", "/inventory/inventory.json", "--index", "$(JOB_COMPLETION_INDEX)", "--des", des, "--journal-dir", "/var/journals", "--json", "-q", "--parallel", "3"}
	for _, c := range []struct {
		job       fleetK8sJob
		component string
		wantArgs  []string
	}{
		{stage, "stage", append(slices.Clone(inventoryArgs), "--stage")},
		{cutover, "cutover", append(slices.Clone(inventoryArgs), "--cutover", "--deallocate", "--recreate-vm", "--license", "payg")},
	} {
		sp := c.job.Spec
		if c.job.APIVersion != "batch/v1" || sp.CompletionMode != "Indexed" || sp.Completions != len(ids) || sp.Parallelism != 2 || sp.BackoffLimitPerIndex != 2 {
			t.Errorf("%s job spec: %+v", c.component, sp)
		}
		checkPodFailurePolicy(t, c.component, sp.PodFailurePolicy.Rules)
		ps := sp.Template.Spec
		labels := sp.Template.Metadata.Labels
		if ps.ServiceAccountName != sa.Metadata.Name || ps.RestartPolicy != "Never" || labels["azure.workload.identity/use"] != "true" ||
			labels["app.kubernetes.io/component"] != c.component || len(ps.Containers) != 1 {
			t.Fatalf("%s pod: %+v, labels %v", c.component, ps, labels)
		}
		// Every pod gets the time for its clean-up; the cutover re-creates the VM, which it finishes
		// once begun, and gets the time for that.
		if g, want := ps.TerminationGracePeriodSeconds, map[string]int64{"stage": int64((azure.SettleTime + 2*cleanupTimeout).Seconds()),
			"cutover": int64((azure.MaxRecreateTime + 5*time.Minute).Seconds())}[c.component]; g != want {
			t.Errorf("%s pod: terminationGracePeriodSeconds %d, want %d", c.component, g, want)
		}
		ct := ps.Containers[0]
		if ct.Image != image || !slices.Equal(ct.Args, c.wantArgs) {
			t.Errorf("%s container: %+v, want args %q", c.component, ct, c.wantArgs)
		}
		mounts := map[string]string{}
		for _, m := range ct.VolumeMounts {
			mounts[m.Name] = m.MountPath
		}
		vols := map[string]bool{}
		for _, v := range ps.Volumes {
			vols[v.Name] = (v.ConfigMap != nil && v.ConfigMap.Name == cm.Metadata.Name) || (v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == "shared-rwx")
		}
		if mounts["inventory"] != "/inventory" || mounts["journals"] != "/var/journals" || !vols["inventory"] || !vols["journals"] {
			t.Errorf("%s volumes %v, mounts %v: want the inventory's ConfigMap and the journal claim at --journal-dir", c.component, vols, mounts)
		}
	}

	// The ConfigMap both Jobs mount holds the inventory's convertible VMs: index i resolves to the i-th.
	mounted := filepath.Join(dir, "mounted-inventory.json")
	if err := os.WriteFile(mounted, []byte(cm.Data["inventory.json"]), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if vm, err := inventoryVM(mounted, i); err != nil || vm != id {
			t.Errorf("index %d: %q, %v; want %s", i, vm, err, id)
		}
	}

	// The longest derived name must still be a Kubernetes name; without --delta the same --name is fine.
	long := strings.Repeat("a", 60)
	bad := append(slices.Clone(common), "--name", long, "--output-dir", filepath.Join(dir, "long"))
	if _, se, code := runCLI(t, bad...); code != exitUsage {
		t.Errorf("--delta --name %s: exit %d, want %d\n%s", long, code, exitUsage, se)
	}
	okArgs := slices.DeleteFunc(slices.Clone(bad), func(s string) bool { return s == "--delta" })
	if _, se, code := runCLI(t, okArgs...); code != 0 {
		t.Errorf("--name %s without --delta: exit %d\n%s", long, code, se)
	}
}

// noWallClockLimit checks that the Batch files in dir set no maxWallClockTime, on the job or a task:
// Batch has no termination grace, so such a limit could end a task between deleting its VM and
// re-creating it (the README's runbook says none is set).
func noWallClockLimit(t *testing.T, dir string, files ...string) {
	t.Helper()
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("maxWallClockTime")) {
			t.Errorf("%s sets a maxWallClockTime", f)
		}
	}
}

// panicCredential panics when asked for a token: a bug deep in a run, on the run's own goroutine.
type panicCredential struct{}

func (panicCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	panic("credential bug")
}

// TestAzureConvertJSONOnError: a fleet task's `azure convert --json` prints one JSON object on
// standard output whatever the outcome, so the engine's task output holds a result for each VM: on a
// failure it names the VM, the error (no secret), the exit code and whether a retry can help, in
// step with the exit code. A panic on the run's goroutine becomes exit 1 (Go's own exit code for a
// panic, 2, is the usage code, which a fleet engine takes as permanent).
func TestAzureConvertJSONOnError(t *testing.T) {
	inventoryCloud(t)
	dir := t.TempDir()
	so, se, code := runCLI(t, "azure", "inventory", "--subscription", fakeSub, "--json")
	if code != 0 {
		t.Fatalf("inventory: exit %d:\n%s", code, se)
	}
	invPath := filepath.Join(dir, "inventory.json")
	if err := os.WriteFile(invPath, []byte(so), 0o644); err != nil {
		t.Fatal(err)
	}
	var inv azure.Inventory
	readJSON(t, invPath, &inv)
	running := -1 // index of the first convertible VM that runs: a whole-VM run refuses it (exit 1)
	for i, vm := range fleetVMs(&inv) {
		if vm.Running {
			running = i
			break
		}
	}
	if running < 0 {
		t.Fatal("the fake fleet has no convertible running VM")
	}
	missing := fakeID("virtualMachines", "gone")
	for _, tc := range []struct {
		name      string
		args      []string
		code      int
		retryable bool
		vm        string
	}{
		{"running VM", []string{"--inventory", invPath, "--index", fmt.Sprint(running)}, exitFailure, true, fleetVMs(&inv)[running].ID},
		{"no such VM", []string{"--vm", missing}, exitUsage, false, missing},
		{"index past the end", []string{"--inventory", invPath, "--index", "99"}, exitUsage, false, ""},
	} {
		args := append([]string{"azure", "convert", "--des", fakeDES, "--journal-dir", dir, "--json", "-q"}, tc.args...)
		so, se, code := runCLI(t, args...)
		var rep struct {
			VM        string `json:"vm"`
			Error     string `json:"error"`
			ExitCode  int    `json:"exit_code"`
			Retryable bool   `json:"retryable"`
		}
		dec := json.NewDecoder(strings.NewReader(so))
		if err := dec.Decode(&rep); err != nil {
			t.Errorf("%s: exit %d, stdout %q is not a JSON report: %v\n%s", tc.name, code, so, err, se)
			continue
		}
		if dec.More() {
			t.Errorf("%s: more than one JSON value on stdout: %s", tc.name, so)
		}
		if code != tc.code || rep.ExitCode != code || rep.Retryable != tc.retryable || rep.VM != tc.vm || rep.Error == "" {
			t.Errorf("%s: exit %d, report %+v; want exit %d, retryable %v, vm %q", tc.name, code, rep, tc.code, tc.retryable, tc.vm)
		}
	}

	old := azureClientHook
	azureClientHook = func() (azcore.TokenCredential, *azure.Options) {
		_, opts := old()
		return panicCredential{}, opts
	}
	so, se, code = runCLI(t, "azure", "convert", "--vm", missing, "--des", fakeDES, "--journal-dir", dir, "--json")
	var rep struct {
		ExitCode  int  `json:"exit_code"`
		Retryable bool `json:"retryable"`
	}
	if err := json.Unmarshal([]byte(so), &rep); err != nil || code != exitFailure || rep.ExitCode != exitFailure || !rep.Retryable || !strings.Contains(se, "credential bug") {
		t.Errorf("panic: exit %d, stdout %q (%v), stderr:\n%s", code, so, err, se)
	}
}

// TestAzureConvertJSONOnFlagError: a flag the binary does not know (fleet files of a newer version than
// the image) is a usage error that still leaves its JSON report with --json, wherever --json stands:
// exit 2, not retryable. The built binary sees the process's arguments; in-process, --json before the
// bad flag is parsed already.
func TestAzureConvertJSONOnFlagError(t *testing.T) {
	vm := fakeID("virtualMachines", "vm1")
	check := func(name, so, se string, code int) {
		t.Helper()
		var rep azureErrorReport
		dec := json.NewDecoder(strings.NewReader(so))
		if err := dec.Decode(&rep); err != nil || dec.More() {
			t.Errorf("%s: exit %d, stdout %q is not one JSON report (%v):\n%s", name, code, so, err, se)
			return
		}
		if code != exitUsage || rep.ExitCode != exitUsage || rep.Retryable || !strings.Contains(rep.Error, "--stage-window") ||
			!strings.Contains(se, "unknown flag: --stage-window") {
			t.Errorf("%s: exit %d, report %+v:\n%s", name, code, rep, se)
		}
	}
	for _, args := range [][]string{
		{"azure", "convert", "--vm", vm, "--json", "--stage-window", "2h"},
		{"azure", "convert", "--vm", vm, "--stage-window", "2h", "--json"},
		{"azure", "convert", "--stage-window", "2h", "--vm", vm, "--json=true", "-q"},
	} {
		so, se, code := run(t, nil, args...)
		check(fmt.Sprintf("binary %q", args), so, se, code)
	}
	so, se, code := runCLI(t, "azure", "convert", "--json", "--stage-window", "2h")
	check("in-process", so, se, code)
	// So for a flag value refused before the run (root's PersistentPreRunE).
	so, se, code = runCLI(t, "azure", "convert", "--json", "--vm", vm, "--workers", "65")
	if rep := errorReport(t, so); code != exitUsage || rep.ExitCode != exitUsage || rep.Retryable || rep.VM != vm || !strings.Contains(rep.Error, "--workers 65") {
		t.Errorf("--workers 65: exit %d, report %+v:\n%s", code, rep, se)
	}
	// Without --json, or with --json=false, standard output stays empty.
	for _, args := range [][]string{{"azure", "convert", "--stage-window", "2h"}, {"azure", "convert", "--json=false", "--stage-window", "2h"}} {
		if so, se, code := run(t, nil, args...); code != exitUsage || so != "" {
			t.Errorf("%q: exit %d, stdout %q:\n%s", args, code, so, se)
		}
	}
}

// TestAzureFleetKubernetesLargeInventory: the Kubernetes files of a 500-VM fleet (the README's sizing
// example) can be applied. `kubectl apply` keeps the whole object in an annotation, and Kubernetes
// caps an object's annotations at 256 KiB (and a ConfigMap at 1 MiB), so the ConfigMap holds what
// the pods need of the inventory, each convertible VM in the same order, not the whole document
// (about 4 KB a VM as `azure inventory --json` prints it).
func TestAzureFleetKubernetesLargeInventory(t *testing.T) {
	dir := t.TempDir()
	inv := azure.Inventory{SchemaVersion: azure.InventorySchemaVersion, Source: "Azure Resource Graph", Subscriptions: []string{fakeSub}}
	var ids []string
	for i := range 520 {
		name := fmt.Sprintf("rhel-app-%04d", i)
		id := fakeID("virtualMachines", name)
		vm := azure.InventoryVM{ID: id, Name: name, ResourceGroup: fakeRG, Subscription: fakeSub, Location: "westeurope", Zones: []string{"1"},
			Size: "Standard_D4s_v3", PowerState: "running", Running: true, OSType: "Linux", OSFamily: azure.OSFamilyRHEL, SecurityType: "Standard", VolumeType: "All",
			Image:    azure.InventoryImage{Publisher: "RedHat", Offer: "RHEL", SKU: "8-lvm-gen2", Version: "latest", From: "imageReference"},
			ADE:      azure.InventoryADE{Extension: "AzureDiskEncryptionForLinux", ExtensionVersion: "1.1", KeyVaultURL: "https://fleetvault.vault.azure.net"},
			Blockers: []azure.InventoryBlocker{}, Convertible: i%10 != 3,
			Notes: []string{"running (not a blocker): a staging pass can read a snapshot of the running VM, and the VM is deallocated for the cutover"}}
		for lun := -1; lun < 2; lun++ {
			dn := fmt.Sprintf("%s-disk%d", name, lun+1)
			vm.Disks = append(vm.Disks, azure.InventoryDisk{ID: fakeID("disks", dn), Name: dn, ResourceGroup: fakeRG, Subscription: fakeSub, Location: "westeurope",
				Role: "data", SizeGiB: 128, SizeBytes: 128 << 30, SKU: "Premium_LRS", State: "Attached", ADE: true, ADEFrom: "disk", ADEVersion: "1.1",
				KeyVaultURL: "https://fleetvault.vault.azure.net", SecretURL: "https://fleetvault.vault.azure.net/secrets/" + dn + "-bek/0123456789abcdef0123456789abcdef",
				Convert: true, ManagedBy: id})
		}
		if vm.Convertible {
			ids = append(ids, id)
		}
		inv.VMs = append(inv.VMs, vm)
	}
	var buf bytes.Buffer
	if err := writeJSON(&buf, inv); err != nil {
		t.Fatal(err)
	}
	invPath := filepath.Join(dir, "inventory.json")
	if err := os.WriteFile(invPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "k8s")
	if _, se, code := runCLI(t, "azure", "fleet", "--engine", "kubernetes", "--inventory", invPath, "--image", "img", "--des", fakeDES, "--identity", "cid", "--output-dir", out); code != 0 {
		t.Fatalf("fleet: exit %d\n%s", code, se)
	}
	var list struct{ Items []json.RawMessage }
	readJSON(t, filepath.Join(out, "kubernetes.json"), &list)
	var cm struct {
		Kind string
		Data map[string]string
	}
	for _, it := range list.Items {
		if json.Unmarshal(it, &cm) == nil && cm.Kind == "ConfigMap" {
			if len(it) > 256<<10-4<<10 {
				t.Errorf("the ConfigMap is %d bytes (inventory %d bytes): over what kubectl apply can annotate (256 KiB)", len(it), buf.Len())
			}
			break
		}
	}
	mounted := filepath.Join(dir, "mounted.json")
	if err := os.WriteFile(mounted, []byte(cm.Data["inventory.json"]), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if vm, err := inventoryVM(mounted, i); err != nil || vm != id {
			t.Fatalf("index %d: %q, %v; want %s", i, vm, err, id)
		}
	}
	if _, err := inventoryVM(mounted, len(ids)); err == nil {
		t.Errorf("index %d resolves: the ConfigMap holds more VMs than the convertible ones", len(ids))
	}

	// Past what one ConfigMap can carry, the fleet is refused (split it), not written to fail at apply.
	for i := range 1000 {
		vm := inv.VMs[0]
		vm.ID = fakeID("virtualMachines", fmt.Sprintf("more-%04d", i))
		inv.VMs = append(inv.VMs, vm)
	}
	b, err := json.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(invPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, se, code := runCLI(t, "azure", "fleet", "--engine", "kubernetes", "--inventory", invPath, "--image", "img", "--des", fakeDES, "--identity", "cid", "--output-dir", filepath.Join(dir, "big")); code != exitUsage || !strings.Contains(se, "split the inventory") {
		t.Errorf("%d VMs: exit %d, want %d\n%s", len(inv.VMs), code, exitUsage, se)
	}
}

// TestAzureFleetEntrypoint: the engines run the image of deploy/Dockerfile, whose ENTRYPOINT is the
// CLI. Docker appends a container's command to the ENTRYPOINT: a Batch container task's commandLine
// is that command (the ENTRYPOINT is replaced only with --entrypoint in containerRunOptions), and so
// are a Kubernetes container's args. Each task's argv, ENTRYPOINT then command, must be a luksconv
// azure convert command line.
func TestAzureFleetEntrypoint(t *testing.T) {
	df, err := os.ReadFile("../../deploy/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var entrypoint []string
	for line := range strings.Lines(string(df)) {
		if rest, ok := strings.CutPrefix(line, "ENTRYPOINT "); ok {
			if err := json.Unmarshal([]byte(rest), &entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT %s: %v", rest, err)
			}
		}
	}
	if len(entrypoint) != 1 || entrypoint[0] != "/luksconv" {
		t.Fatalf("ENTRYPOINT %q", entrypoint)
	}
	dir := t.TempDir()
	invPath, _ := fleetInventory(t, dir)
	check := func(what string, argv []string) {
		t.Helper()
		cmd, rest, err := newRootCmd().Find(argv[1:])
		if err != nil || cmd.CommandPath() != "luksconv azure convert" || len(rest) == 0 || rest[0] != "--des" && rest[0] != "--vm" && rest[0] != "--inventory" {
			t.Errorf("%s: argv %q runs %q (%v), not luksconv azure convert", what, argv, cmd.CommandPath(), err)
		}
	}
	for _, delta := range []bool{false, true} {
		out := filepath.Join(dir, fmt.Sprint("out-", delta))
		args := []string{"azure", "fleet", "--inventory", invPath, "--image", "img", "--des", fleetDES, "--identity", "cid", "--output-dir", out, "--recreate-vm", "--license", "byos"}
		if delta {
			args = append(args, "--delta")
		}
		for _, engine := range []string{"batch", "kubernetes"} {
			if _, se, code := runCLI(t, append(args, "--engine", engine)...); code != 0 {
				t.Fatalf("%s: exit %d\n%s", engine, code, se)
			}
		}
		files, _ := filepath.Glob(filepath.Join(out, "batch-*tasks.json"))
		for _, p := range files {
			var tasks struct {
				Value []struct{ ID, CommandLine string }
			}
			readJSON(t, p, &tasks)
			for _, tk := range tasks.Value {
				check(tk.ID, append(slices.Clone(entrypoint), strings.Fields(tk.CommandLine)...))
			}
		}
		files, _ = filepath.Glob(filepath.Join(out, "kubernetes*.json"))
		for _, p := range files {
			var list struct {
				Items []struct {
					Kind string
					Spec struct {
						Template struct {
							Spec struct {
								Containers []struct{ Command, Args []string }
							}
						}
					}
				}
			}
			readJSON(t, p, &list)
			for _, it := range list.Items {
				if it.Kind != "Job" {
					continue
				}
				c := it.Spec.Template.Spec.Containers[0]
				if len(c.Command) != 0 {
					t.Errorf("%s: the container replaces the ENTRYPOINT with %q", p, c.Command)
				}
				check(p, append(slices.Clone(entrypoint), c.Args...))
			}
		}
	}
}

// TestUnknownCommand: a command line naming no command of luksconv is a usage error, exit 2, which a
// fleet engine does not retry. It was exit 1 (retried) at the top level, and under `azure` or `vm`
// exit 0 after the help: a task with a misspelt command "succeeded" without converting anything.
func TestUnknownCommand(t *testing.T) {
	for _, args := range [][]string{{"bogus"}, {"/luksconv", "azure", "convert"}, {"azure", "bogus"}, {"azure", "convrt"}, {"vm", "bogus"}} {
		if _, se, code := runCLI(t, args...); code != exitUsage || !strings.Contains(se, "unknown command") {
			t.Errorf("%q: exit %d, want %d:\n%s", args, code, exitUsage, se)
		}
	}
	// A group alone still prints its help.
	for _, args := range [][]string{{}, {"azure"}, {"vm"}} {
		if so, se, code := runCLI(t, args...); code != 0 || !strings.Contains(so, "Available Commands") {
			t.Errorf("%q: exit %d, want the help:\n%s%s", args, code, so, se)
		}
	}
}

// TestAzureFleetDESPlace: every task of a fleet gets the same --des, and a DES encrypts disks of its
// own subscription and region only (azure convert refuses any other: exit 2). A fleet whose
// convertible VMs are in another subscription than the DES, or in several regions, would write
// tasks that all fail there; it is refused, naming them, so that the inventory is split.
func TestAzureFleetDESPlace(t *testing.T) {
	dir := t.TempDir()
	n := 0
	write := func(vms ...azure.InventoryVM) string {
		inv := azure.Inventory{SchemaVersion: azure.InventorySchemaVersion, VMs: vms}
		b, err := json.Marshal(inv)
		if err != nil {
			t.Fatal(err)
		}
		n++
		p := filepath.Join(dir, fmt.Sprintf("inv-%d.json", n))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	vm := func(sub, name, loc string) azure.InventoryVM {
		return azure.InventoryVM{ID: "/subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/" + name, Name: name,
			Subscription: sub, ResourceGroup: "rg", Location: loc, Convertible: true}
	}
	blocked := vm(fakeOtherSub, "cvm", "eastus")
	blocked.Convertible = false
	for _, tc := range []struct {
		name string
		inv  string
		code int
		want string
	}{
		{"one subscription and region", write(vm(fakeSub, "a", "westeurope"), vm(fakeSub, "b", "West Europe"), blocked), 0, ""},
		{"another subscription", write(vm(fakeSub, "a", "westeurope"), vm(fakeOtherSub, "b", "westeurope")), exitUsage, "virtualMachines/b"},
		{"two regions", write(vm(fakeSub, "a", "westeurope"), vm(fakeSub, "b", "westeurope"), vm(fakeSub, "c", "eastus")), exitUsage, "eastus"},
	} {
		for _, engine := range []string{"batch", "kubernetes"} {
			_, se, code := runCLI(t, "azure", "fleet", "--engine", engine, "--inventory", tc.inv, "--image", "img", "--des", fakeDES,
				"--identity", "cid", "--output-dir", filepath.Join(dir, "out"))
			if code != tc.code || !strings.Contains(se, tc.want) {
				t.Errorf("%s, %s: exit %d, want %d naming %q\n%s", tc.name, engine, code, tc.code, tc.want, se)
			}
		}
	}
	if _, se, code := runCLI(t, "azure", "fleet", "--engine", "batch", "--inventory", filepath.Join(dir, "inv-1.json"), "--image", "img", "--des", "des1",
		"--output-dir", filepath.Join(dir, "out")); code != exitUsage || !strings.Contains(se, "--des") {
		t.Errorf("--des that is no resource ID: exit %d\n%s", code, se)
	}
}
