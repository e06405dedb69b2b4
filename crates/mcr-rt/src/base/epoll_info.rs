//! The kernel's record of epoll registrations, read back from
//! `/proc/self/fdinfo/<epfd>`: the only place that lists what an epoll
//! instance watches and the `epoll_event.data` the program gave it (a
//! pointer the kernel keeps for the program).

/// What an epoll instance's descriptor links to in /proc.
pub const EPOLL_LINK: &str = "anon_inode:[eventpoll]";

/// One registration as the kernel lists it.
pub struct Registration {
    /// The target's descriptor number when it was registered.
    pub fd: i32,
    pub events: u32,
    pub data: u64,
    /// The target file's inode (to tell a number reused since).
    pub ino: Option<u64>,
}

/// Whether descriptor `fd` is an epoll instance.
pub fn is_instance(fd: i32) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .is_ok_and(|l| l.to_string_lossy() == EPOLL_LINK)
}

/// Every epoll instance this process holds.
pub fn instances() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return vec![];
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&fd| is_instance(fd))
        .collect()
}

/// The registrations of epoll instance `epfd`.
pub fn registrations(epfd: i32) -> Vec<Registration> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{epfd}")).unwrap_or_default();
    let mut out = Vec::new();
    for line in info.lines().filter(|l| l.starts_with("tfd:")) {
        // "tfd:        5 events:       19 data:     1bb941090010  pos:0 ino:bb24a9 sdev:9"
        let f: Vec<&str> = line.split_whitespace().collect();
        let field = |k: &str| {
            f.iter()
                .enumerate()
                .find_map(|(i, x)| match x.strip_prefix(k) {
                    Some("") => f.get(i + 1).copied(),
                    Some(v) => Some(v),
                    None => None,
                })
        };
        let (Some(fd), Some(events), Some(data)) = (
            field("tfd:").and_then(|x| x.parse::<i32>().ok()),
            field("events:").and_then(|x| u32::from_str_radix(x, 16).ok()),
            field("data:").and_then(|x| u64::from_str_radix(x, 16).ok()),
        ) else {
            continue;
        };
        out.push(Registration {
            fd,
            events,
            data,
            ino: field("ino:").and_then(|x| u64::from_str_radix(x, 16).ok()),
        });
    }
    out
}
