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
//   - OpenMember: one region's member of a cluster of embedded members
//     (spec store.members), one in each region's controller (`lifeboat
//     serve --region R`): the primary's, the secondary's and the witness's
//     members are the quorum. Its data is in Dir/<region> (etcd/, etcd.log,
//     lock); it listens on the region's peer and client host:port (any
//     address this machine has, so a lab namespace's works too); the first
//     start bootstraps the cluster statically from store.members with the
//     cluster token lifeboat-<service>, later starts rejoin it with their
//     data. A member that starts alone waits, bounded by its ctx, until a
//     majority is up. Other commands use Open with Options.Members: a plain
//     client of all members' client addresses, working while a majority is.
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
// and the quorum's keys (Quorum), all attached to the lease of the region
// controller that wrote them, so they vanish when that controller stops
// renewing it (crashed, or cut off from the majority):
//
//	leader/<lease id in hex>         the election, etcd's recipe (concurrency.Election's keys,
//	                                 so etcdctl elect sees it): the value is the campaigning
//	                                 region; the oldest key leads. Only the leader may start
//	                                 an automatic failover. Quorum.Campaign sends each request
//	                                 through whichever member answers, with a deadline
//	views/<region>/<key>             what <region>'s observers see (Publish; read by Views,
//	                                 WatchViews)
//	active-controller/<region>       <region>'s controller is active (HoldActive): host, pid,
//	                                 lease, since. The majority side waits until the old
//	                                 primary's key is gone (ActiveHeld false) before it promotes
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
// A Quorum renews its lease itself, one request every TTL/6, and records
// when the last acknowledged renewal was sent (LastRenewed): the lease cannot
// expire before that time + TTL. Alive(now) is now - LastRenewed < TTL/2;
// the controller fences its region as soon as Alive turns false, and the
// other half of the TTL is the margin for the fence to complete before the
// lease expires on the majority side. (clientv3's session only notices a
// lost lease about a TTL after the last renewal: too late to fence.) Close
// revokes the lease, so a clean hand-over takes milliseconds; after a crash
// or a partition the election moves after the TTL (plus an etcd election if
// the dead member was etcd's leader: a new etcd leader extends every lease).
// The lease TTL must be well above etcd's election timeout (1 s by default),
// since a change of etcd leader pauses renewals for about that long.
//
// Member.Quorum renews through every member at once: its own (in-process)
// first, and a client of each other member's client address; the first
// acknowledgement counts, and that path serves the handle's other calls.
// This matters for a partial partition: a member cut off from etcd's raft
// leader alone (the witness still sees both) stays without a leader for as
// long as the cut lasts (pre-vote and check-quorum stop it from calling an
// election), so a controller that talked only to its own member would
// fence a region that the witness sees healthy. Only a controller that
// reaches no member connected to the leader loses its lease. When etcd
// says the lease is gone (it lapsed in a partition that has since healed),
// the handle grants itself a new one: Alive turns true again, but the
// leadership, views and active key are gone and must be won and written
// again.
//
// Errors wrap lifeboat's: etcd that does not answer is lifeboat.Transient;
// a missing run (lifeboat.ErrNoRun), a run in progress, an owned run and
// bad input are lifeboat.Permanent.
package store
