package zeros_test

import (
	"fmt"

	"github.com/luksconv/luksconv/internal/zeros"
)

func ExampleOnly() {
	chunk := make([]byte, 4096)
	fmt.Println(zeros.Only(chunk))
	chunk[4095] = 1
	fmt.Println(zeros.Only(chunk))
	fmt.Println(zeros.Only(nil))
	// Output:
	// true
	// false
	// true
}
