//! The listening sockets the master bound for its workers, kept open for the master's
//! whole life so that queued connections survive any one worker.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

#[derive(Default)]
pub(crate) struct Listeners {
    /// Keyed by the address asked for and by the address bound (they differ for port 0).
    by_addr: HashMap<SocketAddr, Bound>,
}

#[derive(Clone)]
pub(crate) struct Bound {
    pub(crate) addr: SocketAddr,
    pub(crate) fd: Arc<OwnedFd>,
}

impl Listeners {
    /// The socket for `requested`, bound on first use.
    pub(crate) fn get_or_bind(&mut self, requested: SocketAddr) -> io::Result<Bound> {
        if let Some(bound) = self.by_addr.get(&requested) {
            return Ok(bound.clone());
        }
        let listener = crate::listener::bind(requested)?;
        let addr = listener.local_addr()?;
        let fd = OwnedFd::from(listener.into_std()?);
        let bound = Bound {
            addr,
            fd: Arc::new(fd),
        };
        tracing::info!("listening on {addr}");
        self.by_addr.insert(requested, bound.clone());
        self.by_addr.insert(addr, bound.clone());
        Ok(bound)
    }
}
