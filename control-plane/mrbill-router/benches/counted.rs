//! Router vs nginx, counted rather than timed: `./x bench router` runs it after the timed bench
//! (or, with the router built as it ships — `--profile router` — and Debian's `valgrind`,
//! `linux-perf`, `wrk` and `nginx-light` installed, `cargo bench -p mrbill-router --bench
//! counted`).
//!
//! Throughput on two shared cores moves by up to 40 % from one run to the next
//! (`docs/benchmarks.md`), more than the differences it is meant to show. What one request
//! costs the proxy moves far less, so each proxy (one worker, the same backend) is counted:
//! - **instructions** per request in user space, by callgrind: the proxy runs under valgrind
//!   with counting switched on only while wrk sends the counted requests (16 connections, flat
//!   out; the proxy under valgrind is the bottleneck); all its threads, and for the router those
//!   that serve requests alone (the request path: what a saturated router pays, its trace
//!   exporter's threads running only on idle CPU);
//! - **system calls**, **context switches** and **CPU time** per request, by the kernel
//!   (`perf stat` on the proxy's threads: tracepoint and software events, which this VM has
//!   where it has no hardware counters) while wrk sends ≈ 5,000 requests/s.
//!
//! The router is counted as it ships and with every request through hyper
//! (`MRBILL_ROUTER_FAST_PATH=false`): what its fast path saves.
//!
//! Each is taken in `BENCH_COUNT_RUNS` windows (default 3) of `BENCH_COUNT_SECS` (default 4 s);
//! the median and the range over the windows are printed. `BENCH_TRACING=0` leaves out the
//! traced router (every request traced, to a collector that takes the spans and to one that is
//! down).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Stopped, median, wrk};

/// What one path costs per request, one value per window.
#[derive(Default)]
struct Counts {
    instructions: Vec<f64>,
    /// On the threads that serve requests (the router's workers).
    request_path: Vec<f64>,
    syscalls: Vec<f64>,
    switches: Vec<f64>,
    cpu_us: Vec<f64>,
}

/// `median (min–max)` of one measure.
fn spread(values: &[f64], decimals: usize) -> String {
    if values.is_empty() {
        return "–".into();
    }
    let (lo, hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let mid = median(values.to_vec());
    format!("{mid:.decimals$} ({lo:.decimals$}–{hi:.decimals$})")
}

/// The processes that serve a proxy's requests: nginx's workers (the master's children), or
/// the router itself (perf counts all its threads).
fn serving_pids(pid: u32) -> Vec<u32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect::<Vec<u32>>();
    if children.is_empty() {
        vec![pid]
    } else {
        children
    }
}

/// Syscalls, context switches and CPU µs per request while wrk paces requests at `url`.
fn kernel_counts(url: &str, pids: &[u32], secs: u64, pace: &Path, out: &Path, into: &mut Counts) {
    let pids = pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut perf = Command::new("perf");
    perf.args(["stat", "-x", ",", "-o"])
        .arg(out)
        .args(["-e", "raw_syscalls:sys_enter", "-e", "context-switches"])
        .args(["-e", "task-clock", "-p", &pids, "--"])
        .arg("wrk")
        .args(["-t2", "-c64", &format!("-d{secs}s"), "-s"])
        .arg(pace)
        .arg(url);
    let run = perf
        .output()
        .expect("run perf (apt-get install linux-perf)");
    assert!(run.status.success(), "perf stat failed: {run:?}");
    let answered = String::from_utf8_lossy(&run.stdout)
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("wrk's request count");
    let text = std::fs::read_to_string(out).expect("perf's counts");
    let event = |name: &str| {
        text.lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.get(2) == Some(&name))
            .and_then(|f| f[0].parse::<f64>().ok())
            .unwrap_or_else(|| panic!("perf counted no {name}:\n{text}"))
    };
    into.syscalls
        .push(event("raw_syscalls:sys_enter") / answered);
    into.switches.push(event("context-switches") / answered);
    // task-clock is in milliseconds.
    into.cpu_us.push(event("task-clock") * 1000.0 / answered);
}

/// Instructions per request in the proxy under callgrind (`pid`, dumping each thread into `dir`
/// as `cg.<pid>.<n>-<thread>`), counted only while wrk sends requests to `url`: on all its
/// threads, and on those that served requests (their counts name the router's request handler;
/// nginx serves on the one thread it has).
fn instructions(url: &str, pid: u32, secs: u64, dir: &Path) -> (f64, f64) {
    let control = |what: &[&str]| {
        let status = Command::new("callgrind_control")
            .args(what)
            .arg(pid.to_string())
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run callgrind_control (apt-get install valgrind)");
        assert!(status.success(), "callgrind_control {what:?} failed");
    };
    control(&["-i", "on"]);
    let sample = wrk(url, 16, secs, None);
    control(&["-i", "off"]);
    control(&["-d"]);
    // The newest dump (one file per thread) holds what was counted since the one before.
    let prefix = format!("cg.{pid}.");
    let dumps: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(dir)
        .expect("dump dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let rest = name.strip_prefix(&prefix)?;
            let part: u32 = rest.split('-').next()?.parse().ok()?;
            Some((part, dir.join(name)))
        })
        .collect();
    let newest = dumps
        .iter()
        .map(|(part, _)| *part)
        .max()
        .expect("callgrind wrote a dump");
    let (mut total, mut serving) = (0.0, 0.0);
    for (_, path) in dumps.iter().filter(|(part, _)| *part == newest) {
        let text = std::fs::read_to_string(path).expect("callgrind dump");
        let counted: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("totals:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("callgrind totals");
        total += counted;
        // A worker: it serves requests on the fast path or through hyper's.
        if text.contains("fast::serve") || text.contains("proxy::handle") {
            serving += counted;
        }
    }
    // nginx serves on its one thread.
    if serving == 0.0 {
        serving = total;
    }
    (total / sample.requests, serving / sample.requests)
}

/// Starts a proxy, plainly or under a tool (its command and arguments); returns it and its port.
type Start = Box<dyn Fn(&[&str]) -> (Stopped, u16)>;

/// A proxy under test: how to start it, and where its span counters are.
struct Proxy {
    label: String,
    start: Start,
    /// The router's metrics port, when its span counters are worth reading.
    metrics: Option<u16>,
}

fn main() {
    let dir = std::env::temp_dir().join(format!("router-counted-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let runs = common::env_or("BENCH_COUNT_RUNS", 3) as usize;
    let secs = common::env_or("BENCH_COUNT_SECS", 4);
    let rt = common::runtime();
    let backend = common::backend(&rt);
    let bin = common::bin_dir();
    let pace = common::pace_script(&dir);
    let tracing = common::env_or("BENCH_TRACING", 1) == 1;

    let router = |label: &str, env: Vec<(&'static str, String)>, metrics| {
        let (bin, dir) = (bin.clone(), dir.clone());
        Proxy {
            label: label.to_owned(),
            start: Box::new(move |wrap| common::start_router(&bin, &dir, 1, backend, &env, wrap)),
            metrics,
        }
    };
    let mut proxies = vec![
        router("mrbill-router ×1", Vec::new(), None),
        // The same build with every request through hyper: what the fast path saves.
        router(
            "  hyper path",
            vec![("MRBILL_ROUTER_FAST_PATH", "false".into())],
            None,
        ),
    ];
    if tracing {
        let collector = common::collector(&rt);
        for (label, to) in [
            ("  traced", collector),
            ("  collector down", common::free_port()),
        ] {
            let metrics = common::free_port();
            proxies.push(router(
                label,
                common::traced(to, metrics),
                Some(metrics).filter(|_| to == collector),
            ));
        }
    }
    let nginx_dir = dir.clone();
    proxies.push(Proxy {
        label: "nginx ×1".into(),
        start: Box::new(move |wrap| common::start_nginx(&nginx_dir, 1, backend, wrap)),
        metrics: None,
    });

    let callgrind_out = format!("--callgrind-out-file={}/cg.%p", dir.display());
    let callgrind = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        "--separate-threads=yes",
        callgrind_out.as_str(),
    ];
    let mut counted = Vec::new();
    for proxy in &proxies {
        let mut counts = Counts::default();
        let url = |port: u16| format!("http://127.0.0.1:{port}/t/acme/v1/pocs");
        {
            let (process, port) = (proxy.start)(&[]);
            common::wait_for_port(port, Duration::from_secs(5));
            wrk(&url(port), 64, 1, None); // warm-up: connections, pools, caches
            let pids = serving_pids(process.0.id());
            for run in 0..runs {
                let out = dir.join(format!("perf-{run}.csv"));
                kernel_counts(&url(port), &pids, secs, &pace, &out, &mut counts);
            }
        }
        {
            let (process, port) = (proxy.start)(&callgrind);
            common::wait_for_port(port, Duration::from_secs(60));
            wrk(&url(port), 16, 2, None);
            for _ in 0..runs {
                let (all, serving) = instructions(&url(port), process.0.id(), secs, &dir);
                counts.instructions.push(all);
                counts.request_path.push(serving);
            }
            if let Some(metrics) = proxy.metrics {
                let text = common::scrape(metrics);
                let value = |series: &str| common::counter(&text, series);
                eprintln!(
                    "{} under callgrind: spans exported {:.0}, dropped (queue full) {:.0}",
                    proxy.label.trim(),
                    value("mrbill_trace_spans_exported_total "),
                    value("mrbill_trace_spans_dropped_total{reason=\"queue_full\"} "),
                );
            }
        }
        eprintln!("{} counted", proxy.label.trim());
        counted.push((proxy.label.clone(), counts));
    }

    println!("per request, median (min–max) over {runs} windows of {secs} s; one worker each");
    println!(
        "{:<18} {:>26} {:>26} {:>22} {:>22} {:>22}",
        "path",
        "instructions (callgrind)",
        "of which request path",
        "syscalls",
        "context switches",
        "CPU µs"
    );
    for (label, c) in &counted {
        println!(
            "{label:<18} {:>26} {:>26} {:>22} {:>22} {:>22}",
            spread(&c.instructions, 0),
            spread(&c.request_path, 0),
            spread(&c.syscalls, 2),
            spread(&c.switches, 3),
            spread(&c.cpu_us, 1)
        );
    }
    let find = |label: &str| {
        counted
            .iter()
            .find(|(l, _)| l.trim() == label)
            .map(|(_, c)| c)
    };
    let ratio = |a: &[f64], b: &[f64]| median(a.to_vec()) / median(b.to_vec());
    if let (Some(router), Some(nginx)) = (find("mrbill-router ×1"), find("nginx ×1")) {
        println!(
            "mrbill-router ÷ nginx: instructions {:.2}×, syscalls {:.2}×, CPU {:.2}×",
            ratio(&router.instructions, &nginx.instructions),
            ratio(&router.syscalls, &nginx.syscalls),
            ratio(&router.cpu_us, &nginx.cpu_us),
        );
        if let Some(hyper) = find("hyper path") {
            println!(
                "fast path ÷ hyper path: instructions {:.2}× (request path {:.2}×), syscalls {:.2}×, CPU {:.2}×",
                ratio(&router.instructions, &hyper.instructions),
                ratio(&router.request_path, &hyper.request_path),
                ratio(&router.syscalls, &hyper.syscalls),
                ratio(&router.cpu_us, &hyper.cpu_us),
            );
        }
        for variant in ["traced", "collector down"] {
            if let Some(with) = find(variant) {
                println!(
                    "{variant} ÷ untraced: instructions {:+.1} % (request path {:+.1} %), CPU {:+.1} %",
                    (ratio(&with.instructions, &router.instructions) - 1.0) * 100.0,
                    (ratio(&with.request_path, &router.request_path) - 1.0) * 100.0,
                    (ratio(&with.cpu_us, &router.cpu_us) - 1.0) * 100.0,
                );
            }
        }
    }
    drop(rt);
    std::fs::remove_dir_all(dir).ok();
}
