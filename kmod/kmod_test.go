package kmod

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// A slice of Debian bookworm's modules.dep and modules.alias (6.1).
const testDep = `kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/lib/crc16.ko:
kernel/drivers/net/ethernet/intel/e1000/e1000.ko:
kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko: kernel/drivers/ptp/ptp.ko kernel/drivers/pps/pps_core.ko
kernel/drivers/ptp/ptp.ko: kernel/drivers/pps/pps_core.ko
kernel/drivers/pps/pps_core.ko:
kernel/drivers/ata/ahci.ko: kernel/drivers/ata/libahci.ko kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko
kernel/drivers/ata/libahci.ko: kernel/drivers/ata/libata.ko kernel/drivers/scsi/scsi_mod.ko
kernel/drivers/ata/libata.ko: kernel/drivers/scsi/scsi_mod.ko
kernel/drivers/scsi/scsi_mod.ko: kernel/drivers/scsi/scsi_common.ko
kernel/drivers/scsi/scsi_common.ko:
kernel/drivers/scsi/sd_mod.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/crypto/crc32c_generic.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
`

const testAlias = `# Aliases extracted from modules themselves.
alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000
alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e
alias pci:v*d*sv*sd*bc01sc06i01* ahci
alias scsi:t-0x00* sd_mod
alias fs-ext4 ext4
alias ext3 ext4
alias crypto-crc32c crc32c_generic
alias crypto-crc32c crc32c_intel
alias cpu:type:x86,ven*fam*mod*:feature:*0094* crc32c_intel
`

func testTable(t *testing.T) *Table {
	t.Helper()
	tb, err := ParseDep(strings.NewReader(testDep))
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.ParseAlias(strings.NewReader(testAlias)); err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/arch/x86/crypto/crc32c-intel.ko": "crc32c_intel",
		"crc32c-intel":                           "crc32c_intel",
		"kernel/fs/ext4/ext4.ko.xz":              "ext4",
		"e1000e.ko.zst":                          "e1000e",
	} {
		if got := Name(in); got != want {
			t.Errorf("Name(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClosure(t *testing.T) {
	tb := testTable(t)
	for _, tc := range []struct {
		name          string
		in            []string
		order, missed []string
	}{
		{"ext4", []string{"ext4"}, []string{"crc16", "mbcache", "jbd2", "ext4"}, nil},
		{"ahci twice", []string{"ahci", "libahci"},
			[]string{"scsi_common", "scsi_mod", "libahci", "libata", "ahci"}, nil},
		{"dash and unknown", []string{"crc32c-intel", "igc"}, []string{"crc32c_intel"}, []string{"igc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			order, missed := tb.Closure(tc.in...)
			// Every module comes after its dependencies.
			for i, m := range order {
				for _, d := range tb.Deps[m] {
					if j := slices.Index(order, d); j < 0 || j > i {
						t.Errorf("%s before its dependency %s: %v", m, d, order)
					}
				}
			}
			if !sameSet(order, tc.order) || !slices.Equal(missed, tc.missed) {
				t.Errorf("Closure(%v) = %v, missing %v; want %v, %v", tc.in, order, missed, tc.order, tc.missed)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func TestMatch(t *testing.T) {
	tb := testTable(t)
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00", []string{"e1000"}},
		{"pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", []string{"ahci"}},
		{"scsi:t-0x00", []string{"sd_mod"}},
		{"scsi:t-0x05", nil},
		{"crypto-crc32c", []string{"crc32c_generic", "crc32c_intel"}},
		{"fs-ext4", []string{"ext4"}},
		{"ext3", []string{"ext4"}},
		{"jbd2", []string{"jbd2"}},
		{"cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0001,0094,00E5", []string{"crc32c_intel"}},
		{"pci:v000010ECd00008168sv*", nil},
	} {
		if got := tb.Match(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("Match(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestSubsetRoundTrip(t *testing.T) {
	tb := testTable(t)
	order, _ := tb.Closure("ext4", "e1000e")
	sub := tb.Subset(order)
	var dep, alias bytes.Buffer
	if err := sub.WriteDep(&dep); err != nil {
		t.Fatal(err)
	}
	if err := sub.WriteAlias(&alias); err != nil {
		t.Fatal(err)
	}
	back, err := ParseDep(&dep)
	if err != nil {
		t.Fatal(err)
	}
	if err := back.ParseAlias(&alias); err != nil {
		t.Fatal(err)
	}
	if len(back.Path) != len(order) {
		t.Errorf("subset has %d modules, want %d:\n%s", len(back.Path), len(order), dep.String())
	}
	if got := back.Match("fs-ext4"); !slices.Equal(got, []string{"ext4"}) {
		t.Errorf("subset Match(fs-ext4) = %v", got)
	}
	if got := back.Match("scsi:t-0x00"); got != nil {
		t.Errorf("subset kept sd_mod's alias: %v", got)
	}
	if got, _ := back.Closure("e1000e"); !slices.Equal(got, []string{"pps_core", "ptp", "e1000e"}) {
		t.Errorf("subset closure of e1000e = %v", got)
	}
}

func TestParseErrors(t *testing.T) {
	if _, err := ParseDep(strings.NewReader("no colon here\n")); err == nil {
		t.Error("modules.dep line without a colon accepted")
	}
	tb := &Table{}
	if err := tb.ParseAlias(strings.NewReader("alias only-two\n")); err == nil {
		t.Error("short alias line accepted")
	}
}
