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
