//! Guest-physical backing of a resource: validation, coalescing, host iovec
//! derivation and bounds-checked reads.
//!
//! The coalesced guest-physical ranges are the source of truth. Host pointers
//! are derived from them against one guest memory snapshot and never outlive
//! that snapshot (the owner keeps its `Arc` alive while the pointers exist).

use std::ffi::c_void;

use rutabaga_gfx::RutabagaIovec;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryError, GuestMemoryMmap};

use crate::error::ResourceError;
use crate::proto::MemEntry;

/// One contiguous range of guest-physical memory backing a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestRange {
    /// Guest-physical start address.
    pub addr: u64,
    /// Length in bytes (never 0, `addr + len` never overflows).
    pub len: u64,
}

/// The backing of one resource: coalesced ranges in guest order.
///
/// Memory cost is one `GuestRange` (16 bytes) per discontiguous range plus a
/// fat pointer; the capacity is exact (boxed slice).
#[derive(Debug)]
pub(crate) struct Backing {
    ranges: Box<[GuestRange]>,
    total: u64,
}

impl Backing {
    /// Validates `entries` against `mem` and coalesces adjacent ones.
    ///
    /// Checks, in order: the entry count is in `1..=max_entries`; every entry
    /// has a non-zero length and does not overflow; every entry lies inside
    /// guest memory. Nothing is allocated before the count was checked.
    pub(crate) fn from_entries(
        id: u32,
        entries: &[MemEntry],
        max_entries: u32,
        mem: &GuestMemoryMmap<()>,
    ) -> Result<Self, ResourceError> {
        let count_ok = usize::try_from(max_entries).is_ok_and(|max| entries.len() <= max);
        if entries.is_empty() || !count_ok {
            return Err(ResourceError::EntryCount {
                id,
                count: entries.len(),
                max: max_entries,
            });
        }

        let mut ranges: Vec<GuestRange> = Vec::new();
        let mut total: u64 = 0;
        for (index, entry) in entries.iter().enumerate() {
            let len = u64::from(entry.length);
            if len == 0 {
                return Err(ResourceError::EntryEmpty { id, index });
            }
            let end = entry
                .addr
                .checked_add(len)
                .ok_or(ResourceError::EntryOverflow {
                    id,
                    index,
                    addr: entry.addr,
                    len,
                })?;
            // Cannot overflow: at most u32::MAX entries of at most u32::MAX bytes.
            total += len;
            match ranges.last_mut() {
                Some(last) if last.addr + last.len == entry.addr => {
                    // `end` did not overflow, so the merged length cannot either.
                    last.len = end - last.addr;
                }
                _ => ranges.push(GuestRange {
                    addr: entry.addr,
                    len,
                }),
            }
        }

        // Checking the coalesced ranges is equivalent to checking every entry
        // (a range is the union of adjacent entries) and much cheaper: 16384
        // contiguous pages are one lookup. Only on failure are the entries
        // scanned to name the first bad one.
        if !ranges
            .iter()
            .all(|r| range_is_guest_memory(mem, r.addr, r.len))
        {
            let (index, entry) = entries
                .iter()
                .enumerate()
                .find(|(_, e)| !range_is_guest_memory(mem, e.addr, u64::from(e.length)))
                .unwrap_or((0, &entries[0]));
            return Err(ResourceError::EntryOutsideGuestMemory {
                id,
                index,
                addr: entry.addr,
                len: u64::from(entry.length),
            });
        }

        Ok(Self {
            ranges: ranges.into_boxed_slice(),
            total,
        })
    }

    /// The coalesced ranges.
    pub(crate) fn ranges(&self) -> &[GuestRange] {
        &self.ranges
    }

    /// Sum of all range lengths in bytes.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// True if every range still lies inside `mem`.
    pub(crate) fn is_inside(&self, mem: &GuestMemoryMmap<()>) -> bool {
        self.ranges
            .iter()
            .all(|r| range_is_guest_memory(mem, r.addr, r.len))
    }

    /// Host iovecs for every range, split at memory region boundaries.
    ///
    /// The pointers are valid for as long as `mem` (the snapshot, not a
    /// clone of its regions) is alive. Returns `None` if a range is no longer
    /// guest memory.
    pub(crate) fn iovecs(&self, mem: &GuestMemoryMmap<()>) -> Option<Vec<RutabagaIovec>> {
        let mut iovecs = Vec::with_capacity(self.ranges.len());
        for range in self.ranges.iter() {
            let len = usize::try_from(range.len).ok()?;
            for slice in mem.get_slices(GuestAddress(range.addr), len) {
                let slice = slice.ok()?;
                iovecs.push(RutabagaIovec {
                    base: slice.ptr_guard_mut().as_ptr().cast::<c_void>(),
                    len: slice.len(),
                });
            }
        }
        Some(iovecs)
    }

    /// Returns a reader for sequential reads of the backing's bytes.
    pub(crate) fn reader<'a>(&'a self, mem: &'a GuestMemoryMmap<()>) -> BackingReader<'a> {
        BackingReader {
            ranges: &self.ranges,
            mem,
            index: 0,
            start: 0,
        }
    }
}

/// True if `[addr, addr + len)` is entirely guest memory (possibly spanning
/// adjacent regions).
fn range_is_guest_memory(mem: &GuestMemoryMmap<()>, addr: u64, len: u64) -> bool {
    usize::try_from(len).is_ok_and(|len| mem.check_range(GuestAddress(addr), len))
}

/// Reads bytes at offsets of a backing (offset 0 is the start of the first
/// range), through vm-memory's bounds-checked accessors.
///
/// Remembers the range it stopped in, so reading rows in increasing offset
/// order costs O(rows + ranges) rather than O(rows * ranges).
pub(crate) struct BackingReader<'a> {
    ranges: &'a [GuestRange],
    mem: &'a GuestMemoryMmap<()>,
    /// Index of the range that contains `start`.
    index: usize,
    /// Backing offset at which `ranges[index]` starts.
    start: u64,
}

/// Why a [`BackingReader`] read failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The read extends past the end of the backing.
    OutsideBacking,
    /// Guest memory refused the access.
    Memory(GuestMemoryError),
}

impl BackingReader<'_> {
    /// Fills `buf` with the backing bytes starting at `offset`.
    pub(crate) fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        if offset < self.start {
            self.index = 0;
            self.start = 0;
        }
        let mut offset = offset;
        let mut done = 0usize;
        while done < buf.len() {
            let range = self
                .ranges
                .get(self.index)
                .ok_or(ReadError::OutsideBacking)?;
            let range_end = self.start + range.len;
            if offset >= range_end {
                self.start = range_end;
                self.index += 1;
                continue;
            }
            let within = offset - self.start;
            let available = range.len - within;
            let want = buf.len() - done;
            let n = usize::try_from(available).map_or(want, |a| a.min(want));
            let dst = &mut buf[done..done + n];
            self.mem
                .read_slice(dst, GuestAddress(range.addr + within))
                .map_err(ReadError::Memory)?;
            done += n;
            offset += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const PAGE: u32 = 4096;

    fn memory() -> GuestMemoryMmap<()> {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), (64 * MIB) as usize)])
            .expect("anonymous guest memory")
    }

    fn two_regions() -> GuestMemoryMmap<()> {
        // Two adjacent 1 MiB regions: [0, 1M) and [1M, 2M).
        GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), MIB as usize),
            (GuestAddress(MIB), MIB as usize),
        ])
        .expect("anonymous guest memory")
    }

    fn entry(addr: u64, length: u32) -> MemEntry {
        MemEntry { addr, length }
    }

    #[test]
    fn test_from_entries_adjacent_pages_coalesce_into_one_range() {
        let mem = memory();
        // 16384 contiguous 4 KiB pages = 64 MiB starting at 0.
        let entries: Vec<MemEntry> = (0..16384u64)
            .map(|i| entry(i * u64::from(PAGE), PAGE))
            .collect();

        let backing = Backing::from_entries(1, &entries, 16384, &mem).expect("valid entries");

        assert_eq!(
            backing.ranges(),
            &[GuestRange {
                addr: 0,
                len: 64 * MIB
            }]
        );
        assert_eq!(backing.total(), 64 * MIB);
    }

    #[test]
    fn test_from_entries_gap_keeps_two_ranges() {
        let mem = memory();
        let entries = [entry(0, PAGE), entry(2 * u64::from(PAGE), PAGE)];

        let backing = Backing::from_entries(1, &entries, 16, &mem).expect("valid entries");

        assert_eq!(backing.ranges().len(), 2);
        assert_eq!(backing.total(), 2 * u64::from(PAGE));
    }

    #[test]
    fn test_from_entries_reversed_order_is_not_coalesced() {
        let mem = memory();
        // Page 1 then page 0: contiguous in memory but not in backing order.
        let entries = [entry(u64::from(PAGE), PAGE), entry(0, PAGE)];

        let backing = Backing::from_entries(1, &entries, 16, &mem).expect("valid entries");

        assert_eq!(backing.ranges().len(), 2);
    }

    #[test]
    fn test_from_entries_zero_entries_is_entry_count_error() {
        let mem = memory();

        let err = Backing::from_entries(1, &[], 16, &mem).expect_err("no entries");

        assert!(matches!(err, ResourceError::EntryCount { count: 0, .. }));
    }

    #[test]
    fn test_from_entries_more_than_max_is_entry_count_error() {
        let mem = memory();
        let entries = [entry(0, PAGE), entry(u64::from(PAGE), PAGE), entry(0, PAGE)];

        let err = Backing::from_entries(1, &entries, 2, &mem).expect_err("too many");

        assert!(matches!(
            err,
            ResourceError::EntryCount {
                count: 3,
                max: 2,
                ..
            }
        ));
    }

    #[test]
    fn test_from_entries_zero_length_is_entry_empty() {
        let mem = memory();
        let entries = [entry(0, PAGE), entry(u64::from(PAGE), 0)];

        let err = Backing::from_entries(1, &entries, 16, &mem).expect_err("empty entry");

        assert!(matches!(err, ResourceError::EntryEmpty { index: 1, .. }));
    }

    #[test]
    fn test_from_entries_wrapping_address_is_overflow() {
        let mem = memory();
        let entries = [entry(u64::MAX - 10, PAGE)];

        let err = Backing::from_entries(1, &entries, 16, &mem).expect_err("overflow");

        assert!(matches!(err, ResourceError::EntryOverflow { index: 0, .. }));
    }

    #[test]
    fn test_from_entries_past_end_of_memory_is_outside() {
        let mem = memory();
        // Starts inside the last page, ends one page past the 64 MiB end.
        let entries = [entry(64 * MIB - u64::from(PAGE), 2 * PAGE)];

        let err = Backing::from_entries(1, &entries, 16, &mem).expect_err("outside");

        assert!(matches!(
            err,
            ResourceError::EntryOutsideGuestMemory { index: 0, .. }
        ));
    }

    #[test]
    fn test_from_entries_names_first_entry_outside_memory() {
        let mem = memory();
        // Entries 0 and 1 are adjacent (one range); entry 1 ends past 64 MiB.
        let entries = [
            entry(64 * MIB - 2 * u64::from(PAGE), PAGE),
            entry(64 * MIB - u64::from(PAGE), 2 * PAGE),
        ];

        let err = Backing::from_entries(1, &entries, 16, &mem).expect_err("outside");

        assert!(matches!(
            err,
            ResourceError::EntryOutsideGuestMemory { index: 1, .. }
        ));
    }

    #[test]
    fn test_from_entries_hole_between_regions_is_outside() {
        // Regions [0, 1M) and [2M, 3M): an entry across 1M..2M hits the hole.
        let mem = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), MIB as usize),
            (GuestAddress(2 * MIB), MIB as usize),
        ])
        .expect("anonymous guest memory");
        let entries = [entry(MIB - u64::from(PAGE), 2 * PAGE)];

        let err = Backing::from_entries(1, &entries, 16, &mem).expect_err("hole");

        assert!(matches!(
            err,
            ResourceError::EntryOutsideGuestMemory { index: 0, .. }
        ));
    }

    #[test]
    fn test_iovecs_range_across_regions_is_split() {
        let mem = two_regions();
        // One 8 KiB entry straddling the boundary at 1 MiB.
        let entries = [entry(MIB - u64::from(PAGE), 2 * PAGE)];
        let backing = Backing::from_entries(1, &entries, 16, &mem).expect("valid entries");

        let iovecs = backing.iovecs(&mem).expect("inside memory");

        assert_eq!(backing.ranges().len(), 1);
        assert_eq!(iovecs.len(), 2);
        assert_eq!(iovecs[0].len, PAGE as usize);
        assert_eq!(iovecs[1].len, PAGE as usize);
    }

    #[test]
    fn test_reader_reads_across_ranges_in_backing_order() {
        let mem = memory();
        mem.write_slice(&[1, 2, 3, 4], GuestAddress(0x2000 - 2))
            .expect("write");
        mem.write_slice(&[5, 6, 7, 8], GuestAddress(0x8000))
            .expect("write");
        // Range A = [0x1000, 0x2000), range B = [0x8000, 0x9000).
        let entries = [entry(0x1000, PAGE), entry(0x8000, PAGE)];
        let backing = Backing::from_entries(1, &entries, 16, &mem).expect("valid entries");
        let mut buf = [0u8; 4];

        backing
            .reader(&mem)
            .read_at(u64::from(PAGE) - 2, &mut buf)
            .expect("read");

        assert_eq!(buf, [1, 2, 5, 6]);
    }

    #[test]
    fn test_reader_past_end_is_outside_backing() {
        let mem = memory();
        let backing = Backing::from_entries(1, &[entry(0, PAGE)], 16, &mem).expect("valid entries");
        let mut buf = [0u8; 8];

        let err = backing
            .reader(&mem)
            .read_at(u64::from(PAGE) - 4, &mut buf)
            .expect_err("past end");

        assert!(matches!(err, ReadError::OutsideBacking));
    }
}
