package persist

import (
	"encoding/json"
	"path"
	"strings"
	"testing"

	"github.com/livebootp/livebootp/wire"
)

// FuzzManifestVolumes parses a manifest as the init helper does and checks
// every VOLUME it names: one that passes names a single directory entry
// under livebootp/volumes, so no manifest reaches outside it.
func FuzzManifestVolumes(f *testing.F) {
	f.Add([]byte(`{"name":"nginx","version":"1","volumes":["/var/www","/srv/data"]}`))
	f.Add([]byte(`{"volumes":["/../etc","//x","/a/../..","/var/%2F..","/."]}`))
	f.Add([]byte(`{"volumes":["relative","/proc/x","/run"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m wire.Manifest
		if json.Unmarshal(b, &m) != nil {
			return
		}
		for _, p := range m.Volumes {
			v := Volume{Path: p}
			if v.check() != nil {
				continue
			}
			e := Escape(v.Path)
			if e == "" || e == "." || e == ".." || strings.Contains(e, "/") || path.Join(DirVolumes, e) != DirVolumes+"/"+e {
				t.Fatalf("volume %q passed its check but escapes to %q", p, e)
			}
		}
	})
}
