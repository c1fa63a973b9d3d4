package luks_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/luksconv/luksconv/luks"
)

// A detached header (ADE keeps it in /boot/luks/osluksheader) is read from
// its file; the data device is the partition. The plaintext is then an
// io.ReaderAt.
func Example() {
	hdrFile, err := os.Open("osluksheader")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer hdrFile.Close()
	st, _ := hdrFile.Stat()
	h, err := luks.ReadHeader(hdrFile, st.Size())
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := h.Supported(); err != nil {
		fmt.Println("cannot convert:", err)
		return
	}
	key, err := h.Unlock([]byte("passphrase from Key Vault"), -1)
	if errors.Is(err, luks.ErrWrongPassphrase) {
		fmt.Println("wrong passphrase")
		return
	} else if err != nil {
		fmt.Println(err)
		return
	}
	defer key.Destroy()

	part, _ := os.Open("partition.img")
	pst, _ := part.Stat()
	plain, err := luks.NewReader(part, pst.Size(), h, key)
	if err != nil {
		fmt.Println(err)
		return
	}
	io.Copy(io.Discard, io.NewSectionReader(plain, 0, plain.Size()))
}

// ReadHeader tells a LUKS header from anything else.
func ExampleReadHeader() {
	zeros := make([]byte, 1<<20)
	_, err := luks.ReadHeader(bytes.NewReader(zeros), int64(len(zeros)))
	fmt.Println(err, errors.Is(err, luks.ErrNotLUKS))

	luks1 := append([]byte("LUKS\xba\xbe\x00\x01"), make([]byte, 600)...)
	_, err = luks.ReadHeader(bytes.NewReader(luks1), int64(len(luks1)))
	fmt.Println(err, errors.Is(err, luks.ErrCorrupt))
	// Output:
	// luks: no LUKS header true
	// luks: LUKS1 header at offset 0: empty cipher-name or hash-spec true
}

// A VolumeKey never prints its bytes.
func ExampleVolumeKey() {
	var k luks.VolumeKey
	fmt.Printf("%v %+v %#v %x\n", k, &k, k, k)
	// Output: [REDACTED] [REDACTED] [REDACTED] [REDACTED]
}
