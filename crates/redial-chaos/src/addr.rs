//! Turning what the caller wrote (`"127.0.0.1:0"`, a `SocketAddr`, a
//! `(host, port)` pair) into one `SocketAddr`, with errors that quote the input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, ToSocketAddrs};

use crate::Error;

/// Something that names one socket address: the listen or upstream address of
/// a [`Proxy`](crate::Proxy).
///
/// Implemented for [`SocketAddr`] (and its V4/V6 forms), `&str` / `String`
/// such as `"127.0.0.1:0"` or `"localhost:8080"`, and `(ip, port)` /
/// `(&str, port)` pairs. Host names are resolved once, when the proxy
/// starts, with the system resolver (which may block briefly); the first
/// address wins.
///
/// ```
/// use redial_chaos::ProxyAddr;
///
/// let addr = "127.0.0.1:8080".to_addr("listen").unwrap();
/// assert_eq!(addr.port(), 8080);
/// let err = "not an address".to_addr("upstream").unwrap_err();
/// assert!(err.to_string().contains("`not an address`"));
/// ```
pub trait ProxyAddr {
    /// Resolves to one address; `role` (`"listen"` or `"upstream"`) goes
    /// into the error message.
    fn to_addr(&self, role: &'static str) -> Result<SocketAddr, Error>;
}

fn resolve<A: ToSocketAddrs + ?Sized>(
    addr: &A,
    shown: impl FnOnce() -> String,
    role: &'static str,
) -> Result<SocketAddr, Error> {
    match addr.to_socket_addrs() {
        Ok(mut found) => found.next().ok_or_else(|| Error::Address {
            role,
            input: shown(),
            reason: "resolved to no address".into(),
        }),
        Err(e) => Err(Error::Address {
            role,
            input: shown(),
            reason: e.to_string(),
        }),
    }
}

impl ProxyAddr for SocketAddr {
    fn to_addr(&self, _role: &'static str) -> Result<SocketAddr, Error> {
        Ok(*self)
    }
}

impl ProxyAddr for SocketAddrV4 {
    fn to_addr(&self, _role: &'static str) -> Result<SocketAddr, Error> {
        Ok((*self).into())
    }
}

impl ProxyAddr for SocketAddrV6 {
    fn to_addr(&self, _role: &'static str) -> Result<SocketAddr, Error> {
        Ok((*self).into())
    }
}

impl ProxyAddr for str {
    fn to_addr(&self, role: &'static str) -> Result<SocketAddr, Error> {
        // Parse first so that literal addresses never touch the resolver.
        match self.parse::<SocketAddr>() {
            Ok(addr) => Ok(addr),
            Err(_) => resolve(self, || self.to_owned(), role),
        }
    }
}

impl ProxyAddr for String {
    fn to_addr(&self, role: &'static str) -> Result<SocketAddr, Error> {
        self.as_str().to_addr(role)
    }
}

impl<T: ProxyAddr + ?Sized> ProxyAddr for &T {
    fn to_addr(&self, role: &'static str) -> Result<SocketAddr, Error> {
        (**self).to_addr(role)
    }
}

impl ProxyAddr for (IpAddr, u16) {
    fn to_addr(&self, _role: &'static str) -> Result<SocketAddr, Error> {
        Ok(SocketAddr::new(self.0, self.1))
    }
}

impl ProxyAddr for (Ipv4Addr, u16) {
    fn to_addr(&self, _role: &'static str) -> Result<SocketAddr, Error> {
        Ok(SocketAddr::new(self.0.into(), self.1))
    }
}

impl ProxyAddr for (Ipv6Addr, u16) {
    fn to_addr(&self, _role: &'static str) -> Result<SocketAddr, Error> {
        Ok(SocketAddr::new(self.0.into(), self.1))
    }
}

impl ProxyAddr for (&str, u16) {
    fn to_addr(&self, role: &'static str) -> Result<SocketAddr, Error> {
        resolve(self, || format!("{}:{}", self.0, self.1), role)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn literal_and_pairs_resolve() {
        assert_eq!("127.0.0.1:9".to_addr("listen").unwrap().port(), 9);
        assert_eq!(String::from("[::1]:7").to_addr("listen").unwrap().port(), 7);
        let pair = (Ipv4Addr::LOCALHOST, 5u16);
        assert_eq!(pair.to_addr("listen").unwrap().port(), 5);
    }

    #[test]
    fn bad_input_is_named_in_the_error() {
        let err = "nope".to_addr("upstream").unwrap_err().to_string();
        assert!(err.starts_with("invalid upstream address `nope`"), "{err}");
    }
}
