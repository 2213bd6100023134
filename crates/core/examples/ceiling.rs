//! The pure-Rust ceiling of the side-by-side benchmark (bench/run.mjs, workload 6): the same getJob
//! load the Node workers issue, sent through `iothub-jobs-core` directly, with no N-API boundary.
//! The addon's calls/s and CPU per call at concurrency 16 and 256 are reported against this figure.
//!
//! Run by the harness (one process per measurement); by hand:
//!
//! ```sh
//! cargo build --release -p iothub-jobs-core --example ceiling
//! IOTHUB_CONNECTION_STRING='HostName=127.0.0.1:PORT;…' IOTHUB_CA_PATH=/path/ca.pem \
//! BENCH_JOB_IDS=job-a,job-b BENCH_TOTAL=20000 BENCH_CONCURRENCY=256 BENCH_WARMUP=512 \
//!   target/release/examples/ceiling
//! ```
//!
//! Prints one JSON line with the same fields as bench/workers/load.mjs: calls/s, CPU per call
//! (user + sys of the whole process, from /proc/self/stat), p50/p99 latency, peak RSS. The runtime
//! is tokio's default multi-thread runtime (one worker per core). Bounded by BENCH_TOTAL calls and
//! BENCH_TIMEOUT_MS (default 120 s): lanes stop taking calls after the deadline.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use iothub_jobs_core::{ClientOptions, JobClient};

fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set (see the example's header)"))
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (user + sys CPU time, peak RSS in KiB) of this process, Linux only; `None` elsewhere.
fn process_usage() -> (Option<Duration>, Option<u64>) {
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks: u64 =
                fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
            // USER_HZ is 100 on every Linux ABI the addon ships for.
            Some(Duration::from_millis(ticks * 10))
        });
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        });
    (cpu, rss)
}

struct Phase {
    attempted: usize,
    failed: usize,
    first_error: Option<String>,
    stopped_by_deadline: bool,
    latencies_ms: Vec<f64>,
}

async fn phase(
    client: &Arc<JobClient>,
    ids: &Arc<Vec<String>>,
    total: usize,
    concurrency: usize,
    deadline: Instant,
) -> Phase {
    let next = Arc::new(AtomicUsize::new(0));
    let lanes: Vec<_> = (0..concurrency.min(total).max(1))
        .map(|_| {
            let (client, ids, next) = (client.clone(), ids.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let (mut failed, mut first_error, mut stopped) = (0usize, None::<String>, false);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    if Instant::now() > deadline {
                        stopped = true;
                        break;
                    }
                    let started = Instant::now();
                    match client.get_job(&ids[i % ids.len()]).await {
                        Ok(_) => latencies.push(started.elapsed().as_secs_f64() * 1000.0),
                        Err(err) => {
                            failed += 1;
                            first_error.get_or_insert_with(|| err.to_string());
                        }
                    }
                }
                (latencies, failed, first_error, stopped)
            })
        })
        .collect();
    let mut out = Phase {
        attempted: 0,
        failed: 0,
        first_error: None,
        stopped_by_deadline: false,
        latencies_ms: Vec::with_capacity(total),
    };
    for lane in lanes {
        let (latencies, failed, first_error, stopped) = lane.await.expect("lane panicked");
        out.latencies_ms.extend(latencies);
        out.failed += failed;
        out.stopped_by_deadline |= stopped;
        if out.first_error.is_none() {
            out.first_error = first_error;
        }
    }
    out.attempted = out.latencies_ms.len() + out.failed;
    out
}

fn json_number(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite())
        .map_or("null".into(), |v| format!("{v}"))
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[tokio::main]
async fn main() {
    let connection_string = env_var("IOTHUB_CONNECTION_STRING");
    let ca = std::fs::read_to_string(env_var("IOTHUB_CA_PATH"))
        .expect("IOTHUB_CA_PATH must name a readable PEM file");
    let ids: Arc<Vec<String>> = Arc::new(
        env_var("BENCH_JOB_IDS")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    );
    assert!(
        !ids.is_empty(),
        "BENCH_JOB_IDS must list at least one job id"
    );
    let total = env_usize("BENCH_TOTAL", 20_000);
    let concurrency = env_usize("BENCH_CONCURRENCY", 256);
    let warmup = env_usize("BENCH_WARMUP", 0);
    let deadline =
        Instant::now() + Duration::from_millis(env_usize("BENCH_TIMEOUT_MS", 120_000) as u64);

    let options = ClientOptions {
        ca_pem: Some(ca),
        ..Default::default()
    };
    let client = Arc::new(
        JobClient::from_connection_string(&connection_string, options)
            .expect("connection string rejected"),
    );

    let warm = if warmup > 0 {
        Some(phase(&client, &ids, warmup, concurrency, deadline).await)
    } else {
        None
    };

    let (cpu_before, _) = process_usage();
    let started = Instant::now();
    let mut run = phase(&client, &ids, total, concurrency, deadline).await;
    let wall = started.elapsed();
    let (cpu_after, max_rss_kb) = process_usage();

    run.latencies_ms.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| -> Option<f64> {
        let n = run.latencies_ms.len();
        if n == 0 {
            return None;
        }
        let rank = ((q / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1;
        Some(run.latencies_ms[rank])
    };
    let completed = run.attempted - run.failed;
    let cpu = cpu_before.zip(cpu_after).map(|(b, a)| a.saturating_sub(b));
    let cpu_per_call_us = cpu
        .filter(|_| run.attempted > 0)
        .map(|c| c.as_secs_f64() * 1e6 / run.attempted as f64);
    let first_error = run
        .first_error
        .as_deref()
        .or(warm.as_ref().and_then(|w| w.first_error.as_deref()));
    println!(
        "{{\"pkg\":\"ceiling\",\"op\":\"get\",\"total\":{total},\"concurrency\":{concurrency},\"completed\":{completed},\
         \"failed\":{failed},\"firstError\":{first_error},\"stoppedByDeadline\":{stopped},\"wallMs\":{wall_ms},\
         \"callsPerSec\":{cps},\"cpuMs\":{cpu_ms},\"cpuPerCallUs\":{cpu_call},\"p50Ms\":{p50},\"p99Ms\":{p99},\
         \"maxMs\":{max},\"maxRssKb\":{rss}}}",
        failed = run.failed + warm.as_ref().map_or(0, |w| w.failed),
        first_error = first_error.map_or("null".into(), json_string),
        stopped = run.stopped_by_deadline || warm.as_ref().is_some_and(|w| w.stopped_by_deadline),
        wall_ms = wall.as_secs_f64() * 1000.0,
        cps = completed as f64 / wall.as_secs_f64(),
        cpu_ms = json_number(cpu.map(|c| c.as_secs_f64() * 1000.0)),
        cpu_call = json_number(cpu_per_call_us),
        p50 = json_number(pct(50.0)),
        p99 = json_number(pct(99.0)),
        max = json_number(run.latencies_ms.last().copied()),
        rss = max_rss_kb.map_or("null".into(), |v| v.to_string()),
    );
}
