{{/*
Expand the name of the chart.
*/}}
{{- define "image-cache.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming spec).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "image-cache.fullname" -}}
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

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "image-cache.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "image-cache.labels" -}}
helm.sh/chart: {{ include "image-cache.chart" . }}
{{ include "image-cache.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels
*/}}
{{- define "image-cache.selectorLabels" -}}
app.kubernetes.io/name: {{ include "image-cache.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "image-cache.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "image-cache.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The container image, tagged with image.tag or else the chart's appVersion.
*/}}
{{- define "image-cache.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
CACHE_DISK_MAX_SIZE: cache.diskMaxSize when set, else 90% of cache.emptyDir.sizeLimit in bytes,
so the cache stays clear of the limit at which the kubelet evicts the pod.
*/}}
{{- define "image-cache.diskMaxSize" -}}
{{- if .Values.cache.diskMaxSize }}
{{- .Values.cache.diskMaxSize }}
{{- else }}
{{- $limit := toString .Values.cache.emptyDir.sizeLimit }}
{{- $number := regexFind "^[0-9]+" $limit }}
{{- $suffix := trimPrefix $number $limit }}
{{- $multipliers := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 }}
{{- if not (hasKey $multipliers $suffix) }}
{{- fail (printf "cache.emptyDir.sizeLimit %q is not a whole number of bytes with an optional k, M, G, T, Ki, Mi, Gi or Ti suffix" $limit) }}
{{- end }}
{{- div (mul (int64 $number) (int64 (get $multipliers $suffix)) 9) 10 }}
{{- end }}
{{- end }}

{{/*
The shared tier's settings that come from sharedCache.redis.existingSecret, as container env
entries (none when no key is set).
*/}}
{{- define "image-cache.redisSecretEnv" -}}
{{- $redis := .Values.sharedCache.redis -}}
{{- range $name, $key := dict "REDIS_URL" $redis.urlKey "REDIS_CLUSTER_URLS" $redis.clusterUrlsKey "REDIS_PASSWORD" $redis.passwordKey }}
{{- if $key }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $redis.existingSecret | quote }}
      key: {{ $key | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The env entry that reads ADMIN_TOKEN from its Secret: admin.existingSecret, or the Secret the
chart makes from admin.token. Nothing when the admin API is off.
*/}}
{{- define "image-cache.adminSecretName" -}}
{{- if .Values.admin.existingSecret -}}
{{- .Values.admin.existingSecret -}}
{{- else if .Values.admin.token -}}
{{- include "image-cache.fullname" . }}-admin
{{- end -}}
{{- end }}

{{- define "image-cache.adminSecretEnv" -}}
{{- $name := include "image-cache.adminSecretName" . -}}
{{- if $name }}
- name: ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $name | quote }}
      key: {{ ternary .Values.admin.tokenKey "token" (ne .Values.admin.existingSecret "") | quote }}
{{- end }}
{{- end }}

{{/*
The paths an Ingress routes to the service: the public API only, as Prefix paths. /metrics,
/health and /admin are reached inside the cluster (by Prometheus, the kubelet, an operator),
never through the Ingress.
*/}}
{{- define "image-cache.publicPaths" -}}
- /image
{{- end }}

{{/* The status page's paths, routed as Exact paths when ingress.statusPage is on. */}}
{{- define "image-cache.statusPaths" -}}
- /
- /status
- /favicon.ico
{{- end }}

{{/*
Whether the cluster serves the Prometheus Operator's API (monitoring.coreos.com/v1), or the
user forced the objects with `force: true` (e.g. for `helm template` without a cluster).
Call with (dict "root" $ "force" <bool>).
*/}}
{{- define "image-cache.hasMonitoringApi" -}}
{{- if or .force (.root.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") -}}
true
{{- end -}}
{{- end }}

{{/*
A Kubernetes quantity (a whole or decimal number with an optional k, M, G, T, Ki, Mi, Gi or Ti
suffix) in bytes. Takes a dict with "value" and "name", the setting it came from, named when
the value cannot be read.
*/}}
{{- define "image-cache.quantityBytes" -}}
{{- $text := toString .value }}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $text }}
{{- $suffix := trimPrefix $number $text }}
{{- $multipliers := dict "" 1 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 }}
{{- if or (eq $number "") (not (hasKey $multipliers $suffix)) }}
{{- fail (printf "%s %q is not a number of bytes with an optional k, M, G, T, Ki, Mi, Gi or Ti suffix" .name $text) }}
{{- end }}
{{- int64 (mulf (float64 $number) (float64 (get $multipliers $suffix))) }}
{{- end }}

{{/*
What a pod needs in memory besides the memory tier's budget: the runtime, the disk tier's index,
the images in flight and the evicted bodies not yet collected, at the highest peak RSS
`npm run bench` measured (50,000 tiny variants, bench/README.md), less the budget, rounded up.
*/}}
{{- define "image-cache.memoryBaselineBytes" -}}
{{- mul 320 1048576 }}
{{- end }}

{{/*
Fails when resources.limits.memory leaves no room for the memory tier's budget on top of the
baseline (and of the emptyDir, when it is a tmpfs): such a pod would be OOM-killed by its own
cache once it filled.
*/}}
{{- define "image-cache.checkMemoryLimit" -}}
{{- $limit := dig "limits" "memory" "" (.Values.resources | default dict) }}
{{- if $limit }}
{{- $limitBytes := include "image-cache.quantityBytes" (dict "value" $limit "name" "resources.limits.memory") | int64 }}
{{- $tierBytes := include "image-cache.quantityBytes" (dict "value" .Values.cache.memoryMaxSize "name" "cache.memoryMaxSize") | int64 }}
{{- $baseline := include "image-cache.memoryBaselineBytes" . | int64 }}
{{- $tmpfsBytes := 0 }}
{{- if eq .Values.cache.emptyDir.medium "Memory" }}
{{- $tmpfsBytes = include "image-cache.quantityBytes" (dict "value" .Values.cache.emptyDir.sizeLimit "name" "cache.emptyDir.sizeLimit") | int64 }}
{{- end }}
{{- $needed := add $tierBytes $baseline $tmpfsBytes }}
{{- if lt $limitBytes $needed }}
{{- fail (printf "resources.limits.memory %s (%d MiB) is below what the pod needs: cache.memoryMaxSize %s plus the service's own %d MiB%s, %d MiB in all. Raise resources.limits.memory to at least %dMi or lower cache.memoryMaxSize." $limit (div $limitBytes 1048576) (toString .Values.cache.memoryMaxSize) (div $baseline 1048576) (ternary (printf " plus the tmpfs emptyDir's %s" (toString .Values.cache.emptyDir.sizeLimit)) "" (gt $tmpfsBytes 0)) (div (add $needed 1048575) 1048576) (div (add $needed 1048575) 1048576)) }}
{{- end }}
{{- end }}
{{- end }}
