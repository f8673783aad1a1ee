//! The owned partitions' high watermarks and the topic's partition count, read
//! by a background thread (watermarks once a second, the partition count every
//! ten) so that computing lag or noticing added partitions never blocks the
//! processing loop on a broker round trip (a slow or restarting broker would
//! otherwise stall decisions).

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use riskpipe_crds::KafkaSource;

use super::clients::{self, KafkaSecurity};

/// What the watcher thread shares with the loop.
struct Seen {
    /// (partition, latest high watermark) per owned partition, in owned order.
    highs: Mutex<Vec<(i32, Option<i64>)>>,
    /// The topic's partition count as last read (0 until read).
    partitions: AtomicI32,
}

/// The latest high watermark seen per owned partition; `None` until the broker
/// has answered once.
pub struct Watermarks {
    seen: Arc<Seen>,
}

impl Watermarks {
    /// Starts the watcher thread; it ends when the returned value is dropped.
    pub fn watch(source: &KafkaSource, security: &KafkaSecurity, owned: &[i32]) -> Result<Self> {
        let client: BaseConsumer = clients::base_config(source, security)
            .create()
            .context("creating the watermark reader")?;
        let seen = Arc::new(Seen {
            highs: Mutex::new(owned.iter().map(|p| (*p, None)).collect()),
            partitions: AtomicI32::new(0),
        });
        let weak: Weak<Seen> = Arc::downgrade(&seen);
        let topic = source.topic.clone();
        std::thread::Builder::new()
            .name("watermarks".into())
            .spawn(move || {
                let mut round = 0u64;
                while let Some(seen) = weak.upgrade() {
                    let owned: Vec<i32> = seen
                        .highs
                        .lock()
                        .map(|h| h.iter().map(|(p, _)| *p).collect())
                        .unwrap_or_default();
                    for p in owned {
                        if let Ok((_, high)) =
                            client.fetch_watermarks(&topic, p, Duration::from_secs(1))
                            && let Ok(mut h) = seen.highs.lock()
                            && let Some(entry) = h.iter_mut().find(|(q, _)| *q == p)
                        {
                            entry.1 = Some(high);
                        }
                    }
                    if round.is_multiple_of(10)
                        && let Ok(md) = client.fetch_metadata(Some(&topic), Duration::from_secs(2))
                        && let Some(t) = md.topics().iter().find(|t| t.name() == topic)
                        && t.error().is_none()
                    {
                        seen.partitions
                            .store(t.partitions().len() as i32, Ordering::Relaxed);
                    }
                    round += 1;
                    drop(seen);
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
            .context("starting the watermark thread")?;
        Ok(Watermarks { seen })
    }

    /// The latest high watermark of the `i`-th owned partition.
    pub fn high(&self, i: usize) -> Option<i64> {
        self.seen
            .highs
            .lock()
            .ok()
            .and_then(|h| h.get(i).and_then(|(_, high)| *high))
    }

    /// Starts watching a partition this worker took on while running.
    pub fn add(&self, partition: i32) {
        if let Ok(mut h) = self.seen.highs.lock() {
            h.push((partition, None));
        }
    }

    /// The topic's partition count as last read; 0 until the first read.
    pub fn partition_count(&self) -> i32 {
        self.seen.partitions.load(Ordering::Relaxed)
    }
}
