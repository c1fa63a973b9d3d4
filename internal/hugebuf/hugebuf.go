// Package hugebuf hands out the large, short-lived buffers of the conversion pipeline.
//
// Memory the kernel maps one 4 KiB page per fault costs more to fill the first time than the copy
// into it: on the project machine (a VM, where each fault also costs the host), reading 16 MiB from
// the page cache into four fresh 4 MiB buffers took 10.1-10.7 ms from the Go heap and 2.0-2.1 ms
// from Get, hand-back included (BenchmarkFirstFill). A short run, such as the second pass of a
// cutover that moves 10 MiB, pays that once per buffer. On Linux, buffers of at least 2 MiB are
// anonymous mappings aligned to and advised for transparent huge pages, mapped 2 MiB per fault. Put
// gives a buffer's pages back to the kernel (it reads as zeros from then on) and keeps the mapping
// for the next Get of the same size; mappings are never unmapped, so a late reader of a returned
// buffer (an HTTP transport still sending a cancelled request's body) reads zeros instead of
// faulting. Elsewhere, and when the kernel refuses a mapping, Get is make and Put clears.
package hugebuf

// Size is the alignment of the buffers Get maps, the transparent huge page size of x86-64 and of
// arm64 with 4 KiB pages; smaller buffers come from the Go heap.
const Size = 2 << 20

// Get returns a zeroed buffer of n bytes. The caller hands it back with Put, or drops it.
func Get(n int) []byte {
	if n >= Size {
		if b := get(n); b != nil {
			return b
		}
	}
	return make([]byte, n)
}

// Put returns b, which Get returned and which no one uses any more, after wiping its first used
// bytes (they may hold plaintext): a mapped buffer is wiped whole and kept for the next Get, a heap
// buffer is cleared and left to the garbage collector.
func Put(b []byte, used int) {
	if !put(b) {
		clear(b[:min(used, len(b))])
	}
}
