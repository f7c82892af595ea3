package configs

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
)

const (
	rulesFile      = "prometheus/clickagg-rules.yaml"
	rulesTestFile  = "prometheus/clickagg-rules_test.yaml"
	chartRulesFile = "helm/clickagg/files/clickagg-rules.yaml"
)

// ruleFile is a Prometheus rule file, decoded strictly into the Prometheus
// Operator's types (the same groups a PrometheusRule's spec carries).
type ruleFile struct {
	Groups []monitoringv1.RuleGroup `json:"groups"`
}

func loadRules(t *testing.T, b []byte) []monitoringv1.RuleGroup {
	t.Helper()
	var f ruleFile
	if err := decodeStrict(b, &f); err != nil {
		t.Fatalf("rules: %v", err)
	}
	if len(f.Groups) == 0 {
		t.Fatal("rules: no groups")
	}
	return f.Groups
}

// rulesTest is the part of a promtool rules test file this test reads.
type rulesTest struct {
	RuleFiles          []string `json:"rule_files"`
	EvaluationInterval string   `json:"evaluation_interval"`
	Tests              []struct {
		Interval      string `json:"interval"`
		InputSeries   []any  `json:"input_series"`
		AlertRuleTest []struct {
			EvalTime  string `json:"eval_time"`
			Alertname string `json:"alertname"`
			ExpAlerts []any  `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

func promtool(t *testing.T) string {
	t.Helper()
	return findTool(t, "promtool", "make promtool, or scripts/ensure-promtool.sh (Debian package prometheus)", "/usr/bin/promtool")
}

// TestAlertRulesPromtool checks the rules with `promtool check rules` and
// runs their unit tests with `promtool test rules`; a copy with one
// threshold changed must fail those tests.
func TestAlertRulesPromtool(t *testing.T) {
	pt := promtool(t)
	if out, err := run(".", pt, "check", "rules", rulesFile); err != nil {
		t.Fatalf("promtool check rules %s: %v\n%s", rulesFile, err, out)
	}
	out, err := run(".", pt, "test", "rules", rulesTestFile)
	if err != nil {
		t.Fatalf("promtool test rules %s: %v\n%s", rulesTestFile, err, out)
	}
	t.Logf("promtool test rules: %s", strings.TrimSpace(out))

	// The tests can fail: 5% → 50% silences ClickaggRejectedRecordsSpike.
	dir := t.TempDir()
	rules, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	changed := bytes.Replace(rules, []byte("> 0.05"), []byte("> 0.5"), 1)
	if bytes.Equal(changed, rules) {
		t.Fatal(`the rules no longer contain "> 0.05": update this test's mutation`)
	}
	tests, err := os.ReadFile(rulesTestFile)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{filepath.Base(rulesFile): changed, filepath.Base(rulesTestFile): tests} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err = run(dir, pt, "test", "rules", filepath.Base(rulesTestFile))
	if err == nil || !strings.Contains(out, "ClickaggRejectedRecordsSpike") {
		t.Errorf("promtool test rules passed with a changed threshold (err %v):\n%s", err, out)
	}
}

// TestAlertRules checks the rules without promtool: every alert is tested
// firing and not firing, carries a severity, a summary, a description and
// a runbook in the README, and queries only series clickagg exports; the
// chart's copy is the same file.
func TestAlertRules(t *testing.T) {
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	groups := loadRules(t, b)
	var tf rulesTest
	tb, err := os.ReadFile(rulesTestFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := decodeStrict(tb, &tf); err != nil {
		t.Fatalf("%s: %v", rulesTestFile, err)
	}
	if !slices.Equal(tf.RuleFiles, []string{filepath.Base(rulesFile)}) {
		t.Errorf("%s: rule_files %v, want [%s]", rulesTestFile, tf.RuleFiles, filepath.Base(rulesFile))
	}
	fires, quiet := map[string]int{}, map[string]int{}
	for _, tc := range tf.Tests {
		for _, at := range tc.AlertRuleTest {
			if len(at.ExpAlerts) > 0 {
				fires[at.Alertname]++
			} else {
				quiet[at.Alertname]++
			}
		}
	}
	readme, err := os.ReadFile(readmeFile)
	if err != nil {
		t.Fatal(err)
	}
	anchors := readmeAnchors(string(readme))
	reg := registeredMetrics(t)
	alerts := map[string]bool{}
	for _, g := range groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: rule %q is not an alert (recording rules would need their own checks)", g.Name, r.Record)
				continue
			}
			if alerts[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			alerts[r.Alert] = true
			if fires[r.Alert] == 0 || quiet[r.Alert] == 0 {
				t.Errorf("alert %s: %s has %d evaluations where it fires and %d where it must not; want both", r.Alert, rulesTestFile, fires[r.Alert], quiet[r.Alert])
			}
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, s)
			}
			for _, k := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[k]) == "" {
					t.Errorf("alert %s: no %s annotation", r.Alert, k)
				}
			}
			want := "README.md#" + strings.ToLower(r.Alert)
			if got := r.Annotations["runbook_url"]; got != want {
				t.Errorf("alert %s: runbook_url %q, want %q", r.Alert, got, want)
			}
			if !anchors[strings.ToLower(r.Alert)] {
				t.Errorf("alert %s: the README has no section %q (its runbook)", r.Alert, r.Alert)
			}
			expr := r.Expr.String()
			q := query{where: "alert " + r.Alert, expr: expr}
			checkPromQL(t, q)
			used := metricRe.FindAllString(expr, -1)
			if len(used) == 0 {
				t.Errorf("alert %s queries no clickagg metric", r.Alert)
			}
			for _, s := range used {
				if n, _ := seriesName(s); !reg[n] {
					t.Errorf("alert %s: %s is not registered in %s", r.Alert, n, metricsGoFile)
				}
			}
		}
	}
	for name := range fires {
		if !alerts[name] {
			t.Errorf("%s tests alert %s, which the rules do not define", rulesTestFile, name)
		}
	}
	for name := range quiet {
		if !alerts[name] {
			t.Errorf("%s tests alert %s, which the rules do not define", rulesTestFile, name)
		}
	}
	// The brief of the on-call engineer: these must stay.
	for _, name := range []string{
		"ClickaggConsumerLagGrowing", "ClickaggCheckpointStalled", "ClickaggCheckpointFailures",
		"ClickaggRecordsLost", "ClickaggRejectedRecordsSpike", "ClickaggFencedCheckpoints",
		"ClickaggReadinessFlapping", "ClickaggPostgresDown",
	} {
		if !alerts[name] {
			t.Errorf("alert %s is missing", name)
		}
	}

	chart, err := os.ReadFile(chartRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(chart, b) {
		t.Errorf("%s differs from %s: run go generate ./configs", chartRulesFile, rulesFile)
	}
}

// readmeAnchors returns the anchors of the README's headings as GitHub
// makes them: lower case, punctuation but - and _ dropped, spaces to -.
func readmeAnchors(readme string) map[string]bool {
	out := map[string]bool{}
	drop := regexp.MustCompile(`[^\p{L}\p{N} _-]`)
	fenced := false
	for _, line := range strings.Split(readme, "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(line, "#"))
		out[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")] = true
	}
	return out
}
