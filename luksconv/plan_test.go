package luksconv_test

import (
	"testing"

	"github.com/luksconv/luksconv/luksconv"
)

// TestPlanIDIgnoresSASQuery: a new grant of the same blob gives another SAS query (expiry, signature),
// and a resume journal must still match; another blob or another layout must not.
func TestPlanIDIgnoresSASQuery(t *testing.T) {
	plan := func(path string, size int64) *luksconv.Plan {
		return &luksconv.Plan{Source: luksconv.ImageInfo{Path: path, Format: "vhd", Size: size}, OutputSize: size}
	}
	a := plan("https://md-1.blob.example/c/abcd?sv=2022&se=2026-11-27T10%3A00%3A00Z&sig=REDACTED", 1<<30).ID()
	for _, c := range []struct {
		p    *luksconv.Plan
		same bool
	}{
		{plan("https://md-1.blob.example/c/abcd?sv=2022&se=2026-11-28T09%3A00%3A00Z&sig=REDACTED", 1<<30), true},
		{plan("https://md-1.blob.example/c/abce?sv=2022&se=2026-11-27T10%3A00%3A00Z&sig=REDACTED", 1<<30), false},
		{plan("https://md-1.blob.example/c/abcd?sv=2022&se=2026-11-27T10%3A00%3A00Z&sig=REDACTED", 2<<30), false},
		{plan("disk.vhd", 1<<30), false},
	} {
		if got := c.p.ID(); (got == a) != c.same {
			t.Errorf("ID of %q (%d bytes) = %s, first = %s; want same=%v", c.p.Source.Path, c.p.OutputSize, got, a, c.same)
		}
	}
	if plan("a?b", 1).ID() == plan("a?c", 1).ID() {
		t.Error("a local path holding '?' lost its tail")
	}
}
