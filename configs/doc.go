// Package configs holds the example configuration, the Kubernetes manifests
// and the Grafana dashboard; its tests check them.
//
//   - clickagg.yaml: the commented example configuration of `clickagg run`.
//   - k8s/: a kustomize base (StatefulSet, ConfigMap, Services,
//     PodDisruptionBudget; examples/secret.example.yaml shows the Secret to create).
//   - grafana/clickagg-dashboard.json: a dashboard of clickagg's metrics.
//
// The tests decode every manifest strictly into the Kubernetes API types (an
// unknown or misspelled field fails), check that the manifests agree with
// each other, with the configuration, with the README's configuration table
// and with the Dockerfile, and that the dashboard queries only metrics
// clickagg registers.
package configs
