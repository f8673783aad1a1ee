//! The owned partitions' high watermarks, read once a second by a background
//! thread so that computing lag never blocks the processing loop on a broker
//! round trip (a slow or restarting broker would otherwise stall decisions).

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use riskpipe_crds::KafkaSource;

use super::clients::{self, KafkaSecurity};

/// The latest high watermark seen per owned partition (same order as the
/// owned list); `None` until the broker has answered once.
pub struct Watermarks {
    highs: Arc<Mutex<Vec<Option<i64>>>>,
}

impl Watermarks {
    /// Starts the watcher thread; it ends when the returned value is dropped.
    pub fn watch(source: &KafkaSource, security: &KafkaSecurity, owned: &[i32]) -> Result<Self> {
        let client: BaseConsumer = clients::base_config(source, security)
            .create()
            .context("creating the watermark reader")?;
        let highs = Arc::new(Mutex::new(vec![None; owned.len()]));
        let weak: Weak<Mutex<Vec<Option<i64>>>> = Arc::downgrade(&highs);
        let (topic, owned) = (source.topic.clone(), owned.to_vec());
        std::thread::Builder::new()
            .name("watermarks".into())
            .spawn(move || {
                while let Some(highs) = weak.upgrade() {
                    for (i, p) in owned.iter().enumerate() {
                        if let Ok((_, high)) =
                            client.fetch_watermarks(&topic, *p, Duration::from_secs(1))
                            && let Ok(mut h) = highs.lock()
                        {
                            h[i] = Some(high);
                        }
                    }
                    drop(highs);
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
            .context("starting the watermark thread")?;
        Ok(Watermarks { highs })
    }

    /// The latest high watermark of the `i`-th owned partition.
    pub fn high(&self, i: usize) -> Option<i64> {
        self.highs
            .lock()
            .ok()
            .and_then(|h| h.get(i).copied().flatten())
    }
}
