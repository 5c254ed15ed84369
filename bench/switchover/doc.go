// Package switchover is the switchover benchmark (item 7 of issue 12): ten
// switchovers under write load for each kind of replica — Postgres
// physical, Postgres logical, MariaDB GTID — through dbproxy's real
// endpoint, and beside them the naive way (stop the app, promote, repoint,
// start it again). It needs the servers internal/testdb starts, so it is a
// Go benchmark rather than a command:
//
//	go test ./bench/switchover -run '^$' -bench . -benchtime 1x -v [-args -n 10]
//
// Printed per kind and way: write pause p50/p99/max (the longest gap
// between two acknowledged writes), failed writes, lost writes (acknowledged,
// absent on the new primary), sequence collisions (duplicate keys on the new
// primary).
package switchover
