//! [`first`]: runs a future and a guard beside it, polling the guard only when the
//! guard's own waker fired.
//!
//! A connection's task is woken for every read and write; `tokio::select!` would poll
//! the watchdog each time too (its timer, its `Notify`, which takes a lock), for
//! nothing: the watchdog has work only when its timer fires or it is notified. Here the
//! guard gets a waker of its own that marks it due and wakes the task, and a poll of
//! the task polls the guard only when it is due: the cost per poll is one atomic load.

use parking_lot::Mutex;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

/// Which of the two finished first.
pub(crate) enum First<A, B> {
    /// The main future, with its output.
    Main(A),
    /// The guard, with its output (the main future is dropped by the caller).
    Guard(B),
}

/// The guard's waker: marks it due, then wakes the task.
struct Due {
    due: AtomicBool,
    /// The task's waker, as of its last poll.
    task: Mutex<Option<Waker>>,
}

impl Wake for Due {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.due.store(true, Ordering::Release);
        if let Some(task) = self.task.lock().as_ref() {
            task.wake_by_ref();
        }
    }
}

/// Polls `main` at every poll and `guard` at the first one and whenever its waker was
/// woken since; resolves with whichever finishes first (`main` when both are ready).
pub(crate) fn first<F: Future, G: Future>(
    mut main: Pin<&mut F>,
    mut guard: Pin<&mut G>,
) -> impl Future<Output = First<F::Output, G::Output>> {
    let due = Arc::new(Due {
        // The first poll polls the guard, so that it registers its waker.
        due: AtomicBool::new(true),
        task: Mutex::new(None),
    });
    let guard_waker = Waker::from(due.clone());
    let mut known: Option<Waker> = None;
    poll_fn(move |cx: &mut Context<'_>| {
        // The task's waker first, then the mark: a wake in between sees the new waker.
        if !known
            .as_ref()
            .is_some_and(|known| known.will_wake(cx.waker()))
        {
            let waker = cx.waker().clone();
            *due.task.lock() = Some(waker.clone());
            known = Some(waker);
        }
        if let Poll::Ready(output) = main.as_mut().poll(cx) {
            return Poll::Ready(First::Main(output));
        }
        if due.due.load(Ordering::Acquire) {
            // Cleared before the poll: a wake during it marks the guard due again.
            due.due.store(false, Ordering::Relaxed);
            if let Poll::Ready(output) = guard.as_mut().poll(&mut Context::from_waker(&guard_waker))
            {
                return Poll::Ready(First::Guard(output));
            }
        }
        Poll::Pending
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread")]
    async fn the_guard_is_polled_only_when_its_waker_fired_and_wins_when_it_ends_first() {
        let polls = std::cell::Cell::new(0);
        let mut sleep = std::pin::pin!(tokio::time::sleep(Duration::from_millis(100)));
        let guard = std::pin::pin!(poll_fn(|cx| {
            polls.set(polls.get() + 1);
            sleep.as_mut().poll(cx).map(|()| "guard")
        }));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let main = std::pin::pin!(async move {
            // Woken 50 times: the guard is not polled for it.
            while rx.recv().await.is_some() {}
            "main"
        });
        let feeder = tokio::spawn(async move {
            for _ in 0..50 {
                let _ = tx.send(());
                tokio::task::yield_now().await;
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(tx);
        });
        match first(main, guard).await {
            First::Guard(why) => assert_eq!(why, "guard"),
            First::Main(_) => panic!("the main future ended first"),
        }
        assert_eq!(
            polls.get(),
            2,
            "the guard was polled at the start and when it fired"
        );
        feeder.abort();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_main_future_wins_when_it_ends_first() {
        let guard = std::pin::pin!(std::future::pending::<()>());
        let main = std::pin::pin!(async { 7 });
        assert!(matches!(first(main, guard).await, First::Main(7)));
    }
}
