{{/* Names, labels and the checks that stop a bad install at render time. */}}

{{- define "azp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "azp.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "azp.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "azp.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "azp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "azp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: proxy
{{- end -}}

{{- define "azp.labels" -}}
{{ include "azp.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "azp.secretName" -}}
{{- default (include "azp.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "azp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "azp.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Where the Secret's keys are mounted; the ConfigMap's *_file keys point here. */}}
{{- define "azp.secretDir" -}}/run/secrets/azure-auth-proxy{{- end -}}

{{/* The keys of the Secret the proxy reads (each one a file in azp.secretDir). */}}
{{- define "azp.secretKeys" -}}
{{- $keys := list "session_secret" "assertion_key" -}}
{{- if not .Values.workloadIdentity.signIn }}{{ $keys = prepend $keys "client_secret" }}{{ end -}}
{{- if .Values.redis.enabled }}{{ $keys = append $keys "redis_url" }}{{ end -}}
{{- toJson $keys -}}
{{- end -}}

{{/*
proxy.toml: the user's config with the chart-managed keys laid over it. Helm reads numbers
in values as floats, so toToml would write `workers = 4.0`, which the proxy (rightly) refuses
for an integer: whole numbers are turned back into integers.
*/}}
{{- define "azp.proxyToml" -}}
{{- $config := deepCopy (default dict .Values.config) -}}
{{- $dir := include "azp.secretDir" . -}}
{{- $server := dict "listen" "0.0.0.0:4180" -}}
{{- if .Values.metrics.enabled }}{{ $_ := set $server "metrics_listen" (printf "0.0.0.0:%d" (int .Values.metrics.port)) }}{{ end -}}
{{- if .Values.tls.secretName }}{{ $_ := set $server "tls_cert_file" "/run/tls/tls.crt" }}{{ $_ := set $server "tls_key_file" "/run/tls/tls.key" }}{{ end -}}
{{- $azure := dict "client_secret_file" (printf "%s/client_secret" $dir) -}}
{{- if .Values.workloadIdentity.signIn }}{{ $azure = dict "client_credential" "workload_identity" }}{{ end -}}
{{- $session := dict "secret_file" (printf "%s/session_secret" $dir) "store" "cookie" -}}
{{- if .Values.redis.enabled -}}
{{- $_ := set $session "store" "redis" -}}
{{- $_ := set $session "redis_url_file" (printf "%s/redis_url" $dir) -}}
{{- end -}}
{{- $identity := dict "assertion_key_file" (printf "%s/assertion_key" $dir) -}}
{{- $managed := dict "server" $server "azure" $azure "session" $session "identity" $identity -}}
{{- $config = mustMergeOverwrite $config $managed -}}
{{- $toml := regexReplaceAll "(?m)^(\\s*[A-Za-z0-9_-]+ = -?[0-9]+)\\.0$" (toToml $config) "${1}" -}}
{{- /* No blank lines: nindent would pad them into trailing spaces in the ConfigMap. */ -}}
{{- regexReplaceAll "\n\\s*\n" $toml "\n" | trim -}}
{{- end -}}

{{/* Render-time checks: a bad install is one line naming the value to fix. */}}
{{- define "azp.validate" -}}
{{- $server := default dict .Values.config.server -}}
{{- $azure := default dict .Values.config.azure -}}
{{- if not $server.public_url }}{{ fail "config.server.public_url is required (the external https:// origin)" }}{{ end -}}
{{- if not $azure.client_id }}{{ fail "config.azure.client_id is required (the app registration's Application ID)" }}{{ end -}}
{{- if not $azure.tenant_id }}{{ fail "config.azure.tenant_id is required (the Directory (tenant) ID)" }}{{ end -}}
{{- if not .Values.config.upstreams }}{{ fail "config.upstreams needs at least one upstream" }}{{ end -}}
{{- range $key := list "listen" "metrics_listen" }}{{ if hasKey $server $key }}{{ fail (printf "config.server.%s is set by the chart (see metrics.*); remove it" $key) }}{{ end }}{{ end -}}
{{- range $key := list "tls_cert_file" "tls_key_file" }}{{ if hasKey $server $key }}{{ fail (printf "config.server.%s is set by the chart (see tls.secretName); remove it" $key) }}{{ end }}{{ end -}}
{{- range $section, $keys := dict "azure" (list "client_secret" "client_secret_file" "client_credential") "session" (list "secret" "secret_file" "store" "redis_url" "redis_url_file") "identity" (list "assertion_key_file") -}}
{{- $table := default dict (get $.Values.config $section) -}}
{{- range $key := $keys }}{{ if hasKey $table $key }}{{ fail (printf "config.%s.%s is set by the chart (from secrets.* / redis.*); remove it" $section $key) }}{{ end }}{{ end -}}
{{- end -}}
{{- if not .Values.secrets.existingSecret -}}
{{- if and (not .Values.workloadIdentity.signIn) (not .Values.secrets.clientSecret) }}{{ fail "secrets.clientSecret is required (or name a Secret in secrets.existingSecret)" }}{{ end -}}
{{- if lt (len .Values.secrets.sessionSecret) 32 }}{{ fail "secrets.sessionSecret must be at least 32 random characters (or use secrets.existingSecret)" }}{{ end -}}
{{- if not (regexMatch "^\\s*-----BEGIN (EC |RSA )?PRIVATE KEY-----" .Values.secrets.assertionKey) }}{{ fail "secrets.assertionKey must be a PEM private key shared by all replicas: --set-file secrets.assertionKey=assertion-key.pem (or use secrets.existingSecret)" }}{{ end -}}
{{- if and .Values.redis.enabled (not .Values.redis.url) }}{{ fail "redis.url is required when redis.enabled (or put redis_url in secrets.existingSecret)" }}{{ end -}}
{{- end -}}
{{- if and .Values.redis.url (not (regexMatch "^rediss?://" .Values.redis.url)) }}{{ fail "redis.url must start with redis:// or rediss://" }}{{ end -}}
{{- if and .Values.workloadIdentity.enabled (not .Values.workloadIdentity.clientId) }}{{ fail "workloadIdentity.clientId is required when workloadIdentity.enabled" }}{{ end -}}
{{- if and .Values.workloadIdentity.signIn (not .Values.workloadIdentity.enabled) }}{{ fail "workloadIdentity.signIn needs workloadIdentity.enabled (the webhook projects the token)" }}{{ end -}}
{{- if and .Values.workloadIdentity.signIn .Values.secrets.clientSecret }}{{ fail "secrets.clientSecret is not used with workloadIdentity.signIn; remove it" }}{{ end -}}
{{- if and .Values.workloadIdentity.enabled (not .Values.serviceAccount.create) }}{{ fail "workloadIdentity.enabled needs serviceAccount.create (the chart annotates its service account)" }}{{ end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}{{ fail "metrics.serviceMonitor.enabled needs metrics.enabled" }}{{ end -}}
{{- if and .Values.pdb.enabled (ge (int .Values.pdb.minAvailable) (int (ternary .Values.hpa.minReplicas .Values.replicaCount .Values.hpa.enabled))) }}{{ fail "pdb.minAvailable must be below the replica count (hpa.minReplicas or replicaCount), or no node could ever be drained" }}{{ end -}}
{{- end -}}
