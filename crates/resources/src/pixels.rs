//! Host copies of 2D resources.
//!
//! A copy of at least [`MAPPED_MIN`] bytes is an anonymous mapping of its
//! own, created for the resource and unmapped when it goes:
//!
//! - pages the guest never transfers cost no host memory (the kernel zeroes
//!   them on first touch), and a destroyed resource gives its memory back
//!   to the host at once instead of leaving it in the allocator's heap;
//! - its pages are never reused by the process for anything else. The
//!   display may therefore hand them to the kernel by reference
//!   (`vmsplice`) instead of copying them into the socket: a page still
//!   queued in a socket when the resource is destroyed keeps the pixels it
//!   held, never someone else's data ([`HostPixels::is_mapped`]).
//!
//! Smaller copies (cursors, small surfaces) stay on the heap, where a
//! mapping per resource would cost more than it saves.

use std::ptr::NonNull;

/// Size from which a host copy gets its own mapping.
pub const MAPPED_MIN: usize = 1 << 20;

/// The pixels of one 2D resource.
pub(crate) enum HostPixels {
    /// A small copy on the heap.
    Heap(Vec<u8>),
    /// A copy with a mapping of its own.
    Mapped(Mapping),
}

impl std::fmt::Debug for HostPixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.is_mapped() { "mapped" } else { "heap" };
        write!(f, "HostPixels({} bytes, {kind})", self.len())
    }
}

impl HostPixels {
    /// `len` zero bytes; `None` when the host has no memory for them.
    pub(crate) fn zeroed(len: usize) -> Option<Self> {
        if len >= MAPPED_MIN {
            return Mapping::zeroed(len).map(Self::Mapped);
        }
        let mut v = Vec::new();
        v.try_reserve_exact(len).ok()?;
        v.resize(len, 0);
        Some(Self::Heap(v))
    }

    /// An empty copy (resources whose content is guest memory).
    pub(crate) fn empty() -> Self {
        Self::Heap(Vec::new())
    }

    /// Whether the copy is a mapping of its own (see the module docs).
    pub(crate) fn is_mapped(&self) -> bool {
        matches!(self, Self::Mapped(_))
    }

    fn len(&self) -> usize {
        match self {
            Self::Heap(v) => v.len(),
            Self::Mapped(m) => m.len,
        }
    }
}

impl std::ops::Deref for HostPixels {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Heap(v) => v,
            // SAFETY: the mapping is `len` readable bytes owned by `m` for
            // its whole life, and `&self` forbids a concurrent `&mut`.
            Self::Mapped(m) => unsafe { std::slice::from_raw_parts(m.ptr.as_ptr(), m.len) },
        }
    }
}

impl std::ops::DerefMut for HostPixels {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Self::Heap(v) => v,
            // SAFETY: as in `deref`, and `&mut self` makes this the only
            // reference to the bytes.
            Self::Mapped(m) => unsafe { std::slice::from_raw_parts_mut(m.ptr.as_ptr(), m.len) },
        }
    }
}

/// A private anonymous read-write mapping, unmapped on drop.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `Mapping` owns its bytes exclusively, like a `Box<[u8]>`.
unsafe impl Send for Mapping {}
// SAFETY: shared access only reads (through `HostPixels::deref`).
unsafe impl Sync for Mapping {}

impl Mapping {
    fn zeroed(len: usize) -> Option<Self> {
        if len == 0 {
            return None;
        }
        // SAFETY: a new private anonymous mapping; no existing memory is
        // named or changed.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        NonNull::new(ptr.cast::<u8>()).map(|ptr| Self { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr..ptr + len` is the mapping created in `zeroed`, and
        // no reference into it outlives `self`. Pages the kernel still holds
        // by reference (a socket) keep their content until released.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_large_copies_are_mapped_and_zeroed() {
        let mut p = HostPixels::zeroed(MAPPED_MIN + 4096).expect("mapping");

        assert!(p.is_mapped());
        assert!(p.iter().all(|&b| b == 0));
        p[MAPPED_MIN] = 7;
        assert_eq!(p[MAPPED_MIN], 7);
        assert_eq!(p.len(), MAPPED_MIN + 4096);
    }

    #[test]
    fn test_small_copies_stay_on_the_heap() {
        let p = HostPixels::zeroed(64 * 64 * 4).expect("heap");

        assert!(!p.is_mapped());
        assert_eq!(p.len(), 64 * 64 * 4);
    }

    #[test]
    fn test_an_impossible_size_is_refused_not_aborted() {
        assert!(HostPixels::zeroed(usize::MAX / 2).is_none());
    }
}
