//! Router vs nginx, side by side in one run: `./x bench router` (or, with the router built as
//! it ships — `cargo build --profile router -p mrbill-router` — and Debian's `wrk` and
//! `nginx-light` installed, `cargo bench -p mrbill-router --bench proxy`).
//!
//! A small GET against one backend: direct, through `mrbill-router` (the shipped build, its
//! own process) and through nginx (keep-alive upstream, the usual production shape), each proxy
//! with the same number of workers (`BENCH_WORKERS`, default `1,2`) on the same two cores as wrk
//! and the backend. wrk: 2 threads, 64 keep-alive connections, twice per path: flat out
//! (requests/s) and paced at ≈ 5,000 requests/s (latency without queueing: the p50/p99 each
//! proxy adds over the direct path). The machines are noisy, so the paths take turns in several
//! rounds (`BENCH_ROUNDS`, default 5; `BENCH_SECS` per run, default 5) and medians are printed.
//!
//! Tracing's cost (`BENCH_TRACING=0` leaves it out): the same router with every request traced
//! (`OTEL_TRACES_SAMPLER=always_on`) exporting to a collector that takes the spans, and to one
//! that is down, against the untraced router in the same rounds.
//!
//! Another build beside it (`BENCH_CANDIDATES=label=dir;…`, each dir holding a `mrbill-router`):
//! a change against the build it changes, in the same rounds.

mod common;

use std::time::Duration;

use common::{Sample, median, wrk};

/// CPU seconds `pid` has used, all its threads (user + system, from `/proc/<pid>/stat`).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is the 3rd, utime the 14th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // 100 ticks per second on Linux (USER_HZ).
    (ticks(11) + ticks(12)) / 100.0
}

/// `BENCH_CANDIDATES`: `label=dir` pairs separated by `;`, each a directory holding another
/// build of `mrbill-router`.
fn candidates() -> Vec<(String, std::path::PathBuf)> {
    std::env::var("BENCH_CANDIDATES")
        .unwrap_or_default()
        .split(';')
        .filter_map(|c| c.split_once('='))
        .map(|(label, dir)| (label.trim().to_owned(), dir.trim().into()))
        .collect()
}

/// The median of each measure over a path's runs.
fn medians(samples: &[Sample]) -> Sample {
    Sample {
        p50: median(samples.iter().map(|s| s.p50).collect()),
        p99: median(samples.iter().map(|s| s.p99).collect()),
        rps: median(samples.iter().map(|s| s.rps).collect()),
        requests: samples.iter().map(|s| s.requests).sum(),
    }
}

fn main() {
    let dir = std::env::temp_dir().join(format!("router-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (rounds, secs) = (
        common::env_or("BENCH_ROUNDS", 5),
        common::env_or("BENCH_SECS", 5),
    );
    let rt = common::runtime();
    let backend_port = common::backend(&rt);
    let bin = common::bin_dir();
    let pace = common::pace_script(&dir);

    struct Measured {
        label: String,
        url: String,
        flat_out: Vec<Sample>,
        paced: Vec<Sample>,
        /// The proxy's process, and the CPU it used in the paced runs.
        pid: Option<u32>,
        paced_cpu: f64,
    }
    let path = |label: String, url: String| Measured {
        label,
        url,
        flat_out: vec![],
        paced: vec![],
        pid: None,
        paced_cpu: 0.0,
    };
    let mut paths = vec![path(
        "direct".into(),
        format!("http://127.0.0.1:{backend_port}/v1/pocs"),
    )];
    let mut running = Vec::new();
    let workers: Vec<u32> = std::env::var("BENCH_WORKERS")
        .unwrap_or_else(|_| "1,2".into())
        .split(',')
        .filter_map(|w| w.trim().parse().ok())
        .collect();
    // Traces at 100 % sampling to a collector that takes them (a sink on the backend's
    // runtime that reads and drops each export), and to one that is down (a closed port).
    let tracing = common::env_or("BENCH_TRACING", 1) == 1;
    let collector_port = if tracing { common::collector(&rt) } else { 0 };
    let down_port = common::free_port();
    // Per traced router, where its counters of exported and dropped spans are read.
    let mut counted: Vec<(String, u16)> = Vec::new();
    for workers in workers {
        let mut routers = vec![("mrbill-router".to_owned(), Vec::new(), bin.clone())];
        if tracing {
            for (label, to) in [
                ("  traced", collector_port),
                ("  collector down", down_port),
            ] {
                let metrics = common::free_port();
                counted.push((format!("{} ×{workers}", label.trim()), metrics));
                routers.push((label.to_owned(), common::traced(to, metrics), bin.clone()));
            }
        }
        // Other builds of the router in the same rounds (`BENCH_CANDIDATES=label=dir;…`): what a
        // change does, measured side by side with the build it changes.
        for (label, dir) in candidates() {
            routers.push((format!("  {label}"), Vec::new(), dir));
        }
        for (label, env, bin) in routers {
            let (router, port) = common::start_router(&bin, &dir, workers, backend_port, &env, &[]);
            common::wait_for_port(port, Duration::from_secs(5));
            let mut measured = path(
                format!("{label} ×{workers}"),
                format!("http://127.0.0.1:{port}/t/acme/v1/pocs"),
            );
            measured.pid = Some(router.0.id());
            paths.push(measured);
            running.push(router);
        }
        let (nginx, nginx_port) = common::start_nginx(&dir, workers, backend_port, &[]);
        common::wait_for_port(nginx_port, Duration::from_secs(5));
        paths.push(path(
            format!("nginx ×{workers}"),
            format!("http://127.0.0.1:{nginx_port}/t/acme/v1/pocs"),
        ));
        running.push(nginx);
    }
    for p in &paths {
        wrk(&p.url, 64, 1, None); // warm-up: connections, pools, caches
    }
    for round in 0..rounds {
        // Alternate the order, so neither proxy always runs right after the other.
        let order: Vec<usize> = if round % 2 == 0 {
            (0..paths.len()).collect()
        } else {
            (0..paths.len()).rev().collect()
        };
        for i in order {
            let flat_out = wrk(&paths[i].url, 64, secs, None);
            let before = paths[i].pid.map_or(0.0, cpu_secs);
            let paced = wrk(&paths[i].url, 64, secs, Some(&pace));
            paths[i].paced_cpu += paths[i].pid.map_or(0.0, cpu_secs) - before;
            paths[i].flat_out.push(flat_out);
            paths[i].paced.push(paced);
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }

    println!(
        "{rounds} rounds × {secs} s, medians; wrk -t2 -c64; 2 cores shared by wrk, backend, proxy"
    );
    println!(
        "{:<18} {:>12} {:>13} {:>13} {:>10} {:>10}",
        "", "flat out", "at ~5k req/s", "", "", ""
    );
    println!(
        "{:<18} {:>12} {:>13} {:>13} {:>10} {:>10}",
        "path", "requests/s", "added p50 ms", "added p99 ms", "p50 ms", "p99 ms"
    );
    let results: Vec<(String, Sample, Sample)> = paths
        .iter()
        .map(|p| (p.label.clone(), medians(&p.flat_out), medians(&p.paced)))
        .collect();
    // CPU per request at the steady rate: what a request costs the router, repeatable where
    // flat-out throughput on two shared cores is not.
    let cpu_per_request = |label: &str| {
        paths.iter().find(|p| p.label == label).and_then(|p| {
            let requests: f64 = p.paced.iter().map(|s| s.requests).sum();
            (p.pid.is_some() && requests > 0.0).then(|| p.paced_cpu / requests * 1e6)
        })
    };
    let direct = results[0].2;
    for (label, flat_out, paced) in &results {
        println!(
            "{label:<18} {:>12.0} {:>13.3} {:>13.3} {:>10.3} {:>10.3}",
            flat_out.rps,
            paced.p50 - direct.p50,
            paced.p99 - direct.p99,
            paced.p50,
            paced.p99
        );
    }
    let find = |label: &str| results.iter().find(|(l, _, _)| l == label);
    // Each round measures every path back to back: a ratio taken within a round cancels the
    // host's drift between rounds, and its spread over the rounds shows what one run can tell.
    let paired = |a: &str, b: &str, of: fn(&Sample, &Sample) -> f64| {
        let rounds = |label: &str| paths.iter().find(|p| p.label == label);
        let (a, b) = (rounds(a)?, rounds(b)?);
        let ratios: Vec<f64> = (0..a.flat_out.len().min(b.flat_out.len()))
            .map(|r| of(&a.flat_out[r], &b.flat_out[r]))
            .collect();
        let (lo, hi) = ratios
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
        Some(format!(
            "round by round {:.3}× ({lo:.3}–{hi:.3}×)",
            median(ratios)
        ))
    };
    let rps_ratio: fn(&Sample, &Sample) -> f64 = |a, b| a.rps / b.rps;
    for (label, router, router_paced) in results.iter().filter(|(l, _, _)| l.starts_with("mrbill"))
    {
        let workers = label.trim_start_matches("mrbill-router ");
        if let Some((_, nginx, nginx_paced)) = find(&format!("nginx {workers}")) {
            println!(
                "{label}: throughput {:.2}× nginx ({}); at ~5k req/s added p99 {:.3} ms (nginx {:.3} ms)",
                router.rps / nginx.rps,
                paired(label, &format!("nginx {workers}"), rps_ratio).unwrap_or_default(),
                router_paced.p99 - direct.p99,
                nginx_paced.p99 - direct.p99
            );
        }
        let base_cpu = cpu_per_request(label);
        if let Some(cpu) = base_cpu {
            println!("{label}: {cpu:.1} µs CPU per request at ~5k req/s (all its threads)");
        }
        for (candidate, _) in candidates() {
            let label_c = format!("  {candidate} {workers}");
            if let Some((_, with, with_paced)) = find(&label_c) {
                println!(
                    "{label_c}: throughput {:.3}× this router ({}), {:.3}× nginx ({}); added p99 {:.3} ms",
                    with.rps / router.rps,
                    paired(&label_c, label, rps_ratio).unwrap_or_default(),
                    find(&format!("nginx {workers}")).map_or(f64::NAN, |n| with.rps / n.1.rps),
                    paired(&label_c, &format!("nginx {workers}"), rps_ratio).unwrap_or_default(),
                    with_paced.p99 - direct.p99,
                );
            }
        }
        for variant in ["traced", "collector down"] {
            let variant_label = format!("  {variant} {workers}");
            if let Some((_, with, with_paced)) = find(&variant_label) {
                let cpu = match (cpu_per_request(&variant_label), base_cpu) {
                    (Some(with), Some(base)) => {
                        format!(
                            "; {with:.1} µs CPU per request ({:+.1} %)",
                            (with / base - 1.0) * 100.0
                        )
                    }
                    _ => String::new(),
                };
                println!(
                    "{label} {variant}: throughput {:.3}× untraced ({}); p99 at ~5k req/s {:+.3} ms{cpu}",
                    with.rps / router.rps,
                    paired(&variant_label, label, rps_ratio).unwrap_or_default(),
                    with_paced.p99 - router_paced.p99
                );
            }
        }
    }
    for (label, port) in &counted {
        let metrics = common::scrape(*port);
        let value = |series: &str| common::counter(&metrics, series);
        println!(
            "{label}: spans exported {:.0}, dropped: queue full {:.0}, export failed {:.0}",
            value("mrbill_trace_spans_exported_total "),
            value("mrbill_trace_spans_dropped_total{reason=\"queue_full\"} "),
            value("mrbill_trace_spans_dropped_total{reason=\"export_failed\"} "),
        );
    }
    drop(running);
    std::fs::remove_dir_all(dir).ok();
}
