package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lifeboat-dr/lifeboat/driver/dns"
	"github.com/lifeboat-dr/lifeboat/driver/frontdoor"
)

// DNSSource is the hosted DNS server (*dns.Server is one).
type DNSSource interface {
	Stats() dns.Stats
}

// FrontDoorSource is the hosted front door (*frontdoor.FrontDoor is one).
type FrontDoorSource interface {
	Listeners() []string
	Stats(listener string) frontdoor.Stats
}

var (
	descDNSQueries = prometheus.NewDesc("lifeboat_dns_queries_total",
		"Answers the built-in DNS server sent, by protocol (udp, tcp), question type (A, AAAA… 'other' for rare types, 'none' without a single question) and response code (NOERROR, NXDOMAIN, REFUSED for names outside the zone and zone transfers…).",
		[]string{"protocol", "qtype", "rcode"}, nil)
	descDNSDropped = prometheus.NewDesc("lifeboat_dns_dropped_queries_total",
		"Queries the built-in DNS server did not answer: datagrams that were no DNS query, answers that could not be packed or written back.",
		nil, nil)
	descDNSFailClosed = prometheus.NewDesc("lifeboat_dns_names_failing_closed",
		"Traffic names answering with their last known good endpoints because every endpoint they may answer with is unhealthy (fail closed): clients may be sent to dead endpoints.",
		nil, nil)
	descDNSSerial = prometheus.NewDesc("lifeboat_dns_zone_serial",
		"The zone's SOA serial now; it changes with every change of the answers (a switch, a health change).",
		nil, nil)

	descFDAccepted = prometheus.NewDesc("lifeboat_frontdoor_connections_accepted_total",
		"Client connections the front door listener accepted.",
		[]string{"listener"}, nil)
	descFDRouted = prometheus.NewDesc("lifeboat_frontdoor_connections_routed_total",
		"Client connections the listener forwarded to the active region's upstream.",
		[]string{"listener"}, nil)
	descFDRefused = prometheus.NewDesc("lifeboat_frontdoor_connections_refused_total",
		"Client connections the listener closed without forwarding a byte: fenced (lease expired), no route within the hold timeout, or the upstream did not answer.",
		[]string{"listener"}, nil)
	descFDCut = prometheus.NewDesc("lifeboat_frontdoor_connections_cut_total",
		"Forwarded connections the listener closed itself, because of a switch to another region or a fence.",
		[]string{"listener"}, nil)
	descFDActive = prometheus.NewDesc("lifeboat_frontdoor_connections_active",
		"Connections the listener forwards now.",
		[]string{"listener"}, nil)
	descFDHeld = prometheus.NewDesc("lifeboat_frontdoor_connections_held",
		"Connections waiting now for a route (during a switch, or before the first one).",
		[]string{"listener"}, nil)
	descFDFenced = prometheus.NewDesc("lifeboat_frontdoor_fenced",
		"1 if the listener's lease from the control plane expired (or was never granted) and it refuses every connection, 0 if it routes.",
		[]string{"listener"}, nil)
)

// The hosted drivers are sources as they are.
var (
	_ DNSSource       = (*dns.Server)(nil)
	_ FrontDoorSource = (*frontdoor.FrontDoor)(nil)
)

// DNSCollector exports the built-in DNS server's counters.
type DNSCollector struct{ src DNSSource }

// NewDNSCollector reads src at every scrape.
func NewDNSCollector(src DNSSource) *DNSCollector { return &DNSCollector{src: src} }

// Describe implements prometheus.Collector.
func (c *DNSCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descDNSQueries
	ch <- descDNSDropped
	ch <- descDNSFailClosed
	ch <- descDNSSerial
}

// Collect implements prometheus.Collector.
func (c *DNSCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	for _, q := range st.Queries {
		ch <- prometheus.MustNewConstMetric(descDNSQueries, prometheus.CounterValue, float64(q.Count), q.Protocol, q.Type, q.Rcode)
	}
	ch <- prometheus.MustNewConstMetric(descDNSDropped, prometheus.CounterValue, float64(st.Dropped))
	ch <- prometheus.MustNewConstMetric(descDNSFailClosed, prometheus.GaugeValue, float64(st.FailingClosed))
	ch <- prometheus.MustNewConstMetric(descDNSSerial, prometheus.GaugeValue, float64(st.Serial))
}

// FrontDoorCollector exports the front door's counters per listener.
type FrontDoorCollector struct{ src FrontDoorSource }

// NewFrontDoorCollector reads src at every scrape.
func NewFrontDoorCollector(src FrontDoorSource) *FrontDoorCollector {
	return &FrontDoorCollector{src: src}
}

// Describe implements prometheus.Collector.
func (c *FrontDoorCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFDAccepted, descFDRouted, descFDRefused, descFDCut, descFDActive, descFDHeld, descFDFenced} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *FrontDoorCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.src.Listeners() {
		s := c.src.Stats(l)
		counter := func(d *prometheus.Desc, v uint64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l)
		}
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l)
		}
		counter(descFDAccepted, s.Accepted)
		counter(descFDRouted, s.Routed)
		counter(descFDRefused, s.Refused)
		counter(descFDCut, s.Closed)
		gauge(descFDActive, float64(s.Active))
		gauge(descFDHeld, float64(s.Held))
		gauge(descFDFenced, flag(s.Fenced))
	}
}
