package guest

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func FuzzFixGrubenv(f *testing.F) {
	f.Add(grubenvBlock(1024, "saved_entry="+mid8+"-"+kver8, "kernelopts="+kopts8, "boot_success=0"))
	f.Add(grubenvBlock(1024, `kernelopts=ro a\\b rd.luks.ade.bootuuid=`+boot8+` rd.debug`, `next=a\`+"\n"+`b`))
	f.Add(grubenvBlock(64, "kernelopts=rd.debug root=/dev/mapper/osencrypt", "kernelopts=rd.luks.ade.x rd.debug"))
	f.Add([]byte(grubenvSignature + "kernelopts=" + kopts8))
	f.Add([]byte("# GRUB Environment Block\nfoo\nkernelopts=rd.luks.ade.a=1\n#"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, ch, err := FixGrubenv(b)
		if err != nil {
			if out != nil || ch != nil {
				t.Fatal("output with an error")
			}
			return
		}
		if out == nil {
			if ch != nil {
				t.Fatal("changes without output")
			}
			return
		}
		if len(out) != len(b) {
			t.Fatalf("size %d -> %d", len(b), len(out))
		}
		vars, err := parseGrubenv(out)
		if err != nil {
			t.Fatalf("fixed block does not parse: %v", err)
		}
		for _, v := range vars {
			if v.name == "kernelopts" && hasADEArg(v.value) {
				t.Fatalf("ADE argument left in %q", v.value)
			}
		}
		if again, _, err := FixGrubenv(out); again != nil || err != nil {
			t.Fatalf("not idempotent: %q -> %q, %v", out, again, err)
		}
	})
}

func FuzzFixCmdline(f *testing.F) {
	for _, s := range []string{kopts8, "root=/dev/sda2 ro rd.debug", " a  rd.luks.ade.partuuid=X\tb ",
		"rd.luks.name=U=osencrypt rd.luks.key=U=/k rd.luks.hdr=V=osluksheader rd.debug", "rd.luks.uuid=osencrypt", ""} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, drop bool) {
		p := Policy{DropDebug: drop}
		out, removed := p.FixCmdline(s)
		if removed == nil {
			if out != s {
				t.Fatalf("changed %q -> %q without removing anything", s, out)
			}
			return
		}
		in, kept := strings.Fields(s), strings.Fields(out)
		if len(kept)+len(removed) != len(in) || out != strings.Join(kept, " ") {
			t.Fatalf("%q -> %q, removed %q", s, out, removed)
		}
		// kept is a subsequence of the input.
		i := 0
		for _, a := range in {
			if i < len(kept) && a == kept[i] {
				i++
			}
		}
		if i != len(kept) {
			t.Fatalf("%q is not a subsequence of %q", out, s)
		}
		if hasADEArg(out) || slices.Contains(kept, "rd.debug") {
			t.Fatalf("ADE argument left in %q", out)
		}
		if again, r := p.FixCmdline(out); again != out || r != nil {
			t.Fatalf("not idempotent: %q -> %q", out, again)
		}
	})
}

func FuzzFixCrypttab(f *testing.F) {
	f.Add([]byte("osencrypt /dev/disk/by-partuuid/"+p4+" /mnt/azure_bek_disk/LinuxPassPhraseFileName luks,discard,header=/boot/luks/osluksheader"), "", false)
	f.Add([]byte("# c\nosencrypt UUID=osencrypt-locked none discard,header=/osluksheader\n"), "resourceencrypt", true)
	f.Add([]byte(adeComment+"\nd1 /dev/sdc1 /mnt/azure_bek_disk/LinuxPassPhraseFileName_1_0 luks,nofail\n"+adeComment+"\nosencrypt x"), "d1", false)
	f.Fuzz(func(t *testing.T, b []byte, mapper string, bek bool) {
		p := Policy{CrypttabBEK: bek}
		if mapper != "" {
			p.CrypttabMappers = []string{mapper}
		}
		out, ch := p.FixCrypttab(b)
		if out == nil {
			if ch != nil {
				t.Fatal("changes without output")
			}
			return
		}
		if len(out) >= len(b) || len(ch) == 0 {
			t.Fatalf("%q -> %q", b, out)
		}
		for _, l := range splitLines(out) {
			if f := strings.Fields(l.text); len(f) > 0 && f[0] == "osencrypt" {
				t.Fatalf("osencrypt left: %q", out)
			}
			if !bytes.Contains(b, []byte(l.text)) {
				t.Fatalf("line %q not from the input", l.text)
			}
		}
		if again, _ := p.FixCrypttab(out); again != nil {
			t.Fatalf("not idempotent: %q -> %q", out, again)
		}
	})
}

func FuzzFixLVMConf(f *testing.F) {
	filter := `devices { filter = ["a|osencrypt|", "r|` + p4 + `|"] }`
	f.Add([]byte(lvmConf8 + "\n" + filter + "\n"))
	f.Add([]byte(filter + "\n\n" + filter))
	f.Add([]byte("devices {\n\tfilter = [ \"a|.*|\" ]\n}\n"))
	f.Add([]byte("devices {\n\tfilter = [ \"a|osencrypt|\", # x\n\t\"r|.*|\" ] }\n"))
	f.Add([]byte("devices { global_filter = \"a|osencrypt|\" filter = [\"a|osencrypt|\"] }"))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, ch := FixLVMConf(b)
		if out == nil {
			if ch != nil {
				t.Fatal("changes without output")
			}
			return
		}
		if len(out) >= len(b) {
			t.Fatalf("grew or kept size: %q -> %q", b, out)
		}
		for _, l := range splitLines(out) {
			if lvmFilterRE.MatchString(l.text) {
				t.Fatalf("filter left: %q", out)
			}
		}
		for _, st := range lvmFilterSettings(splitLines(out)) {
			if st.ade() {
				t.Fatalf("ADE's %s left: %q", st.key, out)
			}
		}
		if again, _ := FixLVMConf(out); again != nil {
			t.Fatalf("not idempotent: %q -> %q", out, again)
		}
	})
}

func FuzzFixDefaultGrub(f *testing.F) {
	f.Add([]byte(defaultGrub8+adeAppend(ade8)), 0)
	f.Add([]byte(strings.TrimSuffix(defaultGrub7, "\n")), 1)
	f.Add([]byte("GRUB_CMDLINE_LINUX+=\" rd.debug rd.luks.ade.a\" # c\nGRUB_CMDLINE_LINUX='x"), 100)
	f.Fuzz(func(t *testing.T, b []byte, slack int) {
		max := len(b) + slack
		out, ch, err := FixDefaultGrub(b, max)
		if err != nil || out == nil {
			if out != nil || ch != nil {
				t.Fatal("output with an error or changes without output")
			}
			return
		}
		if len(out) > room(len(b), max) || len(out) > 0 && !bytes.HasSuffix(out, []byte("\n")) {
			t.Fatalf("%q -> %q (max %d)", b, out, max)
		}
		if again, _, err := FixDefaultGrub(out, len(out)); again != nil || err != nil {
			t.Fatalf("not idempotent: %q -> %q, %v", out, again, err)
		}
	})
}
