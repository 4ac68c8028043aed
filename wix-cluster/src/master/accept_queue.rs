//! How many connections wait in the kernel's accept queues of the app's listening
//! sockets: clients no worker has taken yet (for [`crate::plugins::Autoscale`]).

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use parking_lot::Mutex;

/// The most listeners kept (the master binds few; a program cannot make it keep more).
const MAX_LISTENERS: usize = 256;

/// The app's listening sockets, as the master bound them.
#[derive(Default)]
pub(crate) struct AcceptQueues {
    listeners: Mutex<Vec<Arc<OwnedFd>>>,
}

impl AcceptQueues {
    /// Adds a listener (once).
    pub(crate) fn add(&self, fd: &Arc<OwnedFd>) {
        let mut listeners = self.listeners.lock();
        let known = listeners
            .iter()
            .any(|known| known.as_raw_fd() == fd.as_raw_fd());
        if !known && listeners.len() < MAX_LISTENERS {
            listeners.push(fd.clone());
        }
    }

    /// The connections waiting to be accepted, summed over the listeners.
    pub(crate) fn waiting(&self) -> u64 {
        self.listeners
            .lock()
            .iter()
            .filter_map(|fd| waiting(fd))
            .map(u64::from)
            .sum()
    }
}

/// `TCP_LISTEN` of the kernel's `tcp_states.h`.
const TCP_LISTEN: u8 = 10;

/// A TCP listening socket's accept queue: `tcpi_unacked` of `TCP_INFO`, which Linux
/// fills with the queue's length for a socket in the LISTEN state.
fn waiting(fd: &OwnedFd) -> Option<u32> {
    // SAFETY: `tcp_info` is plain old data, valid zeroed.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the descriptor is open for as long as `fd` is borrowed, and `info` and
    // `len` describe a writable buffer of `len` bytes.
    let done = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    (done == 0 && info.tcpi_state == TCP_LISTEN).then_some(info.tcpi_unacked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_not_yet_accepted_are_counted() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let fd = Arc::new(OwnedFd::from(listener.try_clone().expect("clone")));
        let queues = AcceptQueues::default();
        queues.add(&fd);
        queues.add(&fd);
        assert_eq!(queues.waiting(), 0);
        let clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
            .collect();
        assert_eq!(queues.waiting(), 3);
        let _taken = listener.accept().expect("accept");
        assert_eq!(queues.waiting(), 2);
        drop(clients);
    }
}
