// Package backup takes a backup of every tenant of a geo-restore tier at
// its tier's backup-interval (pg_dump -Fc of its database or schema) and
// ships it to the other region's backup directory, so a lost region's
// tenants can be restored there (seed 004: geo-restore; seed 001: the
// interval bounds the RPO).
//
// A Store is one region's backup directory:
//
//	<dir>/<tenant>/<UTC time>.dump         the dump, written atomically
//	<dir>/<tenant>/<UTC time>.dump.sha256  its checksum
//	<dir>/<tenant>/latest                  JSON pointer to the newest, written last
//
// so the latest backup of a tenant is found with one small read, never by
// listing, and a backup is visible only once it is complete.
package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	lifeboat "github.com/lifeboat-dr/lifeboat"
	"github.com/lifeboat-dr/lifeboat/tenant"
)

// Ops of this package's errors.
const (
	OpBackup  lifeboat.Op = "tenant.backup"
	OpLatest  lifeboat.Op = "tenant.backup.latest"
	OpVerify  lifeboat.Op = "tenant.backup.verify"
	OpPrune   lifeboat.Op = "tenant.backup.prune"
	latestRef             = "latest"
	dumpExt               = ".dump"
	sumExt                = ".sha256"
	// timeLayout sorts as text in time order and is a valid file name.
	timeLayout = "20060102T150405.000000000Z"
)

var (
	// ErrNoBackup: the tenant has no backup in this directory.
	ErrNoBackup = errors.New("no backup of the tenant")
	// ErrCorrupt: a backup's content does not match its checksum.
	ErrCorrupt = errors.New("backup does not match its checksum")
)

// Backup is one backup of one tenant.
type Backup struct {
	Tenant string    `json:"tenant"`
	Path   string    `json:"path"`
	Taken  time.Time `json:"taken"`
	Size   int64     `json:"size"`
	// Checksum is "sha256:<hex>" of the file.
	Checksum string `json:"checksum"`
}

// Store is a backup directory (in production, a path on the DR side).
type Store struct {
	Dir string
}

// NewStore returns the store at dir.
func NewStore(dir string) *Store { return &Store{Dir: dir} }

func (s *Store) tenantDir(name string) (string, error) {
	if err := tenant.ValidName(name); err != nil {
		return "", err
	}
	return filepath.Join(s.Dir, name), nil
}

// Write stores a new backup of name taken at taken: dump writes its
// content. The dump file, then its checksum, then the latest pointer are
// each written to a temporary file, fsynced and renamed, so a crash leaves
// the previous latest backup in place and never a torn one.
func (s *Store) Write(ctx context.Context, name string, taken time.Time, dump func(w io.Writer) error) (Backup, error) {
	dir, err := s.tenantDir(name)
	if err != nil {
		return Backup{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Backup{}, lifeboat.Transient(OpBackup, name, fmt.Errorf("backup directory %s: %w; check the path and its permissions", dir, err))
	}
	taken = taken.UTC()
	final := filepath.Join(dir, taken.Format(timeLayout)+dumpExt)
	sum := sha256.New()
	var size int64
	err = writeAtomic(final, func(f *os.File) error {
		cw := &countWriter{w: io.MultiWriter(f, sum)}
		if err := dump(cw); err != nil {
			return err
		}
		size = cw.n
		return ctx.Err()
	})
	if err != nil {
		return Backup{}, fmt.Errorf("backup of tenant %s into %s: %w", name, dir, err)
	}
	b := Backup{Tenant: name, Path: final, Taken: taken, Size: size, Checksum: checksum(sum)}
	meta, _ := json.MarshalIndent(b, "", "  ")
	if err := writeAtomic(final+sumExt, func(f *os.File) error { _, err := f.Write(append(meta, '\n')); return err }); err != nil {
		return Backup{}, lifeboat.Transient(OpBackup, name, fmt.Errorf("checksum of %s: %w", final, err))
	}
	if err := writeAtomic(filepath.Join(dir, latestRef), func(f *os.File) error { _, err := f.Write(append(meta, '\n')); return err }); err != nil {
		return Backup{}, lifeboat.Transient(OpBackup, name, fmt.Errorf("latest pointer of tenant %s in %s: %w", name, dir, err))
	}
	return b, nil
}

func checksum(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeAtomic writes path through a temporary file in the same directory:
// write, fsync, rename, fsync the directory (so the rename survives a
// crash). On failure the temporary file is removed.
func writeAtomic(path string, write func(f *os.File) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = write(f); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Latest returns the newest complete backup of name, as its latest
// pointer says (ErrNoBackup, permanent, if there is none).
func (s *Store) Latest(name string) (Backup, error) {
	dir, err := s.tenantDir(name)
	if err != nil {
		return Backup{}, err
	}
	data, err := os.ReadFile(filepath.Join(dir, latestRef))
	if errors.Is(err, os.ErrNotExist) {
		return Backup{}, lifeboat.Permanent(OpLatest, name, fmt.Errorf("%w %s in %s (no %s pointer): it was never backed up or shipped here; check the tenant backups readiness check", ErrNoBackup, name, s.Dir, latestRef))
	}
	if err != nil {
		return Backup{}, lifeboat.Transient(OpLatest, name, fmt.Errorf("reading the latest backup pointer of %s: %w", name, err))
	}
	var b Backup
	if err := json.Unmarshal(data, &b); err != nil || b.Path == "" {
		return Backup{}, lifeboat.Permanent(OpLatest, name, fmt.Errorf("the latest pointer %s is unreadable (%v); point it at an older backup of %s (copy its .sha256 file over it)", filepath.Join(dir, latestRef), err, name))
	}
	// The pointer names its file in this directory: the directory may have
	// been copied or mounted elsewhere since it was written.
	b.Path = filepath.Join(dir, filepath.Base(b.Path))
	return b, nil
}

// Verify checks that b's file is there, of its size, and matches its
// checksum. A mismatch is ErrCorrupt (permanent).
func Verify(b Backup) error {
	f, err := os.Open(b.Path)
	if err != nil {
		return lifeboat.Permanent(OpVerify, b.Tenant, fmt.Errorf("backup %s of tenant %s: %w", b.Path, b.Tenant, err))
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return lifeboat.Transient(OpVerify, b.Tenant, fmt.Errorf("reading backup %s: %w", b.Path, err))
	}
	if got := checksum(h); got != b.Checksum || n != b.Size {
		return lifeboat.Permanent(OpVerify, b.Tenant, fmt.Errorf("%w: %s of tenant %s has %d bytes and %s, its record says %d bytes and %s; it was damaged after it was written: restore an older backup of the tenant (see %s) or take a new one",
			ErrCorrupt, b.Path, b.Tenant, n, got, b.Size, b.Checksum, filepath.Dir(b.Path)))
	}
	return nil
}

// List returns name's complete backups (those with a checksum), oldest
// first.
func (s *Store) List(name string) ([]Backup, error) {
	dir, err := s.tenantDir(name)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, lifeboat.Transient(OpLatest, name, err)
	}
	var out []Backup
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), dumpExt+sumExt) || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		var b Backup
		if json.Unmarshal(data, &b) != nil {
			continue
		}
		b.Path = filepath.Join(dir, strings.TrimSuffix(e.Name(), sumExt))
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Backup) int { return a.Taken.Compare(b.Taken) })
	return out, nil
}

// Prune keeps name's keep newest backups and removes the older ones; the
// one the latest pointer names is never removed. Left-over temporary files
// of interrupted writes are removed too.
func (s *Store) Prune(name string, keep int) (removed int, err error) {
	if keep < 1 {
		keep = 1
	}
	bs, err := s.List(name)
	if err != nil {
		return 0, err
	}
	latest, lerr := s.Latest(name)
	var errs []error
	for k, b := range bs {
		if k >= len(bs)-keep || (lerr == nil && filepath.Base(b.Path) == filepath.Base(latest.Path)) {
			continue
		}
		for _, p := range []string{b.Path + sumExt, b.Path} { // checksum first: a dump without one is not listed
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		removed++
	}
	dir, _ := s.tenantDir(name)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		// Temporary files older than an hour are from writes that died.
		if info, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), ".tmp-") && time.Since(info.ModTime()) > time.Hour {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	if len(errs) > 0 {
		return removed, lifeboat.Transient(OpPrune, name, fmt.Errorf("removing old backups of %s: %w", name, errors.Join(errs...)))
	}
	return removed, nil
}
