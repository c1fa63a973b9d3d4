package azurefake

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resourcegraph/armresourcegraph"
	graphfake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resourcegraph/armresourcegraph/fake"
)

// Azure Resource Graph in the fake (armresourcegraph v0.10.0, Client.Resources, API 2024-04-01),
// served through the SDK's own fake server on the same ARM endpoint as Microsoft.Compute.
//
// The fake does not evaluate KQL. A query is answered with every resource of the one type its
// first `type =~ '…'` names (microsoft.compute/disks, …/snapshots, …/virtualmachines,
// …/virtualmachines/extensions, …/virtualmachinescalesets) in the queried subscriptions, read from the Cloud's maps: a disk,
// snapshot or VM as the Compute API's model marshals it (the same shape as a Resource Graph row
// of the Resources table), plus the columns Resource Graph adds (subscriptionId, resourceGroup,
// type in lower case). A VM row carries properties.extended.instanceView.powerState from
// PowerStates ("deallocated" when unset) and no "resources"; each of a VM's Resources (its
// extensions) is a row of its own, without protectedSettings, which ARM never returns. The rows
// of any other type, and the where clauses, are the client's to filter: a test sees that the
// client does not take every row for an ADE resource.
//
// Paging follows the service: a page holds at most $top rows (default 100, and at most
// GraphPageSize when that is set), and a $skipToken is handed out while rows remain; a request
// with a token must repeat the query and the subscriptions it was issued for (400
// InvalidSkipToken otherwise, as Azure refuses a token used with another query).

// GraphDefaultTop is the page size of a query without $top, as in Azure.
const GraphDefaultTop = 100

// graphTypes are the resource types the fake serves, as Resource Graph spells them.
const (
	graphDisks      = "microsoft.compute/disks"
	graphSnapshots  = "microsoft.compute/snapshots"
	graphVMs        = "microsoft.compute/virtualmachines"
	graphExtensions = "microsoft.compute/virtualmachines/extensions"
	graphScaleSets  = "microsoft.compute/virtualmachinescalesets"
)

var graphTypeRe = regexp.MustCompile(`(?i)\btype\s*=~\s*'([^']+)'`)

// graphPage is what a $skipToken the fake handed out stands for.
type graphPage struct {
	query  string
	subs   string
	offset int
}

// graphTransport is the Resource Graph fake behind the router.
func (c *Cloud) graphTransport() transporter {
	return graphfake.NewServerFactoryTransport(&graphfake.ServerFactory{Server: graphfake.Server{
		Resources: func(ctx context.Context, q armresourcegraph.QueryRequest, _ *armresourcegraph.ClientResourcesOptions) (resp azfake.Responder[armresourcegraph.ClientResourcesResponse], errResp azfake.ErrorResponder) {
			c.Lock()
			defer c.Unlock()
			c.GraphQueries = append(c.GraphQueries, q)
			if c.GraphFail != "" {
				errResp.SetResponseError(http.StatusForbidden, c.GraphFail)
				return
			}
			query := deref(q.Query)
			m := graphTypeRe.FindStringSubmatch(query)
			if m == nil {
				errResp.SetResponseError(http.StatusBadRequest, "InvalidQuery")
				return
			}
			typ := strings.ToLower(m[1])
			var subs []string
			for _, s := range q.Subscriptions {
				subs = append(subs, strings.ToLower(deref(s)))
			}
			scope := strings.Join(subs, ",")
			offset, top := 0, GraphDefaultTop
			if o := q.Options; o != nil {
				if o.Top != nil {
					top = int(*o.Top)
				}
				if tok := deref(o.SkipToken); tok != "" {
					p, ok := c.graphTokens[tok]
					if !ok || p.query != query || p.subs != scope {
						errResp.SetResponseError(http.StatusBadRequest, "InvalidSkipToken")
						return
					}
					offset = p.offset
				}
				if o.ResultFormat != nil && *o.ResultFormat != armresourcegraph.ResultFormatObjectArray {
					errResp.SetResponseError(http.StatusBadRequest, "UnsupportedResultFormat")
					return
				}
			}
			if c.GraphPageSize > 0 {
				top = min(top, c.GraphPageSize)
			}
			rows, err := c.graphRows(typ, subs)
			if err != nil {
				errResp.SetError(err)
				return
			}
			end := min(offset+top, len(rows))
			page := rows[min(offset, len(rows)):end]
			out := armresourcegraph.QueryResponse{
				Count: to.Ptr(int64(len(page))), TotalRecords: to.Ptr(int64(len(rows))), Data: page,
				ResultTruncated: to.Ptr(armresourcegraph.ResultTruncatedFalse),
			}
			switch {
			case strings.EqualFold(c.GraphTruncated, typ):
				// A result Resource Graph cannot page: the first page only, and no token.
				out.ResultTruncated = to.Ptr(armresourcegraph.ResultTruncatedTrue)
			case end < len(rows):
				if c.graphTokens == nil {
					c.graphTokens = map[string]graphPage{}
				}
				tok := fmt.Sprintf("fake-skip-%d", len(c.graphTokens)+1)
				c.graphTokens[tok] = graphPage{query: query, subs: scope, offset: end}
				out.SkipToken = to.Ptr(tok)
			}
			var opts *azfake.SetResponseOptions
			if c.GraphTenantLimitHit && len(subs) == 0 {
				// What Resource Graph says of a tenant-scope query whose principal sees more
				// subscriptions than it serves (the first 10,000).
				opts = &azfake.SetResponseOptions{Header: http.Header{}}
				opts.Header.Set("x-ms-tenant-subscription-limit-hit", "true")
			}
			resp.SetResponse(http.StatusOK, armresourcegraph.ClientResourcesResponse{QueryResponse: out}, opts)
			return
		},
	}})
}

// graphRows are the rows of every resource of type typ in the subscriptions subs (all when
// empty), ordered by resource ID. Called with the lock held.
func (c *Cloud) graphRows(typ string, subs []string) ([]any, error) {
	var rows []map[string]any
	add := func(v any, id string) error {
		row, err := graphRow(v, id, typ)
		if err != nil {
			return err
		}
		if len(subs) == 0 || slices.Contains(subs, strings.ToLower(asString(row["subscriptionId"]))) {
			rows = append(rows, row)
		}
		return nil
	}
	var err error
	switch typ {
	case graphDisks:
		for k, d := range c.Disks {
			err = cmp.Or(err, add(d, idOr(d.ID, c.keyID(k, "disks"))))
		}
	case graphSnapshots:
		for k, s := range c.Snapshots {
			err = cmp.Or(err, add(s, idOr(s.ID, c.keyID(k, "snapshots"))))
		}
	case graphVMs:
		for k, vm := range c.VMs {
			id := idOr(vm.ID, c.keyID(k, "virtualMachines"))
			row, rerr := graphRow(vm, id, typ)
			if rerr != nil {
				return nil, rerr
			}
			delete(row, "resources") // extensions are resources of their own in Resource Graph
			props, _ := row["properties"].(map[string]any)
			if props == nil {
				props = map[string]any{}
				row["properties"] = props
			}
			ps := c.PowerStates[k]
			if ps == "" {
				ps = "deallocated"
			}
			props["extended"] = map[string]any{"instanceView": map[string]any{
				"powerState": map[string]any{"code": "PowerState/" + ps, "displayStatus": "VM " + ps}}}
			if len(subs) == 0 || slices.Contains(subs, strings.ToLower(asString(row["subscriptionId"]))) {
				rows = append(rows, row)
			}
		}
	case graphExtensions:
		for k, vm := range c.VMs {
			vmID := idOr(vm.ID, c.keyID(k, "virtualMachines"))
			for _, e := range vm.Resources {
				if e == nil {
					continue
				}
				ext := *e
				if ext.Properties != nil {
					p := *ext.Properties
					p.ProtectedSettings, p.ProtectedSettingsFromKeyVault = nil, nil
					ext.Properties = &p
				}
				id := deref(ext.ID)
				if id == "" {
					id = vmID + "/extensions/" + deref(ext.Name)
				}
				err = cmp.Or(err, add(&ext, id))
			}
		}
	case graphScaleSets:
		for k, ss := range c.ScaleSets {
			// ARM never returns an extension's protected settings, in the scale set's model neither.
			cp := *ss
			if p := cp.Properties; p != nil && p.VirtualMachineProfile != nil && p.VirtualMachineProfile.ExtensionProfile != nil {
				pp, vp, ep := *p, *p.VirtualMachineProfile, *p.VirtualMachineProfile.ExtensionProfile
				ep.Extensions = nil
				for _, e := range p.VirtualMachineProfile.ExtensionProfile.Extensions {
					ec := *e
					if ec.Properties != nil {
						ep := *ec.Properties
						ep.ProtectedSettings, ep.ProtectedSettingsFromKeyVault = nil, nil
						ec.Properties = &ep
					}
					ep.Extensions = append(ep.Extensions, &ec)
				}
				vp.ExtensionProfile, pp.VirtualMachineProfile, cp.Properties = &ep, &vp, &pp
			}
			err = cmp.Or(err, add(&cp, idOr(ss.ID, c.keyID(k, "virtualMachineScaleSets"))))
		}
	default:
		return nil, fmt.Errorf("azurefake: Resource Graph type %q is not served", typ)
	}
	if err != nil {
		return nil, err
	}
	slices.SortFunc(rows, func(a, b map[string]any) int {
		return strings.Compare(strings.ToLower(asString(a["id"])), strings.ToLower(asString(b["id"])))
	})
	out := make([]any, len(rows))
	for i, r := range rows {
		out[i] = r
	}
	return out, nil
}

// graphRow is the Resource Graph row of the SDK model v: its ARM JSON with id, the lower-case
// type and the subscriptionId and resourceGroup columns.
func graphRow(v any, id, typ string) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var row map[string]any
	if err := json.Unmarshal(b, &row); err != nil {
		return nil, err
	}
	row["id"], row["type"] = id, typ
	if rid, err := arm.ParseResourceID(id); err == nil {
		row["subscriptionId"], row["resourceGroup"] = rid.SubscriptionID, strings.ToLower(rid.ResourceGroupName)
		if _, ok := row["name"]; !ok {
			row["name"] = rid.Name
		}
	}
	return row, nil
}

// keyID is the resource ID of the map key "rg/name" in the Cloud's subscription.
func (c *Cloud) keyID(key, typ string) string {
	rg, name, _ := strings.Cut(key, "/")
	return deref(c.id(rg, typ, name))
}

func idOr(id *string, fallback string) string { return cmp.Or(deref(id), fallback) }

func asString(v any) string {
	s, _ := v.(string)
	return s
}
