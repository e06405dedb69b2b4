//! Under load: clients sending requests continuously during an update see
//! zero errors and zero closed connections (requests may be delayed).

use mcr_e2e::{counting_client, Case, Counted, Opt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn continuous_clients_during_update_v1_to_v2() {
    let case = Case::new("tcp_state");
    let (b1, b2) = (case.bin(1, Opt::O2), case.bin(2, Opt::O2));
    let mut s = case.start(&b1);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let mut c = s.client();
            assert_eq!(c.cmd(&format!("NAME load{i}")), "OK");
            counting_client(c, i, stop.clone())
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    let rep = s.update_ok(&b2);
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    // The connections stay open until the final DUMP (closed=0).
    let mut _open = Vec::new();
    for (i, h) in clients.into_iter().enumerate() {
        let Counted {
            sent,
            slowest: worst,
            client: c,
        } = h
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}\n{}", s.log()));
        assert!(sent > 0, "client {i} sent nothing");
        eprintln!(
            "client {i}: {sent} requests, slowest {worst:?} (downtime {:.1} ms)",
            rep.downtime_ms
        );
        total += sent;
        _open.push(c);
    }
    assert_eq!(s.version(), "2");
    let dump = s.dump();
    assert!(
        dump.contains(&format!("total={total}")),
        "{dump} (sent {total})"
    );
    assert!(dump.contains("closed=0"), "{dump}");
    s.check();
}
