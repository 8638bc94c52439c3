package flow

// EndReason is IPFIX flowEndReason (RFC 7011/IANA element 136).
type EndReason uint8

const (
	IdleTimeout     EndReason = 1 // no packet for timeouts.inactive
	ActiveTimeout   EndReason = 2 // a long flow's periodic report; it goes on
	EndOfFlow       EndReason = 3 // TCP FIN or RST seen
	ForcedEnd       EndReason = 4 // the exporter is shutting down
	LackOfResources EndReason = 5 // ended early: the flow table was full
)

func (r EndReason) String() string {
	switch r {
	case IdleTimeout:
		return "idle"
	case ActiveTimeout:
		return "active"
	case EndOfFlow:
		return "end"
	case ForcedEnd:
		return "forced"
	case LackOfResources:
		return "resources"
	}
	return "unknown"
}

// Export is one flow record as it leaves xflow: the packets and bytes
// counted since the flow's previous record (delta counts), and wall-clock
// times in milliseconds since the Unix epoch.
type Export struct {
	Key       Key
	Packets   uint64
	Bytes     uint64
	StartMs   uint64 // first packet of this record's period
	EndMs     uint64 // last packet of this record's period
	TCPFlags  uint16 // OR of the TCP flags over this record's period
	TOS       uint8  // of the flow's first packet
	EndReason EndReason
}

// Interface names an ifindex, for the exporters' interface options records.
type Interface struct {
	Index uint32
	Name  string
}

// ExportTotals are what an exporting process sent to one collector so far
// (IPFIX exportedMessageTotalCount 41, exportedFlowRecordTotalCount 42,
// exportedOctetTotalCount 40).
type ExportTotals struct {
	Messages uint64
	Records  uint64
	Octets   uint64
}

// State is a flow's exporter state, as the exporter's flow table holds it and
// as it is persisted across daemon restarts:
// the counts since its last record (Period) and the flow as a whole.
type State struct {
	Period     Value // packets, bytes, first/last ns, TCP flags since the last record
	StartNs    uint64
	LastSeen   uint64
	TotPackets uint64
	TotBytes   uint64
	TotFlags   uint32
	TOS        uint8
	FinRst     uint8
	Pad        uint16
}

// Total is the flow as a whole as a Value: its cumulative counts from its
// first packet to its latest.
func (s *State) Total() Value {
	return Value{Packets: s.TotPackets, Bytes: s.TotBytes, FirstNs: s.StartNs, LastNs: s.LastSeen,
		TCPFlags: s.TotFlags, TOS: s.TOS, FinRst: s.FinRst}
}
