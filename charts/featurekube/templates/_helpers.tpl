{{/* Names, labels and the values every template shares. */}}

{{- define "featurekube.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-featurekube, or the release name alone when it already says featurekube. */}}
{{- define "featurekube.fullname" -}}
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

{{- define "featurekube.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "featurekube.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: featurekube
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "featurekube.selectorLabels" -}}
app.kubernetes.io/name: {{ include "featurekube.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "featurekube.operator.selectorLabels" -}}
{{ include "featurekube.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "featurekube.operator.name" -}}
{{- printf "%s-operator" (include "featurekube.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "featurekube.operator.serviceAccountName" -}}
{{- default (include "featurekube.operator.name" .) .Values.serviceAccounts.operator.name }}
{{- end }}

{{/* Whether replicas peer: several replicas must (the schema insists). */}}
{{- define "featurekube.peering" -}}
{{- if or .Values.operator.peering.enabled (gt (int .Values.operator.replicas) 1) }}true{{ end }}
{{- end }}

{{- define "featurekube.peeringName" -}}
{{- default (include "featurekube.fullname" .) .Values.operator.peering.name }}
{{- end }}

{{/* Namespaces that get the feature servers' and Spark drivers' ServiceAccounts: the
tenants. The operator's own namespace is one only when it is watched by name. */}}
{{- define "featurekube.workloadNamespaces" -}}
{{- $namespaces := .Values.workloadNamespaces | default .Values.operator.watchNamespaces | default list }}
{{- toJson (uniq $namespaces) }}
{{- end }}

{{/* Namespaces the operator refuses to act in: Kubernetes' own, and, when it watches
all namespaces, its own (no tenant's). */}}
{{- define "featurekube.excludedNamespaces" -}}
{{- $excluded := list "kube-system" "kube-public" "kube-node-lease" }}
{{- if not .Values.operator.watchNamespaces }}
{{- $excluded = append $excluded .Release.Namespace }}
{{- end }}
{{- join "," (uniq $excluded) }}
{{- end }}

{{- define "featurekube.image" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .chart.AppVersion) }}
{{- end }}

{{/* The Secret holding AWS keys, if keys come from one. */}}
{{- define "featurekube.awsSecretName" -}}
{{- with .Values.aws.credentials }}
{{- if eq .source "secret" }}
{{- .existingSecret | default (printf "%s-aws" (include "featurekube.fullname" $)) }}
{{- end }}
{{- end }}
{{- end }}

{{/* A ServiceAccount's annotations as YAML (empty if none): its own, plus its IAM role
under IRSA, with {namespace} replaced by the account's namespace (a role per tenant).
With per-namespace credentials, one role for several tenants is refused. */}}
{{- define "featurekube.serviceAccountAnnotations" -}}
{{- $annotations := deepCopy (.account.annotations | default dict) }}
{{- if and (eq .root.Values.aws.credentials.source "irsa") .account.iamRoleArn }}
{{- $role := .account.iamRoleArn }}
{{- if .namespace }}
{{- $tenants := include "featurekube.workloadNamespaces" .root | fromJsonArray }}
{{- if and (eq .root.Values.aws.credentials.workloads "namespace") (gt (len $tenants) 1) (not (contains "{namespace}" $role)) }}
{{- fail (printf "serviceAccounts: iamRoleArn %s would give every workload namespace one role: put {namespace} in it (a role per namespace), or set aws.credentials.workloads=ambient" $role) }}
{{- end }}
{{- $role = replace "{namespace}" .namespace $role }}
{{- end }}
{{- $_ := set $annotations "eks.amazonaws.com/role-arn" $role }}
{{- end }}
{{- with $annotations }}{{ toYaml . }}{{ end }}
{{- end }}

{{/* spark.conf as the operator reads it: key=value pairs separated by commas. */}}
{{- define "featurekube.sparkConf" -}}
{{- $pairs := list }}
{{- range $key, $value := .Values.spark.conf }}
{{- $pairs = append $pairs (printf "%s=%s" $key (toString $value)) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/* The TLS Secret the operator serves its admission webhook with. */}}
{{- define "featurekube.admissionSecretName" -}}
{{- .Values.admission.existingSecret | default (printf "%s-admission" (include "featurekube.operator.name" .)) }}
{{- end }}
