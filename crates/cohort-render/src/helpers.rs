//! The helpers templates call: `money`, `date`, `default`, `pluralize`, the case helpers and
//! `top_products`.
//!
//! Each returns a value rather than writing output, so handlebars escapes the result the way
//! the template's kind asks (HTML or none) and the helpers compose as subexpressions
//! (`{{upper (default first_name "there")}}`).
//!
//! Strictness is the helpers' job for their own parameters: handlebars hands a helper a
//! "missing" marker for an absent path instead of failing, so every helper but `default`
//! turns that marker into the same missing-variable error a plain `{{field}}` gets. `null`
//! is a value, not a miss: it renders as an empty string.

use chrono_tz::Tz;
use cohort_core::{Money, Timestamp};
use handlebars::{
    Context, Handlebars, Helper, HelperDef, PathAndJson, RenderContext, RenderError,
    RenderErrorReason, ScopedJson,
};
use serde_json::Value;

use crate::format;

/// Names of the helpers this crate registers.
pub(crate) const HELPERS: &[&str] = &[
    "money",
    "date",
    "default",
    "pluralize",
    "upper",
    "lower",
    "capitalize",
    "title",
    "top_products",
];

/// Helpers built into handlebars (block and expression).
pub(crate) const BUILTIN_HELPERS: &[&str] = &[
    "if", "unless", "each", "with", "lookup", "raw", "log", "eq", "ne", "gt", "gte", "lt", "lte",
    "and", "or", "not", "len",
];

/// Registers every helper on `registry`, bound to the workspace's zone and currency.
pub(crate) fn register(registry: &mut Handlebars<'static>, tz: Tz, currency: &str) {
    registry.register_helper(
        "money",
        Box::new(MoneyHelper {
            currency: currency.to_owned(),
        }),
    );
    registry.register_helper("date", Box::new(DateHelper { tz }));
    registry.register_helper("default", Box::new(DefaultHelper));
    registry.register_helper("pluralize", Box::new(PluralizeHelper));
    for case in [Case::Upper, Case::Lower, Case::Capitalize, Case::Title] {
        registry.register_helper(case.name(), Box::new(CaseHelper(case)));
    }
    registry.register_helper("top_products", Box::new(TopProductsHelper));
}

fn other(message: String) -> RenderError {
    RenderErrorReason::Other(message).into()
}

/// Parameter `idx`, which the template must pass and the context must have.
fn required<'a, 'rc>(
    h: &'a Helper<'rc>,
    idx: usize,
    usage: &str,
) -> Result<&'a PathAndJson<'rc>, RenderError> {
    let param = h.param(idx).ok_or_else(|| {
        other(format!(
            "`{}` is missing a parameter; use it as {usage}",
            h.name()
        ))
    })?;
    if param.is_value_missing() {
        return Err(RenderError::strict_error(param.relative_path()));
    }
    Ok(param)
}

/// Parameter `idx` if the template passes it; a passed path the context lacks is still an error.
fn optional<'a, 'rc>(h: &'a Helper<'rc>, idx: usize) -> Result<Option<&'a Value>, RenderError> {
    match h.param(idx) {
        None => Ok(None),
        Some(p) if p.is_value_missing() => Err(RenderError::strict_error(p.relative_path())),
        Some(p) => Ok(Some(p.value())),
    }
}

fn string_param(value: &Value, helper: &str, what: &str) -> Result<String, RenderError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        other_value => Err(other(format!(
            "`{helper}` expects {what} as text, got {other_value}"
        ))),
    }
}

/// `{{money amount}}` or `{{money amount "EUR"}}`.
struct MoneyHelper {
    currency: String,
}

impl MoneyHelper {
    const USAGE: &'static str = "{{money total_spent}} or {{money total_spent \"EUR\"}}";
}

fn money_of(value: &Value) -> Result<Option<Money>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => Money::parse(s)
            .map(Some)
            .map_err(|e| format!("`money`: {e}")),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.checked_mul(cohort_core::money::SCALE)
                    .map(|raw| Some(Money::from_raw(raw)))
                    .ok_or_else(|| format!("`money`: {n} is too large"))
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                let raw = (f * cohort_core::money::SCALE as f64).round();
                if raw.is_finite() && raw.abs() < i64::MAX as f64 {
                    Ok(Some(Money::from_raw(raw as i64)))
                } else {
                    Err(format!("`money`: {n} is too large"))
                }
            }
        }
        other_value => Err(format!("`money` expects an amount, got {other_value}")),
    }
}

impl HelperDef for MoneyHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let amount = required(h, 0, Self::USAGE)?;
        let currency = match optional(h, 1)? {
            Some(v) => string_param(v, "money", "the currency")?,
            None => self.currency.clone(),
        };
        if !format::is_currency_code(&currency) {
            return Err(other(format!(
                "`money`: `{currency}` is not an ISO 4217 currency code such as \"EUR\""
            )));
        }
        let text = money_of(amount.value())
            .map_err(other)?
            .map(|m| format::format_money(m, &currency))
            .unwrap_or_default();
        Ok(ScopedJson::Derived(Value::String(text)))
    }
}

/// `{{date at}}` or `{{date at "%B %-d, %Y"}}`, in the workspace's time zone.
struct DateHelper {
    tz: Tz,
}

impl HelperDef for DateHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let at = required(
            h,
            0,
            "{{date last_order_at}} or {{date last_order_at \"%B %-d, %Y\"}}",
        )?;
        let fmt = match optional(h, 1)? {
            Some(v) => string_param(v, "date", "the format")?,
            None => format::DEFAULT_DATE_FORMAT.to_owned(),
        };
        let at = match at.value() {
            Value::Null => return Ok(ScopedJson::Derived(Value::String(String::new()))),
            Value::String(s) if s.trim().is_empty() => {
                return Ok(ScopedJson::Derived(Value::String(String::new())));
            }
            Value::String(s) => Timestamp::parse(s).map_err(|e| other(format!("`date`: {e}")))?,
            Value::Number(n) => n
                .as_i64()
                .map(Timestamp::from_secs)
                .ok_or_else(|| other(format!("`date`: {n} is not whole seconds since 1970")))?,
            v => return Err(other(format!("`date` expects a date, got {v}"))),
        };
        let text = format::format_date(at, self.tz, &fmt).map_err(|_| {
            other(format!(
                "`date`: `{fmt}` is not a valid strftime format (e.g. \"%B %-d, %Y\", \"%Y-%m-%d\")"
            ))
        })?;
        Ok(ScopedJson::Derived(Value::String(text)))
    }
}

/// `{{default value fallback}}`: the value unless it is absent, null or blank text.
///
/// The one helper that accepts a missing path: being the answer to "this field may not be
/// there" is its whole job.
struct DefaultHelper;

impl HelperDef for DefaultHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let usage = "{{default first_name \"there\"}}";
        let value = h
            .param(0)
            .ok_or_else(|| other(format!("`default` needs a value and a fallback: {usage}")))?;
        let fallback = required(h, 1, usage)?;
        let blank = match value.value() {
            _ if value.is_value_missing() => true,
            Value::Null => true,
            Value::String(s) => s.trim().is_empty(),
            _ => false,
        };
        let chosen = if blank { fallback } else { value };
        Ok(ScopedJson::Derived(chosen.value().clone()))
    }
}

/// `{{pluralize orders_count "order"}}` → `3 orders`; `{{pluralize n "person" "people"}}`.
struct PluralizeHelper;

impl HelperDef for PluralizeHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let usage = "{{pluralize orders_count \"order\"}} or {{pluralize n \"person\" \"people\"}}";
        let count = required(h, 0, usage)?;
        let singular = string_param(required(h, 1, usage)?.value(), "pluralize", "the noun")?;
        let plural = optional(h, 2)?
            .map(|v| string_param(v, "pluralize", "the plural"))
            .transpose()?;
        let (shown, one) = match count.value() {
            Value::Null => (String::from("0"), false),
            Value::Number(n) => (n.to_string(), n.as_f64() == Some(1.0)),
            Value::String(s) if s.trim().parse::<f64>().is_ok() => (
                s.trim().to_owned(),
                s.trim().parse::<f64>().ok() == Some(1.0),
            ),
            v => return Err(other(format!("`pluralize` expects a count, got {v}"))),
        };
        let noun = if one {
            singular
        } else {
            plural.unwrap_or_else(|| format::plural_of(&singular))
        };
        Ok(ScopedJson::Derived(Value::String(format!(
            "{shown} {noun}"
        ))))
    }
}

#[derive(Debug, Clone, Copy)]
enum Case {
    Upper,
    Lower,
    Capitalize,
    Title,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Upper => "upper",
            Case::Lower => "lower",
            Case::Capitalize => "capitalize",
            Case::Title => "title",
        }
    }

    fn apply(self, s: &str) -> String {
        match self {
            Case::Upper => s.to_uppercase(),
            Case::Lower => s.to_lowercase(),
            Case::Capitalize => format::capitalize(s),
            Case::Title => format::title_case(s),
        }
    }
}

/// `{{upper x}}`, `{{lower x}}`, `{{capitalize x}}`, `{{title x}}`.
struct CaseHelper(Case);

impl HelperDef for CaseHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        if h.params().is_empty() && !h.is_block() {
            // `{{title}}` inside `{{#each (top_products 3)}}` means the product's title: a
            // bare name is a field lookup, as it would be if no helper had that name.
            let value = rc.evaluate(ctx, self.0.name())?;
            if value.is_missing() {
                return Err(RenderError::strict_error(Some(&self.0.name().to_owned())));
            }
            return Ok(ScopedJson::Derived(value.as_json().clone()));
        }
        let usage = format!("{{{{{} first_name}}}}", self.0.name());
        let value = required(h, 0, &usage)?;
        let text = match value.value() {
            Value::Null => String::new(),
            Value::String(s) => self.0.apply(s),
            other_value => self.0.apply(&handlebars::JsonRender::render(other_value)),
        };
        Ok(ScopedJson::Derived(Value::String(text)))
    }
}

/// `{{#each (top_products 3)}}`: the first N of the context's `top_products`, which the
/// context keeps sorted; without N, all of them.
struct TopProductsHelper;

impl HelperDef for TopProductsHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let limit = match optional(h, 0)? {
            None => usize::MAX,
            Some(Value::Number(n)) if n.as_u64().is_some() => {
                usize::try_from(n.as_u64().unwrap_or(0)).unwrap_or(usize::MAX)
            }
            Some(v) => {
                return Err(other(format!(
                    "`top_products` expects how many products to list (a whole number), got {v}"
                )));
            }
        };
        let products = match ctx.data().get("top_products") {
            Some(Value::Array(items)) => items.iter().take(limit).cloned().collect(),
            Some(Value::Null) | None => Vec::new(),
            Some(v) => {
                return Err(other(format!(
                    "`top_products` in the context is not a list: {v}"
                )));
            }
        };
        Ok(ScopedJson::Derived(Value::Array(products)))
    }
}

#[cfg(test)]
mod tests {
    use crate::renderer::Kind;
    use crate::renderer::tests::{render_as, text, text_err};

    #[test]
    fn money_uses_the_workspace_currency_or_an_explicit_one() {
        assert_eq!(text("{{money total_spent}}"), "$1,234.50");
        assert_eq!(text("{{money total_spent \"EUR\"}}"), "€1,234.50");
        assert_eq!(text("{{money total_spent \"JPY\"}}"), "¥1,235");
        assert_eq!(text("{{money total_spent \"XYZ\"}}"), "1,234.50 XYZ");
        assert_eq!(text("{{money 12}} {{money 0.1}}"), "$12.00 $0.10");
        assert_eq!(text("{{money top_products.0.revenue}}"), "$45.00");
    }

    #[test]
    fn money_of_null_is_empty_and_composes_with_default() {
        assert_eq!(text("[{{money avg_order_value}}]"), "[]");
        assert_eq!(text("{{default (money avg_order_value) \"n/a\"}}"), "n/a");
    }

    #[test]
    fn money_refuses_what_is_not_an_amount_or_a_currency() {
        assert!(
            text_err("{{money first_name}}")
                .message
                .contains("not a decimal amount")
        );
        assert!(
            text_err("{{money total_spent \"euro\"}}")
                .message
                .contains("not an ISO 4217 currency code")
        );
        assert!(
            text_err("{{money}}")
                .message
                .contains("{{money total_spent}}")
        );
        let e = text_err("{{money total_spnt}}");
        assert!(
            e.message.contains("`total_spnt` is not in the context"),
            "{e}"
        );
    }

    #[test]
    fn dates_render_in_the_workspace_zone() {
        // 04:30 UTC on February 1st is 23:30 on January 31st in New York.
        assert_eq!(text("{{date last_order_at}}"), "January 31, 2024");
        assert_eq!(
            text("{{date last_order_at \"%Y-%m-%d %H:%M\"}}"),
            "2024-01-31 23:30"
        );
        assert_eq!(text("{{date now \"%A\"}}"), "Thursday");
        assert_eq!(text("[{{date created_at}}]"), "[]");
    }

    #[test]
    fn dates_refuse_bad_formats_and_values() {
        assert!(
            text_err("{{date now \"%Q\"}}")
                .message
                .contains("not a valid strftime format")
        );
        assert!(text_err("{{date first_name}}").message.contains("`date`"));
        assert!(
            text_err("{{date never_set}}")
                .message
                .contains("`never_set`")
        );
    }

    #[test]
    fn default_replaces_absent_null_and_blank_values() {
        assert_eq!(text("Hi {{default first_name \"there\"}}"), "Hi ann");
        // null in the context
        assert_eq!(text("Hi {{default last_name \"there\"}}"), "Hi there");
        // absent from the context: strict mode still lets `default` decide
        assert_eq!(text("Hi {{default nickname \"there\"}}"), "Hi there");
        assert_eq!(text("Hi {{default attributes.nick \"there\"}}"), "Hi there");
        // blank text
        assert_eq!(text("{{default (lower \"  \") \"blank\"}}"), "blank");
        // a fallback from the context
        assert_eq!(text("{{default last_name first_name}}"), "ann");
        // zero and false are values
        assert_eq!(text("{{default 0 \"none\"}}"), "0");
    }

    #[test]
    fn default_needs_its_fallback() {
        assert!(
            text_err("{{default first_name}}")
                .message
                .contains("{{default first_name \"there\"}}")
        );
        assert!(
            text_err("{{default last_name missing_too}}")
                .message
                .contains("`missing_too`")
        );
    }

    #[test]
    fn pluralize_counts_and_picks_the_noun() {
        assert_eq!(text("{{pluralize orders_count \"order\"}}"), "3 orders");
        assert_eq!(text("{{pluralize 1 \"order\"}}"), "1 order");
        assert_eq!(text("{{pluralize 0 \"box\"}}"), "0 boxes");
        assert_eq!(text("{{pluralize 2 \"person\" \"people\"}}"), "2 people");
        assert_eq!(text("{{pluralize 1 \"person\" \"people\"}}"), "1 person");
        assert_eq!(text("{{pluralize \"1\" \"order\"}}"), "1 order");
        assert!(
            text_err("{{pluralize first_name \"order\"}}")
                .message
                .contains("expects a count")
        );
    }

    #[test]
    fn case_helpers_change_case() {
        assert_eq!(text("{{upper first_name}}"), "ANN");
        assert_eq!(text("{{lower \"ÉLODIE\"}}"), "élodie");
        assert_eq!(text("{{capitalize first_name}}"), "Ann");
        assert_eq!(text("{{title \"ANN-MARIE SMITH\"}}"), "Ann-Marie Smith");
        assert_eq!(text("[{{upper last_name}}]"), "[]");
        assert_eq!(text("{{upper orders_count}}"), "3");
        assert!(
            text_err("{{upper nickname}}")
                .message
                .contains("`nickname`")
        );
    }

    #[test]
    fn top_products_lists_the_first_n_by_quantity_then_revenue() {
        assert_eq!(
            text(
                "{{#each (top_products 2)}}{{title}} x{{quantity}} ({{money revenue}}); {{/each}}"
            ),
            "Giant Steps x3 ($45.00); Kind of Blue x3 ($30.00); "
        );
        assert_eq!(
            text("{{#each top_products}}{{@index}}:{{this.title}} {{/each}}"),
            "0:Giant Steps 1:Kind of Blue 2:Blue <Train> "
        );
        assert_eq!(text("{{len (top_products 10)}}"), "3");
        assert_eq!(
            text("{{#each (top_products 0)}}x{{else}}none{{/each}}"),
            "none"
        );
        assert!(
            text_err("{{#each (top_products \"3\")}}{{/each}}")
                .message
                .contains("whole number")
        );
    }

    #[test]
    fn top_products_are_escaped_in_html() {
        assert_eq!(
            render_as(
                Kind::Html,
                "{{#each (top_products 3)}}{{#if @last}}{{title}} {{upper title}}{{/if}}{{/each}}"
            )
            .unwrap(),
            "Blue &lt;Train&gt; BLUE &lt;TRAIN&gt;"
        );
    }

    #[test]
    fn a_bare_title_outside_a_product_is_a_missing_field() {
        let e = text_err("{{title}}");
        assert!(e.message.contains("`title` is not in the context"), "{e}");
    }
}
