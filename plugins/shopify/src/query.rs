//! The GraphQL the source sends, and what each query costs by Shopify's rules.
//!
//! Shopify charges a query before running it by its *requested* cost: a scalar or enum field 0,
//! an object 1, a connection 2 plus `first` times the cost of one node (nested connections
//! multiply), and refuses one over the single-query limit (1,000) outright. Page sizes are
//! chosen here from those rules, so that no query asks for more than the limit or than the
//! shop's bucket can ever hold: line items nested in orders are what makes an order expensive,
//! so orders ask for [`LINE_ITEMS`] of them and fetch the rest of a long order separately.

use crate::config::ShopifyStream;

/// Shopify's limit on one query's requested cost.
pub const SINGLE_QUERY_LIMIT: u32 = 1000;
/// Most nodes a connection page may ask for.
pub const MAX_FIRST: u32 = 250;
/// Pages ask for at most this share of the bucket (a quarter).
///
/// A query runs only when the bucket holds its requested cost, so a pull cannot drain the
/// bucket below the cost of its next page. A page asking for the whole bucket (the largest the
/// single-query limit allows on the standard plan) waits for a full bucket every time: the
/// bucket's 1,000 points are never spent, and what restores while it sits full is lost. That
/// held a paged sync to 86% of its budget over a minute. With pages of a quarter of the bucket
/// the pull spends all but the last quarter, and the bucket is never full while it waits.
pub const BUCKET_SHARE: u32 = 4;
/// Line items asked for with each order or checkout; a longer one is completed by
/// [`MORE_LINE_ITEMS`] queries.
pub const LINE_ITEMS: u32 = 10;
/// Line items asked for by each [`MORE_LINE_ITEMS`] query.
pub const MORE_LINES_FIRST: u32 = 100;

const CUSTOMER: &str = "id email phone firstName lastName tags createdAt updatedAt \
    emailMarketingConsent { marketingState } smsMarketingConsent { marketingState } \
    defaultAddress { countryCodeV2 provinceCode city zip } \
    amountSpent { amount currencyCode } numberOfOrders";
/// Objects in [`CUSTOMER`]: the node and its five objects.
const CUSTOMER_COST: u32 = 1 + 5;

const LINE: &str = "id title quantity product { id productType } variant { id } \
    originalUnitPriceSet { shopMoney { amount currencyCode } }";
/// The line item, its product, variant, price set and money.
const LINE_COST: u32 = 1 + 1 + 1 + 2;

const ORDER: &str = "id processedAt createdAt updatedAt cancelledAt currencyCode \
    subtotalLineItemsQuantity customer { id } \
    totalPriceSet { shopMoney { amount currencyCode } } \
    totalRefundedSet { shopMoney { amount currencyCode } }";
/// The order, its customer, two price sets with their money.
const ORDER_COST: u32 = 1 + 1 + 2 + 2;

const CHECKOUT: &str = "id createdAt updatedAt completedAt abandonedCheckoutUrl \
    lineItemsQuantity customer { id } totalPriceSet { shopMoney { amount currencyCode } }";
/// The checkout, its customer, a price set and its money.
const CHECKOUT_COST: u32 = 1 + 1 + 2;

/// The cost of a connection page of `first` nodes of `node` each.
pub fn connection_cost(first: u32, node: u32) -> u32 {
    2 + first * node
}

/// The requested cost of one node of a stream's page (line items included).
pub fn node_cost(stream: ShopifyStream) -> u32 {
    match stream {
        ShopifyStream::Customers => CUSTOMER_COST,
        ShopifyStream::Orders => ORDER_COST + connection_cost(LINE_ITEMS, LINE_COST),
        ShopifyStream::AbandonedCheckouts => CHECKOUT_COST + connection_cost(LINE_ITEMS, LINE_COST),
    }
}

/// The largest page whose requested cost fits both the single-query limit and a quarter of
/// `bucket` (the most the shop's bucket holds; see [`BUCKET_SHARE`]), at most 250.
pub fn page_size(stream: ShopifyStream, bucket: u32) -> u32 {
    (page_limit(bucket).saturating_sub(2) / node_cost(stream)).clamp(1, MAX_FIRST)
}

/// The most a page may ask for on a bucket of `bucket` points.
fn page_limit(bucket: u32) -> u32 {
    SINGLE_QUERY_LIMIT.min(bucket / BUCKET_SHARE)
}

/// The connection field and sort key of a stream. Abandoned checkouts have no `UPDATED_AT`
/// sort key in 2025-01: they go by `ID`, and the `updated_at` filter bounds the pass.
pub fn connection(stream: ShopifyStream) -> (&'static str, &'static str) {
    match stream {
        ShopifyStream::Customers => ("customers", "UPDATED_AT"),
        ShopifyStream::Orders => ("orders", "UPDATED_AT"),
        ShopifyStream::AbandonedCheckouts => ("abandonedCheckouts", "ID"),
    }
}

/// The operation name of a stream's page query (errors name it).
pub fn page_operation(stream: ShopifyStream) -> &'static str {
    match stream {
        ShopifyStream::Customers => "CustomersPage",
        ShopifyStream::Orders => "OrdersPage",
        ShopifyStream::AbandonedCheckouts => "AbandonedCheckoutsPage",
    }
}

/// The node selection of a stream, with its first line items for a paged query.
fn node(stream: ShopifyStream, paged: bool) -> String {
    let lines = |first: String| {
        format!("lineItems{first} {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {LINE} }} }}")
    };
    match (stream, paged) {
        (ShopifyStream::Customers, _) => CUSTOMER.to_owned(),
        (ShopifyStream::Orders, true) => {
            format!("{ORDER} {}", lines(format!("(first: {LINE_ITEMS})")))
        }
        (ShopifyStream::AbandonedCheckouts, true) => {
            format!("{CHECKOUT} {}", lines(format!("(first: {LINE_ITEMS})")))
        }
        // Bulk: connections come as child lines, with neither `first` nor `pageInfo`.
        (ShopifyStream::Orders, false) => {
            format!("{ORDER} lineItems {{ edges {{ node {{ {LINE} }} }} }}")
        }
        (ShopifyStream::AbandonedCheckouts, false) => {
            format!("{CHECKOUT} lineItems {{ edges {{ node {{ {LINE} }} }} }}")
        }
    }
}

/// The page query of a stream: variables `$first`, `$after`, `$query`.
pub fn page(stream: ShopifyStream) -> String {
    let (field, sort) = connection(stream);
    format!(
        "query {}($first: Int!, $after: String, $query: String) {{ \
         {field}(first: $first, after: $after, sortKey: {sort}, query: $query) {{ \
         pageInfo {{ hasNextPage endCursor }} nodes {{ {} }} }} }}",
        page_operation(stream),
        node(stream, true)
    )
}

/// The requested cost of a page query of `first` nodes.
pub fn page_cost(stream: ShopifyStream, first: u32) -> u32 {
    connection_cost(first, node_cost(stream))
}

/// The rest of a long order's or checkout's line items: variables `$id`, `$after`.
pub const MORE_LINE_ITEMS: &str = "MoreLineItems";

/// The query for the rest of a node's line items.
pub fn more_line_items(stream: ShopifyStream) -> String {
    let field = match stream {
        ShopifyStream::AbandonedCheckouts => "... on AbandonedCheckout",
        _ => "... on Order",
    };
    format!(
        "query {MORE_LINE_ITEMS}($id: ID!, $after: String) {{ node(id: $id) {{ {field} {{ \
         lineItems(first: {MORE_LINES_FIRST}, after: $after) {{ \
         pageInfo {{ hasNextPage endCursor }} nodes {{ {LINE} }} }} }} }} }}"
    )
}

/// The requested cost of [`more_line_items`].
pub fn more_line_items_cost() -> u32 {
    1 + connection_cost(MORE_LINES_FIRST, LINE_COST)
}

/// How many records a stream holds (for `initial_sync = "auto"`): variables `$query`.
pub fn count(stream: ShopifyStream) -> String {
    let field = match stream {
        ShopifyStream::Customers => "customersCount(query: $query)",
        ShopifyStream::Orders => "ordersCount(limit: null, query: $query)",
        ShopifyStream::AbandonedCheckouts => "abandonedCheckoutsCount(limit: null, query: $query)",
    };
    format!("query StreamCount($query: String) {{ count: {field} {{ count precision }} }}")
}

/// The bulk query of a stream (no variables: bulk queries take none).
pub fn bulk(stream: ShopifyStream, filter: &str) -> String {
    let (field, sort) = connection(stream);
    format!(
        "{{ {field}(sortKey: {sort}, query: {}) {{ edges {{ node {{ {} }} }} }} }}",
        serde_json::Value::String(filter.to_owned()),
        node(stream, false)
    )
}

/// Starts a bulk operation: variables `$query`.
pub const RUN_BULK: &str = "mutation RunBulk($query: String!) { bulkOperationRunQuery(query: $query) { \
    bulkOperation { id status } userErrors { field message code } } }";

/// Reads a bulk operation: variables `$id`.
pub const BULK_STATUS: &str = "query BulkStatus($id: ID!) { node(id: $id) { ... on BulkOperation { \
    id status errorCode objectCount rootObjectCount url partialDataUrl } } }";

/// The shop's name and the bucket's state: the first request of an instance.
pub const SHOP: &str = "query ShopProbe { shop { name } }";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_page_asks_for_more_than_the_single_query_limit_or_the_bucket() {
        for stream in [
            ShopifyStream::Customers,
            ShopifyStream::Orders,
            ShopifyStream::AbandonedCheckouts,
        ] {
            for bucket in [50, 100, 1000, 2000, 20_000] {
                let first = page_size(stream, bucket);
                let cost = page_cost(stream, first);
                assert!(
                    cost <= page_limit(bucket) || first == 1,
                    "{stream:?} {bucket}: {first} cost {cost}"
                );
                assert!(cost <= SINGLE_QUERY_LIMIT.min(bucket) || first == 1);
                assert!(page_cost(stream, first + 1) > page_limit(bucket) || first == MAX_FIRST);
            }
        }
        // The standard plan's bucket: pages of a quarter of it.
        assert_eq!(page_size(ShopifyStream::Customers, 1000), 41);
        assert_eq!(page_size(ShopifyStream::Orders, 1000), 4);
        assert_eq!(page_size(ShopifyStream::Customers, 20_000), 166);
    }

    #[test]
    fn checkouts_sort_by_id_and_the_others_by_updated_at() {
        assert!(page(ShopifyStream::AbandonedCheckouts).contains("sortKey: ID"));
        assert!(page(ShopifyStream::Orders).contains("sortKey: UPDATED_AT"));
        assert!(!bulk(ShopifyStream::Orders, "").contains("first"));
    }
}
