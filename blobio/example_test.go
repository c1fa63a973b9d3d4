package blobio_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"

	"github.com/luksconv/luksconv/blobio"
)

func ExampleRedact() {
	fmt.Println(blobio.Redact("https://md-impexp-x.blob.core.windows.net/c/abcd?sv=2018-03-28&sr=b&se=2026-12-01T00%3A00%3A00Z&sp=r&sig=c2VjcmV0%2Bc2ln%3D"))
	// Output: https://md-impexp-x.blob.core.windows.net/c/abcd?sv=2018-03-28&sr=b&se=2026-12-01T00%3A00%3A00Z&sp=r&sig=REDACTED
}

// Read a snapshot export (the AccessSAS of grant-access) and copy only its
// allocated pages to a local sparse file.
func ExampleOpenPageBlob() {
	ctx := context.Background()
	src, err := blobio.OpenPageBlob(ctx, os.Getenv("SNAPSHOT_SAS"), blobio.SourceOptions{Workers: 16})
	if err != nil {
		log.Fatal(err) // the message holds the URL with sig=REDACTED
	}
	defer src.Close()
	out, err := os.Create("disk.vhd")
	if err != nil {
		log.Fatal(err)
	}
	defer out.Close()
	if err := out.Truncate(src.Size()); err != nil {
		log.Fatal(err)
	}
	ranges, err := src.Allocated(ctx) // the whole blob if the page list is unavailable
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range ranges {
		if _, err := io.Copy(io.NewOffsetWriter(out, r.Off), io.NewSectionReader(src, r.Off, r.Len)); err != nil {
			log.Fatal(err)
		}
	}
}

// Upload a disk image into a managed disk opened for direct upload (the
// AccessSAS of grant-access with access=Write), resumably.
func ExampleCreatePageBlobSink() {
	ctx := context.Background()
	img, err := os.Open("disk.raw")
	if err != nil {
		log.Fatal(err)
	}
	st, err := img.Stat()
	if err != nil {
		log.Fatal(err)
	}
	// The disk was created with UploadSizeBytes = size+512.
	sink, err := blobio.CreatePageBlobSink(ctx, os.Getenv("UPLOAD_SAS"), st.Size(), blobio.SinkOptions{
		Workers:    16,
		Journal:    "disk.raw.journal",
		JournalTag: "disk.raw " + st.ModTime().String(),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer sink.Close()
	buf := make([]byte, 4<<20)
	for off := int64(0); off < st.Size(); off += int64(len(buf)) {
		n := min(int64(len(buf)), st.Size()-off)
		if sink.Done(off, n) {
			continue // stored by an earlier, interrupted run
		}
		if _, err := img.ReadAt(buf[:n], off); err != nil {
			log.Fatal(err)
		}
		if _, err := sink.WriteAt(buf[:n], off); err != nil {
			log.Fatal(err)
		}
	}
	if err := sink.Commit(ctx); err != nil { // the VHD footer
		log.Fatal(err)
	}
	// Then revoke access (end get access) on the disk.
}
