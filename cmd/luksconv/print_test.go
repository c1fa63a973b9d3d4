package main

import (
	"strings"
	"testing"

	"github.com/luksconv/luksconv/luksconv"
)

// TestPrintableReport: a partition name holding terminal escape sequences is printed escaped, never as
// raw control bytes.
func TestPrintableReport(t *testing.T) {
	rep := &luksconv.Report{Partitions: []luksconv.PartitionInfo{{Number: 1, Name: "evil\x1b]0;pwned\x07\x1b[2J", Content: luksconv.ContentXFS}},
		Warnings: []luksconv.Warning{{Code: luksconv.WarnUnreadable, Message: "file \x1b[31mred"}}}
	var b strings.Builder
	printReport(&b, rep)
	out := b.String()
	if strings.ContainsAny(out, "\x1b\x07") {
		t.Fatalf("raw control bytes printed: %q", out)
	}
	if !strings.Contains(out, `evil\x1b]0;pwned\x07\x1b[2J`) || !strings.Contains(out, `file \x1b[31mred`) {
		t.Fatalf("escaped name or warning missing: %q", out)
	}
}

// TestPrintPlanVolume: the plan's volume line names where the volume lies, with no empty parentheses
// for a whole disk or a DOS partition, which have no partition UUID.
func TestPrintPlanVolume(t *testing.T) {
	const uuid = "0b5d3c1e-7a2f-4e8b-9d6c-1f2e3d4c5b6a"
	for _, c := range []struct {
		v    luksconv.VolumeInfo
		want string
	}{
		{luksconv.VolumeInfo{Partition: 0}, "Volume: the whole disk, "},
		{luksconv.VolumeInfo{Partition: 2}, "Volume: partition 2, "},
		{luksconv.VolumeInfo{Partition: 2, PartUUID: uuid}, "Volume: partition 2 (" + uuid + "), "},
		{luksconv.VolumeInfo{LV: "datavg/datalv"}, "Volume: LV datavg/datalv on the whole disk (an LVM PV), "},
		{luksconv.VolumeInfo{Partition: 1, PartUUID: uuid, LV: "datavg/datalv"}, "Volume: LV datavg/datalv on partition 1 (" + uuid + ", an LVM PV), "},
	} {
		var b strings.Builder
		printPlan(&b, &luksconv.Plan{Volume: c.v})
		if got := b.String(); !strings.HasPrefix(got, c.want) {
			t.Errorf("%+v: %q, want it to start with %q", c.v, strings.SplitN(got, "\n", 2)[0], c.want)
		}
	}
}
