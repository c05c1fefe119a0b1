package hosts

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/labseed/labseed/api"
)

// The columns of hosts.csv every table has; any other column is a per-host
// setting (see the Key constants) or lab variable (x_...).
const (
	ColMAC      = "mac"
	ColHostname = "hostname"
	ColIP       = "ip"
	ColNextBoot = "next_boot"
	// ColGroup is optional: the groups a host is in (a lab row, a room),
	// names separated by spaces, for "labseed deploy --group" and
	// "labseed hosts next-boot --group".
	ColGroup = "group"
)

// The next network boot of a host.
const (
	BootLocal = "local" // boot the local disk (the default)
	BootClone = "clone" // boot the clone environment and re-image
)

// Host is one row of the hosts table.
type Host struct {
	MAC      net.HardwareAddr `json:"mac"`
	Hostname string           `json:"hostname"`
	IP       netip.Addr       `json:"ip"`
	// NextBoot is BootLocal or BootClone.
	NextBoot string `json:"next_boot"`
	// Groups are the groups the host is in (ColGroup), in the order of
	// its cell; none: nil.
	Groups []string `json:"groups,omitempty"`
	// Settings are the host's own settings, overriding the lab's.
	Settings map[string]string `json:"settings,omitempty"`
}

// MarshalJSON writes the MAC as text.
func (h Host) MarshalJSON() ([]byte, error) {
	type plain Host
	return json.Marshal(struct {
		plain
		MAC string `json:"mac"`
	}{plain(h), h.MAC.String()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (h *Host) UnmarshalJSON(b []byte) error {
	type plain Host
	var v struct {
		plain
		MAC string `json:"mac"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*h = Host(v.plain)
	mac, err := ParseMAC(v.MAC)
	h.MAC = mac
	return err
}

// ParseMAC parses a 6-byte Ethernet address written with colons or dashes,
// in either case: the API's rule (api.ParseMAC), for the table too.
func ParseMAC(s string) (net.HardwareAddr, error) { return api.ParseMAC(s) }

// ParseCSV reads a hosts table: a header line naming the columns (mac,
// hostname and ip required, in any order; next_boot and setting columns
// optional), then one host per line. Empty cells leave a setting to the lab.
// The error names every bad line (up to 20); duplicate MACs, host names
// and addresses are refused.
func ParseCSV(r io.Reader) ([]Host, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.TrimLeadingSpace = true
	cr.FieldsPerRecord = -1 // short rows: the missing cells are empty
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("hosts table: %w", err)
	}
	col := map[string]int{}
	for i, name := range header {
		name = strings.ToLower(strings.TrimSpace(name))
		header[i] = name
		if _, dup := col[name]; dup {
			return nil, fmt.Errorf("hosts table: line 1: column %q twice", name)
		}
		col[name] = i
		switch name {
		case ColMAC, ColHostname, ColIP, ColNextBoot, ColGroup:
		default:
			if err := checkSetting(name, ""); err != nil {
				return nil, fmt.Errorf("hosts table: line 1: column %q: %w", name, err)
			}
		}
	}
	for _, need := range []string{ColMAC, ColHostname, ColIP} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("hosts table: line 1: no %q column (the header needs mac,hostname,ip)", need)
		}
	}
	// Every bad row is named (up to maxRowErrors), so that a table typed by
	// hand is mended in one pass; a CSV syntax error ends the reading.
	var hosts []Host
	var bad []error
	for len(bad) < maxRowErrors {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			bad = append(bad, fmt.Errorf("hosts table: %w", err))
			break
		}
		line, _ := cr.FieldPos(0)
		if len(rec) > len(header) {
			bad = append(bad, fmt.Errorf("hosts table: line %d: %d cells, the header names %d columns", line, len(rec), len(header)))
			continue
		}
		for len(rec) < len(header) {
			rec = append(rec, "")
		}
		h, err := parseRow(header, rec)
		if err == nil {
			err = checkConflicts(hosts, h)
		}
		if err != nil {
			bad = append(bad, fmt.Errorf("hosts table: line %d: %w", line, err))
			continue
		}
		hosts = append(hosts, h)
	}
	if len(bad) == maxRowErrors {
		// Said only when lines are left unread: a table of exactly
		// maxRowErrors bad lines has had every one named.
		if _, err := cr.Read(); !errors.Is(err, io.EOF) {
			line, _ := cr.FieldPos(0)
			bad = append(bad, fmt.Errorf("hosts table: stopped after %d errors; line %d and after not checked", maxRowErrors, line))
		}
	}
	if len(bad) > 0 {
		return nil, errors.Join(bad...)
	}
	return hosts, nil
}

// maxRowErrors is how many bad rows ParseCSV names before it stops.
const maxRowErrors = 20

func parseRow(header, rec []string) (Host, error) {
	h := Host{NextBoot: BootLocal}
	for i, v := range rec {
		v = strings.TrimSpace(v)
		var err error
		switch name := header[i]; name {
		case ColMAC:
			h.MAC, err = ParseMAC(v)
		case ColHostname:
			h.Hostname, err = v, checkHostname(v)
		case ColIP:
			h.IP, err = netip.ParseAddr(v)
			if err != nil || !h.IP.Is4() {
				err = fmt.Errorf("ip %q is not an IPv4 address", v)
			}
		case ColGroup:
			h.Groups, err = parseGroups(v)
		case ColNextBoot:
			switch v {
			case "", BootLocal:
			case BootClone:
				h.NextBoot = BootClone
			default:
				err = fmt.Errorf("next_boot %q: must be local or clone", v)
			}
		default:
			if v == "" {
				continue
			}
			if err = checkSetting(name, v); err == nil {
				if h.Settings == nil {
					h.Settings = map[string]string{}
				}
				h.Settings[name] = v
			}
		}
		if err != nil {
			return h, err
		}
	}
	return h, nil
}

// checkConflicts refuses h if its MAC, host name or address is taken.
func checkConflicts(hosts []Host, h Host) error {
	for _, o := range hosts {
		switch {
		case slices.Equal(o.MAC, h.MAC):
			return fmt.Errorf("MAC %s is already %s", h.MAC, o.Hostname)
		case o.Hostname == h.Hostname:
			return fmt.Errorf("host name %s is already used by %s", h.Hostname, o.MAC)
		case o.IP == h.IP:
			return fmt.Errorf("address %s is already %s's (%s)", h.IP, o.Hostname, o.MAC)
		}
	}
	return nil
}

// WriteCSV writes hosts as ParseCSV reads them: the required columns, the
// group column when a host is in a group, then every setting any host has,
// sorted by name.
func WriteCSV(w io.Writer, hosts []Host) error {
	extra := map[string]bool{}
	groups := false
	for _, h := range hosts {
		for k := range h.Settings {
			extra[k] = true
		}
		groups = groups || len(h.Groups) > 0
	}
	header := []string{ColMAC, ColHostname, ColIP, ColNextBoot}
	if groups {
		header = append(header, ColGroup)
	}
	fixed := len(header)
	header = append(header, slices.Sorted(maps.Keys(extra))...)
	cw := csv.NewWriter(w)
	cw.Write(header)
	for _, h := range hosts {
		rec := []string{h.MAC.String(), h.Hostname, h.IP.String(), h.NextBoot}
		if groups {
			rec = append(rec, strings.Join(h.Groups, " "))
		}
		for _, k := range header[fixed:] {
			rec = append(rec, h.Settings[k])
		}
		cw.Write(rec)
	}
	cw.Flush()
	return cw.Error()
}

// groupRE is a group's name: what a shell and a CSV cell take as one word.
var groupRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// parseGroups reads a group cell: names separated by spaces (or commas),
// each once.
func parseGroups(v string) ([]string, error) {
	var out []string
	for _, g := range strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' }) {
		if !groupRE.MatchString(g) {
			return nil, fmt.Errorf("group %q: use 1-64 of letters, digits and . _ -, starting with a letter or digit (several groups: separated by spaces)", g)
		}
		if !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out, nil
}

// InGroup reports whether h is in group g.
func (h Host) InGroup(g string) bool { return slices.Contains(h.Groups, g) }
