//! Throughput of the sensitive-content filter (`onair_core::filter`), recorded in
//! BENCHMARKS.md: builds a 10,000-word list (plus a 100,000-word one for the build time)
//! and checks a mix of realistic chat messages (clean, direct hits, dodged hits).
//!
//! Run: `cargo run --release -p onair-core --example filter_bench [messages]`

use std::hint::black_box;
use std::time::Instant;

use onair_core::filter::{FilterAction, WordList, check};

/// CPU seconds (user + system) this process used so far, from `/proc/self/stat`
/// (Linux; `None` elsewhere): on a shared machine the wall clock counts other
/// processes' time too, so throughput is also given per CPU second.
fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ
}

/// Deterministic xorshift, so every run checks the same words and messages.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn words(rng: &mut Rng, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            if i % 4 == 0 {
                // CJK words of 2-4 chars.
                let len = 2 + rng.below(3);
                (0..len).filter_map(|_| char::from_u32(0x4E00 + rng.below(0x5000) as u32)).collect()
            } else {
                // Latin words of 6-11 letters (short ones would match everything).
                let len = 6 + rng.below(6);
                (0..len).map(|_| (b'a' + rng.below(26) as u8) as char).collect()
            }
        })
        .collect()
}

const CLEAN: &[&str] = &[
    "hello everyone!",
    "what a great stream tonight 🎉🎉",
    "主播好，今天唱什么歌？",
    "lol that was close",
    "can you play the song from yesterday again please?",
    "666666",
    "来了来了",
    "안녕하세요 여러분",
    "gg wp",
    "first time here, love the vibe. greetings from Lisbon",
];

fn dodge(rng: &mut Rng, word: &str) -> String {
    let mut out = String::new();
    for c in word.chars() {
        let c = match rng.below(3) {
            0 => c.to_uppercase().next().unwrap_or(c),
            // Full-width form of ASCII letters.
            1 if c.is_ascii_alphanumeric() => char::from_u32(c as u32 + 0xFEE0).unwrap_or(c),
            _ => c,
        };
        out.push(c);
        out.push_str(["", " ", ".", "\u{200B}", "-", "、"][rng.below(6)]);
    }
    out
}

fn messages(rng: &mut Rng, words: &[String], n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let clean = CLEAN[rng.below(CLEAN.len())];
            match rng.below(10) {
                // 70% clean.
                0..=6 => clean.to_owned(),
                // 20% a direct hit inside normal text.
                7 | 8 => format!("{clean} {} !", words[rng.below(words.len())]),
                // 10% a dodged hit.
                _ => {
                    let word = &words[rng.below(words.len())];
                    format!("{clean} {}", dodge(rng, word))
                }
            }
        })
        .collect()
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(500_000);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);

    let big = words(&mut rng, 100_000);
    let t = Instant::now();
    let big_list = WordList::new(&big, FilterAction::Mask).expect("100k list builds");
    let big_build = t.elapsed().as_secs_f64();

    let ten_k = &big[..10_000];
    let t = Instant::now();
    let list = WordList::new(ten_k, FilterAction::Mask).expect("10k list builds");
    let build = t.elapsed().as_secs_f64();
    let room = WordList::new(["spoiler", "剧透"], FilterAction::Drop).expect("room list builds");

    let msgs = messages(&mut rng, ten_k, n);
    let bytes: usize = msgs.iter().map(String::len).sum();
    let t = Instant::now();
    let cpu_start = cpu_secs();
    let mut hits = 0usize;
    for m in &msgs {
        let v = check(&[&list, &room], black_box(m));
        hits += usize::from(v.action.is_some());
        black_box(&v);
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_start.zip(cpu_secs()).map(|(a, b)| b - a).filter(|c| *c > 0.0);

    // Same messages against the 100k list, for comparison.
    let t = Instant::now();
    for m in &msgs {
        black_box(check(&[&big_list], black_box(m)));
    }
    let big_secs = t.elapsed().as_secs_f64();

    println!("words: 10000 (build {:.1} ms); 100000 (build {:.1} ms)", build * 1e3, big_build * 1e3);
    println!(
        "messages: {n} ({:.1} bytes avg), {hits} matched ({:.1}%)",
        bytes as f64 / n as f64,
        100.0 * hits as f64 / n as f64
    );
    println!("10k words: {:.0} messages/s ({:.2} µs/message)", n as f64 / secs, secs * 1e6 / n as f64);
    if let Some(cpu) = cpu {
        println!(
            "10k words: {:.0} messages per CPU second ({:.2} µs of CPU/message)",
            n as f64 / cpu,
            cpu * 1e6 / n as f64
        );
    }
    println!("100k words: {:.0} messages/s ({:.2} µs/message)", n as f64 / big_secs, big_secs * 1e6 / n as f64);
}
