//! A vhost-user virtio-gpu 2D device backend whose reason to exist is the
//! backing lifecycle: on `RESOURCE_DETACH_BACKING` it drops every host
//! reference to the resource's guest pages before completing the command
//! (fence included), never touches them again, and serves the resource again
//! after a later `RESOURCE_ATTACH_BACKING`, content intact.
//!
//! Modules:
//! - [`args`]: the command line (clap; the doc comments are the `--help`);
//! - [`config`]: validated [`GpuConfig`] built from the arguments;
//! - [`backend`]: the `VhostUserBackend` implementation and the threading
//!   model (device state lives on the single worker thread);
//! - [`mailbox`]: what the frontend thread posts for the worker (memory,
//!   reset, display socket) and the per-queue in-flight state;
//! - [`worker`]: the vring pump (popping, publishing, EVENT_IDX,
//!   notifications) around the device;
//! - [`device`]: descriptor chains → decoded commands → `GpuState` calls →
//!   responses, metrics and display messages;
//! - [`display`]: the vhost-user-gpu display socket;
//! - [`relay`]: checks every vhost-user message from the frontend before
//!   the library sees it, refusing malformed ones without dropping the
//!   connection;
//! - [`digest`]: the test-only read digest log;
//! - [`signals`]: SIGINT/SIGTERM through a `signalfd`.
//!
//! [`start`] runs the daemon: with `--socket-path` one fresh device per
//! frontend connection until SIGINT/SIGTERM, with `--fd` one connection.

pub mod args;
pub mod backend;
pub mod config;
pub mod device;
pub mod digest;
pub mod display;
pub mod mailbox;
pub mod ratelimit;
pub mod relay;
pub mod signals;
pub mod worker;

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::{Error as VhostUserError, Listener};
use vhost_user_backend::{VhostUserBackend, VhostUserDaemon};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vugpu_metrics::{serve, spawn_logger, Metrics, MetricsError};

pub use crate::args::GpuArgs;
pub use crate::backend::GpuBackend;
pub use crate::config::{ConfigError, DeviceConfig, GpuConfig, ListenOn};
use crate::relay::{GateLimits, Relay};
use crate::signals::{wait_readable, wait_readable_timeout, ExitSignals, Ready};

/// What `--print-capabilities` prints: a GPU backend without the optional
/// `render-node` and `virgl` features (QEMU's vhost-user.json schema).
pub const CAPABILITIES_JSON: &str = r#"{"type":"gpu","features":[]}"#;

/// Longest wait for the vring worker threads to end at exit.
const WORKER_EXIT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the watcher thread checks that the vring workers are alive.
const WATCH_INTERVAL_MS: i32 = 1000;

/// Failures that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Signal handling could not be set up.
    #[error("Failed to set up SIGINT/SIGTERM handling")]
    Signals(#[source] io::Error),
    /// The metrics endpoint or logger could not be started.
    #[error("Failed to start metrics")]
    Metrics(#[source] MetricsError),
    /// The device state cannot be created (checked once at start-up).
    #[error("Failed to create the device state")]
    Device(#[source] vugpu_resources::ResourceError),
    /// The backend could not be created.
    #[error("Failed to create the backend")]
    Backend(#[source] backend::BackendError),
    /// The vhost-user daemon could not be created or run.
    #[error("vhost-user daemon failed: {0}")]
    Daemon(vhost_user_backend::Error),
    /// The socket could not be created.
    #[error("Failed to listen on {path}")]
    Listen {
        /// Socket path.
        path: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The descriptor given with --fd is not a usable socket.
    #[error("File descriptor {fd} given with --fd is not a unix socket")]
    InheritedFd {
        /// The descriptor.
        fd: RawFd,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Accepting a frontend connection failed.
    #[error("Failed to accept a frontend connection")]
    Accept(#[source] io::Error),
    /// The private connection to the vhost-user library could not be set up.
    #[error("Failed to connect the request relay to the backend")]
    Relay(#[source] io::Error),
    /// Waiting for a connection or a signal failed.
    #[error("Failed to wait for a connection")]
    Poll(#[source] io::Error),
    /// A vring worker thread of vhost-user-backend ended while serving.
    #[error("A vring worker thread ended unexpectedly")]
    WorkerDied,
    /// An eventfd or thread needed for shutdown could not be created.
    #[error("Failed to set up shutdown")]
    Shutdown(#[source] io::Error),
}

/// How serving one connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The frontend disconnected.
    Disconnected,
    /// SIGINT or SIGTERM arrived.
    Signal,
}

/// Everything that outlives one frontend connection.
struct Server {
    config: GpuConfig,
    metrics: Arc<Metrics>,
    signals: ExitSignals,
}

/// Runs the daemon until SIGINT/SIGTERM (`--socket-path`: one fresh device
/// per frontend connection, the socket file is removed on return) or until
/// the frontend disconnects (`--fd`).
///
/// Must be called before any other thread is started (it blocks SIGINT and
/// SIGTERM for the threads it spawns).
///
/// # Errors
/// A [`StartError`] for host-side failures (socket, threads, metrics).
pub fn start(config: GpuConfig) -> Result<(), StartError> {
    let signals = ExitSignals::block().map_err(StartError::Signals)?;

    let metrics = Arc::new(Metrics::new());
    let _server = config
        .metrics_listen
        .as_ref()
        .map(|listen| serve(listen, Arc::clone(&metrics)))
        .transpose()
        .map_err(StartError::Metrics)?;
    if let Some(server) = &_server {
        info!(
            "vhost-user-gpu: metrics at http://{}/metrics",
            server.local_addr()
        );
    }
    let _logger = config
        .metrics_log_interval
        .map(|interval| spawn_logger(interval, Arc::clone(&metrics)))
        .transpose()
        .map_err(StartError::Metrics)?;
    if config.device.faults.any() {
        warn!(
            "vhost-user-gpu: TEST-ONLY FAULT INJECTION ENABLED ({:?}): this daemon \
             misbehaves on purpose; never use it for a real guest",
            config.device.faults
        );
    }
    if let Some(path) = &config.device.read_digest_log {
        warn!(
            "vhost-user-gpu: TEST-ONLY read digest log enabled at {}",
            path.display()
        );
    }

    // Fail early if the device state cannot be built; the real one is
    // created on the worker thread of each connection.
    drop(
        device::Device::new(
            config.device.clone(),
            Arc::clone(&metrics),
            GuestMemoryAtomic::new(GuestMemoryMmap::<()>::new()),
            Arc::default(),
        )
        .map_err(StartError::Device)?,
    );

    let server = Server {
        config,
        metrics,
        signals,
    };
    match server.config.listen.clone() {
        ListenOn::SocketPath(path) => server.serve_path(&path),
        ListenOn::Fd(fd) => server.serve_fd(fd),
    }
}

/// Binds a listening unix socket at `path`, replacing a file there.
fn bind_path(path: &Path) -> Result<UnixListener, StartError> {
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path).map_err(|source| StartError::Listen {
        path: path.display().to_string(),
        source,
    })
}

/// True if `fd` is a listening socket (`SO_ACCEPTCONN`).
fn is_listening_socket(fd: RawFd) -> io::Result<bool> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid out pointers of the given size;
    // getsockopt does not keep them.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            std::ptr::addr_of_mut!(value).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value != 0)
}

impl Server {
    /// Serves frontends on `path`, one after another, until a signal.
    fn serve_path(&self, path: &Path) -> Result<(), StartError> {
        let listener = bind_path(path)?;
        info!("vhost-user-gpu: listening on {}", path.display());
        let result = loop {
            let frontend = match self.accept(&listener) {
                Ok(Some(frontend)) => frontend,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            match self.serve_connection(frontend) {
                Ok(Ended::Disconnected) => {
                    info!(
                        "vhost-user-gpu: waiting for the next frontend on {}",
                        path.display()
                    );
                }
                Ok(Ended::Signal) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        drop(listener);
        let _ = std::fs::remove_file(path);
        info!("vhost-user-gpu: exiting");
        result
    }

    /// Serves the one connection behind inherited descriptor `fd`.
    fn serve_fd(&self, fd: RawFd) -> Result<(), StartError> {
        let listening =
            is_listening_socket(fd).map_err(|source| StartError::InheritedFd { fd, source })?;
        let frontend = if listening {
            // SAFETY: the caller handed this descriptor to us with --fd; it
            // is a socket (getsockopt succeeded) and nothing else in this
            // process uses it.
            let listener = unsafe { UnixListener::from_raw_fd(fd) };
            info!("vhost-user-gpu: accepting one frontend on listening descriptor {fd}");
            match self.accept(&listener)? {
                Some(frontend) => frontend,
                None => return Ok(()),
            }
        } else {
            info!("vhost-user-gpu: serving the frontend connected on descriptor {fd}");
            // SAFETY: as above; the connected socket becomes ours.
            unsafe { UnixStream::from_raw_fd(fd) }
        };
        self.serve_connection(frontend)?;
        info!("vhost-user-gpu: exiting");
        Ok(())
    }

    /// Waits for a frontend on `listener`; `None` if a signal came first.
    fn accept(&self, listener: &UnixListener) -> Result<Option<UnixStream>, StartError> {
        loop {
            match wait_readable(self.signals.as_raw_fd(), listener.as_raw_fd())
                .map_err(StartError::Poll)?
            {
                Ready::First => {
                    info!(
                        "vhost-user-gpu: signal {} while waiting for a frontend",
                        self.signals.take().unwrap_or(0)
                    );
                    return Ok(None);
                }
                Ready::Second | Ready::Timeout => {}
            }
            match listener.accept() {
                Ok((stream, _)) => return Ok(Some(stream)),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::WouldBlock
                            | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => return Err(StartError::Accept(e)),
            }
        }
    }

    /// Serves one frontend with a fresh device (fresh guest memory, device
    /// state, worker threads) until it disconnects or a signal arrives;
    /// everything of the connection is released before this returns, except
    /// a worker stuck beyond [`WORKER_EXIT_TIMEOUT`], which is abandoned.
    fn serve_connection(&self, frontend: UnixStream) -> Result<Ended, StartError> {
        let mem = GuestMemoryAtomic::new(GuestMemoryMmap::<()>::new());
        let backend = GpuBackend::new(
            self.config.device.clone(),
            Arc::clone(&self.metrics),
            mem.clone(),
        )
        .map_err(StartError::Backend)?;
        let limits = GateLimits {
            virtio_features: backend.features(),
            protocol_features: (backend.protocol_features() | VhostUserProtocolFeatures::REPLY_ACK)
                .bits(),
            num_queues: u32::try_from(backend.num_queues()).unwrap_or(0),
            max_queue_size: u32::try_from(backend.max_queue_size()).unwrap_or(0),
        };
        let mut daemon = VhostUserDaemon::new("vhost-user-gpu".to_owned(), backend.clone(), mem)
            .map_err(StartError::Daemon)?;
        for handler in daemon.get_epoll_handlers() {
            handler
                .register_listener(
                    backend.wake_event().as_raw_fd(),
                    EventSet::IN,
                    u64::from(backend::WAKE_EVENT),
                )
                .map_err(StartError::Shutdown)?;
        }

        let library_end = connect_library(&mut daemon)?;
        let display_backend = backend.clone();
        let relay = Relay::spawn(
            frontend,
            library_end,
            limits,
            Arc::clone(&self.metrics),
            Box::new(move |stream| display_backend.set_display(stream)),
        )
        .map_err(StartError::Relay)?;
        info!("vhost-user-gpu: frontend connected");

        let result = self.wait_connection(&mut daemon);
        relay.stop();
        backend.notify_exit();
        let workers = daemon.get_epoll_handlers();
        for handler in &workers {
            handler.send_exit_event();
        }
        // Dropping the daemon joins the worker threads. A worker blocked in a
        // write to a display socket nobody reads any more would make that
        // wait forever, so give the workers a bounded time to finish and
        // otherwise leave them behind.
        if wait_for_workers(&workers, WORKER_EXIT_TIMEOUT) {
            drop(workers);
            drop(daemon);
            backend.reclaim_exit_events();
        } else {
            warn!(
                "vhost-user-gpu: a worker is still busy after {WORKER_EXIT_TIMEOUT:?} \
                 (display socket stalled?); leaving it behind"
            );
            std::mem::forget(workers);
            std::mem::forget(daemon);
        }
        result
    }

    /// Waits until the library's connection ends, turning a signal into a
    /// shutdown of that connection.
    fn wait_connection(
        &self,
        daemon: &mut VhostUserDaemon<GpuBackend>,
    ) -> Result<Ended, StartError> {
        // A watcher thread turns a signal into a connection shutdown, which
        // makes `wait` return. It also watches the vring worker threads: the
        // library ends one silently on an internal error, which would leave
        // the guest with a device that never answers; better to fail loudly.
        let stop = EventFd::new(EFD_NONBLOCK).map_err(StartError::Shutdown)?;
        let stop_watcher = stop.try_clone().map_err(StartError::Shutdown)?;
        let shutdown = daemon.shutdown_handle();
        let signal_fd = self.signals.as_raw_fd();
        let workers = daemon.get_epoll_handlers();
        // Each handler is held by the daemon, by its worker thread and by us.
        let alive_refs: Vec<usize> = workers.iter().map(Arc::strong_count).collect();
        let worker_died = Arc::new(AtomicBool::new(false));
        let worker_died_watcher = Arc::clone(&worker_died);
        let signalled = Arc::new(AtomicBool::new(false));
        let signalled_watcher = Arc::clone(&signalled);
        let watcher = thread::Builder::new()
            .name("vugpu-signals".into())
            .spawn(move || loop {
                match wait_readable_timeout(signal_fd, stop_watcher.as_raw_fd(), WATCH_INTERVAL_MS)
                {
                    Ok(Ready::First) => {
                        info!("vhost-user-gpu: signal received, disconnecting");
                        signalled_watcher.store(true, Ordering::Release);
                        if let Some(handle) = &shutdown {
                            handle.shutdown();
                        }
                        return;
                    }
                    Ok(Ready::Second) => return,
                    Ok(Ready::Timeout) => {
                        let died = workers
                            .iter()
                            .zip(&alive_refs)
                            .any(|(w, &alive)| Arc::strong_count(w) < alive);
                        if died {
                            error!("vhost-user-gpu: a vring worker thread ended; disconnecting");
                            worker_died_watcher.store(true, Ordering::Release);
                            if let Some(handle) = &shutdown {
                                handle.shutdown();
                            }
                            return;
                        }
                    }
                    Err(e) => {
                        warn!("vhost-user-gpu: waiting for signals: {e}");
                        return;
                    }
                }
            })
            .map_err(StartError::Shutdown)?;

        let result = daemon.wait();
        let _ = stop.write(1);
        let _ = watcher.join();
        if worker_died.load(Ordering::Acquire) {
            return Err(StartError::WorkerDied);
        }
        if signalled.load(Ordering::Acquire) {
            let _ = self.signals.take();
            return Ok(Ended::Signal);
        }
        match result {
            Ok(())
            | Err(vhost_user_backend::Error::HandleRequest(
                VhostUserError::Disconnected
                | VhostUserError::PartialMessage
                | VhostUserError::SocketBroken(_),
            )) => {
                info!("vhost-user-gpu: frontend disconnected");
                Ok(Ended::Disconnected)
            }
            Err(e) => {
                // The relay only forwards what the library accepts, so this
                // is a library-internal failure (for example a mapping that
                // failed); the connection is gone either way.
                warn!("vhost-user-gpu: connection ended: {e}");
                Ok(Ended::Disconnected)
            }
        }
    }
}

/// A private directory (mode 0700) for the relay's socket to the library.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new() -> io::Result<Self> {
        let template = std::env::temp_dir().join("vhost-user-gpu.XXXXXX");
        let template = CString::new(template.as_os_str().as_bytes())
            .map_err(|_| io::Error::other("temporary directory path contains NUL"))?;
        let mut bytes = template.into_bytes_with_nul();
        // SAFETY: `bytes` is a NUL-terminated template that mkdtemp rewrites
        // in place, within its length.
        let rc = unsafe { libc::mkdtemp(bytes.as_mut_ptr().cast()) };
        if rc.is_null() {
            return Err(io::Error::last_os_error());
        }
        bytes.pop();
        let path: std::ffi::OsString = std::os::unix::ffi::OsStringExt::from_vec(bytes);
        Ok(Self(PathBuf::from(path)))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts the library on one end of a fresh connection and returns the
/// other end, for the relay.
///
/// vhost-user-backend 0.24 accepts connections only from a listening
/// socket, so the connection goes through a socket in a private directory
/// (only this user can reach it, and it is removed at once).
fn connect_library(daemon: &mut VhostUserDaemon<GpuBackend>) -> Result<UnixStream, StartError> {
    let dir = PrivateDir::new().map_err(StartError::Relay)?;
    let path = dir.0.join("backend.sock");
    let listener = UnixListener::bind(&path).map_err(StartError::Relay)?;
    let ours = UnixStream::connect(&path).map_err(StartError::Relay)?;
    let mut listener = Listener::from(listener);
    daemon.start(&mut listener).map_err(StartError::Daemon)?;
    drop(listener);
    drop(dir);
    Ok(ours)
}

/// Waits up to `timeout` until every worker thread has ended (each
/// handler is then referenced only by the daemon and by `workers`).
fn wait_for_workers<T>(workers: &[Arc<T>], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if workers.iter().all(|w| Arc::strong_count(w) <= 2) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}
