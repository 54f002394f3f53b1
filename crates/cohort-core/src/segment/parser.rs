//! Recursive-descent parser from tokens to [`Expr`].
//!
//! One function per precedence level (`or` < `and` < `not` < predicate), which is the whole
//! grammar:
//!
//! ```text
//! expr      = and ("or" and)*
//! and       = unary ("and" unary)*
//! unary     = "not" unary | "(" expr ")" | "in_segment" "(" STRING ")" | predicate
//! predicate = FIELD ( OP value | ["not"] "in" "(" value ("," value)* ")"
//!                   | "between" value "and" value | ["not"] "contains" value
//!                   | "starts" "with" value | "ends" "with" value | "is" ["not"] "null" | ε )
//! ```
//!
//! The `and` inside `between` is consumed by the predicate, so it never splits the range.
//! The parser stops at the first error: later errors are usually consequences of it, and a
//! message that names what was expected is worth more than a list of guesses.

use super::ast::{Expr, FieldRef, Lit, Literal, Predicate, SegmentRef, Test};
use super::diagnostic::Diagnostic;
use super::lexer::{Tok, Token, lex};

/// Words that cannot be field names, because the grammar gives them a meaning where a field
/// could stand.
const RESERVED: [&str; 10] = [
    "and", "or", "not", "in", "between", "contains", "is", "null", "true", "false",
];

const VALUE_HELP: &str = "values are numbers (500, 49.99), quoted text ('US'), true or false, \
                          dates (2024-01-31), relative dates (-90d, -6m) or today";

const OPERATORS: &str =
    "=, !=, <, <=, >, >=, in, not in, between, contains, starts with, ends with or is null";

/// Parses one segment expression.
pub fn parse(src: &str) -> Result<Expr, Diagnostic> {
    let toks = lex(src)?;
    let mut p = Parser {
        src,
        toks,
        pos: 0,
        depth: 0,
    };
    let expr = p.or()?;
    let t = p.peek();
    match t.tok {
        Tok::Eof => Ok(expr),
        Tok::RParen => Err(Diagnostic::new("unmatched `)`", t.span.clone())
            .with_help("remove it, or add the `(` it closes")),
        _ => Err(Diagnostic::new(
            format!(
                "expected `and`, `or` or the end of the expression, found {}",
                p.describe(t)
            ),
            t.span.clone(),
        )),
    }
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    pos: usize,
    /// Open `(` and `not` around the current token, bounded so that no input can exhaust the
    /// stack of the parser or of the recursive passes after it.
    depth: usize,
}

/// Deepest nesting of parentheses and `not` accepted; real segments stay in single digits.
const MAX_DEPTH: usize = 64;

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn peek2(&self) -> &Token {
        &self.toks[(self.pos + 1).min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if t.tok != Tok::Eof {
            self.pos += 1;
        }
        t
    }

    fn is_kw(t: &Token, kw: &str) -> bool {
        matches!(&t.tok, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    fn at_kw(&self, kw: &str) -> bool {
        Self::is_kw(self.peek(), kw)
    }

    fn describe(&self, t: &Token) -> String {
        match t.tok {
            Tok::Eof => "the end of the expression".to_owned(),
            _ => format!("`{}`", &self.src[t.span.clone()]),
        }
    }

    fn expect_kw(&mut self, kw: &str, after: &str) -> Result<Token, Diagnostic> {
        if self.at_kw(kw) {
            return Ok(self.bump());
        }
        let t = self.peek();
        Err(Diagnostic::new(
            format!("expected `{kw}` after {after}, found {}", self.describe(t)),
            t.span.clone(),
        ))
    }

    fn or(&mut self) -> Result<Expr, Diagnostic> {
        let mut children = vec![self.and()?];
        while self.at_kw("or") {
            self.bump();
            children.push(self.and()?);
        }
        Ok(if children.len() == 1 {
            children.remove(0)
        } else {
            Expr::Or(children)
        })
    }

    fn and(&mut self) -> Result<Expr, Diagnostic> {
        let mut children = vec![self.unary()?];
        while self.at_kw("and") {
            self.bump();
            children.push(self.unary()?);
        }
        Ok(if children.len() == 1 {
            children.remove(0)
        } else {
            Expr::And(children)
        })
    }

    fn unary(&mut self) -> Result<Expr, Diagnostic> {
        let nests = self.at_kw("not") || self.peek().tok == Tok::LParen;
        if !nests {
            return self.primary();
        }
        if self.depth == MAX_DEPTH {
            return Err(Diagnostic::new(
                format!("expression nested too deeply (more than {MAX_DEPTH} levels)"),
                self.peek().span.clone(),
            )
            .with_help("split it into segments combined with in_segment('…')"));
        }
        self.depth += 1;
        let result = self.primary();
        self.depth -= 1;
        result
    }

    fn primary(&mut self) -> Result<Expr, Diagnostic> {
        if self.at_kw("not") {
            self.bump();
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        let t = self.peek().clone();
        match &t.tok {
            Tok::LParen => {
                self.bump();
                let inner = self.or()?;
                let close = self.peek();
                if close.tok != Tok::RParen {
                    let column = Diagnostic::new("", t.span.clone()).column(self.src);
                    return Err(Diagnostic::new(
                        format!(
                            "expected `)` to close the `(` at column {column}, found {}",
                            self.describe(close)
                        ),
                        close.span.clone(),
                    ));
                }
                self.bump();
                Ok(inner)
            }
            Tok::Ident(name)
                if name.eq_ignore_ascii_case("in_segment") && self.peek2().tok == Tok::LParen =>
            {
                self.segment_ref()
            }
            Tok::Ident(name) if RESERVED.iter().any(|kw| name.eq_ignore_ascii_case(kw)) => {
                Err(Diagnostic::new(
                    format!("expected a condition, found the keyword `{name}`"),
                    t.span.clone(),
                ))
            }
            Tok::Ident(name) => {
                self.bump();
                self.predicate(FieldRef {
                    name: name.clone(),
                    span: t.span.clone(),
                })
            }
            _ => {
                let d = Diagnostic::new(
                    format!(
                        "expected a condition (a field, `not`, `(` or `in_segment`), found {}",
                        self.describe(&t)
                    ),
                    t.span.clone(),
                );
                Err(match t.tok {
                    Tok::Eof | Tok::RParen | Tok::Comma | Tok::Op(_) => d,
                    _ => d.with_help("a condition starts with a field name, e.g. `country = 'US'`"),
                })
            }
        }
    }

    fn segment_ref(&mut self) -> Result<Expr, Diagnostic> {
        let start = self.bump().span.start;
        self.bump();
        let t = self.bump();
        let Tok::Str(name) = t.tok else {
            return Err(Diagnostic::new(
                format!(
                    "expected a segment name in quotes, found {}",
                    self.describe(&t)
                ),
                t.span,
            )
            .with_help("write in_segment('vip')"));
        };
        let close = self.peek().clone();
        if close.tok != Tok::RParen {
            return Err(Diagnostic::new(
                format!(
                    "expected `)` after the segment name, found {}",
                    self.describe(&close)
                ),
                close.span,
            ));
        }
        self.bump();
        Ok(Expr::InSegment(SegmentRef {
            name,
            span: start..close.span.end,
        }))
    }

    fn predicate(&mut self, field: FieldRef) -> Result<Expr, Diagnostic> {
        let t = self.peek().clone();
        let word = |kw: &str| Self::is_kw(&t, kw);
        let mut op_span = t.span.clone();
        let test = match &t.tok {
            Tok::Op(op) => {
                self.bump();
                let value = self.literal(&format!("`{}`", op.as_str()), &field)?;
                Test::Compare(*op, value)
            }
            _ if word("in") => {
                self.bump();
                Test::In {
                    negated: false,
                    values: self.list(&field)?,
                }
            }
            _ if word("not") => {
                self.bump();
                let next = self.peek().clone();
                op_span = t.span.start..next.span.end;
                if Self::is_kw(&next, "in") {
                    self.bump();
                    Test::In {
                        negated: true,
                        values: self.list(&field)?,
                    }
                } else if Self::is_kw(&next, "contains") {
                    self.bump();
                    Test::Contains {
                        negated: true,
                        value: self.literal("`not contains`", &field)?,
                    }
                } else {
                    return Err(Diagnostic::new(
                        format!(
                            "expected `in` or `contains` after `{} not`, found {}",
                            field.name,
                            self.describe(&next)
                        ),
                        next.span,
                    )
                    .with_help(format!(
                        "to negate a whole condition, write `not ({} …)`",
                        field.name
                    )));
                }
            }
            _ if word("between") => {
                self.bump();
                let low = self.literal("`between`", &field)?;
                self.expect_kw("and", &format!("`between {low}`"))?;
                let high = self.literal("`and`", &field)?;
                Test::Between(low, high)
            }
            _ if word("contains") => {
                self.bump();
                Test::Contains {
                    negated: false,
                    value: self.literal("`contains`", &field)?,
                }
            }
            _ if word("starts") || word("ends") => {
                self.bump();
                let starts = word("starts");
                let with = self.expect_kw("with", &format!("`{}`", &self.src[t.span.clone()]))?;
                op_span = t.span.start..with.span.end;
                let after = if starts {
                    "`starts with`"
                } else {
                    "`ends with`"
                };
                let value = self.literal(after, &field)?;
                if starts {
                    Test::StartsWith(value)
                } else {
                    Test::EndsWith(value)
                }
            }
            _ if word("is") => {
                self.bump();
                let negated = self.at_kw("not");
                if negated {
                    self.bump();
                }
                let null = self.peek().clone();
                if !Self::is_kw(&null, "null") {
                    let written = &self.src[t.span.start..self.toks[self.pos - 1].span.end];
                    let found = &self.src[null.span.clone()];
                    let mut d = Diagnostic::new(
                        format!(
                            "expected `null` after `{written}`, found {}",
                            self.describe(&null)
                        ),
                        null.span.clone(),
                    );
                    if Self::is_kw(&null, "true") || Self::is_kw(&null, "false") {
                        d = d.with_help(format!(
                            "compare booleans with `=`: `{} = {found}`",
                            field.name
                        ));
                    }
                    return Err(d);
                }
                self.bump();
                op_span = t.span.start..null.span.end;
                Test::IsNull { negated }
            }
            Tok::Eof | Tok::RParen => {
                op_span = field.span.clone();
                Test::IsTrue
            }
            _ if word("and") || word("or") => {
                op_span = field.span.clone();
                Test::IsTrue
            }
            _ => {
                return Err(Diagnostic::new(
                    format!(
                        "expected an operator after `{}`, found {}",
                        field.name,
                        self.describe(&t)
                    ),
                    t.span,
                )
                .with_help(format!("operators are {OPERATORS}")));
            }
        };
        Ok(Expr::Predicate(Predicate {
            field,
            test,
            op_span,
        }))
    }

    fn list(&mut self, field: &FieldRef) -> Result<Vec<Literal>, Diagnostic> {
        let open = self.peek().clone();
        if open.tok != Tok::LParen {
            return Err(Diagnostic::new(
                format!(
                    "expected `(` to start the list, found {}",
                    self.describe(&open)
                ),
                open.span,
            )
            .with_help(format!("write `{} in ('a', 'b')`", field.name)));
        }
        self.bump();
        if self.peek().tok == Tok::RParen {
            let close = self.bump();
            return Err(Diagnostic::new(
                "`in` needs at least one value",
                open.span.start..close.span.end,
            )
            .with_help(format!("list values like `{} in ('a', 'b')`", field.name)));
        }
        let mut values = vec![self.literal("`(`", field)?];
        loop {
            let t = self.peek().clone();
            match t.tok {
                Tok::Comma => {
                    self.bump();
                    values.push(self.literal("`,`", field)?);
                }
                Tok::RParen => {
                    self.bump();
                    return Ok(values);
                }
                _ => {
                    return Err(Diagnostic::new(
                        format!(
                            "expected `,` or `)` in the list, found {}",
                            self.describe(&t)
                        ),
                        t.span,
                    ));
                }
            }
        }
    }

    fn literal(&mut self, after: &str, field: &FieldRef) -> Result<Literal, Diagnostic> {
        let t = self.peek().clone();
        let lit = match &t.tok {
            Tok::Str(s) => Lit::String(s.clone()),
            Tok::Number(d) => Lit::Number(*d),
            Tok::Date(d) => Lit::Date(*d),
            Tok::DateTime(ts) => Lit::DateTime(*ts),
            Tok::Relative(r) => Lit::Relative(*r),
            Tok::Ident(w) if w.eq_ignore_ascii_case("true") => Lit::Bool(true),
            Tok::Ident(w) if w.eq_ignore_ascii_case("false") => Lit::Bool(false),
            Tok::Ident(w) if w.eq_ignore_ascii_case("today") => Lit::Today,
            Tok::Ident(w) if w.eq_ignore_ascii_case("null") => {
                return Err(Diagnostic::new(
                    "`null` is not a value to compare with",
                    t.span.clone(),
                )
                .with_help(format!(
                    "test for a missing value with `{} is null`",
                    field.name
                )));
            }
            tok => {
                let d = Diagnostic::new(
                    format!(
                        "expected a value after {after}, found {}",
                        self.describe(&t)
                    ),
                    t.span.clone(),
                );
                return Err(match tok {
                    Tok::Ident(w) if !RESERVED.iter().any(|kw| w.eq_ignore_ascii_case(kw)) => {
                        d.with_help(format!("text is quoted: '{w}'"))
                    }
                    _ => d.with_help(VALUE_HELP),
                });
            }
        };
        self.bump();
        Ok(Literal { lit, span: t.span })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::ast::{CmpOp, Decimal, RelativeDate, RelativeUnit};

    fn p(src: &str) -> Expr {
        parse(src).unwrap_or_else(|d| panic!("{}", d.render(src)))
    }

    fn err(src: &str) -> Diagnostic {
        parse(src).expect_err("should not parse")
    }

    fn num(n: i128) -> Literal {
        Literal::new(Lit::Number(Decimal {
            mantissa: n,
            scale: 0,
        }))
    }

    fn s(v: &str) -> Literal {
        Literal::new(Lit::String(v.into()))
    }

    fn cmp(field: &str, op: CmpOp, value: Literal) -> Expr {
        Expr::predicate(field, Test::Compare(op, value))
    }

    #[test]
    fn and_binds_tighter_than_or_and_not_tighter_than_and() {
        let (a, b, c) = (
            cmp("a", CmpOp::Eq, num(1)),
            cmp("b", CmpOp::Eq, num(2)),
            cmp("c", CmpOp::Eq, num(3)),
        );
        assert_eq!(
            p("a = 1 or b = 2 and c = 3"),
            Expr::Or(vec![a.clone(), Expr::And(vec![b.clone(), c.clone()])])
        );
        assert_eq!(
            p("not a = 1 and b = 2"),
            Expr::And(vec![Expr::Not(Box::new(a.clone())), b.clone()])
        );
        assert_eq!(
            p("(a = 1 or b = 2) and c = 3"),
            Expr::And(vec![Expr::Or(vec![a.clone(), b.clone()]), c.clone()])
        );
        assert_eq!(
            p("a = 1 and b = 2 and c = 3"),
            Expr::And(vec![a.clone(), b.clone(), c.clone()])
        );
        assert_eq!(
            p("a = 1 and (b = 2 and c = 3)"),
            Expr::And(vec![a, Expr::And(vec![b, c])])
        );
    }

    #[test]
    fn the_and_of_between_belongs_to_between() {
        let between = Expr::predicate("x", Test::Between(num(1), num(5)));
        assert_eq!(p("x between 1 and 5"), between);
        assert_eq!(
            p("x between 1 and 5 and y"),
            Expr::And(vec![between, Expr::predicate("y", Test::IsTrue)])
        );
    }

    #[test]
    fn parses_every_predicate_form() {
        assert_eq!(
            p("country not in ('US', \"CA\")"),
            Expr::predicate(
                "country",
                Test::In {
                    negated: true,
                    values: vec![s("US"), s("CA")]
                }
            )
        );
        assert_eq!(
            p("tags not contains 'vip'"),
            Expr::predicate(
                "tags",
                Test::Contains {
                    negated: true,
                    value: s("vip")
                }
            )
        );
        assert_eq!(
            p("email ends with '@acme.com'"),
            Expr::predicate("email", Test::EndsWith(s("@acme.com")))
        );
        assert_eq!(
            p("email starts with 'bob'"),
            Expr::predicate("email", Test::StartsWith(s("bob")))
        );
        assert_eq!(
            p("city is not null"),
            Expr::predicate("city", Test::IsNull { negated: true })
        );
        assert_eq!(
            p("city is null"),
            Expr::predicate("city", Test::IsNull { negated: false })
        );
        assert_eq!(p("a <> 1"), cmp("a", CmpOp::Ne, num(1)));
        assert_eq!(
            p("in_segment('vip')"),
            Expr::InSegment(SegmentRef {
                name: "vip".into(),
                span: 0..0
            })
        );
        assert_eq!(
            p("last_order_at >= -90d"),
            cmp(
                "last_order_at",
                CmpOp::Ge,
                Literal::new(Lit::Relative(RelativeDate {
                    amount: -90,
                    unit: RelativeUnit::Days
                }))
            )
        );
        assert_eq!(
            p("created_at < today"),
            cmp("created_at", CmpOp::Lt, Literal::new(Lit::Today))
        );
    }

    #[test]
    fn keywords_are_case_insensitive_and_fields_are_not() {
        assert_eq!(
            p(
                "NOT Country IN ('US') AnD accepts IS NOT NULL Or x BETWEEN 1 AND 2 and m = TRUE and d < TODAY"
            ),
            p(
                "not Country in ('US') and accepts is not null or x between 1 and 2 and m = true and d < today"
            )
        );
        assert_ne!(p("Country = 'US'"), p("country = 'US'"));
    }

    #[test]
    fn the_readme_examples_parse() {
        for src in [
            "orders_count >= 3 and total_spent > 500 and last_order_at >= -90d and country in ('US','CA','GB')",
            "(tags contains 'wholesale' or tags contains 'b2b') and accepts_email_marketing = true",
            "r_score <= 2 and f_score >= 3 and m_score >= 3",
        ] {
            let e = p(src);
            assert_eq!(p(&e.to_string()), e, "{src}");
        }
    }

    #[test]
    fn prints_canonical_source() {
        let e = p(
            "(tags CONTAINS \"wholesale\" or tags contains 'b2b') AND NOT (country <> 'US') and x",
        );
        assert_eq!(
            e.to_string(),
            "(tags contains 'wholesale' or tags contains 'b2b') and not (country != 'US') and x"
        );
        assert_eq!(p("not not x").to_string(), "not not x");
        assert_eq!(p("not in_segment('a')").to_string(), "not in_segment('a')");
        assert_eq!(
            p("d between 2024-01-01 and 2024-01-01T10:00:00+01:00").to_string(),
            "d between 2024-01-01 and 2024-01-01T09:00:00Z"
        );
    }

    #[test]
    fn records_spans_for_blame() {
        let Expr::Predicate(pred) = p("  total_spent >= 49.99") else {
            panic!("predicate")
        };
        assert_eq!(pred.field.span, 2..13);
        assert_eq!(pred.op_span, 14..16);
        let Test::Compare(_, lit) = pred.test else {
            panic!("compare")
        };
        assert_eq!(lit.span, 17..22);
        let Expr::Predicate(pred) = p("tags not contains 'x'") else {
            panic!("predicate")
        };
        assert_eq!(pred.op_span, 5..17);
    }

    #[test]
    fn errors_say_what_was_expected_and_where() {
        let src = "orders_count >= ";
        let e = err(src);
        assert_eq!(
            e.message,
            "expected a value after `>=`, found the end of the expression"
        );
        assert_eq!(e.column(src), 17);

        let src = "orders_count >= 3 andd total_spent > 5";
        let e = err(src);
        assert_eq!(
            e.message,
            "expected `and`, `or` or the end of the expression, found `andd`"
        );
        assert_eq!(e.column(src), 19);
        assert_eq!(
            e.render(src),
            "error: expected `and`, `or` or the end of the expression, found `andd` (column 19)\n  orders_count >= 3 andd total_spent > 5\n                    ^^^^"
        );

        let e = err("(a = 1 or b = 2");
        assert_eq!(
            e.message,
            "expected `)` to close the `(` at column 1, found the end of the expression"
        );
        assert_eq!(err("a = 1)").message, "unmatched `)`");
        assert_eq!(
            err("country 'US'").message,
            "expected an operator after `country`, found `'US'`"
        );
        assert_eq!(
            err("x between 1 or 2").message,
            "expected `and` after `between 1`, found `or`"
        );
        assert_eq!(
            err("x starts 'a'").message,
            "expected `with` after `starts`, found `'a'`"
        );
        assert_eq!(
            err("x not between 1 and 2").message,
            "expected `in` or `contains` after `x not`, found `between`"
        );
        assert_eq!(
            err("x in 'a'").message,
            "expected `(` to start the list, found `'a'`"
        );
        assert_eq!(
            err("x in ('a' 'b')").message,
            "expected `,` or `)` in the list, found `'b'`"
        );
        assert_eq!(
            err("and x").message,
            "expected a condition, found the keyword `and`"
        );
        assert_eq!(
            err("in_segment(vip)").message,
            "expected a segment name in quotes, found `vip`"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = |n: usize| format!("{}x{}", "(".repeat(n), ")".repeat(n));
        assert!(parse(&deep(MAX_DEPTH)).is_ok());
        let e = err(&deep(MAX_DEPTH + 1));
        assert_eq!(
            e.message,
            "expression nested too deeply (more than 64 levels)"
        );
        assert_eq!(e.span, MAX_DEPTH..MAX_DEPTH + 1);
        assert!(parse(&format!("{}x", "not ".repeat(100_000))).is_err());
        assert!(parse(&deep(100_000)).is_err());
    }

    #[test]
    fn empty_in_lists_are_rejected_over_the_parentheses() {
        let src = "country in ()";
        let e = err(src);
        assert_eq!(e.message, "`in` needs at least one value");
        assert_eq!(e.span, 11..13);
        assert!(e.render(src).contains("\n             ^^"));
    }

    #[test]
    fn helpful_hints_for_common_slips() {
        assert_eq!(
            err("country = US").help.as_deref(),
            Some("text is quoted: 'US'")
        );
        let e = err("country = null");
        assert_eq!(e.message, "`null` is not a value to compare with");
        assert_eq!(
            e.help.as_deref(),
            Some("test for a missing value with `country is null`")
        );
        assert_eq!(
            err("accepts is true").help.as_deref(),
            Some("compare booleans with `=`: `accepts = true`")
        );
        assert_eq!(
            err("'US' = country").help.as_deref(),
            Some("a condition starts with a field name, e.g. `country = 'US'`")
        );
    }
}
