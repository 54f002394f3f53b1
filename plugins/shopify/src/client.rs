//! Shopify's GraphQL Admin API through the host: one POST per query to
//! `{base}/admin/api/{version}/graphql.json` with `X-Shopify-Access-Token`, paced to the shop's
//! cost bucket ([`throttle`](crate::throttle)), with THROTTLED replies waited out and retried,
//! and every error said in Shopify's words and the operation's name, never with the token.
//!
//! **Paged passes** (the SDK's `Paged`). Each pass reads a window `updated_at:>='SINCE'` (the
//! watermark; absent on a first sync) `AND updated_at:<='UPPER'`, where UPPER is Shopify's clock
//! (its `Date`) a couple of seconds before the pass began, fixed for the whole pass and kept in
//! the token. Customers and orders are sorted by `UPDATED_AT`, abandoned checkouts by `ID` (they
//! have no such sort key in 2025-01). Every record is marked with its `updatedAt` and id, so the
//! pager's watermark is the newest one handed over, which is at most UPPER: a record changed
//! while the pass runs gets a later `updatedAt`, falls outside the window and is read by the
//! next pass, however the pass is sorted. Records sharing the watermark's second are told apart
//! by id; one read twice at a window's edge is harmless (the store keeps one).
//!
//! **Bulk first syncs** are in [`bulk`](crate::bulk); this module drives them from `request`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cohort_plugin_api::cohort_core::hash::fnv1a_64;
use cohort_plugin_api::prelude::*;
use cohort_plugin_api::sdk::Level;
use cohort_plugin_api::sdk::paged::{Mark, Paged, VendorPage};
use cohort_plugin_api::wire::ConfigIssue;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::bulk::{self, Bulk};
use crate::config::{InitialSync, ShopifyStream, Valid};
use crate::mapping::{self, CheckoutRead, OrderRead};
use crate::query;
use crate::throttle::{self, Bucket, Cost};

/// Replies THROTTLED in a row before the pull gives up for now.
const MAX_THROTTLED: u32 = 30;
/// How far before Shopify's clock a pass's window ends.
const SETTLE: Duration = Duration::from_secs(2);

/// Where a vendor page is: the pager keeps it in the cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "read", rename_all = "snake_case", deny_unknown_fields)]
pub enum Token {
    /// A page of the connection after Shopify's cursor `after` (none: the first).
    Page {
        /// The pass's window ends here (RFC 3339).
        upper: String,
        /// Shopify's `endCursor` of the page before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    /// A chunk of a bulk operation's result.
    Bulk(Bulk),
}

/// A request the pager is sending: what it was and what it may cost.
#[derive(Debug, Clone)]
struct Pending {
    token: Token,
    request: Request,
    operation: &'static str,
    cost: u32,
}

/// Shopify's API for one source instance.
#[derive(Debug)]
pub struct Api {
    host: Host,
    client: Client,
    /// For bulk result files: no token, ever (they are on Google's storage, not the shop).
    files: Client,
    config: Valid,
    bucket: Arc<Mutex<Bucket>>,
    /// Shopify's clock at its last answer, and when that was here.
    clock: Option<(chrono::DateTime<chrono::Utc>, Instant)>,
    pending: Option<Pending>,
    probed: bool,
    /// Pages read and records handed over, for progress.
    pages: u64,
    records: u64,
}

/// A GraphQL answer's top level.
#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    errors: Option<Value>,
    #[serde(default)]
    extensions: Option<Extensions>,
}

#[derive(Debug, Deserialize)]
struct Extensions {
    #[serde(default)]
    cost: Option<Cost>,
}

impl Api {
    /// The API of a validated config.
    pub fn new(host: Host, config: Valid) -> Api {
        let key = format!(
            "{}:{:016x}",
            config.shop,
            fnv1a_64(config.access_token.as_bytes())
        );
        let client = Client::new(host, config.base.clone())
            .secret_header(
                "/access_token",
                "X-Shopify-Access-Token",
                &config.access_token,
            )
            .header("Accept", "application/json")
            .account(format!("shopify-{key}"))
            // The cost bucket paces the queries; this only keeps a burst of cheap ones sane.
            .rate_limit(50.0, 50)
            .timeout(config.timeout);
        let files = Client::new(host, String::new())
            .account(format!("shopify-files-{}", config.shop))
            .rate_limit(50.0, 50)
            .timeout(Duration::from_secs(120));
        Api {
            host,
            client,
            files,
            bucket: throttle::shared(&key),
            config,
            clock: None,
            pending: None,
            probed: false,
            pages: 0,
            records: 0,
        }
    }

    /// The validated config.
    pub fn config(&self) -> &Valid {
        &self.config
    }

    /// The shop's bucket, as this process knows it.
    pub fn bucket(&self) -> Bucket {
        self.bucket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The host.
    pub fn host(&self) -> Host {
        self.host
    }

    /// The client for bulk result files.
    pub fn files(&self) -> &Client {
        &self.files
    }

    /// Shopify's clock now.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        match self.clock {
            Some((at, seen)) => at + chrono::Duration::from_std(seen.elapsed()).unwrap_or_default(),
            None => chrono::Utc::now(),
        }
    }

    /// The end of a new pass's window: Shopify's clock, a little back, to the second.
    pub fn upper(&self) -> String {
        let at = self.now() - chrono::Duration::from_std(SETTLE).unwrap_or_default();
        at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    /// The first request of an instance: a cheap query that checks the token and learns the
    /// bucket's size before any page is sized by it.
    pub fn probe(&mut self) -> Result<(), PluginError> {
        if self.probed {
            return Ok(());
        }
        self.query("ShopProbe", query::SHOP, &json!({}), 1)?;
        self.probed = true;
        Ok(())
    }

    /// The largest page of `stream` that fits the single-query limit and the bucket.
    pub fn page_size(&self, stream: ShopifyStream) -> u32 {
        let bucket = self.bucket().maximum().unwrap_or(1000.0);
        query::page_size(stream, bucket as u32)
    }

    /// A GraphQL request, not yet sent.
    fn graphql(&self, text: &str, variables: &Value) -> Result<Request, PluginError> {
        let mut request = self
            .client
            .post(&self.config.graphql_path())
            // Queries read; repeating one is harmless.
            .retry(true)
            .json(&json!({"query": text, "variables": variables}))?;
        for status in [401, 403, 429] {
            request = request.allow(status);
        }
        Ok(request)
    }

    /// Runs a query (or mutation) and returns its `data`: paced, THROTTLED retried, errors
    /// mapped.
    pub fn query(
        &mut self,
        operation: &'static str,
        text: &str,
        variables: &Value,
        cost: u32,
    ) -> Result<Value, PluginError> {
        let request = self.graphql(text, variables)?;
        self.exchange(operation, &request, cost, None)
    }

    /// Waits until the bucket holds `cost`, and takes it.
    fn pace(&self, cost: u32) -> Result<(), PluginError> {
        loop {
            let wait = self
                .bucket
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .reserve(f64::from(cost), Instant::now());
            if wait.is_zero() {
                return Ok(());
            }
            sleep(&self.host, wait)?;
        }
    }

    /// Sends `request` (unless `first` is its answer already) until it is not THROTTLED, and
    /// reads the answer.
    fn exchange(
        &mut self,
        operation: &'static str,
        request: &Request,
        cost: u32,
        mut first: Option<Response>,
    ) -> Result<Value, PluginError> {
        let mut throttled = 0;
        loop {
            let response = match first.take() {
                Some(r) => r,
                None => {
                    self.pace(cost)?;
                    self.host.check_cancelled()?;
                    request.clone().send()?
                }
            };
            match self.read(operation, &response)? {
                Some(data) => return Ok(data),
                None => {
                    throttled += 1;
                    if throttled >= MAX_THROTTLED {
                        return Err(PluginError::retry(
                            format!(
                                "Shopify throttled the {operation} query {throttled} times in a \
                                 row for {}; the pull goes on from here later",
                                self.config.shop
                            ),
                            Some(Duration::from_secs(30)),
                        ));
                    }
                    let wait = self
                        .bucket
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .wait_for(f64::from(cost), Instant::now());
                    let wait = response.retry_after().map_or(wait, |r| r.max(wait));
                    sleep(&self.host, wait)?;
                }
            }
        }
    }

    /// Reads an answer: its `data`, or `None` when it was THROTTLED.
    fn read(
        &mut self,
        operation: &'static str,
        response: &Response,
    ) -> Result<Option<Value>, PluginError> {
        if let Some(date) = response
            .header("date")
            .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
        {
            self.clock = Some((date.with_timezone(&chrono::Utc), Instant::now()));
        }
        let status = response.status();
        if status == 401 || status == 403 {
            return Err(self.rejected_token());
        }
        let answer: Option<Answer> = serde_json::from_str(response.text()).ok();
        if let Some(cost) = answer
            .as_ref()
            .and_then(|a| a.extensions.as_ref())
            .and_then(|e| e.cost.as_ref())
        {
            self.bucket
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .observe(cost, Instant::now());
        }
        let codes: Vec<String> = answer
            .as_ref()
            .and_then(|a| a.errors.as_ref())
            .and_then(Value::as_array)
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e.pointer("/extensions/code").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if status == 429 || codes.iter().any(|c| c == "THROTTLED") {
            self.bucket
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .throttled += 1;
            self.host.debug(&format!(
                "Shopify throttled the {operation} query; waiting for the bucket"
            ));
            return Ok(None);
        }
        if codes.iter().any(|c| c == "ACCESS_DENIED") {
            return Err(self.rejected_token());
        }
        let Some(answer) = answer else {
            return Err(PluginError::failed(format!(
                "Shopify answered the {operation} query for {} with {status} and a body that is \
                 not GraphQL JSON: {}",
                self.config.shop,
                self.scrub(&response.excerpt())
            )));
        };
        if let Some(errors) = answer.errors.as_ref().and_then(Value::as_array)
            && !errors.is_empty()
        {
            let said: Vec<String> = errors
                .iter()
                .map(|e| {
                    let message = e.get("message").and_then(Value::as_str).unwrap_or("?");
                    match e.pointer("/extensions/code").and_then(Value::as_str) {
                        Some(code) => format!("{message} ({code})"),
                        None => message.to_owned(),
                    }
                })
                .collect();
            return Err(PluginError::failed(self.scrub(&format!(
                "Shopify refused the {operation} query for {}: {}",
                self.config.shop,
                said.join("; ")
            ))));
        }
        answer.data.map(Some).ok_or_else(|| {
            PluginError::failed(format!(
                "Shopify answered the {operation} query for {} without data",
                self.config.shop
            ))
        })
    }

    fn rejected_token(&self) -> PluginError {
        PluginError::Config(vec![ConfigIssue {
            path: "/access_token".into(),
            message: format!(
                "the access token was rejected for {} (scopes needed: read_customers, \
                 read_orders, read_all_orders for orders older than 60 days)",
                self.config.shop
            ),
        }])
    }

    /// `text` without the token, whatever Shopify echoed.
    fn scrub(&self, text: &str) -> String {
        text.replace(&self.config.access_token, "[REDACTED]")
    }

    /// The `query:` filter of a pass's window.
    pub fn window(since: Option<&Mark>, upper: &str) -> String {
        match since {
            Some(m) => format!(
                "updated_at:>='{}' AND updated_at:<='{upper}'",
                m.at.to_datetime().format("%Y-%m-%dT%H:%M:%SZ")
            ),
            None => format!("updated_at:<='{upper}'"),
        }
    }

    /// Whether a first sync of `stream` reads in bulk.
    fn wants_bulk(&mut self, stream: ShopifyStream, filter: &str) -> Result<bool, PluginError> {
        match self.config.initial_sync {
            InitialSync::Paged => Ok(false),
            InitialSync::Bulk => Ok(true),
            InitialSync::Auto => {
                let data = self.query(
                    "StreamCount",
                    &query::count(stream),
                    &json!({"query": filter}),
                    1,
                )?;
                let count = data
                    .pointer("/count/count")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                let bulk = count > self.config.bulk_threshold;
                self.host.info(&format!(
                    "{} holds {count} {}: reading the first sync {}",
                    self.config.shop,
                    stream.name(),
                    if bulk {
                        format!(
                            "with a bulk operation (more than {})",
                            self.config.bulk_threshold
                        )
                    } else {
                        "in pages".to_owned()
                    }
                ));
                Ok(bulk)
            }
        }
    }

    /// Line items after the first page of a long order or checkout.
    fn more_line_items(
        &mut self,
        stream: ShopifyStream,
        gid: &str,
        mut after: Option<String>,
        items: &mut Vec<Value>,
    ) -> Result<(), PluginError> {
        let text = query::more_line_items(stream);
        while let Some(cursor) = after.take() {
            let data = self.query(
                query::MORE_LINE_ITEMS,
                &text,
                &json!({"id": gid, "after": cursor}),
                query::more_line_items_cost(),
            )?;
            let lines = data
                .pointer("/node/lineItems")
                .cloned()
                .unwrap_or(Value::Null);
            items.extend(
                lines
                    .get("nodes")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            );
            if lines.pointer("/pageInfo/hasNextPage") == Some(&Value::Bool(true)) {
                after = lines
                    .pointer("/pageInfo/endCursor")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
        }
        Ok(())
    }

    /// Reads one node of `stream` into `page`, placed at its `updatedAt`.
    pub fn read_node(
        stream: ShopifyStream,
        node: &Value,
        items: &[Value],
        page: &mut VendorPage<Token>,
    ) {
        let gid = node.get("id").and_then(Value::as_str).unwrap_or("?");
        let name = match stream {
            ShopifyStream::Customers => "customer",
            ShopifyStream::Orders => "order",
            ShopifyStream::AbandonedCheckouts => "abandoned checkout",
        };
        let location = format!("{name} {}", mapping::gid_number(gid));
        let mark = match mapping::mark(node) {
            Ok(m) => m,
            Err(why) => return page.reject(location, why),
        };
        match stream {
            ShopifyStream::Customers => match mapping::customer(node) {
                Ok(c) => page.push_marked(c, mark),
                Err(why) => page.reject(location, why),
            },
            ShopifyStream::Orders => match mapping::order(node, items) {
                Ok(OrderRead::Order(o)) => page.push_marked(o, mark),
                Ok(OrderRead::NoCustomer) => page.reject(location, mapping::NO_CUSTOMER),
                Err(why) => page.reject(location, why),
            },
            ShopifyStream::AbandonedCheckouts => match mapping::checkout(node, items) {
                Ok(CheckoutRead::Abandoned(e)) => page.push_marked(e, mark),
                Ok(CheckoutRead::Completed(id)) => page.delete(mapping::event_id(&id), mark),
                // No one to remind: nothing to store.
                Ok(CheckoutRead::NoCustomer) => {}
                Err(why) => page.reject(location, why),
            },
        }
    }

    /// Reports where the pull is: records so far through the host's progress service (the
    /// total is unknown while paging), and pages with the bucket's level in the logs.
    fn report(&mut self, stream: ShopifyStream, records: usize) {
        self.pages += 1;
        self.records += records as u64;
        self.host.progress(self.records, None);
        let bucket = self.bucket();
        self.host.log_with(
            Level::Debug,
            "Page read",
            &json!({
                "stream": stream.name(),
                "pages": self.pages,
                "records": self.records,
                "bucket": bucket.available(Instant::now()).map(f64::round),
                "bucket_size": bucket.maximum(),
                "points_used": bucket.used.round(),
                "throttled": bucket.throttled,
            }),
        );
    }

    /// The bulk key of a stream in the host's state.
    fn bulk_key(stream: ShopifyStream) -> String {
        format!("bulk/{}", stream.name())
    }
}

/// Sleeps `total`, waking to see whether the host cancelled the work.
pub fn sleep(host: &Host, total: Duration) -> Result<(), PluginError> {
    let end = Instant::now() + total;
    loop {
        host.check_cancelled()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(100)));
    }
}

impl Paged for Api {
    type Token = Token;

    fn request(
        &mut self,
        stream: Stream,
        token: Option<&Token>,
        since: Option<&Mark>,
    ) -> Result<Request, PluginError> {
        let s = ShopifyStream::of(stream)
            .ok_or_else(|| PluginError::Unsupported(format!("Shopify has no {stream} stream")))?;
        self.probe()?;
        let token = match token {
            Some(t) => t.clone(),
            None => {
                let upper = self.upper();
                let filter = Api::window(since, &upper);
                let key = Api::bulk_key(s);
                // A bulk operation a killed run started, if it is still there.
                let resumed = match since {
                    None => bulk::resume(self, s, &key)?,
                    Some(_) => None,
                };
                match resumed {
                    Some(b) => Token::Bulk(b),
                    None if since.is_none() && self.wants_bulk(s, &filter)? => {
                        match bulk::start(self, s, &filter, &upper, &key)? {
                            Some(b) => Token::Bulk(b),
                            None => Token::Page { upper, after: None },
                        }
                    }
                    None => Token::Page { upper, after: None },
                }
            }
        };
        let (request, operation, cost) = match &token {
            Token::Page { upper, after } => {
                let first = self.page_size(s);
                let filter = Api::window(since, upper);
                let request = self.graphql(
                    &query::page(s),
                    &json!({"first": first, "after": after, "query": filter}),
                )?;
                let cost = query::page_cost(s, first);
                self.pace(cost)?;
                (request, query::page_operation(s), cost)
            }
            Token::Bulk(b) => (bulk::chunk_request(self, b)?, "BulkResult", 0),
        };
        self.pending = Some(Pending {
            token,
            request: request.clone(),
            operation,
            cost,
        });
        Ok(request)
    }

    fn parse(
        &mut self,
        stream: Stream,
        _token: Option<&Token>,
        response: Response,
    ) -> Result<VendorPage<Token>, PluginError> {
        let Some(pending) = self.pending.take() else {
            return Err(PluginError::failed("plugin bug: an answer to no request"));
        };
        let s = ShopifyStream::of(stream)
            .ok_or_else(|| PluginError::Unsupported(format!("Shopify has no {stream} stream")))?;
        let page = match pending.token {
            Token::Bulk(b) => bulk::read_chunk(self, s, b, &response)?,
            Token::Page { upper, .. } => {
                let data = self.exchange(
                    pending.operation,
                    &pending.request,
                    pending.cost,
                    Some(response),
                )?;
                let (field, _) = query::connection(s);
                let connection = data.get(field).cloned().unwrap_or(Value::Null);
                let nodes = connection
                    .get("nodes")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let mut page = VendorPage::new();
                for node in &nodes {
                    let mut items: Vec<Value> = node
                        .pointer("/lineItems/nodes")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    if node.pointer("/lineItems/pageInfo/hasNextPage") == Some(&Value::Bool(true)) {
                        let after = node
                            .pointer("/lineItems/pageInfo/endCursor")
                            .and_then(Value::as_str)
                            .map(str::to_owned);
                        let gid = node.get("id").and_then(Value::as_str).unwrap_or_default();
                        self.more_line_items(s, gid, after, &mut items)?;
                    }
                    Api::read_node(s, node, &items, &mut page);
                }
                let next = (connection.pointer("/pageInfo/hasNextPage")
                    == Some(&Value::Bool(true)))
                .then(|| {
                    connection
                        .pointer("/pageInfo/endCursor")
                        .and_then(Value::as_str)
                        .map(|after| Token::Page {
                            upper: upper.clone(),
                            after: Some(after.to_owned()),
                        })
                })
                .flatten();
                page.next(next)
            }
        };
        self.report(s, page.len());
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_asks_from_the_watermark_to_the_pass_start() {
        let mark = Mark::new(Timestamp::from_secs(1_700_000_000), "12");
        assert_eq!(
            Api::window(Some(&mark), "2024-01-01T00:00:00Z"),
            "updated_at:>='2023-11-14T22:13:20Z' AND updated_at:<='2024-01-01T00:00:00Z'"
        );
        assert_eq!(
            Api::window(None, "2024-01-01T00:00:00Z"),
            "updated_at:<='2024-01-01T00:00:00Z'"
        );
    }
}
