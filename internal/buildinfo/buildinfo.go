// Package buildinfo says which xflow this is: the module version, the
// version control revision and time it was built from, and the Go release.
//
// `go build` in a git checkout records the revision, its commit time and
// whether the tree had uncommitted changes (-buildvcs, on by default), and
// the module version derived from them (a tag, or a pseudo-version such as
// v0.0.0-20261205130514-dc51ea9abcde). A build without the repository (the
// container image: .git is not in its build context) sets them with
// -ldflags instead:
//
//	-X github.com/xflow-net/xflow/internal/buildinfo.version=v1.2.3
//	-X github.com/xflow-net/xflow/internal/buildinfo.revision=COMMIT
//	-X github.com/xflow-net/xflow/internal/buildinfo.commitTime=2026-12-05T13:05:14Z
//	-X github.com/xflow-net/xflow/internal/buildinfo.buildTime=2026-12-05T14:00:00Z
//
// A value set with -ldflags wins over the recorded one.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set with -ldflags -X (see the package comment); empty when not.
var (
	version    string
	revision   string
	commitTime string
	buildTime  string
	modified   string // "true" or "false"
)

// Info describes a build. Fields the build did not record are empty.
type Info struct {
	Version    string // module version: a tag, a pseudo-version, or "(devel)"
	Revision   string // VCS revision (git commit hash)
	CommitTime string // the revision's commit time, RFC 3339
	BuildTime  string // when the binary was built, RFC 3339 (-ldflags only: go build records none)
	Modified   bool   // the working tree had uncommitted changes
	GoVersion  string // the Go release that built it
	Platform   string // GOOS/GOARCH
}

// Get returns the running binary's build information.
func Get() Info {
	i := Info{GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		i.Version = bi.Main.Version
		i.GoVersion = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				i.Revision = s.Value
			case "vcs.time":
				i.CommitTime = s.Value
			case "vcs.modified":
				i.Modified = s.Value == "true"
			}
		}
	}
	return merge(i, version, revision, commitTime, buildTime, modified)
}

// merge lets the -ldflags values override what the build recorded.
func merge(i Info, version, revision, commitTime, buildTime, modified string) Info {
	if version != "" {
		i.Version = version
	}
	if revision != "" {
		i.Revision = revision
	}
	if commitTime != "" {
		i.CommitTime = commitTime
	}
	if buildTime != "" {
		i.BuildTime = buildTime
	}
	if modified != "" {
		i.Modified = modified == "true"
	}
	if i.Version == "" {
		i.Version = "(devel)"
	}
	return i
}

// String is what `xflow version` prints: the version on the first line,
// then one line per recorded detail.
func (i Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "xflow %s\n", i.Version)
	rev := i.Revision
	if rev == "" {
		rev = "unknown (built without version control information)"
	} else if i.Modified {
		rev += " (modified: built with uncommitted changes)"
	}
	fmt.Fprintf(&b, "  revision:    %s\n", rev)
	if i.CommitTime != "" {
		fmt.Fprintf(&b, "  commit time: %s\n", i.CommitTime)
	}
	if i.BuildTime != "" {
		fmt.Fprintf(&b, "  build time:  %s\n", i.BuildTime)
	}
	fmt.Fprintf(&b, "  go:          %s %s\n", i.GoVersion, i.Platform)
	return b.String()
}
