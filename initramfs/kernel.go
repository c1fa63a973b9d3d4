package initramfs

import (
	"bufio"
	"bytes"
	"sort"
	"strings"
)

// KernelVersions lists the kernel releases whose modules the image carries (the names of the
// directories below lib/modules or usr/lib/modules), sorted. dracut names an image after one kernel,
// but the rescue image's file name does not say which; its modules do.
func KernelVersions(im *Image) []string {
	seen := map[string]bool{}
	for _, s := range im.Segments {
		for _, e := range s.Entries {
			k := CleanPath(e.Name)
			for _, pre := range []string{"lib/modules/", "usr/lib/modules/"} {
				rest, ok := strings.CutPrefix(k, pre)
				if !ok {
					continue
				}
				v, _, _ := strings.Cut(rest, "/")
				if v != "" {
					seen[v] = true
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// kernelConfigFormats maps the kernel's CONFIG_RD_* options (init/Kconfig, usr/Kconfig) to the
// formats they let the initramfs unpacker decompress.
var kernelConfigFormats = []struct {
	option string
	c      Compression
}{
	{"CONFIG_RD_GZIP", Gzip},
	{"CONFIG_RD_BZIP2", Bzip2},
	{"CONFIG_RD_LZMA", LZMA},
	{"CONFIG_RD_XZ", XZ},
	{"CONFIG_RD_LZO", LZO},
	{"CONFIG_RD_LZ4", LZ4Legacy},
	{"CONFIG_RD_ZSTD", Zstd},
}

// KernelDecompressors returns the formats a kernel built with config (the text of
// /boot/config-RELEASE) unpacks an initramfs from: those whose CONFIG_RD_ option is built in (=y).
// Only built-in counts: the initramfs is unpacked before any module can load.
func KernelDecompressors(config []byte) []Compression {
	on := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(config))
	sc.Buffer(make([]byte, 0, 4096), 1<<16)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "CONFIG_RD_") {
			on[k] = v == "y"
		}
	}
	var out []Compression
	for _, f := range kernelConfigFormats {
		if on[f.option] {
			out = append(out, f.c)
		}
	}
	return out
}
