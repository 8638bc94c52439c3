#!/bin/sh
# Installs what xflow's tests and demo use, if missing: Debian packages
# (iproute2, util-linux; nfdump and tshark, the interop suite's peers) and
# goflow2 (from the Go module proxy).
set -e
need=""
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v nsenter >/dev/null 2>&1 || need="$need util-linux"
if [ "${1:-}" = interop ]; then
	command -v nfcapd >/dev/null 2>&1 || need="$need nfdump"
	command -v tshark >/dev/null 2>&1 || need="$need tshark"
fi
if [ -n "$need" ]; then
	echo "installing:$need"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi
if [ "${1:-}" = interop ]; then
	gobin="$(go env GOPATH)/bin"
	if ! command -v goflow2 >/dev/null 2>&1 && [ ! -x "$gobin/goflow2" ]; then
		echo "installing: goflow2 v2.2.6"
		go install github.com/netsampler/goflow2/v2/cmd/goflow2@v2.2.6
	fi
fi
