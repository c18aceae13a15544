// Three threads take turns on one std::sync::Mutex and sleep 60 ms holding
// it: std's futex Mutex parks the others through syscall(SYS_futex). Prints
// the time the threads waited in lock(), as they measured it.
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[inline(never)]
fn update_totals(m: &Mutex<u64>) -> Duration {
    let asked = Instant::now();
    let mut total = m.lock().unwrap();
    let waited = asked.elapsed();
    *total += 1;
    std::thread::sleep(Duration::from_millis(60));
    waited
}

fn main() {
    let m = Arc::new(Mutex::new(0u64));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                let mut waited = Duration::ZERO;
                for _ in 0..6 {
                    waited += update_totals(&m);
                    std::thread::yield_now();
                }
                waited
            })
        })
        .collect();
    let waited: Duration = threads.into_iter().map(|t| t.join().unwrap()).sum();
    println!("truth waited ms={:.3}", waited.as_secs_f64() * 1e3);
}
