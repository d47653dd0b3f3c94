//! Simulate mode's clock and timers: a heap of deadlines on the run's thread, and a task that
//! moves time to the earliest one whenever every actor is idle.
//!
//! tokio's own timers could do this on a paused runtime (they did, until 2026-12-02), but its
//! timer wheel counts whole milliseconds, so simulated time ran 1000× slower than tokio time to
//! keep the microsecond, and a 10 ms step was 10,000 ticks away: the wheel moved each timer
//! down its levels one park at a time. That was 4.3 runtime parks and 17 clock readings (each a
//! thread-local lookup and a lock) per worker step, and tokio took 70% of a simulation's time.
//! Here a step's timer is a heap push and a wake-up, and `search --gpus 16` on
//! `scenarios/sim/heavy_light.toml` ran in 0.81 of the time with the same results (every
//! simulated CSV is byte for byte the same).
//!
//! The runtime tells when the actors are idle: it calls its park hook ([`runtime`]) only when no
//! task is ready, and the hook wakes the driver. (A one-tick sleep on tokio's paused clock told
//! it before, as the runtime advances that clock only then; its timer wheel and clock still took
//! an eighth of a search's time.)
//!
//! A simulated run owns its thread (a current-thread runtime), so the state is thread-local and
//! [`start`] resets it for each run.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// One pending timer, shared by its [`Sleep`] and the heap.
#[derive(Default)]
struct Entry {
    fired: Cell<bool>,
    /// The sleep was dropped (its actor stopped): the driver skips it without moving time.
    cancelled: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// Heap order: deadline, then the order the timers were set in (the same seed, the same run).
struct Due {
    at_ns: u64,
    seq: u64,
    entry: Rc<Entry>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at_ns, self.seq) == (other.at_ns, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at_ns, self.seq).cmp(&(other.at_ns, other.seq))
    }
}

#[derive(Default)]
struct Timers {
    now_ns: Cell<u64>,
    seq: Cell<u64>,
    heap: RefCell<BinaryHeap<Reverse<Due>>>,
    /// The driver, waiting for a timer to be set.
    driver: RefCell<Option<Waker>>,
    /// The driver, waiting for every actor to be idle; taken by the park hook, which sets
    /// `idle` as it wakes it.
    idle_waker: RefCell<Option<Waker>>,
    idle: Cell<bool>,
}

thread_local! {
    static TIMERS: RefCell<Rc<Timers>> = RefCell::new(Rc::new(Timers::default()));
}

fn timers() -> Rc<Timers> {
    TIMERS.with(|t| t.borrow().clone())
}

/// The runtime a simulated run needs: current-thread, with the hook that tells the driver when
/// every actor is idle. No time driver: nothing in a simulation waits on tokio's clock.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().on_thread_park(on_park).build()
}

/// The runtime is about to park, so no task is ready (a local set's ready tasks keep the
/// runtime's own future woken, and then it does not park): wake the driver if it waits for
/// that. The wake-up reaches it before the runtime blocks.
fn on_park() {
    TIMERS.with(|t| {
        let t = t.borrow();
        if let Some(w) = t.idle_waker.take() {
            t.idle.set(true);
            w.wake();
        }
    });
}

/// Starts a run's virtual time at 0 on this thread and spawns its driver on the current
/// runtime, which must be one [`runtime`] built.
pub fn start() {
    let fresh = Rc::new(Timers::default());
    TIMERS.with(|t| *t.borrow_mut() = fresh.clone());
    tokio::task::spawn_local(drive(fresh));
}

/// Nanoseconds of virtual time since the run started.
pub fn now_ns() -> u64 {
    TIMERS.with(|t| t.borrow().now_ns.get())
}

/// A future that completes when virtual time reaches `at_ns` and every actor is idle: a
/// deadline of now fires after everything due at this instant.
pub fn sleep_until(at_ns: u64) -> Sleep {
    Sleep { at_ns, entry: None }
}

pub struct Sleep {
    at_ns: u64,
    entry: Option<Rc<Entry>>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &self.entry {
            Some(e) if e.fired.get() => Poll::Ready(()),
            Some(e) => {
                // An actor polls its pending timers at every message it handles: keep the waker
                // unless it changed, rather than clone it each time.
                let mut w = e.waker.borrow_mut();
                if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *w = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            None => {
                let entry = Rc::new(Entry { waker: RefCell::new(Some(cx.waker().clone())), ..Entry::default() });
                let t = timers();
                let seq = t.seq.get();
                t.seq.set(seq + 1);
                let at_ns = self.at_ns.max(t.now_ns.get());
                t.heap.borrow_mut().push(Reverse(Due { at_ns, seq, entry: entry.clone() }));
                if let Some(w) = t.driver.take() {
                    w.wake();
                }
                self.entry = Some(entry);
                Poll::Pending
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(e) = &self.entry {
            e.cancelled.set(true);
        }
    }
}

/// Waits until the actors are idle, then moves time to the earliest live deadline and wakes
/// every timer due then, in the order they were set; forever (the run ends by dropping it).
async fn drive(t: Rc<Timers>) {
    loop {
        Idle(&t).await;
        let due = loop {
            let mut heap = t.heap.borrow_mut();
            match heap.peek() {
                Some(Reverse(d)) if d.entry.cancelled.get() => {
                    heap.pop();
                }
                Some(Reverse(d)) => break Some(d.at_ns),
                None => break None,
            }
        };
        let Some(at_ns) = due else {
            NoTimer(&t).await;
            continue;
        };
        t.now_ns.set(at_ns);
        loop {
            let next = {
                let mut heap = t.heap.borrow_mut();
                match heap.peek() {
                    Some(Reverse(d)) if d.at_ns == at_ns => heap.pop(),
                    _ => None,
                }
            };
            let Some(Reverse(d)) = next else { break };
            if !d.entry.cancelled.get() {
                d.entry.fired.set(true);
                if let Some(w) = d.entry.waker.take() {
                    w.wake();
                }
            }
        }
    }
}

/// Completes once no task is ready (the park hook says so).
struct Idle<'a>(&'a Timers);

impl Future for Idle<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.idle.replace(false) {
            return Poll::Ready(());
        }
        self.0.idle_waker.replace(Some(cx.waker().clone()));
        Poll::Pending
    }
}

/// Pending until a timer is set.
struct NoTimer<'a>(&'a Timers);

impl Future for NoTimer<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.heap.borrow().is_empty() {
            self.0.driver.replace(Some(cx.waker().clone()));
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        runtime().unwrap()
    }

    #[test]
    fn timers_fire_in_deadline_order_then_in_the_order_they_were_set() {
        let order = Rc::new(RefCell::new(Vec::new()));
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt(), async {
            start();
            let mut tasks = Vec::new();
            for (name, at) in [("c", 30), ("a", 10), ("b", 10), ("d", 0)] {
                let order = order.clone();
                tasks.push(tokio::task::spawn_local(async move {
                    sleep_until(at).await;
                    order.borrow_mut().push((name, now_ns()));
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
        assert_eq!(*order.borrow(), [("d", 0), ("a", 10), ("b", 10), ("c", 30)]);
    }

    #[test]
    fn a_timer_for_now_fires_after_the_work_already_ready() {
        let order = Rc::new(RefCell::new(Vec::new()));
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt(), async {
            start();
            let o = order.clone();
            let timer = tokio::task::spawn_local(async move {
                sleep_until(0).await;
                o.borrow_mut().push("timer");
            });
            // More ready tasks than a local set runs in one turn (61): between turns the
            // runtime checks its driver without parking, which is not idle.
            let work: Vec<_> = (0..200)
                .map(|_| {
                    let o = order.clone();
                    tokio::task::spawn_local(async move {
                        for _ in 0..3 {
                            tokio::task::yield_now().await;
                        }
                        o.borrow_mut().push("work");
                    })
                })
                .collect();
            timer.await.unwrap();
            for w in work {
                w.await.unwrap();
            }
        });
        let order = order.borrow();
        assert_eq!((order.len(), order.last()), (201, Some(&"timer")));
    }

    #[test]
    fn a_dropped_timer_does_not_move_time() {
        let local = tokio::task::LocalSet::new();
        let at = local.block_on(&rt(), async {
            start();
            let early = tokio::task::spawn_local(sleep_until(1_000));
            early.abort();
            let _ = early.await;
            sleep_until(5_000).await;
            let dropped = sleep_until(2_000_000);
            drop(dropped);
            sleep_until(6_000).await;
            now_ns()
        });
        assert_eq!(at, 6_000);
    }
}
