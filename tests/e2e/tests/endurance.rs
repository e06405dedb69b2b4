//! Many updates in a row on one running server, under load: after every
//! one, each client's next answer continues its own count (nothing lost,
//! nothing answered twice), an idle connection opened before the first
//! update still holds its state, the server holds the same descriptors as
//! before (nothing leaked), one process runs, and its resident memory does
//! not grow from update to update.
//!
//! `MCR_ENDURANCE_UPDATES=N` sets how many (default 60, alternating v1 and
//! v2; the campaign runs thousands).

use mcr_e2e::{counting_client, Case, Counted, Opt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn many_updates_under_load_lose_nothing() {
    let n: usize = std::env::var("MCR_ENDURANCE_UPDATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let case = Case::new("tcp_state");
    let bins = [case.bin(1, Opt::O2), case.bin(2, Opt::O2)];
    let mut s = case.start(&bins[0]);

    // An idle connection with state, opened before the first update.
    let mut idle = s.client();
    assert_eq!(idle.cmd("NAME idle"), "OK");
    for _ in 0..7 {
        idle.cmd("ADD 3");
    }
    // Its own entry in the server's DUMP (`fd:name:requests:sum:...`).
    let entry = |dump: &str| {
        dump.split_whitespace()
            .find(|e| e.contains(":idle:"))
            .map(str::to_string)
    };
    let idle_entry = entry(&idle.cmd("DUMP")).expect("the idle connection in DUMP");

    // Clients counting without pause: each answer must be its own count.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|i| {
            let mut c = s.client();
            assert_eq!(c.cmd(&format!("NAME busy{i}")), "OK");
            counting_client(c, i, stop.clone())
        })
        .collect();

    std::thread::sleep(Duration::from_millis(200));
    let mut rss = Vec::new();
    let mut downtimes = Vec::new();
    for k in 0..n {
        let to = &bins[(k + 1) % 2];
        let rep = s.update_ok(to);
        downtimes.push(rep.downtime_ms);
        assert_eq!(
            s.version(),
            ((k + 1) % 2 + 1).to_string(),
            "after update {k}"
        );
        assert_eq!(s.processes(), vec![s.pid], "after update {k}: one process");
        assert_eq!(
            entry(&idle.cmd("DUMP")).as_deref(),
            Some(idle_entry.as_str()),
            "idle connection after update {k}"
        );
        rss.push(rss_kib(s.pid));
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    let mut open = Vec::new();
    for (i, h) in clients.into_iter().enumerate() {
        let Counted {
            sent, client: c, ..
        } = h
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}\n{}", s.log()));
        assert!(sent > 0, "client {i} sent nothing");
        total += sent;
        open.push(c);
    }
    let dump = s.dump();
    assert!(
        dump.contains(&format!("total={}", total + 21)),
        "{dump} (busy clients sent {total}, the idle one 21)"
    );
    assert!(dump.contains("closed=0"), "{dump}");
    s.check();

    // Memory: the last updates' resident size is not above the first ones'
    // by more than a quarter (a leak per update would show as steady growth).
    let early = rss[..n.min(5)].iter().copied().max().unwrap_or(0);
    let late = rss[n.saturating_sub(5)..]
        .iter()
        .copied()
        .max()
        .unwrap_or(0);
    downtimes.sort_by(f64::total_cmp);
    eprintln!(
        "{n} updates, {total} requests from 3 busy clients; downtime median {:.1} ms, max {:.1} ms; RSS {early} KiB early, {late} KiB late",
        downtimes[n / 2],
        downtimes[n - 1]
    );
    assert!(
        late <= early + early / 4,
        "resident memory grew from {early} KiB to {late} KiB over {n} updates: {rss:?}"
    );
}
