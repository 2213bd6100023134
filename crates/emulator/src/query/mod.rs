//! The IoT Hub query language (WHERE conditions and SELECT queries).
//!
//! * [`parse_condition`] parses a job's `queryCondition` (the WHERE part only; `*` alone selects
//!   every device) into a [`Condition`];
//! * [`parse_select`] parses `SELECT * FROM devices [WHERE …]`,
//!   `SELECT * FROM devices.jobs [WHERE …]` and `SELECT * FROM devices.modules [WHERE …]` into a
//!   [`SelectQuery`];
//! * [`Condition::matches`] evaluates a condition against a twin (or device-job row) as JSON.
//!
//! Supported: property paths (`tags.a.b`, `properties.desired.x`, `properties.reported.x`,
//! `deviceId`, `status`, …, plus `['name']` / `[0]` segments; system names match
//! case-insensitively, names below `tags` and `properties.desired|reported` exactly), string
//! literals in `'…'` or `"…"` (escapes `\' \" \\ \/ \b \f \n \r \t \uXXXX`), numbers, `true`,
//! `false`, `null`, arrays `['a', 1]`, `= != <> < <= > >=`, `IN` / `NIN` / `NOT IN` with an array,
//! `AND OR NOT`, parentheses, `+ - * / %`, and the functions `IS_DEFINED`, `IS_NULL`, `IS_BOOL`,
//! `IS_NUMBER`, `IS_STRING`, `IS_OBJECT`, `IS_ARRAY`, `IS_PRIMITIVE`, `STARTS_WITH`,
//! `ENDS_WITH`. Binding, tightest first: unary sign, `* / %`, `+ -`, comparisons and `IN`, `NOT`,
//! `AND`, `OR` (so `NOT a = 1` means `NOT (a = 1)`, as in SQL). See `parser.rs` for the grammar
//! and `eval.rs` for the semantics of undefined values.
//!
//! Input is limited to [`MAX_QUERY_LEN`] bytes and [`MAX_NESTING`] levels of nesting; beyond
//! either the parse fails with a [`QueryError`] instead of exhausting memory or the stack.

mod ast;
mod eval;
mod lexer;
mod parser;
#[cfg(test)]
mod tests;

use std::fmt;

use eval::Scope;
use lexer::LexFault;
use parser::Parser;

/// Longest query text accepted, in bytes.
pub const MAX_QUERY_LEN: usize = 64 * 1024;

/// Deepest nesting accepted (parentheses, arrays, function calls, `NOT`, unary signs).
pub const MAX_NESTING: usize = parser::MAX_DEPTH;

/// A parsed WHERE condition, ready to be evaluated against documents.
#[derive(Debug, Clone)]
pub struct Condition {
    /// `None` for `*` (every document).
    expr: Option<ast::Expr>,
    scope: Scope,
    /// A job condition written `FROM devices.modules [WHERE …]`: it selects module twins.
    over_modules: bool,
}

impl Condition {
    /// Whether `doc` satisfies the condition: the condition must evaluate to exactly `true`.
    ///
    /// `doc` is a twin as IoT Hub returns it (`deviceId`, `status`, `tags`, `properties.desired`,
    /// `properties.reported`, …), or a device-job row for a condition from a
    /// `SELECT * FROM devices.jobs` query.
    pub fn matches(&self, doc: &serde_json::Value) -> bool {
        match &self.expr {
            None => true,
            Some(expr) => eval::is_true(expr, doc, self.scope),
        }
    }

    /// Whether the condition is the literal `true` (so nothing need be evaluated).
    pub fn is_literal_true(&self) -> bool {
        matches!(self.expr, Some(ast::Expr::Lit(ast::Literal::Bool(true))))
    }

    /// Whether this is the `*` condition (every device).
    pub fn is_all(&self) -> bool {
        self.expr.is_none()
    }

    /// Whether the condition selects module twins (`FROM devices.modules [WHERE …]`) rather
    /// than device twins.
    pub fn over_modules(&self) -> bool {
        self.over_modules
    }

    /// The string the top-level property `name` must equal for any document to match: set when
    /// the condition is `name = 'text'` or an `AND` with such a term (system names compare
    /// case-insensitively). Lets a `devices.jobs` query for one job skip every other job.
    pub fn pinned_string(&self, name: &str) -> Option<&str> {
        fn pinned<'a>(expr: &'a ast::Expr, name: &str) -> Option<&'a str> {
            use ast::{CmpOp, Expr, Literal, Segment};
            let is_name = |e: &Expr| matches!(e, Expr::Path(p) if matches!(p.as_slice(), [Segment::Name(n)] if n.eq_ignore_ascii_case(name)));
            match expr {
                Expr::Cmp(CmpOp::Eq, a, b) => match (&**a, &**b) {
                    (path, Expr::Lit(Literal::Str(s))) | (Expr::Lit(Literal::Str(s)), path)
                        if is_name(path) =>
                    {
                        Some(s)
                    }
                    _ => None,
                },
                Expr::And(items) => items.iter().find_map(|e| pinned(e, name)),
                _ => None,
            }
        }
        pinned(self.expr.as_ref()?, name)
    }
}

/// What a SELECT query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `FROM devices`: device twins.
    Devices,
    /// `FROM devices.jobs`: one row per device and job.
    DevicesJobs,
    /// `FROM devices.modules`: module twins.
    DevicesModules,
}

/// A parsed `SELECT * FROM devices[.jobs] [WHERE …]`.
#[derive(Debug, Clone)]
pub struct SelectQuery {
    pub source: Source,
    /// `None` when the query has no WHERE clause. For [`Source::DevicesJobs`], paths written
    /// `devices.jobs.x` are resolved as the row's `x`.
    pub condition: Option<Condition>,
}

impl SelectQuery {
    /// The twins a WHERE condition selects, as a query: module twins for
    /// `FROM devices.modules WHERE …`, device twins otherwise (a configuration's target).
    pub fn of_condition(condition: Condition) -> Self {
        SelectQuery {
            source: if condition.over_modules() {
                Source::DevicesModules
            } else {
                Source::Devices
            },
            condition: (!condition.is_all()).then_some(condition),
        }
    }

    /// Whether `doc` is selected (always, without a WHERE clause).
    pub fn matches(&self, doc: &serde_json::Value) -> bool {
        self.condition.as_ref().is_none_or(|c| c.matches(doc))
    }
}

/// Why a query did not parse, with the 1-based character position it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    message: String,
    position: usize,
}

impl QueryError {
    /// `what at position N[, expected …]`, for the byte `offset` in `text`.
    pub(crate) fn new(text: &str, offset: usize, what: String, expected: Option<&str>) -> Self {
        let position = text.get(..offset).map_or(0, |s| s.chars().count()) + 1;
        let mut message = format!("{what} at position {position}");
        if let Some(expected) = expected {
            message.push_str(", expected ");
            message.push_str(expected);
        }
        QueryError { message, position }
    }

    /// The full message, e.g. `unexpected ')' at position 17, expected a value`.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The 1-based character position in the query text the error points at.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for QueryError {}

/// Parses a job's `queryCondition`: a WHERE clause without the `WHERE` keyword, or `*` for
/// every device; or `FROM devices.modules [WHERE …]`, which selects modules (the form the
/// service accepts for jobs over IoT Edge modules, Azure/iotedge#719). A full `SELECT …` query
/// is an error.
pub fn parse_condition(text: &str) -> Result<Condition, QueryError> {
    let mut parser = start(text)?;
    let over_modules = parser.eat_kw("FROM");
    if over_modules {
        parser.expect_kw("devices", "devices.modules")?;
        if !parser.eat(&lexer::Tok::Dot) {
            return Err(
                parser.unexpected("'.modules' (a job condition may start FROM devices.modules)")
            );
        }
        parser.expect_kw(
            "modules",
            "modules (a job condition may start FROM devices.modules)",
        )?;
        if !parser.eat_kw("WHERE") {
            parser.expect_eof("WHERE or end of input")?;
            return Ok(Condition {
                expr: None,
                scope: Scope::Twin,
                over_modules,
            });
        }
        parser.set_collection(Some("modules"));
    } else if parser.at_star_then_eof() {
        return Ok(Condition {
            expr: None,
            scope: Scope::Twin,
            over_modules,
        });
    }
    let expr = parser.condition()?;
    parser.expect_eof("an operator or end of input")?;
    Ok(Condition {
        expr: Some(expr),
        scope: Scope::Twin,
        over_modules,
    })
}

/// Parses a message route's condition (IoT Hub's routing query language: application
/// properties by name, system properties as `$contentType`, …, `$body.…`, `$twin.…`), to be
/// evaluated against the document `routing` builds for each message. An empty condition is
/// `true`.
pub fn parse_route_condition(text: &str) -> Result<Condition, QueryError> {
    let mut parser = start(if text.trim().is_empty() { "true" } else { text })?;
    let expr = parser.condition()?;
    parser.expect_eof("an operator or end of input")?;
    Ok(Condition {
        expr: Some(expr),
        scope: Scope::Message,
        over_modules: false,
    })
}

/// Parses `SELECT * FROM devices [WHERE …]` or `SELECT * FROM devices.jobs [WHERE …]`
/// (keywords case-insensitive).
pub fn parse_select(text: &str) -> Result<SelectQuery, QueryError> {
    select(text, false)
}

/// Parses a query whose rows are only counted (a configuration's metric): as [`parse_select`],
/// and the SELECT list may also name properties (`SELECT deviceId FROM devices WHERE …`).
pub fn parse_counted(text: &str) -> Result<SelectQuery, QueryError> {
    select(text, true)
}

fn select(text: &str, any_projection: bool) -> Result<SelectQuery, QueryError> {
    let mut parser = start(text)?;
    parser.expect_kw("SELECT", "SELECT")?;
    if !parser.eat(&lexer::Tok::Star) {
        if !any_projection {
            return Err(parser.unexpected("'*' (only SELECT * is supported)"));
        }
        parser.paths()?;
    }
    parser.expect_kw("FROM", "FROM")?;
    parser.expect_kw("devices", "devices, devices.jobs or devices.modules")?;
    let source = if !parser.eat(&lexer::Tok::Dot) {
        Source::Devices
    } else if parser.eat_kw("modules") {
        Source::DevicesModules
    } else {
        parser.expect_kw(
            "jobs",
            "jobs or modules (only devices, devices.jobs and devices.modules can be queried)",
        )?;
        Source::DevicesJobs
    };
    let scope = match source {
        Source::Devices | Source::DevicesModules => Scope::Twin,
        Source::DevicesJobs => Scope::DeviceJob,
    };
    if !parser.eat_kw("WHERE") {
        parser.expect_eof("WHERE or end of input")?;
        return Ok(SelectQuery {
            source,
            condition: None,
        });
    }
    parser.set_collection(match source {
        Source::Devices => None,
        Source::DevicesJobs => Some("jobs"),
        Source::DevicesModules => Some("modules"),
    });
    let expr = parser.condition()?;
    parser.expect_eof("an operator or end of input")?;
    Ok(SelectQuery {
        source,
        condition: Some(Condition {
            expr: Some(expr),
            scope,
            over_modules: false,
        }),
    })
}

/// Checks the length and tokenizes.
fn start(text: &str) -> Result<Parser<'_>, QueryError> {
    if text.len() > MAX_QUERY_LEN {
        let mut offset = MAX_QUERY_LEN;
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        return Err(QueryError::new(
            text,
            offset,
            format!(
                "query too long ({} bytes, the limit is {MAX_QUERY_LEN})",
                text.len()
            ),
            None,
        ));
    }
    let tokens = lexer::tokenize(text).map_err(|(fault, offset)| {
        let what = match fault {
            LexFault::UnexpectedChar(c) => format!("unexpected character {c:?}"),
            LexFault::UnterminatedString => "unterminated string".to_owned(),
            LexFault::InvalidEscape => "invalid escape sequence in string".to_owned(),
            LexFault::InvalidUnicodeEscape => {
                "invalid \\u escape in string (expected 4 hex digits naming a character)".to_owned()
            }
            LexFault::NumberOutOfRange => "number out of range".to_owned(),
        };
        QueryError::new(text, offset, what, None)
    })?;
    Ok(Parser::new(text, tokens))
}
