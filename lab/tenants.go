package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/driver/postgres"
	"github.com/lifeboat-dr/lifeboat/tenant"
	"github.com/lifeboat-dr/lifeboat/tenant/backup"
	"github.com/lifeboat-dr/lifeboat/tenant/pgbackend"
	"github.com/lifeboat-dr/lifeboat/tenant/serve"
)

// The lab's tenant pools (database components of the storefront unit).
const (
	PoolPaid     = "paid"     // geo-replica, primary in west
	PoolPaidEast = "paideast" // geo-replica, primary in east (split placement)
	PoolTrial    = "trial"    // west only; its DR copy is created at failover
	TierPaid     = "paid"
	TierTrial    = "trial"
	// TenantRows is how many rows each tenant gets at lab up (ids 1..3);
	// trial tenants get one more (id 4) after their backup, which their
	// geo-restore may lose (within the tier's RPO).
	TenantRows = 3
)

// tenantURLs are the spec's endpoints of the tenants' databases.
type tenantURLs struct {
	OrdersWest, OrdersEast     string
	PaidWest, PaidEast         string
	PaidEastWest, PaidEastEast string
	TrialWest, TrialEast       string
	Gate                       string
	Concurrency                int
}

func pgURL(port int) string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", DBUser, DBPassword, addr(port), ShopDatabase)
}

func tenantSpec(in *Info) tenantURLs {
	w, e := in.Region(West), in.Region(East)
	c := in.TenantConcurrency
	if c <= 0 {
		c = 4
	}
	return tenantURLs{
		OrdersWest: pgURL(port(w.Postgres)), OrdersEast: pgURL(port(e.Postgres)),
		PaidWest: pgURL(w.PortBase + offPaid), PaidEast: pgURL(e.PortBase + offPaid),
		PaidEastWest: pgURL(w.PortBase + offPaidEast), PaidEastEast: pgURL(e.PortBase + offPaidEast),
		TrialWest: pgURL(w.PortBase + offTrial), TrialEast: pgURL(e.PortBase + offTrial),
		Gate: in.Gate, Concurrency: c,
	}
}

// TenantName is the name of the i-th tenant (from 1) of a tier at lab up.
func TenantName(tier string, i int) string { return fmt.Sprintf("%s%04d", tier[:1], i) }

// TenantCounts splits n tenants between the tiers: half paid, the rest
// trial; in seed 004's scenario 1, all trial.
func TenantCounts(n, scenario int) (paid, trial int) {
	if scenario == 1 {
		return 0, n
	}
	return n / 2, n - n/2
}

// poolHomes is where each geo-replica pool's primary starts, and the
// port offset of the pool in every region's block.
var poolHomes = []struct {
	component, home string
	off             int
}{{PoolPaid, West, offPaid}, {PoolPaidEast, East, offPaidEast}}

// addPoolNodes adds the geo-replica pools' nodes to the postgres driver's,
// so that the failover plan promotes and fences them as it does orders.
// Their replication goes straight to the other region's port (no WAN link).
func (d *daemon) addPoolNodes(nodes map[string]postgres.Node) {
	for _, p := range poolHomes {
		for _, r := range []*RegionInfo{d.in.Region(West), d.in.Region(East)} {
			nodes[Resource(p.component, r.Name)] = postgres.Node{Region: r.Name, Host: loopback, Port: r.PortBase + p.off,
				DataDir: filepath.Join(r.Dir, "pg-"+p.component)}
		}
	}
}

// startPools starts the tenants' pools: each geo-replica pool's primary in
// its home and a streaming standby in the other region, and the trial
// pool's only copy in west (and its DR copy in east if a failover made one).
func (d *daemon) startPools(ctx context.Context, stops *[]func()) error {
	d.setPhase("starting the tenants' pools")
	for _, p := range poolHomes {
		home := d.in.Region(p.home)
		other := d.in.Region(East)
		if p.home == East {
			other = d.in.Region(West)
		}
		hi, oi := d.pg.Instance(Resource(p.component, home.Name)), d.pg.Instance(Resource(p.component, other.Name))
		*stops = append(*stops, func() { d.stopPostgres(hi); d.stopPostgres(oi) })
		if err := d.startPostgres(ctx, hi, ""); err != nil {
			return fmt.Errorf("tenant pool %s in %s: %w", p.component, home.Name, err)
		}
		via := postgres.Conninfo(loopback, home.PortBase+p.off, ReplUser, ReplPassword, "", oi.Name)
		if err := d.startPostgres(ctx, oi, via); err != nil {
			return fmt.Errorf("tenant pool %s in %s: %w", p.component, other.Name, err)
		}
	}
	w := d.in.Region(West)
	d.trial = &postgres.Instance{BinDir: postgres.DefaultBinDir, DataDir: filepath.Join(w.Dir, "pg-"+PoolTrial), Host: loopback,
		Port: w.PortBase + offTrial, Name: Resource(PoolTrial, West), Log: d.log}
	*stops = append(*stops, func() { d.stopPostgres(d.trial) })
	if err := d.startPostgres(ctx, d.trial, ""); err != nil {
		return fmt.Errorf("tenant pool %s in west: %w", PoolTrial, err)
	}
	return nil
}

// labProvisioner is the lab's DR pool provisioner: a PostgreSQL cluster
// under DIR/pools, its PID recorded for lab down.
type labProvisioner struct {
	pgbackend.Postgres
	d *daemon
}

func (p *labProvisioner) Provision(ctx context.Context, t pgbackend.PoolTarget) error {
	if err := p.Postgres.Provision(ctx, t); err != nil {
		return err
	}
	if i := p.Instance(t.Pool, t.Region); i != nil {
		if pid, ok := i.PID(); ok {
			p.d.recordPID("postgres "+t.Pool+"-"+t.Region, pid)
		}
	}
	return nil
}

// The lab's backend does the failback's steps too.
var _ serve.FailbackBackend = (*pgbackend.Backend)(nil)

// backupDirs are the spec's tenants.backups (default
// .lifeboat/tenant-backups/<region> next to the spec).
func (d *daemon) backupDirs() map[string]string { return serve.BackupDirs(d.spec) }

// startTenants creates the lab's tenants on the first start (catalog,
// schemas, rows, backups shipped to east), then hosts the gate and the
// tenants' recovery.
func (d *daemon) startTenants(ctx context.Context, stops *[]func(), st *lifeboat.State) error {
	d.setPhase("waiting for the tenant pools' standbys to stream")
	if err := d.waitPoolsStreaming(ctx, time.Minute); err != nil {
		return err
	}
	d.setPhase("creating the tenants")
	cat, err := tenant.OpenCatalog(ctx, d.spec, st)
	if err != nil {
		return fmt.Errorf("opening the tenants' catalog: %w", err)
	}
	defer cat.Close()
	existing, err := cat.List(ctx, tenant.Filter{})
	if err != nil {
		return fmt.Errorf("listing the tenants: %w", err)
	}
	if len(existing) == 0 {
		if err := d.createTenants(ctx, cat, st); err != nil {
			return err
		}
	}

	prov := &labProvisioner{Postgres: pgbackend.Postgres{Dir: filepath.Join(d.in.Dir, "pools"), BinDir: postgres.DefaultBinDir}, d: d}
	*stops = append(*stops, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = prov.Stop(sctx)
	})
	// A DR pool a failover created runs again with the lab.
	for _, r := range []string{West, East} {
		if _, err := os.Stat(filepath.Join(prov.Dir, PoolTrial+"-"+r, "PG_VERSION")); err == nil {
			u := tenantSpec(d.in).TrialEast
			if r == West {
				u = tenantSpec(d.in).TrialWest
			}
			if err := prov.Provision(ctx, pgbackend.PoolTarget{Pool: PoolTrial, Region: r, Endpoint: u, Isolation: lifeboat.IsolationSchema}); err != nil {
				return err
			}
		}
	}
	bcfg := pgbackend.DefaultConfig()
	bcfg.Spec, bcfg.Backups, bcfg.Provisioner, bcfg.Log = d.spec, d.backupDirs(), prov, d.log
	be, err := pgbackend.New(bcfg)
	if err != nil {
		return err
	}
	*stops = append(*stops, be.Close)
	hc := serve.DefaultConfig()
	hc.Spec, hc.Store, hc.Backend, hc.Log = d.spec, d.store, be, d.log
	hc.BackupDirs = d.backupDirs()
	h, err := serve.Host(ctx, hc)
	if err != nil {
		return fmt.Errorf("hosting the tenants' gate on %s: %w", d.in.Gate, err)
	}
	*stops = append(*stops, func() { _ = h.Close() })
	d.tenants.Store(h)
	return nil
}

// createTenants places n tenants (half paid, split between paid and
// paideast; half trial), creates their schemas with TenantRows rows each,
// records them in the catalog, backs the trial tenants up to east and
// then writes one more row to each trial tenant.
func (d *daemon) createTenants(ctx context.Context, cat tenant.Catalog, st *lifeboat.State) error {
	start := time.Now()
	paid, trial := TenantCounts(d.in.Tenants, d.in.TenantScenario)
	counts := map[string]int{}
	byPool := map[string][]lifeboat.Tenant{}
	var all []lifeboat.Tenant
	now := time.Now().UTC()
	for _, tier := range []struct {
		name string
		n    int
	}{{TierPaid, paid}, {TierTrial, trial}} {
		for i := 1; i <= tier.n; i++ {
			pl, err := tenant.Choose(d.spec, st, tier.name, counts)
			if err != nil {
				return fmt.Errorf("placing tenant %d of tier %s: %w", i, tier.name, err)
			}
			counts[pl.Pool]++
			t := lifeboat.Tenant{Name: TenantName(tier.name, i), Tier: tier.name, Pool: pl.Pool, Region: pl.Region, Epoch: pl.Epoch,
				State: lifeboat.TenantAvailable, Created: now, Updated: now}
			byPool[pl.Pool+"/"+pl.Region] = append(byPool[pl.Pool+"/"+pl.Region], t)
			all = append(all, t)
		}
	}
	// Schemas and rows: one connection per pool, statements in chunks.
	var wg sync.WaitGroup
	errs := make(chan error, len(byPool))
	for key, ts := range byPool {
		pool, region, _ := strings.Cut(key, "/")
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- d.execTenants(ctx, pool, region, ts, func(n string) string {
				return fmt.Sprintf(`CREATE SCHEMA IF NOT EXISTS %[1]s; CREATE TABLE IF NOT EXISTS %[1]s.items (id int NOT NULL, note text NOT NULL); INSERT INTO %[1]s.items SELECT g, 'before' FROM generate_series(1, %[2]d) g;`, n, TenantRows)
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	for _, t := range all {
		if err := cat.Create(ctx, t); err != nil && !errors.Is(err, tenant.ErrTenantExists) {
			return fmt.Errorf("recording tenant %s in the catalog: %w", t.Name, err)
		}
	}
	d.log.Info("tenants created", "paid", paid, "trial", trial, "took", time.Since(start))

	// Backups of the trial tenants, shipped to east.
	bc := backup.DefaultConfig()
	bc.Spec, bc.Dirs, bc.Concurrency, bc.Log = d.spec, d.backupDirs(), 4, d.log
	sched, err := backup.NewScheduler(bc, cat, &backup.PgDump{Spec: d.spec})
	if err != nil {
		return err
	}
	var trials []lifeboat.Tenant
	for _, t := range all {
		if t.Tier == TierTrial {
			trials = append(trials, t)
		}
	}
	sem := make(chan struct{}, 4)
	berrs := make(chan error, len(trials))
	for _, t := range trials {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := sched.One(ctx, t); err != nil {
				berrs <- fmt.Errorf("backing up tenant %s: %w", t.Name, err)
			}
		}()
	}
	wg.Wait()
	close(berrs)
	if err := <-berrs; err != nil {
		return err
	}
	if len(trials) > 0 {
		if err := d.execTenants(ctx, PoolTrial, West, trials, func(n string) string {
			return fmt.Sprintf(`INSERT INTO %s.items VALUES (%d, 'after-backup');`, n, TenantRows+1)
		}); err != nil {
			return err
		}
	}
	d.log.Info("trial tenants backed up to east", "tenants", len(trials), "took", time.Since(start))
	// The paid tenants' rows reach their standbys before the lab is ready,
	// so a failover right away loses none of them.
	return d.waitPoolsReplayed(ctx, time.Minute)
}

// execTenants runs sql(name) for every tenant on its pool's copy in
// region, many tenants per round trip.
func (d *daemon) execTenants(ctx context.Context, pool, region string, ts []lifeboat.Tenant, sql func(name string) string) error {
	u := tenantPoolURL(d.in, pool, region)
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		return fmt.Errorf("connecting to tenant pool %s in %s: %w", pool, region, err)
	}
	defer c.Close(context.Background())
	const chunk = 100
	for i := 0; i < len(ts); i += chunk {
		var b strings.Builder
		for _, t := range ts[i:min(i+chunk, len(ts))] {
			b.WriteString(sql(pgx.Identifier{t.Name}.Sanitize()))
		}
		if _, err := c.Exec(ctx, b.String()); err != nil {
			return fmt.Errorf("tenant pool %s in %s: %w", pool, region, err)
		}
	}
	return nil
}

// tenantPoolURL is the URL of a pool's copy in region.
func tenantPoolURL(in *Info, pool, region string) string {
	off := map[string]int{PoolPaid: offPaid, PoolPaidEast: offPaidEast, PoolTrial: offTrial}[pool]
	return pgURL(in.Region(region).PortBase + off)
}

// TenantPoolURL is the URL of a tenant pool's copy in a region of the lab.
func (in *Info) TenantPoolURL(pool, region string) string { return tenantPoolURL(in, pool, region) }

func (d *daemon) waitPoolsStreaming(ctx context.Context, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		waiting := ""
		for _, p := range poolHomes {
			for _, region := range []string{West, East} {
				t := lifeboat.Target{Service: Service, Unit: Unit, Component: p.component, Region: region, Resource: Resource(p.component, region)}
				ns, err := d.pg.Inspect(ctx, t)
				if err != nil {
					waiting = err.Error()
				} else if ns.Role == lifeboat.DBReplica && ns.ReplicationState != "streaming" {
					waiting = fmt.Sprintf("%s in %s is %q", p.component, region, ns.ReplicationState)
				}
			}
		}
		if waiting == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the tenant pools' standbys do not stream after %s (%s): see %s/*/pg-*", within, waiting, d.in.Dir)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitPoolsReplayed waits until each geo-replica pool's standby has
// replayed what its primary wrote so far.
func (d *daemon) waitPoolsReplayed(ctx context.Context, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for _, p := range poolHomes {
		other := East
		if p.home == East {
			other = West
		}
		pc, err := pgx.Connect(ctx, tenantPoolURL(d.in, p.component, p.home))
		if err != nil {
			return err
		}
		var lsn string
		err = pc.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&lsn)
		pc.Close(context.Background())
		if err != nil {
			return err
		}
		sc, err := pgx.Connect(ctx, tenantPoolURL(d.in, p.component, other))
		if err != nil {
			return err
		}
		for {
			var ok bool
			if err := sc.QueryRow(ctx, `SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)`, lsn).Scan(&ok); err != nil {
				sc.Close(context.Background())
				return fmt.Errorf("pool %s's standby in %s has not replayed %s: %w", p.component, other, lsn, err)
			}
			if ok {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		sc.Close(context.Background())
	}
	return nil
}
