//! Type checking: does every predicate make sense for its field?
//!
//! Checking needs only field names and types ([`FieldInfo`]), not data, so a config file can be
//! validated before any customer is loaded. It collects every error in the expression rather
//! than stopping at the first: unlike syntax errors, type errors are independent of each other.
//! Compilation relies on a checked tree and never reports these errors itself.
//!
//! | field type            | operators                                             | values                          |
//! |-----------------------|-------------------------------------------------------|---------------------------------|
//! | integer, number, money| `= != < <= > >=`, `in`, `not in`, `between`           | numbers                         |
//! | date-time             | `= != < <= > >=`, `in`, `not in`, `between`           | dates, date-times, `-90d`, `today` |
//! | boolean               | `= !=`, `in`, `not in`, bare field                    | `true`, `false`                 |
//! | text                  | `= !=`, `in`, `not in`, `contains`, `starts with`, `ends with` | quoted text            |
//! | tags                  | `contains`, `not contains`                            | quoted text                     |
//!
//! `is null` / `is not null` apply to every field.

use super::ast::{Expr, Lit, Literal, Predicate, Test};
use super::diagnostic::{Diagnostic, did_you_mean};
use crate::features::{FieldInfo, FieldType};

/// Checks names and types of every predicate against `fields`.
///
/// `in_segment` references are not resolved here (that needs the other segments: see
/// [`super::SegmentSet::check`]).
pub fn check(expr: &Expr, fields: &[FieldInfo]) -> Result<(), Vec<Diagnostic>> {
    let mut errors = Vec::new();
    for pred in expr.predicates() {
        match fields.iter().find(|f| f.name == pred.field.name) {
            Some(info) => check_predicate(pred, info.ty, &mut errors),
            None => {
                let mut d = Diagnostic::new(
                    format!("unknown field `{}`", pred.field.name),
                    pred.field.span.clone(),
                );
                if let Some(near) =
                    did_you_mean(&pred.field.name, fields.iter().map(|f| f.name.as_str()))
                {
                    d = d.with_help(format!("did you mean `{near}`?"));
                }
                errors.push(d);
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// How a field's type reads in a sentence: "`country` is text".
fn phrase(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Int => "an integer",
        FieldType::Float => "a number",
        FieldType::Money => "money",
        FieldType::Time => "a date-time",
        FieldType::Bool => "true/false",
        FieldType::String => "text",
        FieldType::Tags => "a set of tags",
    }
}

fn ordered(ty: FieldType) -> bool {
    matches!(
        ty,
        FieldType::Int | FieldType::Float | FieldType::Money | FieldType::Time
    )
}

/// What the field's type can be tested with, for hints.
fn usage(field: &str, ty: FieldType) -> String {
    match ty {
        FieldType::Int | FieldType::Float | FieldType::Money => {
            format!("compare numbers with =, !=, <, <=, >, >=, in or between, e.g. `{field} >= 3`")
        }
        FieldType::Time => {
            format!("compare dates with =, !=, <, <=, >, >=, in or between, e.g. `{field} >= -90d`")
        }
        FieldType::Bool => {
            format!("test true/false with `{field} = true`, `{field} = false` or just `{field}`")
        }
        FieldType::String => {
            format!(
                "test text with =, !=, in, not in, contains, starts with or ends with, e.g. `{field} = 'US'`"
            )
        }
        FieldType::Tags => {
            format!("test tags with contains or not contains, e.g. `{field} contains 'vip'`")
        }
    }
}

fn check_predicate(pred: &Predicate, ty: FieldType, errors: &mut Vec<Diagnostic>) {
    let field = pred.field.name.as_str();
    let op_error = |op: &str, accepts: &str| {
        Diagnostic::new(
            format!("`{op}` {accepts}, but `{field}` is {}", phrase(ty)),
            pred.op_span.clone(),
        )
        .with_help(usage(field, ty))
    };
    const ORDERING: &str = "compares numbers, money and dates";
    let literals: Vec<&Literal> = match &pred.test {
        Test::Compare(op, value) => {
            if ty == FieldType::Tags {
                return errors.push(op_error(op.as_str(), "does not apply to tags"));
            }
            if op.is_ordering() && !ordered(ty) {
                return errors.push(op_error(op.as_str(), ORDERING));
            }
            vec![value]
        }
        Test::In { negated, values } => {
            if ty == FieldType::Tags {
                let op = if *negated { "not in" } else { "in" };
                return errors.push(op_error(op, "does not apply to tags"));
            }
            values.iter().collect()
        }
        Test::Between(low, high) => {
            if !ordered(ty) {
                return errors.push(op_error("between", ORDERING));
            }
            vec![low, high]
        }
        Test::Contains { negated, value } => {
            if !matches!(ty, FieldType::Tags | FieldType::String) {
                let op = if *negated { "not contains" } else { "contains" };
                return errors.push(op_error(op, "applies to tags and text"));
            }
            vec![value]
        }
        Test::StartsWith(value) | Test::EndsWith(value) => {
            if ty != FieldType::String {
                let op = if matches!(pred.test, Test::StartsWith(_)) {
                    "starts with"
                } else {
                    "ends with"
                };
                return errors.push(op_error(op, "applies to text"));
            }
            vec![value]
        }
        Test::IsNull { .. } => vec![],
        Test::IsTrue => {
            if ty != FieldType::Bool {
                errors.push(
                    Diagnostic::new(
                        format!(
                            "`{field}` is {}, so it cannot stand alone as a condition",
                            phrase(ty)
                        ),
                        pred.field.span.clone(),
                    )
                    .with_help(usage(field, ty)),
                );
            }
            vec![]
        }
    };
    for lit in literals {
        if !accepts(ty, &lit.lit) {
            errors.push(
                Diagnostic::new(
                    format!(
                        "`{field}` is {}, but {lit} is {}",
                        phrase(ty),
                        lit_phrase(&lit.lit)
                    ),
                    lit.span.clone(),
                )
                .with_help(value_hint(ty)),
            );
        }
    }
}

fn accepts(ty: FieldType, lit: &Lit) -> bool {
    match ty {
        FieldType::Int | FieldType::Float | FieldType::Money => matches!(lit, Lit::Number(_)),
        FieldType::Time => matches!(
            lit,
            Lit::Date(_) | Lit::DateTime(_) | Lit::Relative(_) | Lit::Today
        ),
        FieldType::Bool => matches!(lit, Lit::Bool(_)),
        FieldType::String | FieldType::Tags => matches!(lit, Lit::String(_)),
    }
}

fn lit_phrase(lit: &Lit) -> &'static str {
    match lit {
        Lit::Number(_) => "a number",
        Lit::String(_) => "text",
        Lit::Bool(_) => "true/false",
        Lit::Date(_) | Lit::Today => "a date",
        Lit::DateTime(_) => "a date-time",
        Lit::Relative(_) => "a relative date",
    }
}

fn value_hint(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Int | FieldType::Float | FieldType::Money => "write a number, e.g. 500 or 49.99",
        FieldType::Time => {
            "write a date (2024-01-31), a date-time (2024-01-31T14:30:00), a relative date (-90d, -6m) or today"
        }
        FieldType::Bool => "write true or false",
        FieldType::String => "write quoted text, e.g. 'US'",
        FieldType::Tags => "write a quoted tag, e.g. 'vip'",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::parse;

    fn fields() -> Vec<FieldInfo> {
        [
            ("orders_count", FieldType::Int),
            ("total_spent", FieldType::Money),
            ("rate", FieldType::Float),
            ("last_order_at", FieldType::Time),
            ("accepts_email_marketing", FieldType::Bool),
            ("country", FieldType::String),
            ("tags", FieldType::Tags),
        ]
        .into_iter()
        .map(|(name, ty)| FieldInfo {
            name: name.into(),
            ty,
            doc: String::new(),
        })
        .collect()
    }

    fn errors(src: &str) -> Vec<Diagnostic> {
        check(&parse(src).expect("parses"), &fields()).expect_err("should not check")
    }

    fn ok(src: &str) {
        if let Err(e) = check(&parse(src).expect("parses"), &fields()) {
            panic!("{src}: {}", e[0].render(src));
        }
    }

    #[test]
    fn well_typed_expressions_pass() {
        ok("orders_count >= 3 and total_spent > 49.99 and rate between 0.1 and 0.5");
        ok(
            "last_order_at >= -90d and last_order_at < today and last_order_at in (2024-01-01, 2024-01-02T10:00:00)",
        );
        ok(
            "accepts_email_marketing and accepts_email_marketing != false and accepts_email_marketing in (true)",
        );
        ok(
            "country in ('US', 'CA') and country contains 'u' and country starts with 'U' and country ends with 'S'",
        );
        ok(
            "tags contains 'vip' and tags not contains 'x' and tags is not null and country is null",
        );
    }

    #[test]
    fn unknown_fields_suggest_the_nearest_name() {
        let src = "total_spend > 500";
        let e = errors(src);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].message, "unknown field `total_spend`");
        assert_eq!(
            e[0].render(src),
            "error: unknown field `total_spend` (column 1)\n  total_spend > 500\n  ^^^^^^^^^^^\n  help: did you mean `total_spent`?"
        );
        assert_eq!(errors("birthday = 1")[0].help, None);
    }

    #[test]
    fn ordering_text_is_a_type_error_at_the_operator() {
        let src = "country > 5";
        let e = errors(src);
        assert_eq!(e.len(), 1);
        assert_eq!(
            e[0].message,
            "`>` compares numbers, money and dates, but `country` is text"
        );
        assert_eq!(e[0].column(src), 9);
        assert!(
            e[0].render(src).contains("\n          ^\n"),
            "{}",
            e[0].render(src)
        );
        assert_eq!(
            errors("accepts_email_marketing <= true")[0].message,
            "`<=` compares numbers, money and dates, but `accepts_email_marketing` is true/false"
        );
    }

    #[test]
    fn mismatched_values_are_blamed_on_the_value() {
        let src = "total_spent > '500'";
        let e = errors(src);
        assert_eq!(e[0].message, "`total_spent` is money, but '500' is text");
        assert_eq!(e[0].span, 14..19);
        assert_eq!(
            e[0].help.as_deref(),
            Some("write a number, e.g. 500 or 49.99")
        );
        assert_eq!(
            errors("last_order_at > 5")[0].message,
            "`last_order_at` is a date-time, but 5 is a number"
        );
        assert_eq!(
            errors("orders_count = today")[0].message,
            "`orders_count` is an integer, but today is a date"
        );
        assert_eq!(errors("country in ('US', 5)")[0].span, 18..19);
    }

    #[test]
    fn tags_only_take_contains() {
        assert_eq!(
            errors("tags = 'vip'")[0].message,
            "`=` does not apply to tags, but `tags` is a set of tags"
        );
        assert_eq!(
            errors("tags = 'vip'")[0].help.as_deref(),
            Some("test tags with contains or not contains, e.g. `tags contains 'vip'`")
        );
        assert_eq!(
            errors("tags in ('vip')")[0].message,
            "`in` does not apply to tags, but `tags` is a set of tags"
        );
        assert_eq!(
            errors("tags starts with 'v'")[0].message,
            "`starts with` applies to text, but `tags` is a set of tags"
        );
    }

    #[test]
    fn other_misuses() {
        assert_eq!(
            errors("orders_count contains 3")[0].message,
            "`contains` applies to tags and text, but `orders_count` is an integer"
        );
        assert_eq!(
            errors("country between 'a' and 'b'")[0].message,
            "`between` compares numbers, money and dates, but `country` is text"
        );
        let e = errors("orders_count and country");
        assert_eq!(e.len(), 2, "every error is reported");
        assert_eq!(
            e[0].message,
            "`orders_count` is an integer, so it cannot stand alone as a condition"
        );
        assert_eq!(
            e[0].help.as_deref(),
            Some(
                "compare numbers with =, !=, <, <=, >, >=, in or between, e.g. `orders_count >= 3`"
            )
        );
    }
}
