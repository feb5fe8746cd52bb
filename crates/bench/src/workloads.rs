//! The workloads: what each operation sends, laid out once per daemon in
//! its guest RAM, then replayed batch by batch.
//!
//! Guest-physical layout (256 MiB at GPA 0):
//!
//! | GPA                    | content                                      |
//! |------------------------|----------------------------------------------|
//! | 0x0000..0x7000         | control and cursor queues                    |
//! | 0x10000..0x40000       | response buffers, 64 bytes each              |
//! | 0x40000..0x80000       | request headers, 128 bytes each              |
//! | 0x100000..0x182000     | memory entry lists (scattered, contiguous, …)|
//! | 0x200000..0x280000     | churn backing pages                          |
//! | 0x300000..0x304000     | 64x64 resource backing                       |
//! | 0x400000..0xbe9000     | 1080p frame backing                          |
//! | 0x1000000..0x5000000   | 16384 contiguous pages                       |
//! | 0x5000000..0xd000000   | 16384 scattered pages (every other page)     |

use vugpu_protocol::{CtrlHeader, GpuCommand, MemEntry, Rect};

use crate::vmm::{Chain, Vmm, CTRL_Q};

/// Guest RAM per daemon.
pub const RAM_SIZE: usize = 256 << 20;
/// Frame size of the 1080p workloads.
pub const FRAME_W: u32 = 1920;
/// Frame height.
pub const FRAME_H: u32 = 1080;
/// Bytes of one 1080p frame.
pub const FRAME_BYTES: u64 = FRAME_W as u64 * FRAME_H as u64 * 4;
/// Guest address of the frame's backing.
pub const FRAME_PAGES: u64 = 0x40_0000;

const PAGE: u64 = 4096;
const ENTRIES: u64 = 16384;
const RESP_AREA: (u64, u64) = (0x1_0000, 0x4_0000);
const RESP_SLOT: u64 = 64;
const REQ_AREA: (u64, u64) = (0x4_0000, 0x8_0000);
const REQ_SLOT: u64 = 128;
const SCATTER_LIST: u64 = 0x10_0000;
const CONTIG_LIST: u64 = 0x14_0000;
const CHURN_LIST: u64 = 0x18_0000;
const FRAME_LIST: u64 = 0x18_1000;
const SMALL_LIST: u64 = 0x18_1100;
const CHURN_PAGES: u64 = 0x20_0000;
const SMALL_PAGES: u64 = 0x30_0000;
const CONTIG_PAGES: u64 = 0x100_0000;
const SCATTER_PAGES: u64 = 0x500_0000;
/// 4096x4096 B8G8R8A8 = 64 MiB = 16384 pages.
const BIG_ID: u32 = 1;
const BIG_SIDE: u32 = 4096;
const FRAME_ID: u32 = 3;
const SMALL_ID: u32 = 4;
const SMALL_SIDE: u32 = 64;
const CHURN_BASE_ID: u32 = 100;
const CHURN_RESOURCES: u32 = 16;
const FORMAT_B8G8R8A8: u32 = 1;
const FLAG_FENCE: u32 = 1;

/// What a workload measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// ATTACH of 16384 scattered pages + DETACH, one kick.
    AttachScattered,
    /// ATTACH of 16384 contiguous pages + DETACH, one kick.
    AttachContiguous,
    /// 16 x (CREATE 64x64, ATTACH 4 entries, DETACH, UNREF), one kick.
    Churn,
    /// TRANSFER_TO_HOST_2D + RESOURCE_FLUSH of 1080p, display UPDATE drained.
    Frame,
    /// TRANSFER_TO_HOST_2D of 1080p alone.
    Transfer,
    /// One unfenced TRANSFER_TO_HOST_2D 64x64 per kick.
    SmallUnfenced,
    /// One fenced TRANSFER_TO_HOST_2D 64x64 per kick.
    SmallFenced,
}

/// A workload and how many operations one round runs.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// What it does.
    pub kind: Kind,
    /// Short name (for `--only` and the table).
    pub name: &'static str,
    /// Timed operations per round.
    pub ops: usize,
    /// Untimed operations before them.
    pub warmup: usize,
}

/// Every workload, in table order, with its default operation count.
pub fn all() -> Vec<Workload> {
    let w = |kind, name, ops, warmup| Workload {
        kind,
        name,
        ops,
        warmup,
    };
    // Frames first, then the rest; the display warm-up (main.rs) already
    // put both daemons' allocators in the state frames leave them in.
    vec![
        w(Kind::Frame, "frame", 30, 3),
        w(Kind::Transfer, "transfer", 30, 3),
        w(Kind::AttachScattered, "attach-scattered", 100, 5),
        w(Kind::AttachContiguous, "attach-contiguous", 200, 5),
        w(Kind::Churn, "churn", 200, 5),
        w(Kind::SmallUnfenced, "small-unfenced", 2000, 50),
        w(Kind::SmallFenced, "small-fenced", 2000, 50),
    ]
}

/// The requests of every workload, written into one daemon's guest RAM.
pub struct Plan {
    scattered: Vec<Chain>,
    contiguous: Vec<Chain>,
    churn: Vec<Chain>,
    frame: Vec<Chain>,
    transfer: Vec<Chain>,
    small_unfenced: Vec<Chain>,
    small_fenced: Vec<Chain>,
    /// GPA of the fenced request's header (its fence id changes per op).
    fenced_header: u64,
    next_fence: u64,
}

/// Hands out request and response slots in guest RAM.
struct Slots {
    req: u64,
    resp: u64,
}

impl Slots {
    fn request(&mut self, vmm: &Vmm, bytes: &[u8]) -> u64 {
        let len = bytes.len() as u64;
        assert!(len <= REQ_SLOT, "request header larger than a slot");
        let at = self.req;
        assert!(at + REQ_SLOT <= REQ_AREA.1, "out of request slots");
        vmm.ram.write(at, bytes);
        self.req += REQ_SLOT;
        at
    }

    fn response(&mut self) -> (u64, u32) {
        let at = self.resp;
        assert!(at + RESP_SLOT <= RESP_AREA.1, "out of response slots");
        self.resp += RESP_SLOT;
        (at, 24)
    }

    /// A chain for `cmd`: its fixed part in one descriptor and, for
    /// commands with memory entries, the entry list (already at
    /// `entries_gpa`) in a second, as Linux sends them.
    fn chain(&mut self, vmm: &Vmm, cmd: &GpuCommand, hdr: CtrlHeader) -> Chain {
        let bytes = cmd.to_bytes(&hdr);
        let readable = match cmd {
            GpuCommand::ResourceAttachBacking { entries, .. } => {
                let fixed = bytes.len() - entries.len() * 16;
                vec![
                    (self.request(vmm, &bytes[..fixed]), fixed as u32),
                    (0, (entries.len() * 16) as u32),
                ]
            }
            _ => vec![(self.request(vmm, &bytes), bytes.len() as u32)],
        };
        Chain {
            readable,
            response: self.response(),
        }
    }

    /// An ATTACH_BACKING chain whose entries are written once at `list`.
    fn attach(&mut self, vmm: &Vmm, id: u32, entries: Vec<MemEntry>, list: u64) -> Chain {
        let cmd = GpuCommand::ResourceAttachBacking {
            resource_id: id,
            entries,
        };
        let bytes = cmd.to_bytes(&CtrlHeader::default());
        vmm.ram.write(list, &bytes[32..]);
        let mut chain = self.chain(vmm, &cmd, CtrlHeader::default());
        chain.readable[1].0 = list;
        chain
    }
}

fn pages(base: u64, count: u64, step: u64) -> Vec<MemEntry> {
    (0..count)
        .map(|i| MemEntry {
            addr: base + i * step * PAGE,
            length: PAGE as u32,
        })
        .collect()
}

fn full(width: u32, height: u32) -> Rect {
    Rect {
        x: 0,
        y: 0,
        width,
        height,
    }
}

fn create(id: u32, side: (u32, u32)) -> GpuCommand {
    GpuCommand::ResourceCreate2d {
        resource_id: id,
        format: FORMAT_B8G8R8A8,
        width: side.0,
        height: side.1,
    }
}

fn transfer(id: u32, width: u32, height: u32) -> GpuCommand {
    GpuCommand::TransferToHost2d {
        resource_id: id,
        rect: full(width, height),
        offset: 0,
    }
}

/// Runs `chains` once and fails if any response is not OK_NODATA.
fn run_checked(vmm: &mut Vmm, what: &str, chains: &[Chain]) -> Result<(), String> {
    let batch = vmm.prepare(CTRL_Q, 0, chains);
    vmm.clear_responses(&batch);
    vmm.run(&batch)?;
    let failed = vmm.failed_responses(&batch);
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {what}: responses {failed:x?}", vmm.name))
    }
}

impl Plan {
    /// Writes every request into `vmm`'s guest RAM and creates the
    /// long-lived resources: a 4096x4096 target for the big ATTACHes, a
    /// 1080p frame shown on scanout 0 and a 64x64 resource, both attached.
    pub fn setup(vmm: &mut Vmm) -> Result<Self, String> {
        let mut s = Slots {
            req: REQ_AREA.0,
            resp: RESP_AREA.0,
        };
        let hdr = CtrlHeader::default();
        let c = |s: &mut Slots, vmm: &Vmm, cmd: GpuCommand| s.chain(vmm, &cmd, hdr);

        // Frame content: a pattern, so the pages are populated like a
        // real framebuffer (memfd pages appear on first touch).
        let pattern: Vec<u8> = (0..FRAME_BYTES).map(|i| (i * 7 % 251) as u8).collect();
        vmm.ram.write(FRAME_PAGES, &pattern);
        vmm.ram.write(SMALL_PAGES, &pattern[..16384]);

        let setup = vec![
            c(&mut s, vmm, create(BIG_ID, (BIG_SIDE, BIG_SIDE))),
            c(&mut s, vmm, create(FRAME_ID, (FRAME_W, FRAME_H))),
            s.attach(
                vmm,
                FRAME_ID,
                vec![MemEntry {
                    addr: FRAME_PAGES,
                    length: FRAME_BYTES as u32,
                }],
                FRAME_LIST,
            ),
            c(
                &mut s,
                vmm,
                GpuCommand::SetScanout {
                    scanout_id: 0,
                    resource_id: FRAME_ID,
                    rect: full(FRAME_W, FRAME_H),
                },
            ),
            c(&mut s, vmm, create(SMALL_ID, (SMALL_SIDE, SMALL_SIDE))),
            s.attach(
                vmm,
                SMALL_ID,
                vec![MemEntry {
                    addr: SMALL_PAGES,
                    length: SMALL_SIDE * SMALL_SIDE * 4,
                }],
                SMALL_LIST,
            ),
        ];
        run_checked(vmm, "setup", &setup)?;

        let detach_big = GpuCommand::ResourceDetachBacking {
            resource_id: BIG_ID,
        };
        let scattered = vec![
            s.attach(vmm, BIG_ID, pages(SCATTER_PAGES, ENTRIES, 2), SCATTER_LIST),
            c(&mut s, vmm, detach_big.clone()),
        ];
        let contiguous = vec![
            s.attach(vmm, BIG_ID, pages(CONTIG_PAGES, ENTRIES, 1), CONTIG_LIST),
            c(&mut s, vmm, detach_big),
        ];
        let mut churn = Vec::new();
        for i in 0..CHURN_RESOURCES {
            let id = CHURN_BASE_ID + i;
            let base = CHURN_PAGES + u64::from(i) * 8 * PAGE;
            let list = CHURN_LIST + u64::from(i) * 64;
            churn.push(c(&mut s, vmm, create(id, (SMALL_SIDE, SMALL_SIDE))));
            churn.push(s.attach(vmm, id, pages(base, 4, 2), list));
            churn.push(c(
                &mut s,
                vmm,
                GpuCommand::ResourceDetachBacking { resource_id: id },
            ));
            churn.push(c(
                &mut s,
                vmm,
                GpuCommand::ResourceUnref { resource_id: id },
            ));
        }
        let frame = vec![
            c(&mut s, vmm, transfer(FRAME_ID, FRAME_W, FRAME_H)),
            c(
                &mut s,
                vmm,
                GpuCommand::ResourceFlush {
                    resource_id: FRAME_ID,
                    rect: full(FRAME_W, FRAME_H),
                },
            ),
        ];
        let transfer_only = vec![c(&mut s, vmm, transfer(FRAME_ID, FRAME_W, FRAME_H))];
        let small_unfenced = vec![c(&mut s, vmm, transfer(SMALL_ID, SMALL_SIDE, SMALL_SIDE))];
        let fenced_hdr = CtrlHeader {
            flags: FLAG_FENCE,
            fence_id: 1,
            ..CtrlHeader::default()
        };
        let small_fenced =
            vec![s.chain(vmm, &transfer(SMALL_ID, SMALL_SIDE, SMALL_SIDE), fenced_hdr)];
        let fenced_header = small_fenced[0].readable[0].0;
        Ok(Self {
            scattered,
            contiguous,
            churn,
            frame,
            transfer: transfer_only,
            small_unfenced,
            small_fenced,
            fenced_header,
            next_fence: 2,
        })
    }

    /// The chains of one operation of `kind`.
    pub fn chains(&self, kind: Kind) -> &[Chain] {
        match kind {
            Kind::AttachScattered => &self.scattered,
            Kind::AttachContiguous => &self.contiguous,
            Kind::Churn => &self.churn,
            Kind::Frame => &self.frame,
            Kind::Transfer => &self.transfer,
            Kind::SmallUnfenced => &self.small_unfenced,
            Kind::SmallFenced => &self.small_fenced,
        }
    }

    /// Work done before each operation of `kind` (a fresh fence id).
    pub fn before_op(&mut self, vmm: &Vmm, kind: Kind) {
        if kind == Kind::SmallFenced {
            vmm.ram
                .write(self.fenced_header + 8, &self.next_fence.to_le_bytes());
            self.next_fence += 1;
        }
    }

    /// Display pixel bytes one operation of `kind` must produce.
    pub fn display_bytes(kind: Kind) -> u64 {
        if kind == Kind::Frame {
            FRAME_BYTES
        } else {
            0
        }
    }
}
