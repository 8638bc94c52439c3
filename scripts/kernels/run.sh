#!/bin/bash
# Runs xflow's kernel-dependent tests inside an older kernel under QEMU:
# Debian's newest linux-image-6.1.0-*-amd64 (the LTS kernel of Debian 12,
# without TCX), booted with an initramfs that carries busybox, the modules
# the tests need and static `go test -c` binaries. KVM when /dev/kvm
# exists, else TCG. The guest's verdict line decides the exit status.
#
#   scripts/kernels/run.sh            the suite (see TESTS below)
#   KERNEL_SERIES=6.1.0 ...           which Debian kernel series to boot
#   XFLOW_KERNEL_CACHE=DIR ...        where kernels are kept (default /var/tmp/xflow-kernels)
#   GUEST_TIMEOUT=SECONDS ...         kill the guest after this long (default 900)
#
# Needs root (apt-get) and Debian's package mirror.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=$PATH:/usr/local/go/bin:$HOME/go/bin

series=${KERNEL_SERIES:-6.1.0}
cache=${XFLOW_KERNEL_CACHE:-/var/tmp/xflow-kernels}
timeout_s=${GUEST_TIMEOUT:-900}
start=$(date +%s)

# The tests that depend on the kernel, per package: go test -run patterns.
# Not here: the interop suite (nfcapd, tshark, goflow2), benchmarks,
# TestCapabilities (util-linux setpriv), and pure-Go tests (they do not
# depend on the kernel and run on the host).
declare -A TESTS=(
	[bpf]='^(TestProbe|TestLoadAllKinds|TestKindsOnVeth|TestMapFull|TestReferenceCorpus|TestRestore.*)$'
	[cmd/xflow]='^(TestRunAttachDetach|TestCrashRestart|TestRestartWithoutLoss|TestRestartHookChange|TestExportExact|TestClsactRestartMiss)$'
)

log() { echo "kernels: $*" >&2; }

# --- tools -----------------------------------------------------------------
need=""
command -v qemu-system-x86_64 >/dev/null 2>&1 || need="$need qemu-system-x86"
dpkg -s busybox-static >/dev/null 2>&1 || need="$need busybox-static" # /bin/busybox, static
command -v cpio >/dev/null 2>&1 || need="$need cpio"
PATH=$PATH:/sbin:/usr/sbin
command -v modinfo >/dev/null 2>&1 || need="$need kmod"
if [ -n "$need" ]; then
	log "installing:$need"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
# --- kernel ----------------------------------------------------------------
mkdir -p "$cache"
pkg=$(apt-cache search --names-only "^linux-image-${series//./\\.}-[0-9]+-amd64\$" | awk '{print $1}' | sort -V | tail -1)
if [ -z "$pkg" ]; then
	apt-get update -qq
	pkg=$(apt-cache search --names-only "^linux-image-${series//./\\.}-[0-9]+-amd64\$" | awk '{print $1}' | sort -V | tail -1)
fi
[ -n "$pkg" ] || { log "no linux-image-${series}-*-amd64 package found"; exit 1; }
kdir="$cache/$pkg"
if [ ! -f "$kdir/.done" ]; then
	log "downloading $pkg"
	rm -rf "$kdir" && mkdir -p "$kdir"
	(cd "$cache" && rm -f "${pkg}"_*.deb && apt-get download -q "$pkg" >/dev/null 2>&1)
	dpkg-deb -x "$cache/${pkg}"_*.deb "$kdir/root"
	rm -f "$cache/${pkg}"_*.deb
	touch "$kdir/.done"
fi
kver=${pkg#linux-image-}
vmlinuz="$kdir/root/boot/vmlinuz-$kver"
moddir="$kdir/root/lib/modules/$kver"
log "kernel $kver ($(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || apt-cache policy "$pkg" | awk '/Candidate/{print $2}'))"

# --- initramfs -------------------------------------------------------------
work=$(mktemp -d /tmp/xflow-kernels.XXXXXX)
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,run,etc,var,lib/modules,tests}
ln -s ../run "$root/var/run"
cp /bin/busybox "$root/bin/busybox"
for a in sh mount umount mkdir insmod ip poweroff nsenter sleep cat echo ls rm date timeout uname dmesg grep tee; do
	ln -s busybox "$root/bin/$a"
done

# Modules and what they depend on, dependencies first.
want_mods="veth sch_ingress cls_bpf"
order=()
add_mod() {
	local name=$1 ko dep
	for m in "${order[@]}"; do [ "$m" = "$name" ] && return; done
	ko=$(find "$moddir/kernel" -name "$name.ko*" | head -1)
	if [ -z "$ko" ]; then
		grep -q "/$name.ko" "$moddir/modules.builtin" && return
		log "module $name not found"; exit 1
	fi
	for dep in $(modinfo -F depends "$ko" | tr ',' ' '); do add_mod "$dep"; done
	order+=("$name")
	cp "$ko" "$root/lib/modules/"
}
for m in $want_mods; do add_mod "$m"; done
printf '%s\n' "${order[@]}" >"$root/lib/modules/order"
log "modules: ${order[*]}"

# Test binaries (static) and the xflow binary the CLI tests run.
log "building test binaries"
export CGO_ENABLED=0
go build -o "$root/bin/xflow" ./cmd/xflow
for pkg_dir in "${!TESTS[@]}"; do
	name=${pkg_dir//\//_}
	go test -c -o "$root/tests/$name.test" "./$pkg_dir"
	printf '%s %s %s\n' "$name" "$pkg_dir" "${TESTS[$pkg_dir]}" >>"$root/tests/list"
done
cp scripts/kernels/init "$root/init"
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet) >"$work/initramfs.cpio"
log "initramfs $(du -h "$work/initramfs.cpio" | cut -f1), prepared in $(($(date +%s) - start)) s"

# --- boot ------------------------------------------------------------------
accel=tcg
cpu=max
if [ -w /dev/kvm ]; then accel=kvm cpu=host; fi
log "booting $kver under QEMU ($accel), timeout ${timeout_s}s"
console="$work/console.log"
boot=$(date +%s)
set +e
timeout --foreground -k 10 "$timeout_s" qemu-system-x86_64 \
	-accel "$accel" -cpu "$cpu" -smp 2 -m 2G \
	-kernel "$vmlinuz" -initrd "$work/initramfs.cpio" \
	-append "console=ttyS0 panic=-1 quiet loglevel=4 net.ifnames=0" \
	-nographic -serial mon:stdio -no-reboot -nic none </dev/null | tee "$console"
qrc=${PIPESTATUS[0]}
set -e
end=$(date +%s)
log "guest ran $((end - boot)) s (qemu exit $qrc); make test-kernels took $((end - start)) s in all"
if grep -q '^XFLOW-KERNEL-TESTS: PASS' "$console"; then
	exit 0
fi
if [ "$qrc" = 124 ]; then log "the guest timed out after ${timeout_s}s"; fi
grep -q '^XFLOW-KERNEL-TESTS: FAIL' "$console" || log "no verdict from the guest"
exit 1
