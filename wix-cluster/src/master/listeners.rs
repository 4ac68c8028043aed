//! The listening sockets the master bound for its workers (or adopted from systemd's
//! socket activation), kept open for the master's whole life so that queued
//! connections survive any one worker.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::protocol::ListenOn;

#[derive(Default)]
pub(crate) struct Listeners {
    /// Keyed by the address asked for and by the address bound (they differ for port 0).
    by_addr: HashMap<SocketAddr, Bound>,
    /// Sockets systemd passed in (`LISTEN_FDS`), handed out in place of binding.
    activated: Vec<Bound>,
}

#[derive(Clone)]
pub(crate) struct Bound {
    pub(crate) addr: SocketAddr,
    pub(crate) fd: Arc<OwnedFd>,
    /// The socket's `LISTEN_FDNAMES` name, for a socket from systemd.
    pub(crate) name: Option<String>,
}

impl Listeners {
    /// Adopts the TCP listeners systemd passed to this process (`LISTEN_FDS` with
    /// `LISTEN_PID` naming it, and their names from `LISTEN_FDNAMES`), and removes those
    /// variables so that workers do not see them. Must run before any thread exists (it
    /// edits the environment).
    pub(crate) fn adopt_activated() -> Listeners {
        let mut listeners = Listeners::default();
        let fds = match sd_notify::listen_fds_with_names() {
            Ok(fds) => fds,
            Err(e) => {
                tracing::error!("ignoring systemd's sockets: {e}");
                return listeners;
            }
        };
        for (fd, name) in fds {
            // SAFETY: systemd passed this descriptor to this process (LISTEN_PID is ours)
            // for it to own; nothing else in the process knows it.
            let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            let listener = std::net::TcpListener::from(owned);
            let adopted = listener
                .set_nonblocking(true)
                .and_then(|()| listener.local_addr());
            match adopted {
                Ok(addr) => {
                    tracing::info!("listening on {addr} (socket {name:?} from systemd)");
                    listeners.activated.push(Bound {
                        addr,
                        fd: Arc::new(OwnedFd::from(listener)),
                        name: Some(name),
                    });
                }
                Err(e) => {
                    tracing::error!("ignoring systemd's descriptor {fd}: not a TCP listener ({e})")
                }
            }
        }
        for name in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
            // SAFETY: called before the master starts its runtime or any thread.
            unsafe { std::env::remove_var(name) };
        }
        listeners
    }

    /// Every socket, once each, with the addresses asked for that it answers: what an
    /// upgrade hands to the new master.
    pub(crate) fn handover(&self) -> Vec<(Vec<SocketAddr>, Bound)> {
        let mut sockets: Vec<(Vec<SocketAddr>, Bound)> = Vec::new();
        let all = self.by_addr.iter().map(|(key, bound)| (Some(*key), bound));
        let unused = self.activated.iter().map(|bound| (None, bound));
        for (key, bound) in all.chain(unused) {
            let known = sockets
                .iter_mut()
                .find(|(_, seen)| Arc::ptr_eq(&seen.fd, &bound.fd));
            let entry = match known {
                Some(entry) => entry,
                None => {
                    sockets.push((Vec::new(), bound.clone()));
                    let last = sockets.len() - 1;
                    &mut sockets[last]
                }
            };
            if let Some(key) = key {
                entry.0.push(key);
            }
        }
        sockets
    }

    /// Adopts a socket handed over by the master this one replaces, for the addresses
    /// in `requested` (and its own); a socket from systemd stays one (by name too).
    pub(crate) fn adopt(&mut self, requested: Vec<SocketAddr>, bound: Bound) {
        if bound.name.is_some() {
            self.activated.push(bound.clone());
        }
        if requested.is_empty() {
            return;
        }
        self.by_addr.insert(bound.addr, bound.clone());
        for key in requested {
            self.by_addr.insert(key, bound.clone());
        }
    }

    /// The socket a worker asks for: by address (see [`Listeners::get_or_bind`]) or by
    /// name (see [`Listeners::get_named`]).
    pub(crate) fn get(&mut self, on: &ListenOn) -> io::Result<Bound> {
        match on {
            ListenOn::Addr(addr) => self.get_or_bind(*addr),
            ListenOn::Name(name) => self.get_named(name),
        }
    }

    /// The socket from systemd named `name` in `LISTEN_FDNAMES` (`FileDescriptorName=`
    /// of the socket unit). Never binds: a missing name is an error naming those there
    /// are.
    pub(crate) fn get_named(&self, name: &str) -> io::Result<Bound> {
        if let Some(bound) = self
            .activated
            .iter()
            .find(|bound| bound.name.as_deref() == Some(name))
        {
            return Ok(bound.clone());
        }
        let known: Vec<&str> = self
            .activated
            .iter()
            .filter_map(|bound| bound.name.as_deref())
            .collect();
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            if known.is_empty() {
                format!("no socket named {name:?}: systemd passed no socket (LISTEN_FDS)")
            } else {
                format!("no socket named {name:?}; systemd passed {known:?} (LISTEN_FDNAMES)")
            },
        ))
    }

    /// The socket for `requested`: a socket from systemd with that address (or that
    /// port, when either side's address is unspecified), else one bound on first use.
    pub(crate) fn get_or_bind(&mut self, requested: SocketAddr) -> io::Result<Bound> {
        if let Some(bound) = self.by_addr.get(&requested) {
            return Ok(bound.clone());
        }
        let activated = self.activated.iter().find(|bound| {
            bound.addr == requested
                || (bound.addr.port() == requested.port()
                    && (bound.addr.ip().is_unspecified() || requested.ip().is_unspecified()))
        });
        if let Some(bound) = activated.cloned() {
            self.by_addr.insert(requested, bound.clone());
            return Ok(bound);
        }
        let listener = crate::listener::bind(requested)?;
        let addr = listener.local_addr()?;
        let fd = OwnedFd::from(listener.into_std()?);
        let bound = Bound {
            addr,
            fd: Arc::new(fd),
            name: None,
        };
        tracing::info!("listening on {addr}");
        self.by_addr.insert(requested, bound.clone());
        self.by_addr.insert(addr, bound.clone());
        Ok(bound)
    }
}
