{{/* Names and labels. */}}
{{- define "clipd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "clipd.fullname" -}}
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

{{- define "clipd.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "clipd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "clipd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "clipd.labels" -}}
helm.sh/chart: {{ include "clipd.chart" . }}
{{ include "clipd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "clipd.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "clipd.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "clipd.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Where collections live: "embedded" (in each pod) or "milvus" (config.index.backend). */}}
{{- define "clipd.indexBackend" -}}
{{- dig "index" "backend" "embedded" (.Values.config | default dict) }}
{{- end }}

{{/*
StatefulSet (one claim per pod) when embedded collections persist, else Deployment. With Milvus
the pods hold no state (clipd.validate refuses persistence there), so it is always a Deployment.
*/}}
{{- define "clipd.workloadKind" -}}
{{- if .Values.persistence.enabled }}StatefulSet{{ else }}Deployment{{ end }}
{{- end }}

{{/* Secrets: an existing one by name, or the chart's own. */}}
{{- define "clipd.authSecretName" -}}
{{- default (printf "%s-auth" (include "clipd.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "clipd.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "clipd.fullname" .)) .Values.tls.existingSecret }}
{{- end }}

{{- define "clipd.hfTokenSecretName" -}}
{{- default (printf "%s-hf-token" (include "clipd.fullname" .)) .Values.model.hub.token.existingSecret }}
{{- end }}

{{- define "clipd.hfTokenEnabled" -}}
{{- if or .Values.model.hub.token.existingSecret .Values.model.hub.token.value }}true{{ end }}
{{- end }}

{{- define "clipd.milvusTokenSecretName" -}}
{{- default (printf "%s-milvus-token" (include "clipd.fullname" .)) .Values.milvus.token.existingSecret }}
{{- end }}

{{- define "clipd.milvusTokenEnabled" -}}
{{- if or .Values.milvus.token.existingSecret .Values.milvus.token.value }}true{{ end }}
{{- end }}

{{- define "clipd.milvusCAEnabled" -}}
{{- if or .Values.milvus.ca.existingSecret .Values.milvus.ca.existingConfigMap }}true{{ end }}
{{- end }}

{{- define "clipd.cacheClaimName" -}}
{{- default (printf "%s-cache" (include "clipd.fullname" .)) .Values.cache.persistence.existingClaim }}
{{- end }}

{{/* grpc or http: Kubernetes' gRPC probes cannot speak TLS. */}}
{{- define "clipd.probeMode" -}}
{{- if eq .Values.probes.mode "auto" }}
{{- if .Values.tls.enabled }}http{{ else }}grpc{{ end }}
{{- else }}
{{- if and .Values.tls.enabled (eq .Values.probes.mode "grpc") }}
{{- fail "probes.mode=grpc cannot probe a TLS port: use auto or http" }}
{{- end }}
{{- .Values.probes.mode }}
{{- end }}
{{- end }}

{{/* model.source as clipd sees it. */}}
{{- define "clipd.modelSource" -}}
{{- if .Values.model.existingClaim }}
{{- if .Values.model.source }}
{{- fail "set model.source or model.existingClaim (with model.subPath), not both" }}
{{- end }}
{{- if .Values.model.subPath }}
{{- printf "/models/%s" (trimPrefix "/" .Values.model.subPath) }}
{{- else }}/models{{ end }}
{{- else }}
{{- .Values.model.source }}
{{- end }}
{{- end }}

{{/* Container paths and ports the computed settings point at. */}}
{{- define "clipd.grpcContainerPort" -}}50051{{- end }}
{{- define "clipd.metricsContainerPort" -}}9090{{- end }}

{{/*
clipd.yaml: the values' `config` map, overridden by what the chart must decide itself (listen
addresses, data directory, model, file paths of the mounted Secrets). Never key material.
*/}}
{{- define "clipd.config" -}}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- $model := dict "device" .Values.model.device "dtype" .Values.model.dtype }}
{{- with include "clipd.modelSource" . }}
{{- $_ := set $model "source" . }}
{{- end }}
{{- $index := dict "data_dir" "/var/lib/clipd" }}
{{- if eq (include "clipd.indexBackend" .) "milvus" }}
{{- /* Collections live in Milvus: no data directory in the pod; its token and CA are mounted. */}}
{{- $milvus := dict }}
{{- if include "clipd.milvusTokenEnabled" . }}
{{- $_ := set $milvus "token_file" "/etc/clipd/milvus/token" }}
{{- end }}
{{- if include "clipd.milvusCAEnabled" . }}
{{- $_ := set $milvus "ca_file" "/etc/clipd/milvus/ca.pem" }}
{{- end }}
{{- $index = dict "milvus" $milvus }}
{{- end }}
{{- $computed := dict
  "server" (dict "grpc_addr" (printf "0.0.0.0:%s" (include "clipd.grpcContainerPort" .)))
  "metrics" (dict "enabled" true "addr" (printf "0.0.0.0:%s" (include "clipd.metricsContainerPort" .)))
  "index" $index
  "model" $model }}
{{- if .Values.auth.enabled }}
{{- $_ := set $computed "auth" (dict "read_keys_file" "/etc/clipd/auth/read.keys" "write_keys_file" "/etc/clipd/auth/write.keys") }}
{{- end }}
{{- if .Values.tls.enabled }}
{{- $tls := dict "cert_file" "/etc/clipd/tls/tls.crt" "key_file" "/etc/clipd/tls/tls.key" }}
{{- if .Values.tls.clientAuth }}
{{- $_ := set $tls "client_ca_file" "/etc/clipd/tls/ca.crt" }}
{{- end }}
{{- $_ := set $computed "tls" $tls }}
{{- end }}
{{- toYaml (mustMergeOverwrite $config $computed) }}
{{- end }}

{{/* Checks across values that the schema cannot express. */}}
{{- define "clipd.validate" -}}
{{- if and .Values.auth.enabled (not .Values.auth.existingSecret) (not (or .Values.auth.readKeys .Values.auth.writeKeys)) }}
{{- fail "auth.enabled needs auth.existingSecret, or auth.readKeys / auth.writeKeys" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) (not (and .Values.tls.cert .Values.tls.key)) }}
{{- fail "tls.enabled needs tls.existingSecret, or tls.cert and tls.key" }}
{{- end }}
{{- if and .Values.tls.enabled .Values.tls.clientAuth (not .Values.tls.existingSecret) (not .Values.tls.clientCA) }}
{{- fail "tls.clientAuth needs tls.clientCA (or an existingSecret with ca.crt)" }}
{{- end }}
{{- if and .Values.model.subPath (not .Values.model.existingClaim) }}
{{- fail "model.subPath needs model.existingClaim" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- fail "autoscaling.maxReplicas must be at least autoscaling.minReplicas" }}
{{- end }}
{{- range $key, $_ := (.Values.config | default dict).auth }}
{{- if ne $key "reload_interval_ms" }}
{{- fail (printf "config.auth.%s: use the chart's auth section (keys are mounted from a Secret); config.auth takes only reload_interval_ms" $key) }}
{{- end }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- range $resource := list "cpu" "memory" }}
{{- if and (get $.Values.autoscaling (printf "target%sUtilizationPercentage" (title $resource | replace "Cpu" "CPU"))) (not (dig "requests" $resource "" ($.Values.resources | default dict))) }}
{{- fail (printf "autoscaling on %s utilisation needs resources.requests.%s (utilisation is measured against the request)" $resource $resource) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $key, $_ := (.Values.config | default dict).tls }}
{{- if ne $key "reload_interval_ms" }}
{{- fail (printf "config.tls.%s: use the chart's tls section (keys are mounted from a Secret); config.tls takes only reload_interval_ms" $key) }}
{{- end }}
{{- end }}
{{- $milvusConfig := dig "index" "milvus" (dict) (.Values.config | default dict) }}
{{- range $key := list "token_file" "ca_file" }}
{{- if hasKey $milvusConfig $key }}
{{- fail (printf "config.index.milvus.%s: use the chart's milvus section (the file is mounted from a Secret or ConfigMap)" $key) }}
{{- end }}
{{- end }}
{{- if eq (include "clipd.indexBackend" .) "milvus" }}
{{- /* clipd's default url, 127.0.0.1, would be the pod itself. */}}
{{- if not $milvusConfig.url }}
{{- fail "config.index.backend=milvus needs config.index.milvus.url (Milvus' gRPC endpoint, e.g. http://milvus.NAMESPACE.svc:19530)" }}
{{- end }}
{{- if .Values.persistence.enabled }}
{{- fail "persistence keeps embedded collections: with config.index.backend=milvus they live in Milvus, leave persistence.enabled off" }}
{{- end }}
{{- if and .Values.milvus.ca.existingSecret .Values.milvus.ca.existingConfigMap }}
{{- fail "set milvus.ca.existingSecret or milvus.ca.existingConfigMap, not both" }}
{{- end }}
{{- if and (include "clipd.milvusCAEnabled" .) (not (hasPrefix "https://" $milvusConfig.url)) }}
{{- fail "milvus.ca needs an https:// config.index.milvus.url" }}
{{- end }}
{{- else if or (include "clipd.milvusTokenEnabled" .) (include "clipd.milvusCAEnabled" .) }}
{{- fail "milvus.token and milvus.ca need config.index.backend=milvus" }}
{{- end }}
{{- end }}
