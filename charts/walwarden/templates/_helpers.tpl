{{/* The name of every object of the release: the release name unless fullnameOverride. */}}
{{- define "walwarden.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "walwarden.selectorLabels" -}}
app.kubernetes.io/name: walwarden
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "walwarden.labels" -}}
{{ include "walwarden.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/* The operator's image; the runner Jobs use the same one unless operator.runnerImage is set. */}}
{{- define "walwarden.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "walwarden.runnerImage" -}}
{{- .Values.operator.runnerImage | default (include "walwarden.image" .) -}}
{{- end -}}

{{/* Comma-separated namespaces the operator watches: empty (cluster-wide) with rbac.scope cluster. */}}
{{- define "walwarden.watchNamespaces" -}}
{{- if eq .Values.rbac.scope "namespaces" -}}
{{- join "," .Values.watchNamespaces -}}
{{- end -}}
{{- end -}}

{{/* Cross-field checks JSON Schema cannot word clearly: fail the render with a readable message. */}}
{{- define "walwarden.validate" -}}
{{- if and (eq .Values.rbac.scope "namespaces") (empty .Values.watchNamespaces) -}}
{{- fail "rbac.scope is namespaces (the default): list the vault namespaces the operator serves in watchNamespaces, e.g. --set watchNamespaces={vault} (or set rbac.scope=cluster to serve every namespace)" -}}
{{- end -}}
{{- if has .Release.Namespace .Values.watchNamespaces -}}
{{- fail (printf "watchNamespaces lists the release namespace %s: the operator's own keys (approval key, origin key, spent tokens) live there, so requests may not; install it in a namespace of its own" .Release.Namespace) -}}
{{- end -}}
{{- if and (eq .Values.rbac.scope "cluster") (not (empty .Values.watchNamespaces)) -}}
{{- fail "watchNamespaces is only used with rbac.scope: namespaces (rbac.scope cluster watches every namespace)" -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled: true" -}}
{{- end -}}
{{- if and .Values.metrics.enabled (eq (int .Values.metrics.port) (int .Values.operator.healthPort)) -}}
{{- fail "metrics.port and operator.healthPort must differ" -}}
{{- end -}}
{{- end -}}

{{/*
What the operator does with the API in a namespace it watches, and nothing more. The same rules
go into the ClusterRole (rbac.scope cluster) or into a Role in each watched namespace.
*/}}
{{- define "walwarden.rules" -}}
# kopf watches both kinds (list + watch) to run new requests and resume unfinished ones after a
# restart, and patches them to keep its progress annotations (walwarden.io/...). The operator
# gets requests by name: the namespace lock checks whether its holder still runs, a
# RestoreRequest reads its source BackupRequest. It creates BackupRequests (the safety backup an
# InPlace restore takes of its target before overwriting it, and each run of a BackupSchedule)
# and RestoreRequests of mode Drill only (a schedule's restore drills); it deletes BackupRequests
# only when a schedule's retention prunes them, and RestoreRequests only when they are drills
# beyond a schedule's spec.drill.historyLimit (a schedule lists its own by label, and the
# RestoreRequests that may still need a backup).
- apiGroups: ["walwarden.io"]
  resources: ["backuprequests", "restorerequests"]
  verbs: ["get", "list", "watch", "patch", "create", "delete"]
- apiGroups: ["walwarden.io"]
  resources: ["backupschedules"]
  verbs: ["get", "list", "watch", "patch"]
# kopf writes status (phase, steps, conditions) through the status subresource.
- apiGroups: ["walwarden.io"]
  resources: ["backuprequests/status", "restorerequests/status", "backupschedules/status"]
  verbs: ["patch"]
# An Event on the request for every transition (the audit trail in `kubectl describe`).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# Secrets, always by name (never list): get — a request's admin connection, S3 credentials,
# Encryptor Master Passwords, db-info and the auth header; create — the per-backup manifest
# signing key, the presigned-URL Secrets the runner Jobs read, the db-info snapshot of a
# Redirected restore; delete — a presigned-URL Secret is replaced by a fresh one before each
# Job; patch — a Redirected restore repoints each db-info Secret (and rollback puts it back).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "delete", "patch"]
# The ledger ConfigMap, read and replaced, created the first time: walwarden-restores, the
# restores that ran, so that one is not repeated by accident (restore/history.py
# HISTORY_CONFIGMAP). The spent approval tokens are kept in the release namespace (rbac.yaml).
- apiGroups: [""]
  resources: ["configmaps"]
  resourceNames: ["walwarden-restores"]
  verbs: ["get", "update"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create"]
# ConfigMaps by name (never list): get — the trusted public keys a RestoreRequest names in
# spec.source.trustedKeys (restore/origin.py). Public keys; nothing a ConfigMap holds is more
# sensitive than the Secrets the operator already gets by name here.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get"]
# Argo CD Applications by name (never list): get — Preflight reads the one that tracks a vault
# workload, to refuse a restore its self-heal would undermine (workflow/gitops.py).
- apiGroups: ["argoproj.io"]
  resources: ["applications"]
  verbs: ["get"]
# One backup or restore at a time per namespace: the Lease walwarden-lock (kube/locks.py
# LOCK_NAME) is read, taken over (update) and released (delete); created the first time.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  resourceNames: ["walwarden-lock"]
  verbs: ["get", "update", "delete"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create"]
# Runner Jobs (dump, verify, restore, rollback): created once, then read for their outcome.
# Requests own them, so the garbage collector deletes them with the request.
- apiGroups: ["batch"]
  resources: ["jobs"]
  # delete: a rollback stops a restore Job still writing into the database it is about to drop.
  verbs: ["get", "create", "delete"]
# Pods, by label: ScaleDown waits until a tier's pods are gone; a failed Job's pod carries the
# runner's reason in its termination message.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
# The vault's services, found by name: get — replicas, Ready count, the original-replicas
# annotation; patch — scale to 0 and back (with that annotation), and the restart annotation
# that rolls consumers after a Redirected restore. No scale subresource, no delete.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "patch"]
{{- end -}}
