package netflow5

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/xflow-net/xflow/flow"
)

// TestSampling: the header's sampling_interval is mode << 14 | N for the
// datagram's records; records sampled differently go in different
// datagrams; unsampled ones keep 0.
func TestSampling(t *testing.T) {
	k := flow.Key{Src: netip.MustParseAddr("10.0.0.1").As16(), Dst: netip.MustParseAddr("10.0.0.2").As16(), Proto: 17, IPVersion: 4}
	det10 := flow.Sampling(uint16(flow.SampleDeterministic)<<14 | 10)
	rnd100 := flow.Sampling(uint16(flow.SampleRandom)<<14 | 100)
	hash7 := flow.Sampling(uint16(flow.SampleHash)<<14 | 7)
	recs := []flow.Export{
		{Key: k, Packets: 1, Bytes: 100, Sampling: det10},
		{Key: k, Packets: 2, Bytes: 200, Sampling: det10},
		{Key: k, Packets: 3, Bytes: 300, Sampling: rnd100},
		{Key: k, Packets: 4, Bytes: 400},
		{Key: k, Packets: 5, Bytes: 500, Sampling: hash7},
	}
	e := NewEncoder(Options{})
	var got [][2]uint16 // sampling_interval, count
	err := e.Encode(time.Now(), recs, func(b []byte) error {
		got = append(got, [2]uint16{binary.BigEndian.Uint16(b[22:]), binary.BigEndian.Uint16(b[2:])})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]uint16{{1<<14 | 10, 2}, {2<<14 | 100, 1}, {0, 1}, {2<<14 | 7, 1}}
	if len(got) != len(want) {
		t.Fatalf("datagrams (sampling, count) %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("datagram %d: sampling %#04x, %d records; want %#04x, %d", i, got[i][0], got[i][1], want[i][0], want[i][1])
		}
	}
}
