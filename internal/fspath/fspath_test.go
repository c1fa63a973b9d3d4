package fspath

import (
	"slices"
	"testing"
)

func TestSplitStrip(t *testing.T) {
	if got := Split("/a//./b/../c/"); !slices.Equal(got, []string{"a", "b", "..", "c"}) {
		t.Errorf("Split = %q", got)
	}
	if got := Clean("boot//"); got != "/boot" {
		t.Errorf("Clean = %q", got)
	}
	for _, c := range []struct {
		mp, target, want string
		ok               bool
	}{
		{"/boot", "/boot/luks/h", "luks/h", true},
		{"/", "/etc/x", "etc/x", true},
		{"/boot", "/etc/x", "", false},
		{"/boot/efi", "/boot", "", false},
	} {
		if got, ok := Strip(c.mp, c.target); got != c.want || ok != c.ok {
			t.Errorf("Strip(%q, %q) = %q, %v", c.mp, c.target, got, ok)
		}
	}
}
