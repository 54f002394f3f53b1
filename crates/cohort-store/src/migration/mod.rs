//! Schema migrations, applied in order at every connect.
//!
//! A migration, once released, is never edited: a change to the schema is a new file here.
//! The tests run every migration on both SQLite and PostgreSQL.

use sea_orm_migration::prelude::*;

mod m0001_initial;
mod m0002_source_keys;
mod m0003_run_leases;
mod m0004_deletions_and_state;
mod m0005_identity;
mod m0006_durable_ticks;
mod m0007_customer_totals;
mod m0008_job_results;
mod m0009_claimable_runs;

/// Every migration of the store, oldest first.
#[derive(Debug)]
pub(crate) struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_initial::Migration),
            Box::new(m0002_source_keys::Migration),
            Box::new(m0003_run_leases::Migration),
            Box::new(m0004_deletions_and_state::Migration),
            Box::new(m0005_identity::Migration),
            Box::new(m0006_durable_ticks::Migration),
            Box::new(m0007_customer_totals::Migration),
            Box::new(m0008_job_results::Migration),
            Box::new(m0009_claimable_runs::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        "cohort_migrations".into_iden()
    }
}

#[cfg(test)]
mod tests {
    //! Later migrations convert what earlier ones made: a store filled under m0001's layout,
    //! migrated, reads back every record, in the right workspace, with hashes intact.
    #![allow(clippy::unwrap_used)]

    use cohort_core::money::Money;
    use cohort_core::record::{Customer, Event, EventKind, Order};
    use cohort_core::time::Timestamp;
    use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};
    use serde_json::json;

    use super::Migrator;
    use crate::ingest::content_hash;
    use crate::{Backend, Store, WorkspaceInfo};
    use sea_orm_migration::MigratorTrait;

    fn info(id: &str) -> WorkspaceInfo {
        WorkspaceInfo {
            id: id.to_owned(),
            name: id.to_uppercase(),
            timezone: "UTC".to_owned(),
            currency: "USD".to_owned(),
        }
    }

    /// Runs `sql` written for PostgreSQL (`$n`, `::json`) on either backend.
    async fn exec(store: &Store, sql: &str, values: Vec<Value>) {
        let (backend, sql) = match store.backend {
            Backend::Postgres => (DbBackend::Postgres, sql.to_owned()),
            Backend::Sqlite => (
                DbBackend::Sqlite,
                sql.replace("::json", "").replace('$', "?"),
            ),
        };
        store
            .db
            .execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await
            .unwrap();
    }

    async fn old_customer(store: &Store, ws: &str, source: &str, c: &Customer) {
        let data = serde_json::to_string(c).unwrap();
        exec(
            store,
            "INSERT INTO customers (workspace_id, source, external_id, email, \
             accepts_email_marketing, accepts_sms_marketing, created_at, updated_at, data, hash, \
             revision) VALUES ($1, $2, $3, $4, $5, false, NULL, NULL, $6::json, $7, 1)",
            vec![
                ws.into(),
                source.into(),
                c.id.as_str().into(),
                c.email.clone().into(),
                c.accepts_email_marketing.into(),
                data.as_str().into(),
                content_hash(data.as_bytes()).into(),
            ],
        )
        .await;
    }

    async fn converts_a_store_made_by_m0001(store: Store) {
        Migrator::up(&store.db, Some(1)).await.unwrap();
        store.ensure_workspace(&info("a")).await.unwrap();
        store.ensure_workspace(&info("b")).await.unwrap();
        let shop = |id: &str, email: &str| Customer {
            email: Some(email.to_owned()),
            accepts_email_marketing: true,
            ..Customer::new(id)
        };
        old_customer(&store, "a", "shop", &shop("1", "a1@shop")).await;
        old_customer(&store, "a", "shop", &shop("2", "a2@shop")).await;
        old_customer(&store, "a", "crm", &shop("1", "a1@crm")).await;
        old_customer(&store, "b", "shop", &shop("1", "b1@shop")).await;
        let order = Order {
            id: "o1".to_owned(),
            customer_id: "1".into(),
            created_at: Some(Timestamp::from_secs(1_700_000_000)),
            total: Money::from_whole(42),
            item_count: 2,
            ..Order::default()
        };
        let order_json = serde_json::to_string(&order).unwrap();
        exec(
            &store,
            "INSERT INTO orders (workspace_id, source, external_id, customer_id, created_at, \
             total, refunded, currency, item_count, cancelled_at, line_items, hash, revision) \
             VALUES ('a', 'shop', 'o1', '1', 1700000000, $1, 0, NULL, 2, NULL, NULL, $2, 3)",
            vec![
                order.total.raw().into(),
                content_hash(order_json.as_bytes()).into(),
            ],
        )
        .await;
        let event = Event {
            id: Some("e1".to_owned()),
            customer_id: "2".into(),
            kind: EventKind::EmailOpen,
            occurred_at: Timestamp::from_secs(1_700_000_100),
            properties: [("campaign".to_owned(), json!("spring"))].into(),
        };
        exec(
            &store,
            "INSERT INTO events (workspace_id, source, external_id, customer_id, kind, \
             occurred_at, properties, hash, revision) \
             VALUES ('b', 'web', 'e1', '2', 'email_open', 1700000100, $1::json, $2, 1)",
            vec![
                r#"{"campaign":"spring"}"#.into(),
                content_hash(&serde_json::to_vec(&event).unwrap()).into(),
            ],
        )
        .await;

        store.migrate().await.unwrap();

        let a = store.workspace("a");
        let mut emails: Vec<String> = a
            .customers()
            .await
            .unwrap()
            .into_iter()
            .filter_map(|c| c.email)
            .collect();
        emails.sort();
        assert_eq!(emails, ["a1@crm", "a1@shop", "a2@shop"]);
        let b = store.workspace("b");
        let b_customers = b.customers().await.unwrap();
        assert_eq!(b_customers.len(), 1);
        assert_eq!(b_customers[0].email.as_deref(), Some("b1@shop"));

        let mut orders = Vec::new();
        a.for_each_order(|o| orders.push(o)).await.unwrap();
        assert_eq!(orders, vec![order.clone()]);
        let mut events = Vec::new();
        b.for_each_event(|e| events.push(e)).await.unwrap();
        assert_eq!(events, vec![event]);
        assert_eq!(a.for_each_event(|_| {}).await.unwrap(), 0);

        // The stored hashes came across: the same records again change nothing.
        let again = a
            .ingest_customers(
                "shop",
                &[shop("1", "a1@shop"), shop("2", "a2@shop")],
                &json!(null),
            )
            .await
            .unwrap();
        assert_eq!((again.new, again.updated, again.unchanged), (0, 0, 2));
        let again = a
            .ingest_orders("shop", &[order], &json!(null))
            .await
            .unwrap();
        assert_eq!(again.unchanged, 1);
        // A source first seen after the migration gets an id of its own.
        let new = a
            .ingest_customers("pos", &[shop("1", "a1@pos")], &json!(null))
            .await
            .unwrap();
        assert_eq!(new.new, 1);
        assert_eq!(a.customers().await.unwrap().len(), 4);
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn m0002_converts_a_sqlite_store_made_by_m0001() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
        let store = Store::open_pool(&url, None, 4).await.unwrap();
        converts_a_store_made_by_m0001(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn m0002_converts_a_postgres_store_made_by_m0001() {
        let url = std::env::var("COHORT_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let schema = format!("cohort_m0002_{}", std::process::id());
        let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
        crate::preflight_postgres(&url, Some(&create))
            .await
            .expect("PostgreSQL at COHORT_TEST_POSTGRES_URL (or 127.0.0.1:5432/test) is needed");
        let store = Store::open_pool(&url, Some(&schema), 4).await.unwrap();
        let result = tokio::spawn(converts_a_store_made_by_m0001(store)).await;
        Store::drop_schema(&url, &schema).await.unwrap();
        result.unwrap();
    }
}
