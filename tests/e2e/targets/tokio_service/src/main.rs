// A line-protocol service on a two-worker tokio runtime, for stalltrace's
// end-to-end test: each command does one known kind of harm and prints
// its own timing ("truth ...") on stdout.
use std::io::Write;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn truth(what: &str, took: Duration) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "truth {} ms={:.3}", what, took.as_secs_f64() * 1e3);
    let _ = out.flush();
}

// Blocks the worker thread it runs on: the bug a stall report must name.
#[inline(never)]
fn load_report() -> String {
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(250));
    truth("sleep", t0.elapsed());
    "report ready".to_string()
}

// Burns the worker's CPU for about 200 ms.
#[inline(never)]
fn crunch_numbers() -> u64 {
    let t0 = Instant::now();
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while t0.elapsed() < Duration::from_millis(200) {
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        // Keeps the loop from being folded away.
        x = unsafe { std::ptr::read_volatile(&x) };
    }
    truth("cpu", t0.elapsed());
    x
}

// One job of the blocking pool: sleeps, and says on which thread.
fn blocking_job(ms: u64) -> (Instant, Instant, String) {
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(ms));
    let name = format!("{:?}", std::thread::current().id());
    (t0, Instant::now(), name)
}

// `jobs` jobs of `ms` each on the blocking pool at once; with more jobs
// than threads, the pool is saturated from the start of the first jobs
// until a thread finds the queue empty.
async fn run_blocking(jobs: usize, ms: u64) -> String {
    let handles: Vec<_> = (0..jobs)
        .map(|_| tokio::task::spawn_blocking(move || blocking_job(ms)))
        .collect();
    let mut done = Vec::new();
    for h in handles {
        done.push(h.await.expect("blocking job"));
    }
    // Per thread: its first start and its last end. Saturated while every
    // thread is busy: from the latest first start to the earliest last end.
    let mut threads: Vec<(String, Instant, Instant)> = Vec::new();
    for (s, e, name) in done {
        match threads.iter_mut().find(|t| t.0 == name) {
            Some(t) => {
                t.1 = t.1.min(s);
                t.2 = t.2.max(e);
            }
            None => threads.push((name, s, e)),
        }
    }
    let from = threads.iter().map(|t| t.1).max().unwrap();
    let to = threads.iter().map(|t| t.2).min().unwrap();
    if jobs > threads.len() {
        truth("saturated", to.saturating_duration_since(from));
    }
    format!("ran {} jobs on {} threads", jobs, threads.len())
}

async fn serve(stream: TcpStream) {
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = match line.trim() {
            "ping" => "pong".to_string(),
            "report" => load_report(),
            "crunch" => format!("crunched {:x}", crunch_numbers()),
            "warm" => run_blocking(2, 50).await,
            "saturate" => run_blocking(4, 750).await,
            "quit" => {
                println!("bye");
                std::process::exit(0);
            }
            other => format!("unknown {}", other),
        };
        if wr.write_all(format!("{}\n", reply).as_bytes()).await.is_err() {
            break;
        }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(2)
        .enable_io()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!("port {}", listener.local_addr().unwrap().port());
        let _ = std::io::stdout().flush();
        loop {
            let (stream, _) = listener.accept().await.expect("accept");
            tokio::spawn(serve(stream));
        }
    });
}
