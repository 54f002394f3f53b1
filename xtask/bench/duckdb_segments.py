#!/usr/bin/env python3
"""DuckDB reference for `cargo xtask bench segments`.

Computes the ten segments of xtask/bench/segments.toml with hand-written SQL over the same CSV files
`cohort segment eval` reads, end to end in one process: read the CSVs, compute the per-customer
features, count every segment. Prints one JSON object on stdout:

    {"counts": {"champions": 123, ...}, "customers": N, "buyers": n, "query_ms": 1234.5}

The SQL reproduces Cohort's feature semantics exactly, so the counts must agree to the customer:
- orders after the as-of instant are ignored; money is DECIMAL(18,4) and sums are exact;
- avg_order_value = total_spent / orders_count rounded half away from zero to 4 decimals, computed
  in integer ten-thousandths (DuckDB's DECIMAL / BIGINT would go through DOUBLE);
- RFM over buyers only: R by whole calendar days since the last order (descending), F by order
  count, M by spend (ascending), ties by the lower id, score = max(1, ceil(5(k-1)/(n-1)));
- a comparison with NULL is false; strings compare case-insensitively; tags are a set of trimmed,
  lower-cased names.

Each segment's condition is written as a SQL boolean and counted with count_if, which counts only
TRUE: with no `not` in any of the ten, SQL's three-valued logic then agrees with "null is false".
"""
import argparse
import json
import time

import duckdb

# name -> SQL condition over the features relation `f`. Keep in step with xtask/bench/segments.toml
# (the xtask refuses to compare when the names differ).
SEGMENTS = {
    "champions": "rfm_group = 'champions'",
    "at_risk_valuable": "r_score <= 2 AND f_score >= 3 AND m_score >= 3",
    "recent_buyers": "last_order_at >= AS_OF - INTERVAL 90 DAY",
    "lapsed_repeaters": "last_order_at < AS_OF - INTERVAL 365 DAY AND orders_count >= 2",
    "vip_tagged": "list_contains(tag_set, 'vip') OR list_contains(tag_set, 'loyalty-gold')",
    "north_america_uk": "lower(country) IN ('us', 'ca', 'gb')",
    "consented_prospects": "accepts_marketing = true AND orders_count = 0",
    "high_aov": "avg_order_value_e4 > 100 * 10000",
    "german_big_spenders": "total_spent >= 1000 AND lower(country) = 'de'",
    "new_signups": "created_at >= AS_OF - INTERVAL 30 DAY AND orders_count <= 1",
}


def build_query(customers: str, orders: str, as_of: str) -> str:
    as_of_sql = f"TIMESTAMP '{as_of}'"
    counts = ",\n    ".join(
        f"count_if({cond.replace('AS_OF', as_of_sql)}) AS \"{name}\"" for name, cond in SEGMENTS.items()
    )
    return f"""
WITH
c AS (
  SELECT id, country, tags, accepts_marketing, created_at
  FROM read_csv({sql_str(customers)}, header = true, auto_detect = false, columns = {{
    'id': 'BIGINT', 'email': 'VARCHAR', 'country': 'VARCHAR', 'city': 'VARCHAR',
    'birth_year': 'SMALLINT', 'gender': 'VARCHAR', 'tags': 'VARCHAR',
    'accepts_marketing': 'BOOLEAN', 'created_at': 'TIMESTAMP'}})
),
o AS (
  SELECT customer_id, created_at, total_price
  FROM read_csv({sql_str(orders)}, header = true, auto_detect = false, columns = {{
    'id': 'BIGINT', 'customer_id': 'BIGINT', 'created_at': 'TIMESTAMP',
    'total_price': 'DECIMAL(18,4)', 'items': 'SMALLINT'}})
  WHERE created_at <= {as_of_sql}
),
agg AS (
  SELECT customer_id,
         count(*) AS orders_count,
         sum(total_price) AS total_spent,
         max(created_at) AS last_order_at
  FROM o GROUP BY customer_id
),
base AS (
  SELECT c.id, c.country, c.accepts_marketing, c.created_at,
         list_transform(string_split(c.tags, ','), lambda t: lower(trim(t))) AS tag_set,
         coalesce(agg.orders_count, 0) AS orders_count,
         coalesce(agg.total_spent, 0) AS total_spent,
         agg.last_order_at,
         -- exact ten-thousandths, rounded half away from zero (spend is never negative here, but
         -- keep the sign rule honest)
         CASE WHEN agg.orders_count > 0 THEN
           sign(CAST(agg.total_spent * 10000 AS HUGEINT))
             * ((2 * abs(CAST(agg.total_spent * 10000 AS HUGEINT)) + agg.orders_count)
                // (2 * agg.orders_count))
         END AS avg_order_value_e4,
         date_diff('day', CAST(agg.last_order_at AS DATE), CAST({as_of_sql} AS DATE)) AS recency_days
  FROM c LEFT JOIN agg ON agg.customer_id = c.id
),
n AS (SELECT count(*) AS n FROM base WHERE orders_count > 0),
ranked AS (
  SELECT id,
         row_number() OVER (ORDER BY recency_days DESC, id) AS r_rank,
         row_number() OVER (ORDER BY orders_count, id) AS f_rank,
         row_number() OVER (ORDER BY total_spent, id) AS m_rank
  FROM base WHERE orders_count > 0
),
scored AS (
  SELECT ranked.id,
         CASE WHEN n.n <= 1 THEN 1 ELSE greatest(1, (5 * (r_rank - 1) + n.n - 2) // (n.n - 1)) END AS r_score,
         CASE WHEN n.n <= 1 THEN 1 ELSE greatest(1, (5 * (f_rank - 1) + n.n - 2) // (n.n - 1)) END AS f_score,
         CASE WHEN n.n <= 1 THEN 1 ELSE greatest(1, (5 * (m_rank - 1) + n.n - 2) // (n.n - 1)) END AS m_score
  FROM ranked, n
),
f AS (
  SELECT base.*, scored.r_score, scored.f_score, scored.m_score,
         CASE
           WHEN r_score = 5 AND f_score >= 4 THEN 'champions'
           WHEN r_score BETWEEN 3 AND 4 AND f_score >= 4 THEN 'loyal'
           WHEN r_score = 5 AND f_score = 1 THEN 'new'
           WHEN r_score = 4 AND f_score = 1 THEN 'promising'
           WHEN r_score >= 4 THEN 'active'
           WHEN r_score = 3 AND f_score = 3 THEN 'needs_attention'
           WHEN r_score = 3 THEN 'almost_lost'
           WHEN f_score = 5 THEN 'previously_loyal'
           WHEN f_score >= 3 THEN 'at_risk'
           WHEN r_score IS NOT NULL THEN 'dormant'
         END AS rfm_group
  FROM base LEFT JOIN scored ON scored.id = base.id
)
SELECT count(*) AS customers,
    count_if(orders_count > 0) AS buyers,
    {counts}
FROM f
"""


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", required=True)
    ap.add_argument("--orders", required=True)
    ap.add_argument("--as-of", default="2025-01-01 00:00:00", help="UTC, 'YYYY-MM-DD HH:MM:SS'")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--print-sql", action="store_true", help="print the query and exit")
    a = ap.parse_args()

    query = build_query(a.customers, a.orders, a.as_of)
    if a.print_sql:
        print(query)
        return
    t = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SET threads = {int(a.threads)}")
    con.execute("SET TimeZone = 'UTC'")
    cur = con.execute(query)
    names = [d[0] for d in cur.description]
    row = cur.fetchone()
    query_ms = (time.perf_counter() - t) * 1000
    values = dict(zip(names, row))
    print(json.dumps({
        "counts": {name: int(values[name]) for name in SEGMENTS},
        "customers": int(values["customers"]),
        "buyers": int(values["buyers"]),
        "query_ms": round(query_ms, 1),
    }))


if __name__ == "__main__":
    main()
