package azure

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	azcloud "github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azsecrets"
)

// DefaultPollFrequency is how often a long-running ARM operation is polled
// when the service sends no Retry-After. The SDK's own default (30 s) makes
// a grant-access that finishes in two seconds take thirty.
const DefaultPollFrequency = 2 * time.Second

// Options configures a Client. The zero value is ready for production use.
type Options struct {
	// ARM configures the Microsoft.Compute clients (disks, snapshots, disk
	// encryption sets, virtual machines). Tests set ClientOptions.Transport
	// to an armcompute fake.ServerFactoryTransport.
	ARM *arm.ClientOptions

	// Secrets and Keys configure the Key Vault clients, which are created
	// per vault from the URLs found on the disk. Tests set their Transport
	// to azsecrets/fake and azkeys/fake server transports.
	Secrets *azsecrets.ClientOptions
	Keys    *azkeys.ClientOptions // for unwrapping a wrapped BEK with its KEK

	// NewSecretsClient and NewKeysClient, when set, replace the construction
	// of Key Vault clients from Secrets and Keys; vaultURL is
	// "https://host" without a port.
	NewSecretsClient func(vaultURL string) (*azsecrets.Client, error)
	NewKeysClient    func(vaultURL string) (*azkeys.Client, error) // see NewSecretsClient

	// Cloud is the Azure cloud of the Microsoft.Compute endpoint (zero: the public cloud; see
	// CloudByName). It is applied to ARM when ARM does not name a cloud itself. Key Vault URLs come
	// from the disks and need no setting.
	Cloud azcloud.Configuration

	// PollFrequency is the polling interval of long-running operations when
	// the service does not send Retry-After; 0 means DefaultPollFrequency.
	// The SDK refuses values below one second outside `go test`.
	PollFrequency time.Duration

	// VMCreateRetry bounds how long a VM PUT refused for a while only
	// (NicReservedForAnotherVm, 429, 5xx) is retried, with delays of 5 to
	// 30 PollFrequency; 0 means DefaultVMCreateRetry, negative no retry.
	VMCreateRetry time.Duration
	// VMModelDir is where RecreateVM saves the rollback model of the VM
	// it deletes (luksconv-vm-NAME-HASH-TIME.json), kept when neither the new
	// VM nor the restore could be created; "" is the current directory.
	VMModelDir string
}

// Client is the Azure control plane for one conversion. It is safe for
// concurrent use.
type Client struct {
	subscription string
	cred         azcore.TokenCredential
	opts         Options

	mu        sync.Mutex
	factories map[string]*armcompute.ClientFactory // by subscription ID, lower case
	guest     guestStates                          // VM guest state SAS of granted sources (secure.go)
}

// New returns a Client that acts on subscriptionID (resource IDs naming
// another subscription are honoured) with credential cred, for instance
// from DefaultCredential. opts may be nil.
func New(subscriptionID string, cred azcore.TokenCredential, opts *Options) (*Client, error) {
	if cred == nil {
		return nil, errors.New("azure: no credential")
	}
	c := &Client{subscription: subscriptionID, cred: cred, factories: map[string]*armcompute.ClientFactory{}}
	if opts != nil {
		c.opts = *opts
	}
	if c.opts.Cloud.Services != nil {
		a := arm.ClientOptions{}
		if c.opts.ARM != nil {
			a = *c.opts.ARM
		}
		if a.Cloud.Services == nil {
			a.Cloud = c.opts.Cloud
		}
		c.opts.ARM = &a
	}
	if subscriptionID != "" {
		if _, err := c.compute(subscriptionID); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// DefaultCredential returns azidentity's DefaultAzureCredential: environment
// variables, workload identity, managed identity (on a helper VM), then the
// Azure CLI and Azure Developer CLI logins.
func DefaultCredential() (azcore.TokenCredential, error) {
	return azidentity.NewDefaultAzureCredential(nil)
}

// compute returns the armcompute client factory for a subscription.
func (c *Client) compute(sub string) (*armcompute.ClientFactory, error) {
	if sub == "" {
		sub = c.subscription
	}
	if sub == "" {
		return nil, errors.New("azure: no subscription ID")
	}
	key := strings.ToLower(sub)
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.factories[key]; ok {
		return f, nil
	}
	f, err := armcompute.NewClientFactory(sub, c.cred, c.opts.ARM)
	if err != nil {
		return nil, fmt.Errorf("azure: compute clients for subscription %s: %v", sub, err)
	}
	c.factories[key] = f
	return f, nil
}

func (c *Client) pollOptions() *runtime.PollUntilDoneOptions {
	f := c.opts.PollFrequency
	if f == 0 {
		f = DefaultPollFrequency
	}
	return &runtime.PollUntilDoneOptions{Frequency: f}
}

// lro is a long-running operation as returned by a Begin… call; wrap the
// call in started and finish it with wait.
type lro[T any] struct {
	p   *runtime.Poller[T]
	err error
}

func started[T any](p *runtime.Poller[T], err error) lro[T] { return lro[T]{p, err} }

// wait polls the operation to its end.
func (o lro[T]) wait(ctx context.Context, c *Client) (T, error) {
	if o.err != nil {
		var zero T
		return zero, o.err
	}
	return o.p.PollUntilDone(ctx, c.pollOptions())
}

// SettleTime bounds how long an operation cut off by a cancelled context (Ctrl-C, SIGTERM) is still
// polled, so that what it leaves is known and undone (a grant revoked, a snapshot named).
const SettleTime = 2 * time.Minute

// settle polls the operation to its end, as wait does. When ctx ends first (Ctrl-C), Azure goes on
// with the operation regardless: settle polls it on, for up to SettleTime with a context that is not
// cancelled, so that the caller knows what the operation left (a grant to revoke, a snapshot to name)
// instead of finding it done after its cleanup. It then returns the operation's result, valid when
// the operation succeeded (ok), with ctx's error (joined with the poll's if it did not end).
func (o lro[T]) settle(ctx context.Context, c *Client) (r T, ok bool, err error) {
	r, err = o.wait(ctx, c)
	if err == nil || ctx.Err() == nil || o.err != nil {
		return r, err == nil, err
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), SettleTime)
	defer cancel()
	r, serr := o.p.PollUntilDone(sctx, c.pollOptions())
	if serr != nil {
		if sctx.Err() != nil {
			serr = fmt.Errorf("still running %v after the cancellation: %w", SettleTime, serr)
		}
		var zero T
		return zero, false, errors.Join(ctx.Err(), serr)
	}
	return r, true, ctx.Err()
}

// sleep waits for d, or returns ctx's error as soon as ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Resource types this package acts on, as they appear in resource IDs.
const (
	typeDisk     = "Microsoft.Compute/disks"
	typeSnapshot = "Microsoft.Compute/snapshots"
	typeVM       = "Microsoft.Compute/virtualMachines"
	typeDES      = "Microsoft.Compute/diskEncryptionSets"
)

// resourceID is a parsed ARM ID of a top-level resource in a resource group.
type resourceID struct {
	ID            string
	Subscription  string
	ResourceGroup string
	Type          string // typeDisk, typeSnapshot, … (canonical spelling)
	Name          string
}

// vmsClient parses the VM ID vmID and returns it with a virtual machines client of its
// subscription; the caller wraps the error in its operation.
func (c *Client) vmsClient(vmID string) (resourceID, *armcompute.VirtualMachinesClient, error) {
	rid, err := parseID(vmID, typeVM)
	if err != nil {
		return resourceID{}, nil, err
	}
	f, err := c.compute(rid.Subscription)
	if err != nil {
		return resourceID{}, nil, err
	}
	return rid, f.NewVirtualMachinesClient(), nil
}

// parseID parses an ARM resource ID and checks that it names a top-level
// resource of one of the wanted types (any type when wanted is empty).
func parseID(id string, wanted ...string) (resourceID, error) {
	rid, err := arm.ParseResourceID(strings.TrimSpace(id))
	if err != nil {
		return resourceID{}, fmt.Errorf("azure: resource ID %q: %v", id, err)
	}
	if rid.ResourceGroupName == "" || rid.Name == "" || rid.Parent == nil || rid.Parent.ResourceType.String() != arm.ResourceGroupResourceType.String() {
		return resourceID{}, fmt.Errorf("azure: resource ID %q: not a resource in a resource group", id)
	}
	t := rid.ResourceType.String()
	if len(wanted) == 0 {
		return resourceID{ID: id, Subscription: rid.SubscriptionID, ResourceGroup: rid.ResourceGroupName, Type: t, Name: rid.Name}, nil
	}
	for _, w := range wanted {
		if strings.EqualFold(t, w) {
			return resourceID{ID: id, Subscription: rid.SubscriptionID, ResourceGroup: rid.ResourceGroupName, Type: w, Name: rid.Name}, nil
		}
	}
	return resourceID{}, fmt.Errorf("azure: resource ID %q is a %s, want %s", id, t, strings.Join(wanted, " or "))
}

// sameID compares ARM resource IDs, which are case-insensitive.
func sameID(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "/"), strings.TrimSuffix(b, "/"))
}

// sameLocation compares Azure regions, which appear both as "westeurope"
// and "West Europe".
func sameLocation(a, b string) bool {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, " ", "")) }
	return norm(a) == norm(b)
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
