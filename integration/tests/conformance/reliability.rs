//! A foreground `run` never loses its container's exit.
//!
//! runtime.md#lifecycle step 8 and runc's `run`: the runtime waits for the container's process and
//! reports its exit. A runtime that installs its SIGCHLD handling after the child can already have
//! exited hangs now and then; another Rust runtime on libcontainer hangs in about 5% of such runs.
//! Here 1,000 runs of /bin/true, with both cores kept busy, must all finish with status 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use polis_integration::{Bundle, Runtime, try_run_command};

const RUNS: usize = 1000;

/// Keeps every core busy until dropped.
struct CpuLoad {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CpuLoad {
    fn start() -> CpuLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..cores)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        CpuLoad { stop, threads }
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn thousand_foreground_runs_under_load_never_hang() {
    let Some(rt) = Runtime::polis("thousand-runs") else {
        return;
    };
    let mut bundle = Bundle::new();
    bundle.args(&["/bin/true"]);
    bundle.write_config(Some("/polis-test/reliability"));
    let _load = CpuLoad::start();
    let started = Instant::now();
    let mut hangs = Vec::new();
    let mut failures = Vec::new();
    for i in 0..RUNS {
        let id = format!("reliability-{}-{i}", std::process::id());
        let mut cmd = rt.command(&["run", "--bundle"]);
        cmd.arg(bundle.path()).arg(&id);
        match try_run_command(cmd, &rt.scratch(), Duration::from_secs(20)) {
            Ok(out) if out.code == Some(0) => {}
            Ok(out) => failures.push(format!("{id}: {out}")),
            Err(out) => {
                hangs.push(id.clone());
                // Leave nothing behind from a hung run.
                let _ = try_run_command(
                    rt.command(&["delete", "--force", &id]),
                    &rt.scratch(),
                    Duration::from_secs(10),
                );
                failures.push(format!("{id} hung: {}", out.stderr));
            }
        }
        if (i + 1) % 250 == 0 {
            eprintln!("{} runs in {:?}", i + 1, started.elapsed());
        }
    }
    rt.assert_no_state();
    assert!(
        hangs.is_empty(),
        "{} of {RUNS} runs hung: {hangs:?}",
        hangs.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {RUNS} runs failed: {failures:#?}",
        failures.len()
    );
}
