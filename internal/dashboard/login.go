package dashboard

import (
	"errors"
	"net/http"
)

// maxForm bounds a login or logout form: a token, a name and a CSRF token
// fit many times over; a larger body gets 413 without more being read.
const maxForm = 4 << 10

// loginData is what the login page shows.
type loginData struct {
	Error string
}

// loginForm shows the login page, or the dashboard to whom is logged in.
func (d *Dashboard) loginForm(w http.ResponseWriter, r *http.Request) {
	if _, err := d.auth.identify(r); err == nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	d.render(w, http.StatusOK, "login.html", loginData{})
}

// login starts a session for the admin token in the form, and sets its
// cookie. A form posted from another origin is refused, so that no other
// site can log a browser into a session of its choosing; a client that got
// the token wrong too often waits (429, Retry-After; see loginLimiter).
func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	if err := d.auth.cop.Check(r); err != nil {
		d.render(w, http.StatusForbidden, "login.html", loginData{Error: "Refused: the login form was posted from another origin."})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			d.render(w, http.StatusRequestEntityTooLarge, "login.html", loginData{Error: "The login form is too large."})
			return
		}
		d.render(w, http.StatusBadRequest, "login.html", loginData{Error: "The login form could not be read."})
		return
	}
	c, err := d.auth.login(r, r.PostForm.Get("token"), r.PostForm.Get("name"))
	if limited, ok := errors.AsType[*rateLimitedError](err); ok {
		setRetryAfter(w, limited)
		d.render(w, http.StatusTooManyRequests, "login.html", loginData{Error: "Too many wrong tokens from your address: try again in " + retryAfter(limited.Wait).String() + "."})
		return
	}
	if err != nil {
		d.opts.Logger.Warn("dashboard login refused", "remote", r.RemoteAddr, "error", err)
		d.render(w, http.StatusUnauthorized, "login.html", loginData{Error: "That is not the admin token. It is in the file named by admin.token_file."})
		return
	}
	http.SetCookie(w, c)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// logout ends the session (its form carries the CSRF token: a logout is a
// change too) and deletes the cookie.
func (d *Dashboard) logout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	s, err := d.auth.identify(r)
	if err == nil && s != nil {
		if err := d.auth.checkCSRF(r, s, r.PostFormValue("csrf")); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
	}
	http.SetCookie(w, d.auth.logout(r, s))
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
