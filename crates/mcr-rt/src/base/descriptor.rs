//! Facts about one of the process's descriptors, read without changing it.

/// `fstat` of `fd`; `None` when it is not open.
pub fn stat(fd: libc::c_int) -> Option<libc::stat> {
    // SAFETY: a zeroed `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into our local; an invalid number just fails.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some(st)
}

/// The kind of file `fd` is (`S_IFSOCK`, `S_IFREG`, ...), if it is open.
pub fn kind(fd: libc::c_int) -> Option<libc::mode_t> {
    stat(fd).map(|st| st.st_mode & libc::S_IFMT)
}

/// Whether a call on `fd` can block: sockets, pipes and terminals.
pub fn can_block(fd: libc::c_int) -> bool {
    matches!(
        crate::base::descriptor::kind(fd),
        Some(libc::S_IFSOCK | libc::S_IFIFO | libc::S_IFCHR)
    )
}
