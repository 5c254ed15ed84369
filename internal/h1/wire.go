package h1

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
)

// writeStatusLine writes "HTTP/1.x code text\r\n"; scratch is a buffer to
// format the code in.
func writeStatusLine(bw *bufio.Writer, is11 bool, code int, scratch []byte) {
	if is11 {
		bw.WriteString("HTTP/1.1 ")
	} else {
		bw.WriteString("HTTP/1.0 ")
	}
	bw.Write(strconv.AppendInt(scratch, int64(code), 10))
	bw.WriteByte(' ')
	if text := http.StatusText(code); text != "" {
		bw.WriteString(text)
	} else {
		bw.WriteString("status code ")
		bw.Write(strconv.AppendInt(scratch, int64(code), 10))
	}
	bw.WriteString("\r\n")
}

var newlineToSpace = strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ")

// writeField writes one header line. A CR or LF in the value would end the
// line early and let a value smuggle in headers of its own, so it becomes
// a space, as net/http does.
func writeField(bw *bufio.Writer, k, v string) {
	if strings.IndexByte(v, '\n') >= 0 || strings.IndexByte(v, '\r') >= 0 {
		v = newlineToSpace.Replace(v)
	}
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(trimOWS(v))
	bw.WriteString("\r\n")
}
