//! Recursive-descent parser over the tokens from [`super::lexer`].
//!
//! Grammar (keywords case-insensitive; loosest binding first):
//!
//! ```text
//! select     := SELECT '*' FROM devices ['.' (jobs | modules)] [WHERE or_expr] EOF
//! condition  := '*' EOF | or_expr EOF
//! or_expr    := and_expr (OR and_expr)*
//! and_expr   := not_expr (AND not_expr)*
//! not_expr   := NOT not_expr | comparison
//! comparison := additive [ ('=' | '!=' | '<>' | '<' | '<=' | '>' | '>=') additive
//!                        | (IN | NIN | NOT IN) list ]
//! additive   := multiplicative (('+' | '-') multiplicative)*
//! multiplicative := unary (('*' | '/' | '%') unary)*
//! unary      := ('-' | '+') unary | primary
//! primary    := string | number | TRUE | FALSE | NULL | list
//!             | FUNCTION '(' [or_expr (',' or_expr)*] ')' | path | '(' or_expr ')'
//! list       := '[' [or_expr (',' or_expr)*] ']'  |  '(' … ')' after IN/NIN
//! path       := name ('.' name | '[' (string | integer) ']')*
//! ```
//!
//! Every nesting step (parentheses, lists, function arguments, `NOT`, unary signs) counts
//! against [`MAX_DEPTH`], so the recursion is bounded whatever the input.

use super::ast::{ArithOp, CmpOp, Expr, Func, Literal, Num, Segment};
use super::lexer::{Tok, Token};
use super::QueryError;

/// Deepest nesting accepted in a query.
pub(crate) const MAX_DEPTH: usize = 64;

/// Words that cannot start a property path.
const RESERVED: [&str; 11] = [
    "AND", "OR", "NOT", "IN", "NIN", "TRUE", "FALSE", "NULL", "SELECT", "FROM", "WHERE",
];

type R<T> = Result<T, QueryError>;

pub(crate) struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token<'a>>,
    pos: usize,
    depth: usize,
    /// The collection queried below `devices` (`jobs` or `modules`): paths spelled
    /// `devices.jobs.x` / `devices.modules.x` mean the row's `x`, and in a module query
    /// `devices.x` means `x` too (the module twin carries its device's `deviceId`).
    collection: Option<&'static str>,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(text: &'a str, tokens: Vec<Token<'a>>) -> Self {
        Parser {
            text,
            tokens,
            pos: 0,
            depth: 0,
            collection: None,
        }
    }

    pub(crate) fn set_collection(&mut self, collection: Option<&'static str>) {
        self.collection = collection;
    }

    // ----- token helpers -------------------------------------------------------------------

    fn peek(&self) -> &Token<'a> {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &Token<'a> {
        let last = self.tokens.len() - 1; // the tokenizer always ends with Eof
        &self.tokens[(self.pos + ahead).min(last)]
    }

    fn advance(&mut self) -> Token<'a> {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn at(&self, tok: &Tok) -> bool {
        &self.peek().tok == tok
    }

    fn is_kw_at(&self, ahead: usize, kw: &str) -> bool {
        matches!(&self.peek_at(ahead).tok, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    fn is_kw(&self, kw: &str) -> bool {
        self.is_kw_at(0, kw)
    }

    pub(crate) fn at_eof(&self) -> bool {
        self.at(&Tok::Eof)
    }

    pub(crate) fn at_star_then_eof(&self) -> bool {
        self.at(&Tok::Star) && self.peek_at(1).tok == Tok::Eof
    }

    fn describe(token: &Token<'_>) -> String {
        const MAX: usize = 40;
        let mut shown: String = token.text.chars().take(MAX).collect();
        if token.text.chars().nth(MAX).is_some() {
            shown.push('…');
        }
        match &token.tok {
            Tok::Eof => "end of input".to_owned(),
            Tok::Str(_) => format!("string {shown}"),
            Tok::Num(_) => format!("number {shown}"),
            Tok::Ident(s) if is_reserved(s) => format!("keyword '{shown}'"),
            _ => format!("'{shown}'"),
        }
    }

    /// "unexpected X at position N, expected WHAT" for the current token.
    pub(crate) fn unexpected(&self, expected: &str) -> QueryError {
        let token = self.peek();
        QueryError::new(
            self.text,
            token.offset,
            format!("unexpected {}", Self::describe(token)),
            Some(expected),
        )
    }

    fn expect(&mut self, tok: Tok, expected: &str) -> R<Token<'a>> {
        if self.at(&tok) {
            Ok(self.advance())
        } else {
            Err(self.unexpected(expected))
        }
    }

    pub(crate) fn expect_kw(&mut self, kw: &str, expected: &str) -> R<()> {
        if self.is_kw(kw) {
            self.advance();
            Ok(())
        } else {
            Err(self.unexpected(expected))
        }
    }

    pub(crate) fn eat_kw(&mut self, kw: &str) -> bool {
        let found = self.is_kw(kw);
        if found {
            self.advance();
        }
        found
    }

    pub(crate) fn eat(&mut self, tok: &Tok) -> bool {
        let found = self.at(tok);
        if found {
            self.advance();
        }
        found
    }

    pub(crate) fn expect_eof(&self, expected: &str) -> R<()> {
        if self.at_eof() {
            Ok(())
        } else {
            Err(self.unexpected(expected))
        }
    }

    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> R<T>) -> R<T> {
        if self.depth >= MAX_DEPTH {
            // Point at the token that opened the level (just consumed).
            let opener = &self.tokens[self.pos.saturating_sub(1)];
            return Err(QueryError::new(
                self.text,
                opener.offset,
                format!("expression nested too deeply (more than {MAX_DEPTH} levels)"),
                None,
            ));
        }
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result
    }

    // ----- grammar --------------------------------------------------------------------------

    /// A whole condition up to (not including) the end of input.
    pub(crate) fn condition(&mut self) -> R<Expr> {
        if self.is_kw("SELECT") {
            return Err(self.unexpected(
                "a condition (a queryCondition is only the WHERE part, not a full SELECT query)",
            ));
        }
        if self.at_eof() {
            return Err(self.unexpected("a condition"));
        }
        self.or_expr()
    }

    fn or_expr(&mut self) -> R<Expr> {
        let first = self.and_expr()?;
        if !self.is_kw("OR") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat_kw("OR") {
            items.push(self.and_expr()?);
        }
        Ok(Expr::Or(items))
    }

    fn and_expr(&mut self) -> R<Expr> {
        let first = self.not_expr()?;
        if !self.is_kw("AND") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat_kw("AND") {
            items.push(self.not_expr()?);
        }
        Ok(Expr::And(items))
    }

    fn not_expr(&mut self) -> R<Expr> {
        if self.eat_kw("NOT") {
            return self
                .nested(|p| p.not_expr())
                .map(|e| Expr::Not(Box::new(e)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> R<Expr> {
        let left = self.additive()?;
        let op = match self.peek().tok {
            Tok::Eq => Some(CmpOp::Eq),
            Tok::Ne => Some(CmpOp::Ne),
            Tok::Lt => Some(CmpOp::Lt),
            Tok::Le => Some(CmpOp::Le),
            Tok::Gt => Some(CmpOp::Gt),
            Tok::Ge => Some(CmpOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.advance();
            let right = self.additive()?;
            return Ok(Expr::Cmp(op, Box::new(left), Box::new(right)));
        }
        let negated = if self.eat_kw("IN") {
            false
        } else if self.eat_kw("NIN") {
            true
        } else if self.is_kw("NOT") && self.is_kw_at(1, "IN") {
            self.advance();
            self.advance();
            true
        } else {
            return Ok(left);
        };
        let list = self.nested(|p| p.in_list())?;
        Ok(Expr::In {
            value: Box::new(left),
            list,
            negated,
        })
    }

    fn in_list(&mut self) -> R<Vec<Expr>> {
        let close = match self.peek().tok {
            Tok::LBracket => Tok::RBracket,
            Tok::LParen => Tok::RParen,
            _ => return Err(self.unexpected("an array like ['a', 'b']")),
        };
        self.advance();
        self.items(close)
    }

    /// Comma-separated expressions up to `close` (the opening token is already consumed).
    fn items(&mut self, close: Tok) -> R<Vec<Expr>> {
        let mut items = Vec::new();
        if self.eat(&close) {
            return Ok(items);
        }
        let expected = if close == Tok::RBracket {
            "',' or ']'"
        } else {
            "',' or ')'"
        };
        loop {
            items.push(self.or_expr()?);
            if self.eat(&close) {
                return Ok(items);
            }
            self.expect(Tok::Comma, expected)?;
        }
    }

    fn additive(&mut self) -> R<Expr> {
        let first = self.multiplicative()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek().tok {
                Tok::Plus => ArithOp::Add,
                Tok::Minus => ArithOp::Sub,
                _ => break,
            };
            self.advance();
            rest.push((op, self.multiplicative()?));
        }
        Ok(chain(first, rest))
    }

    fn multiplicative(&mut self) -> R<Expr> {
        let first = self.unary()?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek().tok {
                Tok::Star => ArithOp::Mul,
                Tok::Slash => ArithOp::Div,
                Tok::Percent => ArithOp::Rem,
                _ => break,
            };
            self.advance();
            rest.push((op, self.unary()?));
        }
        Ok(chain(first, rest))
    }

    fn unary(&mut self) -> R<Expr> {
        if self.eat(&Tok::Minus) {
            let operand = self.nested(|p| p.unary())?;
            return Ok(match operand {
                Expr::Lit(Literal::Num(Num::Int(i))) if i != i64::MIN => {
                    Expr::Lit(Literal::Num(Num::Int(-i)))
                }
                Expr::Lit(Literal::Num(Num::Float(f))) => Expr::Lit(Literal::Num(Num::Float(-f))),
                other => Expr::Neg(Box::new(other)),
            });
        }
        if self.eat(&Tok::Plus) {
            // `+x` is `x` for numbers and undefined otherwise, which is what `0 + x` gives.
            let operand = self.nested(|p| p.unary())?;
            return Ok(match operand {
                lit @ Expr::Lit(Literal::Num(_)) => lit,
                other => Expr::Arith(
                    Box::new(Expr::Lit(Literal::Num(Num::Int(0)))),
                    vec![(ArithOp::Add, other)],
                ),
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> R<Expr> {
        let token = self.peek().clone();
        match token.tok {
            Tok::Str(s) => {
                self.advance();
                Ok(Expr::Lit(Literal::Str(s)))
            }
            Tok::Num(n) => {
                self.advance();
                Ok(Expr::Lit(Literal::Num(n)))
            }
            Tok::LBracket => {
                self.advance();
                self.nested(|p| p.items(Tok::RBracket)).map(Expr::Array)
            }
            Tok::LParen => {
                self.advance();
                self.nested(|p| {
                    let e = p.or_expr()?;
                    p.expect(Tok::RParen, "an operator or ')'")?;
                    Ok(e)
                })
            }
            Tok::Ident(ref name) => {
                if name.eq_ignore_ascii_case("true") {
                    self.advance();
                    Ok(Expr::Lit(Literal::Bool(true)))
                } else if name.eq_ignore_ascii_case("false") {
                    self.advance();
                    Ok(Expr::Lit(Literal::Bool(false)))
                } else if name.eq_ignore_ascii_case("null") {
                    self.advance();
                    Ok(Expr::Lit(Literal::Null))
                } else if self.peek_at(1).tok == Tok::LParen {
                    self.call(&token)
                } else if is_reserved(name) {
                    Err(self.unexpected("a value"))
                } else {
                    self.path()
                }
            }
            _ => Err(self.unexpected("a value")),
        }
    }

    fn call(&mut self, name_token: &Token<'a>) -> R<Expr> {
        let Tok::Ident(name) = &name_token.tok else {
            return Err(self.unexpected("a function name"));
        };
        let Some(func) = Func::lookup(name) else {
            let known: Vec<&str> = Func::ALL.iter().map(|f| f.name()).collect();
            return Err(QueryError::new(
                self.text,
                name_token.offset,
                format!("unknown function '{}'", Self::truncated(name)),
                Some(&format!("one of {}", known.join(", "))),
            ));
        };
        self.advance(); // name
        self.advance(); // (
        let args = self.nested(|p| p.items(Tok::RParen))?;
        let (min, max) = func.arity();
        if args.len() < min || args.len() > max {
            let wanted = if min == max {
                format!("{min} argument{}", if min == 1 { "" } else { "s" })
            } else {
                format!("{min} to {max} arguments")
            };
            return Err(QueryError::new(
                self.text,
                name_token.offset,
                format!(
                    "{} takes {wanted} but was given {}",
                    func.name(),
                    args.len()
                ),
                None,
            ));
        }
        Ok(Expr::Call(func, args))
    }

    fn truncated(s: &str) -> String {
        s.chars().take(40).collect()
    }

    /// A SELECT list of property paths (`deviceId, properties.reported.x`), read and dropped:
    /// for queries whose rows are only counted (a configuration's metrics).
    pub(crate) fn paths(&mut self) -> R<()> {
        loop {
            if !matches!(self.peek().tok, Tok::Ident(_)) || self.is_kw("FROM") {
                return Err(self.unexpected("'*' or property names"));
            }
            self.path()?;
            if !self.eat(&Tok::Comma) {
                return Ok(());
            }
        }
    }

    fn path(&mut self) -> R<Expr> {
        let mut segments = Vec::new();
        if let Tok::Ident(first) = self.advance().tok {
            segments.push(Segment::Name(first));
        }
        loop {
            if self.eat(&Tok::Dot) {
                match self.peek().tok.clone() {
                    Tok::Ident(name) => {
                        self.advance();
                        segments.push(Segment::Name(name));
                    }
                    _ => return Err(self.unexpected("a property name after '.'")),
                }
            } else if self.eat(&Tok::LBracket) {
                let segment = match self.peek().tok.clone() {
                    Tok::Str(name) => Segment::Name(name),
                    Tok::Num(Num::Int(i)) if i >= 0 => Segment::Index(i as usize),
                    _ => {
                        return Err(self
                            .unexpected("a quoted property name or an array index inside '[ ]'"))
                    }
                };
                self.advance();
                self.expect(Tok::RBracket, "']'")?;
                segments.push(segment);
            } else {
                break;
            }
        }
        if let Some(collection) = self.collection {
            let is = |s: &Segment, word: &str| matches!(s, Segment::Name(n) if n.eq_ignore_ascii_case(word));
            if segments.len() > 2 && is(&segments[0], "devices") && is(&segments[1], collection) {
                segments.drain(..2);
            } else if collection == "modules" && segments.len() > 1 && is(&segments[0], "devices") {
                segments.drain(..1);
            }
        }
        Ok(Expr::Path(segments))
    }
}

fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

fn chain(first: Expr, rest: Vec<(ArithOp, Expr)>) -> Expr {
    if rest.is_empty() {
        first
    } else {
        Expr::Arith(Box::new(first), rest)
    }
}
