{{/* The name of the release's objects: the release name, unless it already says cloudmigrate. */}}
{{- define "cloudmigrate.fullname" -}}
{{- if contains "cloudmigrate" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-cloudmigrate" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "cloudmigrate.labels" -}}
app.kubernetes.io/name: cloudmigrate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The controller's pods. */}}
{{- define "cloudmigrate.selectorLabels" -}}
app.kubernetes.io/name: cloudmigrate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{/* The one image of the controller and of worker Jobs. */}}
{{- define "cloudmigrate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
