//! The riskpipe risk engine: what SPEC.md §1–§8 compute, as pure code.
//!
//! It knows nothing of Kafka, files or RocksDB: the caller parses a record with
//! [`parse_transaction`], hands it to [`Engine::decide`] with the dimension lookups
//! and a [`StateStore`], and writes the returned [`Decision`] where it belongs.

pub mod amount;
pub mod codec;
pub mod config;
pub mod decision;
pub mod dimensions;
pub mod event_time;
pub mod features;
pub mod merchant;
pub mod model;
pub mod rules;
pub mod store;
pub mod timefmt;
pub mod transaction;
pub mod window;

use ahash::AHashSet;

pub use amount::{Cents, Ratio};
pub use config::EngineConfig;
pub use decision::{Decision, DecisionWriter};
pub use dimensions::{
    BatchKeys, BatchView, Dimensions, HistoryRow, IpRange, MerchantProfile, StaticDimensions,
    Unavailable, UserProfile,
};
pub use event_time::TimeReference;
pub use rules::FinalDecision;
pub use store::{MemoryStore, StateStore};
pub use timefmt::Zone;
pub use transaction::{InvalidRecord, Transaction, parse_transaction};

use decision::ModelScore;
use features::{
    ExtraInputs, MlFeatures, ModelContext, ModelFeatures, mean_and_stddev, risk_category,
};
use merchant::MerchantEntry;
use rules::{Blacklist, DecisionInputs, Geo};
use window::{Entry, value_hash};

/// The engine for one pipeline configuration.
#[derive(Debug, Clone)]
pub struct Engine {
    cfg: EngineConfig,
    high_risk_locations: AHashSet<String>,
}

impl Engine {
    /// An engine with the given configuration.
    pub fn new(cfg: EngineConfig) -> Self {
        let high_risk_locations = cfg.decision.high_risk_locations.iter().cloned().collect();
        Engine {
            cfg,
            high_risk_locations,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Decides one transaction and updates the user's and merchant's state.
    ///
    /// `decided_at_ms` and `processing_latency_ms` of the result are left at 0 for
    /// the caller, who owns the clock.
    pub fn decide<S: StateStore, D: Dimensions + ?Sized>(
        &self,
        tx: &Transaction,
        dims: &D,
        store: &mut S,
    ) -> Result<Decision, S::Error> {
        let cfg = &self.cfg;
        let local = timefmt::local_fields(tx.event_time_ms, cfg.zone);
        let user = dims.user(tx.user_id);
        let merchant = dims.merchant(tx.merchant_id);
        let history = dims.history(tx.user_id, local.date_days, local.hour);

        // §3 scoring.
        let base_risk_score = user.and_then(|u| u.risk_score).unwrap_or(0);
        let amount_anomaly_score = rules::amount_anomaly_score(tx.amount, user, &cfg.scoring);
        let time_anomaly_score = rules::time_anomaly_score(local.hour, merchant, &cfg.scoring);
        let total_risk_score = base_risk_score + amount_anomaly_score + time_anomaly_score;

        // §4 windows.
        let location_hash = value_hash(tx.location.as_deref());
        let entry = Entry {
            time: tx.event_time_ms,
            id: tx.transaction_id,
            cents: tx.amount.0,
            ip: value_hash(tx.ip_address.as_deref()),
            device: value_hash(tx.device_id.as_deref()),
            location: location_hash,
        };
        let w = store
            .user(tx.user_id, &cfg.windows)?
            .observe(entry, &cfg.windows);
        let merchant_window = store.merchant(tx.merchant_id, &cfg.windows)?.observe(
            MerchantEntry {
                time: tx.event_time_ms,
                id: tx.transaction_id,
                cents: tx.amount.0,
            },
            cfg.windows.merchant_feature_ms,
            cfg.windows.merchant_feature_ms + cfg.windows.allowed_lateness_ms,
        );

        // §5 history comparison.
        let frequency = rules::frequency(w.short.count, history.as_ref(), &cfg.history);
        let amount_label = rules::amount_label(tx.amount, history.as_ref(), &cfg.history);
        let access = rules::access(w.distinct_ips, w.distinct_devices, &cfg.history);

        // §6 decision.
        let blacklist = if dims.user_blacklisted(tx.user_id) {
            Blacklist::User
        } else if dims.merchant_blacklisted(tx.merchant_id) {
            Blacklist::Merchant
        } else if tx
            .ip_address
            .as_deref()
            .is_some_and(|ip| dims.ip_blacklisted(ip))
        {
            Blacklist::Ip
        } else {
            Blacklist::None
        };
        let geo = match tx.location.as_deref() {
            Some(loc) if self.high_risk_locations.contains(loc) || dims.location_high_risk(loc) => {
                Geo::High
            }
            Some(_)
                if w.previous
                    .is_some_and(|p| p.location != 0 && p.location != location_hash) =>
            {
                Geo::LocationChange
            }
            _ => Geo::Normal,
        };
        let user_risk_level = user.and_then(|u| u.risk_level.clone());
        let merchant_risk_level = merchant.and_then(|m| m.risk_level.clone());
        let inputs = DecisionInputs {
            total_risk_score,
            blacklist,
            user_risk_level: user_risk_level.as_deref(),
            merchant_risk_level: merchant_risk_level.as_deref(),
            frequency,
            amount: amount_label,
            access,
        };

        // §8 features.
        let (user_avg_amount_30d, user_amount_stddev_30d) =
            mean_and_stddev(w.feature.count, w.feature.cents, w.feature.squares);
        let (merchant_avg_amount_7d, _) =
            mean_and_stddev(merchant_window.count, merchant_window.cents, 0);
        let previous = w.previous;
        let features = MlFeatures {
            user_avg_amount_30d,
            user_amount_stddev_30d,
            merchant_avg_amount_7d,
            hour_of_day: local.hour,
            day_of_week: local.day_of_week,
            time_since_last_txn: previous
                .map(|p| tx.event_time_ms.div_euclid(1000) - p.time.div_euclid(1000)),
            amount_ratio_to_prev: previous
                .filter(|p| p.cents != 0)
                .map(|p| tx.amount.0 as f64 / p.cents as f64),
        };
        let context = ModelContext {
            amount: tx.amount.as_f64(),
            night: rules::hour_in(
                local.hour,
                cfg.scoring.night_start_hour,
                cfg.scoring.night_end_hour,
            ),
            total_risk_score,
            txn_count_1h: w.short.count,
            distinct_ip_24h: w.distinct_ips,
            distinct_device_24h: w.distinct_devices,
            small_amount_pattern: w.small_amount_pattern,
        };
        let model_features = ModelFeatures::compute(
            &features,
            &context,
            &ExtraInputs {
                base_risk_score,
                amount_anomaly_score,
                time_anomaly_score,
                amount_cents: tx.amount.0,
                txn_amount_1h_cents: w.short.cents,
                feature_count: w.feature.count,
                feature_cents: w.feature.cents,
                device_count_24h: w.device_count,
                ip_count_24h: w.ip_count,
                location_change: geo == Geo::LocationChange,
                high_geo_risk: geo == Geo::High,
                blacklisted: blacklist != Blacklist::None,
                user_risk_level_high: user_risk_level.as_deref() == Some("HIGH"),
                merchant_risk_level_high: merchant_risk_level.as_deref() == Some("HIGH"),
                merchant_fraud_rate: merchant
                    .and_then(|m| m.fraud_rate)
                    .and_then(|r| r.to_string().parse().ok()),
            },
        );
        let category = |p: f64| risk_category(p, cfg.ml.high, cfg.ml.medium, cfg.ml.low);
        let score = |m: &std::sync::Arc<model::OnnxModel>, explain: bool| {
            let prediction = if explain {
                m.predict(&model_features)
            } else {
                model::Prediction {
                    probability: m.probability(&model_features),
                    top_features: Vec::new(),
                }
            };
            ModelScore {
                model: m.clone(),
                probability: prediction.probability,
                category: prediction.probability.map(category),
                top_features: prediction.top_features,
            }
        };
        let (ml_risk_probability, ml_risk_category, model_score) = match &cfg.ml.onnx {
            _ if !cfg.ml.enabled => (None, None, None),
            Some(m) => {
                let s = score(m, true);
                (s.probability, s.category, Some(s))
            }
            None => {
                let p = cfg.ml.model.predict(&features, &context);
                (Some(p), Some(category(p)), None)
            }
        };
        let shadow = match &cfg.ml.shadow {
            Some(m) if cfg.ml.enabled => Some(score(m, false)),
            _ => None,
        };

        let rules_decision = rules::final_decision(&inputs, &cfg.decision);
        let (risk_reasons, mut reason_codes) = rules::reasons(&inputs, &cfg.decision);
        if geo != Geo::Normal {
            reason_codes.push(geo.as_str());
        }
        let (final_decision, by_model) =
            rules::apply_category_rules(rules_decision, ml_risk_category, &cfg.ml.category_rules);
        if by_model {
            reason_codes.push("ML_RISK_CATEGORY");
        }

        Ok(Decision {
            transaction_id: tx.transaction_id,
            user_id: tx.user_id,
            merchant_id: tx.merchant_id,
            amount: tx.amount,
            event_time_ms: tx.event_time_ms,
            event_wall_ms: local.wall_ms,
            base_risk_score,
            amount_anomaly_score,
            time_anomaly_score,
            total_risk_score,
            user_risk_level,
            merchant_risk_level,
            merchant_fraud_rate: merchant.and_then(|m| m.fraud_rate),
            txn_count_1h: w.short.count,
            txn_amount_1h_cents: w.short.cents,
            distinct_ip_24h: w.distinct_ips,
            distinct_device_24h: w.distinct_devices,
            small_amount_pattern: w.small_amount_pattern,
            historical_avg: history.and_then(|h| h.avg_amount),
            historical_max: history.and_then(|h| h.max_amount),
            historical_count: history.and_then(|h| h.transaction_count),
            frequency_anomaly: frequency,
            amount_anomaly: amount_label,
            access_anomaly: access,
            blacklist_status: blacklist,
            geo_risk: geo,
            final_decision,
            risk_reasons,
            reason_codes,
            user_avg_amount_30d,
            user_amount_stddev_30d,
            merchant_avg_amount_7d,
            hour_of_day: local.hour,
            day_of_week: local.day_of_week,
            time_since_last_txn: features.time_since_last_txn,
            amount_ratio_to_prev: features.amount_ratio_to_prev,
            ml_risk_probability,
            ml_risk_category,
            model: model_score,
            shadow,
            features: model_features,
            decided_at_ms: 0,
            processing_latency_ms: 0.0,
        })
    }
}
