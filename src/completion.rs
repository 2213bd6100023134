//! Runs a request on the addon's runtime and hands its output back to the JavaScript thread.
//!
//! napi-rs's `execute_tokio_future` creates a thread-safe function for every call (an event-loop
//! handle, an environment cleanup hook, a mutex), closes it again when the call settles, and
//! spawns a second task per call to watch the first for panics. At thousands of calls per second
//! that bookkeeping cost more CPU than the JavaScript values the call produces. Here each
//! environment keeps a single thread-safe function for its whole life, and a finished request
//! queues its output for the JavaScript thread.
//!
//! Finished requests wait in the environment's own queue, and the thread-safe function is called
//! once per item but only ever has one call outstanding: a runtime thread calls it only when the
//! queue was idle, and the JavaScript thread, taking one item, calls it again itself while more
//! wait (Node then loops in the same wake-up, without a system call). Node's own queue holds its
//! mutex while it wakes the event loop (a `write`), so when every runtime thread pushed there the
//! JavaScript thread and the workers blocked on that mutex (`futex`) about once every four calls.
//!
//! Node runs each call of the function in its own callback scope, so microtasks (promise
//! reactions) and `process.nextTick` callbacks still run between two completions, as they did
//! with one function per call, and it runs up to 1000 calls per wake-up, so a busy JavaScript
//! thread takes completions in batches instead of one event-loop turn each.
//!
//! The function keeps the event loop alive only while calls are pending, as the per-call functions
//! did: pending calls hold the process open, an idle client never does.

use std::collections::VecDeque;
use std::ffi::c_void;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use napi::sys::{self, napi_env, napi_value};
use napi::Result;

use crate::js;
use crate::recycle;

/// A call's way back: allocated on the JavaScript thread when the call starts, filled in by the
/// runtime, consumed (and freed) on the JavaScript thread. Handing it over allocates nothing on
/// the runtime thread: with glibc, memory one thread allocates and another frees makes both
/// contend for the owner's arena lock, and that showed in profiles.
#[repr(C)]
struct Delivery<D, O> {
    /// First (`repr(C)`), so `call_js` can find it without knowing `D` and `O`.
    run: unsafe fn(*mut c_void, napi_env),
    deliver: D,
    output: Option<O>,
}

/// Frees the delivery at `data` after handing its output to `deliver`, or without doing so
/// when `env` is null (teardown).
unsafe fn run_delivery<D, O>(data: *mut c_void, env: napi_env)
where
    D: FnOnce(napi_env, O),
{
    // SAFETY: `data` is the `Box<Delivery<D, O>>` `run` leaked for this very `run_delivery::<D, O>`
    // (they travel together), and each delivery runs exactly once.
    let delivery = unsafe { Box::from_raw(data.cast::<Delivery<D, O>>()) };
    let Delivery {
        deliver, output, ..
    } = *delivery;
    if let (false, Some(output)) = (env.is_null(), output) {
        deliver(env, output);
    }
}

#[derive(Clone, Copy)]
struct Tsfn(sys::napi_threadsafe_function);

// SAFETY: Node-API allows calling a thread-safe function from any thread; everything else done
// with it (ref, unref) happens on the JavaScript thread.
unsafe impl Send for Tsfn {}
unsafe impl Sync for Tsfn {}

/// A queued `Box<Delivery<D, O>>`, leaked; its first field says how to run and free it.
struct Item(*mut c_void);

// SAFETY: a delivery is `Send` (its `D` and `O` are), and an item is run or freed exactly once,
// by whichever thread takes it from the queue.
unsafe impl Send for Item {}

impl Item {
    /// Runs the delivery with `env` (or frees it unrun when `env` is null).
    ///
    /// # Safety
    /// `env` is null or the live environment of the current JavaScript thread.
    unsafe fn run(self, env: napi_env) {
        // SAFETY: every item is a `repr(C)` `Delivery`, whose first field is its `run`, which
        // takes it back; it runs once, here, as `self` is consumed.
        unsafe {
            let run = *self.0.cast::<unsafe fn(*mut c_void, napi_env)>();
            run(self.0, env)
        }
    }
}

/// The runtime threads' side of an environment's thread-safe function.
struct Queue {
    /// Cleared by the finalizer when the environment tears down, after which Node frees the
    /// function. Read-locked across each call, so the finalizer cannot free it mid-call.
    tsfn: RwLock<Option<Tsfn>>,
    /// Finished requests, oldest first, waiting for the JavaScript thread.
    ready: Mutex<VecDeque<Item>>,
    /// Whether a call of the function is outstanding (queued in Node or running) for `ready`: at
    /// most one is, so runtime threads call the function only when the queue was idle.
    scheduled: AtomicBool,
}

impl Queue {
    fn ready(&self) -> MutexGuard<'_, VecDeque<Item>> {
        self.ready.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a `Delivery` for the JavaScript thread (a runtime thread's side).
    fn push(&self, item: Item) {
        self.ready().push_back(item);
        if !self.scheduled.swap(true, Ordering::SeqCst) {
            self.notify();
        }
    }

    /// Asks Node for one more `call_js`; when the environment is closing nothing will run
    /// again, so what is queued is freed unrun.
    fn notify(&self) {
        let status = match self.tsfn.read().as_deref() {
            // SAFETY: the read lock keeps the finalizer from freeing the function during the call.
            Ok(Some(Tsfn(tsfn))) => unsafe {
                sys::napi_call_threadsafe_function(
                    *tsfn,
                    ptr::null_mut(),
                    sys::ThreadsafeFunctionCallMode::nonblocking,
                )
            },
            _ => sys::Status::napi_closing,
        };
        if status != sys::Status::napi_ok {
            self.discard();
        }
    }

    /// Frees every queued delivery unrun (the environment is gone).
    fn discard(&self) {
        // Taken one at a time: dropping a delivery must not run with the lock held.
        while let Some(item) = self.ready().pop_front() {
            // SAFETY: a null `env` frees the delivery without running it.
            unsafe { item.run(ptr::null_mut()) };
        }
    }

    /// The next delivery, on the JavaScript thread in `call_js`, which the outstanding call is
    /// for: keeps one call outstanding while more wait, else marks the queue idle.
    fn take(&self) -> Option<Item> {
        let (item, more) = {
            let mut ready = self.ready();
            let item = ready.pop_front();
            (item, !ready.is_empty())
        };
        if more {
            self.notify();
        } else {
            self.scheduled.swap(false, Ordering::SeqCst);
            // A runtime thread that pushed before the flag was cleared saw it set and left the
            // call to us.
            if !self.ready().is_empty() && !self.scheduled.swap(true, Ordering::SeqCst) {
                self.notify();
            }
        }
        item
    }
}

impl Drop for Queue {
    /// Deliveries still queued when the last holder lets go have no environment left.
    fn drop(&mut self) {
        self.discard();
    }
}

/// The JavaScript thread's side, kept in the environment's instance data (`js::Instance`): the
/// queue and how many calls are waiting on it. The function itself is read from the queue, so
/// once the finalizer has cleared it nothing here can touch the freed function, whatever order
/// Node tears the environment down in.
struct Completion {
    queue: Arc<Queue>,
    pending: usize,
}

impl Queue {
    /// The live function, `None` once the environment tore it down.
    fn current(&self) -> Option<Tsfn> {
        *self.tsfn.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs the future `work()` builds on the runtime, then `deliver(env, output)` on the JavaScript
/// thread; the event loop stays alive until then. If the environment tears down first, `deliver`
/// is dropped without running (on whichever thread holds it then).
///
/// The future is built and boxed on the runtime thread: a request's future is over a kilobyte, and
/// the task spawned here then only carries its inputs (moving and allocating the whole future on
/// the JavaScript thread, and freeing it on the runtime's, showed in profiles). `work` and its
/// future must not panic, or `deliver` never runs and the loop stays alive: `callback::spawn`
/// catches panics inside the future.
pub(crate) fn run<W, F, D>(env: napi_env, work: W, deliver: D) -> Result<()>
where
    W: FnOnce() -> F + Send + 'static,
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    D: FnOnce(napi_env, F::Output) + Send + 'static,
{
    let queue = queue(env)?;
    let mut delivery = Box::new(Delivery {
        run: run_delivery::<D, F::Output>,
        deliver,
        output: None,
    });
    napi::bindgen_prelude::spawn(async move {
        delivery.output = Some(Box::pin(work()).await);
        recycle::empty();
        queue.push(Item(Box::into_raw(delivery).cast()));
    });
    // Counted only once spawned (a spawn that panics must not keep the loop alive forever); the
    // output cannot be delivered before this function returns to the event loop anyway.
    js::with_slot(env, |completion: &mut Option<Completion>| {
        if let Some(c) = completion {
            if c.pending == 0 {
                if let Some(Tsfn(tsfn)) = c.queue.current() {
                    // SAFETY: on the JavaScript thread of `env`, whose function this is, alive:
                    // the finalizer clears it from the queue before Node frees it.
                    unsafe { sys::napi_ref_threadsafe_function(env, tsfn) };
                }
            }
            c.pending += 1;
        }
    })?;
    Ok(())
}

/// The environment's queue, creating its thread-safe function on first use.
fn queue(env: napi_env) -> Result<Arc<Queue>> {
    let existing = js::with_slot(env, |c: &mut Option<Completion>| {
        c.as_ref().map(|c| c.queue.clone())
    })?;
    if let Some(queue) = existing {
        return Ok(queue);
    }
    let queue = Arc::new(Queue {
        tsfn: RwLock::new(None),
        ready: Mutex::new(VecDeque::new()),
        scheduled: AtomicBool::new(false),
    });
    let name = js::string(env, "iothub-jobs")?;
    let finalize_data = Arc::into_raw(queue.clone()).cast_mut().cast::<c_void>();
    let mut tsfn = ptr::null_mut();
    // SAFETY: `name` belongs to `env`'s current scope; `finalize_data` is an `Arc<Queue>` that
    // `finalize` (or the failure branch below) takes back exactly once, and is also the context
    // `call_js` reads the queue through (it is called with a live `env` only before `finalize`);
    // `tsfn` is a local.
    let status = unsafe {
        sys::napi_create_threadsafe_function(
            env,
            ptr::null_mut(),
            ptr::null_mut(),
            name,
            0,
            1,
            finalize_data,
            Some(finalize),
            finalize_data,
            Some(call_js),
            &mut tsfn,
        )
    };
    if let Err(e) = js::check(env, status) {
        // SAFETY: not created, so the finalizer will never run: the `Arc` is still ours.
        drop(unsafe { Arc::from_raw(finalize_data.cast::<Queue>()) });
        return Err(e);
    }
    // Idle until a call is pending (see `run`).
    // SAFETY: just created on this thread for `env`.
    unsafe { sys::napi_unref_threadsafe_function(env, tsfn) };
    *queue.tsfn.write().unwrap_or_else(|e| e.into_inner()) = Some(Tsfn(tsfn));
    js::with_slot(env, |c: &mut Option<Completion>| {
        *c = Some(Completion {
            queue: queue.clone(),
            pending: 0,
        })
    })?;
    Ok(queue)
}

/// Runs the next queued delivery on the JavaScript thread. A null `env` means Node is dropping its
/// own queue at teardown, after `finalize`, which already freed what was waiting.
unsafe extern "C" fn call_js(
    env: napi_env,
    _js_callback: napi_value,
    context: *mut c_void,
    _data: *mut c_void,
) {
    if env.is_null() {
        return;
    }
    // SAFETY: `context` is the `Arc<Queue>` that `finalize` takes back; with a live `env`,
    // `finalize` has not run, so the queue is alive.
    let queue = unsafe { &*context.cast::<Queue>() };
    let Some(item) = queue.take() else { return };
    // A live `env` means a normal delivery on its JavaScript thread, so its instance data is
    // alive too.
    let _ = js::with_slot(env, |completion: &mut Option<Completion>| {
        if let Some(c) = completion {
            c.pending = c.pending.saturating_sub(1);
            if let (0, Some(Tsfn(tsfn))) = (c.pending, c.queue.current()) {
                // SAFETY: on `env`'s JavaScript thread, with its live function (see `run`).
                unsafe { sys::napi_unref_threadsafe_function(env, tsfn) };
            }
        }
    });
    // Deliveries catch their own panics; this only keeps one from unwinding into Node.
    // SAFETY: a live `env` on its JavaScript thread; the item runs once, here.
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| unsafe { item.run(env) }));
}

/// Called by Node when the environment tears down, just before it frees the function. It
/// touches only the queue, not the instance data, which Node may already have freed.
unsafe extern "C" fn finalize(_env: napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: `data` is the `Arc<Queue>` leaked for this function in `queue`; Node calls the
    // finalizer once.
    let queue = unsafe { Arc::from_raw(data.cast::<Queue>()) };
    *queue.tsfn.write().unwrap_or_else(|e| e.into_inner()) = None;
    // Nothing will run `call_js` again: what waits is freed, and a runtime thread that pushes
    // from now on finds the queue idle, calls the (gone) function and frees its own delivery.
    queue.scheduled.swap(false, Ordering::SeqCst);
    queue.discard();
}
