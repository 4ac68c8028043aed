//! Binding the listening sockets that workers share.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// The accept queue length asked of the kernel (capped by `net.core.somaxconn`).
pub(crate) const BACKLOG: u32 = 1024;

/// Binds `addr` with `SO_REUSEADDR` and a deep backlog. Needs a tokio runtime.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Resolves what the app passed to `listen` to one socket address.
pub(crate) fn resolve(addr: impl std::net::ToSocketAddrs) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "listen: the address resolved to nothing",
        )
    })
}
