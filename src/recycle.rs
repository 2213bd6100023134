//! Hands memory the JavaScript thread is done with back to the runtime thread that allocated it.
//!
//! With glibc's allocator, a thread that frees memory another thread allocated takes that thread's
//! arena lock. A response's status text, header strings and body are allocated on the runtime
//! thread and used on the JavaScript thread; freeing them there made the two threads contend for
//! the runtime's arena lock on every call (the largest source of `futex` calls in profiles of
//! `getJob` under load). So a response travels as a [`Recycled`] value, which on drop sends it
//! back over a channel instead, and the runtime drops whatever came back each time it finishes a
//! request ([`empty`]). What is sent after the last request of a busy period waits for the next one.

use std::ops::Deref;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{LazyLock, Mutex};

type Garbage = Box<dyn Send>;

static BIN: LazyLock<(Sender<Garbage>, Mutex<Receiver<Garbage>>)> = LazyLock::new(|| {
    let (tx, rx) = channel();
    (tx, Mutex::new(rx))
});

/// A value (boxed on the thread that creates it) that is dropped on a runtime thread.
pub(crate) struct Recycled<T: Send + 'static>(Option<Box<T>>);

impl<T: Send + 'static> Recycled<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(Some(Box::new(value)))
    }
}

impl<T: Send + 'static> Deref for Recycled<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // Only `drop` takes the value out.
        self.0
            .as_deref()
            .expect("a Recycled value is present until dropped")
    }
}

impl<T: Send + 'static> Drop for Recycled<T> {
    fn drop(&mut self) {
        if let Some(value) = self.0.take() {
            // The receiver lives in a static, so sending cannot fail.
            let _ = BIN.0.send(value);
        }
    }
}

/// Drops what the JavaScript thread sent back; called on a runtime thread. Skipped when another
/// runtime thread is at it.
pub(crate) fn empty() {
    if let Ok(rx) = BIN.1.try_lock() {
        while let Ok(garbage) = rx.try_recv() {
            drop(garbage);
        }
    }
}
