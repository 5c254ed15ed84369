package sampleapp

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
)

// upload reads the whole body and answers "<length> <sha256 hex>\n", so the
// client can check that every byte arrived unchanged through the gateway.
func (a *app) upload(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, fmt.Sprintf("read body: %v", err), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "%d %x\n", n, h.Sum(nil))
}
