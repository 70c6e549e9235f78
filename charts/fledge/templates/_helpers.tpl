{{- define "fledge.name" -}}{{ .Release.Name }}{{- end -}}
{{- define "fledge.labels" -}}
app.kubernetes.io/name: fledge
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
{{- define "fledge.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}{{- end -}}
{{- define "fledge.serviceAccount" -}}{{ .Values.serviceAccount.name | default (include "fledge.name" .) }}{{- end -}}
{{- define "fledge.leaseNamespace" -}}{{ .Values.leaderElection.namespace | default .Release.Namespace }}{{- end -}}
{{- define "fledge.keysSecret" -}}{{ .Values.keys.existingSecret | default (printf "%s-keys" (include "fledge.name" .)) }}{{- end -}}
{{- define "fledge.loadtesterLabels" -}}
app.kubernetes.io/name: fledge-loadtester
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
