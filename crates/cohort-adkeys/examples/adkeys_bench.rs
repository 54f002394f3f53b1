//! `cargo xtask bench ads` drives this: normalises and hashes N customers with six keys each,
//! for Meta (EMAIL, PHONE, FN, LN, ZIP, COUNTRY) and for Google (email, phone, given and family
//! name, region and postal code), and prints one JSON line per vendor: customers, keys, seconds,
//! customers per second. The target: 1M customers in under 2 s.
//!
//! Usage: bench [--customers N]
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::hint::black_box;
use std::time::Instant;

use cohort_adkeys::{google, meta};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--customers")
        .and_then(|i| args.get(i + 1))
        .map_or(1_000_000, |v| v.parse().unwrap());
    // Varied, realistic values, made before the clock starts.
    let firsts = ["Ann", " José ", "Mary-Ann", "ZOË", "o'brien", "Jean Luc"];
    let lasts = [
        "Smith",
        "Müller",
        "O'Neil",
        "van der Berg",
        "Nguyen",
        "DUPONT",
    ];
    let customers: Vec<[String; 6]> = (0..n)
        .map(|i| {
            [
                format!(" Customer.{i}@Example.com "),
                format!("+1 (650) {:03}-{:04}", i % 1000, i % 10_000),
                firsts[i % firsts.len()].to_owned(),
                lasts[i % lasts.len()].to_owned(),
                format!("{:05}-{:04}", 10_000 + i % 89_999, i % 10_000),
                "US".to_owned(),
            ]
        })
        .collect();

    let started = Instant::now();
    for [email, phone, first, last, zip, country] in &customers {
        let c = Some(country.as_str());
        black_box(meta::row_value(meta::Key::Email, email, c).unwrap());
        black_box(meta::row_value(meta::Key::Phone, phone, c).unwrap());
        black_box(meta::row_value(meta::Key::Fn, first, c).unwrap());
        black_box(meta::row_value(meta::Key::Ln, last, c).unwrap());
        black_box(meta::row_value(meta::Key::Zip, zip, c).unwrap());
        black_box(meta::row_value(meta::Key::Country, country, c).unwrap());
    }
    report("meta", n, started.elapsed().as_secs_f64());

    let started = Instant::now();
    for [email, phone, first, last, zip, country] in &customers {
        let region = google::region_code(country).unwrap();
        black_box(google::email(email).unwrap());
        black_box(google::phone(phone, region.as_deref()).unwrap());
        black_box(google::hashed_name(first).unwrap());
        black_box(google::hashed_name(last).unwrap());
        black_box(google::postal_code(zip, region.as_deref()).unwrap());
        black_box(region);
    }
    report("google", n, started.elapsed().as_secs_f64());
}

fn report(vendor: &str, n: usize, seconds: f64) {
    println!("{}", serde_json_line(vendor, n, seconds));
}

fn serde_json_line(vendor: &str, n: usize, seconds: f64) -> String {
    format!(
        "{{\"what\":\"hash\",\"vendor\":\"{vendor}\",\"customers\":{n},\"keys\":6,\"seconds\":{seconds:.3},\"per_second\":{:.0}}}",
        n as f64 / seconds
    )
}
