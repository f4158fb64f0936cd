//! Benchmark of the agent's read side (issue 7, item 1): the cost of reading a valid
//! credential, from 10 to 10,000 profiles, and how 1 to 64 concurrent readers scale. Each
//! figure is printed beside its target and beside a baseline measured in the same run:
//!
//! - "owner message": the read path before the read side, rebuilt here in miniature: every
//!   read is a message to the task that owns the profiles, which answers over a oneshot
//!   and then scans every profile for the next due time (as the old `Core::run` did);
//! - "Mutex<HashMap>": the obvious shared map, for the concurrent readers.
//!
//! Run: `bench/read-side.sh` (or `cargo bench -p keyport-core --bench read_side`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyport_core::agent::board::Found;
use keyport_core::agent::{Agent, AgentConfig, AgentHandle};
use keyport_core::clock::{Clock, SystemClock};
use keyport_core::config::ConfigStore;
use keyport_core::notify::SilentNotifier;
use keyport_core::store::{MemoryStore, SecretBundle};
use keyport_core::{Keyport, Secret};
use time::OffsetDateTime;

/// An agent with `n` static profiles, every credential already in memory.
fn agent(rt: &tokio::runtime::Runtime, n: usize) -> (tempfile::TempDir, Agent, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..n).map(|i| format!("profile-{i:05}")).collect();
    let mut toml = String::from("version = 1\n");
    let store = MemoryStore::default();
    for (i, name) in names.iter().enumerate() {
        toml += &format!(
            "[profiles.{name}]\npreset = \"patchworks-api-key\"\nsecrets = [\"api_key\"]\n\
             [profiles.{name}.settings]\nbase_url = \"https://app.wearepatchworks.com\"\n"
        );
        let mut b = SecretBundle::default();
        b.insert("api_key", Secret::new(format!("key-{i}")));
        b.save(&store, name).unwrap();
    }
    std::fs::write(dir.path().join("profiles.toml"), toml).unwrap();
    let kp = Arc::new(Keyport::new(ConfigStore::new(dir.path()), Arc::new(store)));
    let agent = rt.block_on(async {
        let agent = Agent::start(kp, AgentConfig::default(), Arc::new(SilentNotifier)).unwrap();
        let h = agent.handle();
        for name in &names {
            h.credential(name, 30).await.unwrap(); // renders once; from then on in memory
        }
        agent
    });
    (dir, agent, names)
}

/// The median of `n` trials (this machine is shared: single trials are noisy).
fn median(n: usize, mut trial: impl FnMut() -> f64) -> f64 {
    let mut v: Vec<f64> = (0..n).map(|_| trial()).collect();
    v.sort_by(f64::total_cmp);
    v[n / 2]
}

/// A cheap index sequence over the profiles (so reads don't all hit one cache line).
fn next(i: &mut u64, n: usize) -> usize {
    *i = i
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*i >> 33) as usize % n
}

/// Nanoseconds per read through the board (the request handler's path), `now` included;
/// reading profiles at random (`hot: false`) or always the same one.
fn board_ns(h: &AgentHandle, names: &[String], reads: u64, hot: bool) -> f64 {
    let clock = SystemClock;
    let mut idx = 1u64;
    let mut valid = 0u64;
    let start = Instant::now();
    for _ in 0..reads {
        let name = if hot {
            &names[names.len() / 2]
        } else {
            &names[next(&mut idx, names.len())]
        };
        valid += h
            .board()
            .read(name, 30, clock.now(), |f| matches!(f, Found::Valid(_))) as u64;
    }
    let ns = start.elapsed().as_nanos() as f64 / reads as f64;
    assert_eq!(valid, reads, "every read found a valid credential");
    ns
}

/// Nanoseconds per `AgentHandle::credential` (async API, an `Arc` clone per read).
fn credential_ns(
    rt: &tokio::runtime::Runtime,
    h: &AgentHandle,
    names: &[String],
    reads: u64,
) -> f64 {
    rt.block_on(async {
        let mut idx = 7u64;
        let start = Instant::now();
        for _ in 0..reads {
            let name = &names[next(&mut idx, names.len())];
            std::hint::black_box(h.credential(name, 30).await.unwrap());
        }
        start.elapsed().as_nanos() as f64 / reads as f64
    })
}

/// The old read path in miniature: a message to the owning task per read, a oneshot back,
/// and a scan of every profile for the next due time after each message.
fn owner_message_ns(rt: &tokio::runtime::Runtime, names: &[String], reads: u64) -> f64 {
    type Ask = (String, tokio::sync::oneshot::Sender<Option<Arc<String>>>);
    struct Entry {
        cred: Arc<String>,
        due: Option<OffsetDateTime>,
    }
    let now = OffsetDateTime::now_utc();
    let entries: BTreeMap<String, Entry> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let e = Entry {
                cred: Arc::new(format!("key-{i}")),
                due: Some(now + time::Duration::hours(1 + i as i64 % 7)),
            };
            (n.clone(), e)
        })
        .collect();
    rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Ask>();
        let owner = tokio::spawn(async move {
            let mut next_due = None;
            while let Some((name, reply)) = rx.recv().await {
                let _ = reply.send(entries.get(&name).map(|e| e.cred.clone()));
                next_due = entries.values().filter_map(|e| e.due).min();
            }
            next_due
        });
        let mut idx = 3u64;
        let start = Instant::now();
        for _ in 0..reads {
            let name = names[next(&mut idx, names.len())].clone();
            let (reply, answer) = tokio::sync::oneshot::channel();
            tx.send((name, reply)).unwrap();
            std::hint::black_box(answer.await.unwrap());
        }
        let ns = start.elapsed().as_nanos() as f64 / reads as f64;
        drop(tx);
        owner.await.unwrap();
        ns
    })
}

/// Total reads per second of `threads` concurrent readers for `window`.
fn concurrent(threads: usize, window: Duration, read: impl Fn(usize) -> bool + Sync) -> f64 {
    let stop = AtomicBool::new(false);
    let total = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (stop, total, read) = (&stop, &total, &read);
            s.spawn(move || {
                let mut idx = t as u64 + 11;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        n += read(next(&mut idx, usize::MAX)) as u64;
                    }
                }
                total.fetch_add(n, Ordering::Relaxed);
            });
        }
        std::thread::sleep(window);
        stop.store(true, Ordering::Relaxed);
    });
    total.load(Ordering::Relaxed) as f64 / window.as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("Keyport read-side benchmark ({cores} cores, release build)\n");
    println!("Reading a valid credential, ns per read (the wall-clock time included):");
    println!(
        "{:<10} {:>14} {:>14} {:>16} {:>16}   target",
        "profiles", "board, random", "board, one", "credential()", "old: message"
    );
    let mut board_figures = Vec::new();
    let mut kept = None;
    for n in [10, 100, 1_000, 10_000] {
        let (dir, agent, names) = agent(&rt, n);
        let h = agent.handle();
        board_ns(&h, &names, 200_000, false); // warm caches
        let board = median(5, || board_ns(&h, &names, 2_000_000, false));
        let one = median(5, || board_ns(&h, &names, 2_000_000, true));
        let cred = median(5, || credential_ns(&rt, &h, &names, 1_000_000));
        let old_reads = if n >= 10_000 { 1_000 } else { 20_000 };
        let old = median(5, || owner_message_ns(&rt, &names, old_reads));
        println!(
            "{n:<10} {board:>14.0} {one:>14.0} {cred:>16.0} {old:>16.0}   well under 1,000, flat"
        );
        board_figures.push((board, one));
        if n == 1_000 {
            kept = Some((dir, agent, names));
        } else {
            rt.block_on(agent.stop());
            drop(dir);
        }
    }
    let spread = |f: fn(&(f64, f64)) -> f64| {
        let (lo, hi) = board_figures
            .iter()
            .map(f)
            .fold((f64::MAX, 0f64), |(lo, hi), x| (lo.min(x), hi.max(x)));
        format!("{lo:.0}-{hi:.0} ns (max/min {:.2}x)", hi / lo)
    };
    println!(
        "10 -> 10,000 profiles: one profile {}; random profiles {} (the growth is cache misses over 10,000 slots, not work)\n",
        spread(|x| x.1),
        spread(|x| x.0)
    );

    let (_dir, agent, names) = kept.expect("the 1,000-profile agent");
    let h = agent.handle();
    let clock = SystemClock;
    let map: Mutex<HashMap<String, Arc<String>>> = Mutex::new(
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), Arc::new(format!("key-{i}"))))
            .collect(),
    );
    let window = Duration::from_millis(400);
    let expiry = OffsetDateTime::now_utc() + time::Duration::hours(1);
    println!("Concurrent readers, 1,000 profiles, millions of reads per second:");
    println!(
        "{:<8} {:>10} {:>8} {:>16} {:>8} {:>20}   target",
        "readers", "board", "vs 1", "Mutex<HashMap>", "vs 1", "machine ceiling"
    );
    let (mut one, mut mutex_one, mut work_one) = (0.0, 0.0, 0.0);
    for threads in [1, 2, 4, 8, 16, 32, 64] {
        let board = median(3, || {
            concurrent(threads, window, |i| {
                h.board()
                    .read(&names[i % names.len()], 30, clock.now(), |f| {
                        matches!(f, Found::Valid(_))
                    })
            })
        });
        // The same work behind a lock: look up, check the expiry against the clock, clone.
        let mutex = median(3, || {
            concurrent(threads, window, |i| {
                let now = clock.now();
                let m = map.lock().unwrap();
                let c = m.get(&names[i % names.len()]).cloned();
                drop(m);
                std::hint::black_box(c).is_some() && expiry > now
            })
        });
        // Independent work per thread: how far "scales with the cores" can go here.
        let work = median(3, || {
            concurrent(threads, window, |i| {
                std::hint::black_box(
                    names[i % names.len()].len() + clock.now().nanosecond() as usize,
                ) > 0
            })
        });
        if threads == 1 {
            (one, mutex_one, work_one) = (board, mutex, work);
        }
        println!(
            "{threads:<8} {:>10.1} {:>7.2}x {:>16.1} {:>7.2}x {:>13.1} ({:.2}x)   scales like the ceiling ({cores} cores), then flat",
            board / 1e6,
            board / one,
            mutex / 1e6,
            mutex / mutex_one,
            work / 1e6,
            work / work_one,
        );
    }
    rt.block_on(agent.stop());
}
