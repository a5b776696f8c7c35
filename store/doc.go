// Package store keeps a service's state, its runs and their journals.
//
// Two implementations of lifeboat.Store share one set of semantics (and one
// conformance test suite):
//
//   - Open: etcd. By default an etcd member is embedded in the process, with
//     its data in Options.Dir, listening on loopback only; a second lifeboat
//     process on the same Dir (say `lifeboat cancel` next to a running
//     `lifeboat failover`) finds the member through Dir/endpoint and connects
//     to it as a plain client. With Options.Endpoints the same client code
//     talks to an external cluster instead, so going multi-region is a
//     change of configuration, not of code.
//   - NewMemory: a map behind a mutex, for unit tests of the core and engine.
//
// Dir holds etcd/ (the member's data, fsynced: durability is the point),
// etcd.log (the member's errors; nothing is printed on the terminal),
// lock (flock'd by the process that embeds the member, naming its pid)
// and endpoint (the member's loopback client URL, removed by Close). A
// process that finds Dir locked and no member answering gives up after a
// short wait with an error naming the holder, instead of blocking in
// bbolt's flock. A process that joined another's member as a client loses
// the store when that process exits (fine for `lifeboat cancel`).
//
// Keys live under /lifeboat/<service>/ and hold JSON:
//
//	state                      the service's lifeboat.State
//	runs/<id>                  a lifeboat.Run
//	journal/<id>/<seq>         a lifeboat.Record; seq zero-padded to 20 digits so keys sort by seq
//	own/<id>                   who runs the run (host, pid, boot id), attached to a lease
//	cancel/<id>                who asked to cancel the run
//
// One process owns a run at a time (Own). Journal sequence numbers are
// allocated inside that process under a per-run mutex, initialised from the
// last journal key the first time the process appends to the run, so an
// Append is one etcd round trip and concurrent Appends are batched by etcd
// into one fsync instead of queueing behind a lock. Every journal write is
// guarded by "key does not exist yet", so a process that appends without
// owning the run cannot overwrite records: it gets a fresh seq instead.
//
// Ownership is a key attached to a lease with a TTL of OwnTTL (5 s) that the
// owner keeps alive. If the owner dies its claim lapses after the TTL; if the
// dead owner ran on this host (same host name and boot id) and its pid is
// gone, the next Own revokes the stale lease at once instead of waiting. That
// matters with the embedded member: the dead process took the member with
// it, and etcd restores leases on restart with a fresh TTL. An owner on
// another host (external cluster) is only ever replaced when its lease
// lapses. A lease is not a fence: an owner cut off from etcd for longer
// than the TTL loses the run without being told, which is why every driver
// action also carries the epoch.
//
// Errors wrap lifeboat's: etcd that does not answer is lifeboat.Transient;
// a missing run (lifeboat.ErrNoRun), a run in progress, an owned run and
// bad input are lifeboat.Permanent.
package store
