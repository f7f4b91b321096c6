//! Adversarial tests for rcu-list (written by a reviewer to break it): each
//! asserts a concrete promise of the crate docs or the project's issue. 14
//! failed before their fixes, from seven faults:
//! - an element whose insertion had claimed it but not linked it yet was
//!   taken for a position in the list (a null dereference in release
//!   builds, from safe code);
//! - a panicking element drop in a `retain` batch leaked the rest of it;
//! - `Removed::into_inner` that panicked, or `into_inner_async` cancelled,
//!   leaked the element;
//! - two panicking drops in one `clear` aborted the process;
//! - a write to the list from its own `retain` closure deadlocked;
//! - writes under an owned guard on a domain over its memory limit waited
//!   1 ms each (an engine fault);
//! - a `retain` closure that waited for a grace period deadlocked with a
//!   writer that held a guard and waited for the list's lock.
//!
//! Some cases run in a child process of this binary (the ignored `child_*`
//! tests), so that a hang or an abort shows as a failure.

// Loom builds (`--cfg rcu_loom`) have no process-wide domain, and Miri runs
// no child processes.
#![cfg(not(any(rcu_loom, miri)))]

use rcu_core::{Config, Guard, RcuDomain};
use rcu_list::{ListLink, RcuList, RcuSList, Removed, SListLink, intrusive_adapter};
use static_assertions::{assert_impl_all, assert_not_impl_any};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Elements
// ---------------------------------------------------------------------------

const MAGIC: u64 = 0x5EED_CAFE_F00D_D00D;
const DEAD: u64 = 0xDEAD_DEAD_DEAD_DEAD;

#[derive(Default)]
struct Ctr {
    drops: AtomicUsize,
    /// Double drops, or drops of an element whose link is still claimed.
    bad: AtomicUsize,
}

impl Ctr {
    fn new() -> Arc<Self> {
        Arc::new(Ctr::default())
    }
    fn drops(&self) -> usize {
        self.drops.load(SeqCst)
    }
    fn bad(&self) -> usize {
        self.bad.load(SeqCst)
    }
}

struct E {
    val: u64,
    canary: AtomicU64,
    /// Drop panics when set.
    boom: bool,
    link: ListLink,
    slink: SListLink,
    ctr: Arc<Ctr>,
}

impl E {
    fn new(val: u64, ctr: &Arc<Ctr>) -> Self {
        E {
            val,
            canary: AtomicU64::new(MAGIC),
            boom: false,
            link: ListLink::new(),
            slink: SListLink::new(),
            ctr: Arc::clone(ctr),
        }
    }
    fn boxed(val: u64, ctr: &Arc<Ctr>) -> Box<Self> {
        Box::new(Self::new(val, ctr))
    }
    fn bomb(val: u64, ctr: &Arc<Ctr>) -> Box<Self> {
        let mut e = Self::new(val, ctr);
        e.boom = true;
        Box::new(e)
    }
    fn alive(&self) -> bool {
        self.canary.load(SeqCst) == MAGIC
    }
}

impl Drop for E {
    fn drop(&mut self) {
        if self.canary.swap(DEAD, SeqCst) != MAGIC
            || self.link.is_linked()
            || self.slink.is_linked()
        {
            self.ctr.bad.fetch_add(1, SeqCst);
        }
        self.ctr.drops.fetch_add(1, SeqCst);
        if self.boom {
            panic!("attack: element {} drop panics", self.val);
        }
    }
}

impl std::fmt::Debug for E {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.val)
    }
}

intrusive_adapter!(BoxL = Box<E>: E { link => ListLink });
intrusive_adapter!(BoxS = Box<E>: E { slink => SListLink });
intrusive_adapter!(ArcL = Arc<E>: E { link => ListLink });
intrusive_adapter!(ArcS = Arc<E>: E { slink => SListLink });
intrusive_adapter!(StaticS = &'static E: E { slink => SListLink });

struct CellE {
    _c: Cell<u32>,
    slink: SListLink,
}
intrusive_adapter!(CellS = Box<CellE>: CellE { slink => SListLink });

// Send/Sync as documented.
assert_impl_all!(RcuList<ArcL>: Send, Sync);
assert_impl_all!(RcuSList<StaticS>: Send, Sync);
assert_impl_all!(Removed<Arc<E>>: Send, Sync);
assert_impl_all!(Removed<&'static E>: Send, Sync);
assert_impl_all!(rcu_list::Iter<'static, BoxS>: Send, Sync, Clone);
assert_impl_all!(rcu_list::Iter<'static, BoxL>: std::iter::FusedIterator);
assert_impl_all!(RcuSList<CellS>: Send);
assert_not_impl_any!(RcuSList<CellS>: Sync);

fn vals<'g>(it: impl Iterator<Item = &'g E>) -> Vec<u64> {
    it.map(|e| e.val).collect()
}

/// xorshift64*.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as usize % n.max(1)
    }
}

/// Runs the `#[ignore]`d test `name` of this binary in a child process and
/// kills it after `timeout` (so a deadlock or an abort shows as a failure,
/// not a hang or a dead test binary). `Err(log)` on timeout.
fn run_child(name: &str, timeout: Duration) -> Result<(ExitStatus, String), String> {
    let log_path =
        std::env::temp_dir().join(format!("attack-child-{name}-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            name,
            "--exact",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = std::fs::read_to_string(&log_path).unwrap_or_default();
            let _ = std::fs::remove_file(&log_path);
            return Ok((status, out));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let out = std::fs::read_to_string(&log_path).unwrap_or_default();
            let _ = std::fs::remove_file(&log_path);
            return Err(out);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn expect_child_passes(name: &str, timeout: Duration) {
    match run_child(name, timeout) {
        Ok((status, out)) => {
            assert!(
                status.success() && out.contains("1 passed"),
                "child {name} failed ({status:?}):\n{out}"
            );
        }
        Err(out) => panic!("child {name} hung for {timeout:?} (deadlock):\n{out}"),
    }
}

// ---------------------------------------------------------------------------
// 1. Sequential API, doubly linked
// ---------------------------------------------------------------------------

#[test]
fn list_full_api_sequence_and_drop_accounting() {
    let domain = RcuDomain::new();
    let ctr = Ctr::new();
    let list = RcuList::<BoxL>::new_in(&domain);
    let reader = domain.register();
    assert!(list.is_empty());
    assert_eq!(list.len(), 0);
    {
        let g = reader.read_lock();
        assert!(list.front(&g).is_none() && list.back(&g).is_none());
        assert_eq!(list.iter(&g).count(), 0);
    }
    list.push_back(E::boxed(2, &ctr));
    list.push_front(E::boxed(1, &ctr));
    list.push_back(E::boxed(4, &ctr));
    let mut removed = 0;
    {
        let g = reader.read_lock();
        let two = list.iter(&g).find(|e| e.val == 2).unwrap();
        assert!(list.insert_after(two, E::boxed(3, &ctr)).is_ok());
        let one = list.front(&g).unwrap();
        assert!(list.insert_before(one, E::boxed(0, &ctr)).is_ok());
        let four = list.back(&g).unwrap();
        assert!(list.insert_after(four, E::boxed(5, &ctr)).is_ok());
        assert_eq!(vals(list.iter(&g)), [0, 1, 2, 3, 4, 5]);
        assert_eq!(list.len(), 6);
        assert_eq!(list.back(&g).unwrap().val, 5);
        assert!(list.contains(two));

        // replace at the front, middle and back
        let old = list
            .replace(list.front(&g).unwrap(), E::boxed(10, &ctr))
            .ok()
            .unwrap();
        assert_eq!(old.val, 0);
        assert!(!list.contains(&old));
        drop(old);
        removed += 1;
        let old = list.replace(two, E::boxed(20, &ctr)).ok().unwrap();
        assert_eq!(old.val, 2);
        drop(old);
        removed += 1;
        let old = list
            .replace(list.back(&g).unwrap(), E::boxed(50, &ctr))
            .ok()
            .unwrap();
        assert_eq!(old.val, 5);
        drop(old);
        removed += 1;
        assert_eq!(vals(list.iter(&g)), [10, 1, 20, 3, 4, 50]);
        assert_eq!(list.len(), 6);
        assert_eq!(list.back(&g).unwrap().val, 50);
        // positions that are removed (retiring) are refused
        assert!(!list.contains(two));
        let back = list.insert_after(two, E::boxed(99, &ctr)).unwrap_err();
        assert_eq!(back.val, 99);
        assert!(!back.link.is_linked());
        drop(back);
        removed += 1; // counted as a drop
        assert!(list.insert_before(two, E::boxed(98, &ctr)).is_err());
        removed += 1;
        assert!(list.replace(two, E::boxed(97, &ctr)).is_err());
        removed += 1;
        assert!(list.remove(two).is_none());
        assert_eq!(two.val, 2, "still readable under the guard");
    }
    assert_eq!(list.pop_front().unwrap().val, 10);
    assert_eq!(list.pop_back().unwrap().val, 50);
    removed += 2;
    {
        let g = reader.read_lock();
        let three = list.iter(&g).find(|e| e.val == 3).unwrap();
        assert_eq!(list.remove(three).unwrap().val, 3);
        removed += 1;
        assert_eq!(vals(list.iter(&g)), [1, 20, 4]);
        assert_eq!(list.front(&g).unwrap().val, 1);
        assert_eq!(list.back(&g).unwrap().val, 4);
    }
    assert_eq!(list.len(), 3);
    list.retain(|e| e.val != 20);
    removed += 1;
    assert_eq!(list.len(), 2);
    domain.drain();
    assert_eq!(ctr.drops(), removed);
    list.clear();
    assert!(list.is_empty());
    assert_eq!(list.len(), 0);
    {
        let g = reader.read_lock();
        assert!(list.front(&g).is_none() && list.back(&g).is_none());
    }
    assert!(list.pop_front().is_none() && list.pop_back().is_none());
    domain.drain();
    assert_eq!(ctr.drops(), removed + 2);
    // usable after clear, both ends
    list.push_back(E::boxed(7, &ctr));
    {
        let g = reader.read_lock();
        assert_eq!(list.front(&g).unwrap().val, 7);
        assert_eq!(list.back(&g).unwrap().val, 7);
    }
    assert_eq!(list.pop_back().unwrap().into_inner().val, 7);
    assert_eq!(ctr.drops(), removed + 3);
    assert_eq!(ctr.bad(), 0);
}

// ---------------------------------------------------------------------------
// 2. Sequential API, singly linked
// ---------------------------------------------------------------------------

#[test]
fn slist_full_api_sequence_and_drop_accounting() {
    let domain = RcuDomain::new();
    let ctr = Ctr::new();
    let list = RcuSList::<BoxS>::new_in(&domain);
    let reader = domain.register();
    assert!(list.is_empty());
    for v in [4, 2, 1] {
        list.push_front(E::boxed(v, &ctr));
    }
    let mut removed = 0;
    {
        let g = reader.read_lock();
        let two = list.iter(&g).find(|e| e.val == 2).unwrap();
        assert!(list.insert_after(two, E::boxed(3, &ctr)).is_ok());
        let four = list.iter(&g).find(|e| e.val == 4).unwrap();
        assert!(list.insert_after(four, E::boxed(5, &ctr)).is_ok());
        assert_eq!(vals(list.iter(&g)), [1, 2, 3, 4, 5]);
        assert_eq!(list.front(&g).unwrap().val, 1);
        // remove from the middle, the end, the front
        assert_eq!(list.remove(two).unwrap().val, 2);
        let five = list.iter(&g).find(|e| e.val == 5).unwrap();
        assert_eq!(list.remove(five).unwrap().val, 5);
        let one = list.front(&g).unwrap();
        assert_eq!(list.remove(one).unwrap().val, 1);
        removed += 3;
        assert_eq!(vals(list.iter(&g)), [3, 4]);
        // a retiring position is refused
        assert!(list.insert_after(two, E::boxed(99, &ctr)).is_err());
        removed += 1;
        assert!(list.remove(two).is_none());
        assert!(!list.contains(five));
        // insert after the (new) last element
        let four = list.iter(&g).find(|e| e.val == 4).unwrap();
        assert!(list.insert_after(four, E::boxed(6, &ctr)).is_ok());
        assert_eq!(vals(list.iter(&g)), [3, 4, 6]);
    }
    assert_eq!(list.pop_front().unwrap().val, 3);
    removed += 1;
    list.retain(|e| e.val == 6);
    removed += 1;
    {
        let g = reader.read_lock();
        assert_eq!(vals(list.iter(&g)), [6]);
    }
    domain.drain();
    assert_eq!(ctr.drops(), removed);
    list.clear();
    assert!(list.is_empty());
    assert!(list.pop_front().is_none());
    domain.drain();
    assert_eq!(ctr.drops(), removed + 1);
    list.push_front(E::boxed(8, &ctr));
    assert!(!list.is_empty());
    drop(list);
    assert_eq!(ctr.drops(), removed + 2);
    assert_eq!(ctr.bad(), 0);
}

// ---------------------------------------------------------------------------
// 3. Removed from A, pushed into B: refused until a grace period, then fine
// ---------------------------------------------------------------------------

#[test]
fn removed_element_moves_between_lists_only_after_grace_period() {
    let domain = RcuDomain::new();
    let ctr = Ctr::new();
    let a = RcuList::<ArcL>::new_in(&domain);
    let b = RcuList::<ArcL>::new_in(&domain);
    let sb = RcuSList::<ArcS>::new_in(&domain);
    let x = Arc::new(E::new(1, &ctr));
    let y = Arc::new(E::new(2, &ctr));
    a.push_back(x.clone());
    b.push_back(y.clone());
    let r = a.remove(&x).unwrap();
    // still claimed: B refuses it with a clear message, B is intact
    let err = catch_unwind(AssertUnwindSafe(|| b.push_back(x.clone()))).unwrap_err();
    let msg = panic_msg(&*err);
    assert!(
        msg.contains("already in a list"),
        "unclear message: {msg:?}"
    );
    assert!(catch_unwind(AssertUnwindSafe(|| b.insert_after(&y, x.clone()))).is_err());
    assert_eq!(b.len(), 1);
    assert!(b.contains(&y) && !b.contains(&x));
    // through its other link it may go into a singly linked list at once
    sb.push_front(x.clone());
    assert!(sb.contains(&x));
    let back = r.into_inner();
    assert!(Arc::ptr_eq(&back, &x));
    assert!(!x.link.is_linked());
    assert!(b.insert_before(&y, back).is_ok());
    let reader = domain.register();
    let g = reader.read_lock();
    assert_eq!(vals(b.iter(&g)), [1, 2]);
    assert_eq!(a.len(), 0);
    drop(g);
    // Arc counts: x, y held here; b holds both; sb holds x.
    assert_eq!(Arc::strong_count(&x), 3);
    b.clear();
    sb.clear();
    domain.drain();
    assert_eq!(Arc::strong_count(&x), 1);
    assert_eq!(Arc::strong_count(&y), 1);
    assert!(!x.link.is_linked() && !x.slink.is_linked() && !y.link.is_linked());
    drop((x, y));
    assert_eq!(ctr.drops(), 2);
    assert_eq!(ctr.bad(), 0);
}

// ---------------------------------------------------------------------------
// 4. A reader standing on removed / replaced elements walks on; nothing it
//    can reach is dropped while its guard lives
// ---------------------------------------------------------------------------

#[test]
fn reader_walks_on_through_removed_replaced_and_popped_elements() {
    let domain = RcuDomain::new();
    let ctr = Ctr::new();
    let list = RcuList::<BoxL>::new_in(&domain);
    for v in 0..6 {
        list.push_back(E::boxed(v, &ctr));
    }
    let reader = domain.register();
    let g = reader.read_lock();
    let mut it = list.iter(&g);
    assert_eq!(it.next().unwrap().val, 0);
    let one = it.next().unwrap();
    assert_eq!(one.val, 1);
    let find = |v| list.iter(&g).find(|e| e.val == v).unwrap();
    let two = find(2);
    let three = find(3);
    drop(list.remove(one));
    drop(list.remove(two));
    drop(list.replace(three, E::boxed(30, &ctr)).ok().unwrap());
    drop(list.pop_back()); // 5
    assert!(list.insert_after(find(0), E::boxed(100, &ctr)).is_ok());
    let rest: Vec<&E> = it.collect();
    assert!(rest.iter().all(|e| e.alive()));
    assert_eq!(vals(rest.into_iter()), [2, 3, 4]);
    assert_eq!(vals(list.iter(&g)), [0, 100, 30, 4]);
    assert_eq!(list.len(), 4);
    assert!(one.alive() && two.alive() && three.alive());

    // a drain on another thread must wait for our guard
    let done = Arc::new(AtomicBool::new(false));
    let drainer = {
        let (domain, done) = (domain.clone(), Arc::clone(&done));
        thread::spawn(move || {
            domain.drain();
            done.store(true, SeqCst);
        })
    };
    thread::sleep(Duration::from_millis(150));
    assert!(
        !done.load(SeqCst),
        "drain returned while a reader could reach the elements"
    );
    assert_eq!(ctr.drops(), 0, "element dropped under a live guard");
    assert!(one.alive() && two.alive() && three.alive());
    drop(g);
    drainer.join().unwrap();
    assert_eq!(ctr.drops(), 4);

    // singly linked
    let sl = RcuSList::<BoxS>::new_in(&domain);
    for v in (0..5).rev() {
        sl.push_front(E::boxed(v, &ctr));
    }
    let g = reader.read_lock();
    let mut it = sl.iter(&g);
    it.next();
    let one = it.next().unwrap();
    let two = sl.iter(&g).find(|e| e.val == 2).unwrap();
    drop(sl.remove(one));
    drop(sl.remove(two));
    drop(sl.pop_front());
    let three = sl.iter(&g).find(|e| e.val == 3).unwrap();
    assert!(sl.insert_after(three, E::boxed(33, &ctr)).is_ok());
    assert_eq!(vals(it), [2, 3, 33, 4]);
    assert_eq!(vals(sl.iter(&g)), [3, 33, 4]);
    assert_eq!(ctr.drops(), 4);
    drop(g);
    domain.drain();
    assert_eq!(ctr.drops(), 7);
    assert_eq!(ctr.bad(), 0);
}

// ---------------------------------------------------------------------------
// 5/6. A panicking element Drop in a retain batch must not leak the rest
// ---------------------------------------------------------------------------

#[test]
fn list_retain_batch_with_panicking_drop_does_not_leak_the_rest() {
    let domain = RcuDomain::new();
    let ctr = Ctr::new();
    let list = RcuList::<BoxL>::new_in(&domain);
    list.push_back(E::bomb(0, &ctr));
    for v in 1..5 {
        list.push_back(E::boxed(v, &ctr));
    }
    list.push_back(E::boxed(100, &ctr));
    list.retain(|e| e.val == 100); // removes 0..5 in one batch, 0 first
    assert_eq!(list.len(), 1);
    domain.drain();
    assert_eq!(
        ctr.drops(),
        5,
        "elements removed by retain after a panicking drop were leaked"
    );
    // and the writer side still works
    list.push_back(E::boxed(101, &ctr));
    assert_eq!(list.len(), 2);
    drop(list);
    assert_eq!(ctr.drops(), 7);
}

#[test]
fn slist_retain_batch_with_panicking_drop_does_not_leak_the_rest() {
    let domain = RcuDomain::new();
    let ctr = Ctr::new();
    let list = RcuSList::<ArcS>::new_in(&domain);
    let keep: Vec<Arc<E>> = (1..5).map(|v| Arc::new(E::new(v, &ctr))).collect();
    for e in keep.iter().rev() {
        list.push_front(e.clone());
    }
    list.push_front(Arc::from(E::bomb(0, &ctr)));
    list.retain(|_| false);
    assert!(list.is_empty());
    domain.drain();
    assert_eq!(ctr.drops(), 1, "only the bomb had its last Arc in the list");
    for e in &keep {
        assert_eq!(
            Arc::strong_count(e),
            1,
            "the list's Arc of {} was leaked",
            e.val
        );
        assert!(
            !e.slink.is_linked(),
            "element {} stays claimed forever",
            e.val
        );
    }
}

// ---------------------------------------------------------------------------
// 7/8. Removed handles that are abandoned on a panic or a cancellation
// ---------------------------------------------------------------------------

#[test]
fn into_inner_panicking_under_a_guard_does_not_leak_the_element() {
    let domain = RcuDomain::new();
    let ctr = Ctr::new();
    let list = RcuList::<ArcL>::new_in(&domain);
    let x = Arc::new(E::new(1, &ctr));
    list.push_back(x.clone());
    let r = list.pop_front().unwrap();
    let reader = domain.register();
    let g = reader.read_lock();
    // Documented: into_inner inside a critical section panics.
    assert!(catch_unwind(AssertUnwindSafe(|| r.into_inner())).is_err());
    drop(g);
    domain.drain();
    assert_eq!(Arc::strong_count(&x), 1, "the list's Arc was leaked");
    assert!(!x.link.is_linked(), "the element stays claimed forever");
    list.push_back(x.clone()); // would panic if still claimed
    assert_eq!(list.len(), 1);
}

#[test]
fn into_inner_async_cancelled_does_not_leak_the_element() {
    use std::future::Future;
    use std::task::{Context, Waker};
    let domain = RcuDomain::new();
    let ctr = Ctr::new();
    let list = RcuList::<ArcL>::new_in(&domain);
    let x = Arc::new(E::new(1, &ctr));
    list.push_back(x.clone());
    let r = list.pop_front().unwrap();
    // An owned guard holds the grace period back, so the future is pending.
    let og = domain.read_lock_owned();
    let mut fut = Box::pin(r.into_inner_async());
    let mut cx = Context::from_waker(Waker::noop());
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    drop(fut); // cancelled
    drop(og);
    domain.drain();
    assert_eq!(Arc::strong_count(&x), 1, "the list's Arc was leaked");
    assert!(!x.link.is_linked(), "the element stays claimed forever");
}

// ---------------------------------------------------------------------------
// 9/10. User code under the writer lock that writes the same list: must work
//       or panic, never deadlock (child process + timeout)
// ---------------------------------------------------------------------------

#[test]
fn list_retain_closure_writing_same_list_panics_clearly() {
    expect_child_passes("child_list_retain_writes_same_list", Duration::from_secs(5));
}

#[test]
fn slist_retain_closure_writing_same_list_panics_clearly() {
    expect_child_passes(
        "child_slist_retain_writes_same_list",
        Duration::from_secs(5),
    );
}

#[test]
#[ignore = "run as a child process by list_retain_closure_writing_same_list_panics_clearly"]
fn child_list_retain_writes_same_list() {
    let domain = RcuDomain::new();
    let ctr = Ctr::new();
    let list = RcuList::<BoxL>::new_in(&domain);
    for v in 0..3 {
        list.push_back(E::boxed(v, &ctr));
    }
    let r = catch_unwind(AssertUnwindSafe(|| {
        list.retain(|e| {
            if e.val == 1 {
                list.push_back(E::boxed(10, &ctr));
            }
            true
        })
    }));
    let reader = domain.register();
    let g = reader.read_lock();
    // A clear panic (before: a deadlock), and the list as it was.
    let e = r.expect_err("the write from the retain closure was accepted");
    let msg = panic_msg(&*e);
    assert!(
        msg.contains("from inside its own `retain` closure"),
        "{msg}"
    );
    assert_eq!(vals(list.iter(&g)), [0, 1, 2]);
    drop(g);
    list.push_back(E::boxed(20, &ctr)); // lock still usable
    assert!(list.len() >= 4);
}

#[test]
#[ignore = "run as a child process by slist_retain_closure_writing_same_list_panics_clearly"]
fn child_slist_retain_writes_same_list() {
    let domain = RcuDomain::new();
    let ctr = Ctr::new();
    let list = RcuSList::<BoxS>::new_in(&domain);
    for v in (0..3).rev() {
        list.push_front(E::boxed(v, &ctr));
    }
    let r = catch_unwind(AssertUnwindSafe(|| {
        list.retain(|e| {
            if e.val == 1 {
                list.push_front(E::boxed(10, &ctr));
            }
            true
        })
    }));
    let reader = domain.register();
    let g = reader.read_lock();
    // A clear panic (before: a deadlock), and the list as it was.
    let e = r.expect_err("the write from the retain closure was accepted");
    let msg = panic_msg(&*e);
    assert!(
        msg.contains("from inside its own `retain` closure"),
        "{msg}"
    );
    assert_eq!(vals(list.iter(&g)), [0, 1, 2]);
    drop(g);
    list.push_front(E::boxed(20, &ctr));
}

// ---------------------------------------------------------------------------
// 11. Two panicking element drops in one `clear` (reclaim callback)
// ---------------------------------------------------------------------------

#[test]
fn clear_with_two_panicking_drops_neither_aborts_nor_leaks() {
    expect_child_passes("child_clear_two_bombs", Duration::from_secs(8));
}

#[test]
#[ignore = "run as a child process by clear_with_two_panicking_drops_neither_aborts_nor_leaks"]
fn child_clear_two_bombs() {
    let domain = RcuDomain::new();
    let ctr = Ctr::new();
    let list = RcuList::<BoxL>::new_in(&domain);
    list.push_back(E::boxed(0, &ctr));
    list.push_back(E::bomb(1, &ctr));
    list.push_back(E::bomb(2, &ctr));
    list.push_back(E::boxed(3, &ctr));
    list.clear();
    domain.drain();
    assert_eq!(ctr.drops(), 4);
    list.push_back(E::boxed(4, &ctr));
    assert_eq!(list.len(), 1);
}

// ---------------------------------------------------------------------------
// 12/13. Writers never wait for a grace period: tiny memory limit, guard held
// ---------------------------------------------------------------------------

const CHURN_WRITES: usize = 3000;
const STALL_BOUND: Duration = Duration::from_millis(500);

fn churn_under_guard(domain: &RcuDomain, guard: &impl Guard, ctr: &Arc<Ctr>) -> Duration {
    let list = RcuList::<BoxL>::new_in(domain);
    let sl = RcuSList::<BoxS>::new_in(domain);
    list.push_back(E::boxed(u64::MAX, ctr));
    let first = list.front(guard).unwrap() as *const E;
    let t = Instant::now();
    for i in 0..CHURN_WRITES / 2 {
        list.push_back(E::boxed(i as u64, ctr));
        drop(list.pop_back().unwrap());
        sl.push_front(E::boxed(i as u64, ctr));
        drop(sl.pop_front().unwrap());
    }
    let elapsed = t.elapsed();
    // everything we reached under the guard is still alive
    assert!(std::ptr::eq(list.front(guard).unwrap(), first));
    assert_eq!(list.len(), 1);
    assert!(sl.is_empty());
    assert_eq!(ctr.drops(), 0, "dropped under a live guard");
    elapsed
    // `list` is dropped here, freeing its one element at once (documented).
}

#[test]
fn writes_under_a_thread_guard_with_tiny_memory_limit_do_not_stall() {
    let domain = RcuDomain::with_config(Config::default().memory_limit(4096));
    let ctr = Ctr::new();
    let reader = domain.register();
    let g = reader.read_lock();
    let elapsed = churn_under_guard(&domain, &g, &ctr);
    assert_eq!(ctr.drops(), 1, "only the dropped list's element");
    drop(g);
    domain.drain();
    assert_eq!(ctr.drops(), CHURN_WRITES + 1);
    assert!(
        elapsed < STALL_BOUND,
        "{CHURN_WRITES} writes took {elapsed:?}"
    );
}

#[test]
fn writes_under_an_owned_guard_with_tiny_memory_limit_do_not_stall() {
    let domain = RcuDomain::with_config(Config::default().memory_limit(4096));
    let ctr = Ctr::new();
    let og = domain.read_lock_owned();
    let elapsed = churn_under_guard(&domain, &og, &ctr);
    assert_eq!(ctr.drops(), 1, "only the dropped list's element");
    drop(og);
    domain.drain();
    assert_eq!(ctr.drops(), CHURN_WRITES + 1);
    assert!(
        elapsed < STALL_BOUND,
        "{CHURN_WRITES} writes took {elapsed:?}"
    );
}

// ---------------------------------------------------------------------------
// 14/15. Concurrent writers and readers: canaries, structure, accounting
// ---------------------------------------------------------------------------

struct Churn {
    created: AtomicUsize,
    removed: AtomicUsize,
    rejected: AtomicUsize,
    reads: AtomicUsize,
    bad_reads: AtomicUsize,
    stop: AtomicBool,
}

impl Churn {
    fn new() -> Self {
        Churn {
            created: AtomicUsize::new(0),
            removed: AtomicUsize::new(0),
            rejected: AtomicUsize::new(0),
            reads: AtomicUsize::new(0),
            bad_reads: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        }
    }
    fn mk(&self, ctr: &Arc<Ctr>) -> Box<E> {
        let v = self.created.fetch_add(1, SeqCst) as u64;
        E::boxed(v, ctr)
    }
    fn check(&self, e: &E) {
        if !e.alive() {
            self.bad_reads.fetch_add(1, SeqCst);
        }
    }
}

const CHURN_TIME: Duration = Duration::from_millis(800);

#[test]
fn list_concurrent_writers_and_readers_keep_structure_and_accounting() {
    let domain = RcuDomain::new();
    let ctr = Ctr::new();
    let list = RcuList::<BoxL>::new_in(&domain);
    let c = Churn::new();
    for _ in 0..16 {
        list.push_back(c.mk(&ctr));
    }
    thread::scope(|s| {
        s.spawn(|| {
            let r = domain.register();
            while !c.stop.load(SeqCst) {
                let g = r.read_lock();
                for (n, e) in list.iter(&g).enumerate() {
                    c.check(e);
                    if n % 8 == 7 {
                        thread::yield_now();
                    }
                }
                if let Some(e) = list.back(&g) {
                    c.check(e);
                }
                c.reads.fetch_add(1, SeqCst);
            }
        });
        for w in 0..2u64 {
            let (list, c, ctr, domain) = (&list, &c, &ctr, &domain);
            s.spawn(move || {
                let r = domain.register();
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w + 1));
                while !c.stop.load(SeqCst) {
                    let g = r.read_lock();
                    let len = list.len();
                    let op = if len > 48 {
                        4 + (w as usize % 4)
                    } else {
                        rng.below(10)
                    };
                    let pos_e = list.iter(&g).nth(rng.below(len + 1));
                    match op {
                        0 => list.push_front(c.mk(ctr)),
                        1 => list.push_back(c.mk(ctr)),
                        2 | 3 => {
                            let Some(p) = pos_e else { continue };
                            c.check(p);
                            let res = if op == 2 {
                                list.insert_after(p, c.mk(ctr))
                            } else {
                                list.insert_before(p, c.mk(ctr))
                            };
                            if let Err(b) = res {
                                assert!(!b.link.is_linked());
                                drop(b);
                                c.rejected.fetch_add(1, SeqCst);
                            }
                        }
                        4 => {
                            let Some(p) = pos_e else { continue };
                            if let Some(rm) = list.remove(p) {
                                assert_eq!(rm.val, p.val);
                                c.removed.fetch_add(1, SeqCst);
                            }
                        }
                        5 => {
                            let Some(p) = pos_e else { continue };
                            match list.replace(p, c.mk(ctr)) {
                                Ok(rm) => {
                                    assert_eq!(rm.val, p.val);
                                    c.removed.fetch_add(1, SeqCst);
                                }
                                Err(b) => {
                                    drop(b);
                                    c.rejected.fetch_add(1, SeqCst);
                                }
                            }
                        }
                        6 => {
                            if list.pop_front().is_some() {
                                c.removed.fetch_add(1, SeqCst);
                            }
                        }
                        7 => {
                            if list.pop_back().is_some() {
                                c.removed.fetch_add(1, SeqCst);
                            }
                        }
                        8 => {
                            let m = rng.below(11) as u64;
                            let mut n = 0;
                            list.retain(|e| {
                                let keep = e.val % 11 != m;
                                n += usize::from(!keep);
                                keep
                            });
                            c.removed.fetch_add(n, SeqCst);
                        }
                        _ => {
                            // writer reads too, under the same guard
                            for e in list.iter(&g) {
                                c.check(e);
                            }
                        }
                    }
                }
            });
        }
        thread::sleep(CHURN_TIME);
        c.stop.store(true, SeqCst);
    });
    assert_eq!(
        c.bad_reads.load(SeqCst),
        0,
        "a reader saw a dropped element"
    );
    assert!(c.reads.load(SeqCst) > 0);
    assert!(
        c.removed.load(SeqCst) > 100,
        "too little churn to mean anything"
    );
    domain.drain();
    let created = c.created.load(SeqCst);
    let gone = c.removed.load(SeqCst) + c.rejected.load(SeqCst);
    assert_eq!(ctr.drops(), gone, "drops != removed + rejected");
    assert_eq!(
        created - ctr.drops(),
        list.len(),
        "len disagrees with accounting"
    );
    // forward order (next links) vs backward order (prev links via pop_back)
    let reader = domain.register();
    let fwd = {
        let g = reader.read_lock();
        vals(list.iter(&g))
    };
    assert_eq!(fwd.len(), list.len());
    let mut bwd = Vec::new();
    while let Some(r) = list.pop_back() {
        bwd.push(r.val);
    }
    bwd.reverse();
    assert_eq!(fwd, bwd, "prev links disagree with next links");
    domain.drain();
    assert_eq!(ctr.drops(), created);
    assert_eq!(ctr.bad(), 0, "double drop or drop of a claimed element");
}

#[test]
fn slist_concurrent_writers_and_readers_keep_structure_and_accounting() {
    let domain = RcuDomain::new();
    let ctr = Ctr::new();
    let list = RcuSList::<BoxS>::new_in(&domain);
    let c = Churn::new();
    for _ in 0..16 {
        list.push_front(c.mk(&ctr));
    }
    let len = AtomicUsize::new(16); // maintained by the writers
    thread::scope(|s| {
        s.spawn(|| {
            let r = domain.register();
            while !c.stop.load(SeqCst) {
                let g = r.read_lock();
                for (n, e) in list.iter(&g).enumerate() {
                    c.check(e);
                    if n % 8 == 7 {
                        thread::yield_now();
                    }
                }
                c.reads.fetch_add(1, SeqCst);
            }
        });
        for w in 0..2u64 {
            let (list, c, ctr, domain, len) = (&list, &c, &ctr, &domain, &len);
            s.spawn(move || {
                let r = domain.register();
                let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ (w + 1));
                while !c.stop.load(SeqCst) {
                    let g = r.read_lock();
                    // the counter may be transiently "negative" (wrapped):
                    // writers update it after their operation
                    let l = len.load(SeqCst).min(64);
                    let op = if l > 48 {
                        3 + (w as usize % 2)
                    } else {
                        rng.below(6)
                    };
                    let pos_e = list.iter(&g).nth(rng.below(l + 1));
                    match op {
                        0 => {
                            list.push_front(c.mk(ctr));
                            len.fetch_add(1, SeqCst);
                        }
                        1 | 2 => {
                            let Some(p) = pos_e else { continue };
                            c.check(p);
                            match list.insert_after(p, c.mk(ctr)) {
                                Ok(()) => {
                                    len.fetch_add(1, SeqCst);
                                }
                                Err(b) => {
                                    drop(b);
                                    c.rejected.fetch_add(1, SeqCst);
                                }
                            }
                        }
                        3 => {
                            let Some(p) = pos_e else { continue };
                            if let Some(rm) = list.remove(p) {
                                assert_eq!(rm.val, p.val);
                                len.fetch_sub(1, SeqCst);
                                c.removed.fetch_add(1, SeqCst);
                            }
                        }
                        4 => {
                            if list.pop_front().is_some() {
                                len.fetch_sub(1, SeqCst);
                                c.removed.fetch_add(1, SeqCst);
                            }
                        }
                        _ => {
                            let m = rng.below(13) as u64;
                            let mut n = 0;
                            list.retain(|e| {
                                let keep = e.val % 13 != m;
                                n += usize::from(!keep);
                                keep
                            });
                            len.fetch_sub(n, SeqCst);
                            c.removed.fetch_add(n, SeqCst);
                        }
                    }
                }
            });
        }
        thread::sleep(CHURN_TIME);
        c.stop.store(true, SeqCst);
    });
    assert_eq!(
        c.bad_reads.load(SeqCst),
        0,
        "a reader saw a dropped element"
    );
    assert!(c.reads.load(SeqCst) > 0);
    assert!(
        c.removed.load(SeqCst) > 100,
        "too little churn to mean anything"
    );
    domain.drain();
    let created = c.created.load(SeqCst);
    let gone = c.removed.load(SeqCst) + c.rejected.load(SeqCst);
    assert_eq!(ctr.drops(), gone);
    let reader = domain.register();
    let n = list.iter(&reader.read_lock()).count();
    assert_eq!(n, len.load(SeqCst));
    assert_eq!(created - ctr.drops(), n);
    // values are unique: no element linked twice
    let mut v = vals(list.iter(&reader.read_lock()));
    v.sort_unstable();
    v.dedup();
    assert_eq!(v.len(), n);
    list.clear();
    domain.drain();
    assert_eq!(ctr.drops(), created);
    assert_eq!(ctr.bad(), 0);
}

// ---------------------------------------------------------------------------
// 16. Debug, fused iterators, Extend / FromIterator
// ---------------------------------------------------------------------------

#[test]
fn debug_fused_iter_extend_and_from_iter() {
    let ctr = Ctr::new();
    let mut list: RcuList<BoxL> = (1..=3).map(|v| E::boxed(v, &ctr)).collect();
    assert!(list.domain().is_global());
    list.extend([E::boxed(4, &ctr), E::boxed(5, &ctr)]);
    assert_eq!(format!("{list:?}"), "[1, 2, 3, 4, 5]");
    assert_eq!(list.len(), 5);
    let removed = list.pop_front().unwrap();
    assert_eq!(format!("{removed:?}"), "Removed(1)");
    assert_eq!(
        format!("{:?}", removed.link),
        "ListLink { linked: true, .. }"
    );
    let one = removed.into_inner();
    assert_eq!(format!("{:?}", one.link), "ListLink { linked: false, .. }");
    {
        let g = rcu_core::read_lock();
        let mut it = list.iter(&g);
        assert_eq!(it.by_ref().count(), 4);
        // fused: an exhausted iterator stays exhausted after new pushes
        list.push_back(one);
        assert!(it.next().is_none());
        assert!(it.next().is_none());
        // a clone continues independently
        let mut it = list.iter(&g);
        it.next();
        let c = it.clone();
        assert_eq!(vals(it), [3, 4, 5, 1]);
        assert_eq!(vals(c), [3, 4, 5, 1]);
    }
    let sl = RcuSList::<BoxS>::new();
    assert_eq!(format!("{sl:?}"), "[]");
    sl.push_front(E::boxed(9, &ctr));
    sl.push_front(E::boxed(8, &ctr));
    assert_eq!(format!("{sl:?}"), "[8, 9]");
    drop(sl);
    drop(list);
    assert_eq!(ctr.drops(), 7);
    assert_eq!(ctr.bad(), 0);
}

// ---------------------------------------------------------------------------
// 17. Element Drop that writes the same list (reclaim callbacks / helpers)
// ---------------------------------------------------------------------------

struct R {
    val: u64,
    respawn: bool,
    link: ListLink,
}
intrusive_adapter!(RL = Box<R>: R { link => ListLink });
static HOME: OnceLock<&'static RcuList<RL>> = OnceLock::new();
static R_DROPS: AtomicUsize = AtomicUsize::new(0);

impl Drop for R {
    fn drop(&mut self) {
        R_DROPS.fetch_add(1, SeqCst);
        if self.respawn {
            let home = HOME.get().unwrap();
            home.push_back(Box::new(R {
                val: self.val + 1000,
                respawn: false,
                link: ListLink::new(),
            }));
            // and remove something else while at it
            drop(home.pop_front());
        }
    }
}

#[test]
fn element_drop_that_writes_the_same_list_works() {
    let domain = RcuDomain::with_config(Config::default().memory_limit(4096));
    let list: &'static RcuList<RL> = Box::leak(Box::new(RcuList::new_in(&domain)));
    HOME.set(list).ok().unwrap();
    let mk = |val, respawn| {
        Box::new(R {
            val,
            respawn,
            link: ListLink::new(),
        })
    };
    // filler the drops pop from the front
    for v in 0..200 {
        list.push_back(mk(v, false));
    }
    for v in 0..100 {
        list.push_back(mk(500 + v, true));
    }
    // every removal of a respawning element pushes one and pops one
    let done = Arc::new(AtomicBool::new(false));
    let d2 = Arc::clone(&done);
    let dom2 = domain.clone();
    let h = thread::spawn(move || {
        for _ in 0..50 {
            drop(list.pop_back()); // respawning ones
        }
        list.retain(|r| !(r.respawn && r.val % 2 == 0)); // 25 more
        dom2.drain();
        d2.store(true, SeqCst);
    });
    let t = Instant::now();
    while !done.load(SeqCst) {
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "deadlock in element drop"
        );
        thread::sleep(Duration::from_millis(10));
    }
    h.join().unwrap();
    domain.drain();
    domain.drain();
    // 75 respawning dropped, each pushed one and popped one filler (popped
    // fillers dropped too): len unchanged except for the 75 removals.
    assert_eq!(list.len(), 300 - 75);
    let reader = domain.register();
    let g = reader.read_lock();
    let respawned = list.iter(&g).filter(|r| r.val >= 1500).count();
    assert_eq!(respawned, 75);
    assert_eq!(list.iter(&g).filter(|r| r.val < 200).count(), 200 - 75);
    drop(g);
    assert_eq!(R_DROPS.load(SeqCst), 150);
}

// ---------------------------------------------------------------------------
// 18. Lists and Removed handles cross threads as documented
// ---------------------------------------------------------------------------

#[test]
fn lists_and_removed_handles_cross_threads() {
    let domain = RcuDomain::new();
    let ctr = Ctr::new();
    let list = RcuSList::<BoxS>::new_in(&domain);
    list.push_front(E::boxed(1, &ctr));
    list.push_front(E::boxed(2, &ctr));
    let removed = list.pop_front().unwrap();
    // the handle is read and dropped on another thread, the list moved there
    let (list, dropped_on) = thread::spawn(move || {
        assert_eq!(removed.val, 2);
        drop(removed);
        (list, thread::current().id())
    })
    .join()
    .unwrap();
    assert_ne!(dropped_on, thread::current().id());
    domain.drain();
    assert_eq!(ctr.drops(), 1);
    let og = domain.read_lock_owned();
    let list = Arc::new(list);
    let l2 = Arc::clone(&list);
    let seen = thread::spawn(move || vals(l2.iter(&og))).join().unwrap();
    assert_eq!(seen, [1]);
    drop(list);
    assert_eq!(ctr.drops(), 2);
}

// ---------------------------------------------------------------------------
// 19. A position is "linked in this list" only once it is published: an
//     element whose link is merely claimed (by the insertion in progress)
//     must be refused as a position.
// ---------------------------------------------------------------------------

fn panic_msg(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| e.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[test]
fn inserting_an_unlinked_element_relative_to_itself_is_refused() {
    let domain = RcuDomain::new();
    let ctr = Ctr::new();
    let reader = domain.register();
    let mut anomalies = Vec::new();

    // doubly linked: the list holds `first`; `x` is in no list
    type Op = fn(&RcuList<ArcL>, &Arc<E>) -> Result<(), Arc<E>>;
    let ops: [(&str, Op); 3] = [
        ("insert_after", |l, x| l.insert_after(x, x.clone())),
        ("insert_before", |l, x| l.insert_before(x, x.clone())),
        ("replace", |l, x| l.replace(x, x.clone()).map(drop)),
    ];
    for (name, op) in ops {
        let list = RcuList::<ArcL>::new_in(&domain);
        list.push_back(Arc::new(E::new(0, &ctr)));
        let x = Arc::new(E::new(1, &ctr));
        match catch_unwind(AssertUnwindSafe(|| op(&list, &x))) {
            Ok(Err(back)) if Arc::ptr_eq(&back, &x) => {}
            Ok(Err(_)) => anomalies.push(format!("RcuList::{name}: gave back another pointer")),
            Ok(Ok(())) => anomalies.push(format!(
                "RcuList::{name}(&x, x) returned Ok for an unlinked position"
            )),
            Err(p) => anomalies.push(format!(
                "RcuList::{name}(&x, x) panicked: {:?}",
                panic_msg(&*p)
            )),
        }
        let g = reader.read_lock();
        let seen = vals(list.iter(&g));
        if seen != [0] || list.len() != 1 {
            anomalies.push(format!(
                "RcuList::{name}: list became {seen:?} (len {})",
                list.len()
            ));
        }
        drop(g);
        if x.link.is_linked() {
            anomalies.push(format!("RcuList::{name}: x stays claimed"));
        }
    }

    // singly linked
    let sl = RcuSList::<ArcS>::new_in(&domain);
    sl.push_front(Arc::new(E::new(0, &ctr)));
    let x = Arc::new(E::new(1, &ctr));
    match catch_unwind(AssertUnwindSafe(|| sl.insert_after(&x, x.clone()))) {
        Ok(Err(back)) if Arc::ptr_eq(&back, &x) => {}
        Ok(Err(_)) => anomalies.push("RcuSList::insert_after: gave back another pointer".into()),
        Ok(Ok(())) => anomalies
            .push("RcuSList::insert_after(&x, x) returned Ok for an unlinked position".into()),
        Err(p) => anomalies.push(format!(
            "RcuSList::insert_after(&x, x) panicked: {:?}",
            panic_msg(&*p)
        )),
    }
    let g = reader.read_lock();
    let seen = vals(sl.iter(&g));
    if seen != [0] {
        anomalies.push(format!("RcuSList: list became {seen:?}"));
    }
    drop(g);
    if x.slink.is_linked() {
        anomalies.push(format!(
            "RcuSList: x stays claimed (contains = {}, strong_count = {})",
            sl.contains(&x),
            Arc::strong_count(&x)
        ));
    }
    assert!(anomalies.is_empty(), "{anomalies:#?}");
}

/// One trial: writer C waits for the lock (held by a `retain` closure)
/// and then operates on `x` as a position, while writer B, queued after C,
/// pushes `x`. When C gets the lock first, `x` is claimed but not linked:
/// C must see it as "not in this list" (None / Err), nothing else.
fn pending_push_trial<L: Sync>(
    list: &L,
    x: &Arc<E>,
    hold: impl Fn(&L, &dyn Fn()) + Sync,
    push: impl Fn(&L, Arc<E>) + Sync,
    c_op: impl Fn(&L, &Arc<E>) -> Result<String, String> + Sync,
) -> Option<String> {
    let locked = AtomicBool::new(false);
    let release = AtomicBool::new(false);
    thread::scope(|s| {
        let a = s.spawn(|| {
            hold(list, &|| {
                locked.store(true, SeqCst);
                while !release.load(SeqCst) {
                    thread::sleep(Duration::from_micros(200));
                }
            })
        });
        while !locked.load(SeqCst) {
            thread::yield_now();
        }
        let c = s.spawn(|| catch_unwind(AssertUnwindSafe(|| c_op(list, x))));
        thread::sleep(Duration::from_millis(5)); // C now waits for the lock
        let b = s.spawn(|| push(list, x.clone()));
        let t = Instant::now();
        while !x.link.is_linked() && !x.slink.is_linked() {
            assert!(t.elapsed() < Duration::from_secs(2));
            thread::yield_now();
        }
        thread::sleep(Duration::from_millis(2)); // B now waits for the lock
        release.store(true, SeqCst);
        a.join().unwrap();
        b.join().unwrap();
        match c.join().unwrap() {
            Ok(Ok(_)) => None,
            Ok(Err(anomaly)) => Some(anomaly),
            Err(p) => Some(format!("C panicked: {:?}", panic_msg(&*p))),
        }
    })
}

#[test]
fn list_element_with_a_pending_push_is_not_a_valid_position() {
    let domain = RcuDomain::new();
    let ctr = Ctr::new();
    let mut anomalies = Vec::new();
    for trial in 0..20 {
        let list = RcuList::<ArcL>::new_in(&domain);
        list.push_back(Arc::new(E::new(0, &ctr)));
        let x = Arc::new(E::new(1, &ctr));
        let y = Arc::new(E::new(2, &ctr));
        let by_remove = trial % 2 == 0;
        let r = pending_push_trial(
            &list,
            &x,
            |l, f| {
                l.retain(|_| {
                    f();
                    true
                })
            },
            |l, x| l.push_back(x),
            |l, x| {
                if by_remove {
                    match l.remove(x) {
                        None => Ok("none".into()),
                        Some(r) if r.val == 1 => Ok("x".into()),
                        Some(r) => Err(format!("remove(&x) removed element {} instead", r.val)),
                    }
                } else {
                    match l.insert_after(x, y.clone()) {
                        Err(_) => Ok("refused".into()),
                        Ok(()) => {
                            let g = domain.read_lock_owned();
                            let v = vals(l.iter(&g));
                            // y must follow x once B has pushed x
                            drop(g);
                            Ok(format!("{v:?}"))
                        }
                    }
                }
            },
        );
        if let Some(a) = r {
            anomalies.push(format!("trial {trial}: {a}"));
        }
        let g = domain.read_lock_owned();
        let v = vals(list.iter(&g));
        drop(g);
        if !by_remove && y.link.is_linked() && v.windows(2).all(|w| w != [1, 2]) {
            anomalies.push(format!(
                "trial {trial}: insert_after(&x, y) put y elsewhere: {v:?}"
            ));
        }
        if anomalies.len() >= 3 {
            break;
        }
    }
    assert!(anomalies.is_empty(), "{anomalies:#?}");
}

#[test]
fn slist_element_with_a_pending_push_is_not_a_valid_position() {
    let domain = RcuDomain::new();
    let ctr = Ctr::new();
    let mut anomalies = Vec::new();
    for trial in 0..30 {
        let list = RcuSList::<ArcS>::new_in(&domain);
        list.push_front(Arc::new(E::new(0, &ctr)));
        let x = Arc::new(E::new(1, &ctr));
        let y = Arc::new(E::new(2, &ctr));
        let by_remove = trial % 2 == 0;
        let inserted = AtomicBool::new(false);
        let r = pending_push_trial(
            &list,
            &x,
            |l, f| {
                l.retain(|_| {
                    f();
                    true
                })
            },
            |l, x| l.push_front(x),
            |l, x| {
                if by_remove {
                    match l.remove(x) {
                        None => Ok("none".into()),
                        Some(r) if r.val == 1 => Ok("x".into()),
                        Some(r) => Err(format!("remove(&x) removed element {} instead", r.val)),
                    }
                } else {
                    match l.insert_after(x, y.clone()) {
                        Err(_) => Ok("refused".into()),
                        Ok(()) => {
                            inserted.store(true, SeqCst);
                            Ok("inserted".into())
                        }
                    }
                }
            },
        );
        if let Some(a) = r {
            anomalies.push(format!("trial {trial}: {a}"));
        }
        let g = domain.read_lock_owned();
        let v = vals(list.iter(&g));
        drop(g);
        if inserted.load(SeqCst) && !v.contains(&2) {
            anomalies.push(format!(
                "trial {trial}: insert_after(&x, y) returned Ok but y is not in the list {v:?} \
                 (y claimed: {}, strong_count {})",
                y.slink.is_linked(),
                Arc::strong_count(&y)
            ));
        }
    }
    assert!(anomalies.is_empty(), "{anomalies:#?}");
}

/// The same misuse on an empty list: in a release build `find` hands back
/// the null head and `insert_after` dereferences it (run in a child so a
/// crash shows as a failure).
#[test]
fn inserting_relative_to_itself_on_an_empty_list_is_refused() {
    expect_child_passes(
        "child_insert_relative_to_itself_on_empty_list",
        Duration::from_secs(5),
    );
}

#[test]
#[ignore = "run as a child process by inserting_relative_to_itself_on_an_empty_list_is_refused"]
fn child_insert_relative_to_itself_on_empty_list() {
    let ctr = Ctr::new();
    let list = RcuList::<ArcL>::new_in(&RcuDomain::new());
    let x = Arc::new(E::new(1, &ctr));
    let back = list.insert_after(&x, x.clone()).unwrap_err();
    assert!(Arc::ptr_eq(&back, &x));
    assert!(list.is_empty() && !x.link.is_linked());
}

/// A `retain` closure that waits for a grace period of the list's domain
/// (here `Removed::into_inner`), while another thread inside a critical
/// section waits for the list's lock (a write under a guard, which the lists
/// allow): the grace period waits for that reader, the reader for the lock,
/// the lock for the grace period. The closure runs inside a critical
/// section, so its wait panics at once; the other writer then goes on, and
/// the element whose `into_inner` panicked is still retired.
fn retain_waiting_for_a_grace_period_panics(slist: bool) {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let domain = RcuDomain::new();
        let ctr = Ctr::new();
        let list = Arc::new(RcuList::<BoxL>::new_in(&domain));
        let slist_ = Arc::new(RcuSList::<BoxS>::new_in(&domain));
        for v in 0..4 {
            list.push_back(E::boxed(v, &ctr));
            slist_.push_front(E::boxed(v, &ctr));
        }
        let mut held = Some(if slist {
            slist_.pop_front().unwrap()
        } else {
            list.pop_front().unwrap()
        });
        let (in_keep_tx, in_keep_rx) = mpsc::channel::<()>();
        let writer = {
            let (domain, list, slist_, ctr) = (
                domain.clone(),
                Arc::clone(&list),
                Arc::clone(&slist_),
                Arc::clone(&ctr),
            );
            thread::spawn(move || {
                let reader = domain.register();
                let _guard = reader.read_lock();
                in_keep_rx.recv().unwrap();
                // Inside the critical section: waits for `retain`'s lock.
                if slist {
                    slist_.push_front(E::boxed(10, &ctr));
                } else {
                    list.push_back(E::boxed(10, &ctr));
                }
            })
        };
        let keep = |e: &E| {
            if let Some(h) = held.take() {
                in_keep_tx.send(()).unwrap();
                thread::sleep(Duration::from_millis(50)); // the writer reaches the lock
                drop(h.into_inner());
            }
            e.val != 2
        };
        let r = catch_unwind(AssertUnwindSafe(|| {
            if slist {
                slist_.retain(keep);
            } else {
                list.retain(keep);
            }
        }));
        writer.join().unwrap();
        let guard = domain.read_lock_local();
        let vals = if slist {
            vals(slist_.iter(&guard))
        } else {
            vals(list.iter(&guard))
        };
        drop(guard);
        drop((list, slist_));
        domain.drain();
        tx.send((r.is_err(), vals, ctr.drops(), ctr.bad())).unwrap();
    });
    let (panicked, vals, drops, bad) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("retain's closure and a writer under a guard deadlocked");
    assert!(
        panicked,
        "the wait for a grace period inside `retain` did not panic"
    );
    // The panic came before anything was removed; the other writer's element
    // is in; every element (9 made) dropped once after the lists went.
    let want: Vec<u64> = if slist {
        vec![10, 2, 1, 0]
    } else {
        vec![1, 2, 3, 10]
    };
    assert_eq!((vals, drops, bad), (want, 9, 0));
}

#[test]
fn list_retain_waiting_for_a_grace_period_panics_rather_than_deadlocks() {
    retain_waiting_for_a_grace_period_panics(false);
}

#[test]
fn slist_retain_waiting_for_a_grace_period_panics_rather_than_deadlocks() {
    retain_waiting_for_a_grace_period_panics(true);
}
