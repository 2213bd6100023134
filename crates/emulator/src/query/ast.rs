//! The parsed form of a condition.
//!
//! Chains of `AND`, `OR` and arithmetic are kept flat (a vector of operands), so the tree is only
//! as deep as the query's explicit nesting, which the parser bounds: evaluating or dropping it can
//! never exhaust the stack, however long the query.

/// A number: integers stay exact, everything else is a double (as in JSON/JavaScript).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

/// A literal value written in the query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Null,
    Bool(bool),
    Num(Num),
    Str(String),
}

/// One step of a property path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Segment {
    /// `.name` or `['name']`
    Name(String),
    /// `[3]`
    Index(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// The built-in functions (names are case-insensitive in queries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    IsDefined,
    IsNull,
    IsBool,
    IsNumber,
    IsString,
    IsObject,
    IsArray,
    IsPrimitive,
    StartsWith,
    EndsWith,
}

impl Func {
    pub(crate) const ALL: [Func; 10] = [
        Func::IsDefined,
        Func::IsNull,
        Func::IsBool,
        Func::IsNumber,
        Func::IsString,
        Func::IsObject,
        Func::IsArray,
        Func::IsPrimitive,
        Func::StartsWith,
        Func::EndsWith,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Func::IsDefined => "IS_DEFINED",
            Func::IsNull => "IS_NULL",
            Func::IsBool => "IS_BOOL",
            Func::IsNumber => "IS_NUMBER",
            Func::IsString => "IS_STRING",
            Func::IsObject => "IS_OBJECT",
            Func::IsArray => "IS_ARRAY",
            Func::IsPrimitive => "IS_PRIMITIVE",
            Func::StartsWith => "STARTS_WITH",
            Func::EndsWith => "ENDS_WITH",
        }
    }

    pub(crate) fn lookup(name: &str) -> Option<Func> {
        Func::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// Accepted argument counts (inclusive range).
    pub(crate) fn arity(self) -> (usize, usize) {
        match self {
            // The optional third argument is `ignoreCase` (a boolean), as in Cosmos DB SQL.
            Func::StartsWith | Func::EndsWith => (2, 3),
            _ => (1, 1),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Lit(Literal),
    Path(Vec<Segment>),
    Array(Vec<Expr>),
    Neg(Box<Expr>),
    /// `first op rest[0].1 op rest[1].1 …`, evaluated left to right (one precedence level).
    Arith(Box<Expr>, Vec<(ArithOp, Expr)>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    /// `value IN list` (`negated`: `NIN` / `NOT IN`).
    In {
        value: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Call(Func, Vec<Expr>),
}
