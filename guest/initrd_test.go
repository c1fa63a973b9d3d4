package guest

import (
	"strings"
	"testing"
)

func TestIsADEDracutModule(t *testing.T) {
	for name, want := range map[string]bool{
		"adeOnline": true, "ade": true,
		"91adeOnline": false, "91ade": false, "crypt": false, "adeOnlineUbu": false, "Ade": false, "": false,
	} {
		if got := IsADEDracutModule(name); got != want {
			t.Errorf("IsADEDracutModule(%q) = %v", name, got)
		}
	}
	for d, want := range map[string]string{"91adeOnline": "91adeOnline", "91ade": "91ade", "90crypt": "", "ade": "", "92ade": ""} {
		if got := adeModuleDir(d); got != want {
			t.Errorf("adeModuleDir(%q) = %q", d, got)
		}
	}
}

func TestFixDracutModulesList(t *testing.T) {
	const path = "usr/lib/dracut/modules.txt"
	for _, tt := range []struct{ in, want string }{
		{"bash\nadeOnline\ncrypt\nade\n", "bash\ncrypt\n"},
		{"bash\nsystemd\nadeOnline", "bash\nsystemd\n"},
		{"adeOnline\n", ""},
		{"  ade \t\nlvm\n", "lvm\n"},
	} {
		got, ch := FixDracutModulesList(path, []byte(tt.in))
		if string(got) != tt.want || got == nil || len(ch) == 0 || ch[0].Path != path {
			t.Errorf("%q: got %q (%+v), want %q", tt.in, got, ch, tt.want)
		}
		if again, _ := FixDracutModulesList(path, got); again != nil {
			t.Errorf("%q: not idempotent", tt.in)
		}
	}
	for _, clean := range []string{"", "bash\ncrypt\n", "adeOnlineX\nade x\n#ade\n"} {
		if got, ch := FixDracutModulesList(path, []byte(clean)); got != nil || ch != nil {
			t.Errorf("clean %q changed: %q", clean, got)
		}
	}
}

func TestFixDracutBuildParameters(t *testing.T) {
	const path = "usr/lib/dracut/build-parameter.txt"
	for _, c := range []struct{ in, want string }{
		{" --kver '4.18.0' --add 'crypt adeOnline lvm' --force\n", " --kver '4.18.0' --add 'crypt lvm' --force\n"},
		{"--modules 'adeOnline crypt' --add 'ade'", "--modules 'crypt' --add ''"},
		{"adeOnline", ""},
		{"-a \"ade\"\n-m 'bash adeOnline'\n", "-a \"\"\n-m 'bash'\n"},
	} {
		got, ch := FixDracutBuildParameters(path, []byte(c.in))
		if string(got) != c.want || got == nil || len(ch) == 0 || ch[0].Path != path {
			t.Errorf("%q: got %q (%+v), want %q", c.in, got, ch, c.want)
		}
		if again, _ := FixDracutBuildParameters(path, got); again != nil {
			t.Errorf("%q: not idempotent", c.in)
		}
	}
	for _, clean := range []string{"", "--add 'crypt' --fade 'adeOnlineX'", " --kver '4.18.0' -f\n"} {
		if got, ch := FixDracutBuildParameters(path, []byte(clean)); got != nil || ch != nil {
			t.Errorf("clean %q changed: %q", clean, got)
		}
	}
}

func TestADEInitramfsFile(t *testing.T) {
	for p, want := range map[string][2]string{ // what (a part of it), module
		"usr/lib/dracut/hooks/cmdline/30-parse-crypt-ade.sh": {"cmdline hook", ""},
		"/usr/sbin/crypt-run-generator-ade":                  {"91adeOnline", "91adeOnline"},
		"./usr/sbin/cryptroot-ask-ade":                       {"91ade cryptroot-ask-ade", "91ade"},
		"etc/udev/rules.d/50-udev-ade.rules":                 {"91ade udev rule", "91ade"},
		"etc/udev/rules.d/70-luks-ade.rules":                 {"ADE udev rule", ""},
		"osluksheader":                                       {"LUKS header", "91ade"},
		"/osluksheader":                                      {"LUKS header", "91ade"},
		"boot/luks/osluksheader":                             {"", ""},
		"usr/lib/dracut/hooks/cmdline/30-parse-crypt.sh":     {"", ""},
		"usr/sbin/cryptroot-ask":                             {"", ""},
		"etc/udev/rules.d/70-luks.rules":                     {"", ""},
	} {
		what, module, ok := ADEInitramfsFile(p)
		if ok != (want[0] != "") || !strings.Contains(what, want[0]) || module != want[1] {
			t.Errorf("ADEInitramfsFile(%q) = %q, %q, %v; want %q, %q", p, what, module, ok, want[0], want[1])
		}
	}
}
