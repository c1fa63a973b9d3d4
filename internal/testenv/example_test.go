package testenv_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/luksconv/luksconv/internal/testenv"
)

// The same seed gives the same bytes on every run, so a failing test can be replayed.
func ExampleRandBytes() {
	a := testenv.RandBytes(rand.New(rand.NewPCG(1, 2)), 8)
	b := testenv.RandBytes(rand.New(rand.NewPCG(1, 2)), 8)
	fmt.Println(len(a), string(a) == string(b))
	// Output: 8 true
}
