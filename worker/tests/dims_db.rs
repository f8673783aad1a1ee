//! Dimension tables in the real MariaDB and PostgreSQL of `e2e/env`: the same
//! generated dataset in MariaDB, PostgreSQL and CSV gives byte-identical
//! decisions through `replay`; TTL, cached misses, list refresh, bad values,
//! missing tables and columns, and an outage during which records wait.
// Tests: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use riskpipe_e2e::env::{TestEnv, keys};
use riskpipe_worker::dims::{DbDimensions, DbSettings, DimensionsHealth};
use riskpipe_worker::engine::dimensions::{BatchKeys, Dimensions, StaticDimensions};
use riskpipe_worker::local::generator::{Generator, GeneratorConfig};

const USERS: u32 = 3000;
const MERCHANTS: u32 = 300;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    MariaDb,
    Postgres,
}

/// A test database with admin access through sqlx.
struct Db {
    flavor: Flavor,
    url: String,
}

impl Db {
    fn of(flavor: Flavor) -> Db {
        let env = TestEnv::load().unwrap_or_else(|e| panic!("{e}"));
        let key = match flavor {
            Flavor::MariaDb => keys::MARIADB_URL,
            Flavor::Postgres => keys::POSTGRES_URL,
        };
        Db {
            flavor,
            url: env.get(key).unwrap().to_owned(),
        }
    }

    /// The URL without its login (the manifest's), and the login.
    fn split_url(&self) -> (String, String, String) {
        let (scheme, rest) = self.url.split_once("://").unwrap();
        let (login, host) = rest.split_once('@').unwrap();
        let (user, password) = login.split_once(':').unwrap();
        (
            format!("{scheme}://{host}"),
            user.to_owned(),
            password.to_owned(),
        )
    }

    fn exec(&self, sql: &str) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            match self.flavor {
                Flavor::MariaDb => {
                    let pool = sqlx::mysql::MySqlPoolOptions::new()
                        .max_connections(1)
                        .connect(&self.url)
                        .await
                        .unwrap();
                    sqlx::raw_sql(sql)
                        .execute(&pool)
                        .await
                        .unwrap_or_else(|e| panic!("{sql:.200}: {e}"));
                    pool.close().await;
                }
                Flavor::Postgres => {
                    let pool = sqlx::postgres::PgPoolOptions::new()
                        .max_connections(1)
                        .connect(&self.url)
                        .await
                        .unwrap();
                    sqlx::raw_sql(sql)
                        .execute(&pool)
                        .await
                        .unwrap_or_else(|e| panic!("{sql:.200}: {e}"));
                    pool.close().await;
                }
            }
        });
    }

    fn decimal(&self) -> &'static str {
        "DECIMAL(15,2)"
    }

    fn fraud(&self) -> &'static str {
        "DECIMAL(5,4)"
    }

    fn text(&self) -> &'static str {
        match self.flavor {
            Flavor::MariaDb => "VARCHAR(64) CHARACTER SET utf8mb4",
            Flavor::Postgres => "VARCHAR(64)",
        }
    }
}

/// A prefix unique to this run for table names.
fn prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("t{}_{name}", nanos % 1_000_000_000_000)
}

fn sql_text(v: &Option<String>) -> String {
    match v {
        Some(s) => format!("'{}'", s.replace('\'', "''")),
        None => "NULL".to_owned(),
    }
}

fn opt<T: ToString>(v: Option<T>) -> Option<String> {
    v.map(|v| v.to_string())
}

fn hour(h: Option<u8>) -> Option<String> {
    h.map(|h| format!("{h:02}:00:00"))
}

/// The generator's tables as rows of text (users without a row every 10th;
/// some NULL columns), written as CSV files and as SQL tables.
struct Dataset {
    users: Vec<(i64, Vec<Option<String>>)>,
    merchants: Vec<(i64, Vec<Option<String>>)>,
    blacklist_users: Vec<i64>,
    blacklist_merchants: Vec<i64>,
    blacklist_ips: Vec<String>,
    locations: Vec<String>,
    transactions: Vec<u8>,
}

const USER_COLUMNS: &[&str] = &[
    "risk_score",
    "risk_level",
    "credit_rating",
    "account_age_days",
    "avg_daily_amount",
    "max_single_amount",
    "suspicious_activity_count",
];
const MERCHANT_COLUMNS: &[&str] = &[
    "merchant_category",
    "risk_level",
    "fraud_rate",
    "avg_transaction_amount",
    "business_hours_start",
    "business_hours_end",
];

fn dataset(count: u64) -> Dataset {
    let generator = Generator::new(GeneratorConfig {
        users: USERS,
        merchants: MERCHANTS,
        rate_per_second: 0,
        count,
        seed: 11,
        fraud_ratio: 0.1,
    });
    let dims = generator.dimensions();
    let mut users = Vec::new();
    let mut blacklist_users = Vec::new();
    for u in 0..i64::from(USERS) {
        if dims.user_blacklisted(u) {
            blacklist_users.push(u);
        }
        if u % 10 == 3 {
            continue;
        }
        let p = dims.user(u).unwrap().clone();
        let null = u % 17 == 5;
        users.push((
            u,
            vec![
                if null { None } else { opt(p.risk_score) },
                p.risk_level.clone(),
                if null { None } else { p.credit_rating.clone() },
                opt(p.account_age_days),
                opt(p.avg_daily_amount),
                if null { None } else { opt(p.max_single_amount) },
                opt(p.suspicious_activity_count),
            ],
        ));
    }
    let merchants = (0..i64::from(MERCHANTS))
        .map(|m| {
            let p = dims.merchant(m).unwrap().clone();
            (
                m,
                vec![
                    p.merchant_category.clone(),
                    p.risk_level.clone(),
                    opt(p.fraud_rate),
                    opt(p.avg_transaction_amount),
                    hour(p.business_hours_start),
                    hour(p.business_hours_end),
                ],
            )
        })
        .collect();
    let mut transactions = Vec::new();
    for g in generator {
        transactions.extend_from_slice(&g.json);
        transactions.push(b'\n');
    }
    Dataset {
        users,
        merchants,
        blacklist_users,
        blacklist_merchants: vec![7, 42],
        blacklist_ips: vec![
            "10.7.0.0/16".into(),
            "2001:db8::/32".into(),
            "192.0.2.1".into(),
        ],
        locations: vec!["高風險國家1".into()],
        transactions,
    }
}

fn write_csv(dir: &Path, name: &str, header: &[&str], rows: &[(String, Vec<Option<String>>)]) {
    let mut text = header.join(",");
    text.push('\n');
    for (key, values) in rows {
        text.push_str(key);
        for v in values {
            text.push(',');
            text.push_str(v.as_deref().unwrap_or(""));
        }
        text.push('\n');
    }
    std::fs::write(dir.join(format!("{name}.csv")), text).unwrap();
}

fn keyed(rows: &[(i64, Vec<Option<String>>)]) -> Vec<(String, Vec<Option<String>>)> {
    rows.iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn keys_only<T: ToString>(keys: &[T]) -> Vec<(String, Vec<Option<String>>)> {
    keys.iter().map(|k| (k.to_string(), Vec::new())).collect()
}

impl Dataset {
    fn to_csv(&self, dir: &Path) {
        let mut h = vec!["user_id"];
        h.extend(USER_COLUMNS);
        write_csv(dir, "user_risk_profiles", &h, &keyed(&self.users));
        let mut h = vec!["merchant_id"];
        h.extend(MERCHANT_COLUMNS);
        write_csv(dir, "merchant_risk_profiles", &h, &keyed(&self.merchants));
        write_csv(
            dir,
            "blacklist_users",
            &["user_id"],
            &keys_only(&self.blacklist_users),
        );
        write_csv(
            dir,
            "blacklist_merchants",
            &["merchant_id"],
            &keys_only(&self.blacklist_merchants),
        );
        write_csv(
            dir,
            "blacklist_ips",
            &["ip_address"],
            &keys_only(&self.blacklist_ips),
        );
        write_csv(
            dir,
            "high_risk_locations",
            &["location"],
            &keys_only(&self.locations),
        );
    }

    /// Creates the tables `{prefix}_users`, … in `db` and loads them.
    fn to_db(&self, db: &Db, prefix: &str) {
        let (d, f, t) = (db.decimal(), db.fraud(), db.text());
        let mut sql = format!(
            "CREATE TABLE {prefix}_users (user_id BIGINT PRIMARY KEY, risk_score INT, risk_level {t}, \
             credit_rating {t}, account_age_days INT, avg_daily_amount {d}, max_single_amount {d}, \
             suspicious_activity_count INT, last_update_time TIMESTAMP NULL);
             CREATE TABLE {prefix}_merchants (merchant_id BIGINT PRIMARY KEY, merchant_category {t}, \
             risk_level {t}, fraud_rate {f}, avg_transaction_amount {d}, business_hours_start TIME, \
             business_hours_end TIME);
             CREATE TABLE {prefix}_bl_users (user_id BIGINT PRIMARY KEY);
             CREATE TABLE {prefix}_bl_merchants (merchant_id BIGINT PRIMARY KEY);
             CREATE TABLE {prefix}_bl_ips (ip_address {t} PRIMARY KEY);
             CREATE TABLE {prefix}_locations (location {t} PRIMARY KEY);"
        );
        let insert = |sql: &mut String,
                      table: &str,
                      columns: &[&str],
                      rows: &[(String, Vec<Option<String>>)],
                      quote_key: bool| {
            for chunk in rows.chunks(500) {
                write!(
                    sql,
                    "INSERT INTO {prefix}_{table} ({}) VALUES ",
                    columns.join(",")
                )
                .unwrap();
                for (i, (k, values)) in chunk.iter().enumerate() {
                    if i > 0 {
                        sql.push(',');
                    }
                    let key = if quote_key {
                        sql_text(&Some(k.clone()))
                    } else {
                        k.clone()
                    };
                    sql.push('(');
                    sql.push_str(&key);
                    for v in values {
                        sql.push(',');
                        sql.push_str(&sql_text(v));
                    }
                    sql.push(')');
                }
                sql.push_str(";\n");
            }
        };
        let mut cols = vec!["user_id"];
        cols.extend(USER_COLUMNS);
        insert(&mut sql, "users", &cols, &keyed(&self.users), false);
        let mut cols = vec!["merchant_id"];
        cols.extend(MERCHANT_COLUMNS);
        insert(&mut sql, "merchants", &cols, &keyed(&self.merchants), false);
        insert(
            &mut sql,
            "bl_users",
            &["user_id"],
            &keys_only(&self.blacklist_users),
            false,
        );
        insert(
            &mut sql,
            "bl_merchants",
            &["merchant_id"],
            &keys_only(&self.blacklist_merchants),
            false,
        );
        insert(
            &mut sql,
            "bl_ips",
            &["ip_address"],
            &keys_only(&self.blacklist_ips),
            true,
        );
        insert(
            &mut sql,
            "locations",
            &["location"],
            &keys_only(&self.locations),
            true,
        );
        db.exec(&sql);
    }
}

fn drop_tables(db: &Db, prefix: &str) {
    let sql: String = [
        "users",
        "merchants",
        "bl_users",
        "bl_merchants",
        "bl_ips",
        "locations",
    ]
    .iter()
    .map(|t| format!("DROP TABLE IF EXISTS {prefix}_{t};"))
    .collect();
    db.exec(&sql);
}

/// The dimensions part of a manifest naming `db`'s tables `{prefix}_*`.
fn dimensions_yaml(url: &str, prefix: &str, ttl: &str, extra: &str) -> String {
    format!(
        "  dimensions:
    database:
      url: {url}
      credentialsSecretRef: {{name: db-login}}
    users: {{table: {prefix}_users, cache: {{ttl: {ttl}}}}}
    merchants: {{table: {prefix}_merchants, cache: {{mode: full}}}}
    lists:
      refreshInterval: 1s
      usersTable: {prefix}_bl_users
      merchantsTable: {prefix}_bl_merchants
      ipsTable: {prefix}_bl_ips
      locationsTable: {prefix}_locations
{extra}"
    )
}

fn manifest(dims: &str) -> String {
    format!(
        "apiVersion: riskpipe.io/v1alpha1
kind: RiskPipeline
metadata: {{name: dims-test}}
spec:
  source: {{kafka: {{bootstrapServers: 'localhost:9092', topic: t}}}}
{dims}"
    )
}

fn secrets_dir(root: &Path, user: &str, password: &str) -> std::path::PathBuf {
    let dir = root.join("secrets");
    std::fs::create_dir_all(dir.join("db-login")).unwrap();
    std::fs::write(dir.join("db-login/username"), user).unwrap();
    std::fs::write(dir.join("db-login/password"), password).unwrap();
    dir
}

fn worker() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("riskpipe-worker").unwrap();
    cmd.env("RUST_LOG", "info");
    cmd
}

/// Decisions without their clock fields, one line each, as written.
fn decisions_text(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            for k in [
                "decided_at_ms",
                "processing_latency_ms",
                "processing_time",
                "decided_at",
            ] {
                o.remove(k);
            }
            v.to_string()
        })
        .collect()
}

#[test]
fn mariadb_postgres_and_csv_give_identical_decisions_through_replay() {
    let data = dataset(20_000);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("csv");
    std::fs::create_dir_all(&csv).unwrap();
    data.to_csv(&csv);
    let tx = dir.path().join("transactions.jsonl");
    std::fs::write(&tx, &data.transactions).unwrap();

    let run = |args: &[&std::ffi::OsStr], out: &Path, secrets: Option<&Path>| {
        let mut cmd = worker();
        cmd.arg("replay")
            .arg("--transactions")
            .arg(&tx)
            .arg("--out")
            .arg(out)
            .args(args);
        if let Some(s) = secrets {
            cmd.arg("--secrets-dir").arg(s);
        }
        let output = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        stderr
    };
    let csv_out = dir.path().join("csv.jsonl");
    let csv_manifest = dir.path().join("csv.yaml");
    std::fs::write(&csv_manifest, manifest("")).unwrap();
    run(
        &[
            "--dimensions".as_ref(),
            csv.as_os_str(),
            "-f".as_ref(),
            csv_manifest.as_os_str(),
        ],
        &csv_out,
        None,
    );
    let want = decisions_text(&csv_out);
    assert!(want.len() > 15_000, "{} decisions", want.len());
    let distinct_levels: std::collections::HashSet<_> = want
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["final_decision"].to_string())
        .collect();
    assert!(
        distinct_levels.len() >= 2,
        "the dataset decides more than one way: {distinct_levels:?}"
    );
    // Every kind of dimension answer is exercised: rows, missing rows, NULL
    // columns, each list.
    let count = |needle: &str| want.iter().filter(|l| l.contains(needle)).count();
    for needle in [
        "\"blacklist_status\":\"BLACKLIST_IP\"",
        "\"blacklist_status\":\"BLACKLIST_USER\"",
        "\"blacklist_status\":\"BLACKLIST_MERCHANT\"",
        "\"user_risk_level\":null",
        "\"user_risk_level\":\"HIGH\"",
        "\"user_risk_level\":\"LOW\"",
    ] {
        assert!(count(needle) > 0, "no decision with {needle}");
    }

    for flavor in [Flavor::MariaDb, Flavor::Postgres] {
        let db = Db::of(flavor);
        let prefix = prefix("diff");
        data.to_db(&db, &prefix);
        let (url, user, password) = db.split_url();
        let manifest_path = dir.path().join(format!("{flavor:?}.yaml"));
        std::fs::write(
            &manifest_path,
            manifest(&dimensions_yaml(&url, &prefix, "30m", "")),
        )
        .unwrap();
        let secrets = secrets_dir(dir.path(), &user, &password);
        let out = dir.path().join(format!("{flavor:?}.jsonl"));
        let stderr = run(
            &["-f".as_ref(), manifest_path.as_os_str()],
            &out,
            Some(&secrets),
        );
        // The login (the test's password is also part of the user and database
        // names, so the URL form is what must never appear).
        assert!(
            !stderr.contains(&format!(":{password}@")) && !stderr.contains("password="),
            "credentials in the log: {stderr}"
        );
        let got = decisions_text(&out);
        drop_tables(&db, &prefix);
        assert_eq!(got.len(), want.len(), "{flavor:?}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g, w, "{flavor:?}: decision {i} differs from CSV");
        }
    }
}

fn settings(db: &Db, prefix: &str, ttl: Duration, max_staleness: Duration) -> DbSettings {
    let (url, user, password) = db.split_url();
    let yaml = manifest(&dimensions_yaml(&url, prefix, "1s", ""));
    let pipeline = riskpipe_crds::RiskPipeline::from_yaml_validated(&yaml).unwrap();
    let mut spec = pipeline.spec.dimensions.clone();
    spec.users.cache.ttl = riskpipe_crds::Duration::from_millis(ttl.as_millis() as u64);
    spec.max_staleness = riskpipe_crds::Duration::from_millis(max_staleness.as_millis() as u64);
    DbSettings::of(
        &spec,
        Some(riskpipe_worker::dims::db::Credentials {
            username: user,
            password: password.into(),
        }),
    )
    .unwrap()
}

fn start(db: &Db, prefix: &str, ttl: Duration, max_staleness: Duration) -> DbDimensions {
    DbDimensions::start(
        &settings(db, prefix, ttl, max_staleness),
        StaticDimensions::default(),
        Arc::new(DimensionsHealth::default()),
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap()
}

fn risk_of(dims: &DbDimensions, user: i64) -> Option<i64> {
    let view = dims
        .prefetch(&BatchKeys {
            users: vec![user],
            merchants: vec![],
        })
        .unwrap()
        .unwrap();
    view.user(user).and_then(|p| p.risk_score)
}

fn wait_until(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn small_dataset() -> Dataset {
    let mut d = dataset(1);
    d.users.truncate(50);
    d.transactions.clear();
    d
}

fn each_flavor(f: impl Fn(&Db, &str)) {
    for flavor in [Flavor::MariaDb, Flavor::Postgres] {
        let db = Db::of(flavor);
        let prefix = prefix("t");
        small_dataset().to_db(&db, &prefix);
        f(&db, &prefix);
        drop_tables(&db, &prefix);
    }
}

#[test]
fn a_changed_profile_is_seen_after_its_ttl_and_not_before_misses_are_cached() {
    each_flavor(|db, prefix| {
        let ttl = Duration::from_secs(2);
        let dims = start(db, prefix, ttl, Duration::from_secs(60));
        let before = risk_of(&dims, 1);
        let loaded = Instant::now();
        db.exec(&format!(
            "UPDATE {prefix}_users SET risk_score = 99 WHERE user_id = 1"
        ));
        // A key with no row: a miss, cached as a miss.
        assert_eq!(risk_of(&dims, 3), None);
        let queries = dims.stats()[0].1.queries;
        db.exec(&format!(
            "INSERT INTO {prefix}_users (user_id, risk_score) VALUES (3, 77)"
        ));
        while loaded.elapsed() < ttl - Duration::from_millis(300) {
            assert_eq!(risk_of(&dims, 1), before, "changed before its TTL");
            assert_eq!(
                risk_of(&dims, 3),
                None,
                "a cached miss answered before its TTL"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            dims.stats()[0].1.queries,
            queries,
            "cached rows and misses were queried again"
        );
        wait_until("the new profile", Duration::from_secs(10), || {
            risk_of(&dims, 1) == Some(99)
        });
        assert!(loaded.elapsed() >= ttl);
        wait_until("the cached miss to expire", Duration::from_secs(10), || {
            risk_of(&dims, 3) == Some(77)
        });
    });
}

#[test]
fn a_list_entry_added_is_used_after_the_refresh() {
    each_flavor(|db, prefix| {
        let dims = start(db, prefix, Duration::from_secs(60), Duration::from_secs(60));
        let blocked = |ip: &str| {
            let view = dims.prefetch(&BatchKeys::default()).unwrap().unwrap();
            view.ip_blacklisted(ip)
        };
        assert!(blocked("10.7.30.40"), "IPv4 CIDR");
        for ip in ["10.8.30.40", "10.7.0.1", "11.0.0.1", "203.0.113.9"] {
            eprintln!("{ip}: {}", blocked(ip));
        }
        assert!(!blocked("10.8.30.40"));
        assert!(blocked("2001:db8::7"), "IPv6 CIDR");
        assert!(!blocked("203.0.113.9"));
        db.exec(&format!(
            "INSERT INTO {prefix}_bl_ips (ip_address) VALUES ('203.0.113.0/24')"
        ));
        wait_until("the refreshed list", Duration::from_secs(10), || {
            blocked("203.0.113.9")
        });
    });
}

#[test]
fn bad_values_are_null_and_counted() {
    each_flavor(|db, prefix| {
        db.exec(&format!(
            "INSERT INTO {prefix}_users (user_id, risk_score, max_single_amount) VALUES (2001, 5, -10.00);
             UPDATE {prefix}_merchants SET business_hours_start = NULL WHERE merchant_id = 1;"
        ));
        let dims = start(db, prefix, Duration::from_secs(60), Duration::from_secs(60));
        let view = dims
            .prefetch(&BatchKeys {
                users: vec![2001],
                merchants: vec![1],
            })
            .unwrap()
            .unwrap();
        let p = view.user(2001).unwrap();
        assert_eq!(p.risk_score, Some(5));
        assert_eq!(
            p.max_single_amount, None,
            "a negative max_single_amount reads as NULL"
        );
        assert_eq!(view.merchant(1).unwrap().business_hours_start, None);
        assert_eq!(dims.bad_values(), 1);
    });
}

#[test]
fn a_missing_table_or_column_is_an_error_naming_it() {
    each_flavor(|db, prefix| {
        let mut s = settings(db, prefix, Duration::from_secs(60), Duration::from_secs(60));
        s.users.table = format!("{prefix}_nope");
        let err = DbDimensions::start(
            &s,
            StaticDimensions::default(),
            Arc::default(),
            Arc::new(AtomicBool::new(false)),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains(&format!("spec.dimensions.users.table '{prefix}_nope'")),
            "{err}"
        );
        db.exec(&format!(
            "ALTER TABLE {prefix}_merchants DROP COLUMN fraud_rate"
        ));
        let err = DbDimensions::start(
            &settings(db, prefix, Duration::from_secs(60), Duration::from_secs(60)),
            StaticDimensions::default(),
            Arc::default(),
            Arc::new(AtomicBool::new(false)),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains(&format!("'{prefix}_merchants': no column 'fraud_rate'")),
            "{err}"
        );
    });
}

#[test]
fn during_an_outage_stale_rows_serve_and_uncached_keys_wait() {
    each_flavor(|db, prefix| {
        let ttl = Duration::from_millis(500);
        let dims = Arc::new(start(db, prefix, ttl, Duration::from_secs(60)));
        let cached = risk_of(&dims, 1);
        assert!(cached.is_some());
        // The table cannot be read: renamed away.
        db.exec(&format!(
            "ALTER TABLE {prefix}_users RENAME TO {prefix}_users_off"
        ));
        std::thread::sleep(ttl);
        // Past its TTL, within maxStaleness: the cached copy serves.
        assert_eq!(risk_of(&dims, 1), cached);
        let health = Arc::clone(dims.health());
        assert!(
            health
                .outages()
                .iter()
                .any(|o| o.table == format!("{prefix}_users")),
            "{:?}",
            health.outages()
        );
        // A key never read waits.
        let waiting = {
            let dims = Arc::clone(&dims);
            std::thread::spawn(move || risk_of(&dims, 2))
        };
        std::thread::sleep(Duration::from_secs(2));
        assert!(!waiting.is_finished(), "decided without the profile");
        db.exec(&format!(
            "ALTER TABLE {prefix}_users_off RENAME TO {prefix}_users;
             UPDATE {prefix}_users SET risk_score = 55 WHERE user_id = 2"
        ));
        let got = waiting.join().unwrap();
        assert_eq!(got, Some(55), "decided with the row the database holds");
        wait_until("the outage to clear", Duration::from_secs(10), || {
            health.outages().is_empty()
        });
    });
}
