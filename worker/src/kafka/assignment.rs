//! Static partition assignment: which input partitions a worker owns, from its
//! ordinal and the replica count (as Flink's Kafka source assigns splits). No
//! consumer-group rebalancing is involved.

/// A pod name without a `-N` ordinal suffix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pod name {0:?} does not end in -N (a StatefulSet ordinal); pass --ordinal instead")]
pub struct NoOrdinal(pub String);

/// The ordinal of a StatefulSet pod (`payments-worker-2` → 2).
pub fn ordinal_from_pod_name(name: &str) -> Result<u32, NoOrdinal> {
    name.rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .ok_or_else(|| NoOrdinal(name.to_owned()))
}

/// The partitions worker `ordinal` of `replicas` owns: `p % replicas == ordinal`.
pub fn owned_partitions(partition_count: i32, replicas: u32, ordinal: u32) -> Vec<i32> {
    let replicas = replicas.max(1) as i32;
    (0..partition_count)
        .filter(|p| p % replicas == ordinal as i32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_from_pod_names() {
        assert_eq!(ordinal_from_pod_name("payments-worker-0"), Ok(0));
        assert_eq!(ordinal_from_pod_name("payments-worker-12"), Ok(12));
        assert!(ordinal_from_pod_name("payments").is_err());
        assert!(ordinal_from_pod_name("payments-worker-x").is_err());
    }

    #[test]
    fn every_partition_has_exactly_one_owner() {
        for replicas in 1..=9 {
            let mut all: Vec<i32> = (0..replicas)
                .flat_map(|o| owned_partitions(8, replicas, o))
                .collect();
            all.sort_unstable();
            assert_eq!(all, (0..8).collect::<Vec<_>>(), "replicas {replicas}");
        }
        assert_eq!(owned_partitions(8, 3, 1), [1, 4, 7]);
    }
}
