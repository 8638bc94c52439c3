// Package tsharktest runs Wireshark's NetFlow/IPFIX dissector (tshark) over
// messages that a test encoded, for the encoders' tests.
package tsharktest

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/xflow-net/xflow/internal/testenv"
)

// Path is where Debian installs tshark.
const Path = "/usr/bin/tshark"

// Require skips a test when tshark is missing, except in CI (CI set),
// where it fails.
func Require(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(Path); err != nil {
		testenv.Unavailable(t, fmt.Sprintf("tshark not installed: %v", err))
	}
}

// WritePcap writes pkts as UDP datagrams from 192.0.2.1:40000 to
// 192.0.2.2:2055 in Ethernet frames, in a pcap file; packet i is stamped
// firstSec+i.
func WritePcap(t *testing.T, path string, pkts [][]byte, firstSec uint32) {
	t.Helper()
	le, be := binary.LittleEndian, binary.BigEndian
	var f []byte
	f = le.AppendUint32(f, 0xa1b2c3d4) // magic: microsecond timestamps
	f = le.AppendUint16(f, 2)          // version 2.4
	f = le.AppendUint16(f, 4)
	f = le.AppendUint32(f, 0)      // time zone
	f = le.AppendUint32(f, 0)      // accuracy
	f = le.AppendUint32(f, 262144) // snap length
	f = le.AppendUint32(f, 1)      // link type: Ethernet
	for i, p := range pkts {
		fr := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00} // dst, src MAC, IPv4
		ip := []byte{
			0x45, 0, 0, 0, // version, IHL, TOS, total length
			0, 0, 0x40, 0, // ID, DF
			64, 17, 0, 0, // TTL, UDP, checksum
			192, 0, 2, 1, 192, 0, 2, 2,
		}
		be.PutUint16(ip[2:], uint16(20+8+len(p)))
		var sum uint32
		for j := 0; j < 20; j += 2 {
			sum += uint32(be.Uint16(ip[j:]))
		}
		sum = sum&0xffff + sum>>16
		sum = sum&0xffff + sum>>16
		be.PutUint16(ip[10:], ^uint16(sum))
		fr = append(fr, ip...)
		fr = be.AppendUint16(fr, 40000)
		fr = be.AppendUint16(fr, 2055)
		fr = be.AppendUint16(fr, uint16(8+len(p)))
		fr = be.AppendUint16(fr, 0) // no UDP checksum (IPv4)
		fr = append(fr, p...)
		f = le.AppendUint32(f, firstSec+uint32(i))
		f = le.AppendUint32(f, 0)
		f = le.AppendUint32(f, uint32(len(fr)))
		f = le.AppendUint32(f, uint32(len(fr)))
		f = append(f, fr...)
	}
	if err := os.WriteFile(path, f, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Run runs tshark on a pcap file, decoding UDP port 2055 as NetFlow.
func Run(t *testing.T, path string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(Path, append([]string{"-r", path, "-d", "udp.port==2055,cflow"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %v: %v\n%s", args, err, stderr.Bytes())
	}
	return out
}

// KV is a member of a JSON object; tshark's JSON may repeat keys, so
// objects are read in order into slices of them.
type KV struct {
	K string
	V any // string, []KV or []any
}

// ReadJSON reads a JSON value keeping objects' members in order.
func ReadJSON(d *json.Decoder) (any, error) {
	tok, err := d.Token()
	if err != nil {
		return nil, err
	}
	switch tok := tok.(type) {
	case json.Delim:
		if tok == '{' {
			var obj []KV
			for d.More() {
				k, err := d.Token()
				if err != nil {
					return nil, err
				}
				v, err := ReadJSON(d)
				if err != nil {
					return nil, err
				}
				obj = append(obj, KV{k.(string), v})
			}
			_, err := d.Token()
			return obj, err
		}
		var arr []any
		for d.More() {
			v, err := ReadJSON(d)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		_, err := d.Token()
		return arr, err
	case string:
		return tok, nil
	default:
		return fmt.Sprint(tok), nil
	}
}

// Member is the value of obj's member k; it must be there once.
func Member(t *testing.T, obj []KV, k string) any {
	t.Helper()
	var v any
	n := 0
	for _, m := range obj {
		if m.K == k {
			v = m.V
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d members %q in %v", n, k, obj)
	}
	return v
}

// Leaves flattens obj's string members, nested objects included, into a
// map. A key seen before fails the test, or with suffix set gets one:
// "#2", "#3", ...
func Leaves(t *testing.T, obj []KV, into map[string]string, suffix bool) map[string]string {
	t.Helper()
	if into == nil {
		into = map[string]string{}
	}
	for _, m := range obj {
		switch v := m.V.(type) {
		case string:
			k := m.K
			for i := 2; ; i++ {
				if _, dup := into[k]; !dup {
					break
				}
				if !suffix {
					t.Fatalf("%s twice", m.K)
				}
				k = fmt.Sprintf("%s#%d", m.K, i)
			}
			into[k] = v
		case []KV:
			Leaves(t, v, into, suffix)
		}
	}
	return into
}
