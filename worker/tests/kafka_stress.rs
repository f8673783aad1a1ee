//! The stress run of the state promise, against the real broker: 2 → 4 → 2
//! workers over 8 partitions with each worker's state folder kept by ordinal
//! (as a StatefulSet's volumes are), a million users, a state cache far smaller
//! than the users of a partition, and `kill -9` during every move. Every
//! transaction_id exactly once (read_committed) and every feature equal to an
//! uninterrupted run.
// Tests and benchmarks: a panic is a failed run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use riskpipe_worker::local::generator::GeneratorConfig;

/// Worker `ordinal` of `replicas`, on the folder its ordinal keeps.
fn start(
    manifest: &std::path::Path,
    dir: &std::path::Path,
    ordinal: u32,
    replicas: u32,
) -> (Worker, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let w = start_worker_env(
        manifest,
        &dir.join(format!("state-{ordinal}")),
        ordinal,
        replicas,
        Some(&addr),
        None,
        // 10,000–20,000 cached users per partition for ~125,000 users per partition.
        &[("RISKPIPE_STATE_CACHE_ENTRIES", "40000")],
    );
    (w, addr)
}

fn wait_progress(addrs: &[String], records: i64) {
    wait_for(
        &format!("{records} records processed"),
        Duration::from_secs(900),
        || addrs.iter().map(|a| progress(a)).sum::<i64>() >= records,
    );
}

#[test]
fn rescale_two_four_two_with_kill_nine_over_a_million_users() {
    let _serial = serial();
    let total = 300_000u64;
    let bootstrap = bootstrap();
    let (input, decisions, dead) = (unique("tx"), unique("decisions"), unique("dead"));
    create_topics(
        &bootstrap,
        &[&input, &decisions, &dead, &format!("{decisions}-audit")],
    );
    let dir = tempfile::tempdir().unwrap();
    let m = manifest(
        dir.path(),
        &unique("stress"),
        &bootstrap,
        &input,
        &decisions,
        &dead,
        &dir.path().join("chk"),
    );
    let (feed_bootstrap, feed_input) = (bootstrap.clone(), input.clone());
    let feeder = std::thread::spawn(move || {
        produce_with(
            &feed_bootstrap,
            &feed_input,
            GeneratorConfig {
                users: 1_000_000,
                merchants: 10_000,
                rate_per_second: 0,
                count: total,
                seed: 77,
                fraud_ratio: 0.05,
            },
            &[],
        )
    });

    // Two workers; worker 1 is killed and comes back on its folder.
    let (w0, a0) = start(&m, dir.path(), 0, 2);
    let (w1, _) = start(&m, dir.path(), 1, 2);
    wait_progress(std::slice::from_ref(&a0), 20_000);
    w1.kill9();
    let (w1, a1) = start(&m, dir.path(), 1, 2);
    wait_progress(&[a0.clone(), a1.clone()], 80_000);

    // 2 → 4: worker 0 is killed during the move, worker 1 stops cleanly.
    w0.kill9();
    w1.terminate();
    let mut four: Vec<(Worker, String)> = (0..4).map(|o| start(&m, dir.path(), o, 4)).collect();
    let addrs: Vec<String> = four.iter().map(|(_, a)| a.clone()).collect();
    wait_progress(&addrs, 150_000);
    let (w2, _) = four.remove(2);
    w2.kill9();
    four.insert(2, start(&m, dir.path(), 2, 4));
    let addrs: Vec<String> = four.iter().map(|(_, a)| a.clone()).collect();
    wait_progress(&addrs, 200_000);

    // 4 → 2: workers 2 and 3 are killed (their newest state is only on their
    // volumes: the new owners restore checkpoints and replay the rest through
    // the small cache), 0 and 1 stop cleanly.
    for (i, (w, _)) in four.into_iter().enumerate().rev() {
        if i >= 2 {
            w.kill9();
        } else {
            w.terminate();
        }
    }
    feeder.join().expect("producer thread");
    let (w0, _) = start(&m, dir.path(), 0, 2);
    let (w1, _) = start(&m, dir.path(), 1, 2);
    let out = read_committed(
        &bootstrap,
        &decisions,
        total as usize,
        Duration::from_secs(900),
    );
    w0.terminate();
    w1.terminate();
    assert_exactly_once_and_equal(&out, &reference(&bootstrap, &input));
    // After 4 → 2 each remaining volume holds exactly the partitions its worker
    // owns now (p % 2): the folders of partitions that moved away are gone.
    for o in 0..2u32 {
        let folder = dir.path().join(format!("state-{o}"));
        let mut held: Vec<i32> = std::fs::read_dir(&folder)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_prefix("partition-")?.parse().ok()
            })
            .collect();
        held.sort_unstable();
        let owned: Vec<i32> = (0..8).filter(|p| p % 2 == o as i32).collect();
        assert_eq!(held, owned, "worker {o}'s volume after 4 → 2");
    }
}
