//! A minimal synchronous QMP client over a unix socket, with timeouts on
//! every read and write.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::Error;

/// A negotiated QMP session.
#[derive(Debug)]
pub struct Qmp {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Qmp {
    /// Connects, reads the greeting and leaves negotiation mode.
    ///
    /// # Errors
    /// [`Error::Qmp`] when the socket cannot be used or QEMU answers with
    /// something other than a QMP greeting.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, Error> {
        let io = |what: &str, e: std::io::Error| Error::Qmp(format!("{what}: {e}"));
        let stream = UnixStream::connect(path).map_err(|e| io("connect", e))?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| io("set read timeout", e))?;
        stream
            .set_write_timeout(Some(timeout))
            .map_err(|e| io("set write timeout", e))?;
        let reader = BufReader::new(stream.try_clone().map_err(|e| io("clone socket", e))?);
        let mut qmp = Self {
            writer: stream,
            reader,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(Error::Qmp(format!("unexpected greeting {greeting}")));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    fn read_message(&mut self) -> Result<Value, Error> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| Error::Qmp(format!("read: {e}")))?;
        if n == 0 {
            return Err(Error::Qmp("connection closed".to_owned()));
        }
        serde_json::from_str(&line).map_err(|e| Error::Qmp(format!("bad JSON {line:?}: {e}")))
    }

    /// Runs a command and returns its `return` value, skipping events.
    ///
    /// # Errors
    /// [`Error::Qmp`] on I/O failure or an `error` reply.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, Error> {
        let mut msg = json!({ "execute": command });
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let mut text = msg.to_string();
        text.push('\n');
        self.writer
            .write_all(text.as_bytes())
            .map_err(|e| Error::Qmp(format!("write {command}: {e}")))?;
        // Events may arrive before the reply; a bounded number is skipped.
        for _ in 0..1000 {
            let reply = self.read_message()?;
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                return Err(Error::Qmp(format!("{command}: {err}")));
            }
        }
        Err(Error::Qmp(format!(
            "{command}: no reply among 1000 messages"
        )))
    }

    /// The VM run state (`running`, `paused`, `shutdown`, ...).
    ///
    /// # Errors
    /// [`Error::Qmp`] on failure.
    pub fn status(&mut self) -> Result<String, Error> {
        let ret = self.execute("query-status", None)?;
        ret.get("status")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| Error::Qmp(format!("query-status without status: {ret}")))
    }

    /// Writes the primary console as a PPM file.
    ///
    /// # Errors
    /// [`Error::Qmp`] on failure.
    pub fn screendump(&mut self, file: &Path) -> Result<(), Error> {
        self.execute(
            "screendump",
            Some(json!({ "filename": file.display().to_string() })),
        )
        .map(|_| ())
    }
}
