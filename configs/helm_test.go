package configs

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	yamlv3 "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

const (
	chartDir = "helm/clickagg"
	// helmKubeVersion is the cluster version `helm template` assumes: a
	// helm built with go install would otherwise assume v1.20, below the
	// chart's kubeVersion.
	helmKubeVersion = "1.31.0"
	releaseName     = "clickagg"
)

func helmBinary(t *testing.T) string {
	t.Helper()
	return findTool(t, "helm", "make helm, or scripts/ensure-helm.sh (builds it into .cache/tools/bin)", "../.cache/tools/bin/helm")
}

// helmCmd runs helm with its configuration and caches in a temporary folder.
func helmCmd(t *testing.T, helm string, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	for _, v := range []string{"HELM_CONFIG_HOME", "HELM_CACHE_HOME", "HELM_DATA_HOME"} {
		t.Setenv(v, filepath.Join(home, v))
	}
	return run(".", helm, args...)
}

// helmTemplate renders the chart with the given values (YAML).
func helmTemplate(t *testing.T, helm, values string) (string, error) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(f, []byte(values), 0o644); err != nil {
		t.Fatal(err)
	}
	return helmCmd(t, helm, "template", releaseName, chartDir, "--kube-version", helmKubeVersion, "-f", f)
}

var sourceRe = regexp.MustCompile(`(?m)^# Source: (\S+)`)

// renderChart renders the chart and decodes every object strictly, each
// under the name of its template. secretKeys are the Secret keys the
// values tell the pods to read: the keys users create.
func renderChart(t *testing.T, helm, values string, secretKeys map[string]map[string]bool) *manifests {
	t.Helper()
	out, err := helmTemplate(t, helm, values)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	m := &manifests{secretKeys: secretKeys}
	for _, part := range docSeparator.Split(out, -1) {
		j, err := yaml.YAMLToJSON([]byte(part))
		if err != nil {
			t.Fatalf("helm template output: %v\n%s", err, part)
		}
		if strings.TrimSpace(string(j)) == "null" {
			continue
		}
		src := "helm template"
		if s := sourceRe.FindStringSubmatch(part); s != nil {
			src = s[1]
		}
		m.add(t, src, []byte(part))
	}
	if len(m.secrets) > 0 {
		t.Fatalf("the chart renders a Secret (%s): it must only reference an existing one", m.secrets[0].Name)
	}
	return m
}

// checkMonitoring: each ServiceMonitor selects the metrics Service and
// scrapes /metrics on one of its ports; each PrometheusRule carries the
// rules of the rules file (with runbookBase in front of the runbooks).
func checkMonitoring(t *testing.T, m *manifests, runbookBase string) {
	t.Helper()
	for _, sm := range m.serviceMonitors {
		sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
		if err != nil || sel.Empty() {
			t.Errorf("ServiceMonitor %s: selector %v: %v", sm.Name, sm.Spec.Selector, err)
			continue
		}
		var picked []*corev1.Service
		for _, s := range m.services {
			if sel.Matches(labels.Set(s.Labels)) {
				picked = append(picked, s)
			}
		}
		if len(picked) != 1 || picked[0].Annotations["prometheus.io/scrape"] != "true" {
			t.Errorf("ServiceMonitor %s selects %d Services, want exactly the metrics Service", sm.Name, len(picked))
			continue
		}
		if len(sm.Spec.Endpoints) == 0 {
			t.Errorf("ServiceMonitor %s: no endpoints", sm.Name)
		}
		for _, ep := range sm.Spec.Endpoints {
			if ep.Path != "/metrics" {
				t.Errorf("ServiceMonitor %s: path %q, want /metrics", sm.Name, ep.Path)
			}
			if !slices.ContainsFunc(picked[0].Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
				t.Errorf("ServiceMonitor %s: port %q is not a named port of Service %s", sm.Name, ep.Port, picked[0].Name)
			}
		}
	}
	if len(m.prometheusRules) == 0 {
		return
	}
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	want := loadRules(t, b)
	for i := range want {
		for j := range want[i].Rules {
			r := &want[i].Rules[j]
			if u, ok := r.Annotations["runbook_url"]; ok {
				r.Annotations["runbook_url"] = runbookBase + u
			}
		}
	}
	for _, pr := range m.prometheusRules {
		if !reflect.DeepEqual(pr.Spec.Groups, want) {
			got, _ := json.MarshalIndent(pr.Spec.Groups, "", "  ")
			exp, _ := json.MarshalIndent(want, "", "  ")
			t.Errorf("PrometheusRule %s: groups differ from %s (runbook base %q):\ngot  %s\nwant %s", pr.Name, rulesFile, runbookBase, got, exp)
		}
	}
}

// defaultSecretKeys are the keys of the Secret that values.yaml names.
var defaultSecretKeys = map[string]map[string]bool{
	"clickagg-secrets": {"database-url": true, "kafka-sasl-password": true},
}

// chartOnlyLabels are the labels the chart adds to the manifests'.
var chartOnlyLabels = []string{"app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart"}

// TestHelmChartDefaults renders the chart with its default values, runs
// the manifests' checks on it, and compares it with configs/k8s: the same
// objects, equal but for helm's labels, the configuration checksum, the
// image and the configuration file's comments.
func TestHelmChartDefaults(t *testing.T) {
	helm := helmBinary(t)
	m := renderChart(t, helm, "", defaultSecretKeys)
	checkManifests(t, m)
	checkMonitoring(t, m, "")
	if len(m.serviceMonitors)+len(m.prometheusRules) != 0 {
		t.Errorf("ServiceMonitor/PrometheusRule rendered by default (%d, %d): they need the Prometheus Operator's CRDs", len(m.serviceMonitors), len(m.prometheusRules))
	}
	a := newApp(t, m)
	if a.c.Image != "clickagg:v0.1.0" {
		t.Errorf("image %q, want clickagg:v<appVersion>", a.c.Image)
	}

	k := loadManifests(t)
	ka := newApp(t, k)
	if !reflect.DeepEqual(a.cfg, ka.cfg) {
		t.Errorf("the chart's default configuration differs from %s's:\nchart %v\nk8s   %v", k8sDir, a.cfg, ka.cfg)
	}
	normalize := func(d doc) string {
		t.Helper()
		b, err := json.Marshal(d.obj)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		strip := func(meta any) {
			mm, _ := meta.(map[string]any)
			if l, ok := mm["labels"].(map[string]any); ok {
				for _, k := range chartOnlyLabels {
					delete(l, k)
				}
			}
			if an, ok := mm["annotations"].(map[string]any); ok {
				delete(an, "checksum/config")
				if len(an) == 0 {
					delete(mm, "annotations")
				}
			}
		}
		strip(v["metadata"])
		switch d.kind {
		case "ConfigMap":
			delete(v, "data") // compared as parsed configurations above
		case "StatefulSet":
			tpl := v["spec"].(map[string]any)["template"].(map[string]any)
			strip(tpl["metadata"])
			for _, c := range tpl["spec"].(map[string]any)["containers"].([]any) {
				delete(c.(map[string]any), "image")
			}
		}
		out, _ := json.MarshalIndent(v, "", "  ")
		return string(out)
	}
	chart := map[string]doc{}
	for _, d := range m.docs {
		chart[d.kind+"/"+d.meta.Name] = d
	}
	for _, d := range k.docs {
		if d.file == secretExampleFile {
			continue
		}
		id := d.kind + "/" + d.meta.Name
		cd, ok := chart[id]
		if !ok {
			t.Errorf("%s (%s) is not rendered by the chart", id, d.file)
			continue
		}
		delete(chart, id)
		if got, want := normalize(cd), normalize(d); got != want {
			t.Errorf("%s: the chart's (%s) differs from %s:\nchart %s\nk8s   %s", id, cd.file, d.file, got, want)
		}
	}
	for id := range chart {
		t.Errorf("the chart renders %s, which %s does not have", id, k8sDir)
	}
}

// customValues are non-default values: more replicas, another image and
// Secret, more memory, the Prometheus Operator objects, Kafka TLS and a
// configuration of its own.
const customValues = `
replicas: 6
image:
  repository: registry.example.com/analytics/clickagg
  tag: v1.2.3
existingSecret: analytics-clickagg
secretKeys:
  databaseURL: dsn
  kafkaSASLPassword: sasl-password
resources:
  requests: {cpu: "1", memory: 1Gi}
  limits: {memory: 2Gi}
stateVolume:
  size: 50Gi
  storageClassName: fast-ssd
kafkaTLS:
  secretName: clickagg-kafka-tls
serviceMonitor:
  enabled: true
  interval: 15s
  labels: {release: kube-prometheus-stack}
prometheusRule:
  enabled: true
  labels: {release: kube-prometheus-stack}
  runbookBaseURL: https://git.example.com/analytics/clickagg/blob/v1.2.3/
podAnnotations: {example.com/team: analytics}
config:
  brokers: [kafka-0.kafka:9093, kafka-1.kafka:9093]
  topic: web-clicks
  group: clickagg-web
  windows: [1m, 5m, 1h]
  late: {policy: drop}
  dedup: {window: 10m}
  dead_letter: {topic: web-clicks-dead}
  kafka:
    tls: {enabled: true, ca_file: /etc/kafka-tls/ca.crt}
    sasl: {mechanism: SCRAM-SHA-512, username: clickagg}
  log: {level: debug}
`

// TestHelmChartCustom renders the chart with customValues, runs the
// manifests' checks on it and checks that each value arrived.
func TestHelmChartCustom(t *testing.T) {
	helm := helmBinary(t)
	m := renderChart(t, helm, customValues, map[string]map[string]bool{
		"analytics-clickagg": {"dsn": true, "sasl-password": true},
	})
	checkManifests(t, m)
	runbookBase := "https://git.example.com/analytics/clickagg/blob/v1.2.3/"
	checkMonitoring(t, m, runbookBase)
	a := newApp(t, m)

	if r := a.sts.Spec.Replicas; r == nil || *r != 6 {
		t.Errorf("replicas %v, want 6", deref(r))
	}
	if a.c.Image != "registry.example.com/analytics/clickagg:v1.2.3" {
		t.Errorf("image %q", a.c.Image)
	}
	// 90% of 2Gi in MiB, rounded down.
	if e := findEnv(a.c, "GOMEMLIMIT"); e == nil || e.Value != "1843MiB" {
		t.Errorf("GOMEMLIMIT %+v, want 1843MiB", e)
	}
	for env, key := range map[string]string{"DATABASE_URL": "dsn", kafkaPasswordEnv: "sasl-password"} {
		e := findEnv(a.c, env)
		if e == nil || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil ||
			e.ValueFrom.SecretKeyRef.Name != "analytics-clickagg" || e.ValueFrom.SecretKeyRef.Key != key {
			t.Errorf("env %s: %+v, want Secret analytics-clickagg key %s", env, e, key)
		}
	}
	if len(a.sts.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("%d claim templates", len(a.sts.Spec.VolumeClaimTemplates))
	}
	claim := a.sts.Spec.VolumeClaimTemplates[0].Spec
	if sc := claim.StorageClassName; sc == nil || *sc != "fast-ssd" {
		t.Errorf("storageClassName %v", deref(sc))
	}
	if q := claim.Resources.Requests[corev1.ResourceStorage]; q.String() != "50Gi" {
		t.Errorf("state volume %s, want 50Gi", q.String())
	}
	if mnt := findMount(a.c, "/etc/kafka-tls"); mnt == nil || !mnt.ReadOnly {
		t.Errorf("kafka-tls mount %+v, want read-only at /etc/kafka-tls", mnt)
	} else if v := findVolume(&a.sts.Spec.Template.Spec, mnt.Name); v == nil || v.Secret == nil || v.Secret.SecretName != "clickagg-kafka-tls" {
		t.Errorf("kafka-tls volume %+v", v)
	}
	if a.sts.Spec.Template.Annotations["example.com/team"] != "analytics" {
		t.Errorf("pod annotations %v", a.sts.Spec.Template.Annotations)
	}

	// The configuration: the values' settings over the chart's defaults
	// (maps merge, lists are replaced), state_dir and http_addr the chart's.
	want := map[string]any{
		"brokers":     []any{"kafka-0.kafka:9093", "kafka-1.kafka:9093"},
		"topic":       "web-clicks",
		"group":       "clickagg-web",
		"windows":     []any{"1m", "5m", "1h"},
		"late":        map[string]any{"policy": "drop"},
		"dedup":       map[string]any{"window": "10m"},
		"dead_letter": map[string]any{"topic": "web-clicks-dead"},
		"log":         map[string]any{"level": "debug", "format": "json"},
		"state_dir":   "/var/lib/clickagg",
		"http_addr":   ":8080",
		"kafka": map[string]any{
			"tls":  map[string]any{"enabled": true, "ca_file": "/etc/kafka-tls/ca.crt"},
			"sasl": map[string]any{"mechanism": "SCRAM-SHA-512", "username": "clickagg"},
		},
		"checkpoint_interval": "1s",
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if !reflect.DeepEqual(a.cfg[k], want[k]) {
			t.Errorf("configuration %s: %#v, want %#v", k, a.cfg[k], want[k])
		}
	}

	if len(m.serviceMonitors) != 1 || len(m.prometheusRules) != 1 {
		t.Fatalf("%d ServiceMonitors and %d PrometheusRules, want one of each", len(m.serviceMonitors), len(m.prometheusRules))
	}
	for name, l := range map[string]map[string]string{
		"ServiceMonitor": m.serviceMonitors[0].Labels, "PrometheusRule": m.prometheusRules[0].Labels,
	} {
		if l["release"] != "kube-prometheus-stack" {
			t.Errorf("%s labels %v lack release: kube-prometheus-stack", name, l)
		}
	}
	if iv := m.serviceMonitors[0].Spec.Endpoints[0].Interval; iv != monitoringv1.Duration("15s") {
		t.Errorf("ServiceMonitor interval %q, want 15s", iv)
	}
}

// TestHelmChartConfigPassthrough: a setting the chart does not know, such
// as a map of per-window retentions, reaches clickagg.yaml unchanged.
func TestHelmChartConfigPassthrough(t *testing.T) {
	helm := helmBinary(t)
	m := renderChart(t, helm, "config:\n  retention: {1m: 7d, 1h: 90d}\n", defaultSecretKeys)
	a := newApp(t, m)
	want := map[string]any{"1m": "7d", "1h": "90d"}
	if !reflect.DeepEqual(a.cfg["retention"], want) {
		t.Errorf("retention %#v, want %#v\n%s", a.cfg["retention"], want, a.cfgText)
	}
	var raw map[string]any
	if err := yamlv3.Unmarshal([]byte(a.cfgText), &raw); err != nil {
		t.Fatal(err)
	}
}

// TestHelmChartRefuses: values the chart must refuse, with a message that
// names the value.
func TestHelmChartRefuses(t *testing.T) {
	helm := helmBinary(t)
	for _, tc := range []struct{ values, want string }{
		{"config:\n  postgres: postgres://u:p@db/clicks\n", "config.postgres"},
		{"config:\n  instance_id: clickagg-0\n", "config.instance_id"},
		{"existingSecret: \"\"\n", "existingSecret is required"},
		{"resources:\n  limits: {memory: 1.5Gi}\n", "resources.limits.memory"},
		{"resources:\n  limits: null\n", "resources.limits.memory is required"},
		{"goMemLimitPercent: 100\n", "goMemLimitPercent"},
	} {
		out, err := helmTemplate(t, helm, tc.values)
		if err == nil {
			t.Errorf("values %q: rendered, want an error", tc.values)
		} else if !strings.Contains(out, tc.want) {
			t.Errorf("values %q: error does not name %q:\n%s", tc.values, tc.want, out)
		}
	}
}

// TestHelmLint runs helm lint --strict with the default and the custom
// values.
func TestHelmLint(t *testing.T) {
	helm := helmBinary(t)
	f := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(f, []byte(customValues), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{}, {"-f", f}} {
		out, err := helmCmd(t, helm, append([]string{"lint", "--strict", chartDir, "--kube-version", helmKubeVersion}, args...)...)
		if err != nil {
			t.Errorf("helm lint --strict %v: %v\n%s", args, err, out)
		}
	}
}
