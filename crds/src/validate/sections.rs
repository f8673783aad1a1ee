//! The checks, one function per section of the spec. Messages match the CEL rules'
//! where a rule exists, so a user sees the same advice locally and from the apiserver.

use k8s_openapi::api::core::v1::SecretKeySelector;

use super::Checker;
use crate::{
    dimensions::DimensionsSpec,
    ml::{ML_FEATURES, MlSpec},
    monitoring::MonitoringSpec,
    operations::{AutoscalerSpec, RestartPolicySpec},
    rules::RulesSpec,
    sinks::{SinkSpec, SinksSpec},
    source::{SourceSpec, StartupMode},
    spec::{RiskPipelineSpec, SecretsSpec},
    storage::{CheckpointSpec, SavepointSpec, StateSpec, StorageSpec},
};

pub(super) fn check_spec(c: &mut Checker, spec: &RiskPipelineSpec) {
    source(c, &spec.source);
    c.int_range(spec.parallelism.into(), 1, 1024, "spec.parallelism");
    c.ensure(
        spec.time_zone.parse::<chrono_tz::Tz>().is_ok(),
        "spec.timeZone",
        format!(
            "unknown time zone {:?}: use an IANA name such as UTC or Asia/Taipei",
            spec.time_zone
        ),
    );
    if let Some(image) = &spec.image {
        c.non_empty(image, "spec.image");
    }
    if let Some(path) = &spec.initial_savepoint_path {
        c.non_empty(path, "spec.initialSavepointPath");
    }
    dimensions(c, &spec.dimensions);
    rules(c, &spec.rules);
    ml(c, &spec.ml);
    monitoring(c, &spec.monitoring);
    sinks(c, &spec.sinks);
    state(c, &spec.state);
    checkpoints(c, &spec.checkpoints);
    savepoints(c, &spec.savepoints);
    autoscaler(c, &spec.autoscaler);
    restart_policy(c, &spec.restart_policy);
    secrets(c, &spec.secrets);
    pod_template(c, &spec.pod_template);
}

fn pod_template(c: &mut Checker, t: &crate::pod_template::PodTemplateSpec) {
    for (i, e) in t.spec.env.iter().enumerate() {
        c.ensure(
            !(e.name.starts_with("RISKPIPE_") || e.name.starts_with("POD_")),
            &format!("spec.podTemplate.spec.env[{i}].name"),
            format!(
                "{} is set by the operator (POD_* and RISKPIPE_* names are its own)",
                e.name
            ),
        );
    }
}

fn source(c: &mut Checker, source: &SourceSpec) {
    let set = [
        source.kafka.is_some(),
        source.generator.is_some(),
        source.file.is_some(),
    ];
    c.ensure(
        set.iter().filter(|s| **s).count() == 1,
        "spec.source",
        "set exactly one of source.kafka, source.generator or source.file",
    );
    if let Some(k) = &source.kafka {
        c.non_empty(&k.bootstrap_servers, "spec.source.kafka.bootstrapServers");
        topic(c, &k.topic, "spec.source.kafka.topic");
        if let Some(group) = &k.group_id {
            c.non_empty(group, "spec.source.kafka.groupId");
        }
        c.ensure(
            (k.startup_mode == StartupMode::Timestamp) == k.startup_timestamp.is_some(),
            "spec.source.kafka.startupTimestamp",
            "set startupTimestamp (epoch ms) exactly when startupMode is timestamp",
        );
        if let Some(ts) = k.startup_timestamp {
            c.int_min(ts, 0, "spec.source.kafka.startupTimestamp");
        }
        c.int_range(
            k.max_batch_size.into(),
            1,
            1_000_000,
            "spec.source.kafka.maxBatchSize",
        );
        if let Some(secret) = &k.security_secret_ref {
            c.non_empty(&secret.name, "spec.source.kafka.securitySecretRef.name");
        }
    }
    if let Some(g) = &source.generator {
        c.int_min(g.users, 1, "spec.source.generator.users");
        c.int_min(g.merchants, 1, "spec.source.generator.merchants");
        c.int_min(g.rate_per_second, 0, "spec.source.generator.ratePerSecond");
        c.int_min(g.count, 0, "spec.source.generator.count");
        c.ratio(g.fraud_ratio, "spec.source.generator.fraudRatio");
    }
    if let Some(f) = &source.file {
        c.non_empty(&f.path, "spec.source.file.path");
    }
}

fn topic(c: &mut Checker, name: &str, field: &str) {
    let valid = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'));
    c.ensure(
        valid,
        field,
        format!("{name:?} is not a Kafka topic name (1–249 of a-z A-Z 0-9 . _ -)"),
    );
}

fn dimensions(c: &mut Checker, d: &DimensionsSpec) {
    if let Some(dir) = &d.directory {
        c.non_empty(dir, "spec.dimensions.directory");
    }
    if let Some(db) = &d.database {
        c.ensure(
            ["mysql://", "postgres://", "postgresql://"]
                .iter()
                .any(|scheme| db.url.starts_with(scheme)),
            "spec.dimensions.database.url",
            "must start with mysql:// or postgres://",
        );
        if let Some(secret) = &db.credentials_secret_ref {
            c.non_empty(
                &secret.name,
                "spec.dimensions.database.credentialsSecretRef.name",
            );
        }
    }
    let tables = [
        ("users", d.users.settings(), d.users.cache.max_rows),
        (
            "merchants",
            d.merchants.settings(),
            d.merchants.cache.max_rows,
        ),
        ("history", d.history.settings(), d.history.cache.max_rows),
    ];
    for (name, settings, max_rows) in tables {
        c.non_empty(settings.table, &format!("spec.dimensions.{name}.table"));
        c.int_min(
            max_rows,
            0,
            &format!("spec.dimensions.{name}.cache.maxRows"),
        );
    }
    let lists = &d.lists;
    c.positive(
        &lists.refresh_interval,
        "spec.dimensions.lists.refreshInterval",
    );
    c.non_empty(&lists.users_table, "spec.dimensions.lists.usersTable");
    c.non_empty(
        &lists.merchants_table,
        "spec.dimensions.lists.merchantsTable",
    );
    c.non_empty(&lists.ips_table, "spec.dimensions.lists.ipsTable");
}

fn rules(c: &mut Checker, r: &RulesSpec) {
    c.non_empty(&r.version, "spec.rules.version");

    let s = &r.scoring;
    let p = "spec.rules.scoring";
    c.decimal(
        s.max_single_amount_multiplier,
        &format!("{p}.maxSingleAmountMultiplier"),
    );
    c.decimal(
        s.avg_daily_high_multiplier,
        &format!("{p}.avgDailyHighMultiplier"),
    );
    c.decimal(
        s.avg_daily_medium_multiplier,
        &format!("{p}.avgDailyMediumMultiplier"),
    );
    c.ensure(
        s.avg_daily_high_multiplier >= s.avg_daily_medium_multiplier,
        &format!("{p}.avgDailyMediumMultiplier"),
        "avgDailyMediumMultiplier must not exceed avgDailyHighMultiplier (the high tier is checked first)",
    );
    for (value, name) in [
        (s.extreme_amount_score, "extremeAmountScore"),
        (s.high_amount_score, "highAmountScore"),
        (s.medium_amount_score, "mediumAmountScore"),
        (s.night_score, "nightScore"),
        (s.off_hours_score, "offHoursScore"),
    ] {
        c.int_min(value.into(), 0, &format!("{p}.{name}"));
    }
    c.int_range(
        s.night_start_hour.into(),
        0,
        23,
        &format!("{p}.nightStartHour"),
    );
    c.int_range(s.night_end_hour.into(), 0, 23, &format!("{p}.nightEndHour"));
    c.ensure(
        s.night_start_hour <= s.night_end_hour,
        &format!("{p}.nightEndHour"),
        "nightEndHour must not be before nightStartHour (the night window is start..=end within one day)",
    );

    let w = &r.windows;
    c.positive(&w.short_window, "spec.rules.windows.shortWindow");
    c.positive(&w.distinct_window, "spec.rules.windows.distinctWindow");
    c.positive(&w.max_future_skew, "spec.rules.windows.maxFutureSkew");
    c.decimal(w.small_amount_limit, "spec.rules.windows.smallAmountLimit");
    c.int_range(
        w.small_amount_run.into(),
        1,
        100,
        "spec.rules.windows.smallAmountRun",
    );

    let h = &r.history;
    let p = "spec.rules.history";
    for (value, name) in [
        (h.high_frequency_multiplier, "highFrequencyMultiplier"),
        (h.medium_frequency_multiplier, "mediumFrequencyMultiplier"),
        (h.extreme_amount_multiplier, "extremeAmountMultiplier"),
        (h.high_amount_multiplier, "highAmountMultiplier"),
        (h.deviation_ratio, "deviationRatio"),
    ] {
        c.decimal(value, &format!("{p}.{name}"));
    }
    c.ensure(
        h.high_frequency_multiplier >= h.medium_frequency_multiplier,
        &format!("{p}.mediumFrequencyMultiplier"),
        "mediumFrequencyMultiplier must not exceed highFrequencyMultiplier (the high tier is checked first)",
    );

    c.int_min(
        r.access.max_distinct_ips.into(),
        0,
        "spec.rules.access.maxDistinctIps",
    );
    c.int_min(
        r.access.max_distinct_devices.into(),
        0,
        "spec.rules.access.maxDistinctDevices",
    );

    let d = &r.decision;
    c.ensure(
        d.reject_score > d.review_score,
        "spec.rules.decision.rejectScore",
        format!(
            "rejectScore must be greater than reviewScore (got {} and {})",
            d.reject_score, d.review_score
        ),
    );
    c.ensure(
        d.review_score > d.delay_score,
        "spec.rules.decision.reviewScore",
        format!(
            "reviewScore must be greater than delayScore (got {} and {})",
            d.review_score, d.delay_score
        ),
    );
}

fn ml(c: &mut Checker, m: &MlSpec) {
    c.positive(&m.user_window, "spec.ml.userWindow");
    c.positive(&m.merchant_window, "spec.ml.merchantWindow");
    c.ratio(m.high_risk_probability, "spec.ml.highRiskProbability");
    c.ratio(m.medium_risk_probability, "spec.ml.mediumRiskProbability");
    c.ratio(m.low_risk_probability, "spec.ml.lowRiskProbability");
    c.ensure(
        m.high_risk_probability > m.medium_risk_probability,
        "spec.ml.highRiskProbability",
        format!(
            "highRiskProbability must be greater than mediumRiskProbability (got {} and {})",
            m.high_risk_probability, m.medium_risk_probability
        ),
    );
    c.ensure(
        m.medium_risk_probability > m.low_risk_probability,
        "spec.ml.mediumRiskProbability",
        format!(
            "mediumRiskProbability must be greater than lowRiskProbability (got {} and {})",
            m.medium_risk_probability, m.low_risk_probability
        ),
    );
    for (i, d) in m.decisions.iter().enumerate() {
        c.ensure(
            crate::ml::ML_CATEGORIES.contains(&d.category.as_str()),
            &format!("spec.ml.decisions[{i}].category"),
            format!("must be one of {}", crate::ml::ML_CATEGORIES.join(", ")),
        );
        c.ensure(
            crate::ml::FINAL_DECISIONS.contains(&d.decision.as_str()),
            &format!("spec.ml.decisions[{i}].decision"),
            format!("must be one of {}", crate::ml::FINAL_DECISIONS.join(", ")),
        );
    }
    if let Some(shadow) = &m.shadow_model {
        c.ensure(
            shadow.file.is_some(),
            "spec.ml.shadowModel.file",
            "a shadow model is an ONNX file",
        );
    }
    if let Some(model) = &m.model {
        c.ensure(
            model.file.is_none() || (model.weights.is_empty() && model.intercept == 0.0),
            "spec.ml.model.file",
            "a model is either an ONNX file or logistic weights, not both",
        );
        c.ensure(
            model.intercept.is_finite(),
            "spec.ml.model.intercept",
            "must be a finite number",
        );
        for (name, weight) in &model.weights {
            let field = format!("spec.ml.model.weights.{name}");
            c.ensure(
                ML_FEATURES.contains(&name.as_str()),
                &field,
                format!(
                    "weights may only name the features {}",
                    ML_FEATURES.join(", ")
                ),
            );
            c.ensure(weight.is_finite(), &field, "must be a finite number");
        }
    }
}

fn monitoring(c: &mut Checker, m: &MonitoringSpec) {
    c.positive(&m.window, "spec.monitoring.window");
    c.positive(&m.health_window, "spec.monitoring.healthWindow");
    c.positive(&m.idle_timeout, "spec.monitoring.idleTimeout");
    let a = &m.alerts;
    let p = "spec.monitoring.alerts";
    c.ratio(
        a.critical_rejection_rate,
        &format!("{p}.criticalRejectionRate"),
    );
    c.ratio(a.high_rejection_rate, &format!("{p}.highRejectionRate"));
    c.ratio(a.medium_rejection_rate, &format!("{p}.mediumRejectionRate"));
    c.ratio(a.high_risk_ratio, &format!("{p}.highRiskRatio"));
    c.ratio(
        a.high_risk_ratio_message,
        &format!("{p}.highRiskRatioMessage"),
    );
    c.ensure(
        a.critical_rejection_rate >= a.high_rejection_rate
            && a.high_rejection_rate >= a.medium_rejection_rate,
        &format!("{p}.highRejectionRate"),
        "rejection rates must be ordered criticalRejectionRate >= highRejectionRate >= mediumRejectionRate",
    );
    c.int_min(a.critical_latency_ms, 0, &format!("{p}.criticalLatencyMs"));
    c.int_min(a.high_latency_ms, 0, &format!("{p}.highLatencyMs"));
    c.int_min(a.medium_latency_ms, 0, &format!("{p}.mediumLatencyMs"));
    c.ensure(
        a.critical_latency_ms >= a.high_latency_ms && a.high_latency_ms >= a.medium_latency_ms,
        &format!("{p}.highLatencyMs"),
        "latencies must be ordered criticalLatencyMs >= highLatencyMs >= mediumLatencyMs",
    );
}

fn sinks(c: &mut Checker, s: &SinksSpec) {
    sink(c, &s.decisions, "spec.sinks.decisions");
    for (sink_spec, name) in [
        (&s.dead_letters, "deadLetters"),
        (&s.alerts, "alerts"),
        (&s.metrics, "metrics"),
        (&s.audit, "audit"),
    ] {
        if let Some(spec) = sink_spec {
            sink(c, spec, &format!("spec.sinks.{name}"));
        }
    }
}

fn sink(c: &mut Checker, s: &SinkSpec, field: &str) {
    c.ensure(
        s.kind().is_some(),
        field,
        "set exactly one of kafka, file or stdout",
    );
    if let Some(k) = &s.kafka {
        topic(c, &k.topic, &format!("{field}.kafka.topic"));
    }
    if let Some(f) = &s.file {
        c.non_empty(&f.path, &format!("{field}.file.path"));
    }
}

fn state(c: &mut Checker, s: &StateSpec) {
    c.non_empty(&s.path, "spec.state.path");
    c.ensure(
        is_quantity(&s.volume_size.0),
        "spec.state.volumeSize",
        format!(
            "{:?} is not a size: write e.g. 10Gi or 500Mi",
            s.volume_size.0
        ),
    );
    if let Some(class) = &s.storage_class_name {
        c.non_empty(class, "spec.state.storageClassName");
    }
}

/// A Kubernetes quantity as used for volume sizes: a number and an optional suffix.
fn is_quantity(text: &str) -> bool {
    const SUFFIXES: [&str; 13] = [
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E", "",
    ];
    SUFFIXES.iter().any(|suffix| {
        text.strip_suffix(suffix).is_some_and(|number| {
            !number.is_empty()
                && number.chars().all(|ch| ch.is_ascii_digit() || ch == '.')
                && number.chars().filter(|ch| *ch == '.').count() <= 1
                && number.chars().any(|ch| ch.is_ascii_digit())
        })
    })
}

fn storage(c: &mut Checker, s: &StorageSpec, field: &str) {
    c.ensure(
        s.kind().is_some(),
        field,
        "set exactly one of storage.path or storage.s3",
    );
    if let Some(path) = &s.path {
        c.non_empty(path, &format!("{field}.path"));
    }
    if let Some(s3) = &s.s3 {
        c.ensure(
            (3..=63).contains(&s3.bucket.len()),
            &format!("{field}.s3.bucket"),
            "must be 3 to 63 characters",
        );
        if let Some(secret) = &s3.credentials_secret_ref {
            c.non_empty(
                &secret.name,
                &format!("{field}.s3.credentialsSecretRef.name"),
            );
        }
    }
}

fn checkpoints(c: &mut Checker, cp: &CheckpointSpec) {
    c.positive(&cp.interval, "spec.checkpoints.interval");
    c.ensure(
        cp.min_pause.as_std() <= cp.interval.as_std(),
        "spec.checkpoints.minPause",
        format!(
            "minPause must not be longer than interval (got {} and {})",
            cp.min_pause, cp.interval
        ),
    );
    storage(c, &cp.storage, "spec.checkpoints.storage");
    c.int_range(cp.retain.into(), 1, 100, "spec.checkpoints.retain");
}

fn savepoints(c: &mut Checker, sp: &SavepointSpec) {
    storage(c, &sp.storage, "spec.savepoints.storage");
    if let Some(schedule) = &sp.schedule {
        c.positive(schedule, "spec.savepoints.schedule");
    }
    c.int_range(sp.max_count.into(), 1, 1000, "spec.savepoints.maxCount");
    c.positive(&sp.max_age, "spec.savepoints.maxAge");
}

fn autoscaler(c: &mut Checker, a: &AutoscalerSpec) {
    c.int_min(a.min_replicas.into(), 1, "spec.autoscaler.minReplicas");
    c.int_min(a.max_replicas.into(), 1, "spec.autoscaler.maxReplicas");
    c.ensure(
        a.min_replicas <= a.max_replicas,
        "spec.autoscaler.minReplicas",
        format!(
            "minReplicas must not be greater than maxReplicas (got {} and {})",
            a.min_replicas, a.max_replicas
        ),
    );
    c.ensure(
        a.target_utilization.is_finite()
            && a.target_utilization > 0.0
            && a.target_utilization <= 1.0,
        "spec.autoscaler.targetUtilization",
        "targetUtilization must be greater than 0 and at most 1",
    );
    c.positive(
        &a.stabilization_window,
        "spec.autoscaler.stabilizationWindow",
    );
    c.positive(&a.catch_up_duration, "spec.autoscaler.catchUpDuration");
}

fn restart_policy(c: &mut Checker, r: &RestartPolicySpec) {
    c.ratio(
        r.error_rate_threshold,
        "spec.restartPolicy.errorRateThreshold",
    );
    c.positive(&r.window, "spec.restartPolicy.window");
    c.int_min(r.max_restarts.into(), 0, "spec.restartPolicy.maxRestarts");
}

fn secrets(c: &mut Checker, s: &SecretsSpec) {
    key_ref(
        c,
        s.encryption_key_ref.as_ref(),
        "spec.secrets.encryptionKeyRef",
    );
    key_ref(c, s.hmac_key_ref.as_ref(), "spec.secrets.hmacKeyRef");
}

fn key_ref(c: &mut Checker, selector: Option<&SecretKeySelector>, field: &str) {
    if let Some(selector) = selector {
        c.non_empty(&selector.name, &format!("{field}.name"));
        c.non_empty(&selector.key, &format!("{field}.key"));
    }
}
