//! A small thread pool for the CPU matmuls of decoding, where one job is only tens of
//! microseconds of work: waking a parked thread (a futex round trip, as rayon does after its
//! workers go idle) costs as much as the job. Workers spin briefly on a generation counter before
//! parking, so back-to-back jobs of one forward pass start without a syscall (llama.cpp's CPU
//! backend keeps its threads hot the same way).

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long an idle worker spins before parking.
const SPIN: Duration = Duration::from_micros(200);

type Job = dyn Fn(usize) + Sync;

struct Shared {
    /// Bumped for each job; workers run the job once per generation.
    generation: AtomicU64,
    /// The current job: set by `run` before it bumps `generation`, cleared after every worker is done.
    job: UnsafeCell<Option<&'static Job>>,
    parts: AtomicUsize,
    next_part: AtomicUsize,
    /// Workers that have finished the current job.
    done: AtomicUsize,
    park: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the thread inside `run`, before publishing a new generation
// with Release ordering, and read by workers after observing it with Acquire; `run` does not
// return (ending the borrow) until every worker has reported done.
unsafe impl Sync for Shared {}

pub struct Pool {
    shared: Arc<Shared>,
    workers: usize,
    /// One job at a time (the pool is shared by every model in the process).
    lock: Mutex<()>,
}

impl Pool {
    fn new(threads: usize) -> Self {
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            parts: AtomicUsize::new(0),
            next_part: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            park: Mutex::new(()),
            wake: Condvar::new(),
        });
        let workers = threads.saturating_sub(1);
        for i in 0..workers {
            let s = shared.clone();
            std::thread::Builder::new()
                .name(format!("pmg-cpu-{i}"))
                .spawn(move || worker(&s))
                .expect("spawn a worker thread");
        }
        Pool { shared, workers, lock: Mutex::new(()) }
    }

    /// The process-wide pool: `PMG_THREADS` (else `RAYON_NUM_THREADS`) threads, else all cores.
    pub fn global() -> &'static Pool {
        static P: OnceLock<Pool> = OnceLock::new();
        P.get_or_init(|| {
            let n = ["PMG_THREADS", "RAYON_NUM_THREADS"]
                .iter()
                .find_map(|k| std::env::var(k).ok()?.parse::<usize>().ok())
                .filter(|&n| n > 0)
                .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
            Pool::new(n)
        })
    }

    pub fn threads(&self) -> usize {
        self.workers + 1
    }

    /// Run `f(part)` for every part in `0..parts`, spread over the pool and the calling thread.
    pub fn run(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        if self.workers == 0 || parts <= 1 {
            (0..parts).for_each(f);
            return;
        }
        let _one = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // SAFETY: the 'static lifetime is a lie bounded by this call: we wait below until every
        // worker is done with the job before returning.
        let job: &'static Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync + '_), &'static Job>(f) };
        unsafe { *s.job.get() = Some(job) };
        s.parts.store(parts, Ordering::Relaxed);
        s.next_part.store(0, Ordering::Relaxed);
        s.done.store(0, Ordering::Relaxed);
        {
            let _g = s.park.lock().unwrap_or_else(|e| e.into_inner());
            s.generation.fetch_add(1, Ordering::Release);
            s.wake.notify_all();
        }
        take_parts(s, job);
        // A worker may have been descheduled (other load on the machine): yield rather than
        // burn the core it needs.
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) < self.workers {
            spins += 1;
            if spins < 2000 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        unsafe { *s.job.get() = None };
    }
}

fn take_parts(s: &Shared, job: &Job) {
    let parts = s.parts.load(Ordering::Relaxed);
    loop {
        let p = s.next_part.fetch_add(1, Ordering::Relaxed);
        if p >= parts {
            break;
        }
        job(p);
    }
}

fn worker(s: &Shared) {
    let mut seen = 0u64;
    loop {
        let start = Instant::now();
        let mut gen_now = s.generation.load(Ordering::Acquire);
        while gen_now == seen {
            if start.elapsed() > SPIN {
                let g = s.park.lock().unwrap_or_else(|e| e.into_inner());
                let _g = s
                    .wake
                    .wait_while(g, |_| s.generation.load(Ordering::Acquire) == seen)
                    .unwrap_or_else(|e| e.into_inner());
            } else {
                std::hint::spin_loop();
                std::thread::yield_now();
            }
            gen_now = s.generation.load(Ordering::Acquire);
        }
        seen = gen_now;
        // SAFETY: published before the generation bump we just observed (Acquire).
        if let Some(job) = unsafe { *s.job.get() } {
            take_parts(s, job);
        }
        s.done.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_runs_once_per_job() {
        let pool = Pool::new(3);
        for parts in [0usize, 1, 2, 7, 100] {
            let hits: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
            for _ in 0..50 {
                pool.run(parts, &|p| {
                    hits[p].fetch_add(1, Ordering::Relaxed);
                });
            }
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 50));
        }
    }
}
