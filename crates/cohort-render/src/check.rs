//! Validate-time check of the names a template uses.
//!
//! Strict mode finds a misspelt field only when a customer is rendered; this walk finds it
//! when the config is validated, for every branch, including `{{#if}}` branches no test
//! customer would take.
//!
//! Scope is tracked the way handlebars resolves names: only `{{#each}}` and `{{#with}}` move
//! the context, so inside them a bare name belongs to the item and is left alone. `@root.x`
//! is checked anywhere; `../x` is checked when it climbs exactly back to the top. Partials
//! and decorators are not walked (campaign templates do not use them).

use std::collections::BTreeSet;

use handlebars::template::{HelperTemplate, Parameter, Template, TemplateElement};

use crate::context::subfields;
use crate::error::TemplateError;
use crate::helpers::{BUILTIN_HELPERS, HELPERS};
use crate::renderer::TemplateSpec;

/// Helpers that change what bare names refer to inside their block.
const CONTEXT_HELPERS: &[&str] = &["each", "with"];

/// Helpers that, used bare (`{{title}}`), look up the field of their name instead: product
/// items have a `title`.
const FIELD_LIKE_HELPERS: &[&str] = &["upper", "lower", "capitalize", "title"];

pub(crate) fn check(
    template: &Template,
    spec: &TemplateSpec,
    known: &BTreeSet<&'static str>,
) -> Vec<TemplateError> {
    let mut walker = Walker {
        spec,
        known,
        errors: Vec::new(),
    };
    walker.template(template, 0);
    walker.errors
}

struct Walker<'a> {
    spec: &'a TemplateSpec,
    known: &'a BTreeSet<&'static str>,
    errors: Vec<TemplateError>,
}

fn is_helper(name: &str) -> bool {
    HELPERS.contains(&name) || BUILTIN_HELPERS.contains(&name)
}

fn name_of(p: &Parameter) -> Option<&str> {
    match p {
        Parameter::Name(n) => Some(n),
        Parameter::Path(handlebars::Path::Relative((_, raw))) => Some(raw),
        _ => None,
    }
}

impl Walker<'_> {
    fn template(&mut self, t: &Template, depth: usize) {
        for (i, element) in t.elements.iter().enumerate() {
            let at = t.mapping.get(i).map_or((1, 1), |m| (m.0, m.1));
            match element {
                TemplateElement::Expression(ht) | TemplateElement::HtmlExpression(ht) => {
                    self.expression(ht, at, depth);
                }
                TemplateElement::HelperBlock(ht) => self.block(ht, at, depth),
                _ => {}
            }
        }
    }

    fn expression(&mut self, ht: &HelperTemplate, at: (usize, usize), depth: usize) {
        if ht.params.is_empty() && ht.hash.is_empty() {
            match &ht.name {
                Parameter::Subexpression(_) | Parameter::Literal(_) => {
                    self.param(&ht.name, at, depth);
                }
                name => {
                    let Some(n) = name_of(name) else { return };
                    if !is_helper(n) || FIELD_LIKE_HELPERS.contains(&n) {
                        self.path(n, at, depth);
                    }
                }
            }
            return;
        }
        self.helper_call(&ht.name, &ht.params, ht.hash.values(), at, depth);
    }

    fn block(&mut self, ht: &HelperTemplate, at: (usize, usize), depth: usize) {
        self.helper_call(&ht.name, &ht.params, ht.hash.values(), at, depth);
        let moves = name_of(&ht.name).is_some_and(|n| CONTEXT_HELPERS.contains(&n));
        if let Some(body) = &ht.template {
            self.template(body, depth + usize::from(moves));
        }
        // `{{else}}` renders in the block's outer context.
        if let Some(inverse) = &ht.inverse {
            self.template(inverse, depth);
        }
    }

    fn helper_call<'p>(
        &mut self,
        name: &Parameter,
        params: &[Parameter],
        hash: impl Iterator<Item = &'p Parameter>,
        at: (usize, usize),
        depth: usize,
    ) {
        if let Some(n) = name_of(name)
            && !is_helper(n)
        {
            let help = suggest(n, HELPERS.iter().chain(BUILTIN_HELPERS).copied())
                .map(|s| format!("did you mean `{s}`?"));
            self.report(at, format!("unknown helper `{n}`"), help);
        }
        for p in params {
            self.param(p, at, depth);
        }
        for p in hash {
            self.param(p, at, depth);
        }
    }

    fn param(&mut self, p: &Parameter, at: (usize, usize), depth: usize) {
        match p {
            Parameter::Path(handlebars::Path::Relative((_, raw))) => self.path(raw, at, depth),
            Parameter::Subexpression(sub) => {
                // `(money total_spent)` is a helper call, `(first_name)` a lookup: the same
                // rules as a `{{...}}` expression.
                if let TemplateElement::Expression(ht) = sub.as_element() {
                    self.expression(ht, at, depth);
                }
            }
            _ => {}
        }
    }

    /// Checks a path as written (`first_name`, `segment.name`, `@root.now`, `../email`).
    fn path(&mut self, raw: &str, at: (usize, usize), depth: usize) {
        let mut rest = raw;
        let at_root = if let Some(r) = rest.strip_prefix("@root") {
            rest = r.trim_start_matches(['.', '/']);
            true
        } else {
            let mut ups = 0;
            while let Some(r) = rest.strip_prefix("../") {
                rest = r;
                ups += 1;
            }
            ups > 0 && ups == depth || ups == 0 && depth == 0
        };
        if !at_root {
            return;
        }
        for prefix in ["this.", "this/", "./"] {
            if let Some(r) = rest.strip_prefix(prefix) {
                rest = r;
            }
        }
        if rest.is_empty() || rest == "this" || rest == "." || rest.starts_with('@') {
            return;
        }
        let segments: Vec<&str> = rest
            .split(['.', '/'])
            .map(|s| s.trim_start_matches('[').trim_end_matches(']'))
            .collect();
        let first = segments[0];
        if !self.known.contains(first) {
            let help =
                suggest(first, self.known.iter().copied()).map(|s| format!("did you mean `{s}`?"));
            self.report(at, format!("unknown field `{first}`"), help);
            return;
        }
        if let (Some(fields), Some(second)) = (subfields(first), segments.get(1))
            && !fields.contains(second)
        {
            let help = suggest(second, fields.iter().copied())
                .map(|s| format!("did you mean `{first}.{s}`?"));
            self.report(
                at,
                format!(
                    "unknown field `{first}.{second}` (`{first}` has {})",
                    fields.join(", ")
                ),
                help,
            );
        }
    }

    fn report(&mut self, at: (usize, usize), message: String, help: Option<String>) {
        let (line, column) = self.spec.position(at.0, at.1);
        self.errors.push(TemplateError {
            template: self.spec.name.clone(),
            origin: self.spec.origin.clone(),
            line,
            column,
            message,
            help,
        });
    }
}

/// The candidate nearest to `name`, if one is near enough to be a plausible typo.
///
/// Case differences cost nothing; otherwise up to a third of the name's length may differ
/// (at least one edit). Ties go to the earlier candidate. The same rule as the segment
/// language's suggestions, so users meet one behaviour.
pub(crate) fn suggest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let target: Vec<char> = name.to_lowercase().chars().collect();
    let limit = (target.len() / 3).max(1);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        if candidate == name {
            continue;
        }
        let other: Vec<char> = candidate.to_lowercase().chars().collect();
        let d = edit_distance(&target, &other);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
/// adjacent characters each cost one.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let width = b.len() + 1;
    let mut prev2 = vec![0; width];
    let mut prev: Vec<usize> = (0..width).collect();
    let mut cur = vec![0; width];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_and_ignore_strangers() {
        let names = ["first_name", "last_name", "total_spent"];
        assert_eq!(suggest("frist_name", names), Some("first_name"));
        assert_eq!(suggest("First_Name", names), Some("first_name"));
        assert_eq!(suggest("total_spend", names), Some("total_spent"));
        assert_eq!(suggest("banana", names), None);
    }
}
