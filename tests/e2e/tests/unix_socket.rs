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

fn across(v_to: u32, opt: Opt) {
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
    let before = s.dump();
    s.update_ok(&b2);
    assert_eq!(s.version(), v_to.to_string());
    assert_eq!(s.dump(), before);
    s.check();
    // Unix connections from before the update keep their state.
    assert_eq!(u1.cmd("INCR 1"), "6");
    assert_eq!(u2.cmd("INCR 2"), "10");
    assert_eq!(t.cmd("INCR 1"), "101");
    // The listener still accepts on its path.
    let mut u3 = U::connect(&case);
    assert_eq!(u3.cmd("INCR 3"), "3");
    s.check();
}

#[test]
fn v1_to_v1_o2() {
    across(1, Opt::O2);
}

#[test]
fn v1_to_v2_o2() {
    across(2, Opt::O2);
}

#[test]
fn v1_to_v1_o0() {
    across(1, Opt::O0);
}
