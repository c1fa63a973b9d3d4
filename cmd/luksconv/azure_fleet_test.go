package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/luksconv/luksconv/azure"
)

// fleetInventory writes an inventory of four VMs, the third blocked, and returns its path.
func fleetInventory(t *testing.T, dir string) (string, []string) {
	t.Helper()
	inv := azure.Inventory{SchemaVersion: azure.InventorySchemaVersion, Source: "test"}
	var ids []string
	for i, name := range []string{"rhel-a", "rhel-b", "cvm", "ubuntu"} {
		id := "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/" + name
		vm := azure.InventoryVM{ID: id, Name: name, Convertible: i != 2}
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
//   - Batch: a job on the pool with retries, and one task per convertible VM (the blocked one left
//     out) running the image's /luksconv with --vm, --des, --journal-dir (the mounted share) and
//     --json, the managed identity's client ID in AZURE_CLIENT_ID, and the permanent exit codes.
//   - Kubernetes: a ServiceAccount federated with the identity, the inventory in a ConfigMap and an
//     Indexed Job (completions = convertible VMs, backoffLimitPerIndex, FailIndex on the permanent
//     exit codes, workload identity label, the journals' claim) whose pod i runs `azure convert
//     --inventory … --index $(JOB_COMPLETION_INDEX)`; that index resolves to the i-th VM.
func TestAzureFleet(t *testing.T) {
	dir := t.TempDir()
	invPath, ids := fleetInventory(t, dir)
	const image, des, identity = "registry.example/luksconv:1", "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/diskEncryptionSets/des", "11111111-2222-3333-4444-555555555555"
	common := []string{"azure", "fleet", "--inventory", invPath, "--image", image, "--des", des, "--identity", identity, "--recreate-vm", "--retries", "2"}

	out := filepath.Join(dir, "batch")
	if _, se, code := runCLI(t, append(common, "--engine", "batch", "--output-dir", out, "--pool", "p1")...); code != 0 {
		t.Fatalf("batch: exit %d\n%s", code, se)
	}
	var job struct {
		ID       string
		PoolInfo struct{ PoolID string }
		Constr   struct{ MaxTaskRetryCount int } `json:"constraints"`
	}
	readJSON(t, filepath.Join(out, "batch-job.json"), &job)
	if job.ID != "luksconv-fleet" || job.PoolInfo.PoolID != "p1" || job.Constr.MaxTaskRetryCount != 2 {
		t.Errorf("batch job: %+v", job)
	}
	var tasks struct {
		Value []struct {
			ID, DisplayName, CommandLine string
			ContainerSettings            struct{ ImageName, ContainerRunOptions string }
			Constraints                  struct{ MaxTaskRetryCount int }
			EnvironmentSettings          []struct{ Name, Value string }
			ExitConditions               struct {
				ExitCodes []struct{ Code int }
			}
		}
	}
	readJSON(t, filepath.Join(out, "batch-tasks.json"), &tasks)
	if len(tasks.Value) != len(ids) {
		t.Fatalf("%d Batch tasks, want %d (the blocked VM left out)", len(tasks.Value), len(ids))
	}
	for i, tk := range tasks.Value {
		args := strings.Fields(tk.CommandLine)
		want := []string{"/luksconv", "azure", "convert", "--vm", ids[i], "--des", des, "--journal-dir", "/journals", "--json", "-q", "--recreate-vm"}
		if !slices.Equal(args, want) || tk.DisplayName != ids[i] {
			t.Errorf("task %d: %q, want %q", i, args, want)
		}
		if tk.ContainerSettings.ImageName != image || !strings.Contains(tk.ContainerSettings.ContainerRunOptions, ":/journals") || tk.Constraints.MaxTaskRetryCount != 2 {
			t.Errorf("task %d: %+v", i, tk)
		}
		if len(tk.EnvironmentSettings) != 1 || tk.EnvironmentSettings[0] != (struct{ Name, Value string }{"AZURE_CLIENT_ID", identity}) {
			t.Errorf("task %d environment: %+v", i, tk.EnvironmentSettings)
		}
		var codes []int
		for _, c := range tk.ExitConditions.ExitCodes {
			codes = append(codes, c.Code)
		}
		if !slices.Equal(codes, permanentExits) || slices.Contains(codes, exitFailure) || slices.Contains(codes, exitInterrupted) {
			t.Errorf("task %d exit conditions %v", i, codes)
		}
	}

	out = filepath.Join(dir, "k8s")
	if _, se, code := runCLI(t, append(common, "--engine", "kubernetes", "--output-dir", out, "--parallel", "2")...); code != 0 {
		t.Fatalf("kubernetes: exit %d\n%s", code, se)
	}
	type object struct {
		APIVersion string `json:"apiVersion"`
		Kind       string
		Metadata   struct {
			Name        string
			Annotations map[string]string
		}
		Data map[string]string
		Spec struct {
			CompletionMode       string
			Completions          int
			Parallelism          int
			BackoffLimitPerIndex int
			PodFailurePolicy     struct {
				Rules []struct {
					Action      string
					OnExitCodes struct {
						ContainerName string
						Operator      string
						Values        []int
					}
				}
			}
			Template struct {
				Metadata struct{ Labels map[string]string }
				Spec     struct {
					ServiceAccountName string
					RestartPolicy      string
					Containers         []struct {
						Name, Image  string
						Args         []string
						VolumeMounts []struct{ Name, MountPath string }
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
	var list struct {
		Kind  string
		Items []object
	}
	readJSON(t, filepath.Join(out, "kubernetes.json"), &list)
	kinds := map[string]object{}
	for _, it := range list.Items {
		kinds[it.Kind] = it
	}
	sa, cm, job2 := kinds["ServiceAccount"], kinds["ConfigMap"], kinds["Job"]
	if list.Kind != "List" || len(list.Items) != 3 || sa.Metadata.Annotations["azure.workload.identity/client-id"] != identity {
		t.Fatalf("kubernetes list: %+v", list)
	}
	inv, _ := os.ReadFile(invPath)
	if cm.Data["inventory.json"] != string(inv) {
		t.Errorf("the ConfigMap does not hold the inventory")
	}
	sp := job2.Spec
	if job2.APIVersion != "batch/v1" || sp.CompletionMode != "Indexed" || sp.Completions != len(ids) || sp.Parallelism != 2 || sp.BackoffLimitPerIndex != 2 {
		t.Errorf("job spec: %+v", sp)
	}
	if r := sp.PodFailurePolicy.Rules; len(r) != 1 || r[0].Action != "FailIndex" || r[0].OnExitCodes.Operator != "In" ||
		r[0].OnExitCodes.ContainerName != "luksconv" || !slices.Equal(r[0].OnExitCodes.Values, permanentExits) {
		t.Errorf("pod failure policy: %+v", r)
	}
	ps := sp.Template.Spec
	if ps.ServiceAccountName != sa.Metadata.Name || ps.RestartPolicy != "Never" || sp.Template.Metadata.Labels["azure.workload.identity/use"] != "true" || len(ps.Containers) != 1 {
		t.Fatalf("pod spec: %+v", ps)
	}
	ct := ps.Containers[0]
	wantArgs := []string{"azure", "convert", "--inventory", "/inventory/inventory.json", "--index", "$(JOB_COMPLETION_INDEX)", "--des", des, "--journal-dir", "/journals", "--json", "-q", "--recreate-vm"}
	if ct.Image != image || !slices.Equal(ct.Args, wantArgs) {
		t.Errorf("container: %+v", ct)
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
		vm, err := inventoryVM(invPath, i)
		if err != nil || vm != id {
			t.Errorf("index %d: %q, %v; want %s", i, vm, err, id)
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
}

// TestAzureFleetFromInventory: the inventory the CLI prints for the fake's mixed fleet is the fleet's
// input as it is: every convertible VM gets one Kubernetes index and one Batch task, in the
// inventory's order, and no blocked VM gets either.
func TestAzureFleetFromInventory(t *testing.T) {
	inventoryCloud(t)
	so, se, code := runCLI(t, "azure", "inventory", "--subscription", fakeSub, "--subscription", fakeOtherSub, "--json")
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
	if _, se, code := runCLI(t, "azure", "fleet", "--engine", "batch", "--inventory", invPath, "--image", "i", "--des", "d", "--output-dir", out); code != 0 {
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
