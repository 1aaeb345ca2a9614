{{/*
Names and labels shared by every object. Services are installed with the service's name as the release name,
so both names default to the release name rather than "<release>-<chart>".
*/}}
{{- define "telemed.name" -}}
{{- default .Release.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "telemed.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "telemed.selectorLabels" -}}
app.kubernetes.io/name: {{ include "telemed.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "telemed.labels" -}}
{{ include "telemed.selectorLabels" . }}
app.kubernetes.io/version: {{ include "telemed.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: service
app.kubernetes.io/part-of: telemed-kit
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{- define "telemed.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "telemed.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "telemed.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{/* By digest when one is given: the digest is what was signed (docs/operations.md). */}}
{{- define "telemed.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (include "telemed.imageTag" .) -}}
{{- end -}}
{{- end -}}

{{/*
A duration in seconds (integer or fraction) in the kit's humantime form: whole seconds as "3s", fractions as
milliseconds ("2500ms").
*/}}
{{- define "telemed.duration" -}}
{{- $millis := mulf . 1000.0 | int -}}
{{- if eq (mod $millis 1000) 0 -}}
{{- printf "%ds" (div $millis 1000) -}}
{{- else -}}
{{- printf "%dms" $millis -}}
{{- end -}}
{{- end -}}

{{/*
AUTH_ISSUER: the value set, or else the `ehealth` realm of the eHealth environment that KVSTORE_URL names
(https://kvstore.<env>.ehealth.sundhed.dk gives https://saml.<env>.ehealth.sundhed.dk/auth/realms/ehealth: the
platform names both hosts after the environment). The values of a release from before the service verified
tokens then start the new binary unchanged (R12). Empty when neither gives it: a service that verifies tokens
then exits 2 naming AUTH_ISSUER.
*/}}
{{- define "telemed.authIssuer" -}}
{{- $config := .Values.config -}}
{{- $store := "^https://kvstore\\.([a-z0-9-]+)\\.ehealth\\.sundhed\\.dk/?$" -}}
{{- if not (kindIs "invalid" $config.AUTH_ISSUER) -}}
{{- $config.AUTH_ISSUER -}}
{{- else if and $config.KVSTORE_URL (regexMatch $store (toString $config.KVSTORE_URL)) -}}
{{- regexReplaceAll $store (toString $config.KVSTORE_URL) "https://saml.${1}.ehealth.sundhed.dk/auth/realms/ehealth" -}}
{{- end -}}
{{- end -}}

{{/*
Rules between values that JSON Schema cannot express (it cannot compare two values). They mirror the kit's own
startup checks (crates/telemed-kit/src/shutdown.rs), so a release that the kit would reject with exit code 2 is
rejected by helm before it reaches the cluster.
*/}}
{{- define "telemed.validate" -}}
{{- $grace := .Values.shutdown.gracePeriodSeconds | float64 -}}
{{- $delay := .Values.shutdown.delaySeconds | float64 -}}
{{- if gt $delay (subf $grace 2.5) -}}
{{- fail (printf "shutdown.delaySeconds=%v must be at most shutdown.gracePeriodSeconds - 2.5 = %v: after the delay the service needs 1s to drain, 1s for hooks and flushing and a 0.5s margin before SIGKILL" .Values.shutdown.delaySeconds (subf $grace 2.5)) -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail (printf "autoscaling.minReplicas=%v must not exceed autoscaling.maxReplicas=%v" .Values.autoscaling.minReplicas .Values.autoscaling.maxReplicas) -}}
{{- end -}}
{{- $replicas := ternary .Values.autoscaling.minReplicas .Values.replicaCount .Values.autoscaling.enabled | int -}}
{{- if and .Values.podDisruptionBudget.enabled (ge (int .Values.podDisruptionBudget.minAvailable) $replicas) -}}
{{- fail (printf "podDisruptionBudget.minAvailable=%v must be below the replica count %v, or no node could ever be drained" .Values.podDisruptionBudget.minAvailable $replicas) -}}
{{- end -}}
{{- $structural := dict "PORT" "containerPort" "SHUTDOWN_GRACE_PERIOD" "shutdown.gracePeriodSeconds" "SHUTDOWN_DELAY" "shutdown.delaySeconds" "METRICS_PORT" "metrics.port" -}}
{{- range .Values.extraEnv -}}
{{- if hasKey $structural .name -}}
{{- fail (printf "extraEnv must not set %s: set %s, which also configures the ports, probes or grace period that must agree with it" .name (get $structural .name)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.metrics.port (eq (int .Values.metrics.port) (int .Values.containerPort)) -}}
{{- fail (printf "metrics.port=%v must differ from containerPort; leave it null to serve metrics on containerPort" .Values.metrics.port) -}}
{{- end -}}
{{- end -}}
