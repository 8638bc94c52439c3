package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/xflow-net/xflow/config"
	"github.com/xflow-net/xflow/internal/testenv"
)

// k8s is the part of a Kubernetes object the deployment test reads.
type k8s struct {
	Kind     string
	Metadata struct{ Name, Namespace string }
	Data     map[string]string // ConfigMap
	Spec     struct {          // DaemonSet
		Template struct {
			Spec struct {
				HostNetwork bool `yaml:"hostNetwork"`
				Containers  []struct {
					Name, Image string
					Args        []string
					Env         []struct {
						Name      string
						ValueFrom struct {
							FieldRef struct {
								FieldPath string `yaml:"fieldPath"`
							} `yaml:"fieldRef"`
						} `yaml:"valueFrom"`
					}
					Ports []struct {
						Name          string
						ContainerPort int `yaml:"containerPort"`
					}
					LivenessProbe  *probe `yaml:"livenessProbe"`
					ReadinessProbe *probe `yaml:"readinessProbe"`
					StartupProbe   *probe `yaml:"startupProbe"`
					VolumeMounts   []struct {
						Name      string
						MountPath string `yaml:"mountPath"`
					} `yaml:"volumeMounts"`
				}
				Volumes []struct {
					Name      string
					ConfigMap *struct{ Name string } `yaml:"configMap"`
					HostPath  *struct{ Path string } `yaml:"hostPath"`
				}
			}
		}
	}
}

type probe struct {
	HTTPGet *struct {
		Path string
		Port any
	} `yaml:"httpGet"`
}

// TestDeployManifests reads deploy/kubernetes/*.yaml, the Dockerfile and
// the Makefile and checks that they agree: the DaemonSet runs the image
// `make image` tags, from the Dockerfile's entry point, with the ConfigMap
// mounted where -c reads it; the ConfigMap's configuration loads (and, as
// root, passes `xflow check` where its interfaces exist) and keeps metrics
// on loopback, while --metrics-listen moves them to the pod's IP
// (downward API) on the container's metrics port, where the liveness
// (/healthz), readiness (/readyz) and startup probes ask.
func TestDeployManifests(t *testing.T) {
	root := "../.."
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	manifests, _ := filepath.Glob(filepath.Join(root, "deploy/kubernetes/*.yaml"))
	if len(manifests) == 0 {
		t.Fatal("no deploy/kubernetes/*.yaml")
	}
	var objs []k8s
	for _, m := range manifests {
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(false)
		for {
			var o k8s
			if err := dec.Decode(&o); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", m, err)
			}
			if o.Kind != "" {
				objs = append(objs, o)
			}
		}
	}
	find := func(kind string) *k8s {
		for i := range objs {
			if objs[i].Kind == kind {
				return &objs[i]
			}
		}
		t.Fatalf("no %s in deploy/kubernetes", kind)
		return nil
	}
	ds, cm := find("DaemonSet"), find("ConfigMap")
	pod := ds.Spec.Template.Spec
	if len(pod.Containers) != 1 || !pod.HostNetwork {
		t.Fatalf("DaemonSet: %d containers, hostNetwork %v; want 1 on the host network", len(pod.Containers), pod.HostNetwork)
	}
	c := pod.Containers[0]

	// The image: the one `make image` tags, no placeholder registry.
	m := regexp.MustCompile(`(?m)^IMAGE \?= (\S+)$`).FindStringSubmatch(read("Makefile"))
	if m == nil {
		t.Fatal("Makefile: no IMAGE ?= default")
	}
	if c.Image != m[1] {
		t.Errorf("DaemonSet image %q, make image tags %q", c.Image, m[1])
	}
	for _, bad := range []string{"example.", "REGISTRY", ":latest"} {
		if strings.Contains(c.Image, bad) {
			t.Errorf("DaemonSet image %q: placeholder %q", c.Image, bad)
		}
	}

	// The Dockerfile's entry point takes the DaemonSet's args.
	docker := read("Dockerfile")
	if !strings.Contains(docker, `ENTRYPOINT ["/usr/local/bin/xflow"]`) || !strings.Contains(docker, "COPY --from=build /out/xflow /usr/local/bin/xflow") {
		t.Errorf("Dockerfile: the entry point is not /usr/local/bin/xflow")
	}
	if !strings.Contains(docker, "COPY xflow.yaml "+defaultConfig) {
		t.Errorf("Dockerfile: the example configuration is not at %s", defaultConfig)
	}

	// args: run -c FILE --metrics-listen $(POD_IP):PORT.
	if len(c.Args) != 5 || c.Args[0] != "run" || c.Args[1] != "-c" || c.Args[3] != "--metrics-listen" {
		t.Fatalf("DaemonSet args %q, want run -c FILE --metrics-listen $(POD_IP):PORT", c.Args)
	}
	cfgPath := c.Args[2]
	host, port, err := net.SplitHostPort(c.Args[4])
	if err != nil || host != "$(POD_IP)" {
		t.Errorf("--metrics-listen %q, want $(POD_IP):PORT", c.Args[4])
	}
	podIP := false
	for _, e := range c.Env {
		podIP = podIP || (e.Name == "POD_IP" && e.ValueFrom.FieldRef.FieldPath == "status.podIP")
	}
	if !podIP {
		t.Errorf("no POD_IP from status.podIP in the container's env")
	}
	portName := ""
	for _, p := range c.Ports {
		if fmt.Sprint(p.ContainerPort) == port {
			portName = p.Name
		}
	}
	if portName == "" {
		t.Errorf("no container port %s (the metrics listener's)", port)
	}
	for _, pr := range []struct {
		name string
		p    *probe
		path string
	}{
		{"livenessProbe", c.LivenessProbe, "/healthz"},
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
		{"startupProbe", c.StartupProbe, "/healthz"},
	} {
		if pr.p == nil || pr.p.HTTPGet == nil {
			t.Errorf("no %s (httpGet)", pr.name)
			continue
		}
		if p := fmt.Sprint(pr.p.HTTPGet.Port); pr.p.HTTPGet.Path != pr.path || (p != port && p != portName) {
			t.Errorf("%s: GET %s on port %s, want %s on %s (%s)", pr.name, pr.p.HTTPGet.Path, p, pr.path, port, portName)
		}
	}

	// The ConfigMap is mounted where -c reads it.
	mounted := ""
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == path.Dir(cfgPath) {
			mounted = vm.Name
		}
	}
	fromCM := false
	for _, v := range pod.Volumes {
		fromCM = fromCM || (v.Name == mounted && v.ConfigMap != nil && v.ConfigMap.Name == cm.Metadata.Name)
	}
	body, ok := cm.Data[path.Base(cfgPath)]
	if !fromCM || !ok {
		t.Fatalf("-c %s: not ConfigMap %s's key %s mounted at %s", cfgPath, cm.Metadata.Name, path.Base(cfgPath), path.Dir(cfgPath))
	}

	// The configuration loads, keeps metrics off the node's addresses
	// unless the flag moves them, and pins inside the mounted bpffs
	// directory.
	file := filepath.Join(t.TempDir(), "xflow.yaml")
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("the ConfigMap's xflow.yaml: %v", err)
	}
	if h, _, err := net.SplitHostPort(cfg.Metrics.Listen); cfg.Metrics.Listen != "" && (err != nil || !net.ParseIP(h).IsLoopback()) {
		t.Errorf("ConfigMap metrics.listen %q: want loopback (or off); the flag sets the pod's IP", cfg.Metrics.Listen)
	}
	pinned := false
	for _, vm := range c.VolumeMounts {
		pinned = pinned || cfg.PinPath == vm.MountPath || strings.HasPrefix(cfg.PinPath, vm.MountPath+"/")
	}
	if !pinned {
		t.Errorf("pin_path %s is not in a mounted volume", cfg.PinPath)
	}

	t.Run("xflow check", func(t *testing.T) {
		testenv.RequireRoot(t)
		// A namespace with the ConfigMap's interfaces, as on a node.
		ns := fmt.Sprintf("xop-deploy-%d", os.Getpid())
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v %s", err, out)
		}
		defer exec.Command("ip", "netns", "del", ns).Run()
		for _, ifc := range cfg.Interfaces {
			if out, err := exec.Command("ip", "-n", ns, "link", "add", ifc.Name, "type", "veth", "peer", "name", ifc.Name+"p").CombinedOutput(); err != nil {
				t.Fatalf("ip link add %s: %v %s", ifc.Name, err, out)
			}
		}
		out, err := exec.Command("nsenter", "--net=/var/run/netns/"+ns, xflowBin, "check", "-c", file).CombinedOutput()
		if err != nil || !strings.Contains(string(out), ": ok (") {
			t.Errorf("xflow check -c (the ConfigMap's xflow.yaml): %v\n%s", err, out)
		}
		t.Logf("%s", out)
	})
}

// TestDockerBuildInfo builds xflow with the -ldflags of the Dockerfile's
// go build, its variables set from the build arguments `make image`
// passes: the binary reports the checkout's revision and the build time.
// (The whole RUN line, with CGO_ENABLED=0 and -trimpath, rebuilds the
// standard library: minutes on a shared machine. It passed once by hand.)
func TestDockerBuildInfo(t *testing.T) {
	root, _ := filepath.Abs("../..")
	rev, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		testenv.Unavailable(t, fmt.Sprintf("not a git checkout or no git: %v", err))
	}
	docker, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	// The RUN instruction with go build, continuation lines joined.
	var run string
	for _, ins := range regexp.MustCompile(`(?m)^RUN `).Split(strings.ReplaceAll(string(docker), "\\\n", " "), -1) {
		if strings.Contains(ins, "go build") {
			run = strings.SplitN(ins, "\n", 2)[0]
		}
	}
	m := regexp.MustCompile(`BI=(\S+) &&.* -ldflags "([^"]+)"`).FindStringSubmatch(run)
	if m == nil {
		t.Fatalf("Dockerfile: no BI=PACKAGE and -ldflags in %q", run)
	}
	vars := map[string]string{"BI": m[1]}
	args, err := exec.Command(filepath.Join(root, "scripts/buildinfo.sh"), "--build-args").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range strings.Fields(string(args)) {
		if k, v, ok := strings.Cut(f, "="); ok {
			vars[k] = v
		}
	}
	ldflags := os.Expand(m[2], func(k string) string {
		v, ok := vars[k]
		if !ok {
			t.Errorf("Dockerfile -ldflags: ${%s} is neither BI nor a build argument of make image", k)
		}
		return v
	})
	bin := filepath.Join(t.TempDir(), "xflow")
	if out, err := exec.Command("go", "build", "-ldflags", ldflags, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -ldflags %q: %v\n%s", ldflags, err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "revision:    "+strings.TrimSpace(string(rev))) || !strings.Contains(string(out), "build time:") {
		t.Errorf("the image's xflow version:\n%s", out)
	}
	t.Logf("-ldflags %q:\n%s", ldflags, out)
}
