//! Errors of the metrics endpoint and logger.

use std::io;
use std::net::{AddrParseError, SocketAddr};
use std::path::PathBuf;

/// Host-side failures of this crate. Recording metrics never fails; only
/// parsing the listen address and starting or stopping threads can.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The TCP listener could not be bound.
    #[error("Failed to bind the metrics endpoint to {addr}")]
    BindTcp {
        /// Requested address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The unix socket could not be bound.
    #[error("Failed to bind the metrics endpoint to unix socket {}", path.display())]
    BindUnix {
        /// Requested path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The address is neither `unix:PATH` nor an IP `HOST:PORT`.
    #[error("Metrics listen address {value:?} is neither IP:PORT nor unix:PATH")]
    InvalidAddress {
        /// The rejected text.
        value: String,
        /// Why it did not parse as a socket address.
        #[source]
        source: AddrParseError,
    },
    /// Setting up the listener (non-blocking mode, wake-up channel) failed.
    #[error("Failed to set up the metrics listener")]
    ListenerSetup(#[source] io::Error),
    /// The TCP address is not a loopback address.
    #[error(
        "Metrics listen address {0} is not a loopback address; the endpoint is unauthenticated, \
         use 127.0.0.1, [::1] or unix:PATH"
    )]
    NotLoopback(SocketAddr),
    /// `unix:` with an empty path.
    #[error("Metrics listen address \"unix:\" has an empty path")]
    EmptyUnixPath,
    /// A thread could not be spawned.
    #[error("Failed to spawn the {name} thread")]
    SpawnThread {
        /// Thread name.
        name: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The server thread panicked; its socket may not have been closed.
    #[error("The metrics server thread panicked")]
    ThreadPanicked,
    /// The unix socket path exists and is not a stale socket.
    #[error(
        "Metrics socket path {} already exists and is not a stale socket (another listener, or \
         not a socket)",
        path.display()
    )]
    UnixPathInUse {
        /// The path.
        path: PathBuf,
    },
    /// Waking the server thread for shutdown failed.
    #[error("Failed to wake the metrics server thread for shutdown")]
    Wake(#[source] io::Error),
}
