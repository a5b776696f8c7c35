package backup

import (
	"path/filepath"

	"github.com/lifeboat-dr/lifeboat"
)

// Dirs are the directories each region receives the other region's tenant
// backups in (spec tenants.backups), resolved against the spec file's
// directory; a region not named gets .lifeboat/tenant-backups/<region>
// next to the spec.
func Dirs(spec *lifeboat.Spec) map[string]string {
	base := "."
	if spec.File != "" {
		base = filepath.Dir(spec.File)
	}
	out := map[string]string{}
	for _, region := range []string{spec.Regions.Primary.Name, spec.Regions.Secondary.Name} {
		dir := ""
		if spec.Tenants != nil {
			dir = spec.Tenants.Backups[region]
		}
		if dir == "" {
			dir = filepath.Join(".lifeboat", "tenant-backups", region)
		}
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(base, dir)
		}
		out[region] = dir
	}
	return out
}
