{{/* Name of the release's objects: the release name, plus "-clickagg" unless it contains it. */}}
{{- define "clickagg.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "clickagg.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object; include with the component: (list . "aggregator"). */}}
{{- define "clickagg.labels" -}}
{{- $ := index . 0 -}}
{{ include "clickagg.selectorLabels" $ }}
app.kubernetes.io/component: {{ index . 1 }}
app.kubernetes.io/part-of: clickagg
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" $.Chart.Name $.Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "clickagg.image" -}}
{{- printf "%s:%s" .Values.image.repository (default (printf "v%s" .Chart.AppVersion) .Values.image.tag) -}}
{{- end -}}

{{/*
The configuration file: .Values.config with state_dir and http_addr set by
the chart. Settings that must not be in a shared file fail the render.
*/}}
{{- define "clickagg.config" -}}
{{- $cfg := deepCopy (default (dict) .Values.config) -}}
{{- range $k := list "postgres" "instance_id" -}}
{{- if hasKey $cfg $k -}}
{{- fail (printf "config.%s: not in the shared configuration (the DSN comes from existingSecret; instance_id is each pod's name)" $k) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "state_dir" .Values.stateVolume.mountPath -}}
{{- $_ := set $cfg "http_addr" (printf ":%d" (int .Values.httpPort)) -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
GOMEMLIMIT: goMemLimitPercent of resources.limits.memory, in MiB. The limit
must be an integer quantity (1Gi, 1536Mi, 2G, 1073741824).
*/}}
{{- define "clickagg.goMemLimit" -}}
{{- $limits := (default (dict) .Values.resources).limits | default (dict) -}}
{{- $limit := toString (required "resources.limits.memory is required (GOMEMLIMIT is derived from it)" $limits.memory) -}}
{{- $digits := regexFind "^[0-9]+" $limit -}}
{{- $suffix := trimPrefix $digits $limit -}}
{{- $units := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 -}}
{{- if or (eq $digits "") (not (hasKey $units $suffix)) -}}
{{- fail (printf "resources.limits.memory %q: want an integer with an optional Ki, Mi, Gi, Ti, k, M, G or T suffix" $limit) -}}
{{- end -}}
{{- $percent := int .Values.goMemLimitPercent -}}
{{- if or (lt $percent 1) (gt $percent 99) -}}
{{- fail (printf "goMemLimitPercent %d: want 1 to 99 (GOMEMLIMIT must stay below the limit)" $percent) -}}
{{- end -}}
{{- $bytes := mul (int64 $digits) (get $units $suffix) -}}
{{- printf "%dMiB" (div (mul $bytes $percent) (mul 100 1048576)) -}}
{{- end -}}
