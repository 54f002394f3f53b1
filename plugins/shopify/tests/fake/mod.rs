//! A fake Shopify GraphQL Admin API, in process, on the test kit's `FakeServer`, built from
//! ../shared/specs/shopify:
//!
//! - `POST /admin/api/{version}/graphql.json` with `X-Shopify-Access-Token` (another token is a
//!   401 with Shopify's body); the query is parsed and validated against the real 2025-01
//!   introspection schema (an invalid one is answered with GraphQL errors and counted in
//!   `Stats::invalid`, which tests expect to stay 0);
//! - costs by Shopify's rules, charged against a leaky bucket (size and restore rate set per
//!   test): a query the bucket cannot cover is THROTTLED (200, `errors[].extensions.code`, no
//!   data, `actualQueryCost: null`); every answer carries `extensions.cost`, and a query over
//!   1,000 requested points is refused (`MAX_COST_EXCEEDED`);
//! - `customers`, `orders` (sortKey `UPDATED_AT`) and `abandonedCheckouts` (sortKey `ID`)
//!   connections with opaque cursors that name the last record's sort key, `query:` filters on
//!   `updated_at` (`>=`, `<=`, `>`, `<`, joined by `AND`), nested `lineItems` connections, the
//!   `*Count` fields, `node(id:)` for orders, checkouts and bulk operations, `shop`;
//! - bulk operations: `bulkOperationRunQuery` (one at a time before API 2026-01, five from it:
//!   `OPERATION_IN_PROGRESS` past that), `RUNNING` for a few polls, then a JSONL file served with
//!   `Range` support, line items as child lines with `__parentId` that come after their parent
//!   but not straight after it;
//! - faults on demand: 500s every Nth request, THROTTLED replies (200 with the code, or a 429
//!   with `Retry-After`), answers slower than the client waits, a truncated bulk file.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::manual_is_multiple_of,
    clippy::needless_pass_by_value,
    clippy::semicolon_if_nothing_returned,
    clippy::too_many_lines,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation
)]

pub mod graphql;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cohort_plugin_testkit::{FakeServer, Recorded, Reply};
use graphql::{Field, Selection};
use serde_json::{Map, Value, json};

/// The token the fake accepts.
pub const TOKEN: &str = "shpat_TOPSECRET_0000_1111";
/// The shop.
pub const SHOP: &str = "acme.myshopify.com";
/// The most a query may ask for.
const SINGLE_QUERY_LIMIT: u64 = 1000;

/// What the fake saw.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// GraphQL requests of any kind.
    pub requests: u64,
    /// Requests by operation name.
    pub operations: BTreeMap<String, u64>,
    /// THROTTLED replies.
    pub throttled: u64,
    /// Queries that broke the schema or the rules.
    pub invalid: u64,
    /// Invalid queries' messages.
    pub invalid_messages: Vec<String>,
    /// 500s injected.
    pub injected: u64,
    /// 429s injected.
    pub too_many: u64,
    /// Answers held back longer than the client waits.
    pub stalled: u64,
    /// Points charged (actual costs).
    pub points: f64,
    /// Records (root nodes) answered in connection pages.
    pub nodes: u64,
    /// Bulk result chunks served.
    pub chunks: u64,
    /// Bulk operations started.
    pub bulk_started: u64,
}

#[derive(Debug)]
struct BulkOp {
    id: u64,
    polls_left: u32,
    status: &'static str,
    /// Lines the operation produced (its `objectCount`).
    lines: usize,
    /// The file, written once (less any truncated lines) and served by ranges.
    body: Arc<String>,
}

/// One connection's records, by id and by `(updatedAt, id)`: a page is a range read, not a
/// sort, so a shop of a million orders answers pages as fast as a small one.
#[derive(Debug, Default)]
struct Records {
    by_id: BTreeMap<u64, Value>,
    by_updated: std::collections::BTreeSet<(i64, u64)>,
}

impl Records {
    fn updated(v: &Value) -> i64 {
        parse_time(v["updatedAt"].as_str().unwrap()).unwrap()
    }

    fn insert(&mut self, id: u64, v: Value) {
        if let Some(old) = self.by_id.get(&id) {
            self.by_updated.remove(&(Records::updated(old), id));
        }
        self.by_updated.insert((Records::updated(&v), id));
        self.by_id.insert(id, v);
    }

    fn change(&mut self, id: u64, f: impl FnOnce(&mut Value)) {
        let mut v = self.by_id[&id].clone();
        f(&mut v);
        self.insert(id, v);
    }

    fn get(&self, id: &u64) -> Option<&Value> {
        self.by_id.get(id)
    }

    fn values(&self) -> impl Iterator<Item = &Value> {
        self.by_id.values()
    }

    fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[derive(Debug)]
struct State {
    customers: Records,
    orders: Records,
    checkouts: Records,
    bucket_size: f64,
    restore: f64,
    available: f64,
    refilled: Instant,
    /// Every Nth GraphQL request fails with a 500 (0: never).
    fail_every: u64,
    too_many_next: u64,
    stall_next: u64,
    /// The next N queries are THROTTLED whatever the bucket holds.
    force_throttle: u64,
    bulk: Vec<BulkOp>,
    bulk_polls: u32,
    truncate_bulk: usize,
    stats: Stats,
    /// Shopify's clock: real time plus this.
    clock_offset: i64,
    next_id: u64,
}

/// The fake Shopify.
pub struct Fake {
    server: FakeServer,
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// `2024-05-01T12:00:00Z`.
pub fn iso(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn parse_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp())
}

fn gid(kind: &str, id: u64) -> String {
    format!("gid://shopify/{kind}/{id}")
}

fn gid_number(g: &str) -> Option<u64> {
    g.rsplit('/').next()?.split('?').next()?.parse().ok()
}

impl Fake {
    /// A fake with no records and a bucket of `size` points restoring `restore` a second.
    pub fn start(size: f64, restore: f64) -> Fake {
        let state = Arc::new(Mutex::new(State {
            customers: Records::default(),
            orders: Records::default(),
            checkouts: Records::default(),
            bucket_size: size,
            restore,
            available: size,
            refilled: Instant::now(),
            fail_every: 0,
            too_many_next: 0,
            stall_next: 0,
            force_throttle: 0,
            bulk: Vec::new(),
            bulk_polls: 2,
            truncate_bulk: 0,
            stats: Stats::default(),
            clock_offset: 0,
            next_id: 1000,
        }));
        let server = FakeServer::start();
        for version in ["2025-01", "2026-01"] {
            let s = state.clone();
            server.on(
                "POST",
                &format!("/admin/api/{version}/graphql.json"),
                move |r| graphql_answer(&s, r, version),
            );
        }
        let s = state.clone();
        let url = server.url().to_owned();
        for n in 0..64u64 {
            let s = s.clone();
            server.on("GET", &format!("/bulk/{n}.jsonl"), move |r| file(&s, n, r));
        }
        let _ = url;
        Fake { server, state }
    }

    /// The base URL to configure.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// What the fake saw.
    pub fn stats(&self) -> Stats {
        lock(&self.state).stats.clone()
    }

    /// Forgets the stats.
    pub fn reset_stats(&self) {
        lock(&self.state).stats = Stats::default();
    }

    /// Shopify's clock, in seconds.
    pub fn now(&self) -> i64 {
        chrono::Utc::now().timestamp() + lock(&self.state).clock_offset
    }

    /// Moves Shopify's clock forward.
    pub fn advance(&self, secs: i64) {
        lock(&self.state).clock_offset += secs;
    }

    /// Every `n`th GraphQL request answers 500 (0: none).
    pub fn fail_every(&self, n: u64) {
        lock(&self.state).fail_every = n;
    }

    /// The next `n` requests are answered 429 with `Retry-After: 1`, as Shopify answers a client
    /// over its request rate.
    pub fn too_many_next(&self, n: u64) {
        lock(&self.state).too_many_next = n;
    }

    /// The next `n` requests are answered only after 3 s: longer than a client with
    /// `timeout_secs = 1` waits.
    pub fn stall_next(&self, n: u64) {
        lock(&self.state).stall_next = n;
    }

    /// The next `n` queries are THROTTLED.
    pub fn throttle_next(&self, n: u64) {
        lock(&self.state).force_throttle = n;
    }

    /// Bulk operations run for this many polls (those running too).
    pub fn bulk_polls(&self, n: u32) {
        let mut s = lock(&self.state);
        s.bulk_polls = n;
        for op in &mut s.bulk {
            if op.polls_left != u32::MAX {
                op.polls_left = op.polls_left.min(n);
            }
        }
    }

    /// Bulk files leave out their last `n` lines.
    pub fn truncate_bulk(&self, n: usize) {
        lock(&self.state).truncate_bulk = n;
    }

    /// A bulk operation that is already running (another app's).
    pub fn occupy_bulk(&self) {
        let mut s = lock(&self.state);
        let id = s.bulk.len() as u64;
        s.bulk.push(BulkOp {
            id,
            polls_left: u32::MAX,
            status: "RUNNING",
            lines: 0,
            body: Arc::new(String::new()),
        });
    }

    fn take_id(s: &mut State) -> u64 {
        s.next_id += 1;
        s.next_id
    }

    /// Adds a customer updated at `at` (seconds); `consent` subscribes it to email.
    pub fn add_customer(&self, at: i64, consent: bool) -> u64 {
        let mut s = lock(&self.state);
        let id = Fake::take_id(&mut s);
        s.customers.insert(
            id,
            json!({
                "id": gid("Customer", id), "email": format!("c{id}@example.com"),
                "phone": format!("+1613555{:04}", id % 10_000), "firstName": format!("First{id}"),
                "lastName": "Example", "tags": ["vip", format!("t{}", id % 3)],
                "createdAt": iso(at - 86_400), "updatedAt": iso(at),
                "emailMarketingConsent": {"marketingState": if consent {"SUBSCRIBED"} else {"NOT_SUBSCRIBED"}, "marketingOptInLevel": "SINGLE_OPT_IN", "consentUpdatedAt": null},
                "smsMarketingConsent": {"marketingState": "NOT_SUBSCRIBED", "marketingOptInLevel": "SINGLE_OPT_IN", "consentUpdatedAt": null, "consentCollectedFrom": "OTHER"},
                "defaultAddress": {"id": gid("MailingAddress", id), "countryCodeV2": "DE", "provinceCode": "BE", "city": "Berlin", "zip": "10115", "country": "Germany", "province": "Berlin"},
                "amountSpent": {"amount": "123.45", "currencyCode": "EUR"},
                "numberOfOrders": "2", "state": "ENABLED"
            }),
        );
        id
    }

    /// Adds `n` customers updated at `at`.
    pub fn add_customers(&self, n: usize, at: i64) -> Vec<u64> {
        (0..n).map(|i| self.add_customer(at, i % 2 == 0)).collect()
    }

    /// Changes a customer now (or at `at`).
    pub fn touch_customer(&self, id: u64, at: Option<i64>) {
        let now = self.now();
        let mut s = lock(&self.state);
        s.customers.change(id, |c| {
            c["updatedAt"] = json!(iso(at.unwrap_or(now)));
            c["firstName"] = json!(format!("Changed{id}"));
        });
    }

    fn line_items(s: &mut State, lines: usize, seed: u64) -> Vec<Value> {
        (0..lines)
            .map(|i| {
                let id = Fake::take_id(s);
                json!({
                    "id": gid("LineItem", id), "title": format!("Product {}", (seed + i as u64) % 7),
                    "quantity": 1 + (i as u64 % 2), "sku": null, "variantTitle": null,
                    "product": {"id": gid("Product", 100 + (seed + i as u64) % 7), "productType": "Shoes", "title": "P"},
                    "variant": {"id": gid("ProductVariant", 200 + (seed + i as u64) % 7)},
                    "originalUnitPriceSet": {"shopMoney": {"amount": "19.90", "currencyCode": "EUR"}, "presentmentMoney": {"amount": "19.90", "currencyCode": "EUR"}}
                })
            })
            .collect()
    }

    /// Adds an order of `customer` (none: a guest) with `lines` line items, updated at `at`.
    pub fn add_order(&self, customer: Option<u64>, lines: usize, at: i64) -> u64 {
        let mut s = lock(&self.state);
        let id = Fake::take_id(&mut s);
        let items = Fake::line_items(&mut s, lines, id);
        let quantity: u64 = items.iter().map(|l| l["quantity"].as_u64().unwrap()).sum();
        let total = format!("{}.{:02}", 10 + id % 500, id % 100);
        s.orders.insert(
            id,
            json!({
                "id": gid("Order", id), "name": format!("#{id}"),
                "processedAt": iso(at - 60), "createdAt": iso(at - 60), "updatedAt": iso(at),
                "cancelledAt": if id % 11 == 0 { json!(iso(at)) } else { Value::Null },
                "currencyCode": "EUR", "subtotalLineItemsQuantity": quantity,
                "customer": customer.map(|c| json!({"id": gid("Customer", c)})),
                "totalPriceSet": {"shopMoney": {"amount": total, "currencyCode": "EUR"}, "presentmentMoney": {"amount": total, "currencyCode": "EUR"}},
                "totalRefundedSet": {"shopMoney": {"amount": if id % 5 == 0 {"5.00"} else {"0.00"}, "currencyCode": "EUR"}, "presentmentMoney": {"amount": "0.00", "currencyCode": "EUR"}},
                "lineItems": items,
            }),
        );
        id
    }

    /// Adds an abandoned checkout of `customer` with `lines` line items, updated at `at`.
    pub fn add_checkout(&self, customer: Option<u64>, lines: usize, at: i64) -> u64 {
        let mut s = lock(&self.state);
        let id = Fake::take_id(&mut s);
        let items = Fake::line_items(&mut s, lines, id);
        let quantity: u64 = items.iter().map(|l| l["quantity"].as_u64().unwrap()).sum();
        s.checkouts.insert(
            id,
            json!({
                "id": gid("AbandonedCheckout", id), "name": format!("#{id}"),
                "createdAt": iso(at - 30), "updatedAt": iso(at), "completedAt": null,
                "abandonedCheckoutUrl": format!("https://{SHOP}/cart/recover/{id}?key=k{id}"),
                "lineItemsQuantity": quantity,
                "customer": customer.map(|c| json!({"id": gid("Customer", c)})),
                "totalPriceSet": {"shopMoney": {"amount": "39.80", "currencyCode": "EUR"}, "presentmentMoney": {"amount": "39.80", "currencyCode": "EUR"}},
                "lineItems": items,
            }),
        );
        id
    }

    /// A checkout as the fake holds it (Shopify's field names).
    pub fn checkout(&self, id: u64) -> Value {
        lock(&self.state).checkouts.get(&id).unwrap().clone()
    }

    /// Completes a checkout now.
    pub fn complete_checkout(&self, id: u64) {
        let now = self.now();
        let mut s = lock(&self.state);
        s.checkouts.change(id, |c| {
            c["completedAt"] = json!(iso(now));
            c["updatedAt"] = json!(iso(now));
        });
    }
}

/// An answer with Shopify's clock in its `Date`.
fn answer_json(s: &State, body: &Value) -> Reply {
    let now = chrono::Utc::now() + chrono::Duration::seconds(s.clock_offset);
    Reply::json(body).with_header("Date", &now.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
}

fn invalid(s: &mut State, message: String, cost: Value) -> Reply {
    s.stats.invalid += 1;
    s.stats.invalid_messages.push(message.clone());
    answer_json(
        s,
        &json!({"errors": [{"message": message, "locations": []}], "extensions": {"cost": cost}}),
    )
}

fn cost_ext(s: &State, requested: u64, actual: Option<f64>) -> Value {
    json!({
        "requestedQueryCost": requested,
        "actualQueryCost": actual,
        "throttleStatus": {
            "maximumAvailable": s.bucket_size,
            "currentlyAvailable": s.available.floor(),
            "restoreRate": s.restore,
        }
    })
}

fn graphql_answer(state: &Mutex<State>, r: &Recorded, version: &str) -> Reply {
    let mut s = lock(state);
    if r.header("x-shopify-access-token") != Some(TOKEN) {
        return Reply::status(401)
            .with_json(&json!({"errors": format!("[API] Invalid API key or access token (unrecognized login or wrong password): {}", r.header("x-shopify-access-token").unwrap_or(""))}));
    }
    s.stats.requests += 1;
    if s.too_many_next > 0 {
        s.too_many_next -= 1;
        s.stats.too_many += 1;
        return Reply::status(429)
            .with_header("Retry-After", "1")
            .with_json(&json!({"errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."}));
    }
    if s.stall_next > 0 {
        s.stall_next -= 1;
        s.stats.stalled += 1;
        return Reply::status(503)
            .with_json(&json!({"errors": "stalled"}))
            .delay(Duration::from_secs(3));
    }
    if s.fail_every > 0 && s.stats.requests % s.fail_every == 0 {
        s.stats.injected += 1;
        return Reply::status(500).with_json(&json!({"errors": "Internal Server Error"}));
    }
    let body = r.json();
    let text = body["query"].as_str().unwrap_or_default();
    let vars = body["variables"].as_object().cloned().unwrap_or_default();
    let op = match graphql::parse(text) {
        Ok(op) => op,
        Err(e) => {
            let c = cost_ext(&s, 0, Some(0.0));
            return invalid(&mut s, format!("syntax error: {e}"), c);
        }
    };
    *s.stats
        .operations
        .entry(op.name.clone().unwrap_or_default())
        .or_default() += 1;
    let root = if op.kind == "mutation" {
        "Mutation"
    } else {
        "QueryRoot"
    };
    let schema = graphql::schema();
    if let Err(e) = schema.validate(root, &op.selection) {
        let c = cost_ext(&s, 0, Some(0.0));
        return invalid(&mut s, e, c);
    }
    let requested = if op.kind == "mutation" {
        10
    } else {
        schema.cost(root, &op.selection, &vars)
    };
    // The bucket: refill, then charge or throttle.
    let now = Instant::now();
    let elapsed = now.duration_since(s.refilled).as_secs_f64();
    s.available = (s.available + elapsed * s.restore).min(s.bucket_size);
    s.refilled = now;
    if requested > SINGLE_QUERY_LIMIT {
        let c = cost_ext(&s, requested, None);
        return invalid(
            &mut s,
            format!(
                "Query cost is {requested}, which exceeds the single query max cost limit (1000)."
            ),
            c,
        );
    }
    if s.force_throttle > 0 || (requested as f64) > s.available {
        s.force_throttle = s.force_throttle.saturating_sub(1);
        s.stats.throttled += 1;
        let c = cost_ext(&s, requested, None);
        return answer_json(
            &s,
            &json!({
                "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                "extensions": {"cost": c}
            }),
        );
    }
    s.available -= requested as f64;
    let mut actual = Cost::default();
    let data = match resolve_root(&mut s, &op.selection, &vars, version, r, &mut actual) {
        Ok(d) => d,
        Err(e) => {
            s.available += requested as f64;
            let c = cost_ext(&s, requested, Some(0.0));
            return invalid(&mut s, e, c);
        }
    };
    let actual = if op.kind == "mutation" {
        10.0
    } else {
        actual.0.min(requested as f64)
    };
    // Shopify gives back what the query did not use.
    s.available = (s.available + requested as f64 - actual).min(s.bucket_size);
    s.stats.points += actual;
    let c = cost_ext(&s, requested, Some(actual));
    answer_json(&s, &json!({"data": data, "extensions": {"cost": c}}))
}

/// The actual cost, counted while resolving: objects returned, connections 2 each.
#[derive(Default)]
struct Cost(f64);

fn resolve_root(
    s: &mut State,
    selection: &[Selection],
    vars: &Map<String, Value>,
    version: &str,
    r: &Recorded,
    cost: &mut Cost,
) -> Result<Value, String> {
    let mut out = Map::new();
    for sel in selection {
        let Selection::Field(f) = sel else {
            return Err("fragments at the root are not supported".into());
        };
        let arg = |name: &str| {
            f.args
                .get(name)
                .map(|a| a.value(vars))
                .unwrap_or(Value::Null)
        };
        let value = match f.name.as_str() {
            "shop" => {
                cost.0 += 1.0;
                project(
                    &json!({"name": "Acme", "id": "gid://shopify/Shop/1"}),
                    &f.selection,
                    vars,
                    cost,
                )?
            }
            "customers" | "orders" | "abandonedCheckouts" => {
                let (records, sort) = match f.name.as_str() {
                    "customers" => (&s.customers, "UPDATED_AT"),
                    "orders" => (&s.orders, "UPDATED_AT"),
                    _ => (&s.checkouts, "ID"),
                };
                let wanted = arg("sortKey");
                let sort_key = wanted.as_str().unwrap_or("ID");
                if sort_key != "ID" && sort_key != sort {
                    return Err(format!("the fake sorts {} by ID or {sort} only", f.name));
                }
                let filter = parse_filter(arg("query").as_str().unwrap_or(""))?;
                let first = arg("first").as_u64().ok_or("connections need `first`")? as usize;
                if first > 250 {
                    return Err("first: at most 250".into());
                }
                let after = match arg("after") {
                    Value::String(c) => Some(decode_cursor(&c)?),
                    _ => None,
                };
                let by_time = sort_key == "UPDATED_AT";
                let keys: Box<dyn Iterator<Item = (i64, u64)>> = if by_time {
                    // From the cursor, or from the filter's lower bound; the upper bound ends it.
                    let from = filter
                        .iter()
                        .filter(|c| c.op.starts_with('>'))
                        .map(|c| (c.at, 0))
                        .max()
                        .into_iter()
                        .chain(after.map(|(t, id)| (t, id + 1)))
                        .max()
                        .unwrap_or((i64::MIN, 0));
                    Box::new(records.by_updated.range(from..).copied())
                } else {
                    let from = after.map_or(0, |(_, id)| id + 1);
                    Box::new(records.by_id.range(from..).map(|(id, _)| (0, *id)))
                };
                let mut page: Vec<Value> = Vec::new();
                let mut last = None;
                let mut has_next = false;
                for key in keys {
                    let v = &records.by_id[&key.1];
                    let t = Records::updated(v);
                    if by_time
                        && filter
                            .iter()
                            .any(|c| c.op.starts_with('<') && !c.holds_at(t))
                    {
                        break;
                    }
                    if !filter.iter().all(|c| c.holds_at(t)) {
                        continue;
                    }
                    if page.len() == first {
                        has_next = true;
                        break;
                    }
                    page.push(v.clone());
                    last = Some(key);
                }
                let end_cursor = last.map(encode_cursor);
                s.stats.nodes += page.len() as u64;
                connection(&page, has_next, end_cursor, &f.selection, vars, cost)?
            }
            "customersCount" | "ordersCount" | "abandonedCheckoutsCount" => {
                let records = match f.name.as_str() {
                    "customersCount" => &s.customers,
                    "ordersCount" => &s.orders,
                    _ => &s.checkouts,
                };
                let filter = parse_filter(arg("query").as_str().unwrap_or(""))?;
                let n = records
                    .values()
                    .filter(|v| filter.iter().all(|c| c.holds(v)))
                    .count();
                cost.0 += 1.0;
                project(
                    &json!({"count": n, "precision": "EXACT"}),
                    &f.selection,
                    vars,
                    cost,
                )?
            }
            "node" => {
                let id = arg("id");
                let id = id.as_str().unwrap_or_default();
                let n = gid_number(id).unwrap_or(u64::MAX);
                let found = if id.contains("/Order/") {
                    s.orders.get(&n).cloned().map(|v| ("Order", v))
                } else if id.contains("/AbandonedCheckout/") {
                    s.checkouts
                        .get(&n)
                        .cloned()
                        .map(|v| ("AbandonedCheckout", v))
                } else if id.contains("/BulkOperation/") {
                    bulk_status(s, n, r).map(|v| ("BulkOperation", v))
                } else {
                    None
                };
                match found {
                    Some((ty, v)) => {
                        cost.0 += 1.0;
                        project_typed(ty, &v, &f.selection, vars, cost)?
                    }
                    None => Value::Null,
                }
            }
            "bulkOperationRunQuery" => {
                let q = arg("query");
                run_bulk(s, q.as_str().unwrap_or_default(), vars, version, r)?
            }
            other => return Err(format!("the fake does not serve `{other}`")),
        };
        out.insert(f.key().to_owned(), value);
    }
    Ok(Value::Object(out))
}

fn encode_cursor((t, id): (i64, u64)) -> String {
    // Opaque to clients, like Shopify's base64 cursors.
    format!("eyJ{t:x}x{id:x}")
}

fn decode_cursor(c: &str) -> Result<(i64, u64), String> {
    let bad = || format!("Invalid cursor `{c}`");
    let rest = c.strip_prefix("eyJ").ok_or_else(bad)?;
    let (t, id) = rest.split_once('x').ok_or_else(bad)?;
    Ok((
        i64::from_str_radix(t, 16).map_err(|_| bad())?,
        u64::from_str_radix(id, 16).map_err(|_| bad())?,
    ))
}

struct Condition {
    op: &'static str,
    at: i64,
}

impl Condition {
    fn holds(&self, v: &Value) -> bool {
        self.holds_at(Records::updated(v))
    }

    fn holds_at(&self, t: i64) -> bool {
        match self.op {
            ">=" => t >= self.at,
            "<=" => t <= self.at,
            ">" => t > self.at,
            _ => t < self.at,
        }
    }
}

/// `updated_at:>='…' AND updated_at:<='…'`: the filters the fake honours.
fn parse_filter(q: &str) -> Result<Vec<Condition>, String> {
    let mut out = Vec::new();
    for term in q.split(" AND ").map(str::trim).filter(|t| !t.is_empty()) {
        let rest = term
            .strip_prefix("updated_at:")
            .ok_or_else(|| format!("the fake filters on updated_at only: `{term}`"))?;
        let (op, value) = [">=", "<=", ">", "<"]
            .iter()
            .find_map(|op| rest.strip_prefix(op).map(|v| (*op, v)))
            .ok_or_else(|| format!("no comparison in `{term}`"))?;
        let value = value.trim_matches('\'').trim_matches('"');
        let at = parse_time(value).ok_or_else(|| format!("not a time: `{value}`"))?;
        out.push(Condition { op, at });
    }
    Ok(out)
}

fn connection(
    nodes: &[Value],
    has_next: bool,
    end_cursor: Option<String>,
    selection: &[Selection],
    vars: &Map<String, Value>,
    cost: &mut Cost,
) -> Result<Value, String> {
    cost.0 += 2.0;
    let mut out = Map::new();
    for sel in selection {
        let Selection::Field(f) = sel else { continue };
        let v = match f.name.as_str() {
            "pageInfo" => project(
                &json!({"hasNextPage": has_next, "hasPreviousPage": false, "endCursor": end_cursor, "startCursor": null}),
                &f.selection,
                vars,
                cost,
            )?,
            "nodes" => Value::Array(
                nodes
                    .iter()
                    .map(|n| {
                        cost.0 += 1.0;
                        project(n, &f.selection, vars, cost)
                    })
                    .collect::<Result<_, _>>()?,
            ),
            "edges" => Value::Array(
                nodes
                    .iter()
                    .map(|n| {
                        let mut e = Map::new();
                        for es in &f.selection {
                            if let Selection::Field(ef) = es {
                                match ef.name.as_str() {
                                    "node" => {
                                        cost.0 += 1.0;
                                        e.insert(
                                            ef.key().to_owned(),
                                            project(n, &ef.selection, vars, cost)?,
                                        );
                                    }
                                    "cursor" => {
                                        e.insert(ef.key().to_owned(), json!("c"));
                                    }
                                    _ => {}
                                }
                            }
                        }
                        Ok(Value::Object(e))
                    })
                    .collect::<Result<_, String>>()?,
            ),
            other => return Err(format!("`{other}` on a connection")),
        };
        out.insert(f.key().to_owned(), v);
    }
    Ok(Value::Object(out))
}

fn project_typed(
    ty: &str,
    v: &Value,
    selection: &[Selection],
    vars: &Map<String, Value>,
    cost: &mut Cost,
) -> Result<Value, String> {
    let mut flat = Vec::new();
    for sel in selection {
        match sel {
            Selection::Fragment(on, inner) if on == ty || on == "Node" => {
                flat.extend(inner.iter().cloned())
            }
            Selection::Fragment(..) => {}
            Selection::Field(f) => flat.push(Selection::Field(f.clone())),
        }
    }
    project(v, &flat, vars, cost)
}

/// Answers a selection from a stored object; `lineItems` is a connection over the stored list.
fn project(
    v: &Value,
    selection: &[Selection],
    vars: &Map<String, Value>,
    cost: &mut Cost,
) -> Result<Value, String> {
    let mut out = Map::new();
    for sel in selection {
        match sel {
            Selection::Fragment(_, inner) => {
                if let Value::Object(m) = project(v, inner, vars, cost)? {
                    out.extend(m);
                }
            }
            Selection::Field(f) => {
                let value = if f.name == "lineItems" {
                    let all = v["lineItems"].as_array().cloned().unwrap_or_default();
                    let first = f
                        .args
                        .get("first")
                        .map(|a| a.value(vars))
                        .and_then(|x| x.as_u64())
                        .ok_or("lineItems needs `first`")? as usize;
                    let start = match f.args.get("after").map(|a| a.value(vars)) {
                        Some(Value::String(c)) => c
                            .strip_prefix("li")
                            .and_then(|n| n.parse::<usize>().ok())
                            .ok_or("Invalid cursor")?,
                        _ => 0,
                    };
                    let page: Vec<Value> = all.iter().skip(start).take(first).cloned().collect();
                    let end = start + page.len();
                    connection(
                        &page,
                        end < all.len(),
                        Some(format!("li{end}")),
                        &f.selection,
                        vars,
                        cost,
                    )?
                } else {
                    let inner = v.get(&f.name).cloned().unwrap_or(Value::Null);
                    if f.selection.is_empty() || inner.is_null() {
                        inner
                    } else {
                        cost.0 += 1.0;
                        project(&inner, &f.selection, vars, cost)?
                    }
                };
                out.insert(f.key().to_owned(), value);
            }
        }
    }
    Ok(Value::Object(out))
}

fn run_bulk(
    s: &mut State,
    text: &str,
    _vars: &Map<String, Value>,
    version: &str,
    r: &Recorded,
) -> Result<Value, String> {
    let slots = if version >= "2026-01" { 5 } else { 1 };
    let running = s
        .bulk
        .iter()
        .filter(|b| b.status == "RUNNING" || b.status == "CREATED")
        .count();
    if running >= slots {
        return Ok(
            json!({"bulkOperation": null, "userErrors": [{"field": ["query"], "message": format!("A bulk query operation for this app and shop is already in progress: {}.", gid("BulkOperation", 0)), "code": "OPERATION_IN_PROGRESS"}]}),
        );
    }
    let op = graphql::parse(text).map_err(|e| format!("bulk query: {e}"))?;
    graphql::schema().validate("QueryRoot", &op.selection)?;
    let [Selection::Field(root)] = op.selection.as_slice() else {
        return Err("a bulk query has one root connection".into());
    };
    if root.args.contains_key("first") {
        return Err("bulk queries take no `first` on the root connection".into());
    }
    let records: &Records = match root.name.as_str() {
        "customers" => &s.customers,
        "orders" => &s.orders,
        "abandonedCheckouts" => &s.checkouts,
        other => {
            return Err(format!(
                "the fake bulk-reads customers, orders, checkouts, not {other}"
            ));
        }
    };
    let vars = Map::new();
    let filter = parse_filter(
        root.args
            .get("query")
            .map(|a| a.value(&vars))
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
            .as_str(),
    )?;
    let node_sel: Vec<Selection> = root
        .selection
        .iter()
        .filter_map(|sel| match sel {
            Selection::Field(f) if f.name == "edges" => f.selection.iter().find_map(|e| match e {
                Selection::Field(n) if n.name == "node" => Some(n.selection.clone()),
                _ => None,
            }),
            Selection::Field(f) if f.name == "nodes" => Some(f.selection.clone()),
            _ => None,
        })
        .next()
        .ok_or("a bulk query selects edges { node } or nodes")?;
    let (plain, children): (Vec<Selection>, Vec<Field>) = {
        let mut plain = Vec::new();
        let mut children = Vec::new();
        for sel in node_sel {
            match sel {
                Selection::Field(f) if f.name == "lineItems" => children.push(f),
                other => plain.push(other),
            }
        }
        (plain, children)
    };
    let child_sel: Option<Vec<Selection>> = children.first().map(|f| {
        f.selection
            .iter()
            .find_map(|e| match e {
                Selection::Field(x) if x.name == "edges" => {
                    x.selection.iter().find_map(|n| match n {
                        Selection::Field(n) if n.name == "node" => Some(n.selection.clone()),
                        _ => None,
                    })
                }
                Selection::Field(x) if x.name == "nodes" => Some(x.selection.clone()),
                _ => None,
            })
            .unwrap_or_default()
    });
    // The file is written straight into one string (a million orders' lines are over a
    // gigabyte); `ends` lets a truncated file drop its last lines.
    let mut body = String::new();
    let mut ends: Vec<usize> = Vec::new();
    let mut held: Vec<String> = Vec::new();
    let mut cost = Cost::default();
    let matching: Vec<&Value> = records
        .values()
        .filter(|v| filter.iter().all(|c| c.holds(v)))
        .collect();
    let mut write = |line: &str, body: &mut String| {
        body.push_str(line);
        body.push('\n');
        ends.push(body.len());
    };
    for (i, v) in matching.iter().enumerate() {
        write(
            &project(v, &plain, &vars, &mut cost)?.to_string(),
            &mut body,
        );
        if let Some(sel) = &child_sel {
            for item in v["lineItems"].as_array().into_iter().flatten() {
                let mut line = project(item, sel, &vars, &mut cost)?;
                line["__parentId"] = v["id"].clone();
                held.push(line.to_string());
            }
        }
        // Children of each pair of parents come after both: after their parent, not straight
        // after it.
        if i % 2 == 1 || i + 1 == matching.len() {
            for line in held.drain(..) {
                write(&line, &mut body);
            }
        }
    }
    let lines = ends.len();
    let keep = lines.saturating_sub(s.truncate_bulk);
    body.truncate(if keep == 0 { 0 } else { ends[keep - 1] });
    let id = s.bulk.len() as u64;
    let polls = s.bulk_polls;
    s.bulk.push(BulkOp {
        id,
        polls_left: polls,
        status: "CREATED",
        lines,
        body: Arc::new(body),
    });
    s.stats.bulk_started += 1;
    let _ = r;
    Ok(
        json!({"bulkOperation": {"id": gid("BulkOperation", id), "status": "CREATED"}, "userErrors": []}),
    )
}

fn bulk_status(s: &mut State, n: u64, r: &Recorded) -> Option<Value> {
    let op = s.bulk.get_mut(n as usize)?;
    if op.polls_left == u32::MAX {
        return Some(
            json!({"id": gid("BulkOperation", n), "status": "RUNNING", "objectCount": "0", "rootObjectCount": "0", "url": null, "partialDataUrl": null, "errorCode": null}),
        );
    }
    if op.polls_left > 0 {
        op.polls_left -= 1;
        op.status = "RUNNING";
    } else {
        op.status = "COMPLETED";
    }
    let host = r.header("host").unwrap_or("127.0.0.1");
    let done = op.status == "COMPLETED";
    Some(json!({
        "id": gid("BulkOperation", n), "status": op.status, "errorCode": null,
        "objectCount": (if done { op.lines } else { op.lines / 2 }).to_string(),
        "rootObjectCount": "0",
        "url": if done && op.lines > 0 { json!(format!("http://{host}/bulk/{n}.jsonl")) } else { Value::Null },
        "partialDataUrl": null,
    }))
}

/// Serves a bulk result, honouring `Range: bytes=A-B`.
fn file(state: &Mutex<State>, n: u64, r: &Recorded) -> Reply {
    let mut s = lock(state);
    if r.header("x-shopify-access-token").is_some() {
        s.stats.invalid += 1;
        s.stats
            .invalid_messages
            .push("the token was sent to the bulk file's host".into());
    }
    s.stats.chunks += 1;
    let Some(op) = s.bulk.get(n as usize) else {
        return Reply::status(404);
    };
    let body = op.body.clone();
    drop(s);
    let Some(range) = r.header("range") else {
        return Reply::text(body.as_str()).with_header("Content-Type", "application/jsonl");
    };
    let spec = range.trim_start_matches("bytes=");
    let (a, b) = spec.split_once('-').unwrap();
    let a: usize = a.parse().unwrap();
    let b: usize = b
        .parse::<usize>()
        .unwrap_or(usize::MAX)
        .min(body.len().saturating_sub(1));
    if a >= body.len() {
        return Reply::status(416).with_header("Content-Range", &format!("bytes */{}", body.len()));
    }
    Reply::status(206)
        .with_header("Content-Range", &format!("bytes {a}-{b}/{}", body.len()))
        .with_body(body[a..=b].to_owned())
}
