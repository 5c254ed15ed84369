package main

import "testing"

func TestSampleappWithoutAnAddressIsAUsageError(t *testing.T) {
	t.Setenv("PORT", "")
	if code := run([]string{"sampleapp"}); code != exitUsage {
		t.Fatalf("exit code %d, want %d", code, exitUsage)
	}
}
