//! Evaluation of a parsed condition against one JSON document (a twin or a device-job row).
//!
//! Semantics follow IoT Hub / Cosmos DB SQL: a missing property is *undefined*; comparisons only
//! relate primitives of the same type (anything else is undefined); `AND`/`OR`/`NOT` use
//! three-valued logic (undefined propagates unless `false`/`true` decides); a document matches
//! only when the condition is exactly `true`.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::ast::{ArithOp, CmpOp, Expr, Func, Literal, Num, Segment};

/// What the paths of a condition refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// A twin: names below `tags` and `properties.desired|reported` are case-sensitive, the
    /// system names above them are not.
    Twin,
    /// A `devices.jobs` row: every name is a system name except below
    /// `outcome.deviceMethodResponse.payload`.
    DeviceJob,
    /// A message for a routing condition: application and system property names match
    /// case-insensitively (IoT Hub's device-to-cloud messages are not case-sensitive); below
    /// `$body` every name is the sender's, below `$twin` the twin's rules apply.
    Message,
}

/// A value during evaluation. Objects and arrays are opaque: only type tests look at them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Val<'a> {
    Undefined,
    Null,
    Bool(bool),
    Num(Num),
    Str(&'a str),
    Object,
    Array,
}

impl Val<'_> {
    fn is_primitive(self) -> bool {
        matches!(self, Val::Null | Val::Bool(_) | Val::Num(_) | Val::Str(_))
    }
}

/// `true` when `expr` evaluates to exactly `true` for `doc`.
pub(crate) fn is_true(expr: &Expr, doc: &Value, scope: Scope) -> bool {
    eval(expr, doc, scope) == Val::Bool(true)
}

fn eval<'a>(expr: &'a Expr, doc: &'a Value, scope: Scope) -> Val<'a> {
    match expr {
        Expr::Lit(lit) => match lit {
            Literal::Null => Val::Null,
            Literal::Bool(b) => Val::Bool(*b),
            Literal::Num(n) => Val::Num(*n),
            Literal::Str(s) => Val::Str(s),
        },
        Expr::Path(segments) => resolve(doc, segments, scope).map_or(Val::Undefined, from_json),
        Expr::Array(_) => Val::Array,
        Expr::Neg(inner) => match eval(inner, doc, scope) {
            Val::Num(n) => Val::Num(negate(n)),
            _ => Val::Undefined,
        },
        Expr::Arith(first, rest) => rest.iter().fold(eval(first, doc, scope), |acc, (op, e)| {
            arithmetic(*op, acc, eval(e, doc, scope))
        }),
        Expr::Cmp(op, left, right) => compare(*op, eval(left, doc, scope), eval(right, doc, scope)),
        Expr::In {
            value,
            list,
            negated,
        } => {
            let v = eval(value, doc, scope);
            if !v.is_primitive() {
                return Val::Undefined;
            }
            let found = list
                .iter()
                .any(|item| compare(CmpOp::Eq, v, eval(item, doc, scope)) == Val::Bool(true));
            Val::Bool(found != *negated)
        }
        Expr::Not(inner) => match eval(inner, doc, scope) {
            Val::Bool(b) => Val::Bool(!b),
            _ => Val::Undefined,
        },
        Expr::And(items) => logical(items, doc, scope, false),
        Expr::Or(items) => logical(items, doc, scope, true),
        Expr::Call(func, args) => call(*func, args, doc, scope),
    }
}

/// AND (`decisive` = false) or OR (`decisive` = true): the decisive value wins outright;
/// otherwise any non-boolean operand makes the result undefined.
fn logical<'a>(items: &'a [Expr], doc: &'a Value, scope: Scope, decisive: bool) -> Val<'a> {
    let mut undefined = false;
    for item in items {
        match eval(item, doc, scope) {
            Val::Bool(b) if b == decisive => return Val::Bool(decisive),
            Val::Bool(_) => {}
            _ => undefined = true,
        }
    }
    if undefined {
        Val::Undefined
    } else {
        Val::Bool(!decisive)
    }
}

fn call<'a>(func: Func, args: &'a [Expr], doc: &'a Value, scope: Scope) -> Val<'a> {
    let arg = |i: usize| args.get(i).map_or(Val::Undefined, |e| eval(e, doc, scope));
    let v = arg(0);
    match func {
        Func::IsDefined => Val::Bool(v != Val::Undefined),
        Func::IsNull => Val::Bool(v == Val::Null),
        Func::IsBool => Val::Bool(matches!(v, Val::Bool(_))),
        Func::IsNumber => Val::Bool(matches!(v, Val::Num(_))),
        Func::IsString => Val::Bool(matches!(v, Val::Str(_))),
        Func::IsObject => Val::Bool(v == Val::Object),
        Func::IsArray => Val::Bool(v == Val::Array),
        Func::IsPrimitive => Val::Bool(v.is_primitive()),
        Func::StartsWith | Func::EndsWith => {
            let (Val::Str(s), Val::Str(affix)) = (v, arg(1)) else {
                return Val::Undefined;
            };
            let ignore_case = match args.len() {
                2 => false,
                _ => match arg(2) {
                    Val::Bool(b) => b,
                    _ => return Val::Undefined,
                },
            };
            let test = |s: &str, affix: &str| {
                if func == Func::StartsWith {
                    s.starts_with(affix)
                } else {
                    s.ends_with(affix)
                }
            };
            Val::Bool(if ignore_case {
                test(&s.to_lowercase(), &affix.to_lowercase())
            } else {
                test(s, affix)
            })
        }
    }
}

fn from_json(v: &Value) -> Val<'_> {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Val::Num(Num::Int(i)),
            None => n
                .as_f64()
                .map_or(Val::Undefined, |f| Val::Num(Num::Float(f))),
        },
        Value::String(s) => Val::Str(s),
        Value::Array(_) => Val::Array,
        Value::Object(_) => Val::Object,
    }
}

/// Follows `segments` from the document root.
fn resolve<'a>(doc: &'a Value, segments: &[Segment], scope: Scope) -> Option<&'a Value> {
    let mut current = doc;
    let mut case_sensitive = false;
    for (i, segment) in segments.iter().enumerate() {
        current = match segment {
            Segment::Index(k) => current.as_array()?.get(*k)?,
            Segment::Name(name) => {
                let object = current.as_object()?;
                if case_sensitive {
                    object.get(name)?
                } else {
                    get_ignore_case(object, name)?
                }
            }
        };
        case_sensitive = case_sensitive || user_content_below(segments, i, scope);
    }
    Some(current)
}

fn get_ignore_case<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// Whether the names below `segments[..=i]` are user-chosen (so matched case-sensitively).
fn user_content_below(segments: &[Segment], i: usize, scope: Scope) -> bool {
    let is = |j: usize, word: &str| matches!(segments.get(j), Some(Segment::Name(n)) if n.eq_ignore_ascii_case(word));
    match scope {
        Scope::Twin => (i == 0 && is(0, "tags")) || (i == 1 && is(0, "properties")),
        Scope::DeviceJob => {
            i == 2 && is(0, "outcome") && is(1, "deviceMethodResponse") && is(2, "payload")
        }
        Scope::Message => {
            (i == 0 && is(0, "$body"))
                || (is(0, "$twin")
                    && ((i == 1 && is(1, "tags")) || (i == 2 && is(1, "properties"))))
        }
    }
}

fn negate(n: Num) -> Num {
    match n {
        Num::Int(i) => i.checked_neg().map_or(Num::Float(-(i as f64)), Num::Int),
        Num::Float(f) => Num::Float(-f),
    }
}

fn arithmetic<'a>(op: ArithOp, a: Val<'a>, b: Val<'a>) -> Val<'a> {
    let (Val::Num(x), Val::Num(y)) = (a, b) else {
        return Val::Undefined;
    };
    if let (Num::Int(x), Num::Int(y)) = (x, y) {
        let exact = match op {
            ArithOp::Add => x.checked_add(y),
            ArithOp::Sub => x.checked_sub(y),
            ArithOp::Mul => x.checked_mul(y),
            ArithOp::Div if y == 0 => return Val::Undefined,
            ArithOp::Div => match x.checked_rem(y) {
                Some(0) => x.checked_div(y),
                _ => None,
            },
            ArithOp::Rem if y == 0 => return Val::Undefined,
            ArithOp::Rem => Some(x.checked_rem(y).unwrap_or(0)),
        };
        if let Some(r) = exact {
            return Val::Num(Num::Int(r));
        }
    }
    let (x, y) = (x.as_f64(), y.as_f64());
    let r = match op {
        ArithOp::Add => x + y,
        ArithOp::Sub => x - y,
        ArithOp::Mul => x * y,
        ArithOp::Div | ArithOp::Rem if y == 0.0 => return Val::Undefined,
        ArithOp::Div => x / y,
        ArithOp::Rem => x % y,
    };
    if r.is_finite() {
        Val::Num(Num::Float(r))
    } else {
        Val::Undefined
    }
}

fn order(a: Val<'_>, b: Val<'_>) -> Option<Ordering> {
    match (a, b) {
        (Val::Num(Num::Int(x)), Val::Num(Num::Int(y))) => Some(x.cmp(&y)),
        (Val::Num(x), Val::Num(y)) => x.as_f64().partial_cmp(&y.as_f64()),
        // Ordinal comparison, by UTF-16 code units as the service (.NET) does.
        (Val::Str(x), Val::Str(y)) => Some(x.encode_utf16().cmp(y.encode_utf16())),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(&y)),
        (Val::Null, Val::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

fn compare<'a>(op: CmpOp, a: Val<'a>, b: Val<'a>) -> Val<'a> {
    let Some(ord) = order(a, b) else {
        return Val::Undefined;
    };
    Val::Bool(match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
    })
}
