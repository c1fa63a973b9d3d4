package diskcipher_test

import (
	"bytes"
	"fmt"
	"log"

	"github.com/luksconv/luksconv/diskcipher"
)

func Example() {
	// A 512-bit AES-XTS volume key (two AES-256 keys), as in a LUKS2 header
	// with "encryption": "aes-xts-plain64" and "sector_size": 4096.
	key := bytes.Repeat([]byte{0x42}, 64)
	c, err := diskcipher.New("aes-xts-plain64", key, 4096)
	clear(key) // the Cipher keeps its own key schedule
	if err != nil {
		log.Fatal(err)
	}

	plain := bytes.Repeat([]byte("luksconv"), 2*4096/8) // two sectors
	buf := bytes.Clone(plain)
	// The first sector starts 1 MiB into the segment: IV = 1 MiB / 512.
	c.Encrypt(buf, buf, 2048)
	fmt.Printf("ciphertext starts %x\n", buf[:8])
	c.Decrypt(buf, buf, 2048)
	fmt.Println(bytes.Equal(buf, plain))

	_, err = diskcipher.New("serpent-xts-plain64", make([]byte, 64), 512)
	fmt.Println(err)
	// Output:
	// ciphertext starts 86ac7c28b66e2643
	// true
	// diskcipher: unsupported cipher "serpent-xts-plain64"
}
