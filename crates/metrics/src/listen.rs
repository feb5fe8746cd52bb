//! Parsing of the `--metrics-listen` address.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use crate::MetricsError;

/// Prefix selecting a unix socket path.
const UNIX_PREFIX: &str = "unix:";

/// Where the metrics endpoint listens.
///
/// Parsed from `IP:PORT` (IPv6 as `[::1]:PORT`) or `unix:PATH`. TCP
/// addresses must be loopback (127.0.0.0/8, `::1` or an IPv4-mapped
/// loopback), because the endpoint has no authentication. Host names such as
/// `localhost` are not resolved: give the address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricsListen {
    /// A loopback TCP address; port 0 picks a free port (see
    /// [`crate::MetricsServer::local_addr`]).
    Tcp(SocketAddr),
    /// A unix stream socket path.
    Unix(PathBuf),
}

impl MetricsListen {
    /// Parses and validates a listen address.
    ///
    /// # Errors
    /// [`MetricsError::EmptyUnixPath`] for `unix:` alone,
    /// [`MetricsError::InvalidAddress`] for text that is not `IP:PORT`,
    /// [`MetricsError::NotLoopback`] for a non-loopback IP.
    pub fn parse(value: &str) -> Result<Self, MetricsError> {
        if let Some(path) = value.strip_prefix(UNIX_PREFIX) {
            if path.is_empty() {
                return Err(MetricsError::EmptyUnixPath);
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let addr: SocketAddr =
            value
                .trim()
                .parse()
                .map_err(|source| MetricsError::InvalidAddress {
                    value: value.to_owned(),
                    source,
                })?;
        if !is_loopback(&addr) {
            return Err(MetricsError::NotLoopback(addr));
        }
        Ok(Self::Tcp(addr))
    }
}

/// True for 127.0.0.0/8, `::1` and `::ffff:127.x.y.z`.
fn is_loopback(addr: &SocketAddr) -> bool {
    match addr {
        SocketAddr::V4(a) => a.ip().is_loopback(),
        SocketAddr::V6(a) => {
            a.ip().is_loopback() || a.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

impl FromStr for MetricsListen {
    type Err = MetricsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for MetricsListen {
    /// Prints the address in the syntax [`MetricsListen::parse`] accepts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix(path) => write!(f, "{UNIX_PREFIX}{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_ipv4_loopback_is_tcp() {
        // Arrange / Act
        let listen = MetricsListen::parse("127.0.0.1:9100");

        // Assert
        assert_eq!(
            listen.ok(),
            Some(MetricsListen::Tcp(SocketAddr::from(([127, 0, 0, 1], 9100))))
        );
    }

    #[test]
    fn test_parse_ipv6_loopback_is_tcp() {
        // Arrange / Act
        let listen = MetricsListen::parse("[::1]:9100");

        // Assert
        assert!(matches!(listen, Ok(MetricsListen::Tcp(a)) if a.port() == 9100 && a.is_ipv6()));
    }

    #[test]
    fn test_parse_ipv4_mapped_loopback_is_accepted() {
        // Arrange / Act
        let listen = MetricsListen::parse("[::ffff:127.0.0.1]:9100");

        // Assert
        assert!(matches!(listen, Ok(MetricsListen::Tcp(_))));
    }

    #[test]
    fn test_parse_unspecified_address_is_refused() {
        // Arrange / Act: 0.0.0.0 would expose the endpoint on every interface.
        let listen = MetricsListen::parse("0.0.0.0:9100");

        // Assert
        assert!(matches!(listen, Err(MetricsError::NotLoopback(_))));
    }

    #[test]
    fn test_parse_public_ipv6_is_refused() {
        // Arrange / Act
        let listen = MetricsListen::parse("[2001:db8::1]:9100");

        // Assert
        assert!(matches!(listen, Err(MetricsError::NotLoopback(_))));
    }

    #[test]
    fn test_parse_unix_path_is_unix() {
        // Arrange / Act
        let listen = MetricsListen::parse("unix:/run/vugpu/metrics.sock");

        // Assert
        assert_eq!(
            listen.ok(),
            Some(MetricsListen::Unix(PathBuf::from(
                "/run/vugpu/metrics.sock"
            )))
        );
    }

    #[test]
    fn test_parse_empty_unix_path_is_refused() {
        // Arrange / Act
        let listen = MetricsListen::parse("unix:");

        // Assert
        assert!(matches!(listen, Err(MetricsError::EmptyUnixPath)));
    }

    #[test]
    fn test_parse_hostname_is_refused_with_source() {
        // Arrange / Act
        let listen = MetricsListen::parse("localhost:9100");

        // Assert
        let err = listen.expect_err("host names are not resolved");
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn test_display_round_trips_through_parse() {
        // Arrange
        let listen = MetricsListen::Unix(PathBuf::from("/tmp/m.sock"));

        // Act
        let reparsed = MetricsListen::parse(&listen.to_string());

        // Assert
        assert_eq!(reparsed.ok(), Some(listen));
    }
}
