#!/bin/sh
# Installs what xflow's demo, tests and benchmark use, if missing. Always:
# iproute2 and util-linux. Modes (any of them):
#   interop  the interop suite's peers: nfdump and tshark (Debian), goflow2
#            (from the Go module proxy)
#   bench    the agents `xflow-bench` compares with: softflowd and pmacct
set -e
need=""
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v nsenter >/dev/null 2>&1 || need="$need util-linux"
interop=""
for mode in "$@"; do
	case "$mode" in
	interop)
		interop=1
		command -v nfcapd >/dev/null 2>&1 || need="$need nfdump"
		command -v tshark >/dev/null 2>&1 || need="$need tshark"
		;;
	bench)
		command -v softflowd >/dev/null 2>&1 || need="$need softflowd"
		command -v pmacctd >/dev/null 2>&1 || need="$need pmacct"
		;;
	*)
		echo "deps.sh: unknown mode $mode (want interop, bench)" >&2
		exit 2
		;;
	esac
done
if [ -n "$need" ]; then
	echo "installing:$need"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi
if [ -n "$interop" ]; then
	gobin="$(go env GOPATH)/bin"
	if ! command -v goflow2 >/dev/null 2>&1 && [ ! -x "$gobin/goflow2" ]; then
		echo "installing: goflow2 v2.2.6"
		go install github.com/netsampler/goflow2/v2/cmd/goflow2@v2.2.6
	fi
fi
