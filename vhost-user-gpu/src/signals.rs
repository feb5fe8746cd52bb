//! SIGINT/SIGTERM handling without a signal handler.
//!
//! [`ExitSignals::block`] blocks both signals in the calling thread (every
//! thread spawned afterwards inherits the mask, so no thread is ever
//! interrupted by them) and opens a `signalfd` that becomes readable when one
//! is pending. The main thread polls it together with the listening socket;
//! while a connection is served a watcher thread polls it together with a
//! stop eventfd. Nothing runs in signal context, so there is nothing
//! async-signal-unsafe to get wrong.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A `signalfd` for SIGINT and SIGTERM, which are blocked in this thread.
#[derive(Debug)]
pub struct ExitSignals {
    fd: OwnedFd,
}

/// What [`wait_readable`] saw first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// The first file descriptor is readable.
    First,
    /// The second file descriptor is readable.
    Second,
    /// Neither became readable within the timeout.
    Timeout,
}

impl ExitSignals {
    /// Blocks SIGINT and SIGTERM in the calling thread and opens a
    /// `signalfd` for them. Call it before any thread is spawned.
    ///
    /// # Errors
    /// The `sigprocmask`/`signalfd` error.
    pub fn block() -> io::Result<Self> {
        // SAFETY: sigset_t is plain data; sigemptyset initialises it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t owned by this frame.
        unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
        }
        // SAFETY: `set` is initialised; the old mask is not needed.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: -1 asks for a new fd; `set` is initialised.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: signalfd returned a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// Consumes a pending signal, returning its number if there was one.
    pub fn take(&self) -> Option<i32> {
        // SAFETY: signalfd_siginfo is plain data.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reading at most `size` bytes into `info`, which is that big.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                std::ptr::addr_of_mut!(info).cast(),
                size,
            )
        };
        (usize::try_from(n).ok() == Some(size)).then(|| i32::try_from(info.ssi_signo).unwrap_or(0))
    }
}

impl AsRawFd for ExitSignals {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Blocks until `first` or `second` is readable (or hung up), retrying on
/// EINTR. `first` wins when both are.
///
/// # Errors
/// The `poll` error.
pub fn wait_readable(first: RawFd, second: RawFd) -> io::Result<Ready> {
    wait_readable_timeout(first, second, -1)
}

/// As [`wait_readable`], giving up after `timeout_ms` milliseconds
/// (-1: never) with [`Ready::Timeout`].
///
/// # Errors
/// The `poll` error.
pub fn wait_readable_timeout(first: RawFd, second: RawFd, timeout_ms: i32) -> io::Result<Ready> {
    let mut fds = [
        libc::pollfd {
            fd: first,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: second,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: `fds` is a valid array of two pollfd for the whole call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
        if rc < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if fds[0].revents != 0 {
            return Ok(Ready::First);
        }
        if fds[1].revents != 0 {
            return Ok(Ready::Second);
        }
        if rc == 0 {
            return Ok(Ready::Timeout);
        }
    }
}
