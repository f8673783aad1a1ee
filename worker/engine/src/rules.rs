//! The rules of SPEC.md §3 (scoring), §5 (history comparison) and §6 (decision),
//! as small pure functions over already-looked-up values.

use crate::amount::Cents;
use crate::config::{CategoryRule, DecisionConfig, HistoryConfig, ScoringConfig};
use crate::dimensions::{HistoryRow, MerchantProfile, UserProfile};

/// Declares a label enum with its seed string.
macro_rules! labels {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }
        impl $name {
            /// The seed's label text.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }
    };
}

labels!(
    /// `frequency_anomaly` (§5).
    Frequency {
        /// More than 3× the historical count.
        High => "HIGH_FREQUENCY_ANOMALY",
        /// More than 2× the historical count.
        Medium => "MEDIUM_FREQUENCY_ANOMALY",
        /// Otherwise.
        Normal => "NORMAL_FREQUENCY",
    }
);

labels!(
    /// `amount_anomaly` (§5).
    AmountLabel {
        /// More than 2× the historical maximum.
        Extreme => "EXTREME_AMOUNT_ANOMALY",
        /// More than 10× the historical average.
        High => "HIGH_AMOUNT_ANOMALY",
        /// Deviates from the average by more than 5× the average.
        Deviation => "AMOUNT_DEVIATION_ANOMALY",
        /// Otherwise.
        Normal => "NORMAL_AMOUNT",
    }
);

labels!(
    /// `access_anomaly` (§5).
    Access {
        /// Too many distinct IPs.
        MultipleIp => "MULTIPLE_IP_RISK",
        /// Too many distinct devices.
        MultipleDevice => "MULTIPLE_DEVICE_RISK",
        /// Otherwise.
        Normal => "NORMAL_ACCESS",
    }
);

labels!(
    /// `blacklist_status` (§6).
    Blacklist {
        /// The user is blacklisted.
        User => "BLACKLIST_USER",
        /// The merchant is blacklisted.
        Merchant => "BLACKLIST_MERCHANT",
        /// The IP address is blacklisted.
        Ip => "BLACKLIST_IP",
        /// None of them.
        None => "NOT_BLACKLISTED",
    }
);

labels!(
    /// `geo_risk` (§6).
    Geo {
        /// A high-risk location.
        High => "HIGH_GEO_RISK",
        /// Differs from the user's previous location.
        LocationChange => "LOCATION_CHANGE_RISK",
        /// Otherwise.
        Normal => "NORMAL_GEO",
    }
);

labels!(
    /// `final_decision` (§6).
    FinalDecision {
        /// Refuse the transaction.
        Reject => "REJECT",
        /// Hold for an analyst.
        ManualReview => "MANUAL_REVIEW",
        /// Approve after a delay.
        DelayedApproval => "DELAYED_APPROVAL",
        /// Approve.
        Approve => "APPROVE",
    }
);

impl FinalDecision {
    /// All decisions, in rule order.
    pub const ALL: [FinalDecision; 4] = [
        FinalDecision::Reject,
        FinalDecision::ManualReview,
        FinalDecision::DelayedApproval,
        FinalDecision::Approve,
    ];

    /// 3 for REJECT … 0 for APPROVE.
    pub const fn severity(self) -> u8 {
        match self {
            FinalDecision::Reject => 3,
            FinalDecision::ManualReview => 2,
            FinalDecision::DelayedApproval => 1,
            FinalDecision::Approve => 0,
        }
    }

    /// From the seed's label text.
    pub fn parse(s: &str) -> Option<FinalDecision> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// Applies the first [`CategoryRule`] matching `category` to the rules' decision;
/// returns the decision and whether the rule changed it.
pub fn apply_category_rules(
    rules_decision: FinalDecision,
    category: Option<&str>,
    rules: &[CategoryRule],
) -> (FinalDecision, bool) {
    let Some(category) = category else {
        return (rules_decision, false);
    };
    let Some(rule) = rules.iter().find(|r| r.category == category) else {
        return (rules_decision, false);
    };
    let decided = if rule.decision.severity() > rules_decision.severity()
        || (rule.override_rules && rules_decision != FinalDecision::Reject)
    {
        rule.decision
    } else {
        rules_decision
    };
    (decided, decided != rules_decision)
}

/// `amount_anomaly_score` (§3). A NULL profile column makes its branch false.
pub fn amount_anomaly_score(amount: Cents, user: Option<&UserProfile>, cfg: &ScoringConfig) -> i64 {
    let Some(user) = user else { return 0 };
    if let Some(max) = user.max_single_amount
        && cfg
            .max_single_amount_multiplier
            .exceeded_by(amount.0, max.0)
    {
        return cfg.extreme_amount_score;
    }
    if let Some(avg) = user.avg_daily_amount {
        if cfg.avg_daily_high_multiplier.exceeded_by(amount.0, avg.0) {
            return cfg.high_amount_score;
        }
        if cfg.avg_daily_medium_multiplier.exceeded_by(amount.0, avg.0) {
            return cfg.medium_amount_score;
        }
    }
    0
}

/// Whether `hour` lies in `[start, end]`, wrapping midnight when `start > end`.
pub fn hour_in(hour: u8, start: u8, end: u8) -> bool {
    if start <= end {
        start <= hour && hour <= end
    } else {
        hour >= start || hour <= end
    }
}

/// `time_anomaly_score` (§3).
pub fn time_anomaly_score(
    hour: u8,
    merchant: Option<&MerchantProfile>,
    cfg: &ScoringConfig,
) -> i64 {
    if hour_in(hour, cfg.night_start_hour, cfg.night_end_hour) {
        return cfg.night_score;
    }
    if let Some(m) = merchant
        && let (Some(start), Some(end)) = (m.business_hours_start, m.business_hours_end)
        && !hour_in(hour, start, end)
    {
        return cfg.off_hours_score;
    }
    0
}

/// `frequency_anomaly` (§5).
pub fn frequency(
    txn_count_1h: u32,
    history: Option<&HistoryRow>,
    cfg: &HistoryConfig,
) -> Frequency {
    let Some(count) = history.and_then(|h| h.transaction_count) else {
        return Frequency::Normal;
    };
    let n = i64::from(txn_count_1h);
    if cfg.high_frequency_multiplier.exceeded_by(n, count) {
        Frequency::High
    } else if cfg.medium_frequency_multiplier.exceeded_by(n, count) {
        Frequency::Medium
    } else {
        Frequency::Normal
    }
}

/// `amount_anomaly` (§5).
pub fn amount_label(
    amount: Cents,
    history: Option<&HistoryRow>,
    cfg: &HistoryConfig,
) -> AmountLabel {
    let Some(h) = history else {
        return AmountLabel::Normal;
    };
    if let Some(max) = h.max_amount
        && cfg.extreme_amount_multiplier.exceeded_by(amount.0, max.0)
    {
        return AmountLabel::Extreme;
    }
    if let Some(avg) = h.avg_amount {
        if cfg.high_amount_multiplier.exceeded_by(amount.0, avg.0) {
            return AmountLabel::High;
        }
        if avg.0 > 0
            && cfg
                .deviation_ratio
                .exceeded_by((amount.0 - avg.0).abs(), avg.0)
        {
            return AmountLabel::Deviation;
        }
    }
    AmountLabel::Normal
}

/// `access_anomaly` (§5).
pub fn access(distinct_ips: u32, distinct_devices: u32, cfg: &HistoryConfig) -> Access {
    if distinct_ips > cfg.max_distinct_ips {
        Access::MultipleIp
    } else if distinct_devices > cfg.max_distinct_devices {
        Access::MultipleDevice
    } else {
        Access::Normal
    }
}

/// The inputs of the final decision (§6).
#[derive(Debug, Clone, Copy)]
pub struct DecisionInputs<'a> {
    /// `total_risk_score`.
    pub total_risk_score: i64,
    /// The user's blacklist status.
    pub blacklist: Blacklist,
    /// The user's risk level.
    pub user_risk_level: Option<&'a str>,
    /// The merchant's risk level.
    pub merchant_risk_level: Option<&'a str>,
    /// `frequency_anomaly`.
    pub frequency: Frequency,
    /// `amount_anomaly`.
    pub amount: AmountLabel,
    /// `access_anomaly`.
    pub access: Access,
}

/// `final_decision`: the first matching rule of the default rule set wins.
pub fn final_decision(i: &DecisionInputs<'_>, cfg: &DecisionConfig) -> FinalDecision {
    if i.total_risk_score > cfg.reject_score
        || i.blacklist == Blacklist::User
        || (i.frequency == Frequency::High && i.amount == AmountLabel::Extreme)
    {
        FinalDecision::Reject
    } else if i.total_risk_score > cfg.review_score
        || i.user_risk_level == Some("HIGH")
        || matches!(i.amount, AmountLabel::High | AmountLabel::Extreme)
        || i.access != Access::Normal
    {
        FinalDecision::ManualReview
    } else if i.total_risk_score > cfg.delay_score
        || i.merchant_risk_level == Some("HIGH")
        || i.frequency == Frequency::Medium
    {
        FinalDecision::DelayedApproval
    } else {
        FinalDecision::Approve
    }
}

/// The seed's `CONCAT_WS('; ', …)` reasons and their machine-readable codes.
pub fn reasons(i: &DecisionInputs<'_>, cfg: &DecisionConfig) -> (String, Vec<&'static str>) {
    let parts: [(bool, &str, &'static str); 4] = [
        (
            i.total_risk_score > cfg.review_score,
            "高風險評分",
            "HIGH_RISK_SCORE",
        ),
        (
            i.amount != AmountLabel::Normal,
            "金額異常",
            "AMOUNT_ANOMALY",
        ),
        (
            i.frequency != Frequency::Normal,
            "頻次異常",
            "FREQUENCY_ANOMALY",
        ),
        (i.access != Access::Normal, "訪問異常", "ACCESS_ANOMALY"),
    ];
    let mut text = String::new();
    let mut codes = Vec::new();
    for (hit, label, code) in parts {
        if hit {
            if !text.is_empty() {
                text.push_str("; ");
            }
            text.push_str(label);
            codes.push(code);
        }
    }
    if i.blacklist != Blacklist::None {
        codes.push(i.blacklist.as_str());
    }
    if i.user_risk_level == Some("HIGH") {
        codes.push("USER_RISK_LEVEL_HIGH");
    }
    if i.merchant_risk_level == Some("HIGH") {
        codes.push("MERCHANT_RISK_LEVEL_HIGH");
    }
    (text, codes)
}
