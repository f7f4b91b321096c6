//! The barrier mode: membarrier where the kernel offers it, the fence
//! fallback otherwise or when `RCU_NO_MEMBARRIER=1`.

// Loom builds (`--cfg rcu_loom`) have no process-wide domain: only the
// library's models run there.
#![cfg(not(rcu_loom))]

use rcu_core::{Config, RcuDomain};

fn fallback_forced() -> bool {
    std::env::var_os("RCU_NO_MEMBARRIER").is_some_and(|v| v == "1")
}

#[test]
fn process_domain_reports_its_mode() {
    rcu_core::register_thread();
    let membarrier = rcu_core::stats().membarrier;
    if fallback_forced() || cfg!(miri) || !cfg!(target_os = "linux") {
        assert!(!membarrier);
    } else {
        // Every kernel this project runs on (Linux >= 4.14) offers
        // MEMBARRIER_CMD_PRIVATE_EXPEDITED; a sandbox that refuses it must
        // set RCU_NO_MEMBARRIER=1 to run this suite.
        assert!(
            membarrier,
            "membarrier unavailable: run with RCU_NO_MEMBARRIER=1"
        );
    }
}

#[test]
fn a_domain_can_opt_out_of_membarrier() {
    let domain = RcuDomain::with_config(Config::default().membarrier(false));
    let reader = domain.register();
    drop(reader.read_lock());
    domain.synchronize();
    assert!(!domain.stats().membarrier);
    let default = RcuDomain::new();
    default.synchronize();
    rcu_core::register_thread();
    assert_eq!(default.stats().membarrier, rcu_core::stats().membarrier);
}
