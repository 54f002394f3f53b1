//! `cargo xtask demo-data`: the shipped demo shop, derived from the real CDNOW purchase history.
//!
//! Orders are CDNOW's transactions as recorded (customer, day, number of CDs, dollar value, in
//! file order); only the time of day is invented. Customers get invented but plausible details
//! (names, email, country, tags, consent) and an account opened some days before their first
//! purchase. Events are invented engagement in the 120 days before the demo's as-of date
//! (1998-07-01), more of it for recent and frequent buyers, with causal order kept: an open
//! follows a delivery, a click an open, a checkout an add-to-cart, and an abandoned cart an
//! add-to-cart that did not end in an order.
//!
//! Everything is drawn from a fixed seed with one stream per record, so the files are byte-for-byte
//! reproducible and a change to one rule does not reshuffle every other column.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::paths;
use crate::rng::SplitMix64;

/// Regenerate config/demo/{customers,orders,events}.csv from the CDNOW data.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask demo-data")]
struct Args {
    /// CDNOW_master.txt [default: SHARED/data/cdnow/CDNOW_master.txt]
    #[arg(long)]
    input: Option<PathBuf>,
    /// Output folder [default: config/demo]
    #[arg(long)]
    out: Option<PathBuf>,
}

const SEED: u64 = 0x00C0_4027_1998_0701;
/// The demo's clock: 1998-07-01T00:00:00Z, the day after CDNOW's history ends.
const AS_OF_DAY: (i64, u32, u32) = (1998, 7, 1);
/// Engagement events cover this many days before the as-of date.
const EVENT_WINDOW_DAYS: i64 = 120;
const DAY: i64 = 86_400;

pub(crate) fn run(args: Vec<String>) -> Result<()> {
    let args = Args::parse_from(std::iter::once("cargo xtask demo-data".to_owned()).chain(args));
    let input = match args.input {
        Some(path) => path,
        None => paths::shared_dir()?.join("data/cdnow/CDNOW_master.txt"),
    };
    let out = args
        .out
        .unwrap_or_else(|| paths::repo_root().join("config/demo"));
    let text =
        fs::read_to_string(&input).with_context(|| format!("reading {}", input.display()))?;
    let mut transactions =
        parse_cdnow(&text).with_context(|| format!("parsing {}", input.display()))?;
    let as_of_day = days_from_civil(AS_OF_DAY.0, AS_OF_DAY.1, AS_OF_DAY.2);
    let cdnow_customers = transactions.iter().map(|t| t.customer).max().unwrap_or(0);
    transactions.extend(recent_first_orders(cdnow_customers, as_of_day));
    let customers = summarise(&transactions)?;

    let mut orders_rng = SplitMix64::stream(SEED, 0);
    let orders: Vec<Order<'_>> = transactions
        .iter()
        .map(|t| Order {
            transaction: t,
            created_at: t.day * DAY + time_of_day(&mut orders_rng),
        })
        .collect();
    let as_of = as_of_day * DAY;
    let profiles: Vec<Profile> = customers.iter().map(profile).collect();
    let events = engagement_events(&customers, &profiles, &orders, as_of);

    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let written = [
        write(
            &out,
            "customers.csv",
            &customers_csv(&customers, &profiles),
            customers.len(),
        )?,
        write(&out, "orders.csv", &orders_csv(&orders), orders.len())?,
        write(&out, "events.csv", &events_csv(&events), events.len())?,
    ];
    println!("demo data from {} (as of 1998-07-01):", input.display());
    let mut total = 0;
    for (path, rows, bytes) in &written {
        println!(
            "  {:<40} {rows:>7} rows {:>6.2} MB",
            path.display(),
            *bytes as f64 / 1e6
        );
        total += bytes;
    }
    println!("  {:<40} {:>20.2} MB", "total", total as f64 / 1e6);
    let mut kinds = [0usize; EventKind::ALL.len()];
    for e in &events {
        kinds[e.kind as usize] += 1;
    }
    let breakdown: Vec<String> = EventKind::ALL
        .iter()
        .map(|k| format!("{} {}", k.name(), kinds[*k as usize]))
        .collect();
    println!("  events: {}", breakdown.join(", "));
    Ok(())
}

fn write(dir: &Path, name: &str, text: &str, rows: usize) -> Result<(PathBuf, usize, usize)> {
    let path = dir.join(name);
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    let shown = path
        .strip_prefix(paths::repo_root())
        .map(Path::to_path_buf)
        .unwrap_or(path);
    Ok((shown, rows, text.len()))
}

// ---------------------------------------------------------------------------------------------
// Input

/// One line of CDNOW_master.txt.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Transaction {
    customer: u32,
    /// Days since 1970-01-01.
    day: i64,
    cds: u32,
    /// The dollar value exactly as written (always two decimals in the file).
    dollars: String,
}

fn parse_cdnow(text: &str) -> Result<Vec<Transaction>> {
    let mut out = Vec::with_capacity(70_000);
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let fields: Vec<&str> = line.split_whitespace().collect();
        // The master file has a header line, the sample file none.
        let is_header = line_no == 1
            && !fields
                .first()
                .is_some_and(|f| f.bytes().all(|b| b.is_ascii_digit()));
        if fields.is_empty() || is_header {
            continue;
        }
        let [id, date, cds, dollars] = fields[..] else {
            bail!("line {line_no}: expected 4 fields (customer_id date cds dollars), got {line:?}");
        };
        let customer = id
            .parse()
            .with_context(|| format!("line {line_no}: customer id {id:?}"))?;
        let day = parse_yyyymmdd(date).with_context(|| format!("line {line_no}: date {date:?}"))?;
        let cds = cds
            .parse()
            .with_context(|| format!("line {line_no}: number of CDs {cds:?}"))?;
        let valid_money = dollars.split_once('.').is_some_and(|(whole, cents)| {
            !whole.is_empty()
                && whole.bytes().all(|b| b.is_ascii_digit())
                && cents.len() == 2
                && cents.bytes().all(|b| b.is_ascii_digit())
        });
        if !valid_money {
            bail!("line {line_no}: dollar value {dollars:?} is not a plain amount with 2 decimals");
        }
        out.push(Transaction {
            customer,
            day,
            cds,
            dollars: dollars.to_owned(),
        });
    }
    if out.is_empty() {
        bail!("no transactions");
    }
    Ok(out)
}

fn parse_yyyymmdd(s: &str) -> Result<i64> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        bail!("expected YYYYMMDD");
    }
    let y: i64 = s[0..4].parse()?;
    let m: u32 = s[4..6].parse()?;
    let d: u32 = s[6..8].parse()?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        bail!("no such day");
    }
    Ok(days_from_civil(y, m, d))
}

/// CDNOW's customers all made their first purchase in early 1997, so on the demo's clock nobody
/// is new. This many invented customers join in the last 30 days before it, each with a first
/// order shaped like CDNOW's (1–4 CDs at about $12–16 each), a few with a second one, so the
/// demo can show a welcome campaign.
const RECENT_NEWCOMERS: u32 = 480;

/// Invented first (and some second) purchases of [`RECENT_NEWCOMERS`] customers whose ids follow
/// CDNOW's last one, in the 30 days before the as-of day.
fn recent_first_orders(last_cdnow_id: u32, as_of_day: i64) -> Vec<Transaction> {
    let mut out = Vec::new();
    for k in 1..=RECENT_NEWCOMERS {
        let customer = last_cdnow_id + k;
        let mut rng = SplitMix64::stream(SEED, 3 << 32 | u64::from(customer));
        let first = as_of_day - rng.between(1, 30);
        let purchase = |day: i64, rng: &mut SplitMix64| {
            let cds = rng.between(1, 4) as u32;
            let cents: i64 = (0..cds).map(|_| rng.between(1199, 1599)).sum();
            Transaction {
                customer,
                day,
                cds,
                dollars: format!("{}.{:02}", cents / 100, cents % 100),
            }
        };
        out.push(purchase(first, &mut rng));
        let days_left = as_of_day - 1 - first;
        if days_left > 0 && rng.chance(0.15) {
            let second = first + rng.between(1, days_left);
            out.push(purchase(second, &mut rng));
        }
    }
    out
}

/// What the generator needs to know about one CDNOW customer.
#[derive(Debug)]
struct CustomerHistory {
    id: u32,
    first_day: i64,
    last_day: i64,
    orders: u32,
}

/// One entry per customer, by ascending id.
fn summarise(transactions: &[Transaction]) -> Result<Vec<CustomerHistory>> {
    let max_id = transactions.iter().map(|t| t.customer).max().unwrap_or(0) as usize;
    let mut by_id: Vec<Option<CustomerHistory>> = (0..=max_id).map(|_| None).collect();
    for t in transactions {
        let slot = &mut by_id[t.customer as usize];
        match slot {
            Some(h) => {
                h.first_day = h.first_day.min(t.day);
                h.last_day = h.last_day.max(t.day);
                h.orders += 1;
            }
            None => {
                *slot = Some(CustomerHistory {
                    id: t.customer,
                    first_day: t.day,
                    last_day: t.day,
                    orders: 1,
                });
            }
        }
    }
    let customers: Vec<CustomerHistory> = by_id.into_iter().flatten().collect();
    if customers.first().is_some_and(|c| c.id == 0) {
        bail!("customer id 0 is not a valid id");
    }
    Ok(customers)
}

// ---------------------------------------------------------------------------------------------
// Customers

const FEMALE_NAMES: &[&str] = &[
    "Mary", "Jennifer", "Linda", "Patricia", "Susan", "Lisa", "Karen", "Michelle", "Laura", "Amy",
    "Angela", "Melissa", "Kimberly", "Julie", "Heather", "Nicole", "Rachel", "Sarah", "Emma",
    "Claire", "Anna", "Sophie", "Julia", "Ingrid", "Maria", "Yuki", "Priya", "Ana",
];
const MALE_NAMES: &[&str] = &[
    "James", "John", "Robert", "Michael", "David", "William", "Richard", "Thomas", "Mark",
    "Daniel", "Steven", "Paul", "Kevin", "Brian", "Jason", "Eric", "Andrew", "Chris", "Peter",
    "Oliver", "Lukas", "Pierre", "Marco", "Lars", "Kenji", "Rahul", "Carlos", "Sean",
];
const UNISEX_NAMES: &[&str] = &[
    "Alex", "Jordan", "Taylor", "Casey", "Jamie", "Morgan", "Robin", "Sam",
];
const LAST_NAMES: &[&str] = &[
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Garcia", "Wilson",
    "Anderson", "Taylor", "Thomas", "Moore", "Martin", "Jackson", "Thompson", "White", "Harris",
    "Clark", "Lewis", "Walker", "Young", "Allen", "King", "Wright", "Scott", "Green", "Baker",
    "Adams", "Nelson", "Hill", "Campbell", "Mitchell", "Roberts", "Murphy", "Evans", "Schmidt",
    "Mueller", "Dubois", "Rossi", "Jansen", "Larsen", "Nilsson", "Tanaka", "Sato", "Patel",
    "Silva", "Lopez", "Kowalski", "Byrne", "Hansen", "Meyer",
];
/// Mail providers of the late 1990s, weighted roughly by their share then.
const DOMAINS: &[(&str, f64)] = &[
    ("aol.com", 30.0),
    ("hotmail.com", 16.0),
    ("yahoo.com", 12.0),
    ("compuserve.com", 8.0),
    ("earthlink.net", 7.0),
    ("msn.com", 7.0),
    ("juno.com", 5.0),
    ("prodigy.net", 4.0),
    ("mindspring.com", 4.0),
    ("example.com", 7.0),
];
/// The generator's countries and weights (US-heavy), with a few real cities each; the first
/// cities are the likeliest.
const COUNTRIES: &[(&str, f64, &[&str])] = &[
    (
        "US",
        30.0,
        &[
            "New York",
            "Los Angeles",
            "Chicago",
            "Houston",
            "Phoenix",
            "Philadelphia",
            "San Antonio",
            "San Diego",
            "Dallas",
            "Seattle",
            "Boston",
            "Denver",
        ],
    ),
    (
        "GB",
        10.0,
        &[
            "London",
            "Manchester",
            "Birmingham",
            "Leeds",
            "Glasgow",
            "Bristol",
            "Liverpool",
        ],
    ),
    (
        "CA",
        8.0,
        &[
            "Toronto",
            "Montreal",
            "Vancouver",
            "Calgary",
            "Ottawa",
            "Edmonton",
        ],
    ),
    (
        "DE",
        8.0,
        &[
            "Berlin",
            "Hamburg",
            "Munich",
            "Cologne",
            "Frankfurt",
            "Stuttgart",
        ],
    ),
    (
        "FR",
        6.0,
        &["Paris", "Lyon", "Marseille", "Toulouse", "Nice", "Lille"],
    ),
    (
        "AU",
        5.0,
        &["Sydney", "Melbourne", "Brisbane", "Perth", "Adelaide"],
    ),
    (
        "NL",
        4.0,
        &[
            "Amsterdam",
            "Rotterdam",
            "The Hague",
            "Utrecht",
            "Eindhoven",
        ],
    ),
    (
        "ES",
        4.0,
        &["Madrid", "Barcelona", "Valencia", "Seville", "Bilbao"],
    ),
    ("IT", 4.0, &["Rome", "Milan", "Naples", "Turin", "Bologna"]),
    ("SE", 3.0, &["Stockholm", "Gothenburg", "Malmo", "Uppsala"]),
    (
        "BR",
        3.0,
        &["Sao Paulo", "Rio de Janeiro", "Brasilia", "Salvador"],
    ),
    (
        "JP",
        3.0,
        &["Tokyo", "Osaka", "Yokohama", "Nagoya", "Sapporo"],
    ),
    (
        "IN",
        3.0,
        &["Mumbai", "Delhi", "Bangalore", "Chennai", "Kolkata"],
    ),
    (
        "MX",
        2.0,
        &["Mexico City", "Guadalajara", "Monterrey", "Puebla"],
    ),
    ("PL", 2.0, &["Warsaw", "Krakow", "Wroclaw", "Gdansk"]),
    ("IE", 1.5, &["Dublin", "Cork", "Galway", "Limerick"]),
    ("NZ", 1.0, &["Auckland", "Wellington", "Christchurch"]),
    ("DK", 1.0, &["Copenhagen", "Aarhus", "Odense"]),
    ("NO", 1.0, &["Oslo", "Bergen", "Trondheim"]),
    ("CH", 1.5, &["Zurich", "Geneva", "Basel", "Bern"]),
];
/// The generator's tags and weights.
const TAGS: &[(&str, f64)] = &[
    ("vip", 3.0),
    ("wholesale", 4.0),
    ("newsletter", 15.0),
    ("returning", 12.0),
    ("influencer", 1.0),
    ("b2b", 3.0),
    ("discount-hunter", 8.0),
    ("gift-buyer", 6.0),
    ("subscriber", 10.0),
    ("loyalty-gold", 2.0),
    ("loyalty-silver", 4.0),
    ("loyalty-bronze", 6.0),
    ("churn-risk", 5.0),
    ("beta", 1.0),
    ("staff", 0.3),
    ("eco", 4.0),
    ("sale-only", 5.0),
    ("holiday", 6.0),
    ("referral", 3.0),
    ("app-user", 8.0),
];

/// The invented side of a customer.
#[derive(Debug)]
struct Profile {
    first_name: &'static str,
    last_name: &'static str,
    domain: &'static str,
    country: &'static str,
    city: &'static str,
    birth_year: Option<i64>,
    gender: Option<&'static str>,
    tags: Vec<&'static str>,
    accepts_marketing: bool,
    /// Seconds since the epoch.
    created_at: i64,
}

fn profile(c: &CustomerHistory) -> Profile {
    let mut rng = SplitMix64::stream(SEED, 1 << 32 | u64::from(c.id));
    let gender = ["female", "male", "other"][rng.weighted(&[0.52, 0.44, 0.04])];
    let gender = (!rng.chance(0.10)).then_some(gender);
    let first_name = match gender {
        Some("female") => *rng.pick(FEMALE_NAMES),
        Some("male") => *rng.pick(MALE_NAMES),
        _ if rng.chance(0.5) => *rng.pick(UNISEX_NAMES),
        _ => {
            let names = if rng.chance(0.5) {
                FEMALE_NAMES
            } else {
                MALE_NAMES
            };
            *rng.pick(names)
        }
    };
    let last_name = *rng.pick(LAST_NAMES);
    let domain = DOMAINS[rng.weighted(&DOMAINS.iter().map(|d| d.1).collect::<Vec<_>>())].0;
    let (country, _, cities) =
        COUNTRIES[rng.weighted(&COUNTRIES.iter().map(|c| c.1).collect::<Vec<_>>())];
    // Zipf-like: city k has weight 1/(k+1)^1.5, computed without powf for reproducibility.
    let city_weights: Vec<f64> = (1..=cities.len())
        .map(|k| 1.0 / (k as f64 * (k as f64).sqrt()))
        .collect();
    let city = cities[rng.weighted(&city_weights)];
    // Born 1940–1982: every customer is at least 15 on the demo's as-of date.
    let birth_year = (!rng.chance(0.15)).then(|| rng.between(1940, 1982));
    let n_tags = rng.weighted(&[0.35, 0.35, 0.2, 0.1]);
    let tag_weights: Vec<f64> = TAGS.iter().map(|t| t.1).collect();
    let mut tags: Vec<&'static str> = Vec::new();
    for _ in 0..n_tags {
        let tag = TAGS[rng.weighted(&tag_weights)].0;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    let accepts_marketing = rng.chance(0.60);
    // Signed up 1–90 days before the first purchase, most of them shortly before.
    let u = rng.unit();
    let days_before = 1 + (89.0 * u * u) as i64;
    let created_at = (c.first_day - days_before) * DAY + time_of_day(&mut rng);
    Profile {
        first_name,
        last_name,
        domain,
        country,
        city,
        birth_year,
        gender,
        tags,
        accepts_marketing,
        created_at,
    }
}

fn customers_csv(customers: &[CustomerHistory], profiles: &[Profile]) -> String {
    let mut out = String::with_capacity(customers.len() * 120);
    out.push_str(
        "id,email,first_name,last_name,country,city,birth_year,gender,tags,accepts_marketing,created_at\n",
    );
    for (c, p) in customers.iter().zip(profiles) {
        let email = format!("{}.{}{}@{}", p.first_name, p.last_name, c.id, p.domain).to_lowercase();
        let birth_year = p.birth_year.map(|y| y.to_string()).unwrap_or_default();
        // Shopify quotes its comma-separated tag list; quoting even a single tag keeps the
        // column uniform.
        let tags = if p.tags.is_empty() {
            String::new()
        } else {
            format!("\"{}\"", p.tags.join(","))
        };
        let _ = writeln!(
            out,
            "{},{email},{},{},{},{},{birth_year},{},{tags},{},{}",
            c.id,
            p.first_name,
            p.last_name,
            p.country,
            csv_field(p.city),
            p.gender.unwrap_or(""),
            p.accepts_marketing,
            datetime(p.created_at),
        );
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// Orders

#[derive(Debug)]
struct Order<'a> {
    transaction: &'a Transaction,
    /// Seconds since the epoch: the recorded day plus an invented time of day.
    created_at: i64,
}

fn orders_csv(orders: &[Order<'_>]) -> String {
    let mut out = String::with_capacity(orders.len() * 45);
    out.push_str("id,customer_id,created_at,total_price,items\n");
    for (i, o) in orders.iter().enumerate() {
        let t = o.transaction;
        let _ = writeln!(
            out,
            "{},{},{},{},{}",
            i + 1,
            t.customer,
            datetime(o.created_at),
            t.dollars,
            t.cds
        );
    }
    out
}

/// Shopping hours: quiet at night, busiest in the evening. Seconds into the day.
fn time_of_day(rng: &mut SplitMix64) -> i64 {
    const HOUR_WEIGHTS: [f64; 24] = [
        1.5, 1.0, 0.6, 0.4, 0.3, 0.4, 0.8, 1.5, 2.5, 3.5, 4.0, 4.5, 5.0, 4.5, 4.5, 4.5, 4.5, 5.0,
        5.5, 6.5, 7.0, 6.5, 4.5, 2.5,
    ];
    rng.weighted(&HOUR_WEIGHTS) as i64 * 3600 + rng.between(0, 3599)
}

// ---------------------------------------------------------------------------------------------
// Events

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum EventKind {
    EmailDelivered,
    EmailOpen,
    EmailClick,
    PageView,
    AddToCart,
    CheckoutStarted,
    CartAbandoned,
}

impl EventKind {
    const ALL: [EventKind; 7] = [
        EventKind::EmailDelivered,
        EventKind::EmailOpen,
        EventKind::EmailClick,
        EventKind::PageView,
        EventKind::AddToCart,
        EventKind::CheckoutStarted,
        EventKind::CartAbandoned,
    ];

    fn name(self) -> &'static str {
        match self {
            EventKind::EmailDelivered => "email_delivered",
            EventKind::EmailOpen => "email_open",
            EventKind::EmailClick => "email_click",
            EventKind::PageView => "page_view",
            EventKind::AddToCart => "add_to_cart",
            EventKind::CheckoutStarted => "checkout_started",
            EventKind::CartAbandoned => "cart_abandoned",
        }
    }
}

#[derive(Debug)]
struct Event {
    at: i64,
    customer: u32,
    /// Generation order: keeps cause before effect when both fall in the same second.
    seq: u32,
    kind: EventKind,
}

/// Collects one customer's events, dropping any at or after the as-of instant (an effect is
/// always later than its cause, so dropping never leaves an effect without its cause).
struct Timeline<'a> {
    events: &'a mut Vec<Event>,
    customer: u32,
    start: i64,
    as_of: i64,
}

impl Timeline<'_> {
    fn push(&mut self, at: i64, kind: EventKind) -> bool {
        if at < self.start || at >= self.as_of {
            return false;
        }
        let seq = self.events.len() as u32;
        self.events.push(Event {
            at,
            customer: self.customer,
            seq,
            kind,
        });
        true
    }

    /// Page views from `at` on, a few seconds to minutes apart; returns when the last one was.
    fn browse(&mut self, rng: &mut SplitMix64, mut at: i64, pages: i64) -> i64 {
        for page in 0..pages {
            if page > 0 {
                at += rng.between(10, 240);
            }
            self.push(at, EventKind::PageView);
        }
        at
    }
}

fn engagement_events(
    customers: &[CustomerHistory],
    profiles: &[Profile],
    orders: &[Order<'_>],
    as_of: i64,
) -> Vec<Event> {
    let start = as_of - EVENT_WINDOW_DAYS * DAY;
    let as_of_day = as_of / DAY;
    // Campaigns go out every other Tuesday at 10:00 (1998-03-03 was a Tuesday).
    let campaigns: Vec<i64> = (0..)
        .map(|i| start + i * 14 * DAY + 10 * 3600)
        .take_while(|t| *t < as_of)
        .collect();
    // Each in-window order gets its shopping session, so index them by customer.
    let mut orders_in_window: Vec<Vec<i64>> = vec![Vec::new(); customers.len()];
    let index_of = |id: u32| customers.binary_search_by_key(&id, |c| c.id).ok();
    for o in orders {
        if o.created_at >= start
            && o.created_at < as_of
            && let Some(i) = index_of(o.transaction.customer)
        {
            orders_in_window[i].push(o.created_at);
        }
    }

    let mut events = Vec::new();
    for ((c, p), window_orders) in customers.iter().zip(profiles).zip(&orders_in_window) {
        let mut rng = SplitMix64::stream(SEED, 2 << 32 | u64::from(c.id));
        let days_since = as_of_day - c.last_day;
        let activity = 0.55 * f64::from(u8::from(days_since <= EVENT_WINDOW_DAYS))
            + 0.25 * f64::from(u8::from(days_since <= 365))
            + 0.20 * f64::from(c.orders.min(10)) / 10.0;
        let mut tl = Timeline {
            events: &mut events,
            customer: c.id,
            start,
            as_of,
        };

        for &order_at in window_orders {
            // The session that ended in this order, laid out backwards from the order. Tracking
            // sees about 60% of them (blockers, other devices); a session that began before the
            // window is left out whole rather than cut.
            if !rng.chance(0.6) {
                continue;
            }
            let checkout = order_at - rng.between(60, 600);
            let added = checkout - rng.between(30, 300);
            let pages: Vec<i64> = (0..rng.between(1, 4))
                .map(|_| rng.between(10, 240))
                .collect();
            let first_page = added - pages.iter().sum::<i64>();
            if first_page < start {
                continue;
            }
            let mut at = first_page;
            for gap in pages {
                tl.push(at, EventKind::PageView);
                at += gap;
            }
            tl.push(added, EventKind::AddToCart);
            tl.push(checkout, EventKind::CheckoutStarted);
        }

        let engaged = !window_orders.is_empty() || rng.chance(0.04 + 0.6 * activity);
        if !engaged {
            continue;
        }
        if p.accepts_marketing && rng.chance(0.2 + 0.4 * activity) {
            let open_rate = 0.10 + 0.35 * activity;
            let click_rate = 0.08 + 0.25 * activity;
            for &send in &campaigns {
                let delivered = send + rng.between(0, 1800);
                if !tl.push(delivered, EventKind::EmailDelivered) || !rng.chance(open_rate) {
                    continue;
                }
                let u = rng.unit();
                let opened = delivered + 60 + (3.0 * DAY as f64 * u * u) as i64;
                if !tl.push(opened, EventKind::EmailOpen) || !rng.chance(click_rate) {
                    continue;
                }
                let clicked = opened + rng.between(5, 600);
                if tl.push(clicked, EventKind::EmailClick) {
                    let landed = clicked + rng.between(1, 20);
                    let pages = rng.between(1, 4);
                    tl.browse(&mut rng, landed, pages);
                }
            }
        }

        // Sessions that did not end in an order.
        let sessions = (rng.unit() * (0.5 + 3.0 * activity)) as i64;
        for _ in 0..sessions {
            let day = start / DAY + rng.between(0, EVENT_WINDOW_DAYS - 1);
            let session_start = day * DAY + time_of_day(&mut rng);
            let pages = rng.between(1, 5);
            let at = tl.browse(&mut rng, session_start, pages);
            if !rng.chance(0.3) {
                continue;
            }
            let added = at + rng.between(5, 60);
            if !tl.push(added, EventKind::AddToCart) {
                continue;
            }
            let mut last = added;
            if rng.chance(0.4) {
                last = added + rng.between(30, 300);
                tl.push(last, EventKind::CheckoutStarted);
            }
            // Shopify calls a cart abandoned after an hour without an order.
            if rng.chance(0.8) {
                tl.push(last + 3600 + rng.between(0, 600), EventKind::CartAbandoned);
            }
        }
    }
    events.sort_by_key(|e| (e.at, e.customer, e.seq));
    events
}

fn events_csv(events: &[Event]) -> String {
    let mut out = String::with_capacity(events.len() * 45);
    out.push_str("customer_id,kind,occurred_at\n");
    for e in events {
        let _ = writeln!(out, "{},{},{}", e.customer, e.kind.name(), datetime(e.at));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Calendar (proleptic Gregorian, UTC), after Howard Hinnant's `days_from_civil`.

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of seconds since the epoch.
fn datetime(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(DAY));
    let s = secs.rem_euclid(DAY);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips_and_knows_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1998, 7, 1), 10_408);
        for z in -1000..40_000 {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(
            datetime(days_from_civil(1997, 1, 1) * DAY + 3661),
            "1997-01-01 01:01:01"
        );
    }

    #[test]
    fn newcomers_follow_cdnow_ids_and_buy_within_the_last_30_days() {
        let as_of_day = days_from_civil(1998, 7, 1);
        let orders = recent_first_orders(23_570, as_of_day);
        assert_eq!(
            orders,
            recent_first_orders(23_570, as_of_day),
            "reproducible"
        );
        let mut ids: Vec<u32> = orders.iter().map(|t| t.customer).collect();
        ids.dedup();
        assert_eq!(ids.len(), RECENT_NEWCOMERS as usize);
        assert_eq!(ids.first(), Some(&23_571));
        for t in &orders {
            assert!((as_of_day - 30..as_of_day).contains(&t.day), "{t:?}");
            assert!((1..=4).contains(&t.cds), "{t:?}");
            let dollars: f64 = t.dollars.parse().expect("amount");
            assert!(dollars >= 11.99 * f64::from(t.cds) && dollars <= 15.99 * f64::from(t.cds));
        }
        assert!(
            orders.len() > ids.len(),
            "some come back for a second order"
        );
    }

    #[test]
    fn parses_cdnow_lines_and_rejects_bad_ones() {
        let text = "customer_id date cds dollars\r\n 00001 19970101 1 11.77\r\n 00002 19970112 5 77.00\r\n";
        let t = parse_cdnow(text).expect("valid input");
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].customer, t[0].cds, t[0].dollars.as_str()),
            (1, 1, "11.77")
        );
        assert_eq!(t[1].day, days_from_civil(1997, 1, 12));
        let err = parse_cdnow("h\n 1 19970230 1 1.00\n").expect_err("Feb 30th");
        assert!(format!("{err:#}").contains("line 2"), "{err:#}");
        assert!(parse_cdnow("h\n 1 19970101 1 1.5\n").is_err());
    }

    #[test]
    fn events_keep_cause_before_effect() {
        let text = (1..=300)
            .map(|i| format!(" {i} 19980{}15 2 20.00\n", 1 + i % 6))
            .collect::<String>();
        let transactions = parse_cdnow(&text).expect("valid input");
        let customers = summarise(&transactions).expect("customers");
        let profiles: Vec<Profile> = customers.iter().map(profile).collect();
        let mut rng = SplitMix64::new(1);
        let orders: Vec<Order<'_>> = transactions
            .iter()
            .map(|t| Order {
                transaction: t,
                created_at: t.day * DAY + time_of_day(&mut rng),
            })
            .collect();
        let as_of = days_from_civil(1998, 7, 1) * DAY;
        let events = engagement_events(&customers, &profiles, &orders, as_of);
        assert!(!events.is_empty());
        let mut seen_by_customer = std::collections::HashMap::<u32, [usize; 7]>::new();
        for e in &events {
            assert!(e.at < as_of && e.at >= as_of - EVENT_WINDOW_DAYS * DAY);
            let seen = seen_by_customer.entry(e.customer).or_default();
            let before = |k: EventKind| seen[k as usize];
            match e.kind {
                EventKind::EmailOpen => {
                    assert!(before(EventKind::EmailDelivered) > before(EventKind::EmailOpen));
                }
                EventKind::EmailClick => {
                    assert!(before(EventKind::EmailOpen) > before(EventKind::EmailClick));
                }
                EventKind::CheckoutStarted | EventKind::CartAbandoned => {
                    assert!(before(EventKind::AddToCart) > 0);
                }
                _ => {}
            }
            seen[e.kind as usize] += 1;
        }
    }
}
