{{- define "cell-operator.name" -}}cell-operator{{- end -}}

{{- define "cell-operator.labels" -}}
app.kubernetes.io/name: cell-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mrbill
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "cell-operator.selector" -}}
app.kubernetes.io/name: cell-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cell-operator.fullname" -}}
{{- if eq .Release.Name "cell-operator" -}}cell-operator{{- else -}}{{ printf "%s-cell-operator" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{/* A map as key=value pairs joined by commas, keys sorted. */}}
{{- define "cell-operator.pairs" -}}
{{- $pairs := list -}}
{{- range $k, $v := . -}}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}
