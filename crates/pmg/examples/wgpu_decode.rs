//! Where a wgpu decode step's time goes: wall time per token against the kernels' own time,
//! launches and queue submissions per token, and what the warm-up saves on the first request.
//! `cargo run --release --example wgpu_decode [-- TOKENS [--warm]]` (wgpu must find an adapter;
//! here Mesa lavapipe). Run it with and without `--warm` (pipelines are compiled once per process).
//!
//! - first request: prefill + first token, then the second token, cold or after
//!   `LanguageModel::warm_up`.
//! - wall: per-token time of greedy decoding as generation does it (argmax on the GPU, 4 bytes
//!   read back), and with the logits row read back and the argmax taken on the host instead.
//! - device: the step's device time, one profiling window (timestamp queries) around all of its
//!   launches, as they run in one submission.
//! - kernels: the same step with every launch timed on its own (cubecl's launch observer, wgpu
//!   timestamp queries where the adapter has them): the sum is the kernels' own time, with no
//!   launch, submission or sync cost in it.
//! - launches: kernels issued per token (launch observer).
//! - submissions: `queue.submit` calls per token, counted on the runtime's own queue from the
//!   submission index of a probe submission before and after the step, less one per readback:
//!   wgpu-core allocates an index on every `map_async` (`Queue::flush_writes_for_buffer`) without
//!   submitting anything.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cubecl::logging::{LaunchObservation, LaunchObserver, TimingMethod, TimingRequest};
use pmg::device::PmgDevice;
use pmg::llm::LanguageModel;

#[derive(Default)]
struct Count(Mutex<BTreeMap<&'static str, usize>>);
impl LaunchObserver for Count {
    fn launched(&self, kernel: &'static str) {
        *self.0.lock().unwrap().entry(kernel).or_default() += 1;
    }
}

/// Per kernel: launches and summed device time; per timing method: how many launches used it.
type Timings = (BTreeMap<&'static str, (usize, Duration)>, BTreeMap<String, usize>);

#[derive(Default)]
struct Timed(Mutex<Timings>);
impl LaunchObserver for Timed {
    fn launched(&self, _: &'static str) {}
    fn timing(&self) -> TimingRequest {
        TimingRequest::Resolved
    }
    fn timed(&self, kernel: &'static str, d: Duration, m: TimingMethod) {
        let mut g = self.0.lock().unwrap();
        let e = g.0.entry(kernel).or_default();
        e.0 += 1;
        e.1 += d;
        *g.1.entry(format!("{m:?}")).or_default() += 1;
    }
}

fn short(name: &str) -> String {
    cubecl::config::type_name_format(name, cubecl::config::TypeNameFormatLevel::Balanced)
}

fn submission_index(queue: &burn::tensor::wgpu::wgpu::Queue, device: &burn::tensor::wgpu::wgpu::Device) -> u64 {
    let enc = device.create_command_encoder(&Default::default());
    let idx = format!("{:?}", queue.submit([enc.finish()]));
    idx.trim_matches(|c: char| !c.is_ascii_digit()).parse().expect("SubmissionIndex { index: N }")
}

fn main() {
    let n: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(32);
    let warm = std::env::args().any(|a| a == "--warm");
    let path = std::env::var("PMG_MODEL").unwrap_or_else(|_| "models/SmolLM2-135M-Instruct.Q4_1.gguf".into());
    let bytes = std::fs::read(&path).expect("run scripts/fetch-models.sh (or set PMG_MODEL)");
    let (device, setup) = pmg::device::wgpu_options().init_with_setup().expect("wgpu adapter");
    let info = setup.adapter.get_info();
    let is_software = info.device_type == burn::tensor::wgpu::wgpu::DeviceType::Cpu;
    let dev = PmgDevice::from_wgpu(device, info.name.clone(), is_software, &setup.device.limits());
    let t = Instant::now();
    let lm = LanguageModel::from_gguf_bytes(&bytes, &dev, 512).unwrap();
    println!("adapter: {} ({:?}); load {:.2} s", info.name, info.backend, t.elapsed().as_secs_f64());
    let prompt = lm
        .tokenize_prompt(
            "A small quantized language model runs on the user's own device, reads what the user did on a website, and",
        )
        .unwrap();

    let state = if warm {
        let t = Instant::now();
        lm.warm_up().unwrap();
        println!("warm_up: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
        "after warm_up"
    } else {
        "cold"
    };
    let mut s = lm.new_session();
    let t = Instant::now();
    let mut next = s.feed_greedy(&prompt).unwrap();
    println!(
        "first request, {state}: prefill {} tokens + first token {:.1} ms",
        prompt.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    next = s.feed_greedy(&[next]).unwrap();
    println!("first request, {state}: second token {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    for _ in 0..2 {
        next = s.feed_greedy(&[next]).unwrap();
    }
    // Prefill again: the same length (every pipeline compiled) and other lengths (burn's prefill
    // kernels specialise on shapes).
    for len in [prompt.len(), 7, 61] {
        let ids: Vec<u32> = prompt.iter().cycle().take(len).copied().collect();
        let mut s2 = lm.new_session();
        let t = Instant::now();
        s2.feed_greedy(&ids).unwrap();
        println!("later request: prefill {len} tokens + first token {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    }

    // Launches and submissions of one step.
    let count = Arc::new(Count::default());
    let before = submission_index(&setup.queue, &setup.device);
    let obs = LaunchObservation::new(count.clone());
    next = s.feed_greedy(&[next]).unwrap();
    drop(obs);
    let after = submission_index(&setup.queue, &setup.device);
    let launches: usize = count.0.lock().unwrap().values().sum();
    println!("one decode step: {launches} launches, {} queue submissions", after - before - 1 - 1);
    for (k, c) in count.0.lock().unwrap().iter() {
        println!("  {c:5} x {}", short(k));
    }

    // Wall time per token.
    let t = Instant::now();
    let mut ids = vec![];
    for _ in 0..n {
        next = s.feed_greedy(&[next]).unwrap();
        ids.push(next);
    }
    let wall_step = t.elapsed().as_secs_f64() / n as f64;
    println!(
        "wall: {:.2} ms/token over {n} tokens ({:.1} tok/s), one step at a time (Session::feed_greedy: 4-byte readback)",
        wall_step * 1e3,
        1.0 / wall_step
    );
    // Generation as the API runs it: TokenStream queues step n+1 on the GPU before token n is read.
    let mut stamps = Vec::new();
    {
        let st = s.generate(&[next], pmg::llm::GenerateOptions { max_tokens: n + 1, ..Default::default() }).unwrap();
        for t in st {
            next = t.unwrap().id;
            stamps.push(Instant::now());
        }
    }
    let wall = (stamps[stamps.len() - 1] - stamps[0]).as_secs_f64() / (stamps.len() - 1) as f64;
    println!(
        "wall: {:.2} ms/token over {n} tokens ({:.1} tok/s), generate() (step n+1 queued before token n is read)",
        wall * 1e3,
        1.0 / wall
    );
    let mut cache = lm.model.new_cache();
    lm.model.forward(&ids[..n.min(ids.len())], &mut cache, pmg::llm::Rows::Last).unwrap();
    let mut tok = next;
    // The whole step's device time: one profiling window around its launches (wgpu timestamp
    // queries at the start and end of the step's compute pass).
    let client = pmg::kernels::wgpu::cube(burn::tensor::Tensor::<1>::zeros([1], &dev.device)).unwrap().client;
    let mut device_s = Vec::new();
    for _ in 0..n.min(8) {
        let (id, d) = client
            .profile(
                || {
                    let logits =
                        pmg::kernels::wgpu::cube(lm.model.forward(&[tok], &mut cache, pmg::llm::Rows::Last).unwrap())
                            .unwrap();
                    pmg::kernels::wgpu::argmax(&logits)
                },
                "decode step",
            )
            .unwrap();
        device_s.push(cubecl::future::block_on(d.resolve()).expect("device timing").duration().as_secs_f64());
        tok = pmg::kernels::wgpu::read_u32(id).unwrap();
    }
    device_s.sort_by(f64::total_cmp);
    let step_device = device_s[device_s.len() / 2];
    println!(
        "step on the device (one profiled window, median of {}): {:.2} ms/token; wall / device = {:.2}",
        device_s.len(),
        step_device * 1e3,
        wall / step_device
    );
    let t = Instant::now();
    for _ in 0..n {
        next = pmg::llm::sampler::argmax(&s.feed(&[next]).unwrap());
    }
    let wall_logits = t.elapsed().as_secs_f64() / n as f64;
    println!("wall: {:.2} ms/token with the logits row read back and argmax on the host", wall_logits * 1e3);

    // Kernels' own time for one step (each launch timed alone).
    let timed = Arc::new(Timed::default());
    let steps = 3;
    let obs = LaunchObservation::new(timed.clone());
    for _ in 0..steps {
        next = s.feed_greedy(&[next]).unwrap();
    }
    drop(obs);
    let g = timed.0.lock().unwrap();
    let total: Duration = g.0.values().map(|v| v.1).sum::<Duration>() / steps as u32;
    println!(
        "kernels: {:.2} ms/token (timing methods {:?}); wall / kernels = {:.2}",
        total.as_secs_f64() * 1e3,
        g.1,
        wall / total.as_secs_f64()
    );
    let mut rows: Vec<_> = g.0.iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1.1));
    for (k, (c, d)) in rows {
        println!("  {:8.3} ms  {:4} x {}", d.as_secs_f64() * 1e3 / steps as f64, c / steps, short(k));
    }
    println!("tokens: {:?}", &ids[..ids.len().min(16)]);
    drop(g);

    // Correctness on this adapter: the fused decode kernels against burn's ops, 8 greedy steps.
    let run_ahead: Vec<u32> = lm
        .new_session()
        .generate(&prompt, pmg::llm::GenerateOptions { max_tokens: 16, ..Default::default() })
        .unwrap()
        .map(|t| t.unwrap().id)
        .collect();
    let mut s = lm.new_session();
    let mut step = vec![s.feed_greedy(&prompt).unwrap()];
    while step.len() < 16 {
        step.push(s.feed_greedy(&step[step.len() - 1..]).unwrap());
    }
    println!("check: generate() (run ahead) gives the step-at-a-time tokens: {}", run_ahead == step);
    // The fused step against burn's ops is a test: tests/wgpu_kernels.rs (fused_gpu_decode_matches_burn_ops).
}
