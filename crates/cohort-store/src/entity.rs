//! sea-orm entities, one per table, mirroring `migration`.
//!
//! Private to the crate on purpose: a query built from an entity can forget the workspace
//! filter, so only `WorkspaceStore` methods, which always add it, may use them. The record
//! tables' bulk paths (ingest, streamed reads) go through sqlx directly for speed; their
//! entities document the schema and serve small lookups.
// The derives generate public items (Column, ActiveModel, …) inside these private modules.
#![allow(unreachable_pub, missing_debug_implementations, dead_code)]

pub(crate) mod workspaces {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "workspaces")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub timezone: String,
        pub currency: String,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod sources {
    use sea_orm::entity::prelude::*;

    /// A source of a workspace, numbered: the record tables' key starts with its id.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "sources")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub workspace_id: String,
        pub name: String,
        pub created_at: DateTimeUtc,
        /// Raised by every ingest that changes a record of the source.
        pub data_version: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod customers {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "customers")]
    pub struct Model {
        /// `sources.id`: the workspace and source the record came from.
        #[sea_orm(primary_key, auto_increment = false)]
        pub source_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub external_id: String,
        pub email: Option<String>,
        pub accepts_email_marketing: bool,
        pub accepts_sms_marketing: bool,
        /// Seconds since the epoch.
        pub created_at: Option<i64>,
        /// Seconds since the epoch.
        pub updated_at: Option<i64>,
        /// The whole record as canonical JSON.
        pub data: Json,
        pub hash: i64,
        pub revision: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod orders {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "orders")]
    pub struct Model {
        /// `sources.id`: the workspace and source the record came from.
        #[sea_orm(primary_key, auto_increment = false)]
        pub source_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub external_id: String,
        pub customer_id: String,
        pub created_at: Option<i64>,
        /// Ten-thousandths of the currency unit (`cohort_core::money::Money::raw`).
        pub total: i64,
        pub refunded: i64,
        pub currency: Option<String>,
        pub item_count: i64,
        pub cancelled_at: Option<i64>,
        pub line_items: Option<Json>,
        pub hash: i64,
        pub revision: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod events {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "events")]
    pub struct Model {
        /// `sources.id`: the workspace and source the record came from.
        #[sea_orm(primary_key, auto_increment = false)]
        pub source_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub external_id: String,
        pub customer_id: String,
        pub kind: String,
        pub occurred_at: i64,
        pub properties: Json,
        pub hash: i64,
        pub revision: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod source_cursors {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "source_cursors")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub source: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub stream: String,
        pub cursor: Json,
        pub updated_at: DateTimeUtc,
        pub pass: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod segment_definitions {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "segment_definitions")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub workspace_id: String,
        pub name: String,
        pub version: i64,
        pub hash: String,
        #[sea_orm(column_type = "Text")]
        pub expression: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod memberships {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "memberships")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub segment: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: String,
        pub since: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod destination_state {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "destination_state")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub campaign: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: String,
        pub status: String,
        pub payload_hash: String,
        pub idempotency_key: String,
        pub entries: i64,
        pub pending_action: Option<String>,
        pub pending_key: Option<String>,
        pub pending_hash: Option<String>,
        pub updated_at: DateTimeUtc,
        #[sea_orm(column_type = "Text", nullable)]
        pub payload: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod job_runs {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "job_runs")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub workspace_id: String,
        pub job: String,
        pub trigger: String,
        pub dry_run: bool,
        pub status: String,
        pub started_at: DateTimeUtc,
        pub finished_at: Option<DateTimeUtc>,
        pub summary: Option<Json>,
        #[sea_orm(column_type = "Text", nullable)]
        pub error: Option<String>,
        pub owner: Option<String>,
        pub heartbeat_at: Option<DateTimeUtc>,
        pub scheduled_for: Option<DateTimeUtc>,
        pub attempt: Option<i32>,
        pub not_before: Option<DateTimeUtc>,
        pub lease_token: Option<String>,
        pub lease_expires_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod daemons {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "daemons")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub owner: String,
        pub token: String,
        pub started_at: DateTimeUtc,
        pub heartbeat_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod run_errors {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "run_errors")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub run_id: i64,
        pub workspace_id: String,
        pub stage: String,
        #[sea_orm(column_type = "Text")]
        pub location: String,
        #[sea_orm(column_type = "Text")]
        pub message: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod suppressions {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "suppressions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: String,
        /// Lower-cased.
        #[sea_orm(primary_key, auto_increment = false)]
        pub email: String,
        pub reason: String,
        pub source: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod workspace_locks {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "workspace_locks")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: String,
        pub run_id: Option<i64>,
        pub owner: String,
        pub token: String,
        pub acquired_at: DateTimeUtc,
        pub heartbeat_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod job_results {
    use sea_orm::entity::prelude::*;

    /// The last clean run of a job: what it saw and until when its result stands.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "job_results")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub job: String,
        pub run_id: i64,
        #[sea_orm(column_type = "Text")]
        pub inputs: String,
        pub config: String,
        pub as_of: i64,
        pub stable_until: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod plugin_state {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "plugin_state")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub scope: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        #[sea_orm(column_type = "Text")]
        pub value: String,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod person_links {
    use sea_orm::entity::prelude::*;

    /// A live customer record and the person it was last resolved into.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "person_links")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: String,
        /// The source's name.
        #[sea_orm(primary_key, auto_increment = false)]
        pub source: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: String,
        pub person_id: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod person_counters {
    use sea_orm::entity::prelude::*;

    /// The next person number of a workspace.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "person_counters")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: String,
        pub next: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
