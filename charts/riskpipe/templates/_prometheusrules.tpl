{{/* The alerting and recording rules (`groups:`), shared by the PrometheusRule and
     the plain rules file in deploy/monitoring/. Worker series carry `namespace` and
     `pipeline` (the PodMonitor's relabelling); operator series carry them as their
     own labels (the ServiceMonitor honours them). */}}
{{- define "riskpipe.prometheusRuleGroups" -}}
{{- $r := .Values.prometheusRule -}}
{{- $t := $r.thresholds -}}
{{- $f := $r.for -}}
{{- $by := "namespace, pipeline" -}}
groups:
  - name: riskpipe.records
    interval: {{ $r.evaluationInterval }}
    rules:
      - record: riskpipe:records_in:rate5m
        expr: sum by ({{ $by }}) (rate(riskpipe_worker_records_in_total[5m]))
      - record: riskpipe:errors:rate5m
        # Dead letters and aborted transactions, as the workers' /status counts them.
        expr: >-
          sum by ({{ $by }}) (rate(riskpipe_worker_errors_total[5m]))
          + (sum by ({{ $by }}) (rate(riskpipe_worker_dead_letters_total[5m]))
             or sum by ({{ $by }}) (rate(riskpipe_worker_records_in_total[5m])) * 0)
      - record: riskpipe:error_ratio:rate5m
        expr: riskpipe:errors:rate5m / riskpipe:records_in:rate5m > -1
      - record: riskpipe:end_to_end_latency_seconds:p99_5m
        expr: histogram_quantile(0.99, sum by ({{ $by }}, le) (rate(riskpipe_worker_end_to_end_latency_seconds_bucket[5m])))
      - record: riskpipe:rejection_ratio:window
        expr: >-
          sum by ({{ $by }}) (rate(riskpipe_worker_decisions_total{decision="REJECT"}[{{ $r.windowRange }}]))
          / sum by ({{ $by }}) (rate(riskpipe_worker_decisions_total[{{ $r.windowRange }}]))
      - record: riskpipe:end_to_end_latency_seconds:avg_window
        expr: >-
          sum by ({{ $by }}) (rate(riskpipe_worker_end_to_end_latency_seconds_sum[{{ $r.windowRange }}]))
          / sum by ({{ $by }}) (rate(riskpipe_worker_end_to_end_latency_seconds_count[{{ $r.windowRange }}]))
  - name: riskpipe.alerts
    interval: {{ $r.evaluationInterval }}
    rules:
      - alert: RiskpipeThroughputLow
        expr: riskpipe:records_in:rate5m < {{ $t.minTps }}
        for: {{ $f.throughput }}
        labels:
          severity: warning
          level: HIGH
        annotations:
          summary: "TPS過低: {{`{{ $value | printf \"%.1f\" }}`}} tx/s on {{`{{ $labels.namespace }}/{{ $labels.pipeline }}`}}"
          description: >-
            The pipeline decides fewer than {{ $t.minTps }} transactions a second
            (seed AutoOps check). Runbook: compare with the input topic's produce
            rate — if the input is quiet too, tell the payment gateway team (the
            traffic stopped upstream); if the input is busy, look at the lag and
            busy-ratio panels: a lag that grows with a busy ratio near 1 needs more
            workers (raise spec.parallelism or the autoscaler's maximum); a lag that
            grows while workers idle points at Kafka or the dimension databases
            (worker logs, `kubectl describe riskpipeline`).
      - alert: RiskpipeLatencyP99High
        expr: riskpipe:end_to_end_latency_seconds:p99_5m > {{ $t.p99LatencySeconds }}
        for: {{ $f.latency }}
        labels:
          severity: critical
          level: CRITICAL
        annotations:
          summary: "P99延遲過高: {{`{{ $value | humanizeDuration }}`}} on {{`{{ $labels.namespace }}/{{ $labels.pipeline }}`}}"
          description: >-
            The 99th percentile from a transaction's timestamp to its committed
            decision is above {{ $t.p99LatencySeconds }} s over 5 minutes (seed
            AutoOps check). Payments wait on these decisions. Runbook: if the lag
            is high the workers are behind — scale out; if the lag is low, the
            latency is in each cycle: check the transaction commit duration panel
            (Kafka brokers slow) and the cache hit rate (state reads from disk);
            a sudden jump after a rollout means rolling back the RiskPipeline's
            last spec change.
      - alert: RiskpipeErrorRateHigh
        expr: riskpipe:error_ratio:rate5m > {{ $t.errorRatio }}
        for: {{ $f.errorRate }}
        labels:
          severity: warning
          level: HIGH
        annotations:
          summary: "錯誤率過高: {{`{{ $value | humanizePercentage }}`}} on {{`{{ $labels.namespace }}/{{ $labels.pipeline }}`}}"
          description: >-
            More than {{ $t.errorRatio | mulf 100 }} % of the input goes to the dead-letter
            topic or aborts (seed AutoOps check). Runbook: read the dead-letter
            topic's newest records (their `kind` and `reason`) — malformed_json or
            missing_field mean a producer changed its format (tell its team, the
            records wait in the dead-letter topic to be replayed); aborted
            transactions mean Kafka trouble (broker logs, the errors panel).
      - alert: RiskpipeErrorRateRestart
        expr: riskpipe:error_ratio:rate5m > {{ $t.restartErrorRatio }}
        for: {{ $f.errorRate }}
        labels:
          severity: critical
          level: CRITICAL
        annotations:
          summary: "錯誤率過高: {{`{{ $value | humanizePercentage }}`}} on {{`{{ $labels.namespace }}/{{ $labels.pipeline }}`}}, above the restart level"
          description: >-
            More than {{ $t.restartErrorRatio | mulf 100 }} % of the input fails: the
            seed restarted the job here, and the operator restarts the workers by
            spec.restartPolicy (a Restarted Event; Degraded once its limit is
            reached). Runbook: as for RiskpipeErrorRateHigh; a restart does not
            fix bad input, so if the dead letters are all one producer's format,
            stop that producer rather than letting the operator restart in a loop.
      - alert: RiskpipeRestartsFrequent
        expr: sum by ({{ $by }}) (increase(riskpipe_operator_events_total{reason="Restarted"}[1h])) > {{ $t.restartsPerHour }}
        labels:
          severity: warning
          level: HIGH
        annotations:
          summary: "{{`{{ $labels.namespace }}/{{ $labels.pipeline }}`}} restarted {{`{{ $value | printf \"%.0f\" }}`}} times in an hour"
          description: >-
            The operator restarted the workers more than {{ $t.restartsPerHour }}
            times in an hour because of a high error rate. Runbook: `kubectl
            describe riskpipeline` shows the Restarted Events and their error
            rates; find the cause as for RiskpipeErrorRateHigh.
      - alert: RiskpipeConsumerLagHigh
        expr: max by ({{ $by }}) (riskpipe_worker_lag_seconds) > {{ $t.lagSeconds }}
        for: {{ $f.lag }}
        labels:
          severity: warning
          level: HIGH
        annotations:
          summary: "{{`{{ $labels.namespace }}/{{ $labels.pipeline }}`}} is {{`{{ $value | humanizeDuration }}`}} behind its input"
          description: >-
            A worker's backlog takes longer than {{ $t.lagSeconds }} s to drain at its
            current rate. Runbook: a busy ratio near 1 means the workers are
            saturated — raise spec.parallelism (up to the partition count) or the
            autoscaler's maximum; a low busy ratio with lag means the worker is
            stuck on Kafka or a dimension database: its logs and /status say which.
      - alert: RiskpipeCheckpointStale
        expr: >-
          time() - max by ({{ $by }}) (riskpipe_worker_checkpoint_timestamp_seconds > 0)
          > {{ $t.checkpointAgeSeconds }}
        for: {{ $f.checkpoint }}
        labels:
          severity: warning
          level: HIGH
        annotations:
          summary: "{{`{{ $labels.namespace }}/{{ $labels.pipeline }}`}}: last checkpoint {{`{{ $value | humanizeDuration }}`}} ago"
          description: >-
            No worker of the pipeline completed a checkpoint for {{ $t.checkpointAgeSeconds }} s.
            A restart now would replay from the older checkpoint (slower recovery,
            never wrong decisions). Runbook: the worker logs say why the upload
            fails — usually the object store's credentials or quota
            (spec.storage); the CheckpointHealthy condition says the same.
      - alert: RiskpipeSavepointFailed
        expr: sum by ({{ $by }}) (increase(riskpipe_operator_events_total{reason="SavepointFailed"}[{{ $r.savepointWindow }}])) > 0
        labels:
          severity: warning
          level: HIGH
        annotations:
          summary: "A savepoint of {{`{{ $labels.namespace }}/{{ $labels.pipeline }}`}} failed"
          description: >-
            A savepoint failed in the last {{ $r.savepointWindow }}; an upgrade waits for its
            savepoint, so a rollout may be stuck. Runbook: `kubectl describe
            riskpipeline` shows the SavepointFailed Event's message (object store
            unreachable, a worker not answering); fix it and the operator retries;
            after its last attempt the pipeline turns Degraded.
      - alert: RiskpipeDegraded
        expr: max by ({{ $by }}) (riskpipe_operator_pipeline_condition{condition="Degraded"}) == 1
        for: {{ $f.degraded }}
        labels:
          severity: critical
          level: CRITICAL
        annotations:
          summary: "{{`{{ $labels.namespace }}/{{ $labels.pipeline }}`}} is Degraded"
          description: >-
            The operator reports the pipeline Degraded: it cannot go on without a
            change (restart limit reached, a rollout or savepoint that failed for
            good, a lasting error rate). Runbook: `kubectl get riskpipeline -o
            yaml` — the Degraded condition's reason and message say what and why;
            fix the spec (or roll it back) and the operator resumes.
      - alert: RiskpipeWorkersNotReady
        expr: >-
          max by ({{ $by }}) (riskpipe_operator_pipeline_replicas)
          - max by ({{ $by }}) (riskpipe_operator_pipeline_ready_replicas) > 0
        for: {{ $f.workersNotReady }}
        labels:
          severity: warning
          level: MEDIUM
        annotations:
          summary: "{{`{{ $value }}`}} worker(s) of {{`{{ $labels.namespace }}/{{ $labels.pipeline }}`}} not ready"
          description: >-
            Some workers have not been ready for {{ $f.workersNotReady }}; their partitions are
            not decided. Runbook: `kubectl get pods -l
            app.kubernetes.io/instance=<pipeline>` and the pods' Events (image,
            volume, scheduling); a pod that restarts in a loop shows why in its
            previous log.
      - alert: RiskpipeOperatorNoLeader
        expr: sum(riskpipe_operator_leader) < 1 or absent(riskpipe_operator_leader)
        for: {{ $f.operator }}
        labels:
          severity: warning
          level: MEDIUM
        annotations:
          summary: No riskpipe operator replica leads
          description: >-
            No operator replica holds the leader Lease: running pipelines go on
            deciding, but nothing restarts, scales, checkpoints on schedule or
            upgrades them. Runbook: the operator Deployment's pods and logs
            (`kubectl logs deploy/<release>-riskpipe`); the Lease in the operator's
            namespace.
{{- range $level := list "CRITICAL" "HIGH" "MEDIUM" }}
{{- $w := index $r.windows $level }}
      - alert: RiskpipeWindowRejectionRate{{ $level | lower | title }}
        expr: >-
          riskpipe:rejection_ratio:window > {{ $w.rejectionRatio }}
          {{- if ne $level "CRITICAL" }}
          and riskpipe:rejection_ratio:window <= {{ (index $r.windows (ternary "CRITICAL" "HIGH" (eq $level "HIGH"))).rejectionRatio }}
          {{- end }}
        for: {{ $f.window }}
        labels:
          severity: {{ ternary "warning" "critical" (ne $level "CRITICAL") }}
          level: {{ $level }}
        annotations:
          summary: "拒絕率過高: {{`{{ $value | humanizePercentage }}`}} on {{`{{ $labels.namespace }}/{{ $labels.pipeline }}`}}"
          description: >-
            Over the last {{ $r.windowRange }} more than {{ $w.rejectionRatio | mulf 100 }} % of the decisions
            are REJECT ({{ $level }}, the seed's alert window). Runbook: a fraud
            wave or a rule gone wrong: compare the decisions-by-kind panel with the
            last RiskPipeline change (a rules change rolls out as an upgrade); the
            risk team decides whether it is real; roll the rules back if not.
      - alert: RiskpipeWindowLatency{{ $level | lower | title }}
        expr: >-
          riskpipe:end_to_end_latency_seconds:avg_window > {{ $w.latencySeconds }}
          {{- if ne $level "CRITICAL" }}
          and riskpipe:end_to_end_latency_seconds:avg_window <= {{ (index $r.windows (ternary "CRITICAL" "HIGH" (eq $level "HIGH"))).latencySeconds }}
          {{- end }}
        for: {{ $f.window }}
        labels:
          severity: {{ ternary "warning" "critical" (ne $level "CRITICAL") }}
          level: {{ $level }}
        annotations:
          summary: "處理延遲過高: {{`{{ $value | humanizeDuration }}`}} on {{`{{ $labels.namespace }}/{{ $labels.pipeline }}`}}"
          description: >-
            Over the last {{ $r.windowRange }} the average latency from a transaction's time to
            its committed decision is above {{ $w.latencySeconds }} s ({{ $level }}, the
            seed's alert window). Runbook: as for RiskpipeLatencyP99High.
{{- end }}
{{- end -}}
