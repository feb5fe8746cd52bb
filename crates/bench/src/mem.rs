//! Guest RAM: one memfd mapped shared into this process, handed to the
//! daemon with SET_MEM_TABLE. GPA 0 is the start of the mapping.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

/// A shared memfd mapping used as guest-physical memory `[0, size)`.
pub struct GuestRam {
    file: File,
    base: NonNull<u8>,
    size: usize,
}

impl GuestRam {
    /// Creates and maps a memfd of `size` bytes (zero-filled, not populated).
    pub fn new(name: &str, size: usize) -> io::Result<Self> {
        let cname = std::ffi::CString::new(name).map_err(io::Error::other)?;
        // SAFETY: `cname` is a valid NUL-terminated string that outlives the
        // call; memfd_create has no other preconditions.
        let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by memfd_create and is owned by
        // nothing else.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(size as u64)?;
        // SAFETY: a fresh shared mapping of a file we own; the kernel picks
        // the address, so no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap NULL"))?;
        Ok(Self { file, base, size })
    }

    /// The memfd, to pass to the daemon.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size as u64
    }

    fn check(&self, gpa: u64, len: usize) -> usize {
        let start = usize::try_from(gpa).unwrap_or(usize::MAX);
        assert!(
            start.checked_add(len).is_some_and(|end| end <= self.size),
            "guest access {gpa:#x}+{len:#x} outside guest RAM"
        );
        start
    }

    /// Copies `data` to `gpa`.
    pub fn write(&self, gpa: u64, data: &[u8]) {
        let start = self.check(gpa, data.len());
        // SAFETY: the range is inside our live mapping (checked above) and
        // `data` is a separate buffer, so they do not overlap. The daemon
        // may access the same bytes concurrently, but it only reads request
        // areas the bench does not change while a request is in flight.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.as_ptr().add(start), data.len());
        }
    }

    /// Copies `out.len()` bytes at `gpa` into `out`.
    pub fn read(&self, gpa: u64, out: &mut [u8]) {
        let start = self.check(gpa, out.len());
        // SAFETY: the range is inside our live mapping and `out` is a
        // separate buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.base.as_ptr().add(start),
                out.as_mut_ptr(),
                out.len(),
            );
        }
    }

    /// Reads a little-endian u32 at `gpa`.
    pub fn read_u32(&self, gpa: u64) -> u32 {
        let mut b = [0u8; 4];
        self.read(gpa, &mut b);
        u32::from_le_bytes(b)
    }

    /// The guest bytes `[gpa, gpa + len)` as a slice (for the memcpy
    /// reference measurement).
    pub fn slice(&self, gpa: u64, len: usize) -> &[u8] {
        let start = self.check(gpa, len);
        // SAFETY: the range is inside our mapping, which lives as long as
        // `self`; the daemon only reads these bytes while we hold the slice.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(start), len) }
    }

    /// A ring index (u16) at `gpa`, accessed atomically: the daemon reads
    /// and writes ring indices concurrently.
    pub fn atomic_u16(&self, gpa: u64) -> &AtomicU16 {
        let start = self.check(gpa, 2);
        assert_eq!(start % 2, 0, "unaligned ring index");
        // SAFETY: in bounds and 2-byte aligned (checked above); the mapping
        // lives as long as `self`, and AtomicU16 has the layout of u16.
        unsafe { &*self.base.as_ptr().add(start).cast::<AtomicU16>() }
    }

    /// Stores a ring index with release ordering (little-endian host).
    pub fn store_u16(&self, gpa: u64, v: u16) {
        self.atomic_u16(gpa).store(v.to_le(), Ordering::Release);
    }

    /// Loads a ring index with acquire ordering.
    pub fn load_u16(&self, gpa: u64) -> u16 {
        u16::from_le(self.atomic_u16(gpa).load(Ordering::Acquire))
    }
}

impl Drop for GuestRam {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `new`; no reference
        // into it outlives `self` (slices borrow `self`).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.size);
        }
    }
}

// SAFETY: the mapping is plain shared memory; every access goes through
// `&self` methods that copy or use atomics.
unsafe impl Send for GuestRam {}
// SAFETY: as above.
unsafe impl Sync for GuestRam {}
