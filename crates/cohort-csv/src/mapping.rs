//! Which column holds which field.
//!
//! Exports name their columns every which way (`Customer ID`, `customer_id`, `Default Address
//! Country Code`), so each canonical field has a list of known header spellings, compared after
//! normalising case, spaces and dashes. That one table covers the shared generator's layout,
//! Shopify's customer export and hand-made files; anything else is mapped explicitly.

use std::collections::BTreeMap;

/// The kind of record a file holds: the core's one [`Stream`](cohort_core::record::Stream).
pub use cohort_core::record::Stream as Kind;

/// Every field `kind` can map, with its accepted headers.
pub fn fields_of(kind: Kind) -> &'static [FieldSpec] {
    match kind {
        Kind::Customers => CUSTOMER_FIELDS,
        Kind::Orders => ORDER_FIELDS,
        Kind::Events => EVENT_FIELDS,
    }
}

/// A canonical field and how files name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// Canonical name (`accepts_email_marketing`).
    pub name: &'static str,
    /// Header spellings recognised without configuration, most specific first.
    pub aliases: &'static [&'static str],
    /// Whether a file without this column is unusable.
    pub required: bool,
}

const fn field(name: &'static str, aliases: &'static [&'static str], required: bool) -> FieldSpec {
    FieldSpec {
        name,
        aliases,
        required,
    }
}

const CUSTOMER_FIELDS: &[FieldSpec] = &[
    field("id", &["id", "customer_id", "customer id"], true),
    field("email", &["email", "email_address", "e-mail"], false),
    field(
        "phone",
        &["phone", "phone_number", "default address phone"],
        false,
    ),
    field(
        "first_name",
        &["first_name", "firstname", "given_name"],
        false,
    ),
    field(
        "last_name",
        &["last_name", "lastname", "family_name", "surname"],
        false,
    ),
    field(
        "country",
        &["country_code", "country", "default address country code"],
        false,
    ),
    field(
        "region",
        &[
            "region",
            "province_code",
            "state",
            "province",
            "default address province code",
        ],
        false,
    ),
    field("city", &["city", "default address city"], false),
    field(
        "postal_code",
        &[
            "postal_code",
            "zip",
            "zip_code",
            "postcode",
            "default address zip",
        ],
        false,
    ),
    field(
        "birth_date",
        &["birth_date", "birthday", "date_of_birth", "dob"],
        false,
    ),
    field("birth_year", &["birth_year", "year_of_birth"], false),
    field("gender", &["gender", "sex"], false),
    field("tags", &["tags", "customer_tags"], false),
    field(
        "accepts_email_marketing",
        &[
            "accepts_email_marketing",
            "accepts_marketing",
            "email_marketing_consent",
            "email_consent",
        ],
        false,
    ),
    field(
        "accepts_sms_marketing",
        &[
            "accepts_sms_marketing",
            "sms_marketing_consent",
            "sms_consent",
        ],
        false,
    ),
    field(
        "created_at",
        &["created_at", "created", "signup_date", "signed_up_at"],
        false,
    ),
    field(
        "updated_at",
        &["updated_at", "updated", "modified_at"],
        false,
    ),
];

const ORDER_FIELDS: &[FieldSpec] = &[
    field("id", &["id", "order_id", "order id", "name"], false),
    field(
        "customer_id",
        &["customer_id", "customer id", "customer"],
        true,
    ),
    field(
        "created_at",
        &[
            "created_at",
            "order_date",
            "processed_at",
            "date",
            "created",
        ],
        true,
    ),
    field(
        "total",
        &[
            "total_price",
            "total",
            "amount",
            "order_total",
            "total_amount",
        ],
        true,
    ),
    field("currency", &["currency", "currency_code"], false),
    field(
        "item_count",
        &["items", "item_count", "quantity", "items_count"],
        false,
    ),
    field("cancelled_at", &["cancelled_at", "canceled_at"], false),
    field(
        "refunded",
        &["refunded", "refunded_amount", "total_refunded"],
        false,
    ),
    // Not `type`: too many files have a column of that name meaning something else.
    field(
        "kind",
        &[
            "kind",
            "order_kind",
            "order_type",
            "transaction_kind",
            "transaction_type",
        ],
        false,
    ),
];

const EVENT_FIELDS: &[FieldSpec] = &[
    field("id", &["event_id", "id"], false),
    field(
        "customer_id",
        &["customer_id", "customer id", "customer"],
        true,
    ),
    field("kind", &["kind", "event_type", "type", "event"], true),
    field(
        "occurred_at",
        &[
            "occurred_at",
            "timestamp",
            "time",
            "datetime",
            "date",
            "created_at",
        ],
        true,
    ),
];

/// A canonical field of one kind: where it sits in [`Kind::fields`] and its name. Readers
/// look fields up by these constants, not by comparing names on every row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    pub(crate) index: usize,
    pub(crate) name: &'static str,
}

/// Fields of customer files, by position in `CUSTOMER_FIELDS`.
pub(crate) mod customer {
    use super::Field;
    pub(crate) const ID: Field = Field {
        index: 0,
        name: "id",
    };
    pub(crate) const EMAIL: Field = Field {
        index: 1,
        name: "email",
    };
    pub(crate) const PHONE: Field = Field {
        index: 2,
        name: "phone",
    };
    pub(crate) const FIRST_NAME: Field = Field {
        index: 3,
        name: "first_name",
    };
    pub(crate) const LAST_NAME: Field = Field {
        index: 4,
        name: "last_name",
    };
    pub(crate) const COUNTRY: Field = Field {
        index: 5,
        name: "country",
    };
    pub(crate) const REGION: Field = Field {
        index: 6,
        name: "region",
    };
    pub(crate) const CITY: Field = Field {
        index: 7,
        name: "city",
    };
    pub(crate) const POSTAL_CODE: Field = Field {
        index: 8,
        name: "postal_code",
    };
    pub(crate) const BIRTH_DATE: Field = Field {
        index: 9,
        name: "birth_date",
    };
    pub(crate) const BIRTH_YEAR: Field = Field {
        index: 10,
        name: "birth_year",
    };
    pub(crate) const GENDER: Field = Field {
        index: 11,
        name: "gender",
    };
    pub(crate) const TAGS: Field = Field {
        index: 12,
        name: "tags",
    };
    pub(crate) const ACCEPTS_EMAIL_MARKETING: Field = Field {
        index: 13,
        name: "accepts_email_marketing",
    };
    pub(crate) const ACCEPTS_SMS_MARKETING: Field = Field {
        index: 14,
        name: "accepts_sms_marketing",
    };
    pub(crate) const CREATED_AT: Field = Field {
        index: 15,
        name: "created_at",
    };
    pub(crate) const UPDATED_AT: Field = Field {
        index: 16,
        name: "updated_at",
    };
}

/// Fields of order files, by position in `ORDER_FIELDS`.
pub(crate) mod order {
    use super::Field;
    pub(crate) const ID: Field = Field {
        index: 0,
        name: "id",
    };
    pub(crate) const CUSTOMER_ID: Field = Field {
        index: 1,
        name: "customer_id",
    };
    pub(crate) const CREATED_AT: Field = Field {
        index: 2,
        name: "created_at",
    };
    pub(crate) const TOTAL: Field = Field {
        index: 3,
        name: "total",
    };
    pub(crate) const CURRENCY: Field = Field {
        index: 4,
        name: "currency",
    };
    pub(crate) const ITEM_COUNT: Field = Field {
        index: 5,
        name: "item_count",
    };
    pub(crate) const CANCELLED_AT: Field = Field {
        index: 6,
        name: "cancelled_at",
    };
    pub(crate) const REFUNDED: Field = Field {
        index: 7,
        name: "refunded",
    };
    pub(crate) const KIND: Field = Field {
        index: 8,
        name: "kind",
    };
}

/// Fields of event files, by position in `EVENT_FIELDS`.
pub(crate) mod event {
    use super::Field;
    pub(crate) const ID: Field = Field {
        index: 0,
        name: "id",
    };
    pub(crate) const CUSTOMER_ID: Field = Field {
        index: 1,
        name: "customer_id",
    };
    pub(crate) const KIND: Field = Field {
        index: 2,
        name: "kind",
    };
    pub(crate) const OCCURRED_AT: Field = Field {
        index: 3,
        name: "occurred_at",
    };
}

/// Compares headers loosely: `Customer ID`, `customer-id` and `customer_id` are the same.
pub(crate) fn normalise(header: &str) -> String {
    header
        .trim()
        .trim_start_matches('\u{feff}')
        .chars()
        .map(|c| {
            if c == ' ' || c == '-' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// Explicit column choices that override the defaults: field → header, plus custom attributes
/// (`attributes.NAME` → header), for customers only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    by_kind: BTreeMap<(Kind, String), String>,
}

/// A column choice that names no field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    /// Not `KIND.FIELD=COLUMN`.
    #[error(
        "`{0}` is not a column mapping; write KIND.FIELD=COLUMN, e.g. customers.email=\"E-mail Address\""
    )]
    Syntax(String),
    /// The kind is not customers, orders or events.
    #[error("`{0}` is not a record kind; use customers, orders or events")]
    Kind(String),
    /// The field is not one of the kind's fields.
    #[error("{kind} have no field `{field}`{hint}; fields: {known}")]
    Field {
        /// The kind.
        kind: Kind,
        /// The unknown field.
        field: String,
        /// A suggestion, if one is close.
        hint: String,
        /// Every field of the kind.
        known: String,
    },
}

impl Overrides {
    /// No overrides.
    pub fn new() -> Self {
        Overrides::default()
    }

    /// Parses `KIND.FIELD=COLUMN` (`customers.accepts_email_marketing=Newsletter`,
    /// `customers.attributes.tier=Tier`).
    pub fn add_spec(&mut self, spec: &str) -> Result<(), OverrideError> {
        let (key, column) = spec
            .split_once('=')
            .ok_or_else(|| OverrideError::Syntax(spec.to_owned()))?;
        let (kind, field) = key
            .trim()
            .split_once('.')
            .ok_or_else(|| OverrideError::Syntax(spec.to_owned()))?;
        let kind = match kind {
            "customers" => Kind::Customers,
            "orders" => Kind::Orders,
            "events" => Kind::Events,
            other => return Err(OverrideError::Kind(other.to_owned())),
        };
        let column = column.trim().trim_matches('"');
        self.add(kind, field, column)
    }

    /// Maps `field` of `kind` to the column headed `column`.
    pub fn add(&mut self, kind: Kind, field: &str, column: &str) -> Result<(), OverrideError> {
        let is_attribute = kind == Kind::Customers
            && field
                .strip_prefix("attributes.")
                .is_some_and(|n| !n.is_empty());
        if !is_attribute && !fields_of(kind).iter().any(|f| f.name == field) {
            let names: Vec<&str> = fields_of(kind).iter().map(|f| f.name).collect();
            let hint = cohort_core::text::did_you_mean(field, names.iter().copied())
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default();
            return Err(OverrideError::Field {
                kind,
                field: field.to_owned(),
                hint,
                known: names.join(", "),
            });
        }
        self.by_kind
            .insert((kind, field.to_owned()), column.to_owned());
        Ok(())
    }

    pub(crate) fn for_kind(&self, kind: Kind) -> impl Iterator<Item = (&str, &str)> {
        self.by_kind
            .iter()
            .filter(move |((k, _), _)| *k == kind)
            .map(|((_, f), c)| (f.as_str(), c.as_str()))
    }
}

/// Where each field is in one file: column indices resolved from its header line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The kind of record.
    pub kind: Kind,
    /// `fields[i]` is the column of `fields_of(kind)[i]`, if the file has it.
    pub fields: Vec<Option<usize>>,
    /// Custom attributes: name and column.
    pub attributes: Vec<(String, usize)>,
    /// Headers, as written.
    pub headers: Vec<String>,
}

/// Why a header line cannot be read as `kind`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A required field has no column.
    #[error(
        "no column for required field `{field}` of {kind} (looked for: {looked_for}); columns found: {found}. Map it with --map {kind}.{field}=COLUMN"
    )]
    MissingRequired {
        /// The kind.
        kind: Kind,
        /// The field.
        field: &'static str,
        /// The spellings tried.
        looked_for: String,
        /// The file's headers.
        found: String,
    },
    /// An override names a column the file does not have.
    #[error("mapping {kind}.{field}={column}: no column `{column}`; columns found: {found}")]
    MissingColumn {
        /// The kind.
        kind: Kind,
        /// The field.
        field: String,
        /// The column asked for.
        column: String,
        /// The file's headers.
        found: String,
    },
}

impl Resolved {
    /// Finds each field's column in `headers`, overrides first, then known spellings.
    pub fn new(
        kind: Kind,
        headers: &[String],
        overrides: &Overrides,
    ) -> Result<Resolved, ResolveError> {
        let normalised: Vec<String> = headers.iter().map(|h| normalise(h)).collect();
        let found = || headers.join(", ");
        let find = |column: &str| normalised.iter().position(|h| *h == normalise(column));
        let mut fields = vec![None; fields_of(kind).len()];
        let mut attributes = Vec::new();
        for (field, column) in overrides.for_kind(kind) {
            let index = find(column).ok_or_else(|| ResolveError::MissingColumn {
                kind,
                field: field.to_owned(),
                column: column.to_owned(),
                found: found(),
            })?;
            match field.strip_prefix("attributes.") {
                Some(name) => attributes.push((name.to_owned(), index)),
                None => {
                    let i = fields_of(kind)
                        .iter()
                        .position(|f| f.name == field)
                        .unwrap_or_default();
                    fields[i] = Some(index);
                }
            }
        }
        let mut taken: Vec<bool> = vec![false; headers.len()];
        for index in fields
            .iter()
            .flatten()
            .chain(attributes.iter().map(|(_, i)| i))
        {
            taken[*index] = true;
        }
        for (i, spec) in fields_of(kind).iter().enumerate() {
            if fields[i].is_some() {
                continue;
            }
            fields[i] = spec
                .aliases
                .iter()
                .find_map(|alias| find(alias).filter(|&col| !taken[col]));
            if let Some(col) = fields[i] {
                taken[col] = true;
            } else if spec.required {
                return Err(ResolveError::MissingRequired {
                    kind,
                    field: spec.name,
                    looked_for: spec.aliases.join(", "),
                    found: found(),
                });
            }
        }
        Ok(Resolved {
            kind,
            fields,
            attributes,
            headers: headers.to_vec(),
        })
    }

    /// The column of a canonical field.
    pub fn column(&self, field: &str) -> Option<usize> {
        let i = fields_of(self.kind).iter().position(|f| f.name == field)?;
        self.fields[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(h: &str) -> Vec<String> {
        h.split(',').map(str::to_owned).collect()
    }

    #[test]
    fn field_constants_match_the_field_lists() {
        let check = |kind: Kind, consts: &[Field]| {
            assert_eq!(consts.len(), fields_of(kind).len(), "{kind}");
            for c in consts {
                assert_eq!(fields_of(kind)[c.index].name, c.name, "{kind}");
            }
        };
        use super::{customer as c, event as e, order as o};
        check(
            Kind::Customers,
            &[
                c::ID,
                c::EMAIL,
                c::PHONE,
                c::FIRST_NAME,
                c::LAST_NAME,
                c::COUNTRY,
                c::REGION,
                c::CITY,
                c::POSTAL_CODE,
                c::BIRTH_DATE,
                c::BIRTH_YEAR,
                c::GENDER,
                c::TAGS,
                c::ACCEPTS_EMAIL_MARKETING,
                c::ACCEPTS_SMS_MARKETING,
                c::CREATED_AT,
                c::UPDATED_AT,
            ],
        );
        check(
            Kind::Orders,
            &[
                o::ID,
                o::CUSTOMER_ID,
                o::CREATED_AT,
                o::TOTAL,
                o::CURRENCY,
                o::ITEM_COUNT,
                o::CANCELLED_AT,
                o::REFUNDED,
                o::KIND,
            ],
        );
        check(
            Kind::Events,
            &[e::ID, e::CUSTOMER_ID, e::KIND, e::OCCURRED_AT],
        );
    }

    #[test]
    fn generator_layout_resolves_without_configuration() {
        let r = Resolved::new(
            Kind::Customers,
            &headers("id,email,country,city,birth_year,gender,tags,accepts_marketing,created_at"),
            &Overrides::new(),
        )
        .expect("resolves");
        assert_eq!(r.column("accepts_email_marketing"), Some(7));
        assert_eq!(r.column("phone"), None);
    }

    #[test]
    fn shopify_export_resolves_without_configuration() {
        let h = "Customer ID,First Name,Last Name,Email,Accepts Email Marketing,Default Address Company,\
                 Default Address Address1,Default Address City,Default Address Province Code,\
                 Default Address Country Code,Default Address Zip,Default Address Phone,Phone,\
                 Accepts SMS Marketing,Total Spent,Total Orders,Note,Tax Exempt,Tags";
        let r = Resolved::new(Kind::Customers, &headers(h), &Overrides::new()).expect("resolves");
        assert_eq!(r.column("id"), Some(0));
        assert_eq!(r.column("country"), Some(9));
        assert_eq!(
            r.column("phone"),
            Some(12),
            "the customer's own phone beats the address phone"
        );
        assert_eq!(r.column("accepts_sms_marketing"), Some(13));
        assert_eq!(r.column("tags"), Some(18));
    }

    #[test]
    fn overrides_win_and_bad_ones_are_explained() {
        let mut o = Overrides::new();
        o.add_spec("customers.email=Contact").expect("valid");
        o.add_spec("customers.attributes.tier=Tier").expect("valid");
        let r = Resolved::new(Kind::Customers, &headers("id,email,Contact,Tier"), &o)
            .expect("resolves");
        assert_eq!(r.column("email"), Some(2));
        assert_eq!(r.attributes, vec![("tier".to_owned(), 3)]);

        let err = Overrides::new()
            .add_spec("customers.emial=x")
            .expect_err("unknown field");
        assert!(err.to_string().contains("did you mean `email`?"), "{err}");
        assert!(Overrides::new().add_spec("clients.email=x").is_err());
        assert!(Overrides::new().add_spec("customers.email").is_err());
        let err = Resolved::new(Kind::Customers, &headers("id"), &o).expect_err("missing column");
        assert!(
            err.to_string()
                .contains("no column `Tier`; columns found: id"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_required_column_names_what_was_looked_for() {
        let err = Resolved::new(
            Kind::Orders,
            &headers("order_id,customer,when"),
            &Overrides::new(),
        )
        .expect_err("no date");
        let msg = err.to_string();
        assert!(
            msg.contains("`created_at`") && msg.contains("columns found: order_id, customer, when"),
            "{msg}"
        );
        assert!(msg.contains("--map orders.created_at=COLUMN"), "{msg}");
    }
}
