//! Fixture unix_socket: a Unix-domain stream server next to the TCP port.

use mcr_e2e::{Case, Opt};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

struct U {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl U {
    fn connect(case: &Case) -> U {
        let w = UnixStream::connect(case.path().join("fx.sock")).expect("connect fx.sock");
        w.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        U {
            r: BufReader::new(w.try_clone().unwrap()),
            w,
        }
    }
    fn cmd(&mut self, l: &str) -> String {
        writeln!(self.w, "{l}").unwrap();
        let mut s = String::new();
        self.r.read_line(&mut s).unwrap();
        s.trim_end().to_string()
    }
}

/// `poke`: wake the poll() loop with a new TCP connection after the update
/// (docs/history.md #7); `new_unix_client`: connect a new Unix client
/// after the update (#8).
fn across(v_to: u32, opt: Opt, poke: bool, new_unix_client: bool) {
    let case = Case::new("unix_socket");
    let (b1, b2) = (case.bin(1, opt), case.bin(v_to, opt));
    let mut s = case.start(&b1);
    let mut u1 = U::connect(&case);
    let mut u2 = U::connect(&case);
    let mut t = s.client();
    assert_eq!(u1.cmd("INCR 5"), "5");
    assert_eq!(u2.cmd("INCR 7"), "7");
    assert_eq!(u2.cmd("INCR 1"), "8");
    assert_eq!(t.cmd("INCR 100"), "100");
    s.check();
    let mut before = s.dump();
    assert!(
        before.starts_with("unix_accepted=2 tcp_accepted=2 "),
        "{before}"
    );
    s.update_ok(&b2);
    if poke {
        s.poke();
        before = before.replace("tcp_accepted=2 ", "tcp_accepted=3 ");
    }
    assert_eq!(s.version(), v_to.to_string());
    assert_eq!(s.dump(), before);
    // Unix connections from before the update keep their state.
    assert_eq!(u1.cmd("INCR 1"), "6");
    assert_eq!(u2.cmd("INCR 2"), "10");
    assert_eq!(t.cmd("INCR 1"), "101");
    if new_unix_client {
        // The listener still accepts on its path, and CHECK finds the path.
        s.check();
        let mut u3 = U::connect(&case);
        assert_eq!(u3.cmd("INCR 3"), "3");
    }
}

#[test]
fn v1_to_v1_o2() {
    across(1, Opt::O2, true, false);
}

#[test]
fn v1_to_v2_o2() {
    across(2, Opt::O2, true, false);
}

#[test]
fn v1_to_v1_o0() {
    across(1, Opt::O0, true, false);
}

/// The poll() loop must serve the connections carried over without a new
/// event on a listening socket.
#[test]
fn poll_loop_serves_old_connections_without_poke() {
    across(1, Opt::O2, false, false);
}

/// Servers unlink the socket path before bind; the new version's start-up
/// does too, and its bind is skipped (the socket is inherited): the path
/// must still name the listener afterwards.
#[test]
fn new_unix_clients_after_update() {
    across(1, Opt::O2, true, true);
}
