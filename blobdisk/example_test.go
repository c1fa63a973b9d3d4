package blobdisk_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/luksconv/luksconv/blobdisk"
	"github.com/luksconv/luksconv/luksconv"
)

func ExampleIsURL() {
	fmt.Println(blobdisk.IsURL("https://md-x.blob.core.windows.net/c/abcd?sv=2018-03-28&sig=x"))
	fmt.Println(blobdisk.IsURL("/var/lib/disks/os.vhd"))
	// Output:
	// true
	// false
}

// Convert an exported snapshot of an ADE disk (the read SAS of `az snapshot grant-access`) straight
// into a managed disk created for upload (the write SAS of `az disk grant-access --access-level
// Write`), resumably: a rerun with the same journal sends only what the first run did not.
func Example() {
	ctx := context.Background()
	opts := blobdisk.Options{Workers: 16, Logf: log.Printf} // messages carry sig=REDACTED
	src, err := blobdisk.OpenSource(ctx, os.Getenv("SNAPSHOT_SAS"), opts)
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	p, err := luksconv.NewPlan(ctx, src, luksconv.PlanOptions{KeyFile: "bek.key", Format: luksconv.FormatVHD})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	out, err := blobdisk.CreateOutput(ctx, p, os.Getenv("UPLOAD_SAS"), blobdisk.OutputOptions{Options: opts})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := luksconv.Execute(ctx, p, src, out, luksconv.ExecuteOptions{}); err != nil {
		out.Abort() // keeps the journal: run again to resume
		log.Fatal(err)
	}
	// Commit writes the VHD footer; then `az disk revoke-access` ends the upload.
	if err := out.Commit(ctx); err != nil {
		log.Fatal(err)
	}
}
