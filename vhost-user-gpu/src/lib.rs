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
//! - [`device`]: descriptor chains → decoded commands → `GpuState` calls →
//!   responses, metrics and display messages;
//! - [`display`]: the vhost-user-gpu display socket;
//! - [`signals`]: SIGINT/SIGTERM through a `signalfd`.
//!
//! [`start`] runs the daemon until the frontend disconnects or a signal
//! arrives.

pub mod args;
pub mod backend;
pub mod config;
pub mod device;
pub mod display;
pub mod ratelimit;
pub mod signals;

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use vhost::vhost_user::{Error as VhostUserError, Listener};
use vhost_user_backend::VhostUserDaemon;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use vugpu_metrics::{serve, spawn_logger, Metrics, MetricsError};

pub use crate::args::GpuArgs;
pub use crate::backend::GpuBackend;
pub use crate::config::{ConfigError, DeviceConfig, GpuConfig};
use crate::signals::{wait_readable, wait_readable_timeout, ExitSignals, Ready};

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
        source: VhostUserError,
    },
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

/// Runs the daemon: listens on the socket, serves one frontend connection,
/// and returns `Ok` when the frontend disconnects or on SIGINT/SIGTERM. The
/// socket file is removed on return.
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

    let mem = GuestMemoryAtomic::new(GuestMemoryMmap::<()>::new());
    // Fail early if the renderer cannot be built; the real device state is
    // created on the worker thread.
    drop(
        device::Device::new(
            config.device.clone(),
            Arc::clone(&metrics),
            mem.clone(),
            Arc::default(),
        )
        .map_err(StartError::Device)?,
    );
    let backend = GpuBackend::new(config.device.clone(), Arc::clone(&metrics), mem.clone())
        .map_err(StartError::Backend)?;
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

    let path = config.socket_path.display().to_string();
    let mut listener =
        Listener::new(&config.socket_path, true).map_err(|source| StartError::Listen {
            path: path.clone(),
            source,
        })?;
    info!("vhost-user-gpu: listening on {path}");

    let result = serve_one(&mut daemon, &mut listener, &signals);
    backend.notify_exit();
    let workers = daemon.get_epoll_handlers();
    for handler in &workers {
        handler.send_exit_event();
    }
    // Dropping the daemon joins the worker threads. A worker blocked in a
    // write to a display socket nobody reads any more would make that wait
    // forever, so give the workers a bounded time to finish and otherwise
    // leave them to the process exit.
    if wait_for_workers(&workers, WORKER_EXIT_TIMEOUT) {
        drop(workers);
        drop(daemon);
    } else {
        warn!(
            "vhost-user-gpu: a worker is still busy after {WORKER_EXIT_TIMEOUT:?} \
             (display socket stalled?); exiting without waiting for it"
        );
        std::mem::forget(workers);
        std::mem::forget(daemon);
    }
    drop(listener);
    // Listener removes the file it created; make sure even if it did not.
    let _ = std::fs::remove_file(&config.socket_path);
    info!("vhost-user-gpu: exiting");
    result
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

/// Accepts one connection and serves it until disconnect or a signal.
fn serve_one(
    daemon: &mut VhostUserDaemon<GpuBackend>,
    listener: &mut Listener,
    signals: &ExitSignals,
) -> Result<(), StartError> {
    match wait_readable(signals.as_raw_fd(), listener.as_raw_fd()).map_err(StartError::Poll)? {
        Ready::First => {
            info!(
                "vhost-user-gpu: signal {} before any connection",
                signals.take().unwrap_or(0)
            );
            return Ok(());
        }
        Ready::Second | Ready::Timeout => {}
    }
    daemon.start(listener).map_err(StartError::Daemon)?;
    info!("vhost-user-gpu: frontend connected");

    // A watcher thread turns a signal into a connection shutdown, which
    // makes `wait` return. It also watches the vring worker threads: the
    // library ends one silently on an internal error, which would leave the
    // guest with a device that never answers; better to fail loudly.
    let stop = EventFd::new(EFD_NONBLOCK).map_err(StartError::Shutdown)?;
    let stop_watcher = stop.try_clone().map_err(StartError::Shutdown)?;
    let shutdown = daemon.shutdown_handle();
    let signal_fd = signals.as_raw_fd();
    let workers = daemon.get_epoll_handlers();
    // Each handler is held by the daemon, by its worker thread and by us.
    let alive_refs: Vec<usize> = workers.iter().map(Arc::strong_count).collect();
    let worker_died = Arc::new(AtomicBool::new(false));
    let worker_died_watcher = Arc::clone(&worker_died);
    let watcher = thread::Builder::new()
        .name("vugpu-signals".into())
        .spawn(move || loop {
            match wait_readable_timeout(signal_fd, stop_watcher.as_raw_fd(), WATCH_INTERVAL_MS) {
                Ok(Ready::First) => {
                    info!("vhost-user-gpu: signal received, disconnecting");
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
    match result {
        Ok(()) => {
            info!("vhost-user-gpu: frontend disconnected");
            Ok(())
        }
        Err(vhost_user_backend::Error::HandleRequest(
            VhostUserError::Disconnected | VhostUserError::PartialMessage,
        )) => {
            info!("vhost-user-gpu: frontend disconnected");
            Ok(())
        }
        Err(e) => Err(StartError::Daemon(e)),
    }
}
