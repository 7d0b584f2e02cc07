//! A connection's outbound queue: bounded, filled by the fan-out without
//! waiting, emptied by the connection's writer.
//!
//! Written here because the channels libraries offer hold memory whether
//! or not anything is queued: tokio's bounded `mpsc` allocates a shared
//! state of half a kilobyte and its slots in blocks of 32 (another half
//! kilobyte for 16-byte items), and keeps them; `futures-channel` needs
//! `&mut` to send, which the fan-out (many threads, one shared
//! connection) does not have. With tens of thousands of mostly idle
//! connections that was a tenth of each connection's memory. Here the
//! items live in a `VecDeque` allocated by the first push; a writer that
//! empties a queue grown past a few items frees it.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// Items an emptied queue keeps room for (a connection receiving one event
/// at a time does not allocate for each).
const KEEP: usize = 4;

/// Why a push failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The queue holds its capacity: the receiver is too slow.
    Full,
    /// The receiver is gone (the connection is closing).
    Closed,
}

/// The queue, shared by the fan-out (pushing) and one [`Receiver`].
pub(crate) struct Outbox<T> {
    capacity: usize,
    state: Mutex<State<T>>,
    waker: AtomicWaker,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

impl<T> Outbox<T> {
    /// An empty queue of at most `capacity` items (allocates nothing).
    pub(crate) fn new(capacity: usize) -> Self {
        Self { capacity, state: Mutex::new(State { items: VecDeque::new(), closed: false }), waker: AtomicWaker::new() }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an item without waiting.
    pub(crate) fn push(&self, item: T) -> Result<(), PushError> {
        {
            let mut state = self.lock();
            if state.closed {
                return Err(PushError::Closed);
            }
            if state.items.len() >= self.capacity {
                return Err(PushError::Full);
            }
            state.items.push_back(item);
        }
        self.waker.wake();
        Ok(())
    }

    /// The receiving end; dropping it closes the queue. One per queue.
    pub(crate) fn receiver(&self) -> Receiver<'_, T> {
        Receiver(self)
    }

    fn pop(&self) -> Option<T> {
        let mut state = self.lock();
        let item = state.items.pop_front();
        if state.items.is_empty() && state.items.capacity() > KEEP {
            let buffer = std::mem::take(&mut state.items);
            drop(state);
            drop(buffer);
        }
        item
    }
}

/// Takes items from an [`Outbox`]; the queue is closed (later pushes fail
/// with [`PushError::Closed`], queued items are dropped) when it drops.
pub(crate) struct Receiver<'a, T>(&'a Outbox<T>);

impl<T> Receiver<'_, T> {
    /// The next item, waiting for one.
    pub(crate) async fn recv(&mut self) -> T {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next item if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        self.0.pop()
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<T> {
        if let Some(item) = self.0.pop() {
            return Poll::Ready(item);
        }
        self.0.waker.register(cx.waker());
        // A push between the first look and the registration woke nobody.
        match self.0.pop() {
            Some(item) => Poll::Ready(item),
            None => Poll::Pending,
        }
    }
}

impl<T> Drop for Receiver<'_, T> {
    fn drop(&mut self) {
        let items = {
            let mut state = self.0.lock();
            state.closed = true;
            std::mem::take(&mut state.items)
        };
        drop(items);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn bounded_in_order_and_closed_by_the_receiver() {
        let outbox = Outbox::new(3);
        let mut rx = outbox.receiver();
        for i in 0..3 {
            assert_eq!(outbox.push(i), Ok(()));
        }
        assert_eq!(outbox.push(3), Err(PushError::Full));
        assert_eq!(rx.try_recv(), Some(0));
        assert_eq!(outbox.push(3), Ok(()));
        assert_eq!((rx.try_recv(), rx.try_recv(), rx.try_recv(), rx.try_recv()), (Some(1), Some(2), Some(3), None));
        outbox.push(4).unwrap();
        drop(rx);
        assert_eq!(outbox.push(5), Err(PushError::Closed));
        assert!(outbox.lock().items.is_empty(), "queued items are dropped with the receiver");
    }

    #[test]
    fn an_emptied_queue_frees_a_grown_buffer() {
        let outbox = Outbox::new(1024);
        let mut rx = outbox.receiver();
        assert_eq!(outbox.lock().items.capacity(), 0, "nothing allocated before the first push");
        outbox.push(1).unwrap();
        assert_eq!(rx.try_recv(), Some(1));
        let kept = outbox.lock().items.capacity();
        assert!(kept > 0 && kept <= KEEP, "a small buffer is kept: {kept}");
        for i in 0..100 {
            outbox.push(i).unwrap();
        }
        while rx.try_recv().is_some() {}
        assert_eq!(outbox.lock().items.capacity(), 0, "a grown buffer is freed once empty");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_receiver_gets_every_item_pushed_from_other_threads() {
        let outbox = Arc::new(Outbox::new(10_000));
        let pushers: Vec<_> = (0..4u32)
            .map(|p| {
                let outbox = outbox.clone();
                tokio::spawn(async move {
                    for i in 0..1000u32 {
                        outbox.push((p, i)).unwrap();
                        if i % 100 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        let mut rx = outbox.receiver();
        let mut next = [0u32; 4];
        for _ in 0..4000 {
            let (p, i) = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("an item");
            assert_eq!(i, next[p as usize], "each pusher's items arrive in order");
            next[p as usize] += 1;
        }
        for pusher in pushers {
            pusher.await.unwrap();
        }
        assert_eq!(rx.try_recv(), None);
    }
}
