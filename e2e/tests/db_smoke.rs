//! MariaDB and PostgreSQL from `e2e/env/up` accept queries from Rust.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use riskpipe_e2e::env::keys;
use sqlx::Row;

#[tokio::test]
async fn mariadb_answers_a_query() {
    let env = common::env();
    let url = env.get(keys::MARIADB_URL).unwrap();
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to MariaDB at {url}: {e}"));
    let table = common::unique("smoke").replace('-', "_");
    sqlx::query(&format!(
        "CREATE TABLE {table} (id INT PRIMARY KEY, risk DECIMAL(15,2))"
    ))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(&format!("INSERT INTO {table} VALUES (1, 12.50), (2, 0.25)"))
        .execute(&pool)
        .await
        .unwrap();
    let row = sqlx::query(&format!(
        "SELECT COUNT(*) AS n, CAST(SUM(risk) AS CHAR) AS total, VERSION() AS v FROM {table}"
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(row.get::<i64, _>("n"), 2);
    assert_eq!(row.get::<String, _>("total"), "12.75");
    assert!(
        row.get::<String, _>("v").contains("MariaDB"),
        "not MariaDB: {}",
        row.get::<String, _>("v")
    );
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn postgres_answers_a_query() {
    let env = common::env();
    let url = env.get(keys::POSTGRES_URL).unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connecting to PostgreSQL at {url}: {e}"));
    let table = common::unique("smoke").replace('-', "_");
    sqlx::query(&format!(
        "CREATE TABLE {table} (id INT PRIMARY KEY, risk NUMERIC(15,2))"
    ))
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(&format!("INSERT INTO {table} VALUES (1, 12.50), (2, 0.25)"))
        .execute(&pool)
        .await
        .unwrap();
    let row = sqlx::query(&format!(
        "SELECT COUNT(*) AS n, SUM(risk)::text AS total, version() AS v FROM {table}"
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(row.get::<i64, _>("n"), 2);
    assert_eq!(row.get::<String, _>("total"), "12.75");
    assert!(row.get::<String, _>("v").starts_with("PostgreSQL"));
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&pool)
        .await
        .unwrap();
}
