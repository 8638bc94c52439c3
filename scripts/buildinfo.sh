#!/bin/sh
# Prints what records xflow's version in a build, from the git checkout
# this script is in: the go build -ldflags (default), or with --build-args
# the `docker build --build-arg`s that the Dockerfile turns into the same
# -ldflags. See internal/buildinfo. `make build` and `make image` use it.
#
# Go records the revision itself (-buildvcs), but not in a git worktree, in
# a build without .git (the image) or with GOFLAGS=-buildvcs=false; this
# works in all of those. Outside a git checkout it prints only the build
# time.
#
# The version is the tag on HEAD (vX.Y.Z), else a Go pseudo-version
# (v0.0.0-20261205130514-dc51ea9dfcc0, or vX.Y.(Z+1)-0.TIME-REV after tag
# vX.Y.Z); "+dirty" when the tree has uncommitted changes.
set -e
cd "$(dirname "$0")/.."
pkg=github.com/xflow-net/xflow/internal/buildinfo
build_time=$(date -u +%Y-%m-%dT%H:%M:%SZ)
version="" revision="" commit_time="" modified=""
if rev=$(git rev-parse HEAD 2>/dev/null); then
	revision=$rev
	commit_time=$(TZ=UTC0 git log -1 --date=format-local:%Y-%m-%dT%H:%M:%SZ --format=%cd)
	stamp=$(TZ=UTC0 git log -1 --date=format-local:%Y%m%d%H%M%S --format=%cd)
	short=$(git rev-parse --short=12 HEAD)
	if [ -n "$(git status --porcelain 2>/dev/null)" ]; then modified=true; else modified=false; fi
	if tag=$(git describe --tags --exact-match --match 'v[0-9]*' HEAD 2>/dev/null); then
		version=$tag
	elif tag=$(git describe --tags --abbrev=0 --match 'v[0-9]*.[0-9]*.[0-9]*' HEAD 2>/dev/null) &&
		echo "$tag" | grep -Eq '^v[0-9]+\.[0-9]+\.[0-9]+$'; then
		patch=${tag##*.}
		version="${tag%.*}.$((patch + 1))-0.$stamp-$short"
	else
		version="v0.0.0-$stamp-$short"
	fi
	if [ "$modified" = true ]; then version="$version+dirty"; fi
fi
case "${1:-}" in
"")
	printf -- '-X %s.version=%s -X %s.revision=%s -X %s.commitTime=%s -X %s.modified=%s -X %s.buildTime=%s\n' \
		"$pkg" "$version" "$pkg" "$revision" "$pkg" "$commit_time" "$pkg" "$modified" "$pkg" "$build_time"
	;;
--build-args)
	printf -- '--build-arg VERSION=%s --build-arg REVISION=%s --build-arg COMMIT_TIME=%s --build-arg MODIFIED=%s --build-arg BUILD_TIME=%s\n' \
		"$version" "$revision" "$commit_time" "$modified" "$build_time"
	;;
*)
	echo "usage: $0 [--build-args]" >&2
	exit 2
	;;
esac
