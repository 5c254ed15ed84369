package h1

import (
	"net/http"
	"sync/atomic"
	"time"
)

// dateLine is a rendered "Date: ...\r\n" header line for one second.
type dateLine struct {
	sec  int64
	line []byte
}

// currentDate caches the Date header line; it is rendered again at most
// once a second, by whichever response first sees the second change.
var currentDate atomic.Pointer[dateLine]

// dateHeader returns the Date header line for now. The slice is shared and
// must not be modified.
func dateHeader() []byte {
	now := time.Now()
	sec := now.Unix()
	if d := currentDate.Load(); d != nil && d.sec == sec {
		return d.line
	}
	line := make([]byte, 0, len("Date: Mon, 02 Jan 2006 15:04:05 GMT\r\n"))
	line = append(line, "Date: "...)
	line = now.UTC().AppendFormat(line, http.TimeFormat)
	line = append(line, "\r\n"...)
	currentDate.Store(&dateLine{sec: sec, line: line})
	return line
}
