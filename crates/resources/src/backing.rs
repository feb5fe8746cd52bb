//! Guest-physical backing of a resource: validation, coalescing, host
//! address derivation and reads.
//!
//! The coalesced guest-physical ranges are the source of truth. Host pointers
//! are derived from them against one guest memory snapshot and never outlive
//! that snapshot (the owner keeps its `Arc` alive while the pointers exist).

use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryError, GuestMemoryMmap, GuestMemoryRegion,
    MemoryRegionAddress,
};
use vugpu_protocol::wire::virtio_gpu_mem_entry;

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

/// The memory entries of an ATTACH_BACKING or CREATE_BLOB request, read by
/// index.
///
/// Implemented for decoded entries (`[MemEntry]`) and for the request's
/// wire bytes (`[virtio_gpu_mem_entry]`, little-endian, e.g. from
/// `<[virtio_gpu_mem_entry]>::ref_from_bytes` over the descriptor bytes),
/// so a caller can validate and coalesce the entries straight from the
/// request without decoding them into a vector first.
pub trait BackingEntries {
    /// Number of entries.
    fn count(&self) -> usize;
    /// Entry `index` (`index < count()`).
    fn entry(&self, index: usize) -> MemEntry;
    /// Every entry, in order.
    fn entries(&self) -> impl Iterator<Item = MemEntry> + '_;
}

impl BackingEntries for [MemEntry] {
    fn count(&self) -> usize {
        self.len()
    }

    fn entry(&self, index: usize) -> MemEntry {
        self[index]
    }

    fn entries(&self) -> impl Iterator<Item = MemEntry> + '_ {
        self.iter().copied()
    }
}

fn from_wire(e: &virtio_gpu_mem_entry) -> MemEntry {
    MemEntry {
        addr: e.addr.get(),
        length: e.length.get(),
    }
}

impl BackingEntries for [virtio_gpu_mem_entry] {
    fn count(&self) -> usize {
        self.len()
    }

    fn entry(&self, index: usize) -> MemEntry {
        from_wire(&self[index])
    }

    fn entries(&self) -> impl Iterator<Item = MemEntry> + '_ {
        self.iter().map(from_wire)
    }
}

/// One guest memory region as this process maps it.
#[derive(Debug, Clone, Copy)]
struct HostRegion {
    /// First guest-physical address.
    start: u64,
    /// One past the last guest-physical address.
    end: u64,
    /// Host address of `start`.
    host: *mut u8,
}

/// The regions of one guest memory snapshot, sorted by address, with their
/// host addresses: what validating and mapping a backing needs, without
/// vm-memory's per-call region search and slice construction.
///
/// The host addresses are valid while the snapshot it was built from is
/// alive; its owner keeps that snapshot (see `GpuState::mem_snapshot`).
#[derive(Debug, Default)]
pub(crate) struct RegionMap {
    regions: Vec<HostRegion>,
}

impl RegionMap {
    /// The regions of `mem`.
    pub(crate) fn new(mem: &GuestMemoryMmap<()>) -> Self {
        let mut regions: Vec<HostRegion> = mem
            .iter()
            .filter_map(|r| {
                let host = r.get_host_address(MemoryRegionAddress(0)).ok()?;
                let start = r.start_addr().0;
                Some(HostRegion {
                    start,
                    end: start.checked_add(r.len())?,
                    host,
                })
            })
            .collect();
        regions.sort_by_key(|r| r.start);
        Self { regions }
    }

    /// Index of the region holding `addr`, trying `hint` first (ranges of
    /// one backing usually share a region).
    fn find(&self, addr: u64, hint: usize) -> Option<usize> {
        if let Some(r) = self.regions.get(hint) {
            if r.start <= addr && addr < r.end {
                return Some(hint);
            }
        }
        let i = self
            .regions
            .partition_point(|r| r.start <= addr)
            .checked_sub(1)?;
        (addr < self.regions[i].end).then_some(i)
    }

    /// Calls `f(host, len)` for each piece of `[addr, addr + len)` split at
    /// region boundaries. Returns false (possibly after some calls) if the
    /// range is not entirely guest memory.
    fn for_each_piece(
        &self,
        addr: u64,
        len: u64,
        hint: &mut usize,
        mut f: impl FnMut(*mut u8, usize),
    ) -> bool {
        let (mut addr, mut left) = (addr, len);
        while left > 0 {
            let Some(i) = self.find(addr, *hint) else {
                return false;
            };
            *hint = i;
            let r = &self.regions[i];
            let n = left.min(r.end - addr);
            let (Ok(offset), Ok(n_bytes)) = (usize::try_from(addr - r.start), usize::try_from(n))
            else {
                return false;
            };
            f(r.host.wrapping_add(offset), n_bytes);
            left -= n;
            addr += n;
        }
        true
    }

    /// Checks that `[start, end)` is guest memory and returns the bounds of
    /// a region known to hold it (empty bounds if it spans several), so the
    /// caller can check the next range against them without a call.
    #[inline(never)]
    fn check(&self, start: u64, end: u64, hint: &mut usize) -> Option<(u64, u64)> {
        if !self.contains(start, end - start, hint) {
            return None;
        }
        let r = self.regions.get(*hint)?;
        Some(if r.start <= start && end <= r.end {
            (r.start, r.end)
        } else {
            (0, 0)
        })
    }

    /// True if `[addr, addr + len)` is entirely guest memory (possibly
    /// spanning adjacent regions).
    fn contains(&self, addr: u64, len: u64, hint: &mut usize) -> bool {
        if let Some(r) = self.regions.get(*hint) {
            if r.start <= addr && addr < r.end && len <= r.end - addr {
                return true;
            }
        }
        self.for_each_piece(addr, len, hint, |_, _| {})
    }
}

/// The backing of one resource: coalesced ranges in guest order.
///
/// Memory cost is one `GuestRange` (16 bytes) per discontiguous range plus
/// the vector header; the owner recycles the buffers of large backings (see
/// `GpuState::recycle_ranges`), and a backing never keeps a buffer more than
/// 4x larger than its ranges.
#[derive(Debug)]
pub(crate) struct Backing {
    ranges: Vec<GuestRange>,
    total: u64,
}

impl Backing {
    /// Validates `entries` against `regions` and coalesces adjacent ones
    /// into `ranges` (cleared first; a recycled buffer avoids allocating).
    ///
    /// One pass over the entries: each is checked for a non-zero length and
    /// no overflow, merged into the current range if adjacent, and every
    /// finished range is checked against guest memory (the region of the
    /// previous range first). Checks, in order: the entry count is in
    /// `1..=max_entries`; then per entry in order: non-zero length, no
    /// overflow, inside guest memory (an entry is reported when the range
    /// holding it is finished). Nothing is allocated before the count was
    /// checked.
    pub(crate) fn from_entries<E: BackingEntries + ?Sized>(
        id: u32,
        entries: &E,
        max_entries: u32,
        regions: &RegionMap,
        mut ranges: Vec<GuestRange>,
    ) -> Result<Self, ResourceError> {
        let count = entries.count();
        let count_ok = usize::try_from(max_entries).is_ok_and(|max| count <= max);
        if count == 0 || !count_ok {
            return Err(ResourceError::EntryCount {
                id,
                count,
                max: max_entries,
            });
        }
        ranges.clear();
        ranges.reserve(count);
        // Ranges are written into the reserved capacity and the length set
        // once at the end: a `push` per range (length load, capacity check,
        // length store) was most of the cost of a scattered backing.
        let out = &mut ranges.spare_capacity_mut()[..count];
        let mut n = 0usize;
        let mut hint = 0usize;
        // Bounds of the region that held the previous range: most ranges
        // of a backing fall in the same region and are checked inline.
        let mut region = (0u64, 0u64);
        let mut total: u64 = 0;
        // The range being built: start, end, index of its first entry. No
        // valid entry starts at u64::MAX (its end would overflow), so the
        // initial end never matches.
        let mut current = (0u64, u64::MAX, 0usize);
        for (index, entry) in entries.entries().enumerate() {
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
            if entry.addr == current.1 {
                current.1 = end;
                continue;
            }
            if index > 0 {
                finish_range(id, entries, regions, &mut hint, &mut region, current)?;
                // At most one range per entry before this one: n < count.
                out[n].write(GuestRange {
                    addr: current.0,
                    len: current.1 - current.0,
                });
                n += 1;
            }
            current = (entry.addr, end, index);
        }
        finish_range(id, entries, regions, &mut hint, &mut region, current)?;
        out[n].write(GuestRange {
            addr: current.0,
            len: current.1 - current.0,
        });
        // SAFETY: the capacity is at least `count` (reserved above) and the
        // first `n + 1 <= count` slots were written just now.
        unsafe { ranges.set_len(n + 1) };
        Ok(Self { ranges, total })
    }

    /// The coalesced ranges.
    pub(crate) fn ranges(&self) -> &[GuestRange] {
        &self.ranges
    }

    /// Capacity of the range buffer, in ranges.
    pub(crate) fn capacity(&self) -> usize {
        self.ranges.capacity()
    }

    /// The same backing in a buffer of exactly its size.
    pub(crate) fn exact_copy(&self) -> Self {
        Self {
            ranges: self.ranges.clone(),
            total: self.total,
        }
    }

    /// Gives back the range buffer (for reuse by the next attach).
    pub(crate) fn into_ranges(self) -> Vec<GuestRange> {
        self.ranges
    }

    /// Sum of all range lengths in bytes.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// True if every range still lies inside `regions`.
    pub(crate) fn is_inside(&self, regions: &RegionMap) -> bool {
        let mut hint = 0;
        self.ranges
            .iter()
            .all(|r| regions.contains(r.addr, r.len, &mut hint))
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

/// Copies bytes at offsets of a backing (offset 0 is the start of the first
/// range) through the host mapping of guest memory: one `memcpy` per piece
/// of a range inside one region, no per-call region search.
///
/// Remembers the range it stopped in, so copying rows in increasing offset
/// order costs O(rows + ranges).
pub(crate) struct HostReader<'a> {
    ranges: &'a [GuestRange],
    regions: &'a RegionMap,
    /// Index of the range that contains `start`.
    index: usize,
    /// Backing offset at which `ranges[index]` starts.
    start: u64,
    hint: usize,
}

impl<'a> HostReader<'a> {
    /// A reader of `backing` through `regions`, which must be the region
    /// map of the memory snapshot the backing was validated against.
    pub(crate) fn new(backing: &'a Backing, regions: &'a RegionMap) -> Self {
        Self {
            ranges: &backing.ranges,
            regions,
            index: 0,
            start: 0,
            hint: 0,
        }
    }

    /// Fills `buf` with the backing bytes starting at `offset`.
    ///
    /// The guest may write these pages concurrently; the copy then holds
    /// a mix of old and new bytes, as with any device DMA.
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
            let want = (buf.len() - done) as u64;
            let n = want.min(range.len - within);
            let dst = &mut buf[done..];
            let mut copied = 0usize;
            let inside =
                self.regions
                    .for_each_piece(range.addr + within, n, &mut self.hint, |host, len| {
                        // SAFETY: `host..host + len` lies inside a region of
                        // the memory snapshot `regions` was built from, which
                        // its owner keeps mapped while this reader exists;
                        // `dst[copied..copied + len]` is in bounds because the
                        // pieces add up to `n <= dst.len()`. Guest memory is
                        // never a Rust allocation, so the two do not overlap.
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                host.cast_const(),
                                dst.as_mut_ptr().add(copied),
                                len,
                            );
                        }
                        copied += len;
                    });
            if !inside {
                return Err(ReadError::NotGuestMemory);
            }
            // `n` is at most `buf.len() - done`, a usize.
            done += n as usize;
            offset += n;
        }
        Ok(())
    }
}

/// Checks the finished range `(start, end, first)` against guest memory:
/// inline against the bounds of the previous range's region, through the
/// region map otherwise (updating `region`). On failure names the first
/// entry of the range that is not guest memory.
#[inline(always)]
fn finish_range<E: BackingEntries + ?Sized>(
    id: u32,
    entries: &E,
    regions: &RegionMap,
    hint: &mut usize,
    region: &mut (u64, u64),
    (start, end, first): (u64, u64, usize),
) -> Result<(), ResourceError> {
    if region.0 <= start && end <= region.1 {
        return Ok(());
    }
    match regions.check(start, end, hint) {
        Some(bounds) => {
            *region = bounds;
            Ok(())
        }
        None => Err(first_entry_outside(
            id,
            entries,
            regions,
            *hint,
            (start, end, first),
        )),
    }
}

/// The error for a range `(start, end, first)` that is not guest memory:
/// names its first entry that is not (cold path).
#[cold]
fn first_entry_outside<E: BackingEntries + ?Sized>(
    id: u32,
    entries: &E,
    regions: &RegionMap,
    hint: usize,
    (start, end, first): (u64, u64, usize),
) -> ResourceError {
    // The range is the union of entries first.., in order.
    let mut index = first;
    let mut at = start;
    while index < entries.count() && at < end {
        let entry = entries.entry(index);
        let entry_len = u64::from(entry.length);
        let mut probe = hint;
        if !regions.contains(entry.addr, entry_len, &mut probe) {
            return ResourceError::EntryOutsideGuestMemory {
                id,
                index,
                addr: entry.addr,
                len: entry_len,
            };
        }
        at = entry.addr + entry_len;
        index += 1;
    }
    ResourceError::EntryOutsideGuestMemory {
        id,
        index: first,
        addr: start,
        len: end - start,
    }
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
    /// A range is no longer guest memory (the backing was validated against
    /// another memory snapshot).
    NotGuestMemory,
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

    fn build(
        entries: &[MemEntry],
        max: u32,
        mem: &GuestMemoryMmap<()>,
    ) -> Result<Backing, ResourceError> {
        Backing::from_entries(1, entries, max, &RegionMap::new(mem), Vec::new())
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

        let backing = build(&entries, 16384, &mem).expect("valid entries");

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
    fn test_from_entries_wire_bytes_give_the_same_ranges_as_decoded_entries() {
        use vugpu_protocol::wire::virtio_gpu_mem_entry;
        let mem = memory();
        // Pages 0, 1 (adjacent) and 3: two ranges.
        let entries = [entry(0, PAGE), entry(4096, PAGE), entry(3 * 4096, PAGE)];
        let wire: Vec<virtio_gpu_mem_entry> = entries.iter().map(MemEntry::to_wire).collect();

        let from_wire = Backing::from_entries(1, &wire[..], 16, &RegionMap::new(&mem), Vec::new())
            .expect("valid entries");

        let decoded = build(&entries, 16, &mem).expect("valid entries");
        assert_eq!(from_wire.ranges(), decoded.ranges());
        assert_eq!(from_wire.total(), 3 * u64::from(PAGE));
    }

    #[test]
    fn test_from_entries_reuses_the_given_buffer() {
        let mem = memory();
        let buffer: Vec<GuestRange> = Vec::with_capacity(1024);
        let entries = [entry(0, PAGE), entry(2 * 4096, PAGE)];

        let backing = Backing::from_entries(1, &entries[..], 16, &RegionMap::new(&mem), buffer)
            .expect("valid entries");

        assert_eq!(backing.ranges().len(), 2);
        assert_eq!(backing.capacity(), 1024);
        assert_eq!(backing.exact_copy().capacity(), 2);
    }

    #[test]
    fn test_from_entries_range_across_adjacent_regions_is_inside() {
        let mem = two_regions();
        let entries = [entry(MIB - u64::from(PAGE), PAGE), entry(MIB, PAGE)];

        let backing = build(&entries, 16, &mem).expect("valid entries");

        assert_eq!(backing.ranges().len(), 1);
        assert!(backing.is_inside(&RegionMap::new(&mem)));
    }

    #[test]
    fn test_from_entries_gap_keeps_two_ranges() {
        let mem = memory();
        let entries = [entry(0, PAGE), entry(2 * u64::from(PAGE), PAGE)];

        let backing = build(&entries, 16, &mem).expect("valid entries");

        assert_eq!(backing.ranges().len(), 2);
        assert_eq!(backing.total(), 2 * u64::from(PAGE));
    }

    #[test]
    fn test_from_entries_reversed_order_is_not_coalesced() {
        let mem = memory();
        // Page 1 then page 0: contiguous in memory but not in backing order.
        let entries = [entry(u64::from(PAGE), PAGE), entry(0, PAGE)];

        let backing = build(&entries, 16, &mem).expect("valid entries");

        assert_eq!(backing.ranges().len(), 2);
    }

    #[test]
    fn test_from_entries_zero_entries_is_entry_count_error() {
        let mem = memory();

        let err = build(&[], 16, &mem).expect_err("no entries");

        assert!(matches!(err, ResourceError::EntryCount { count: 0, .. }));
    }

    #[test]
    fn test_from_entries_more_than_max_is_entry_count_error() {
        let mem = memory();
        let entries = [entry(0, PAGE), entry(u64::from(PAGE), PAGE), entry(0, PAGE)];

        let err = build(&entries, 2, &mem).expect_err("too many");

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

        let err = build(&entries, 16, &mem).expect_err("empty entry");

        assert!(matches!(err, ResourceError::EntryEmpty { index: 1, .. }));
    }

    #[test]
    fn test_from_entries_wrapping_address_is_overflow() {
        let mem = memory();
        let entries = [entry(u64::MAX - 10, PAGE)];

        let err = build(&entries, 16, &mem).expect_err("overflow");

        assert!(matches!(err, ResourceError::EntryOverflow { index: 0, .. }));
    }

    #[test]
    fn test_from_entries_past_end_of_memory_is_outside() {
        let mem = memory();
        // Starts inside the last page, ends one page past the 64 MiB end.
        let entries = [entry(64 * MIB - u64::from(PAGE), 2 * PAGE)];

        let err = build(&entries, 16, &mem).expect_err("outside");

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

        let err = build(&entries, 16, &mem).expect_err("outside");

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

        let err = build(&entries, 16, &mem).expect_err("hole");

        assert!(matches!(
            err,
            ResourceError::EntryOutsideGuestMemory { index: 0, .. }
        ));
    }

    #[test]
    fn test_host_reader_reads_a_range_across_regions() {
        let mem = two_regions();
        mem.write_slice(&[1, 2], GuestAddress(MIB - 2))
            .expect("write");
        mem.write_slice(&[3, 4], GuestAddress(MIB)).expect("write");
        // One 8 KiB entry straddling the boundary at 1 MiB.
        let entries = [entry(MIB - u64::from(PAGE), 2 * PAGE)];
        let backing = build(&entries, 16, &mem).expect("valid entries");
        let regions = RegionMap::new(&mem);
        let mut buf = [0u8; 4];

        HostReader::new(&backing, &regions)
            .read_at(u64::from(PAGE) - 2, &mut buf)
            .expect("read");

        assert_eq!(backing.ranges().len(), 1);
        assert_eq!(buf, [1, 2, 3, 4]);
    }

    #[test]
    fn test_host_reader_past_end_is_outside_backing() {
        let mem = memory();
        let backing = build(&[entry(0, PAGE)], 16, &mem).expect("valid entries");
        let regions = RegionMap::new(&mem);
        let mut buf = [0u8; 8];

        let err = HostReader::new(&backing, &regions)
            .read_at(u64::from(PAGE) - 4, &mut buf)
            .expect_err("past end");

        assert!(matches!(err, ReadError::OutsideBacking));
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
        let backing = build(&entries, 16, &mem).expect("valid entries");
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
        let backing = build(&[entry(0, PAGE)], 16, &mem).expect("valid entries");
        let mut buf = [0u8; 8];

        let err = backing
            .reader(&mem)
            .read_at(u64::from(PAGE) - 4, &mut buf)
            .expect_err("past end");

        assert!(matches!(err, ReadError::OutsideBacking));
    }
}
