//! Checks the CRD schema and its CEL rules cannot make: those that need the input
//! topic's partition count. The spec's own [`validate`](riskpipe_crds::RiskPipelineSpec::validate)
//! runs first (it repeats the CEL rules, for objects admitted before a rule existed).

use riskpipe_crds::{RiskPipelineSpec, ValidationError};

/// What the operator knows of the input topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicInfo {
    /// The source is not Kafka, or the topic could not be asked about (the check is
    /// skipped rather than blocking a deployment on a broker outage).
    Unknown,
    /// The topic does not exist.
    Missing,
    /// The topic's partition count.
    Partitions(i32),
}

/// Every problem with `spec`, each naming its field and what to fix.
pub fn validate(spec: &RiskPipelineSpec, topic: &TopicInfo) -> Vec<ValidationError> {
    let mut errors = spec.validate().err().unwrap_or_default();
    let topic_name = spec
        .source
        .kafka
        .as_ref()
        .map(|k| k.topic.as_str())
        .unwrap_or_default();
    match topic {
        TopicInfo::Unknown => {}
        TopicInfo::Missing => errors.push(ValidationError {
            field: "spec.source.kafka.topic".into(),
            message: format!(
                "topic {topic_name:?} does not exist on the brokers; create it (keyed by user_id) or fix the name"
            ),
        }),
        TopicInfo::Partitions(partitions) => {
            if spec.parallelism > *partitions {
                errors.push(ValidationError {
                    field: "spec.parallelism".into(),
                    message: format!(
                        "is {} but topic {topic_name:?} has {partitions} partition(s), so {} worker(s) would own none; \
                         set parallelism to at most {partitions} or add partitions to the topic",
                        spec.parallelism,
                        spec.parallelism - partitions
                    ),
                });
            }
            if spec.autoscaler.enabled && spec.autoscaler.max_replicas > *partitions {
                errors.push(ValidationError {
                    field: "spec.autoscaler.maxReplicas".into(),
                    message: format!(
                        "is {} but topic {topic_name:?} has {partitions} partition(s); set maxReplicas to at most {partitions}",
                        spec.autoscaler.max_replicas
                    ),
                });
            }
        }
    }
    errors
}

/// One message listing every problem, for a condition or an Event.
pub fn message(errors: &[ValidationError]) -> String {
    let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
    format!(
        "the spec is invalid and was not applied; the workers keep their last valid configuration. Fix: {}",
        list.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use riskpipe_crds::SourceSpec;

    use super::*;

    fn spec(parallelism: i32) -> RiskPipelineSpec {
        let mut s = RiskPipelineSpec::with_source(SourceSpec::kafka());
        s.parallelism = parallelism;
        s
    }

    #[test]
    fn parallelism_above_partitions_names_both_numbers() {
        let errors = validate(&spec(6), &TopicInfo::Partitions(4));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "spec.parallelism");
        assert!(errors[0].message.contains("is 6"), "{}", errors[0].message);
        assert!(errors[0].message.contains("4 partition(s)"));
        assert!(validate(&spec(4), &TopicInfo::Partitions(4)).is_empty());
    }

    #[test]
    fn autoscaler_max_is_checked_only_when_enabled() {
        let mut s = spec(2);
        s.autoscaler.max_replicas = 8;
        assert!(validate(&s, &TopicInfo::Partitions(4)).is_empty());
        s.autoscaler.enabled = true;
        let errors = validate(&s, &TopicInfo::Partitions(4));
        assert_eq!(errors[0].field, "spec.autoscaler.maxReplicas");
    }

    #[test]
    fn missing_topic_and_spec_rules_are_reported_together() {
        let mut s = spec(1);
        s.autoscaler.min_replicas = 5;
        s.autoscaler.max_replicas = 2;
        let errors = validate(&s, &TopicInfo::Missing);
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"spec.source.kafka.topic"), "{fields:?}");
        assert!(
            fields.iter().any(|f| f.contains("minReplicas")),
            "{fields:?}"
        );
        assert!(message(&errors).contains("Fix:"));
    }

    #[test]
    fn unknown_topic_skips_the_partition_checks() {
        assert!(validate(&spec(100), &TopicInfo::Unknown).is_empty());
    }
}
