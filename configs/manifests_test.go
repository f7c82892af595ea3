package configs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	yamlv3 "go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

const (
	k8sDir            = "k8s"
	dashboardFile     = "grafana/clickagg-dashboard.json"
	readmeFile        = "../README.md"
	dockerfileFile    = "../Dockerfile"
	metricsGoFile     = "../checkpoint/metrics.go"
	kustomizationFile = "kustomization.yaml"
	// secretExampleFile is the example Secret, in a folder of its own so that
	// `kubectl apply -f configs/k8s/` (not recursive) never applies its
	// placeholder DSN.
	secretExampleFile = "examples/secret.example.yaml"
	configKey         = "clickagg.yaml" // the ConfigMap key holding the configuration file
	nameLabel         = "app.kubernetes.io/name"
)

// ---------------------------------------------------------------------------
// Loading the manifests.

// doc is one YAML document of a file in k8s/ or of the chart's rendering.
type doc struct {
	file  string
	index int // 0-based position in the file
	kind  string
	obj   any
	meta  *metav1.ObjectMeta
}

func (d doc) String() string { return fmt.Sprintf("%s#%d (%s)", d.file, d.index, d.kind) }

// manifests is one set of objects, decoded: everything in k8s/, or what
// helm renders from the chart.
type manifests struct {
	docs            []doc
	statefulSets    []*appsv1.StatefulSet
	configMaps      []*corev1.ConfigMap
	secrets         []*corev1.Secret // from secret.example.yaml
	services        []*corev1.Service
	pdbs            []*policyv1.PodDisruptionBudget
	serviceMonitors []*monitoringv1.ServiceMonitor
	prometheusRules []*monitoringv1.PrometheusRule
	kustomization   *kustomization
	files           []string // base names of k8s/*.yaml
	// secretKeys are the keys users are told to put in each Secret the pods
	// reference: true when shown, false when shown commented out (allowed
	// for optional references only).
	secretKeys map[string]map[string]bool
}

// add decodes the YAML documents of one file (or one rendered template)
// into m.
func (m *manifests) add(t *testing.T, file string, b []byte) {
	t.Helper()
	docs, err := splitDocuments(b)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if len(docs) == 0 {
		t.Fatalf("%s: no YAML document", file)
	}
	for i, raw := range docs {
		kind, obj, meta, err := decodeManifest(raw)
		if err != nil {
			t.Fatalf("%s document %d: %v", file, i, err)
		}
		m.docs = append(m.docs, doc{file: file, index: i, kind: kind, obj: obj, meta: meta})
		switch o := obj.(type) {
		case *appsv1.StatefulSet:
			m.statefulSets = append(m.statefulSets, o)
		case *corev1.ConfigMap:
			m.configMaps = append(m.configMaps, o)
		case *corev1.Secret:
			m.secrets = append(m.secrets, o)
		case *corev1.Service:
			m.services = append(m.services, o)
		case *policyv1.PodDisruptionBudget:
			m.pdbs = append(m.pdbs, o)
		case *monitoringv1.ServiceMonitor:
			m.serviceMonitors = append(m.serviceMonitors, o)
		case *monitoringv1.PrometheusRule:
			m.prometheusRules = append(m.prometheusRules, o)
		}
	}
}

// kustomization is the part of kustomize's Kustomization this base may use;
// decoding is strict, so anything else must be added here deliberately.
type kustomization struct {
	APIVersion   string            `json:"apiVersion"`
	Kind         string            `json:"kind"`
	Namespace    string            `json:"namespace,omitempty"`
	NamePrefix   string            `json:"namePrefix,omitempty"`
	NameSuffix   string            `json:"nameSuffix,omitempty"`
	Resources    []string          `json:"resources"`
	CommonLabels map[string]string `json:"commonLabels,omitempty"`
	Labels       []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
		IncludeTemplates bool              `json:"includeTemplates,omitempty"`
	} `json:"labels,omitempty"`
	CommonAnnotations map[string]string `json:"commonAnnotations,omitempty"`
	Images            []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

// splitDocuments splits a multi-document YAML file on `---` lines and drops
// documents that hold only comments or blanks.
func splitDocuments(b []byte) ([][]byte, error) {
	var out [][]byte
	for _, part := range docSeparator.Split(string(b), -1) {
		j, err := yaml.YAMLToJSON([]byte(part))
		if err != nil {
			return nil, err
		}
		if string(bytes.TrimSpace(j)) == "null" {
			continue
		}
		out = append(out, []byte(part))
	}
	return out, nil
}

// decodeStrict decodes one YAML document into a Kubernetes API type (or any
// struct) and fails on unknown or duplicate fields.
func decodeStrict(b []byte, into any) error {
	return yaml.UnmarshalStrict(b, into)
}

// decodeManifest decodes one document by its apiVersion and kind. Unknown
// kinds (and known kinds at other API versions) are errors.
func decodeManifest(b []byte) (kind string, obj any, meta *metav1.ObjectMeta, err error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(b, &tm); err != nil {
		return "", nil, nil, err
	}
	switch tm.APIVersion + " " + tm.Kind {
	case "apps/v1 StatefulSet":
		o := &appsv1.StatefulSet{}
		obj, meta = o, &o.ObjectMeta
	case "v1 ConfigMap":
		o := &corev1.ConfigMap{}
		obj, meta = o, &o.ObjectMeta
	case "v1 Secret":
		o := &corev1.Secret{}
		obj, meta = o, &o.ObjectMeta
	case "v1 Service":
		o := &corev1.Service{}
		obj, meta = o, &o.ObjectMeta
	case "policy/v1 PodDisruptionBudget":
		o := &policyv1.PodDisruptionBudget{}
		obj, meta = o, &o.ObjectMeta
	case "monitoring.coreos.com/v1 ServiceMonitor":
		o := &monitoringv1.ServiceMonitor{}
		obj, meta = o, &o.ObjectMeta
	case "monitoring.coreos.com/v1 PrometheusRule":
		o := &monitoringv1.PrometheusRule{}
		obj, meta = o, &o.ObjectMeta
	default:
		return "", nil, nil, fmt.Errorf("unexpected apiVersion %q kind %q (the test knows apps/v1 StatefulSet, v1 ConfigMap/Secret/Service, policy/v1 PodDisruptionBudget, monitoring.coreos.com/v1 ServiceMonitor/PrometheusRule)", tm.APIVersion, tm.Kind)
	}
	if err := decodeStrict(b, obj); err != nil {
		return "", nil, nil, err
	}
	return tm.Kind, obj, meta, nil
}

func loadManifests(t *testing.T) *manifests {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no manifests in %s/", k8sDir)
	}
	if more, _ := filepath.Glob(filepath.Join(k8sDir, "*.yml")); len(more) > 0 {
		t.Fatalf("%v: use the .yaml extension (the kustomization and this test only see *.yaml)", more)
	}
	examples, err := filepath.Glob(filepath.Join(k8sDir, "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := &manifests{}
	for _, p := range append(paths, examples...) {
		base, err := filepath.Rel(k8sDir, p)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Dir(base) == "." {
			m.files = append(m.files, base) // NB: what kubectl apply -f k8s/ reads
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if base == kustomizationFile {
			var k kustomization
			if err := decodeStrict(b, &k); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			m.kustomization = &k
			continue
		}
		m.add(t, base, b)
	}
	if m.kustomization == nil {
		t.Fatalf("no %s in %s/", kustomizationFile, k8sDir)
	}
	for _, d := range m.docs {
		if d.kind == "Secret" && d.file != secretExampleFile {
			t.Fatalf("%v: Secrets belong in %s only (users create their own)", d, secretExampleFile)
		}
	}
	// The keys users create are the example Secret's; optional ones may be
	// there commented out.
	exampleText, err := os.ReadFile(filepath.Join(k8sDir, secretExampleFile))
	if err != nil {
		t.Fatal(err)
	}
	m.secretKeys = map[string]map[string]bool{}
	for _, s := range m.secrets {
		keys := map[string]bool{}
		for _, k := range slices.Concat(slices.Collect(maps.Keys(s.StringData)), slices.Collect(maps.Keys(s.Data))) {
			keys[k] = true
		}
		for _, c := range regexp.MustCompile(`(?m)^\s*#\s*([a-z0-9-]+):`).FindAllStringSubmatch(string(exampleText), -1) {
			if _, set := keys[c[1]]; !set {
				keys[c[1]] = false
			}
		}
		m.secretKeys[s.Name] = keys
	}
	return m
}

// app is the single clickagg StatefulSet with its container and ConfigMap.
type app struct {
	m         *manifests
	sts       *appsv1.StatefulSet
	c         *corev1.Container
	cm        *corev1.ConfigMap
	cfgPath   string         // --config argument
	cfgText   string         // the configuration file inside the ConfigMap
	cfg       map[string]any // cfgText decoded
	secretRef map[string]bool
}

func loadApp(t *testing.T) *app {
	t.Helper()
	return newApp(t, loadManifests(t))
}

// newApp finds the StatefulSet, its container and its configuration in m.
func newApp(t *testing.T, m *manifests) *app {
	t.Helper()
	if len(m.statefulSets) != 1 {
		t.Fatalf("want exactly one StatefulSet, have %d", len(m.statefulSets))
	}
	a := &app{m: m, sts: m.statefulSets[0]}
	cs := a.sts.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("StatefulSet %s: want one container, have %d", a.sts.Name, len(cs))
	}
	a.c = &cs[0]
	a.cfgPath = argValue(a.c.Args, "--config")
	if a.cfgPath == "" {
		t.Fatalf("container %s: args %q lack --config FILE", a.c.Name, a.c.Args)
	}
	// The ConfigMap is the one mounted at the --config file's folder.
	mount := findMount(a.c, path.Dir(a.cfgPath))
	if mount == nil {
		t.Fatalf("--config %s: no volume mounted at %s", a.cfgPath, path.Dir(a.cfgPath))
	}
	vol := findVolume(&a.sts.Spec.Template.Spec, mount.Name)
	if vol == nil || vol.ConfigMap == nil {
		t.Fatalf("--config %s: volume %q mounted at %s is not a ConfigMap volume", a.cfgPath, mount.Name, mount.MountPath)
	}
	for _, cm := range m.configMaps {
		if cm.Name == vol.ConfigMap.Name {
			a.cm = cm
		}
	}
	if a.cm == nil {
		t.Fatalf("ConfigMap %q (volume %q) is not among the manifests", vol.ConfigMap.Name, vol.Name)
	}
	key := path.Base(a.cfgPath)
	for _, it := range vol.ConfigMap.Items { // items may rename keys
		if it.Path == key {
			key = it.Key
		}
	}
	text, ok := a.cm.Data[key]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %q (the --config file %s)", a.cm.Name, key, a.cfgPath)
	}
	a.cfgText = text
	if err := yamlv3.Unmarshal([]byte(text), &a.cfg); err != nil {
		t.Fatalf("ConfigMap %s key %s: %v", a.cm.Name, key, err)
	}
	if a.cfg == nil {
		t.Fatalf("ConfigMap %s key %s: empty configuration", a.cm.Name, key)
	}
	return a
}

func argValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

func findMount(c *corev1.Container, mountPath string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if path.Clean(c.VolumeMounts[i].MountPath) == path.Clean(mountPath) {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func findVolume(ps *corev1.PodSpec, name string) *corev1.Volume {
	for i := range ps.Volumes {
		if ps.Volumes[i].Name == name {
			return &ps.Volumes[i]
		}
	}
	return nil
}

func findEnv(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// cfgString returns a top-level string setting of the ConfigMap's
// configuration ("" when absent).
func (a *app) cfgString(t *testing.T, key string) string {
	t.Helper()
	v, ok := a.cfg[key]
	if !ok || v == nil {
		return ""
	}
	s, ok := v.(string)
	if !ok {
		t.Fatalf("configuration %s: %v is not a string", key, v)
	}
	return s
}

// effectiveSetting is the value `clickagg run` uses: the container's
// literal environment variable wins over the file, which wins over def.
func (a *app) effectiveSetting(t *testing.T, key, env, def string) string {
	t.Helper()
	if e := findEnv(a.c, env); e != nil {
		if e.ValueFrom != nil {
			t.Fatalf("env %s: the test expects a literal value", env)
		}
		return e.Value
	}
	if v := a.cfgString(t, key); v != "" {
		return v
	}
	return def
}

// containerPort resolves a probe or Service target port (name or number)
// against the container's declared ports.
func containerPort(c *corev1.Container, p intstr.IntOrString) (int32, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

func namedPort(c *corev1.Container, name string) (int32, bool) {
	return containerPort(c, intstr.FromString(name))
}

// ---------------------------------------------------------------------------
// The Dockerfile and the README.

type dockerfile struct {
	uid, gid int64
	env      map[string]string
	expose   []int32
	volumes  []string
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	b, err := os.ReadFile(dockerfileFile)
	if err != nil {
		t.Fatal(err)
	}
	d := dockerfile{uid: -1, gid: -1, env: map[string]string{}}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM": // a new stage: only the final stage counts
			d = dockerfile{uid: -1, gid: -1, env: map[string]string{}}
		case "USER":
			u, g, _ := strings.Cut(f[1], ":")
			uid, err := strconv.ParseInt(u, 10, 64)
			if err != nil {
				t.Fatalf("Dockerfile: USER %s: the manifests need a numeric uid (runAsNonRoot cannot check a name)", f[1])
			}
			d.uid, d.gid = uid, uid
			if g != "" {
				if d.gid, err = strconv.ParseInt(g, 10, 64); err != nil {
					t.Fatalf("Dockerfile: USER %s: numeric gid expected", f[1])
				}
			}
		case "ENV":
			for _, kv := range f[1:] {
				if k, v, ok := strings.Cut(kv, "="); ok {
					d.env[k] = v
				}
			}
		case "EXPOSE":
			for _, p := range f[1:] {
				p, _, _ = strings.Cut(p, "/")
				if n, err := strconv.Atoi(p); err == nil {
					d.expose = append(d.expose, int32(n))
				}
			}
		case "VOLUME":
			var vs []string
			rest := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), f[0]))
			if json.Unmarshal([]byte(rest), &vs) != nil {
				vs = f[1:]
			}
			d.volumes = append(d.volumes, vs...)
		}
	}
	if d.uid < 0 {
		t.Fatal("Dockerfile: the final stage has no USER line")
	}
	return d
}

// readmeConfigKeys returns the "YAML key" column of the README's
// configuration table (e.g. brokers, late.policy).
func readmeConfigKeys(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(readmeFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	cells := func(line string) []string {
		line = strings.TrimSpace(line)
		line = strings.TrimPrefix(strings.TrimSuffix(line, "|"), "|")
		parts := strings.Split(line, "|")
		for i := range parts {
			parts[i] = strings.TrimSpace(parts[i])
		}
		return parts
	}
	for i, line := range lines {
		if !strings.HasPrefix(strings.TrimSpace(line), "|") {
			continue
		}
		col := slices.Index(cells(line), "YAML key")
		if col < 0 {
			continue
		}
		var keys []string
		for _, row := range lines[i+2:] { // skip the |---| line
			if !strings.HasPrefix(strings.TrimSpace(row), "|") {
				break
			}
			c := cells(row)
			if col >= len(c) {
				t.Fatalf("README configuration table: short row %q", row)
			}
			k := strings.Trim(c[col], "` ")
			if k == "" || strings.ContainsAny(k, " `,") {
				t.Fatalf("README configuration table: cannot read the YAML key of row %q", row)
			}
			keys = append(keys, k)
		}
		if len(keys) == 0 {
			t.Fatal("README configuration table has no rows")
		}
		return keys
	}
	t.Fatal(`README: no table with a "YAML key" column`)
	return nil
}

// kafkaKeys are the Kafka TLS/SASL settings being added to the
// configuration (the SASL password only comes from the environment).
var kafkaKeys = []string{
	"kafka.tls.enabled", "kafka.tls.ca_file", "kafka.tls.cert_file", "kafka.tls.key_file",
	"kafka.tls.server_name", "kafka.sasl.mechanism", "kafka.sasl.username",
}

const kafkaPasswordEnv = "CLICKAGG_KAFKA_SASL_PASSWORD"

// flatten lists the leaf keys of a decoded YAML mapping as dotted paths.
func flatten(prefix string, v any, out *[]string) {
	m, ok := v.(map[string]any)
	if !ok {
		*out = append(*out, prefix)
		return
	}
	for k, sub := range m {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		flatten(p, sub, out)
	}
}

// ---------------------------------------------------------------------------
// Tests: decoding.

// TestStrictDecoding checks the harness itself: a misspelled field, a
// duplicate field and an unknown kind must all fail.
func TestStrictDecoding(t *testing.T) {
	good := "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: x}\nspec: {maxUnavailable: 1}\n"
	if _, _, _, err := decodeManifest([]byte(good)); err != nil {
		t.Fatalf("valid document rejected: %v", err)
	}
	for name, bad := range map[string]string{
		"misspelled field":         "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: x}\nspec: {maxUnavailble: 1}\n",
		"field at the wrong level": "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\nspec: {replicas: 1, containers: []}\n",
		"duplicate field":          "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\ndata: {c: d}\n",
		"unknown kind":             "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
		"old API version":          "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: x}\n",
		"wrong type":               "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: http}]}\n",
	} {
		if _, _, _, err := decodeManifest([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	var k kustomization
	if err := decodeStrict([]byte("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresource: [a.yaml]\n"), &k); err == nil {
		t.Error("kustomization with a misspelled field accepted")
	}
	docs, err := splitDocuments([]byte("# c\n---\na: 1\n---\n# only a comment\n---\nb: 2\n"))
	if err != nil || len(docs) != 2 {
		t.Errorf("splitDocuments: %d documents, %v; want 2", len(docs), err)
	}
}

// TestManifestsDecode decodes every document of k8s/*.yaml strictly and
// checks what all of them share: names, labels, no namespace.
func TestManifestsDecode(t *testing.T) {
	checkObjects(t, loadManifests(t))
}

// checkManifests runs every check of one set of manifests (the kustomize
// base's or a rendering of the chart) that does not depend on where they
// come from.
func checkManifests(t *testing.T, m *manifests) {
	t.Run("objects", func(t *testing.T) { checkObjects(t, m) })
	a := newApp(t, m)
	t.Run("statefulset", func(t *testing.T) { checkStatefulSet(t, a) })
	t.Run("services and pdb", func(t *testing.T) { checkServicesAndPDB(t, a) })
	t.Run("configuration", func(t *testing.T) { checkConfig(t, a) })
}

// checkObjects checks what all objects share: names, labels, no namespace.
func checkObjects(t *testing.T, m *manifests) {
	seen := map[string]string{}
	for _, d := range m.docs {
		t.Logf("%v: %s", d, d.meta.Name)
		if d.meta.Name == "" {
			t.Errorf("%v: no metadata.name", d)
		}
		for _, e := range validation.IsDNS1123Subdomain(d.meta.Name) {
			t.Errorf("%v: name %q: %s", d, d.meta.Name, e)
		}
		if d.meta.Namespace != "" {
			t.Errorf("%v: metadata.namespace %q: the base is namespace-agnostic (set it in an overlay)", d, d.meta.Namespace)
		}
		if d.meta.Labels[nameLabel] != "clickagg" {
			t.Errorf("%v: label %s=%q, want clickagg", d, nameLabel, d.meta.Labels[nameLabel])
		}
		checkLabels(t, d.String(), d.meta.Labels)
		id := d.kind + "/" + d.meta.Name
		if prev, dup := seen[id]; dup {
			t.Errorf("%v: %s also defined in %s", d, id, prev)
		}
		seen[id] = d.String()
	}
	for _, s := range m.services {
		for _, e := range validation.IsDNS1035Label(s.Name) {
			t.Errorf("Service %s: %s", s.Name, e)
		}
	}
}

func checkLabels(t *testing.T, where string, l map[string]string) {
	t.Helper()
	for k, v := range l {
		for _, e := range validation.IsQualifiedName(k) {
			t.Errorf("%s: label key %q: %s", where, k, e)
		}
		for _, e := range validation.IsValidLabelValue(v) {
			t.Errorf("%s: label %s value %q: %s", where, k, v, e)
		}
	}
}

// TestKustomization: the kustomization lists exactly the resource files
// present, except the Secret example.
func TestKustomization(t *testing.T) {
	m := loadManifests(t)
	k := m.kustomization
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization: apiVersion %q kind %q", k.APIVersion, k.Kind)
	}
	if k.Namespace != "" {
		t.Errorf("kustomization: namespace %q: the base is namespace-agnostic", k.Namespace)
	}
	var want []string
	for _, f := range m.files {
		if f != kustomizationFile && f != secretExampleFile {
			want = append(want, f)
		}
	}
	got := slices.Clone(k.Resources)
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("kustomization resources %q, want exactly %q (every k8s/*.yaml but %s and %s)", k.Resources, want, kustomizationFile, secretExampleFile)
	}
	if slices.Contains(k.Resources, secretExampleFile) {
		t.Errorf("kustomization lists %s: users create their own Secret", secretExampleFile)
	}
}

// ---------------------------------------------------------------------------
// Tests: the StatefulSet against the configuration, the Dockerfile and the
// other manifests.

func TestStatefulSet(t *testing.T) {
	checkStatefulSet(t, loadApp(t))
}

func checkStatefulSet(t *testing.T, a *app) {
	sts, ps, c := a.sts, &a.sts.Spec.Template.Spec, a.c

	t.Run("selector", func(t *testing.T) {
		sel, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
		if err != nil || sel.Empty() {
			t.Fatalf("StatefulSet selector %v: %v (empty: %v)", sts.Spec.Selector, err, sel == nil || sel.Empty())
		}
		if !sel.Matches(labels.Set(sts.Spec.Template.Labels)) {
			t.Errorf("StatefulSet selector %v does not match the pod labels %v", sts.Spec.Selector, sts.Spec.Template.Labels)
		}
		checkLabels(t, "pod template", sts.Spec.Template.Labels)
		if sts.Spec.Replicas == nil || *sts.Spec.Replicas < 1 {
			t.Errorf("replicas %v", sts.Spec.Replicas)
		}
	})

	t.Run("image and args", func(t *testing.T) {
		if len(c.Command) != 0 {
			t.Errorf("command %q: use the image's ENTRYPOINT (/usr/local/bin/clickagg)", c.Command)
		}
		if len(c.Args) == 0 || c.Args[0] != "run" {
			t.Errorf("args %q: want the run subcommand first", c.Args)
		}
		if c.Image == "" {
			t.Error("no image")
		}
		if m := findMount(c, path.Dir(a.cfgPath)); m == nil || !m.ReadOnly {
			t.Errorf("the configuration mount at %s must be readOnly", path.Dir(a.cfgPath))
		}
	})

	t.Run("state volume", func(t *testing.T) {
		stateDir := a.cfgString(t, "state_dir")
		if stateDir == "" {
			t.Fatal("the configuration has no state_dir (the default ./clickagg-state is not on the volume)")
		}
		env := findEnv(c, "CLICKAGG_STATE_DIR")
		if env == nil || env.ValueFrom != nil || path.Clean(env.Value) != path.Clean(stateDir) {
			t.Errorf("env CLICKAGG_STATE_DIR %+v, want the literal %s (the configuration's state_dir)", env, stateDir)
		}
		mount := findMount(c, stateDir)
		if mount == nil {
			t.Fatalf("nothing mounted at state_dir %s", stateDir)
		}
		if mount.ReadOnly || mount.SubPath != "" {
			t.Errorf("state mount %+v: must be writable, without subPath", mount)
		}
		var claim *corev1.PersistentVolumeClaim
		for i := range sts.Spec.VolumeClaimTemplates {
			if sts.Spec.VolumeClaimTemplates[i].Name == mount.Name {
				claim = &sts.Spec.VolumeClaimTemplates[i]
			}
		}
		if claim == nil {
			t.Fatalf("state_dir %s is volume %q, not a volumeClaimTemplate", stateDir, mount.Name)
		}
		if claim.Name != "state" {
			t.Errorf("claim template %q, want state", claim.Name)
		}
		if !slices.Equal(claim.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
			t.Errorf("claim %s access modes %v, want [ReadWriteOnce]", claim.Name, claim.Spec.AccessModes)
		}
		if q, ok := claim.Spec.Resources.Requests[corev1.ResourceStorage]; !ok || q.Sign() <= 0 {
			t.Errorf("claim %s: no storage request", claim.Name)
		}
		d := readDockerfile(t)
		if v, ok := d.env["CLICKAGG_STATE_DIR"]; ok && path.Clean(v) != path.Clean(stateDir) {
			t.Errorf("Dockerfile ENV CLICKAGG_STATE_DIR=%s, manifests use %s", v, stateDir)
		}
		if len(d.volumes) > 0 && !slices.Contains(d.volumes, stateDir) {
			t.Errorf("Dockerfile VOLUME %q does not include state_dir %s", d.volumes, stateDir)
		}
		// Every mount is a declared volume or claim.
		for _, vm := range c.VolumeMounts {
			if findVolume(ps, vm.Name) == nil && !slices.ContainsFunc(sts.Spec.VolumeClaimTemplates, func(p corev1.PersistentVolumeClaim) bool { return p.Name == vm.Name }) {
				t.Errorf("volumeMount %q: no such volume or claim template", vm.Name)
			}
		}
	})

	t.Run("probes", func(t *testing.T) {
		httpPort := a.effectiveSetting(t, "http_addr", "CLICKAGG_HTTP_ADDR", ":8080")
		_, portStr, err := net.SplitHostPort(httpPort)
		if err != nil {
			t.Fatalf("http_addr %q: %v (probes need the HTTP server)", httpPort, err)
		}
		want, err := strconv.Atoi(portStr)
		if err != nil {
			t.Fatalf("http_addr %q: numeric port expected", httpPort)
		}
		allowed := []string{"/healthz", "/readyz", "/metrics"}
		for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
			if p == nil {
				if name != "startup" {
					t.Errorf("no %s probe", name)
				}
				continue
			}
			if p.HTTPGet == nil {
				t.Errorf("%s probe: want httpGet (the scratch image has no shell for exec probes)", name)
				continue
			}
			if !slices.Contains(allowed, p.HTTPGet.Path) {
				t.Errorf("%s probe path %q: clickagg serves only %v", name, p.HTTPGet.Path, allowed)
			}
			port, ok := containerPort(c, p.HTTPGet.Port)
			if !ok {
				t.Errorf("%s probe port %v is not a declared container port", name, p.HTTPGet.Port.String())
			} else if int(port) != want {
				t.Errorf("%s probe port %d, but http_addr listens on %d", name, port, want)
			}
			if p.HTTPGet.Scheme != "" && p.HTTPGet.Scheme != corev1.URISchemeHTTP {
				t.Errorf("%s probe scheme %s: clickagg serves plain HTTP", name, p.HTTPGet.Scheme)
			}
		}
		if p := c.LivenessProbe; p != nil && p.HTTPGet != nil && p.HTTPGet.Path != "/healthz" {
			t.Errorf("liveness probe path %q, want /healthz (/readyz is false during restores and PostgreSQL outages: liveness on it would restart healthy pods)", p.HTTPGet.Path)
		}
		if p := c.StartupProbe; p != nil && p.HTTPGet != nil && p.HTTPGet.Path != "/healthz" {
			t.Errorf("startup probe path %q, want /healthz (a long rebuild must not kill the pod)", p.HTTPGet.Path)
		}
		if p := c.ReadinessProbe; p != nil && p.HTTPGet != nil {
			if p.HTTPGet.Path != "/readyz" {
				t.Errorf("readiness probe path %q, want /readyz", p.HTTPGet.Path)
			}
			// /readyz pings PostgreSQL with a 2s timeout (cmd/clickagg/run.go).
			if p.TimeoutSeconds <= 2 {
				t.Errorf("readiness probe timeoutSeconds %d: must exceed the 2s PostgreSQL ping of /readyz", p.TimeoutSeconds)
			}
		}
		d := readDockerfile(t)
		if len(d.expose) > 0 && !slices.Contains(d.expose, int32(want)) {
			t.Errorf("Dockerfile EXPOSE %v, manifests use %d", d.expose, want)
		}
		for _, cp := range c.Ports {
			for _, e := range validation.IsValidPortName(cp.Name) {
				t.Errorf("container port name %q: %s", cp.Name, e)
			}
		}
	})

	t.Run("security context", func(t *testing.T) {
		d := readDockerfile(t)
		psc := ps.SecurityContext
		if psc == nil {
			psc = &corev1.PodSecurityContext{}
		}
		csc := c.SecurityContext
		if csc == nil {
			t.Fatal("no container securityContext")
		}
		// Container settings override the pod's.
		pickB := func(cv, pv *bool) *bool {
			if cv != nil {
				return cv
			}
			return pv
		}
		pickI := func(cv, pv *int64) *int64 {
			if cv != nil {
				return cv
			}
			return pv
		}
		if v := pickB(csc.RunAsNonRoot, psc.RunAsNonRoot); v == nil || !*v {
			t.Error("runAsNonRoot must be true")
		}
		if v := pickI(csc.RunAsUser, psc.RunAsUser); v == nil || *v != d.uid {
			t.Errorf("runAsUser %v, want %d (Dockerfile USER)", deref(v), d.uid)
		}
		if v := pickI(csc.RunAsGroup, psc.RunAsGroup); v == nil || *v != d.gid {
			t.Errorf("runAsGroup %v, want %d (Dockerfile USER)", deref(v), d.gid)
		}
		if psc.FSGroup == nil || *psc.FSGroup != d.gid {
			t.Errorf("fsGroup %v, want %d so the state volume is writable", deref(psc.FSGroup), d.gid)
		}
		if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
			t.Error("readOnlyRootFilesystem must be true")
		}
		if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
			t.Error("allowPrivilegeEscalation must be false")
		}
		if csc.Privileged != nil && *csc.Privileged {
			t.Error("privileged must not be true")
		}
		if csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
			t.Error(`capabilities.drop must contain "ALL"`)
		} else if len(csc.Capabilities.Add) > 0 {
			t.Errorf("capabilities.add %v: clickagg needs none", csc.Capabilities.Add)
		}
		sp := csc.SeccompProfile
		if sp == nil {
			sp = psc.SeccompProfile
		}
		if sp == nil || sp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("seccompProfile %+v, want RuntimeDefault", sp)
		}
	})

	t.Run("termination grace", func(t *testing.T) {
		st := a.effectiveSetting(t, "shutdown_timeout", "CLICKAGG_SHUTDOWN_TIMEOUT", "30s")
		d, err := time.ParseDuration(st)
		if err != nil {
			t.Fatalf("shutdown_timeout %q: %v", st, err)
		}
		g := ps.TerminationGracePeriodSeconds
		if g == nil {
			t.Fatalf("terminationGracePeriodSeconds unset (default 30s), must exceed shutdown_timeout %s", d)
		}
		if time.Duration(*g)*time.Second <= d {
			t.Errorf("terminationGracePeriodSeconds %d must exceed shutdown_timeout %s (final checkpoint, then leaving the group)", *g, d)
		}
	})

	t.Run("environment", func(t *testing.T) {
		names := map[string]bool{}
		for _, e := range c.Env {
			if names[e.Name] {
				t.Errorf("env %s set twice", e.Name)
			}
			names[e.Name] = true
			for _, msg := range validation.IsEnvVarName(e.Name) {
				t.Errorf("env %q: %s", e.Name, msg)
			}
			lv := strings.ToLower(e.Value)
			if strings.Contains(lv, "password") || strings.Contains(lv, "postgres://") || strings.Contains(lv, "postgresql://") {
				t.Errorf("env %s has a literal value that looks like a credential or DSN: use a secretKeyRef", e.Name)
			}
			un := strings.ToUpper(e.Name)
			if strings.Contains(un, "PASSWORD") || strings.Contains(un, "SECRET") || strings.Contains(un, "TOKEN") ||
				un == "DATABASE_URL" || un == "CLICKAGG_POSTGRES" {
				if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					t.Errorf("env %s must come from a secretKeyRef, never a literal value", e.Name)
				}
			}
		}
		if !names["DATABASE_URL"] && !names["CLICKAGG_POSTGRES"] {
			t.Error("no DATABASE_URL: the PostgreSQL DSN is required and must come from a Secret")
		}
		if e := findEnv(c, "DATABASE_URL"); e != nil && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil &&
			e.ValueFrom.SecretKeyRef.Optional != nil && *e.ValueFrom.SecretKeyRef.Optional {
			t.Error("DATABASE_URL's secretKeyRef must not be optional")
		}
		if e := findEnv(c, kafkaPasswordEnv); e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Errorf("env %s must come from a secretKeyRef", kafkaPasswordEnv)
		}
		if e := findEnv(c, "CLICKAGG_INSTANCE_ID"); e == nil || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil ||
			e.ValueFrom.FieldRef.FieldPath != "metadata.name" {
			t.Error("CLICKAGG_INSTANCE_ID must come from fieldRef metadata.name (static membership by pod name)")
		}
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef != nil {
				t.Errorf("envFrom ConfigMap %s: settings belong in the configuration file, credentials in a Secret", ef.ConfigMapRef.Name)
			}
		}
		// Every referenced Secret key is one users are told to create;
		// optional keys may be shown commented out.
		for _, e := range c.Env {
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				continue
			}
			ref := e.ValueFrom.SecretKeyRef
			optional := ref.Optional != nil && *ref.Optional
			shown, listed := a.m.secretKeys[ref.Name][ref.Key]
			if !listed || (!shown && !optional) {
				t.Errorf("env %s: Secret %s key %s is not among the keys users create (%v)", e.Name, ref.Name, ref.Key, a.m.secretKeys)
			}
		}
		// clickagg exits 2 when a SASL password is set without
		// kafka.sasl.mechanism: the password must be optional, and the
		// example Secret must not set it unless the configuration uses SASL.
		if e := findEnv(c, kafkaPasswordEnv); e != nil && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			ref := e.ValueFrom.SecretKeyRef
			if ref.Optional == nil || !*ref.Optional {
				t.Errorf("env %s: the secretKeyRef must be optional (SASL is opt-in)", kafkaPasswordEnv)
			}
			kafka, _ := a.cfg["kafka"].(map[string]any)
			sasl, _ := kafka["sasl"].(map[string]any)
			if sasl["mechanism"] == nil {
				for _, s := range a.m.secrets {
					if _, set := s.StringData[ref.Key]; s.Name == ref.Name && set {
						t.Errorf("%s sets %s but the configuration has no kafka.sasl.mechanism: clickagg would exit 2", secretExampleFile, ref.Key)
					}
				}
			}
		}
	})

	t.Run("resources", func(t *testing.T) {
		r := c.Resources
		for _, n := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if q, ok := r.Requests[n]; !ok || q.Sign() <= 0 {
				t.Errorf("no %s request", n)
			}
		}
		if _, ok := r.Limits[corev1.ResourceCPU]; ok {
			t.Error("CPU limit set: CFS throttling stalls the once-a-second checkpoints and heartbeats")
		}
		limit, ok := r.Limits[corev1.ResourceMemory]
		if !ok {
			t.Fatal("no memory limit")
		}
		if req := r.Requests[corev1.ResourceMemory]; req.Cmp(limit) > 0 {
			t.Errorf("memory request %s above the limit %s", req.String(), limit.String())
		}
		if e := findEnv(c, "GOMEMLIMIT"); e != nil {
			n, err := parseGoMemLimit(e.Value)
			if err != nil {
				t.Fatalf("GOMEMLIMIT %q: %v", e.Value, err)
			}
			if n >= limit.Value() {
				t.Errorf("GOMEMLIMIT %s (%d bytes) must stay below the memory limit %s", e.Value, n, limit.String())
			}
		}
	})

	t.Run("headless service", func(t *testing.T) {
		var svc *corev1.Service
		for _, s := range a.m.services {
			if s.Name == sts.Spec.ServiceName {
				svc = s
			}
		}
		if svc == nil {
			t.Fatalf("serviceName %q is not among the Services", sts.Spec.ServiceName)
		}
		if svc.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Errorf("Service %s: clusterIP %q, want None (headless)", svc.Name, svc.Spec.ClusterIP)
		}
	})
}

func deref[T any](p *T) any {
	if p == nil {
		return "unset"
	}
	return *p
}

// parseGoMemLimit parses the GOMEMLIMIT syntax (a byte count with an
// optional B, KiB, MiB, GiB or TiB suffix).
func parseGoMemLimit(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if v, ok := strings.CutSuffix(s, u.suf); ok {
			s, mult = v, u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	return n * mult, nil
}

// TestServicesAndPDB: the Services and the PodDisruptionBudget select the
// StatefulSet's pods; the metrics Service targets the http port.
func TestServicesAndPDB(t *testing.T) {
	checkServicesAndPDB(t, loadApp(t))
}

func checkServicesAndPDB(t *testing.T, a *app) {
	podLabels := labels.Set(a.sts.Spec.Template.Labels)
	for _, s := range a.m.services {
		if len(s.Spec.Selector) == 0 {
			t.Errorf("Service %s: no selector", s.Name)
			continue
		}
		if !labels.SelectorFromSet(s.Spec.Selector).Matches(podLabels) {
			t.Errorf("Service %s selector %v does not match the pod labels %v", s.Name, s.Spec.Selector, podLabels)
		}
		for _, p := range s.Spec.Ports {
			if _, ok := containerPort(a.c, p.TargetPort); !ok && p.TargetPort.String() != "0" {
				t.Errorf("Service %s port %s: targetPort %s is not a container port", s.Name, p.Name, p.TargetPort.String())
			}
			for _, e := range validation.IsValidPortName(p.Name) {
				t.Errorf("Service %s port name %q: %s", s.Name, p.Name, e)
			}
		}
	}

	httpPort, ok := namedPort(a.c, "http")
	if !ok {
		t.Fatal("the container has no port named http")
	}
	var metrics []*corev1.Service
	for _, s := range a.m.services {
		if s.Annotations["prometheus.io/scrape"] == "true" {
			metrics = append(metrics, s)
		}
	}
	if len(metrics) != 1 {
		t.Fatalf("want one Service with prometheus.io/scrape: \"true\", have %d", len(metrics))
	}
	ms := metrics[0]
	if ms.Spec.ClusterIP == corev1.ClusterIPNone {
		t.Errorf("metrics Service %s is headless", ms.Name)
	}
	if got := ms.Annotations["prometheus.io/path"]; got != "/metrics" {
		t.Errorf("metrics Service %s: prometheus.io/path %q, want /metrics", ms.Name, got)
	}
	if got := ms.Annotations["prometheus.io/port"]; got != strconv.Itoa(int(httpPort)) {
		t.Errorf("metrics Service %s: prometheus.io/port %q, want %d (the container's http port)", ms.Name, got, httpPort)
	}
	targets := 0
	for _, p := range ms.Spec.Ports {
		if port, ok := containerPort(a.c, p.TargetPort); ok && port == httpPort {
			targets++
		}
	}
	if targets == 0 {
		t.Errorf("metrics Service %s: no port targets the container's http port", ms.Name)
	}

	if len(a.m.pdbs) != 1 {
		t.Fatalf("want one PodDisruptionBudget, have %d", len(a.m.pdbs))
	}
	pdb := a.m.pdbs[0]
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || sel.Empty() {
		t.Fatalf("PDB %s selector %v: %v", pdb.Name, pdb.Spec.Selector, err)
	}
	if !sel.Matches(podLabels) {
		t.Errorf("PDB %s selector %v does not match the pod labels %v", pdb.Name, pdb.Spec.Selector, podLabels)
	}
	if mu := pdb.Spec.MaxUnavailable; mu == nil || mu.Type != intstr.Int || mu.IntVal != 1 {
		t.Errorf("PDB %s maxUnavailable %v, want 1", pdb.Name, mu)
	}
	if pdb.Spec.MinAvailable != nil {
		t.Errorf("PDB %s: set maxUnavailable only", pdb.Name)
	}
}

// ---------------------------------------------------------------------------
// Tests: the configuration in the ConfigMap.

var durationKeys = []string{
	"checkpoint_interval", "out_of_orderness", "idle_timeout", "session_timeout",
	"exit_when_idle", "shutdown_timeout", "emit.early_interval",
}

func TestConfigMap(t *testing.T) {
	a := loadApp(t)
	checkConfig(t, a)

	// The commented-out kafka: block must use the settings' real names, so
	// that uncommenting it gives a valid configuration.
	t.Run("commented kafka block", func(t *testing.T) {
		block := commentedBlock(a.cfgText, "kafka:")
		if block == "" {
			t.Fatal("no commented-out kafka: block")
		}
		var m map[string]any
		if err := yamlv3.Unmarshal([]byte(block), &m); err != nil {
			t.Fatalf("the commented kafka block does not parse once uncommented: %v\n%s", err, block)
		}
		var leaves []string
		flatten("", m, &leaves)
		sort.Strings(leaves)
		for _, k := range leaves {
			if !slices.Contains(kafkaKeys, k) {
				t.Errorf("commented kafka block: unknown setting %s (known: %v)", k, kafkaKeys)
			}
		}
		for _, k := range []string{"kafka.tls.enabled", "kafka.sasl.mechanism", "kafka.sasl.username"} {
			if !slices.Contains(leaves, k) {
				t.Errorf("commented kafka block lacks %s", k)
			}
		}
		mech := fmt.Sprint(m["kafka"].(map[string]any)["sasl"].(map[string]any)["mechanism"])
		if !slices.Contains([]string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}, mech) {
			t.Errorf("kafka.sasl.mechanism %q", mech)
		}
		if !strings.Contains(a.cfgText, kafkaPasswordEnv) {
			t.Errorf("the configuration should say the SASL password comes from %s", kafkaPasswordEnv)
		}
	})
}

// checkConfig checks the configuration file in the StatefulSet's
// ConfigMap: README settings only, no credentials, sound values.
func checkConfig(t *testing.T, a *app) {
	known := readmeConfigKeys(t)
	t.Logf("README configuration keys: %v", known)
	if !slices.Contains(known, "state_dir") || !slices.Contains(known, "http_addr") {
		t.Fatalf("README configuration table %v lacks state_dir or http_addr: parsed the wrong table?", known)
	}
	knownTop := map[string]bool{"kafka": true}
	for _, k := range known {
		top, _, _ := strings.Cut(k, ".")
		knownTop[top] = true
	}

	t.Run("keys", func(t *testing.T) {
		for k := range a.cfg {
			if !knownTop[k] {
				t.Errorf("configuration key %q is not in the README's configuration table (renamed?)", k)
			}
		}
		var leaves []string
		flatten("", a.cfg, &leaves)
		for _, k := range leaves {
			if !slices.Contains(known, k) && !slices.Contains(kafkaKeys, k) {
				t.Errorf("configuration setting %q is not in the README's configuration table", k)
			}
		}
	})

	t.Run("no credentials", func(t *testing.T) {
		if _, ok := a.cfg["postgres"]; ok {
			t.Error("the configuration sets postgres: the DSN comes from DATABASE_URL (Secret)")
		}
		if strings.Contains(a.cfgText, "postgres:") || strings.Contains(a.cfgText, "postgresql:") {
			t.Error(`the configuration text contains "postgres:" (a key or a DSN, even in a comment)`)
		}
		var leaves []string
		flatten("", a.cfg, &leaves)
		for _, k := range leaves {
			if strings.Contains(k, "password") {
				t.Errorf("configuration setting %s: passwords come from the environment only", k)
			}
		}
	})

	t.Run("values", func(t *testing.T) {
		for _, k := range durationKeys {
			top, sub, nested := strings.Cut(k, ".")
			v, ok := a.cfg[top]
			if nested && ok {
				m, _ := v.(map[string]any)
				v, ok = m[sub]
			}
			if !ok {
				continue
			}
			if _, err := time.ParseDuration(fmt.Sprint(v)); err != nil {
				t.Errorf("%s: %v is not a duration", k, v)
			}
		}
		ws, _ := a.cfg["windows"].([]any)
		if len(ws) == 0 {
			t.Error("no windows")
		}
		for _, w := range ws {
			if d, err := time.ParseDuration(fmt.Sprint(w)); err != nil || d < time.Second {
				t.Errorf("window %v: want a duration of at least 1s", w)
			}
		}
		bs, _ := a.cfg["brokers"].([]any)
		if len(bs) == 0 {
			t.Error("no brokers")
		}
		for _, b := range bs {
			if s := fmt.Sprint(b); strings.Contains(s, "://") || !strings.Contains(s, ":") {
				t.Errorf("broker %q: want host:port", s)
			}
		}
		if lg, _ := a.cfg["log"].(map[string]any); lg == nil || lg["format"] != "json" {
			t.Error("log.format must be json in a cluster (console output is for terminals)")
		}
		if a.cfgString(t, "instance_id") != "" {
			t.Error("instance_id in the shared ConfigMap would give every pod the same static member id: it comes from CLICKAGG_INSTANCE_ID")
		}
		if addr := a.cfgString(t, "http_addr"); addr == "off" || addr == "none" {
			t.Error("http_addr is off: the probes and /metrics need it")
		}
	})
}

// commentedBlock finds a line "# <start>" and returns it and the following
// comment lines, uncommented.
func commentedBlock(text, start string) string {
	var out []string
	in := false
	for _, line := range strings.Split(text, "\n") {
		trim := strings.TrimSpace(line)
		if !in {
			if strings.HasPrefix(trim, "#") && strings.TrimSpace(strings.TrimPrefix(trim, "#")) == start {
				in = true
				out = append(out, start)
			}
			continue
		}
		if !strings.HasPrefix(trim, "#") {
			break
		}
		s := strings.TrimPrefix(trim, "#")
		s = strings.TrimPrefix(s, " ")
		out = append(out, s)
	}
	return strings.Join(out, "\n")
}

// ---------------------------------------------------------------------------
// Tests: the Grafana dashboard.

// metricInfo is a clickagg series the dashboard may use: its type and its
// own labels (every series also has Prometheus' instance, pod, ...).
type metricInfo struct {
	histogram bool
	counter   bool
	labels    []string
}

var knownMetrics = map[string]metricInfo{
	"clickagg_records_consumed_total":                             {counter: true},
	"clickagg_events_accepted_total":                              {counter: true},
	"clickagg_events_rejected_total":                              {counter: true, labels: []string{"reason"}},
	"clickagg_events_filtered_total":                              {counter: true},
	"clickagg_expired_clicks_total":                               {counter: true, labels: []string{"window"}},
	"clickagg_storage_partitions":                                 {labels: []string{"window"}},
	"clickagg_storage_bytes":                                      {labels: []string{"window"}},
	"clickagg_storage_oldest_window_seconds":                      {labels: []string{"window"}},
	"clickagg_storage_partitions_dropped_total":                   {counter: true},
	"clickagg_storage_maintenance_last_success_timestamp_seconds": {},
	"clickagg_storage_maintenance_failures_total":                 {counter: true},
	"clickagg_topic_missing":                                      {},
	"clickagg_late_events_total":                                  {counter: true, labels: []string{"window", "policy"}},
	"clickagg_duplicates_total":                                   {counter: true},
	"clickagg_dedup_misrouted_total":                              {counter: true},
	"clickagg_dead_letters_total":                                 {counter: true, labels: []string{"reason"}},
	"clickagg_dead_letters_truncated_total":                       {counter: true, labels: []string{"reason"}},
	"clickagg_checkpoints_total":                                  {counter: true},
	"clickagg_checkpoint_failures_total":                          {counter: true, labels: []string{"cause"}},
	"clickagg_checkpoint_duration_seconds":                        {histogram: true},
	"clickagg_checkpoint_rows":                                    {histogram: true},
	"clickagg_postgres_transaction_duration_seconds":              {histogram: true},
	"clickagg_postgres_rows_written_total":                        {counter: true, labels: []string{"table"}},
	"clickagg_postgres_up":                                        {},
	"clickagg_windows_finalized_total":                            {counter: true},
	"clickagg_fenced_total":                                       {counter: true},
	"clickagg_restores_total":                                     {counter: true, labels: []string{"kind"}},
	"clickagg_restore_duration_seconds":                           {histogram: true},
	"clickagg_records_replayed_total":                             {counter: true},
	"clickagg_records_lost_total":                                 {counter: true, labels: []string{"reason"}},
	"clickagg_partitions_owned":                                   {},
	"clickagg_ready":                                              {},
	"clickagg_not_ready":                                          {labels: []string{"reason"}},
	"clickagg_consumer_lag_records":                               {labels: []string{"partition"}},
	"clickagg_watermark_seconds":                                  {labels: []string{"partition"}},
	"clickagg_watermark_lag_seconds":                              {labels: []string{"partition"}},
	"clickagg_pending_keys":                                       {},
	"clickagg_open_windows":                                       {},
	"clickagg_state_bytes":                                        {},
	"clickagg_last_checkpoint_timestamp_seconds":                  {},
}

// targetLabels are added by Prometheus' scrape configuration.
var targetLabels = []string{"instance", "pod", "job", "namespace", "service", "container"}

var (
	metricRe    = regexp.MustCompile(`clickagg_[a-z_]+`)
	quotedRe    = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	matchersRe  = regexp.MustCompile(`\{([^{}]*)\}`)
	matcherName = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	groupingRe  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	legendRe    = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
	rateRe      = regexp.MustCompile(`\b(?:rate|irate|increase)\s*\(\s*(clickagg_[a-z_]+)`)
	quantileRe  = regexp.MustCompile(`histogram_quantile\s*\(`)
)

// seriesName maps a name found in a query to its metric: histogram series
// lose their _bucket/_sum/_count suffix. suffixed tells whether one was cut.
func seriesName(s string) (name string, suffixed bool) {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(s, suf); ok {
			if knownMetrics[base].histogram {
				return base, true
			}
		}
	}
	return s, false
}

// query is one PromQL expression of the dashboard.
type query struct {
	where  string
	expr   string
	legend string
}

type dashboard struct {
	raw     map[string]any
	queries []query
	panels  []map[string]any // every panel, rows' nested panels included
}

func loadDashboard(t *testing.T) *dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	d := &dashboard{}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&d.raw); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var walkPanels func([]any)
	walkPanels = func(ps []any) {
		for _, p := range ps {
			pm, ok := p.(map[string]any)
			if !ok {
				continue
			}
			d.panels = append(d.panels, pm)
			if sub, ok := pm["panels"].([]any); ok {
				walkPanels(sub)
			}
		}
	}
	ps, _ := d.raw["panels"].([]any)
	walkPanels(ps)
	for _, p := range d.panels {
		ts, _ := p["targets"].([]any)
		for _, tg := range ts {
			tm, _ := tg.(map[string]any)
			expr, _ := tm["expr"].(string)
			legend, _ := tm["legendFormat"].(string)
			d.queries = append(d.queries, query{where: fmt.Sprintf("panel %v %q", p["id"], p["title"]), expr: expr, legend: legend})
		}
	}
	// Any other "expr" (and templating queries) anywhere in the JSON.
	seen := map[string]bool{}
	for _, q := range d.queries {
		seen[q.expr] = true
	}
	var walk func(string, any)
	walk = func(at string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, sub := range v {
				if s, ok := sub.(string); ok && (k == "expr" || (k == "query" || k == "definition") && strings.HasPrefix(at, "templating")) {
					if !seen[s] {
						seen[s] = true
						d.queries = append(d.queries, query{where: at + "." + k, expr: s})
					}
				}
				walk(at+"."+k, sub)
			}
		case []any:
			for i, sub := range v {
				walk(fmt.Sprintf("%s[%d]", at, i), sub)
			}
		}
	}
	for k, v := range d.raw {
		walk(k, v)
	}
	return d
}

// dashboardMetrics returns every clickagg metric the dashboard queries.
func (d *dashboard) metrics() map[string][]string {
	out := map[string][]string{}
	for _, q := range d.queries {
		for _, s := range metricRe.FindAllString(q.expr, -1) {
			n, _ := seriesName(s)
			out[n] = append(out[n], q.where)
		}
	}
	return out
}

func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(metricsGoFile)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range regexp.MustCompile(`Name:\s*"(clickagg_[a-z0-9_]+)"`).FindAllStringSubmatch(string(b), -1) {
		out[m[1]] = true
	}
	if len(out) == 0 {
		t.Fatalf("%s: no Name: \"clickagg_...\" found", metricsGoFile)
	}
	return out
}

func TestDashboard(t *testing.T) {
	d := loadDashboard(t)

	t.Run("structure", func(t *testing.T) {
		if v, err := d.raw["schemaVersion"].(json.Number).Int64(); err != nil || v < 36 {
			t.Errorf("schemaVersion %v, want ≥ 36", d.raw["schemaVersion"])
		}
		for _, k := range []string{"uid", "title"} {
			if s, _ := d.raw[k].(string); s == "" {
				t.Errorf("no %s", k)
			}
		}
		// The data source: a datasource variable or an import input.
		dsRefs := []string{}
		tl, _ := d.raw["templating"].(map[string]any)
		vars, _ := tl["list"].([]any)
		for _, v := range vars {
			vm, _ := v.(map[string]any)
			if vm["type"] == "datasource" && vm["query"] == "prometheus" {
				dsRefs = append(dsRefs, "${"+fmt.Sprint(vm["name"])+"}", "$"+fmt.Sprint(vm["name"]))
			}
		}
		ins, _ := d.raw["__inputs"].([]any)
		for _, in := range ins {
			im, _ := in.(map[string]any)
			if im["type"] == "datasource" && im["pluginId"] == "prometheus" {
				dsRefs = append(dsRefs, "${"+fmt.Sprint(im["name"])+"}")
			}
		}
		if len(dsRefs) == 0 {
			t.Fatal("no Prometheus datasource variable or __inputs entry")
		}
		ids := map[string]bool{}
		for _, p := range d.panels {
			id := fmt.Sprint(p["id"])
			if ids[id] {
				t.Errorf("panel id %s used twice", id)
			}
			ids[id] = true
			if gp, ok := p["gridPos"].(map[string]any); ok {
				x, _ := gp["x"].(json.Number).Int64()
				w, _ := gp["w"].(json.Number).Int64()
				if x < 0 || w <= 0 || x+w > 24 {
					t.Errorf("panel %s %q: gridPos x %d w %d outside the 24 columns", id, p["title"], x, w)
				}
			} else {
				t.Errorf("panel %s %q: no gridPos", id, p["title"])
			}
			if p["type"] == "row" {
				continue
			}
			check := func(where string, ds any) {
				dm, _ := ds.(map[string]any)
				if uid, _ := dm["uid"].(string); !slices.Contains(dsRefs, uid) {
					t.Errorf("%s: datasource %v, want uid one of %v", where, ds, dsRefs)
				}
			}
			check(fmt.Sprintf("panel %s %q", id, p["title"]), p["datasource"])
			ts, _ := p["targets"].([]any)
			if len(ts) == 0 {
				t.Errorf("panel %s %q: no targets", id, p["title"])
			}
			for _, tg := range ts {
				tm, _ := tg.(map[string]any)
				check(fmt.Sprintf("panel %s %q target %v", id, p["title"], tm["refId"]), tm["datasource"])
				if s, _ := tm["expr"].(string); strings.TrimSpace(s) == "" {
					t.Errorf("panel %s %q: empty expr", id, p["title"])
				}
			}
		}
	})

	// NB: that each one is a real metric is "dashboard metrics are
	// registered" below.
	t.Run("queries metrics", func(t *testing.T) {
		used := d.metrics()
		if len(used) == 0 {
			t.Fatal("the dashboard queries no clickagg metric")
		}
		t.Logf("dashboard metrics: %v", slices.Sorted(maps.Keys(used)))
	})

	t.Run("query shapes", func(t *testing.T) {
		for _, q := range d.queries {
			checkPromQL(t, q)
		}
	})

	// The test's list must follow the metrics clickagg registers.
	t.Run("known list is metrics.go's", func(t *testing.T) {
		reg := registeredMetrics(t)
		for n := range reg {
			if _, ok := knownMetrics[n]; !ok {
				t.Errorf("%s is registered in %s but not in this test's knownMetrics: add it (and maybe a panel)", n, metricsGoFile)
			}
		}
		for n := range knownMetrics {
			if !reg[n] {
				t.Errorf("%s is in this test's knownMetrics but not registered in %s: remove it", n, metricsGoFile)
			}
		}
	})

	t.Run("dashboard metrics are registered", func(t *testing.T) {
		reg := registeredMetrics(t)
		used := d.metrics()
		var missing []string
		for n := range used {
			if !reg[n] {
				missing = append(missing, n)
			}
		}
		sort.Strings(missing)
		for _, n := range missing {
			t.Errorf("dashboard metric %s (in %v) is not registered in %s", n, used[n], metricsGoFile)
		}
	})
}

// checkPromQL checks one PromQL expression against the metrics clickagg
// exports: histogram suffixes, rate only of counters, histogram_quantile by
// le, and only labels the expression's metrics (or the scrape) carry.
func checkPromQL(t *testing.T, q query) {
	t.Helper()
	// Histogram names need a suffix; other names must not get one.
	for _, s := range metricRe.FindAllString(q.expr, -1) {
		n, suffixed := seriesName(s)
		if knownMetrics[n].histogram && !suffixed {
			t.Errorf("%s: histogram %s used without _bucket/_sum/_count", q.where, n)
		}
	}
	// rate/increase only on counters and histogram series.
	for _, m := range rateRe.FindAllStringSubmatch(q.expr, -1) {
		n, suffixed := seriesName(m[1])
		if info, ok := knownMetrics[n]; ok && !info.counter && !suffixed {
			t.Errorf("%s: rate/increase of gauge %s", q.where, n)
		}
	}
	if quantileRe.MatchString(q.expr) && (!strings.Contains(q.expr, "_bucket") || !regexp.MustCompile(`\bby\s*\([^)]*\ble\b`).MatchString(q.expr)) {
		t.Errorf("%s: histogram_quantile needs _bucket series aggregated by le: %s", q.where, q.expr)
	}
	// Labels used must exist on one of the expression's metrics.
	allowed := slices.Clone(targetLabels)
	for _, s := range metricRe.FindAllString(q.expr, -1) {
		n, suffixed := seriesName(s)
		allowed = append(allowed, knownMetrics[n].labels...)
		if suffixed && strings.HasSuffix(s, "_bucket") {
			allowed = append(allowed, "le")
		}
	}
	expr := quotedRe.ReplaceAllString(q.expr, `""`)
	var usedLabels []string
	for _, m := range matchersRe.FindAllStringSubmatch(expr, -1) {
		for _, mm := range matcherName.FindAllStringSubmatch(m[1], -1) {
			usedLabels = append(usedLabels, mm[1])
		}
	}
	for _, m := range groupingRe.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				usedLabels = append(usedLabels, l)
			}
		}
	}
	for _, m := range legendRe.FindAllStringSubmatch(q.legend, -1) {
		usedLabels = append(usedLabels, m[1])
	}
	for _, l := range usedLabels {
		if !slices.Contains(allowed, l) && l != "__name__" {
			t.Errorf("%s: label %q is not a label of the metrics in %s", q.where, l, q.expr)
		}
	}
}

// TestSecretExample: the example Secret holds placeholders only.
func TestSecretExample(t *testing.T) {
	m := loadManifests(t)
	if len(m.secrets) != 1 {
		t.Fatalf("want one Secret in %s, have %d", secretExampleFile, len(m.secrets))
	}
	s := m.secrets[0]
	if len(s.Data) > 0 {
		t.Error("use stringData with visible placeholders, not data")
	}
	for k, v := range s.StringData {
		if !strings.Contains(v, "CHANGE-ME") {
			t.Errorf("Secret %s key %s: not a CHANGE-ME placeholder", s.Name, k)
		}
	}
	if u := s.StringData["database-url"]; !strings.Contains(u, "sslmode=verify-full") {
		t.Errorf("database-url %q: show sslmode=verify-full", u)
	}
}

// TestExampleConfig: every setting clickagg.yaml shows is in the README's
// configuration table (a renamed or misspelled key fails).
func TestExampleConfig(t *testing.T) {
	b, err := os.ReadFile("clickagg.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("clickagg.yaml: %v", err)
	}
	known := readmeConfigKeys(t)
	var leaves []string
	flatten("", cfg, &leaves)
	if len(leaves) < 10 {
		t.Fatalf("clickagg.yaml sets only %v: parsed the wrong file?", leaves)
	}
	for _, k := range leaves {
		if !slices.Contains(known, k) && !slices.Contains(kafkaKeys, k) {
			t.Errorf("clickagg.yaml setting %q is not in the README's configuration table", k)
		}
	}
}
