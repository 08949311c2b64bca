{{/* vim: set filetype=mustache: */}}

{{/* The chart's name. */}}
{{- define "iznet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name, the prefix of every resource (at most 40 characters, so suffixes fit in 63). */}}
{{- define "iznet.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "iznet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every resource. */}}
{{- define "iznet.labels" -}}
helm.sh/chart: {{ include "iznet.chart" . }}
{{ include "iznet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: iznet
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "iznet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "iznet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of one component: (dict "root" $ "component" "detection"). */}}
{{- define "iznet.componentLabels" -}}
{{ include "iznet.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "iznet.componentSelector" -}}
{{ include "iznet.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "iznet.annotations" -}}
{{- with .Values.commonAnnotations -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* The IZ*Net image; (dict "root" $ "gpu" bool). */}}
{{- define "iznet.image" -}}
{{- $root := .root -}}
{{- $registry := $root.Values.global.imageRegistry | default $root.Values.image.registry -}}
{{- $repo := $root.Values.image.repository -}}
{{- $tag := $root.Values.image.tag | default $root.Chart.AppVersion -}}
{{- if .gpu -}}
{{- $repo = $root.Values.gpuImage.repository -}}
{{- $tag = $root.Values.gpuImage.tag | default (printf "%s-gpu" $root.Chart.AppVersion) -}}
{{- end -}}
{{- $ref := ternary (printf "%s/%s" $registry $repo) $repo (ne $registry "") -}}
{{- if and $root.Values.image.digest (not .gpu) -}}
{{- printf "%s@%s" $ref $root.Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (toString $tag) -}}
{{- end -}}
{{- end -}}

{{/* A third-party image: (dict "root" $ "image" .Values.redis.image). */}}
{{- define "iznet.otherImage" -}}
{{- $registry := .root.Values.global.imageRegistry | default .image.registry -}}
{{- if $registry -}}
{{- printf "%s/%s:%s" $registry .image.repository (toString .image.tag) -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (toString .image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "iznet.imagePullSecrets" -}}
{{- with .Values.global.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "iznet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "iznet.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Where the artifact store is mounted; services/roles.py STORE_MOUNT. */}}
{{- define "iznet.storeMount" -}}/var/lib/iznet{{- end -}}

{{- define "iznet.storeClaimName" -}}
{{- .Values.store.persistence.existingClaim | default (printf "%s-store" (include "iznet.fullname" .)) -}}
{{- end -}}

{{/* Volumes of every IZ*Net pod: the store and a writable /tmp. */}}
{{- define "iznet.volumes" -}}
- name: store
{{- if .Values.store.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ include "iznet.storeClaimName" . }}
{{- else }}
  emptyDir: {}
{{- end }}
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "iznet.volumeMounts" -}}
- name: store
  mountPath: {{ include "iznet.storeMount" . }}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* Redis: host, port, password Secret, and the URL Celery uses. */}}
{{- define "iznet.redis.fullname" -}}
{{- printf "%s-redis" (include "iznet.fullname" .) -}}
{{- end -}}

{{- define "iznet.redis.host" -}}
{{- if .Values.redis.enabled -}}
{{- include "iznet.redis.fullname" . -}}
{{- else -}}
{{- required "externalRedis.host is required when redis.enabled is false" .Values.externalRedis.host -}}
{{- end -}}
{{- end -}}

{{- define "iznet.redis.port" -}}
{{- if .Values.redis.enabled -}}6379{{- else -}}{{- .Values.externalRedis.port -}}{{- end -}}
{{- end -}}

{{/* Does Redis need a password? */}}
{{- define "iznet.redis.auth" -}}
{{- if .Values.redis.enabled -}}
{{- if .Values.redis.auth.enabled -}}true{{- end -}}
{{- else if or .Values.externalRedis.password .Values.externalRedis.existingSecret -}}true{{- end -}}
{{- end -}}

{{- define "iznet.redis.secretName" -}}
{{- if and .Values.redis.enabled .Values.redis.auth.existingSecret -}}
{{- .Values.redis.auth.existingSecret -}}
{{- else if and (not .Values.redis.enabled) .Values.externalRedis.existingSecret -}}
{{- .Values.externalRedis.existingSecret -}}
{{- else -}}
{{- printf "%s-redis" (include "iznet.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "iznet.redis.secretKey" -}}
{{- if and (not .Values.redis.enabled) .Values.externalRedis.existingSecret -}}
{{- .Values.externalRedis.existingSecretPasswordKey -}}
{{- else -}}redis-password{{- end -}}
{{- end -}}

{{- define "iznet.redis.db" -}}
{{- if .Values.redis.enabled -}}0{{- else -}}{{- .Values.externalRedis.db -}}{{- end -}}
{{- end -}}

{{/* Environment of the roles that use Redis: REDIS_PASSWORD (a helper only) and IZNET_REDIS_URL. */}}
{{- define "iznet.redis.env" -}}
{{- $scheme := ternary "rediss" "redis" (and (not .Values.redis.enabled) .Values.externalRedis.tls) -}}
{{- if include "iznet.redis.auth" . }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "iznet.redis.secretName" . }}
      key: {{ include "iznet.redis.secretKey" . }}
- name: IZNET_REDIS_URL
  value: {{ printf "%s://:$(REDIS_PASSWORD)@%s:%s/%s" $scheme (include "iznet.redis.host" .) (include "iznet.redis.port" .) (include "iznet.redis.db" .) | quote }}
{{- else }}
- name: IZNET_REDIS_URL
  value: {{ printf "%s://%s:%s/%s" $scheme (include "iznet.redis.host" .) (include "iznet.redis.port" .) (include "iznet.redis.db" .) | quote }}
{{- end }}
{{- end -}}

{{/* Environment every IZ*Net container gets. */}}
{{- define "iznet.commonEnv" -}}
- name: IZNET_STORE
  value: {{ include "iznet.storeMount" . | quote }}
- name: PYTHONUNBUFFERED
  value: "1"
{{- end -}}

{{- define "iznet.apiKeys.secretName" -}}
{{- .Values.apiKeys.existingSecret | default (printf "%s-api-keys" (include "iznet.fullname" .)) -}}
{{- end -}}

{{- define "iznet.apiKeys.enabled" -}}
{{- if or .Values.apiKeys.existingSecret .Values.apiKeys.keys -}}true{{- end -}}
{{- end -}}

{{/* The gateway's environment: the store, the service token and the API keys. services.gateway reads its repeatable --api-key
     from IZNET_GATEWAY_API_KEYS (space-separated), so the Secret holds the keys joined by spaces. */}}
{{- define "iznet.gateway.env" -}}
{{ include "iznet.commonEnv" . }}
{{ include "iznet.serviceToken.env" . }}
{{- if include "iznet.apiKeys.enabled" . }}
- name: IZNET_GATEWAY_API_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "iznet.apiKeys.secretName" . }}
      key: {{ .Values.apiKeys.existingSecretKey }}
{{- end }}
{{- end -}}

{{- define "iznet.serviceToken.secretName" -}}
{{- .Values.apiKeys.serviceToken.existingSecret | default (printf "%s-service-token" (include "iznet.fullname" .)) -}}
{{- end -}}

{{/* What the gateway sends to the services: the service token (IZNET_SERVICE_TOKEN, services/common.py). */}}
{{- define "iznet.serviceToken.env" -}}
- name: IZNET_SERVICE_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "iznet.serviceToken.secretName" . }}
      key: {{ .Values.apiKeys.serviceToken.existingSecretKey }}
{{- end -}}

{{/* The keys every gRPC service accepts (services/common.py Keys): the service token as a read-only key
     (IZNET_READ_KEYS), and the API keys with write rights (IZNET_API_KEYS) when there are any; without them
     the services refuse every write. */}}
{{- define "iznet.services.keysEnv" -}}
- name: IZNET_READ_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "iznet.serviceToken.secretName" . }}
      key: {{ .Values.apiKeys.serviceToken.existingSecretKey }}
{{- if include "iznet.apiKeys.enabled" . }}
- name: IZNET_API_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "iznet.apiKeys.secretName" . }}
      key: {{ .Values.apiKeys.existingSecretKey }}
{{- end }}
{{- end -}}

{{/* The three services' addresses as the gateway dials them. */}}
{{- define "iznet.serviceAddress" -}}
{{- printf "%s-%s:%v" (include "iznet.fullname" .root) .component (index .root.Values .component).service.port -}}
{{- end -}}

{{/* Native gRPC probes against grpc.health.v1.Health (service "": the server as a whole). */}}
{{- define "iznet.grpcProbes" -}}
startupProbe:
  grpc:
    port: {{ .port }}
  periodSeconds: 5
  failureThreshold: 60
livenessProbe:
  grpc:
    port: {{ .port }}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  grpc:
    port: {{ .port }}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
{{- end -}}

{{/* TCP probes, for the gateway: Ray Serve's gRPC proxy answers no grpc.health.v1 (only its own Healthz). */}}
{{- define "iznet.tcpProbes" -}}
startupProbe:
  tcpSocket:
    port: {{ .port }}
  periodSeconds: 5
  failureThreshold: 60
livenessProbe:
  tcpSocket:
    port: {{ .port }}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
readinessProbe:
  tcpSocket:
    port: {{ .port }}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
{{- end -}}
