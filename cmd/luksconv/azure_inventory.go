package main

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/luksconv/luksconv/azure"
	"github.com/spf13/cobra"
)

// `azure inventory`: every ADE-stamped VM, disk and snapshot of some subscriptions, from Azure
// Resource Graph, with blockers and time estimates; --json is the input of a fleet run
// (docs/inventory.md).

// errInventoryTruncated: Resource Graph truncated a result, so the inventory printed is incomplete.
var errInventoryTruncated = errors.New("azure: Resource Graph truncated a result: the inventory is incomplete")

var subscriptionIDRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func newAzureInventoryCmd() *cobra.Command {
	var (
		subs     []string
		cloud    string
		parallel int
		asJSON   bool
	)
	c := &cobra.Command{
		Use:   "inventory [--subscription ID]... [--json]",
		Short: "List every ADE-stamped VM, disk and snapshot (Azure Resource Graph) with blockers and time estimates",
		Long: "Reads Azure Resource Graph (read access to the resources is all it needs) and lists every VM that has the\n" +
			"ADE extension or an ADE-stamped disk, with its power state, image, security type, ADE volume type, disks\n" +
			"(size, LUN, ADE settings, Key Vault, Disk Encryption Set), blockers and an estimate of the staging and\n" +
			"cutover times; then the ADE-stamped disks attached to no VM and the ADE-stamped snapshots. Nothing is changed.\n\n" +
			"Without --subscription, every subscription the credential can read is listed. --json prints the inventory\n" +
			"as documented in docs/inventory.md (one line per VM: jq -c '.vms[]'). If Resource Graph truncated a result,\n" +
			"the inventory is still printed, marked truncated, and the exit code is 1.",
		Args: usageArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			for _, s := range subs {
				if !subscriptionIDRe.MatchString(strings.TrimSpace(s)) {
					return fmt.Errorf("%w: --subscription %q is not a subscription ID (a GUID)", errUsage, s)
				}
			}
			if parallel < 1 || parallel > 64 {
				return fmt.Errorf("%w: --parallel %d: want 1 to 64", errUsage, parallel)
			}
			cl, err := inventoryClient(cloud)
			if err != nil {
				return err
			}
			debugAzure("query Azure Resource Graph", strings.Join(subs, ","))
			inv, err := cl.Inventory(c.Context(), azure.InventoryOptions{Subscriptions: subs, Parallel: parallel})
			if err != nil {
				return err
			}
			inv.Cloud = azure.CloudName(cloud) // known by now: inventoryClient refused any other name
			if asJSON {
				err = writeJSON(c.OutOrStdout(), inv)
			} else {
				printInventory(c.OutOrStdout(), inv)
			}
			if err != nil {
				return err
			}
			for _, w := range inv.Warnings {
				fmt.Fprintf(c.ErrOrStderr(), "luksconv: warning: %s\n", printable(w))
			}
			if inv.Truncated {
				return &hintedError{errInventoryTruncated, "list fewer subscriptions at a time with --subscription"}
			}
			return nil
		},
	}
	fl := c.Flags()
	fl.StringSliceVar(&subs, "subscription", nil, "subscription ID to list (repeat the flag or separate with commas; default: every subscription the credential can read)")
	fl.StringVar(&cloud, "cloud", "", "Azure `cloud`, as az cloud list names it: AzureCloud (default), AzureChinaCloud or AzureUSGovernment")
	fl.IntVar(&parallel, "parallel", azure.DefaultInventoryParallel, "disks of a VM staged at the same time, for the estimates")
	fl.BoolVar(&asJSON, "json", false, "print the inventory as JSON (docs/inventory.md)")
	return c
}

// inventoryClient is the control-plane client of `azure inventory`, which names no resource: the
// subscriptions are the query's scope.
func inventoryClient(cloud string) (*azure.Client, error) {
	cl, err := azure.CloudByName(cloud)
	if err != nil {
		return nil, fmt.Errorf("%w: --cloud: %v", errUsage, err)
	}
	if azureClientHook != nil {
		cred, opts := azureClientHook()
		return azure.New("", cred, opts)
	}
	cred, err := azure.DefaultCredentialIn(cl)
	if err != nil {
		return nil, fmt.Errorf("azure credential: %w", err)
	}
	return azure.New("", cred, &azure.Options{Cloud: cl})
}

// printInventory prints one block per VM, then the unattached disks, the snapshots, the scale sets and
// a summary.
func printInventory(w io.Writer, inv *azure.Inventory) {
	scope := "every subscription the credential can read"
	if len(inv.Subscriptions) > 0 {
		scope = "subscription " + strings.Join(inv.Subscriptions, ", ")
	}
	fmt.Fprintf(w, "ADE inventory of %s (Azure Resource Graph, %s)\n", scope, inv.GeneratedAt.Format(time.RFC3339))
	if inv.Truncated {
		fmt.Fprintln(w, "INCOMPLETE: Resource Graph truncated a result (see the warnings)")
	}
	for _, v := range inv.VMs {
		fmt.Fprintf(w, "\nVM %s (resource group %s, subscription %s, %s)\n", printable(v.Name), printable(v.ResourceGroup), v.Subscription, printable(v.Location))
		fmt.Fprintf(w, "  id:        %s\n", printable(v.ID))
		power := v.PowerState
		if v.Running {
			power += " (not a blocker: it can be staged from a snapshot, and is deallocated for the cutover)"
		}
		fmt.Fprintf(w, "  size:      %s, %s\n", printable(v.Size), power)
		fmt.Fprintf(w, "  OS:        %s, %s%s\n", dash(v.OSType), v.OSFamily, imageText(v.Image))
		fmt.Fprintf(w, "  security:  %s\n", v.SecurityType)
		ade := "no ADE extension"
		if v.ADE.Extension != "" {
			ade = fmt.Sprintf("%s %s, volume type %s", v.ADE.Extension, v.ADE.ExtensionVersion, dash(v.VolumeType))
		}
		if v.ADE.DualPass {
			ade += ", dual pass (OS disk settings on the VM model)"
		}
		fmt.Fprintf(w, "  ADE:       %s\n", printable(ade))
		fmt.Fprintln(w, "  disks:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "    DISK\tNAME\tSIZE\tADE\tCONVERT\tKEY VAULT\tDES")
		for _, d := range v.Disks {
			fmt.Fprintf(tw, "    %s\t%s\t%d GiB\t%s\t%s\t%s\t%s\n", diskRole(d), printable(d.Name), d.SizeGiB, yesNo(d.ADE), yesNo(d.Convert), dash(printable(d.KeyVaultURL)), desText(d))
		}
		tw.Flush()
		if len(v.Blockers) == 0 {
			fmt.Fprintln(w, "  blockers:  none")
		} else {
			fmt.Fprintln(w, "  blockers:")
			for _, b := range v.Blockers {
				fmt.Fprintf(w, "    %s: %s\n", b.Code, printable(b.Message))
			}
		}
		for _, n := range v.Notes {
			fmt.Fprintf(w, "  note:      %s\n", printable(n))
		}
		e := v.Estimate
		fmt.Fprintf(w, "  estimate:  staging ~%s (%d disk(s), %d GiB at most), cutover ~%s\n", approx(e.StagingSeconds), e.Disks, e.StagingBytes>>30, approx(e.CutoverSeconds))
	}
	if len(inv.VMs) == 0 {
		fmt.Fprintln(w, "\nNo VM with ADE.")
	}

	fmt.Fprintln(w)
	if len(inv.UnattachedDisks) == 0 {
		fmt.Fprintln(w, "Unattached ADE disks: none")
	} else {
		fmt.Fprintln(w, "Unattached ADE disks:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tRESOURCE GROUP\tSUBSCRIPTION\tSIZE\tKEY VAULT\tDES")
		for _, d := range inv.UnattachedDisks {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d GiB\t%s\t%s\n", printable(d.Name), printable(d.ResourceGroup), d.Subscription, d.SizeGiB, dash(printable(d.KeyVaultURL)), desText(d))
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	if len(inv.Snapshots) == 0 {
		fmt.Fprintln(w, "ADE snapshots: none")
	} else {
		fmt.Fprintln(w, "ADE snapshots:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tRESOURCE GROUP\tSUBSCRIPTION\tSIZE\tSOURCE DISK\tKEY VAULT")
		for _, s := range inv.Snapshots {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d GiB\t%s\t%s\n", printable(s.Name), printable(s.ResourceGroup), s.Subscription, s.SizeGiB, dash(printable(s.SourceDiskName)), dash(printable(s.KeyVaultURL)))
		}
		tw.Flush()
	}

	if len(inv.ScaleSets) > 0 {
		fmt.Fprintln(w, "\nScale sets with ADE's extension in their model (not converted by luksconv):")
		for _, ss := range inv.ScaleSets {
			fmt.Fprintf(w, "  %s (%s, %s): %s, %d instance(s), %s VolumeType %s\n    %s\n", printable(ss.Name), printable(ss.ResourceGroup), ss.Subscription,
				dash(ss.OrchestrationMode), ss.Capacity, printable(ss.Extension), dash(printable(ss.VolumeType)), ss.Note)
		}
	}

	s := inv.Summary
	fmt.Fprintf(w, "\nSummary: %d ADE VM(s): %d convertible, %d blocked, %d running; %d disk(s), %d GiB at most, to convert; %d unattached ADE disk(s), %d ADE snapshot(s), %d ADE scale set(s)\n",
		s.VMs, s.Convertible, s.Blocked, s.Running, s.ConvertDisks, s.ConvertBytes>>30, s.UnattachedDisks, s.Snapshots, s.ScaleSets)
	m := inv.EstimateModel
	fmt.Fprintf(w, "Estimates are estimates: staging = %s; %s.\n", m.StagingBasis, m.CutoverFormula)
}

func diskRole(d azure.InventoryDisk) string {
	if d.LUN != nil {
		return fmt.Sprintf("LUN %d", *d.LUN)
	}
	return strings.ToUpper(d.Role)
}

func desText(d azure.InventoryDisk) string {
	if d.DESID == "" {
		return "-"
	}
	name := d.DESID[strings.LastIndexByte(d.DESID, '/')+1:]
	if d.DESOtherSubscription {
		return printable(name) + " (other subscription)"
	}
	return printable(name)
}

func imageText(img azure.InventoryImage) string {
	switch {
	case img.Publisher != "":
		return fmt.Sprintf(" (%s %s %s, from %s)", printable(img.Publisher), printable(img.Offer), printable(img.SKU), img.From)
	case img.ID != "":
		return fmt.Sprintf(" (image %s)", printable(img.ID))
	}
	return " (no image recorded)"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// approx renders seconds as a rounded duration: 45s, 19m, 1h13m.
func approx(secs int64) string {
	d := time.Duration(secs) * time.Second
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", secs)
	case d < time.Hour:
		return fmt.Sprintf("%dm", int64((d+30*time.Second)/time.Minute))
	}
	m := int64((d + 30*time.Second) / time.Minute)
	return fmt.Sprintf("%dh%02dm", m/60, m%60)
}
