package h1

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

func TestChunkedReader(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"5\r\nhello\r\n0\r\n", "hello", true},
		{"5\r\nhello\r\n6\r\n world\r\n0\r\n", "hello world", true},
		{"A\r\n0123456789\r\n0\r\n", "0123456789", true},
		{"5;name=value\r\nhello\r\n0\r\n", "hello", true},
		{"5 ; a = \"q\\\"uoted\" ;b\r\nhello\r\n0;x\r\n", "hello", true},
		{"0000000005\r\nhello\r\n0\r\n", "hello", true},

		{"5;a=\"b\r\nhello\r\n0\r\n", "", false},                       // an unterminated quote
		{"1000000000000000\r\nhello", "", false},                       // 2^60
		{"00000000005\r\nhello\r\n0\r\n", "", false},                   // 11 digits
		{"5\nhello\r\n0\r\n", "", false},                               // a bare LF
		{"5\r\nhelloX\r\n0\r\n", "hello", false},                       // data longer than its size
		{"5\r\nhel", "hel", false},                                     // cut short
		{"zz\r\nhello\r\n0\r\n", "", false},                            // not hex
		{"+5\r\nhello\r\n0\r\n", "", false},                            // a sign
		{"5;\r\nhello\r\n0\r\n", "", false},                            // an empty extension name
		{"5;a=\r\nhello\r\n0\r\n", "", false},                          // an empty extension value
		{"5;a=b c\r\nhello\r\n0\r\n", "", false},                       // junk after the value
		{"5\r\nhello\r\n0\r", "hello", false},                          // no LF after the last size
		{"\r\nhello\r\n0\r\n", "", false},                              // no size
		{"5\r\nhello\r\n" + strings.Repeat("0", 5000), "hello", false}, // a size line longer than the buffer
	} {
		cr := newChunkedReader(bufio.NewReaderSize(strings.NewReader(tc.in), 4096))
		got, err := io.ReadAll(cr)
		switch {
		case tc.ok && (err != nil || string(got) != tc.want):
			t.Errorf("%q: read %q, %v; want %q", tc.in, got, err, tc.want)
		case !tc.ok && err == nil:
			t.Errorf("%q: read %q with no error; want a refusal", tc.in, got)
		case !tc.ok && string(got) != tc.want:
			t.Errorf("%q: read %q before the error, want %q", tc.in, got, tc.want)
		}
	}
}
