//! The seed's §13 transaction generator, with injected fraud patterns that carry
//! ground-truth labels, and the matching dimension tables.
//!
//! Everything derives from one random seed, so a run is reproducible: the same
//! seed gives the same transactions, profiles and labels. Event time is simulated:
//! it starts at a fixed instant and advances `1 / rate` per transaction (20
//! transactions per simulated second when the rate is unlimited), so windows and
//! hours behave as in a live stream however fast the generator runs.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use riskpipe_engine::Cents;
use riskpipe_engine::dimensions::{Dimensions, HistoryRow, MerchantProfile, UserProfile};
use riskpipe_engine::timefmt::{Zone, format_time};
use rust_decimal::Decimal;

/// 2024-01-01 08:00:00 UTC: where simulated event time starts.
const START_MS: i64 = 1_704_096_000_000;

/// Transactions per simulated second when the generator runs unpaced: a day of
/// event time holds about 1.7 million transactions, so windows, hours and the
/// night-time pattern behave as in a live stream.
const SIMULATED_RATE: u32 = 20;

const LOCATIONS: [&str; 12] = [
    "Taipei",
    "Tokyo",
    "Singapore",
    "Hong Kong",
    "Seoul",
    "London",
    "New York",
    "Paris",
    "Sydney",
    "Berlin",
    "Toronto",
    "Dubai",
];
const HIGH_RISK_LOCATIONS: [&str; 2] = ["高風險國家1", "高風險國家2"];
const TYPES: [&str; 4] = ["PURCHASE", "TRANSFER", "WITHDRAWAL", "PAYMENT"];

/// The fraud patterns the generator injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FraudPattern {
    /// A burst of tiny amounts across merchants (testing stolen card numbers).
    CardTesting,
    /// New device, new IP, another location and a large amount.
    AccountTakeover,
    /// Many transactions in minutes from several devices.
    VelocityBurst,
    /// A large amount in the small hours.
    NightLargeAmount,
    /// A blacklisted user.
    BlacklistedEntity,
}

impl FraudPattern {
    /// Every pattern.
    pub const ALL: [FraudPattern; 5] = [
        FraudPattern::CardTesting,
        FraudPattern::AccountTakeover,
        FraudPattern::VelocityBurst,
        FraudPattern::NightLargeAmount,
        FraudPattern::BlacklistedEntity,
    ];

    /// A stable name for summaries.
    pub fn name(self) -> &'static str {
        match self {
            FraudPattern::CardTesting => "card_testing",
            FraudPattern::AccountTakeover => "account_takeover",
            FraudPattern::VelocityBurst => "velocity_burst",
            FraudPattern::NightLargeAmount => "night_large_amount",
            FraudPattern::BlacklistedEntity => "blacklisted_entity",
        }
    }
}

/// Generator settings (from `spec.source.generator`).
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    /// Distinct users (seed: 1,000,000).
    pub users: u32,
    /// Distinct merchants (seed: 10,000).
    pub merchants: u32,
    /// Transactions per second of event time; 0 = as fast as possible.
    pub rate_per_second: u32,
    /// Transactions to produce; 0 = unbounded.
    pub count: u64,
    /// Random seed.
    pub seed: u64,
    /// Share of fraud episodes among emitted transactions.
    pub fraud_ratio: f64,
}

/// One generated transaction: its JSON and its ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// The record as it would arrive on the input topic.
    pub json: Vec<u8>,
    /// The transaction id.
    pub transaction_id: i64,
    /// The fraud pattern it belongs to, or `None` for normal traffic.
    pub label: Option<FraudPattern>,
}

struct Draft {
    emit_at: i64,
    time: i64,
    user: i64,
    merchant: i64,
    cents: i64,
    ip: String,
    device: String,
    location: String,
    label: Option<FraudPattern>,
}

/// The transaction stream.
pub struct Generator {
    cfg: GeneratorConfig,
    rng: SmallRng,
    step_ms: f64,
    clock: f64,
    next_id: i64,
    emitted: u64,
    pending: BinaryHeap<Reverse<(i64, u64)>>,
    drafts: Vec<Option<Draft>>,
    free: Vec<u64>,
    dims: std::sync::Arc<GeneratedDimensions>,
}

impl Generator {
    /// A generator and, separately, its dimension tables.
    pub fn new(cfg: GeneratorConfig) -> Self {
        let rate = if cfg.rate_per_second == 0 {
            SIMULATED_RATE
        } else {
            cfg.rate_per_second
        };
        let dims = std::sync::Arc::new(GeneratedDimensions::new(&cfg));
        Generator {
            rng: SmallRng::seed_from_u64(cfg.seed),
            step_ms: 1000.0 / f64::from(rate),
            clock: START_MS as f64,
            next_id: 1,
            emitted: 0,
            pending: BinaryHeap::new(),
            drafts: Vec::new(),
            free: Vec::new(),
            dims,
            cfg,
        }
    }

    /// The dimension tables matching this stream.
    pub fn dimensions(&self) -> std::sync::Arc<GeneratedDimensions> {
        std::sync::Arc::clone(&self.dims)
    }

    /// Simulated event time of the next transaction, ms since the epoch.
    pub fn event_clock_ms(&self) -> i64 {
        self.clock as i64
    }

    fn push(&mut self, draft: Draft) {
        let key = (draft.emit_at, self.next_draft_slot());
        let slot = key.1 as usize;
        self.drafts[slot] = Some(draft);
        self.pending.push(Reverse(key));
    }

    fn next_draft_slot(&mut self) -> u64 {
        if let Some(slot) = self.free.pop() {
            return slot;
        }
        self.drafts.push(None);
        (self.drafts.len() - 1) as u64
    }

    fn user_ip(&self, user: i64, n: u64) -> String {
        let h = mix(self.cfg.seed ^ (user as u64).wrapping_mul(31) ^ n);
        format!(
            "10.{}.{}.{}",
            (h >> 8) % 256,
            (h >> 16) % 256,
            (h >> 24) % 254 + 1
        )
    }

    fn user_device(&self, user: i64, n: u64) -> String {
        format!(
            "dev-{:012x}",
            mix(self.cfg.seed ^ (user as u64) << 8 ^ n) & 0xffff_ffff_ffff
        )
    }

    fn normal(&mut self, time: i64) -> Draft {
        let user = i64::from(self.rng.random_range(0..self.cfg.users));
        let merchant = i64::from(self.rng.random_range(0..self.cfg.merchants));
        let profile = self.dims.user_profile(user);
        let avg = profile.avg_daily_amount.map_or(200_000, |c| c.0);
        // Most purchases are modest against the user's usual spend.
        let cents = self.rng.random_range(100..(avg * 2).max(200));
        let device_n = u64::from(self.rng.random_bool(0.1));
        let ip_n = u64::from(self.rng.random_bool(0.15));
        let location = if self.rng.random_bool(0.97) {
            self.dims.home(user)
        } else {
            LOCATIONS[self.rng.random_range(0..LOCATIONS.len())]
        };
        Draft {
            emit_at: time,
            time,
            user,
            merchant,
            cents,
            ip: self.user_ip(user, ip_n),
            device: self.user_device(user, device_n),
            location: location.to_owned(),
            label: None,
        }
    }

    fn episode(&mut self, time: i64) {
        let pattern = FraudPattern::ALL[self.rng.random_range(0..FraudPattern::ALL.len())];
        let user = i64::from(self.rng.random_range(0..self.cfg.users));
        let home = self.dims.home(user).to_owned();
        let label = Some(pattern);
        match pattern {
            FraudPattern::CardTesting => {
                for i in 0..self.rng.random_range(4..8) {
                    let at = time + i * self.rng.random_range(5_000..40_000);
                    let draft = Draft {
                        emit_at: at,
                        time: at,
                        user,
                        merchant: i64::from(self.rng.random_range(0..self.cfg.merchants)),
                        cents: self.rng.random_range(100..2_000),
                        ip: self.user_ip(user, 900 + i as u64),
                        device: self.user_device(user, 900),
                        location: home.clone(),
                        label,
                    };
                    self.push(draft);
                }
            }
            FraudPattern::AccountTakeover => {
                let max = self
                    .dims
                    .user_profile(user)
                    .max_single_amount
                    .map_or(1_000_000, |c| c.0);
                let location = if self.rng.random_bool(0.5) {
                    HIGH_RISK_LOCATIONS[self.rng.random_range(0..2)]
                } else {
                    LOCATIONS[self.rng.random_range(0..LOCATIONS.len())]
                };
                let draft = Draft {
                    emit_at: time,
                    time,
                    user,
                    merchant: i64::from(self.rng.random_range(0..self.cfg.merchants)),
                    cents: max * self.rng.random_range(3..8),
                    ip: self.user_ip(user, 700),
                    device: self.user_device(user, 700),
                    location: location.to_owned(),
                    label,
                };
                self.push(draft);
            }
            FraudPattern::VelocityBurst => {
                let avg = self
                    .dims
                    .user_profile(user)
                    .avg_daily_amount
                    .map_or(200_000, |c| c.0);
                for i in 0..self.rng.random_range(8..14) {
                    let at = time + i * self.rng.random_range(20_000..120_000);
                    let draft = Draft {
                        emit_at: at,
                        time: at,
                        user,
                        merchant: i64::from(self.rng.random_range(0..self.cfg.merchants)),
                        cents: self.rng.random_range(avg / 4..avg.max(2)),
                        ip: self.user_ip(user, 800 + i as u64),
                        device: self.user_device(user, 800 + (i as u64 % 5)),
                        location: home.clone(),
                        label,
                    };
                    self.push(draft);
                }
            }
            FraudPattern::NightLargeAmount => {
                let avg = self
                    .dims
                    .user_profile(user)
                    .avg_daily_amount
                    .map_or(200_000, |c| c.0);
                // A night-time transaction of the current (or previous) day that
                // arrives now: late in event time, as delayed card batches are.
                let day = time.div_euclid(86_400_000) * 86_400_000;
                let mut night = day + 2 * 3_600_000 + self.rng.random_range(0..4 * 3_600_000);
                if night > time {
                    night -= 86_400_000;
                }
                let draft = Draft {
                    emit_at: time,
                    time: night,
                    user,
                    merchant: i64::from(self.rng.random_range(0..self.cfg.merchants)),
                    cents: avg * self.rng.random_range(11..30),
                    ip: self.user_ip(user, 0),
                    device: self.user_device(user, 0),
                    location: home,
                    label,
                };
                self.push(draft);
            }
            FraudPattern::BlacklistedEntity => {
                let bad = self.dims.blacklisted_user(self.rng.random_range(0..1000));
                let draft = Draft {
                    emit_at: time,
                    time,
                    user: bad,
                    merchant: i64::from(self.rng.random_range(0..self.cfg.merchants)),
                    cents: self.rng.random_range(1_000..500_000),
                    ip: self.user_ip(bad, 0),
                    device: self.user_device(bad, 0),
                    location: self.dims.home(bad).to_owned(),
                    label,
                };
                self.push(draft);
            }
        }
    }

    fn render(&mut self, d: Draft) -> Generated {
        // A blacklisted user's transaction is fraud whichever path produced it.
        let label = d.label.or_else(|| {
            self.dims
                .user_blacklisted(d.user)
                .then_some(FraudPattern::BlacklistedEntity)
        });
        let id = self.next_id;
        self.next_id += 1;
        let kind = TYPES[(mix(id as u64) % TYPES.len() as u64) as usize];
        let json = format!(
            r#"{{"transaction_id":{id},"user_id":{},"amount":{},"merchant_id":{},"transaction_type":"{kind}","transaction_time":"{}","ip_address":"{}","device_id":"{}","location":"{}"}}"#,
            d.user,
            Cents(d.cents),
            d.merchant,
            format_time(d.time, Zone::Utc),
            d.ip,
            d.device,
            d.location
        );
        Generated {
            json: json.into_bytes(),
            transaction_id: id,
            label,
        }
    }
}

impl Iterator for Generator {
    type Item = Generated;

    fn next(&mut self) -> Option<Generated> {
        if self.cfg.count > 0 && self.emitted >= self.cfg.count {
            return None;
        }
        self.emitted += 1;
        let now = self.clock as i64;
        if let Some(Reverse((time, slot))) = self.pending.peek().copied()
            && time <= now
        {
            self.pending.pop();
            self.free.push(slot);
            if let Some(draft) = self.drafts[slot as usize].take() {
                return Some(self.render(draft));
            }
        }
        self.clock += self.step_ms;
        if self
            .rng
            .random_bool(self.cfg.fraud_ratio.clamp(0.0, 1.0) / 4.0)
        {
            self.episode(now);
        }
        let draft = self.normal(now);
        Some(self.render(draft))
    }
}

/// SplitMix64: a fast, well-mixed hash for deriving per-entity attributes.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The generator's dimension tables: a profile for every user and merchant,
/// a baseline history row for every (user, date, hour), and blacklists.
#[derive(Debug, Clone)]
pub struct GeneratedDimensions {
    seed: u64,
    users: Vec<UserProfile>,
    merchants: Vec<MerchantProfile>,
    blacklist_users: Vec<i64>,
    blacklist_set: ahash::AHashSet<i64>,
}

impl GeneratedDimensions {
    fn new(cfg: &GeneratorConfig) -> Self {
        let seed = cfg.seed;
        let levels = ["LOW", "MEDIUM", "HIGH"];
        let users = (0..i64::from(cfg.users))
            .map(|u| {
                let h = mix(seed ^ 0x5553 ^ (u as u64));
                let risk = match h % 100 {
                    0..90 => (h >> 8) % 20,
                    90..98 => 20 + (h >> 8) % 25,
                    _ => 45 + (h >> 8) % 30,
                } as i64;
                let avg = 50_000 + ((h >> 20) % 450_000) as i64;
                UserProfile {
                    risk_score: Some(risk),
                    risk_level: Some(
                        levels[if risk >= 60 {
                            2
                        } else if risk >= 30 {
                            1
                        } else {
                            0
                        }]
                        .to_owned(),
                    ),
                    credit_rating: Some(["A", "B", "C"][((h >> 40) % 3) as usize].to_owned()),
                    account_age_days: Some(((h >> 44) % 3000) as i64),
                    avg_daily_amount: Some(Cents(avg)),
                    max_single_amount: Some(Cents(avg * 3)),
                    suspicious_activity_count: Some(((h >> 52) % 3) as i64),
                }
            })
            .collect();
        let merchants = (0..i64::from(cfg.merchants))
            .map(|m| {
                let h = mix(seed ^ 0x4d45 ^ (m as u64));
                let always_open = h.is_multiple_of(4);
                MerchantProfile {
                    merchant_category: Some(
                        ["retail", "travel", "gaming", "food"][((h >> 8) % 4) as usize].to_owned(),
                    ),
                    risk_level: Some(
                        if h.is_multiple_of(100) {
                            "HIGH"
                        } else if h.is_multiple_of(5) {
                            "MEDIUM"
                        } else {
                            "LOW"
                        }
                        .to_owned(),
                    ),
                    fraud_rate: Some(Decimal::new(((h >> 16) % 200) as i64, 4)),
                    avg_transaction_amount: Some(Cents(10_000 + ((h >> 24) % 200_000) as i64)),
                    business_hours_start: Some(if always_open {
                        0
                    } else {
                        6 + ((h >> 32) % 4) as u8
                    }),
                    business_hours_end: Some(if always_open {
                        23
                    } else {
                        20 + ((h >> 36) % 4) as u8
                    }),
                }
            })
            .collect();
        let blacklist_users: Vec<i64> = (0..(u64::from(cfg.users) / 1000).clamp(1, 1000))
            .map(|i| (mix(seed ^ 0x424c ^ i) % u64::from(cfg.users.max(1))) as i64)
            .collect();
        let blacklist_set = blacklist_users.iter().copied().collect();
        GeneratedDimensions {
            seed,
            users,
            merchants,
            blacklist_users,
            blacklist_set,
        }
    }

    fn user_profile(&self, user: i64) -> &UserProfile {
        &self.users[user as usize]
    }

    fn home(&self, user: i64) -> &'static str {
        LOCATIONS[(mix(self.seed ^ 0x484f ^ user as u64) % LOCATIONS.len() as u64) as usize]
    }

    fn blacklisted_user(&self, i: usize) -> i64 {
        self.blacklist_users[i % self.blacklist_users.len()]
    }
}

impl Dimensions for GeneratedDimensions {
    fn user(&self, user_id: i64) -> Option<&UserProfile> {
        usize::try_from(user_id)
            .ok()
            .and_then(|i| self.users.get(i))
    }
    fn merchant(&self, merchant_id: i64) -> Option<&MerchantProfile> {
        usize::try_from(merchant_id)
            .ok()
            .and_then(|i| self.merchants.get(i))
    }
    fn history(&self, user_id: i64, _date_days: i32, _hour: u8) -> Option<HistoryRow> {
        let profile = self.user(user_id)?;
        let avg = profile.avg_daily_amount?;
        Some(HistoryRow {
            total_amount: Some(Cents(avg.0 * 2)),
            transaction_count: Some(2),
            avg_amount: Some(avg),
            max_amount: profile.max_single_amount,
            distinct_merchants: Some(2),
            most_frequent_merchant: None,
        })
    }
    fn user_blacklisted(&self, user_id: i64) -> bool {
        self.blacklist_set.contains(&user_id)
    }
    fn merchant_blacklisted(&self, _merchant_id: i64) -> bool {
        false
    }
    fn ip_blacklisted(&self, _ip: &str) -> bool {
        false
    }
    fn location_high_risk(&self, location: &str) -> bool {
        HIGH_RISK_LOCATIONS.contains(&location)
    }
}
