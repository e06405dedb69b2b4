//! Checkpoint/restore of the heap: this binary writes its heap into a
//! memfd and re-executes itself with `MCR_HEAP_FD` set, so that the new
//! process adopts the image at its first allocation; the child test then
//! checks every object (address, size, old site pointer, bytes, inherited
//! flag) and that the adopted heap keeps working.

use mcr_rt::heap::{self, Site};
use std::ffi::c_void;
use std::process::Command;

extern "C" {
    fn free(p: *mut c_void);
    fn malloc(n: usize) -> *mut c_void;
    fn calloc(n: usize, m: usize) -> *mut c_void;
    fn __mcr_malloc(n: usize, site: *const Site) -> *mut c_void;
    fn __mcr_memalign(a: usize, n: usize, site: *const Site) -> *mut c_void;
}

static S: Site = Site {
    key: 9,
    file: std::ptr::null(),
    function: std::ptr::null(),
    line: 0,
    flags: 1,
    type_name: std::ptr::null(),
    elem_size: 0,
};

/// Directory of the objects to check, itself a heap object:
/// [count, (addr, size, site) * count].
const DIR_ENV: &str = "MCR_HEAP_TEST_DIR";
/// A big, mostly untouched calloc'd object: must cost nothing in the image.
const SPARSE_ENV: &str = "MCR_HEAP_TEST_SPARSE";
const SPARSE: usize = 32 << 20;
/// Set in the grandchild (restored from a restored process).
const CHAIN_ENV: &str = "MCR_HEAP_TEST_CHAIN";
const SPARSE_MARK: usize = 20 << 20;

fn fill(p: usize, n: usize) {
    // SAFETY: p is a live allocation of n bytes.
    let s = unsafe { std::slice::from_raw_parts_mut(p as *mut u8, n) };
    for (i, b) in s.iter_mut().enumerate() {
        *b = (p.wrapping_add(i) % 251) as u8;
    }
}

fn filled(p: usize, n: usize) -> bool {
    // SAFETY: p is a live allocation of n bytes.
    let s = unsafe { std::slice::from_raw_parts(p as *const u8, n) };
    s.iter()
        .enumerate()
        .all(|(i, &b)| b == (p.wrapping_add(i) % 251) as u8)
}

#[test]
fn heap_image_round_trip() {
    if std::env::var_os(DIR_ENV).is_some() {
        return; // we are the child; see heap_image_child
    }
    let mut objs: Vec<(usize, usize, usize)> = Vec::new();
    let mut dead = Vec::new();
    for i in 0..3000usize {
        let n = match i % 10 {
            0 => 40_000 + i * 10,
            1 => 200_000,
            _ => (i * 7) % 2000,
        };
        // SAFETY: allocator calls.
        let p = unsafe {
            if i % 13 == 0 {
                __mcr_memalign(256, n, &S)
            } else if i % 5 == 0 {
                malloc(n)
            } else {
                __mcr_malloc(n, &S)
            }
        } as usize;
        fill(p, n);
        let site = if i % 13 != 0 && i % 5 == 0 {
            0
        } else {
            &S as *const Site as usize
        };
        if i % 4 == 3 {
            dead.push(p);
        } else {
            objs.push((p, n, site));
        }
    }
    for p in dead {
        // SAFETY: live allocation.
        unsafe { free(p as *mut c_void) };
    }
    // The image's pages prepared now, as an update does while the program
    // serves: what is allocated below (the directory, the sparse object)
    // grows the heap past the prepared mapping, and the ~60 MB copy is
    // split between the checkpoint's threads.
    // SAFETY: memfd_create with no flags: the child inherits the fd.
    let fd = unsafe { libc::memfd_create(c"mcr-heap-test".as_ptr(), 0) };
    assert!(fd >= 0);
    let prepared = heap::prepare_image(fd).unwrap();
    // The directory, in the heap too.
    let words = 1 + 3 * objs.len();
    // SAFETY: allocator call, then writes within it.
    let dir = unsafe { malloc(words * 8) } as *mut usize;
    // SAFETY: dir has `words` words.
    unsafe {
        *dir = objs.len();
        for (i, &(p, n, s)) in objs.iter().enumerate() {
            *dir.add(1 + 3 * i) = p;
            *dir.add(2 + 3 * i) = n;
            *dir.add(3 + 3 * i) = s;
        }
    }
    // SAFETY: allocator call; one byte written inside.
    let sparse = unsafe { calloc(1, SPARSE) } as *mut u8;
    // SAFETY: within the allocation.
    unsafe { *sparse.add(SPARSE_MARK) = 0x77 };
    let (info, mapping) = heap::write_image(fd, Some(prepared)).unwrap();
    drop(mapping);
    assert_eq!(info.base as usize, heap::region().0);
    assert!(
        info.written + SPARSE as u64 - (1 << 20) < info.file_len,
        "{info:?}"
    );
    assert_eq!(heap::read_image_info(fd).unwrap().base, info.base);
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "heap_image_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(heap::HEAP_FD_ENV, fd.to_string())
        .env(DIR_ENV, (dir as usize).to_string())
        .env(SPARSE_ENV, (sparse as usize).to_string())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(text.contains("1 passed"), "child ran no test:\n{text}");
    // The parent's heap is untouched by all this.
    for &(p, n, _) in &objs {
        assert!(filled(p, n));
        // SAFETY: live allocation.
        unsafe { free(p as *mut c_void) };
    }
    // SAFETY: live allocation; our fd.
    unsafe {
        free(dir as *mut c_void);
        libc::close(fd);
    }
}

#[test]
fn heap_image_child() {
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        return; // only meaningful when started by heap_image_round_trip
    };
    assert_eq!(heap::adopt_status(), Some(Ok(())), "image not adopted");
    let dir: usize = dir.to_str().unwrap().parse().unwrap();
    let d = heap::find(dir).expect("directory survived");
    assert!(heap::is_inherited(dir));
    let dir = d.addr as *const usize;
    // SAFETY: the directory object, inherited from the parent.
    let n = unsafe { *dir };
    let objs: Vec<(usize, usize, usize)> = (0..n)
        // SAFETY: within the directory.
        .map(|i| unsafe {
            (
                *dir.add(1 + 3 * i),
                *dir.add(2 + 3 * i),
                *dir.add(3 + 3 * i),
            )
        })
        .collect();
    let mut live = std::collections::HashSet::new();
    let mut inherited = 0;
    heap::for_each_live(|o| {
        if heap::is_inherited(o.addr) {
            inherited += 1;
            live.insert(o.addr);
        }
    });
    for &(p, size, site) in &objs {
        let o = heap::find(p).expect("old object is live");
        assert_eq!((o.addr, o.size, o.site as usize), (p, size, site));
        assert!(heap::is_inherited(p));
        assert!(live.contains(&p));
        assert!(filled(p, size), "bytes of {p:#x} differ");
    }
    let sparse: usize = std::env::var(SPARSE_ENV).unwrap().parse().unwrap();
    assert_eq!(heap::find(sparse + SPARSE - 1).unwrap().size, SPARSE);
    // SAFETY: the inherited sparse object.
    let sp = unsafe { std::slice::from_raw_parts(sparse as *const u8, SPARSE) };
    assert_eq!(sp[SPARSE_MARK], 0x77);
    assert!(sp.iter().filter(|&&b| b != 0).count() == 1);
    // Every inherited object is one of ours or something the parent's
    // runtime/harness had allocated; ours are all there.
    assert!(inherited > objs.len());
    // A restored process can be checkpointed and restored again (the image
    // now partly comes from its own file-backed mapping).
    if std::env::var_os(CHAIN_ENV).is_none() {
        // SAFETY: memfd for the grandchild.
        let fd = unsafe { libc::memfd_create(c"mcr-heap-test-2".as_ptr(), 0) };
        heap::write_image(fd, None).unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "heap_image_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(heap::HEAP_FD_ENV, fd.to_string())
            .env(CHAIN_ENV, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "grandchild:\n{text}"
        );
    }
    // New allocations work and never overlap old objects.
    let mut fresh = Vec::new();
    for i in 0..5000usize {
        let n = (i * 13) % 3000;
        // SAFETY: allocator call.
        let p = unsafe { malloc(n) } as usize;
        assert!(!heap::is_inherited(p));
        assert!(!live.contains(&p));
        fill(p, n);
        fresh.push((p, n));
    }
    for &(p, size, _) in &objs {
        assert!(
            filled(p, size),
            "old object {p:#x} overwritten by a new one"
        );
    }
    // Site translation as the runtime does it.
    static NEW_SITE: Site = Site { key: 10, ..S };
    for &(p, _, site) in &objs {
        if site != 0 {
            assert!(heap::set_site(p, &NEW_SITE));
        }
    }
    heap::clear_inherited();
    assert!(!heap::is_inherited(objs[0].0));
    // Inherited objects can be freed and their memory reused.
    for &(p, _, _) in &objs {
        // SAFETY: live allocation (inherited).
        unsafe { free(p as *mut c_void) };
    }
    for (p, _) in fresh {
        // SAFETY: live allocation.
        unsafe { free(p as *mut c_void) };
    }
    let st = heap::stats();
    assert!(st.mapped_bytes > 0);
}

const BAD_ENV: &str = "MCR_HEAP_TEST_BAD";

#[test]
fn heap_image_bad_is_refused_and_heap_starts_empty() {
    if std::env::var_os(DIR_ENV).is_some() || std::env::var_os(BAD_ENV).is_some() {
        return;
    }
    // SAFETY: memfd with garbage; the child inherits it.
    let fd = unsafe { libc::memfd_create(c"junk".as_ptr(), 0) };
    // SAFETY: writing a local buffer.
    unsafe { libc::write(fd, [7u8; 4096].as_ptr() as *const c_void, 4096) };
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "heap_image_bad_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(heap::HEAP_FD_ENV, fd.to_string())
        .env(BAD_ENV, "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "child:\n{text}"
    );
    // SAFETY: our fd.
    unsafe { libc::close(fd) };
    // Too late in this process: the heap serves allocations already.
    let info = heap::ImageInfo {
        base: 0,
        len: 0,
        file_len: 0,
        page_size: 0,
        version: 0,
        written: 0,
    };
    // SAFETY: refused before touching anything.
    let r = unsafe { heap::adopt_image(0, &info) };
    assert_eq!(r, Err(heap::HeapError::AlreadyInitialized));
}

#[test]
fn heap_image_bad_child() {
    if std::env::var_os(BAD_ENV).is_none() {
        return;
    }
    assert!(matches!(
        heap::adopt_status(),
        Some(Err(heap::HeapError::BadImage(_)))
    ));
    // SAFETY: allocator calls.
    unsafe {
        let p = malloc(100);
        assert!(heap::find(p as usize).is_some());
        assert!(!heap::is_inherited(p as usize));
        free(p);
    }
}
