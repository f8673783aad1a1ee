-- Dimension tables with the seed's columns (SPEC.md §2) for PostgreSQL.
-- riskpipe reads every column as text (column::text), so any numeric or
-- string type works; these are the seed's.
CREATE TABLE IF NOT EXISTS user_risk_profiles (
  user_id BIGINT PRIMARY KEY,
  risk_score INT,
  risk_level VARCHAR(16),
  credit_rating VARCHAR(16),
  account_age_days INT,
  avg_daily_amount NUMERIC(15,2),
  max_single_amount NUMERIC(15,2),
  suspicious_activity_count INT,
  last_update_time TIMESTAMP
);
CREATE TABLE IF NOT EXISTS merchant_risk_profiles (
  merchant_id BIGINT PRIMARY KEY,
  merchant_category VARCHAR(64),
  risk_level VARCHAR(16),
  fraud_rate NUMERIC(5,4),
  avg_transaction_amount NUMERIC(15,2),
  business_hours_start TIME,
  business_hours_end TIME
);
CREATE TABLE IF NOT EXISTS blacklist_users (user_id BIGINT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS blacklist_merchants (merchant_id BIGINT PRIMARY KEY);
-- An address or a CIDR range (IPv4 or IPv6).
CREATE TABLE IF NOT EXISTS blacklist_ips (ip_address VARCHAR(64) PRIMARY KEY);
CREATE TABLE IF NOT EXISTS high_risk_locations (location VARCHAR(128) PRIMARY KEY);
