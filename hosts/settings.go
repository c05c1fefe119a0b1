package hosts

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// The lab settings, as keys of lab.conf and as per-host columns of
// hosts.csv (a host's column overrides the lab's setting). Keys starting
// with "x_" are the lab's own variables for its templates (Identity.Vars).
const (
	KeyNetmask       = "netmask"        // 255.255.255.0 or 24; default 24
	KeyGateway       = "gateway"        // IPv4 address
	KeyDNS           = "dns"            // IPv4 addresses, comma or space separated
	KeyDomain        = "domain"         // DNS domain
	KeyPrinterQueue  = "printer_queue"  // lpd queue name
	KeyPrinterServer = "printer_server" // host name or address of the print server
	KeyDisplay       = "display"        // X display mode WIDTHxHEIGHT
	KeyImage         = "image"          // image name
	KeyFilesystem    = "filesystem"     // ext4 (default), ext3, xfs
	KeySwapMiB       = "swap_mib"       // swap partition size; default 1024; 0: none
	KeyRootMiB       = "root_mib"       // root partition size; default 0: rest of disk
	KeyBootloader    = "bootloader"     // grub (default), extlinux, lilo, none, or a command
	KeyEnroll        = "enroll"         // on (default) or off: auto-enrol unknown MACs
	KeyEnrollName    = "enroll_name"    // host name pattern with one %d, e.g. lab1-ws%02d
	KeyEnrollRange   = "enroll_range"   // addresses for enrolment, FIRST-LAST
	KeyDHCPPool      = "dhcp_pool"      // serve --pxe dhcp: addresses for machines not in the table, FIRST-LAST
	KeyBootArgs      = "boot_args"      // more kernel arguments for the clone environment, e.g. labseed.disk=/dev/nvme0n1
	KeyOnFailure     = "on_failure"     // the clone environment after a failed clone: retry (default, after a pause) or shell
	KeyKeep          = "keep"           // paths a re-image by sync leaves as they are, comma or space separated, e.g. /home
)

// defaultSettings are the settings a lab has before lab.conf says otherwise.
var defaultSettings = map[string]string{
	KeyNetmask:    "24",
	KeyFilesystem: "ext4",
	KeySwapMiB:    "1024",
	KeyRootMiB:    "0",
	KeyBootloader: "grub",
	KeyEnroll:     "on",
	KeyEnrollName: "ws%02d",
}

// settingCheck validates the value of each known setting.
var settingCheck = map[string]func(string) error{
	KeyNetmask:       checkNetmask,
	KeyGateway:       checkAddr,
	KeyDNS:           checkAddrList,
	KeyDomain:        checkDomain,
	KeyPrinterQueue:  checkWord,
	KeyPrinterServer: checkWord,
	KeyDisplay:       checkDisplay,
	KeyImage:         checkWord,
	KeyFilesystem:    checkOneOf("ext4", "ext3", "xfs"),
	KeySwapMiB:       checkMiB,
	KeyRootMiB:       checkMiB,
	KeyBootloader:    checkAny,
	KeyEnroll:        checkOneOf("on", "off"),
	KeyEnrollName:    checkNamePattern,
	KeyEnrollRange:   checkRange,
	KeyDHCPPool:      checkRange,
	KeyBootArgs:      checkBootArgs,
	KeyOnFailure:     checkOneOf("retry", "shell"),
	KeyKeep:          checkKeep,
}

// checkSetting validates one setting; unknown keys not starting with "x_"
// are refused so that a typo in lab.conf is an error, not a silent variable.
func checkSetting(key, value string) error {
	if strings.HasPrefix(key, "x_") && len(key) > 2 {
		return nil
	}
	check, ok := settingCheck[key]
	if !ok {
		return fmt.Errorf("unknown setting %q (known: %s; lab variables start with x_)", key, strings.Join(knownKeys(), ", "))
	}
	if value == "" {
		return nil // empty: not set
	}
	if err := check(value); err != nil {
		return fmt.Errorf("%s = %q: %w", key, value, err)
	}
	return nil
}

func knownKeys() []string {
	keys := make([]string, 0, len(settingCheck))
	for k := range settingCheck {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ParseSettings reads lab.conf: "key = value" lines, blank lines, and
// comments from a "#" at the start of a line or after a space. Errors name the line. Settings not given keep their defaults.
func ParseSettings(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	for k, v := range defaultSettings {
		out[k] = v
	}
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.Index(line, " #"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if i := strings.Index(line, "\t#"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("line %d: %q is not \"key = value\"", n, line)
		}
		key, value = strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(value)
		if err := checkSetting(key, value); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("line %d: %s already set on line %d", n, key, prev)
		}
		seen[key] = n
		out[key] = value
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", len(seen)+1, err)
	}
	return out, nil
}

// maxLine bounds one line of lab.conf or hosts.csv.
const maxLine = 64 << 10

func checkAny(string) error { return nil }

// checkKeep accepts absolute paths below the root, without "..", "." or
// labseed's own /.labseed.
func checkKeep(s string) error {
	for _, p := range splitList(s) {
		c := path.Clean(p)
		if !strings.HasPrefix(p, "/") || c == "/" || c != p || c == "/.labseed" || strings.HasPrefix(c, "/.labseed/") {
			return fmt.Errorf("%q: give absolute paths below /, e.g. /home (not /, not /.labseed, nothing to clean up like .. or a trailing /)", p)
		}
	}
	return nil
}

// checkBootArgs refuses what would break the boot menu's scripts: control
// characters, and "$" (iPXE would expand it).
func checkBootArgs(s string) error {
	if strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f || r == '$' }) {
		return fmt.Errorf("kernel arguments with a control character or a $")
	}
	return nil
}

func checkAddr(s string) error {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return fmt.Errorf("not an IPv4 address")
	}
	return nil
}

func checkAddrList(s string) error {
	for _, f := range splitList(s) {
		if err := checkAddr(f); err != nil {
			return fmt.Errorf("%q: %w", f, err)
		}
	}
	return nil
}

// splitList splits a comma- or space-separated list.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

// prefixLen parses a netmask as dotted quad or prefix length.
func prefixLen(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 32 {
			return 0, fmt.Errorf("prefix length must be 1..32")
		}
		return n, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, fmt.Errorf("not a netmask (255.255.255.0 or 24)")
	}
	b := a.As4()
	m := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n := 0
	for m&(1<<31) != 0 {
		n++
		m <<= 1
	}
	if m != 0 || n == 0 {
		return 0, fmt.Errorf("not a contiguous netmask")
	}
	return n, nil
}

func checkNetmask(s string) error { _, err := prefixLen(s); return err }

var (
	labelRE   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	wordRE    = regexp.MustCompile(`^[A-Za-z0-9._:@+-]{1,253}$`)
	displayRE = regexp.MustCompile(`^[1-9][0-9]{2,4}x[1-9][0-9]{2,4}$`)
	numVerbRE = regexp.MustCompile(`%0?[1-9]?d`)
)

// checkHostname accepts an RFC 1123 host name label (lower case).
func checkHostname(s string) error {
	if !labelRE.MatchString(s) {
		return fmt.Errorf("host name %q: use 1-63 of a-z, 0-9 and -, not starting or ending with -", s)
	}
	return nil
}

func checkDomain(s string) error {
	for _, l := range strings.Split(s, ".") {
		if !labelRE.MatchString(l) {
			return fmt.Errorf("not a DNS domain (lower-case labels separated by dots)")
		}
	}
	return nil
}

func checkWord(s string) error {
	if !wordRE.MatchString(s) {
		return fmt.Errorf("use letters, digits and . _ : @ + - only")
	}
	return nil
}

func checkDisplay(s string) error {
	if !displayRE.MatchString(s) {
		return fmt.Errorf("not a display mode WIDTHxHEIGHT, e.g. 1920x1080")
	}
	return nil
}

func checkOneOf(values ...string) func(string) error {
	return func(s string) error {
		if !slices.Contains(values, s) {
			return fmt.Errorf("must be one of %s", strings.Join(values, ", "))
		}
		return nil
	}
}

func checkMiB(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 64<<20 {
		return fmt.Errorf("not a size in MiB (0..%d)", 64<<20)
	}
	return nil
}

func checkNamePattern(s string) error {
	if strings.Count(s, "%") != 1 || !numVerbRE.MatchString(s) {
		return fmt.Errorf("needs exactly one number verb such as %%d or %%02d")
	}
	return checkHostname(fmt.Sprintf(s, 1))
}

// parseRange parses "FIRST-LAST" (IPv4, FIRST ≤ LAST).
func parseRange(s string) (first, last netip.Addr, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return first, last, fmt.Errorf("not an address range FIRST-LAST")
	}
	first, err1 := netip.ParseAddr(strings.TrimSpace(a))
	last, err2 := netip.ParseAddr(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || !first.Is4() || !last.Is4() {
		return first, last, fmt.Errorf("not an IPv4 address range FIRST-LAST")
	}
	if last.Less(first) {
		return first, last, fmt.Errorf("range ends before it starts")
	}
	return first, last, nil
}

func checkRange(s string) error { _, _, err := parseRange(s); return err }

// Network is the lab network as lab.conf describes it, for a DHCP server.
type Network struct {
	Prefix              int          // prefix length
	Gateway             netip.Addr   // zero if unset
	DNS                 []netip.Addr // nil if unset
	Domain              string
	PoolFirst, PoolLast netip.Addr // dhcp_pool; zero if unset
}

// Network returns the lab network of the settings (lab.conf).
func (db *DB) Network() (Network, error) {
	s, err := db.Settings()
	if err != nil {
		return Network{}, err
	}
	var n Network
	n.Prefix, _ = prefixLen(s[KeyNetmask])
	n.Gateway, _ = netip.ParseAddr(s[KeyGateway])
	for _, d := range splitList(s[KeyDNS]) {
		if a, err := netip.ParseAddr(d); err == nil {
			n.DNS = append(n.DNS, a)
		}
	}
	n.Domain = s[KeyDomain]
	if s[KeyDHCPPool] != "" {
		n.PoolFirst, n.PoolLast, _ = parseRange(s[KeyDHCPPool])
	}
	return n, nil
}
