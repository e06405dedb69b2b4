//! A forked child of an instrumented program has a control socket of its
//! own, and its own view of the heap it inherited.

mod common;
use common::*;
use mcr_types::protocol::Info;
use std::time::Duration;

fn child_pid(f: &Fixture) -> u32 {
    f.output()
        .lines()
        .find_map(|l| l.strip_prefix("child ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no \"child <pid>\" line:\n{}", f.output()))
}

fn check_parent_and_child(f: &Fixture, child: u32) {
    assert!(
        wait_until(Duration::from_secs(10), || has_control_socket(child)),
        "the forked child {child} has no control socket @mcr/{child}"
    );
    let types = heap_by_type(&heap(child));
    assert_eq!(types.get("struct fnode"), Some(&(50, 50 * 16)));
    assert_eq!(types.get("struct child_only"), Some(&(4, 4 * 8)));
    assert_eq!(types.get("struct child_leak"), Some(&(2, 2 * 8)));
    // In the child, the parent's control thread is gone without having run
    // its TLS destructors, and the child's new control thread took over its
    // cached stack (and TLS): the std::thread handle and TLS-destructor list
    // that Rust's std allocated for it through `malloc` (2 objects, 80
    // bytes) are unreachable. Allowed here, and only here.
    let t = trace(child);
    let orphans = counts(&t.rows, "untyped @ (uninstrumented)").1;
    assert!(orphans <= 2, "{t:#?}");
    let mut t2 = t.clone();
    t2.rows.retain(|r| r.what != "untyped @ (uninstrumented)");
    t2.unreachable -= orphans;
    t2.objects -= orphans;
    t2.reachable = t2.objects - t2.unreachable;
    check_trace(
        &t2,
        &[
            ("struct fnode", 50, 0),
            ("struct child_only", 4, 0),
            ("struct child_leak", 0, 2),
        ],
        &[],
    );
    // The parent's heap does not have the child's objects.
    let types = heap_by_type(&heap(f.pid));
    assert_eq!(types.get("struct fnode"), Some(&(50, 50 * 16)));
    assert_eq!(types.get("struct child_only"), None);
    check_trace(&trace(f.pid), &[("struct fnode", 50, 0)], &[]);
    // ps lists both, as the same program.
    let ps: Vec<Info> = ctl_json(&["ps"]);
    let p = ps.iter().find(|i| i.pid == f.pid).expect("parent in ps");
    let c = ps.iter().find(|i| i.pid == child).expect("child in ps");
    assert_eq!(p.program, c.program);
    assert_eq!(p.typemap_id, c.typemap_id);
}

#[test]
fn forked_child_has_its_own_control_socket() {
    let mut f = Fixture::start(&build("fork", Build::O2));
    let child = child_pid(&f);
    f.extra_pids.push(child);
    check_parent_and_child(&f, child);

    // The parent dies: the child still answers, ps does not list the parent
    // and does not wait for it.
    // SAFETY: signalling the fixture this test started.
    unsafe { libc::kill(f.pid as i32, libc::SIGKILL) };
    let _ = f.child.wait();
    let r = ctl(&["ps", "--json"]);
    assert_eq!(r.code, Some(0), "{r:?}");
    assert!(
        r.elapsed < Duration::from_secs(3),
        "ps took {:?}",
        r.elapsed
    );
    let ps: Vec<Info> = serde_json::from_str(&r.stdout).unwrap();
    assert!(!ps.iter().any(|i| i.pid == f.pid), "{ps:?}");
    assert!(ps.iter().any(|i| i.pid == child), "{ps:?}");
    assert!(heap(child).objects > 0);
}

/// Daemons fork at once at start-up, while the runtime's control thread is
/// still starting. Known bug (mcr-rt control.rs): the control thread warms
/// a `OnceLock` (`checkpoint::functions`) before it binds its socket; a fork
/// in that window leaves the child's copy of the lock "running" forever,
/// and the child's control thread never binds @mcr/<child>.
#[test]
fn child_forked_at_startup_has_a_control_socket() {
    for _ in 0..10 {
        let mut f = Fixture::start_full(&build("fork", Build::O2), &["early"], &[], true);
        let child = child_pid(&f);
        f.extra_pids.push(child);
        check_parent_and_child(&f, child);
    }
}

/// A forked child must not keep the parent's control socket (listener, or
/// a connection being served when it forked): `@mcr/<parent>` would outlive
/// the parent, and a new program given the parent's PID could not bind.
/// Repeated: the fork races the harness's own probe connections.
#[test]
fn parent_control_socket_goes_away_with_the_parent() {
    for _ in 0..5 {
        parent_socket_gone_once();
    }
}

fn parent_socket_gone_once() {
    let mut f = Fixture::start(&build("fork", Build::O2));
    let child = child_pid(&f);
    f.extra_pids.push(child);
    assert!(wait_until(Duration::from_secs(10), || has_control_socket(
        child
    )));
    let parent = f.pid;
    // SAFETY: signalling the fixture this test started.
    unsafe { libc::kill(parent as i32, libc::SIGKILL) };
    let _ = f.child.wait();
    assert!(
        wait_until(Duration::from_secs(5), || !has_control_socket(parent)),
        "@mcr/{parent} is still bound after its process exited (held by the child {child})"
    );
}
