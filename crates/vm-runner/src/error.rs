//! Errors of the runner (harness faults, as opposed to scenario failures,
//! which are verdicts).

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// A harness fault.
#[derive(Debug, Error)]
pub enum Error {
    /// A command-line combination that cannot work.
    #[error("invalid arguments: {0}")]
    Config(String),
    /// A filesystem operation failed.
    #[error("cannot {what} {}", path.display())]
    Fs {
        /// What was attempted ("create", "write", ...).
        what: &'static str,
        /// The path it was attempted on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A process could not be started.
    #[error("cannot start {name}")]
    Spawn {
        /// The program.
        name: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Talking to QEMU's QMP socket failed.
    #[error("QMP: {0}")]
    Qmp(String),
    /// Scraping the daemon's metrics failed.
    #[error("metrics scrape: {0}")]
    Scrape(String),
}

/// Shorthand for filesystem errors.
pub fn fs_err(what: &'static str, path: &std::path::Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Fs { what, path, source }
}
