{{/* The chart's name. */}}
{{- define "navarch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name. */}}
{{- define "navarch.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "navarch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "navarch.labels" -}}
helm.sh/chart: {{ include "navarch.chart" . }}
{{ include "navarch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: navarch
{{- end }}

{{- define "navarch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "navarch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "navarch.serverSelectorLabels" -}}
{{ include "navarch.selectorLabels" . }}
app.kubernetes.io/component: control-plane
{{- end }}

{{- define "navarch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "navarch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "navarch.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Refuses combinations that cannot work, with the reason. */}}
{{- define "navarch.validate" -}}
{{- $s := .Values.server }}
{{- if and (gt (int $s.replicas) 1) (eq $s.store.type "embedded") }}
{{- fail "server.replicas > 1 needs server.store.type=tikv: the embedded store belongs to one server" }}
{{- end }}
{{- if and (eq $s.store.type "tikv") (empty $s.store.pdEndpoints) }}
{{- fail "server.store.type=tikv needs server.store.pdEndpoints" }}
{{- end }}
{{- if and (gt (int $s.replicas) 1) (or (empty .Values.tls.caSecret) (empty .Values.auth.tokenSecret)) }}
{{- fail "server.replicas > 1 needs tls.caSecret and auth.tokenSecret: every replica must serve with one CA and accept the same users" }}
{{- end }}
{{- if and .Values.agent.enabled (empty .Values.agent.tokenSecret) }}
{{- fail "agent.enabled needs agent.tokenSecret (a Secret with key token)" }}
{{- end }}
{{- end }}
