//! Child processes the runner owns: every wait has a deadline, stopping is
//! SIGTERM then SIGKILL after a grace period, always by the PID we spawned,
//! and a child still running when its handle is dropped is killed.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::thread::sleep;
use std::time::{Duration, Instant};

use log::{info, warn};

/// Poll interval of the deadline waits.
const POLL: Duration = Duration::from_millis(50);
/// How long to wait for a SIGKILLed process to be reaped.
const KILL_REAP: Duration = Duration::from_secs(30);

/// A spawned child process.
#[derive(Debug)]
pub struct Proc {
    name: &'static str,
    child: Child,
    status: Option<ExitStatus>,
}

/// How a stop request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// It had already exited by itself.
    AlreadyExited(ExitStatus),
    /// It exited after SIGTERM.
    Terminated(ExitStatus),
    /// It ignored SIGTERM for the grace period and was killed.
    Killed(ExitStatus),
    /// SIGKILL was sent but the process was not reaped within the deadline
    /// (stuck in the kernel); it is left behind rather than waited for.
    Unreaped,
}

impl Stopped {
    /// The exit status, however it was reached (`None` if unreaped).
    pub fn status(self) -> Option<ExitStatus> {
        match self {
            Self::AlreadyExited(s) | Self::Terminated(s) | Self::Killed(s) => Some(s),
            Self::Unreaped => None,
        }
    }
}

impl Proc {
    /// Spawns `cmd`.
    ///
    /// # Errors
    /// The spawn error.
    ///
    /// The child gets SIGTERM if the runner dies first (`PR_SET_PDEATHSIG`),
    /// so a killed harness does not leave QEMU or the daemon behind.
    pub fn spawn(name: &'static str, cmd: &mut Command) -> io::Result<Self> {
        // SAFETY: the closure runs in the forked child before exec and only
        // calls prctl(2), which is async-signal-safe, with constant
        // arguments; it touches no memory shared with the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        info!("{name}: started, pid {}", child.id());
        Ok(Self {
            name,
            child,
            status: None,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has exited (non-blocking).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            match self.child.try_wait() {
                Ok(status) => self.status = status,
                Err(e) => warn!("{}: waitpid failed: {e}", self.name),
            }
        }
        self.status
    }

    /// Waits at most `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            sleep(POLL);
        }
    }

    /// Sends `signal` to the process if it is still running.
    fn signal(&mut self, signal: libc::c_int) {
        if self.try_wait().is_some() {
            return;
        }
        let Ok(pid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill(2) with a PID we spawned and have not reaped yet (so it
        // cannot have been reused) and a valid signal number; it touches no
        // memory of ours.
        let rc = unsafe { libc::kill(pid, signal) };
        if rc != 0 {
            warn!(
                "{}: kill({pid}, {signal}) failed: {}",
                self.name,
                io::Error::last_os_error()
            );
        }
    }

    /// Stops the process: SIGTERM, wait up to `grace`, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) -> Stopped {
        if let Some(s) = self.try_wait() {
            return Stopped::AlreadyExited(s);
        }
        info!("{}: sending SIGTERM to pid {}", self.name, self.pid());
        self.signal(libc::SIGTERM);
        if let Some(s) = self.wait_timeout(grace) {
            return Stopped::Terminated(s);
        }
        warn!(
            "{}: pid {} still running {grace:?} after SIGTERM, sending SIGKILL",
            self.name,
            self.pid()
        );
        self.signal(libc::SIGKILL);
        // SIGKILL cannot be ignored; reaping only waits for the kernel.
        match self.wait_timeout(KILL_REAP) {
            Some(s) => Stopped::Killed(s),
            None => {
                warn!(
                    "{}: pid {} not reaped {KILL_REAP:?} after SIGKILL, leaving it",
                    self.name,
                    self.pid()
                );
                Stopped::Unreaped
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            warn!(
                "{}: still running at cleanup, killing pid {}",
                self.name,
                self.pid()
            );
            self.signal(libc::SIGKILL);
            let _ = self.wait_timeout(Duration::from_secs(10));
        }
    }
}

/// Describes an exit status for humans ("exit 0", "signal 11 (core dumped)").
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) if status.core_dumped() => format!("signal {sig} (core dumped)"),
        (None, Some(sig)) => format!("signal {sig}"),
        (None, None) => "unknown status".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_stop_ignoring_sigterm_is_killed() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "trap '' TERM; sleep 30"]);
        let mut p = Proc::spawn("test", &mut cmd).expect("sh spawns");
        // Give the shell time to install the trap.
        sleep(Duration::from_millis(300));

        let stopped = p.stop(Duration::from_millis(300));

        assert!(matches!(stopped, Stopped::Killed(_)), "{stopped:?}");
    }

    #[test]
    fn test_wait_timeout_running_process_returns_none() {
        let mut p = Proc::spawn("test", Command::new("sleep").arg("30")).expect("spawns");

        let status = p.wait_timeout(Duration::from_millis(100));

        assert_eq!(status, None);
    }

    #[test]
    fn test_describe_exit_code() {
        let status = Command::new("sh")
            .args(["-c", "exit 3"])
            .status()
            .expect("sh runs");

        assert_eq!(describe(status), "exit 3");
    }
}
