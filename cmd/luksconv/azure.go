package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/luksconv/luksconv/azure"
	"github.com/luksconv/luksconv/blobdisk"
	"github.com/luksconv/luksconv/blobio"
	"github.com/luksconv/luksconv/luksconv"
	"github.com/spf13/cobra"
)

// azureClientHook, when set (by tests only), replaces the credential and options of the Azure client.
var azureClientHook func() (azcore.TokenCredential, *azure.Options)

// cleanupTimeout bounds each step of a run's clean-up that goes on after Ctrl-C or SIGTERM: an
// upload's finish once every byte is written, the revoke of a source's read grant.
const cleanupTimeout = 5 * time.Minute

// azureSource is the resource a command reads: a snapshot, or a managed disk.
type azureSource struct {
	cloud        string
	subscription string
	snapshot     string
	sourceDisk   string
	modelDir     string // where a VM re-creation saves the VM's rollback model ("" for the current directory)
}

func (s *azureSource) register(c *cobra.Command) {
	c.Flags().StringVar(&s.snapshot, "snapshot", "", "resource ID of the ADE disk's snapshot")
	c.Flags().StringVar(&s.sourceDisk, "source-disk", "", "resource ID of the ADE managed disk")
	c.Flags().StringVar(&s.subscription, "subscription", "", "subscription ID of the client and of the new disks (default: the one in the resource ID); with --recreate-vm it must be the VM's")
	c.Flags().StringVar(&s.cloud, "cloud", "", "Azure `cloud`, as az cloud list names it: AzureCloud (default), AzureChinaCloud or AzureUSGovernment")
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
	cl, err := azure.CloudByName(s.cloud)
	if err != nil {
		return nil, fmt.Errorf("%w: --cloud: %v", errUsage, err)
	}
	if azureClientHook != nil {
		cred, opts := azureClientHook()
		o := *opts
		o.VMModelDir = s.modelDir
		return azure.New(sub, cred, &o)
	}
	cred, err := azure.DefaultCredentialIn(cl)
	if err != nil {
		return nil, fmt.Errorf("azure credential: %w", err)
	}
	return azure.New(sub, cred, &azure.Options{Cloud: cl, VMModelDir: s.modelDir})
}

func newAzureCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "azure",
		Short: "Convert an ADE managed disk or snapshot into a plaintext managed disk under a Disk Encryption Set",
	}
	c.AddCommand(newAzureInspectCmd(), newAzureConvertCmd(), newAzureFleetCmd(), newAzureInventoryCmd())
	commandGroup(c)
	return c
}

// grantRead grants read access to id and opens its page blob as a luksconv source; done closes it and
// revokes the SAS with a context that outlives cancellation (Ctrl-C). The cleanup's error is reported on w.
func grantRead(ctx context.Context, cl *azure.Client, id string, workers int, w io.Writer) (*luksconv.Source, func() error, error) {
	_, src, done, err := grantReadSAS(ctx, cl, id, workers, w)
	return src, done, err
}

// grantReadSAS is grantRead that also returns the SAS URL (a page diff is asked on it).
func grantReadSAS(ctx context.Context, cl *azure.Client, id string, workers int, w io.Writer) (string, *luksconv.Source, func() error, error) {
	sas, done, err := grantAccess(ctx, cl, id, w)
	if err != nil {
		return "", nil, nil, err
	}
	// A disk or snapshot that needs Entra authentication for its data gets the token too.
	access, err := cl.ReadDataAccess(ctx, id)
	if err != nil {
		return "", nil, nil, errors.Join(err, done())
	}
	src, err := blobdisk.OpenSource(ctx, sas, blobdisk.Options{Workers: workers, Logf: blobLog, Bearer: cl.DataBearer(access), Timeout: blobTimeout})
	if err != nil {
		return "", nil, nil, errors.Join(accessHint(err, access, time.Time{}, id), done())
	}
	debugSource(sas, src)
	// The plan, the report and the resume journal name the resource, which stays the same across
	// grants, rather than the SAS URL, which changes with each.
	src.Path = id
	return sas, src, func() error { src.Close(); return done() }, nil
}

// grantAccess grants read access to id and returns its SAS and done, which revokes it with a context
// that outlives cancellation (Ctrl-C) and reports a failure on w.
func grantAccess(ctx context.Context, cl *azure.Client, id string, w io.Writer) (string, func() error, error) {
	debugAzure("grant read access", id)
	sas, revoke, err := cl.GrantRead(ctx, id, 0)
	if err != nil {
		return "", nil, err
	}
	debugAzure("read access granted", id, "sas", blobio.Redact(sas))
	return sas, func() error {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		debugAzure("revoke read access", id)
		if err := revoke(rctx); err != nil {
			fmt.Fprintf(w, "luksconv: warning: revoking read access to %s: %v\n", id, err)
			return err
		}
		return nil
	}, nil
}
