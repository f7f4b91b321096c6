//! Hangs and misconfigurations come with a diagnosis: a stall caused by a
//! guard leaked on an exited thread says so, tunables out of range are
//! refused with the range, and the engine's other reports (panicking
//! callbacks and notifiers) reach the event hook.

// Loom builds (`--cfg rcu_loom`) have no process-wide domain: only the
// library's models run there.
#![cfg(not(rcu_loom))]

mod common;

use common::eventually;
use rcu_core::{Config, ConfigError, RcuDomain, RcuEvent, StallWarning};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn collect(domain: &RcuDomain) -> Arc<Mutex<Vec<RcuEvent>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = Arc::clone(&events);
    domain.set_event_hook(move |ev| e.lock().unwrap().push(ev.clone()));
    events
}

/// A thread leaks a guard and exits: the stall warning names the thread as
/// exited with a leaked guard, and does not suggest a notifier.
#[test]
fn a_guard_leaked_on_an_exited_thread_is_named_in_the_stall_warning() {
    let domain = Arc::new(RcuDomain::with_config(
        Config::default()
            .stall_timeout(Duration::from_millis(50))
            .max_polls(u32::MAX),
    ));
    let events = collect(&domain);
    {
        let domain = Arc::clone(&domain);
        std::thread::Builder::new()
            .name("leaker".into())
            .spawn(move || {
                let reader = domain.register();
                std::mem::forget(reader.read_lock());
            })
            .unwrap()
            .join()
            .unwrap();
    }
    // This grace period can never end: its thread is left behind.
    let d = Arc::clone(&domain);
    std::thread::spawn(move || d.synchronize());
    let stall = || -> Option<StallWarning> {
        events.lock().unwrap().iter().find_map(|e| match e {
            RcuEvent::Stall(w) => Some(w.clone()),
            _ => None,
        })
    };
    assert!(eventually(|| stall().is_some()), "no stall warning");
    let w = stall().unwrap();
    assert!(w.owner_exited, "{w:?}");
    assert_eq!(w.thread_name.as_deref(), Some("leaker"));
    let text = w.to_string();
    assert!(text.contains("exited") && text.contains("leaked"), "{text}");
    assert!(!text.contains("notifier"), "{text}");
}

/// A reader that is merely slow (alive) is not reported as exited.
#[test]
fn a_live_stalling_reader_is_not_reported_as_exited() {
    let domain = Arc::new(RcuDomain::with_config(
        Config::default()
            .stall_timeout(Duration::from_millis(20))
            .max_polls(u32::MAX),
    ));
    let events = collect(&domain);
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let reader = {
        let domain = Arc::clone(&domain);
        std::thread::spawn(move || {
            let reader = domain.register();
            let guard = reader.read_lock();
            tx.send(()).unwrap();
            let _ = done_rx.recv();
            drop(guard);
        })
    };
    rx.recv().unwrap();
    let d = Arc::clone(&domain);
    let sync = std::thread::spawn(move || d.synchronize());
    assert!(eventually(|| !events.lock().unwrap().is_empty()));
    done_tx.send(()).unwrap();
    reader.join().unwrap();
    sync.join().unwrap();
    let events = events.lock().unwrap();
    let RcuEvent::Stall(w) = &events[0] else {
        panic!("{events:?}")
    };
    assert!(!w.owner_exited, "{w:?}");
    assert!(w.to_string().contains("notifier"));
}

fn invalid(config: Config) -> String {
    match RcuDomain::try_with_config(config) {
        Err(ConfigError::Invalid(why)) => why.to_string(),
        Err(e) => panic!("not Invalid: {e}"),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn tunables_out_of_range_are_refused_with_the_range() {
    let d = Config::default;
    assert!(invalid(d().poll_interval(Duration::from_secs(3600))).contains("1µs..=60s"));
    assert!(invalid(d().poll_interval(Duration::MAX)).contains("60s"));
    assert!(invalid(d().poll_interval(Duration::ZERO)).contains("poll_interval"));
    assert!(invalid(d().memory_limit(0)).contains("4096..="));
    assert!(invalid(d().memory_limit(4095)).contains("memory_limit"));
    assert!(invalid(d().callback_threshold(0)).contains("1..="));
    assert!(invalid(d().stall_timeout(Duration::ZERO)).contains("1ms"));
    assert!(invalid(d().membarrier(false).require_membarrier(true)).contains("require_membarrier"));
    // The bounds themselves, and the "never" values, are accepted.
    for ok in [
        d().poll_interval(Config::MAX_POLL_INTERVAL),
        d().poll_interval(Config::MIN_POLL_INTERVAL),
        d().memory_limit(Config::MIN_MEMORY_LIMIT),
        d().memory_limit(usize::MAX)
            .callback_threshold(usize::MAX)
            .max_polls(u32::MAX)
            .stall_timeout(Duration::MAX),
    ] {
        RcuDomain::try_with_config(ok).unwrap();
    }
    // with_config panics with the same message; configure returns it.
    let e = rcu_core::configure(d().memory_limit(0)).unwrap_err();
    assert!(e.to_string().contains("memory_limit"), "{e}");
}

#[test]
fn require_membarrier_matches_the_process() {
    let plain = RcuDomain::new();
    plain.synchronize();
    let available = plain.stats().membarrier;
    match RcuDomain::try_with_config(Config::default().require_membarrier(true)) {
        Ok(d) => {
            assert!(available);
            d.synchronize();
            assert!(d.stats().membarrier);
        }
        Err(ConfigError::MembarrierUnavailable(why)) => {
            assert!(!available, "{why}");
            if std::env::var_os("RCU_NO_MEMBARRIER").is_some() {
                assert!(why.contains("RCU_NO_MEMBARRIER"), "{why}");
            }
        }
        Err(e) => panic!("{e}"),
    }
}

/// Panicking callbacks and notifiers reach the event hook with their
/// message (they used to go to stderr only), and `set_stall_hook` still
/// works as a shim that sees only stalls.
#[test]
fn panics_reach_the_event_hook() {
    let domain = Arc::new(RcuDomain::new());
    let events = collect(&domain);
    domain.call_rcu(|| panic!("callback bomb"));
    domain.drain();
    assert!(
        eventually(|| events.lock().unwrap().iter().any(|e| matches!(
            e,
            RcuEvent::CallbackPanic { message: Some(m) } if m == "callback bomb"
        ))),
        "{:?}",
        events.lock().unwrap()
    );
    assert_eq!(domain.stats().callback_panics, 1);

    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let t = {
        let domain = Arc::clone(&domain);
        std::thread::spawn(move || {
            let reader = domain.register();
            let _n = reader.on_force_quiescent(|| panic!("notifier bomb {}", 7));
            let guard = reader.read_lock();
            tx.send(()).unwrap();
            let _ = done_rx.recv();
            drop(guard);
        })
    };
    rx.recv().unwrap();
    let d = Arc::clone(&domain);
    let sync = std::thread::spawn(move || d.synchronize_expedited());
    assert!(eventually(|| events.lock().unwrap().iter().any(
        |e| matches!(
            e,
            RcuEvent::NotifierPanic { message: Some(m) } if m == "notifier bomb 7"
        )
    )));
    done_tx.send(()).unwrap();
    t.join().unwrap();
    sync.join().unwrap();

    let stalls = Arc::new(Mutex::new(0));
    let s = Arc::clone(&stalls);
    domain.set_stall_hook(move |_| *s.lock().unwrap() += 1);
    domain.call_rcu(|| panic!("logged, not a stall"));
    domain.drain();
    assert_eq!(*stalls.lock().unwrap(), 0);
}
