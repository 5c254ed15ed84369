package switchover

import (
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	for _, raw := range []string{
		"postgres://app:s3cret@db:5432/app",
		"postgres://app@db:5432/app?password=s3cret&sslmode=require",
		"postgres://app@db/app?sslpassword=s3cret",
		"mysql://root:s3cret@db:3306/app",
	} {
		got := RedactURL(raw)
		if strings.Contains(got, "s3cret") {
			t.Errorf("RedactURL(%q) = %q: the secret is still there", raw, got)
		}
		if !strings.Contains(got, "db") {
			t.Errorf("RedactURL(%q) = %q: the host is gone", raw, got)
		}
	}
	if got := RedactURL("%zz"); strings.Contains(got, "%zz") {
		t.Errorf("an unparsable URL is echoed: %q", got)
	}
}
