//! nj-drain-bench: how many events per second the agent's ring-buffer consumer takes with no
//! loss. A BPF generator (bpf/bench/drain.bpf.c) emits bursts of records through the real
//! submit path whenever this process calls getppid(); one thread paces those calls at a target
//! rate while the real drain -> decode -> convert -> pipeline path consumes on the other core.
//!
//! Usage: nj-drain-bench [--rate EVENTS_PER_S] [--seconds S] [--json]
//!   --rate 0 means as fast as the generator can go.
//!   --json serialises every event to JSON (into io::sink) as the JSON sink would.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nightjar_core::pipeline::{Pipeline, Sink, SinkError};
use nightjar_core::telemetry::Telemetry;
use nightjar_core::time::BootClock;
use nightjar_core::Event;
use nightjar_loader::bench::{load_drain_generator, BURST};
use nightjar_loader::convert::Converter;
use tokio::sync::{mpsc, watch};

struct CountingSink {
    count: Arc<AtomicU64>,
    json: bool,
    scratch: Vec<u8>,
}

impl Sink for CountingSink {
    fn name(&self) -> &'static str {
        "count"
    }

    fn write(&mut self, event: &Event) -> Result<(), SinkError> {
        if self.json {
            self.scratch.clear();
            serde_json::to_writer(&mut self.scratch, event).map_err(|e| SinkError::Io {
                sink: "count",
                source: e.into(),
            })?;
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

struct Options {
    rate: u64,
    seconds: f64,
    json: bool,
}

fn parse() -> Result<Options> {
    let mut options = Options {
        rate: 2_000_000,
        seconds: 3.0,
        json: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rate" => options.rate = args.next().context("--rate needs a value")?.parse()?,
            "--seconds" => {
                options.seconds = args.next().context("--seconds needs a value")?.parse()?
            }
            "--json" => options.json = true,
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(options)
}

/// Calls getppid() `calls` times, paced so that `rate` events/s are generated.
fn generate(calls: u64, rate: u64) -> Duration {
    let start = Instant::now();
    let mut done = 0u64;
    while done < calls {
        let target = if rate == 0 {
            calls
        } else {
            let due = start.elapsed().as_secs_f64() * rate as f64 / BURST as f64;
            (due as u64 + 1).min(calls)
        };
        while done < target {
            // SAFETY: getppid has no arguments and no side effects.
            unsafe { libc::syscall(libc::SYS_getppid) };
            done += 1;
        }
        if done < calls && rate != 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    start.elapsed()
}

fn main() -> Result<()> {
    let options = parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (generator, ring, counters) = load_drain_generator(std::process::id(), 64 << 20)?;
    let telemetry = Arc::new(Telemetry::new());
    let count = Arc::new(AtomicU64::new(0));
    let pipeline = Pipeline::new(telemetry.clone()).sink(
        Default::default(),
        Box::new(CountingSink {
            count: count.clone(),
            json: options.json,
            scratch: Vec::with_capacity(512),
        }),
    );
    let (tx, rx) = mpsc::channel(64);
    let (stop_tx, stop_rx) = watch::channel(false);
    let converter = Converter::new(BootClock::now(), Arc::from("bench"), std::process::id());
    let drain = runtime.spawn(nightjar_loader::ringbuf::drain(
        ring,
        converter,
        tx,
        telemetry.clone(),
        stop_rx,
    ));
    let consumer = runtime.spawn(pipeline.run(rx));

    let calls = (options.rate.max(1) as f64 * options.seconds / BURST as f64).ceil() as u64;
    let calls = if options.rate == 0 {
        (5_000_000.0 * options.seconds / BURST as f64) as u64
    } else {
        calls
    };
    let expected = calls * BURST;
    let start = Instant::now();
    let generated_in = generate(calls, options.rate);
    // Wait for the consumer to catch up (or give up after 10 s: then events were lost).
    let deadline = Instant::now() + Duration::from_secs(10);
    let lost = loop {
        let losses = counters.sample();
        let seen = count.load(Ordering::Relaxed);
        if seen + losses.ringbuf_full >= expected || Instant::now() > deadline {
            break losses.ringbuf_full;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let drained_in = start.elapsed();
    let seen = count.load(Ordering::Relaxed);
    drop(generator);
    let _ = stop_tx.send(true);
    runtime.block_on(async {
        let _ = drain.await;
        let _ = consumer.await;
    });
    let rate = seen as f64 / drained_in.as_secs_f64();
    println!(
        "drain: target_rate={} json={} generated={} drained={} lost={} generate_s={:.3} drain_s={:.3} achieved_events_per_s={:.0}",
        options.rate,
        options.json,
        expected,
        seen,
        lost,
        generated_in.as_secs_f64(),
        drained_in.as_secs_f64(),
        rate
    );
    if seen + lost != expected {
        bail!("accounting mismatch: {seen} drained + {lost} lost != {expected} generated");
    }
    Ok(())
}
