// Package configs holds the example configuration, the Kubernetes manifests,
// the Helm chart, the alerting rules and the Grafana dashboards; its tests
// check them.
//
//   - clickagg.yaml: the commented example configuration of `clickagg run`.
//   - k8s/: a kustomize base (StatefulSet, ConfigMap, Services,
//     PodDisruptionBudget; examples/secret.example.yaml shows the Secret to create).
//   - helm/clickagg: a Helm chart of the same objects, plus an optional
//     ServiceMonitor and PrometheusRule.
//   - prometheus/clickagg-rules.yaml: the alerting rules, with their promtool
//     unit tests in clickagg-rules_test.yaml. The chart's
//     files/clickagg-rules.yaml is a copy made by go generate.
//   - grafana/clickagg-dashboard.json: a dashboard of clickagg's metrics;
//     grafana/clickagg-counts-dashboard.json: one of the counts in PostgreSQL.
//
// The tests decode every manifest, the kustomize base's and the chart's as
// helm renders it, strictly into the Kubernetes API types (an unknown or
// misspelled field fails), check that the manifests agree with each other,
// with the configuration, with the README's configuration table and with
// the Dockerfile, that the dashboards query only metrics clickagg registers
// and SQL that runs on its schema, and run promtool on the rules.
package configs

//go:generate cp prometheus/clickagg-rules.yaml helm/clickagg/files/clickagg-rules.yaml
