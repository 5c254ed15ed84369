package dashboard

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"time"
)

// asset is one embedded static file with the validator browsers revalidate
// it by, so that after an upgrade they fetch the new script at once.
type asset struct {
	data []byte
	etag string
}

// staticAssets are the files under assets/static, by name.
var staticAssets = func() map[string]asset {
	out := map[string]asset{}
	entries, err := fs.ReadDir(assets, "assets/static")
	if err != nil {
		panic(err) // embedded at build time: cannot fail at run time
	}
	for _, e := range entries {
		data, err := fs.ReadFile(assets, "assets/static/"+e.Name())
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(data)
		out[e.Name()] = asset{data: data, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return out
}()

// serveAsset serves /static/{name}. Assets hold nothing secret (the login
// page needs its stylesheet), so they need no session.
func serveAsset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	a, ok := staticAssets[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("ETag", a.etag)
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, path.Base(name), time.Time{}, bytes.NewReader(a.data))
}
