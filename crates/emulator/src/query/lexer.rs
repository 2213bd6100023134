//! Tokenizer: turns the query text into [`Token`]s with `winnow`.
//!
//! All character-level work (whitespace, quoted strings and their escapes, numbers, identifiers,
//! operators) happens here, so the parser above works on whole tokens only.

use winnow::combinator::{alt, opt, repeat};
use winnow::error::{ContextError, ErrMode};
use winnow::prelude::*;
use winnow::stream::{Location, Stream};
use winnow::token::{any, one_of, take_till, take_while};
use winnow::LocatingSlice;

use super::ast::Num;

/// One token kind. Identifiers keep their spelling; keywords are recognised by the parser
/// (case-insensitively), because after a `.` any identifier is a plain property name.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Str(String),
    Num(Num),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Eof,
}

/// A token with its source text and byte offset in the query.
#[derive(Debug, Clone)]
pub(crate) struct Token<'a> {
    pub(crate) tok: Tok,
    pub(crate) text: &'a str,
    pub(crate) offset: usize,
}

/// Why the tokenizer stopped, with the byte offset it points at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LexFault {
    UnexpectedChar(char),
    UnterminatedString,
    InvalidEscape,
    InvalidUnicodeEscape,
    NumberOutOfRange,
}

type Input<'a> = LocatingSlice<&'a str>;
type LexError = ContextError<LexFault>;
type LexResult<T> = Result<T, ErrMode<LexError>>;

fn cut(fault: LexFault) -> ErrMode<LexError> {
    let mut e = LexError::new();
    e.push(fault);
    ErrMode::Cut(e)
}

/// Splits `text` into tokens, ending with [`Tok::Eof`].
pub(crate) fn tokenize(text: &str) -> Result<Vec<Token<'_>>, (LexFault, usize)> {
    let mut input = LocatingSlice::new(text);
    let mut tokens = Vec::new();
    loop {
        let _ = whitespace(&mut input);
        let offset = input.current_token_start();
        if input.eof_offset() == 0 {
            tokens.push(Token {
                tok: Tok::Eof,
                text: "",
                offset,
            });
            return Ok(tokens);
        }
        match token.with_taken().parse_next(&mut input) {
            Ok((tok, taken)) => tokens.push(Token {
                tok,
                text: taken,
                offset,
            }),
            Err(ErrMode::Cut(e)) => {
                let fault = e
                    .context()
                    .next()
                    .cloned()
                    .unwrap_or(LexFault::UnexpectedChar(' '));
                return Err((fault, input.current_token_start()));
            }
            Err(_) => {
                let c = text[offset..].chars().next().unwrap_or(' ');
                return Err((LexFault::UnexpectedChar(c), offset));
            }
        }
    }
}

fn whitespace<'a>(input: &mut Input<'a>) -> LexResult<&'a str> {
    take_while(0.., char::is_whitespace).parse_next(input)
}

fn token(input: &mut Input<'_>) -> LexResult<Tok> {
    alt((
        string_literal.map(Tok::Str),
        number.map(Tok::Num),
        identifier.map(|s: &str| Tok::Ident(s.to_owned())),
        punctuation,
    ))
    .parse_next(input)
}

fn punctuation(input: &mut Input<'_>) -> LexResult<Tok> {
    let two_chars = alt((
        "<>".value(Tok::Ne),
        "!=".value(Tok::Ne),
        "<=".value(Tok::Le),
        ">=".value(Tok::Ge),
    ));
    let one_char = any.verify_map(|c: char| {
        Some(match c {
            '<' => Tok::Lt,
            '>' => Tok::Gt,
            '=' => Tok::Eq,
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            ',' => Tok::Comma,
            '.' => Tok::Dot,
            '+' => Tok::Plus,
            '-' => Tok::Minus,
            '*' => Tok::Star,
            '/' => Tok::Slash,
            '%' => Tok::Percent,
            _ => return None,
        })
    });
    alt((two_chars, one_char)).parse_next(input)
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '$'
}

fn is_ident_continue(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// A name; one starting with `$` may also hold `-` before a letter, as the routing query's
/// system properties do (`$iothub-enqueuedtime`, `$dt-subject`), while `$version-1` stays a
/// subtraction.
fn identifier<'a>(input: &mut Input<'a>) -> LexResult<&'a str> {
    alt((
        (
            '$',
            take_while(0.., is_ident_continue),
            repeat::<_, _, (), _, _>(
                0..,
                (
                    '-',
                    one_of(char::is_alphabetic),
                    take_while(0.., is_ident_continue),
                ),
            ),
        )
            .take(),
        (one_of(is_ident_start), take_while(0.., is_ident_continue)).take(),
    ))
    .parse_next(input)
}

/// An unsigned number: `12`, `1.5`, `2e10`, `6.02E-23`. A sign is a unary operator.
fn number(input: &mut Input<'_>) -> LexResult<Num> {
    let start = input.checkpoint();
    let digits = || take_while(1.., |c: char| c.is_ascii_digit());
    let (text, (_, fraction, exponent)) = (
        digits(),
        opt(('.', digits())),
        opt((one_of(['e', 'E']), opt(one_of(['+', '-'])), digits())),
    )
        .with_taken()
        .map(|(parts, taken): (_, &str)| (taken, parts))
        .parse_next(input)?;
    if fraction.is_none() && exponent.is_none() {
        if let Ok(n) = text.parse::<i64>() {
            return Ok(Num::Int(n));
        }
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(Num::Float(f)),
        _ => {
            input.reset(&start);
            Err(cut(LexFault::NumberOutOfRange))
        }
    }
}

/// `'…'` or `"…"` with the escapes `\' \" \\ \/ \b \f \n \r \t \uXXXX`.
fn string_literal(input: &mut Input<'_>) -> LexResult<String> {
    let start = input.checkpoint();
    let quote = one_of(['\'', '"']).parse_next(input)?;
    let mut out = String::new();
    loop {
        let chunk = take_till(0.., [quote, '\\']).parse_next(input)?;
        out.push_str(chunk);
        let before = input.checkpoint();
        match opt(any).parse_next(input)? {
            Some(c) if c == quote => return Ok(out),
            Some(_backslash) => match escape(input) {
                Ok(c) => out.push(c),
                Err(e) => {
                    input.reset(&before);
                    return Err(e);
                }
            },
            None => {
                input.reset(&start);
                return Err(cut(LexFault::UnterminatedString));
            }
        }
    }
}

fn escape(input: &mut Input<'_>) -> LexResult<char> {
    let simple = alt((
        one_of(['\'', '"', '\\', '/']),
        'b'.value('\u{8}'),
        'f'.value('\u{c}'),
        'n'.value('\n'),
        'r'.value('\r'),
        't'.value('\t'),
    ))
    .parse_next(input);
    match simple {
        Ok(c) => Ok(c),
        Err(ErrMode::Backtrack(_)) => {
            if opt('u').parse_next(input)?.is_none() {
                return Err(cut(LexFault::InvalidEscape));
            }
            unicode_escape(input)
        }
        Err(e) => Err(e),
    }
}

fn hex4(input: &mut Input<'_>) -> LexResult<u32> {
    take_while(4, |c: char| c.is_ascii_hexdigit())
        .parse_next(input)
        .map_err(|_: ErrMode<LexError>| cut(LexFault::InvalidUnicodeEscape))
        .and_then(|h| u32::from_str_radix(h, 16).map_err(|_| cut(LexFault::InvalidUnicodeEscape)))
}

/// The part after `\u`: four hex digits, or a UTF-16 surrogate pair `\uD83D\uDE00`.
fn unicode_escape(input: &mut Input<'_>) -> LexResult<char> {
    let first = hex4(input)?;
    let code = if (0xD800..0xDC00).contains(&first) {
        let low = ("\\u", hex4)
            .map(|(_, low)| low)
            .parse_next(input)
            .map_err(|_| cut(LexFault::InvalidUnicodeEscape))?;
        if !(0xDC00..0xE000).contains(&low) {
            return Err(cut(LexFault::InvalidUnicodeEscape));
        }
        0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00)
    } else {
        first
    };
    char::from_u32(code).ok_or_else(|| cut(LexFault::InvalidUnicodeEscape))
}
