package luksconv_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/luksconv/luksconv/luksconv"
)

// Convert an ADE OS disk whose LUKS header was saved from /boot/luks/osluksheader.
func Example() {
	ctx := context.Background()
	src, err := luksconv.OpenFile("disk.vhd")
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()

	hdrFile, err := os.Open("osluksheader")
	if err != nil {
		log.Fatal(err)
	}
	defer hdrFile.Close()
	fi, _ := hdrFile.Stat()

	key, err := os.ReadFile("LinuxPassPhraseFileName") // the BEK file: its exact bytes are the passphrase
	if err != nil {
		log.Fatal(err)
	}
	plan, err := luksconv.NewPlan(ctx, src, luksconv.PlanOptions{
		Passphrase: key,
		Header:     &luksconv.Header{R: hdrFile, Size: fi.Size(), Path: "osluksheader"},
		Format:     luksconv.FormatVHD,
	})
	clear(key)
	if err != nil {
		log.Fatal(err)
	}
	defer plan.Close()
	// The guest edits that undo ADE inside the disk (kernel arguments, crypttab, ...), applied as patches.
	for _, e := range plan.Edits {
		fmt.Printf("%s: %s\n", e.Path, e.Why)
	}

	sink, err := luksconv.CreateFile("plain.vhd", plan.OutputSize, plan.Format, false)
	if err != nil {
		log.Fatal(err)
	}
	res, err := luksconv.Execute(ctx, plan, src, sink, luksconv.ExecuteOptions{
		Progress: func(p luksconv.Progress) { fmt.Printf("\r%d/%d bytes", p.Done, p.Total) },
	})
	if err != nil {
		sink.Abort()
		log.Fatal(err)
	}
	if err := sink.Commit(); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("\ndecrypted %d bytes\n", res.BytesDecrypted)
}
