package netns

import (
	"net/netip"
	"strings"
	"testing"
)

func TestValidateOptions(t *testing.T) {
	ok := Options{Prefix: "lb-ab12", Regions: []string{"west", "east", "central"}}
	if err := ValidateOptions(ok); err != nil {
		t.Errorf("valid options: %v", err)
	}
	if err := ValidateOptions(Options{Prefix: DefaultOptions().Prefix, Regions: []string{"west"}}); err != nil {
		t.Errorf("DefaultOptions prefix: %v", err)
	}
	for name, c := range map[string]struct {
		o    Options
		want string
	}{
		"long prefix":      {Options{Prefix: "lb-abcdefghij", Regions: []string{"west"}}, "prefix"},
		"upper prefix":     {Options{Prefix: "LB-1", Regions: []string{"west"}}, "prefix"},
		"no regions":       {Options{Prefix: "lb-1"}, "no regions"},
		"dup region":       {Options{Prefix: "lb-1", Regions: []string{"west", "west"}}, "twice"},
		"bad region":       {Options{Prefix: "lb-1", Regions: []string{"West Coast"}}, "region"},
		"ipv6 subnet":      {Options{Prefix: "lb-1", Regions: []string{"west"}, Subnet: netip.MustParsePrefix("fd00::/64")}, "IPv4"},
		"host bits":        {Options{Prefix: "lb-1", Regions: []string{"west"}, Subnet: netip.MustParsePrefix("10.1.2.3/24")}, "10.1.2.0/24"},
		"subnet too small": {Options{Prefix: "lb-1", Regions: []string{"a", "b", "c", "d", "e", "f"}, Subnet: netip.MustParsePrefix("10.1.2.0/29")}, "needed"},
	} {
		err := ValidateOptions(c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error about %q", name, err, c.want)
		}
	}
}

func TestNamesFitInterfaceLimit(t *testing.T) {
	var regions []string
	for i := 0; i < MaxRegions; i++ {
		regions = append(regions, "r"+strings.Repeat("x", i%20))
	}
	// Distinct names: suffix the index.
	for i := range regions {
		regions[i] += string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	o := Options{Prefix: "lb-abcdefg", Regions: regions, Subnet: netip.MustParsePrefix("10.77.0.0/24")}
	if err := ValidateOptions(o); err != nil {
		t.Fatal(err)
	}
	n := newNet(o, o.Subnet)
	for _, name := range n.linkNames() {
		if len(name) > 15 {
			t.Errorf("interface name %q is %d characters, over the 15 limit", name, len(name))
		}
	}
	if got := n.HostAddr(); got != netip.MustParseAddr("10.77.0.254") {
		t.Errorf("host address %s, want 10.77.0.254", got)
	}
	if got := n.Addr(regions[0]); got != netip.MustParseAddr("10.77.0.1") {
		t.Errorf("first region's address %s, want 10.77.0.1", got)
	}
	if got := n.Addr("mars"); got.IsValid() {
		t.Errorf("unknown region has address %s", got)
	}
}

func TestFreeSubnet(t *testing.T) {
	used := []netip.Prefix{
		netip.MustParsePrefix("192.0.2.0/24"),
		netip.MustParsePrefix("10.77.0.0/24"),
		netip.MustParsePrefix("10.77.1.7/32"),
	}
	got, err := freeSubnet(used)
	if err != nil || got != netip.MustParsePrefix("10.77.2.0/24") {
		t.Errorf("freeSubnet = %s, %v, want 10.77.2.0/24", got, err)
	}
	if _, err := freeSubnet([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}); err == nil {
		t.Error("freeSubnet found a subnet inside a routed 10.0.0.0/8")
	}
	for dst, want := range map[string]string{"default": "", "10.1.0.0/16": "10.1.0.0/16", "192.0.2.1": "192.0.2.1/32", "fe80::/64": ""} {
		p, ok := parsePrefix(dst)
		if (want == "") == ok || (ok && p.String() != want) {
			t.Errorf("parsePrefix(%q) = %s, %v, want %q", dst, p, ok, want)
		}
	}
}
