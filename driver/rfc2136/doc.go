// Package rfc2136 is a lifeboat.TrafficDriver that points traffic names
// at a region by changing their A/AAAA records in an external DNS server
// (BIND, Knot, PowerDNS, a cloud's RFC 2136 endpoint) with dynamic updates
// (RFC 2136) signed with TSIG (RFC 8945).
//
// Next to each name the driver keeps a TXT record, _lifeboat.<name>, that
// says "epoch=N region=R since=T": the fencing token of the last switch.
// Switch reads the current records from the zone's primary, refuses a stale
// epoch, and sends one update whose prerequisites (RFC 2136 §2.4) are the
// exact record sets it read, so a concurrent writer that changed them first
// (an older run, a person) makes the update fail as a whole rather than
// mix two answers. When the records already match, Switch sends nothing and
// the zone's serial does not change.
//
// One update is atomic on the server, so the two steps of a switch (stop
// routing to the old region, route to the new one) happen at once for every
// client that asks after it; resolvers that cached the old answer keep it
// for up to TTL.
package rfc2136
