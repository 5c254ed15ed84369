package dbproxy

import (
	"bytes"
	"testing"
)

// FuzzFrames feeds arbitrary bytes to both message framers and the
// parsers behind them. The framers must be transparent — what they forward
// is exactly the bytes they consumed, in order — and refuse, never panic
// on or over-allocate for, what is not a message.
func FuzzFrames(f *testing.F) {
	f.Add([]byte("Q\x00\x00\x00\x0dSELECT 1\x00S\x00\x00\x00\x04"))
	f.Add([]byte("P\x00\x00\x00\x10s1\x00SELECT 1\x00\x00\x00C\x00\x00\x00\x08Ss1\x00"))
	f.Add([]byte("Q\x00\x00\x00\x15DEALLOCATE \"a\"\"b\"\x00"))
	f.Add(myPacketBytes(0, append([]byte{myCmdQuery}, "USE `x`"...)))
	f.Add(myPacketBytes(0, []byte{0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00}))
	f.Add([]byte("\x0a5.5.5-10.11\x00\x01\x00\x00\x00abcdefgh\x00\xff\xf7\x2d\x02\x00\xff\x81\x15\x00\x00\x00\x00\x00\x00\x1d\x00\x00\x00ijklmnopqrst\x00mysql_native_password\x00"))
	f.Add(myPacketBytes(0, []byte{0xff, 0xff, 0xff}))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, frontend := range []bool{true, false} {
			r := newPGReader(bytes.NewReader(data))
			var out bytes.Buffer
			for {
				m, err := r.next(frontend)
				if err != nil {
					break
				}
				if m.body != nil && len(m.body) != m.size {
					t.Fatalf("body of %d bytes for size %d", len(m.body), m.size)
				}
				if m.typ == 'Q' && m.body != nil {
					q, _, _ := cstring(m.body)
					deallocation(q)
				}
				if err := r.forward(&out, m); err != nil {
					break
				}
			}
			if !bytes.HasPrefix(data, out.Bytes()) {
				t.Fatalf("pg framer forwarded bytes it did not read")
			}
		}
		r := newMyReader(bytes.NewReader(data))
		var out bytes.Buffer
		for {
			p, err := r.next(0)
			if err != nil {
				break
			}
			if !p.partial && len(p.payload) != p.size {
				t.Fatalf("payload of %d bytes for size %d", len(p.payload), p.size)
			}
			okStatus(p.payload)
			eofStatus(p.payload)
			noteUse(p.payload)
			if err := r.forward(&out, p); err != nil {
				break
			}
		}
		if !bytes.HasPrefix(data, out.Bytes()) {
			t.Fatalf("mysql framer forwarded bytes it did not read")
		}
		if h, err := parseHandshake(bytes.Clone(data)); err == nil {
			h.restrict()
		}
		parseLogin(data)
		lenenc(data)
	})
}
