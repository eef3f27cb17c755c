//! Where a managed connection goes: parsing and naming endpoints.
//!
//! An [`Endpoint`] is validated when it is built, so a typo fails at
//! `connect` with an error naming the input instead of turning into an
//! endless stream of failed attempts. Host names are kept as names and
//! resolved again on every attempt (DNS may move a service between attempts).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why an endpoint could not be parsed or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The input was an empty string.
    #[error("endpoint is empty: expected host:port, [v6addr]:port or unix:/path")]
    Empty,
    /// No `:port` after the host.
    #[error("endpoint {input:?} has no port: expected host:port")]
    MissingPort {
        /// The input as given.
        input: String,
    },
    /// Nothing before the `:port`.
    #[error("endpoint {input:?} has no host: expected host:port")]
    MissingHost {
        /// The input as given.
        input: String,
    },
    /// The port is not a number.
    #[error("endpoint {input:?} has an invalid port {port:?}: expected a number from 1 to 65535")]
    InvalidPort {
        /// The input as given.
        input: String,
        /// The text after the last `:`.
        port: String,
    },
    /// The port is a number above 65535.
    #[error("endpoint {input:?}: port {port} is out of range 1-65535")]
    PortOutOfRange {
        /// The input as given.
        input: String,
        /// The port number as parsed.
        port: u64,
    },
    /// Port 0 means "any port" to a listener and cannot be connected to.
    #[error("endpoint {input:?}: port 0 cannot be connected to")]
    PortZero {
        /// The input as given.
        input: String,
    },
    /// The host has characters no host name or address can have.
    #[error("endpoint {input:?} has an invalid host {host:?}")]
    InvalidHost {
        /// The input as given.
        input: String,
        /// The host part.
        host: String,
    },
    /// An IPv6 address must be written in brackets so its colons are not
    /// taken for the port separator.
    #[error("endpoint {input:?}: an IPv6 address needs brackets, as in [::1]:80")]
    UnbracketedIpv6 {
        /// The input as given.
        input: String,
    },
    /// `unix:` with nothing after it.
    #[error("endpoint {input:?}: the unix socket path is empty")]
    EmptyUnixPath {
        /// The input as given.
        input: String,
    },
    /// [`Endpoint::any`] was given no endpoints.
    #[error("endpoint list is empty: Endpoint::any needs at least one endpoint")]
    EmptyList,
}

/// A place to connect to: an address, a host name and port, a Unix socket
/// path, or a list of those ([`Endpoint::any`]).
///
/// Cheap to clone. Two endpoints are equal when they are written the same
/// way (`localhost:80` and `127.0.0.1:80` are different endpoints).
///
/// ```
/// use redial::Endpoint;
///
/// let e: Endpoint = "127.0.0.1:11211".parse()?;
/// assert_eq!(e.to_string(), "127.0.0.1:11211");
/// let v6: Endpoint = "[::1]:80".parse()?;
/// assert_eq!(v6.to_string(), "[::1]:80");
/// assert!("localhost".parse::<Endpoint>().is_err()); // no port
/// # Ok::<(), redial::EndpointError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    kind: Arc<Kind>,
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Addr(SocketAddr),
    Host { host: String, port: u16 },
    Unix(PathBuf),
    Any(Vec<Endpoint>),
}

impl Endpoint {
    /// Delay before racing the next address against one that has not answered
    /// yet: RFC 8305's recommended "connection attempt delay".
    ///
    /// Value: 250 ms.
    ///
    /// ```
    /// use std::time::Duration;
    /// assert_eq!(redial::Endpoint::HAPPY_EYEBALLS_DELAY, Duration::from_millis(250));
    /// ```
    pub const HAPPY_EYEBALLS_DELAY: std::time::Duration = crate::driver::dial::HAPPY_EYEBALLS_DELAY;
}

impl Endpoint {
    pub(crate) fn from_kind(kind: Kind) -> Self {
        Endpoint {
            kind: Arc::new(kind),
        }
    }

    /// An endpoint that connects to whichever of `endpoints` answers,
    /// trying them in turn (the starting one rotates between attempts).
    ///
    /// ```
    /// use redial::Endpoint;
    ///
    /// let e = Endpoint::any(["127.0.0.1:7001", "127.0.0.1:7002"])?;
    /// assert_eq!(e.to_string(), "any(127.0.0.1:7001, 127.0.0.1:7002)");
    /// # Ok::<(), redial::EndpointError>(())
    /// ```
    pub fn any<I>(endpoints: I) -> Result<Self, EndpointError>
    where
        I: IntoIterator,
        I::Item: ToEndpoint,
    {
        let mut list = Vec::new();
        for e in endpoints {
            let e = e.to_endpoint()?;
            // Flatten nested lists so the dialer sees one flat rotation.
            match &*e.kind {
                Kind::Any(inner) => list.extend(inner.iter().cloned()),
                _ => list.push(e),
            }
        }
        if list.is_empty() {
            return Err(EndpointError::EmptyList);
        }
        Ok(Self::from_kind(Kind::Any(list)))
    }

    /// An endpoint for a Unix domain socket at `path`.
    ///
    /// ```
    /// let e = redial::Endpoint::unix("/run/app.sock")?;
    /// assert_eq!(e.to_string(), "unix:/run/app.sock");
    /// # Ok::<(), redial::EndpointError>(())
    /// ```
    pub fn unix(path: impl AsRef<Path>) -> Result<Self, EndpointError> {
        let path = path.as_ref();
        if path.as_os_str().is_empty() {
            return Err(EndpointError::EmptyUnixPath {
                input: "unix:".into(),
            });
        }
        // A path of digits alone would print as "unix:80", the host `unix`;
        // "./80" names the same file and prints unambiguously.
        let digits = path
            .to_str()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
        let path = if digits {
            Path::new(".").join(path)
        } else {
            path.to_path_buf()
        };
        Ok(Self::from_kind(Kind::Unix(path)))
    }

    /// The host name or address, for TLS server names and logs; `None` for
    /// Unix sockets and lists.
    ///
    /// ```
    /// let e: redial::Endpoint = "cache.local:11211".parse()?;
    /// assert_eq!(e.host().as_deref(), Some("cache.local"));
    /// # Ok::<(), redial::EndpointError>(())
    /// ```
    pub fn host(&self) -> Option<String> {
        match &*self.kind {
            Kind::Addr(a) => Some(a.ip().to_string()),
            Kind::Host { host, .. } => Some(host.clone()),
            Kind::Unix(_) | Kind::Any(_) => None,
        }
    }

    pub(crate) fn kind(&self) -> &Kind {
        &self.kind
    }

    fn parse_str(input: &str) -> Result<Self, EndpointError> {
        if input.is_empty() {
            return Err(EndpointError::Empty);
        }
        if let Some(path) = input
            .strip_prefix("unix:")
            // "unix:80" is the host named `unix`, port 80; a socket whose
            // path is all digits is written "unix:./80".
            .filter(|rest| rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()))
        {
            if path.is_empty() {
                return Err(EndpointError::EmptyUnixPath {
                    input: input.into(),
                });
            }
            return Ok(Self::from_kind(Kind::Unix(PathBuf::from(path))));
        }
        let err_input = || input.to_string();
        let (host, port) = if let Some(rest) = input.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| EndpointError::InvalidHost {
                    input: err_input(),
                    host: input.into(),
                })?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| EndpointError::MissingPort { input: err_input() })?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(EndpointError::InvalidHost {
                    input: err_input(),
                    host: host.into(),
                });
            }
            (host, port)
        } else {
            let (host, port) = input
                .rsplit_once(':')
                .ok_or_else(|| EndpointError::MissingPort { input: err_input() })?;
            if host.contains(':') {
                return Err(EndpointError::UnbracketedIpv6 { input: err_input() });
            }
            (host, port)
        };
        if host.is_empty() {
            return Err(EndpointError::MissingHost { input: err_input() });
        }
        let port = parse_port(input, port)?;
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Self::from_kind(Kind::Addr(SocketAddr::new(ip, port))));
        }
        check_host(input, host)?;
        Ok(Self::from_kind(Kind::Host {
            host: host.to_string(),
            port,
        }))
    }
}

fn parse_port(input: &str, port: &str) -> Result<u16, EndpointError> {
    if port.is_empty() {
        return Err(EndpointError::MissingPort {
            input: input.into(),
        });
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(EndpointError::InvalidPort {
            input: input.into(),
            port: port.into(),
        });
    }
    let n: u64 = port.parse().map_err(|_| EndpointError::PortOutOfRange {
        input: input.into(),
        port: u64::MAX,
    })?;
    match n {
        0 => Err(EndpointError::PortZero {
            input: input.into(),
        }),
        1..=65535 => Ok(n as u16),
        _ => Err(EndpointError::PortOutOfRange {
            input: input.into(),
            port: n,
        }),
    }
}

/// Host names as DNS allows them (letters, digits, `-`, `.`, and `_` which
/// service records use), at most 253 bytes.
fn check_host(input: &str, host: &str) -> Result<(), EndpointError> {
    let ok = host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && !host.starts_with('.')
        && !host.contains("..");
    if ok {
        Ok(())
    } else {
        Err(EndpointError::InvalidHost {
            input: input.into(),
            host: host.into(),
        })
    }
}

impl std::str::FromStr for Endpoint {
    type Err = EndpointError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_str(s)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.kind {
            Kind::Addr(a) => write!(f, "{a}"),
            Kind::Host { host, port } => write!(f, "{host}:{port}"),
            Kind::Unix(p) => write!(f, "unix:{}", p.display()),
            Kind::Any(list) => {
                f.write_str("any(")?;
                for (i, e) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{e}")?;
                }
                f.write_str(")")
            }
        }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endpoint({self})")
    }
}

/// Anything that names an endpoint: `"host:port"`, `"[::1]:80"`,
/// `"unix:/path"`, a [`SocketAddr`], `(host, port)`, or an [`Endpoint`].
///
/// ```
/// use redial::ToEndpoint;
/// use std::net::SocketAddr;
///
/// let a = ("cache.local", 11211).to_endpoint()?;
/// let b = "127.0.0.1:80".parse::<SocketAddr>().unwrap().to_endpoint()?;
/// assert_eq!(a.to_string(), "cache.local:11211");
/// assert_eq!(b.to_string(), "127.0.0.1:80");
/// # Ok::<(), redial::EndpointError>(())
/// ```
pub trait ToEndpoint {
    /// Builds the endpoint, or says what is wrong with the input.
    fn to_endpoint(self) -> Result<Endpoint, EndpointError>;
}

impl ToEndpoint for Endpoint {
    fn to_endpoint(self) -> Result<Endpoint, EndpointError> {
        Ok(self)
    }
}
impl ToEndpoint for &Endpoint {
    fn to_endpoint(self) -> Result<Endpoint, EndpointError> {
        Ok(self.clone())
    }
}
impl ToEndpoint for &str {
    fn to_endpoint(self) -> Result<Endpoint, EndpointError> {
        Endpoint::parse_str(self)
    }
}
impl ToEndpoint for String {
    fn to_endpoint(self) -> Result<Endpoint, EndpointError> {
        Endpoint::parse_str(&self)
    }
}
impl ToEndpoint for &String {
    fn to_endpoint(self) -> Result<Endpoint, EndpointError> {
        Endpoint::parse_str(self)
    }
}
impl ToEndpoint for SocketAddr {
    fn to_endpoint(self) -> Result<Endpoint, EndpointError> {
        if self.port() == 0 {
            return Err(EndpointError::PortZero {
                input: self.to_string(),
            });
        }
        Ok(Endpoint::from_kind(Kind::Addr(self)))
    }
}
impl ToEndpoint for (IpAddr, u16) {
    fn to_endpoint(self) -> Result<Endpoint, EndpointError> {
        SocketAddr::new(self.0, self.1).to_endpoint()
    }
}
impl ToEndpoint for (&str, u16) {
    fn to_endpoint(self) -> Result<Endpoint, EndpointError> {
        let (host, port) = self;
        let input = format!("{host}:{port}");
        if host.is_empty() {
            return Err(EndpointError::MissingHost { input });
        }
        if port == 0 {
            return Err(EndpointError::PortZero { input });
        }
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(EndpointError::MissingHost { input });
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Endpoint::from_kind(Kind::Addr(SocketAddr::new(ip, port))));
        }
        check_host(&input, host)?;
        Ok(Endpoint::from_kind(Kind::Host {
            host: host.into(),
            port,
        }))
    }
}
impl ToEndpoint for (String, u16) {
    fn to_endpoint(self) -> Result<Endpoint, EndpointError> {
        (self.0.as_str(), self.1).to_endpoint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> EndpointError {
        match s.parse::<Endpoint>() {
            Ok(e) => panic!("{s:?} parsed as {e}"),
            Err(e) => e,
        }
    }

    #[test]
    fn parses_every_written_form() {
        for s in [
            "127.0.0.1:80",
            "[::1]:80",
            "cache.local:11211",
            "unix:/tmp/x.sock",
        ] {
            let e: Endpoint = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(e.to_string(), s);
        }
    }

    #[test]
    fn bad_input_names_the_input() {
        assert_eq!(err(""), EndpointError::Empty);
        assert!(matches!(
            err("localhost"),
            EndpointError::MissingPort { .. }
        ));
        assert!(matches!(
            err("localhost:"),
            EndpointError::MissingPort { .. }
        ));
        assert!(matches!(err(":80"), EndpointError::MissingHost { .. }));
        assert!(matches!(
            err("h:99999"),
            EndpointError::PortOutOfRange { port: 99999, .. }
        ));
        assert!(matches!(err("h:0"), EndpointError::PortZero { .. }));
        assert!(matches!(err("h:http"), EndpointError::InvalidPort { .. }));
        assert!(matches!(err("h:-1"), EndpointError::InvalidPort { .. }));
        assert!(matches!(err("unix:"), EndpointError::EmptyUnixPath { .. }));
        assert!(matches!(
            err("::1:80"),
            EndpointError::UnbracketedIpv6 { .. }
        ));
        assert!(matches!(err("a b:80"), EndpointError::InvalidHost { .. }));
        assert!(matches!(err("[zz]:80"), EndpointError::InvalidHost { .. }));
        assert!(matches!(
            err("h:123456789012345678901234567890"),
            EndpointError::PortOutOfRange { .. }
        ));
        let msg = err("localhost:http").to_string();
        assert!(msg.contains("localhost:http"), "{msg}");
    }

    #[test]
    fn the_host_unix_and_a_digit_socket_path_print_apart() {
        let host = ("unix", 80).to_endpoint().unwrap();
        assert_eq!(host.to_string().parse::<Endpoint>().unwrap(), host);
        let path = Endpoint::unix("80").unwrap();
        assert_eq!(path.to_string(), "unix:./80");
        assert_eq!(path.to_string().parse::<Endpoint>().unwrap(), path);
    }

    #[test]
    fn tuples_and_addrs_are_endpoints() {
        assert_eq!(("::1", 80).to_endpoint().unwrap().to_string(), "[::1]:80");
        assert!(("", 80).to_endpoint().is_err());
        assert!(("h", 0).to_endpoint().is_err());
        let any = Endpoint::any(["127.0.0.1:1", "127.0.0.1:2"]).unwrap();
        assert!(matches!(any.kind(), Kind::Any(l) if l.len() == 2));
        assert_eq!(
            Endpoint::any(Vec::<&str>::new()),
            Err(EndpointError::EmptyList)
        );
    }
}
