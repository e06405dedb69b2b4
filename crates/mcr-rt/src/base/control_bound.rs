//! Whether this process's control socket listens: a new version (master
//! or worker) reports ready only then, so `mcr-ctl` can reach it as soon
//! as the update returns, and its control thread's short-lived low
//! descriptors are gone before old descriptors take their numbers.

/// The control socket is listening (a new version reports ready only then,
/// so `mcr-ctl` can reach it as soon as the update returns).
pub static BOUND: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Waits (bounded) until the control socket listens.
pub fn wait_bound(timeout: std::time::Duration) -> bool {
    let t = std::time::Instant::now();
    while !BOUND.load(std::sync::atomic::Ordering::SeqCst) {
        if t.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    true
}
