//! Filtering and ordering shared by the emulators' query dialects.
//!
//! SoQL `$where`, ODSQL `where` and ArcGIS `where` share one small grammar: comparisons
//! (`= != <> < <= > >=`) between a field and a literal, `IS [NOT] NULL`, `NOT`, `AND`, `OR` and
//! parentheses. Literals are single-quoted strings (`''` escapes a quote), numbers, `true` /
//! `false`, and typed literals `date'…'` / `timestamp '…'`. Each dialect parses with
//! [`parse`], then binds field names to [`Key`]s and literals to [`Scalar`]s with its own
//! rules (name resolution, time zone of time literals), and evaluates with SQL's three-valued
//! logic: a comparison with a missing value is unknown, and only true rows match.

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use crate::dataset::{ColumnKind, Dataset, Row, local_to_utc, parse_canonical_timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn flip(self) -> Self {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            other => other,
        }
    }

    fn test(self, ordering: Ordering) -> bool {
        match self {
            CmpOp::Eq => ordering == Ordering::Equal,
            CmpOp::Ne => ordering != Ordering::Equal,
            CmpOp::Lt => ordering == Ordering::Less,
            CmpOp::Le => ordering != Ordering::Greater,
            CmpOp::Gt => ordering == Ordering::Greater,
            CmpOp::Ge => ordering != Ordering::Less,
        }
    }
}

/// A literal as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Text(String),
    Number(String),
    Bool(bool),
    /// `date'…'` or `timestamp '…'` (kind in lowercase).
    Typed {
        kind: String,
        text: String,
    },
}

impl Literal {
    pub(crate) fn text(&self) -> String {
        match self {
            Literal::Text(s) | Literal::Number(s) | Literal::Typed { text: s, .. } => s.clone(),
            Literal::Bool(b) => b.to_string(),
        }
    }
}

/// A field name with its 1-based character position in the clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ident {
    pub name: String,
    pub position: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr<F, L> {
    Const(bool),
    Not(Box<Expr<F, L>>),
    And(Box<Expr<F, L>>, Box<Expr<F, L>>),
    Or(Box<Expr<F, L>>, Box<Expr<F, L>>),
    Cmp(F, CmpOp, L),
    /// Field, negated (`IS NOT NULL`).
    IsNull(F, bool),
}

pub(crate) type Parsed = Expr<Ident, Literal>;
pub(crate) type Filter = Expr<Key, Scalar>;

/// Lexical differences between dialects.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Dialect {
    /// ODSQL: `"…"` is a string; elsewhere it quotes an identifier.
    pub double_quoted_strings: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Str(String),
    Num(String),
    Op(CmpOp),
    Open,
    Close,
}

fn tokenize(input: &str, dialect: Dialect) -> Result<Vec<(Tok, usize)>, String> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens: Vec<(Tok, usize)> = Vec::new();
    let mut i = 0;
    let quoted = |i: &mut usize, close: char| -> Result<String, String> {
        let start = *i;
        let mut text = String::new();
        *i += 1;
        loop {
            match chars.get(*i) {
                None => return Err(format!("unterminated quote at position {}", start + 1)),
                Some(&c) if c == close && chars.get(*i + 1) == Some(&close) => {
                    text.push(c);
                    *i += 2;
                }
                Some(&c) if c == close => {
                    *i += 1;
                    return Ok(text);
                }
                Some(&c) => {
                    text.push(c);
                    *i += 1;
                }
            }
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let after_operand = matches!(
            tokens.last(),
            Some((
                Tok::Word(_) | Tok::Quoted(_) | Tok::Str(_) | Tok::Num(_) | Tok::Close,
                _
            ))
        );
        let token = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => {
                i += 1;
                Tok::Open
            }
            ')' => {
                i += 1;
                Tok::Close
            }
            '\'' => Tok::Str(quoted(&mut i, '\'')?),
            '"' if dialect.double_quoted_strings => Tok::Str(quoted(&mut i, '"')?),
            '"' => Tok::Quoted(quoted(&mut i, '"')?),
            '`' => Tok::Quoted(quoted(&mut i, '`')?),
            '=' | '!' | '<' | '>' => {
                let next = chars.get(i + 1).copied();
                let (op, width) = match (c, next) {
                    ('=', Some('=')) => (CmpOp::Eq, 2),
                    ('=', _) => (CmpOp::Eq, 1),
                    ('!', Some('=')) => (CmpOp::Ne, 2),
                    ('<', Some('>')) => (CmpOp::Ne, 2),
                    ('<', Some('=')) => (CmpOp::Le, 2),
                    ('<', _) => (CmpOp::Lt, 1),
                    ('>', Some('=')) => (CmpOp::Ge, 2),
                    ('>', _) => (CmpOp::Gt, 1),
                    _ => return Err(format!("unexpected '{c}' at position {}", i + 1)),
                };
                i += width;
                Tok::Op(op)
            }
            c if c.is_ascii_digit()
                || (matches!(c, '-' | '.')
                    && !after_operand
                    && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                i += 1;
                while chars
                    .get(i)
                    .is_some_and(|c| c.is_ascii_digit() || *c == '.')
                {
                    i += 1;
                }
                Tok::Num(chars[start..i].iter().collect())
            }
            c if c.is_alphabetic() || matches!(c, '_' | ':' | '@') => {
                while chars
                    .get(i)
                    .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '@'))
                {
                    i += 1;
                }
                Tok::Word(chars[start..i].iter().collect())
            }
            other => return Err(format!("unexpected '{other}' at position {}", i + 1)),
        };
        tokens.push((token, start + 1));
    }
    Ok(tokens)
}

enum Operand {
    Field(Ident),
    Lit(Literal),
}

struct Parser {
    tokens: Vec<(Tok, usize)>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at).map(|(t, _)| t)
    }

    fn position(&self) -> usize {
        self.tokens
            .get(self.at)
            .map_or_else(|| self.tokens.last().map_or(1, |(_, p)| p + 1), |(_, p)| *p)
    }

    fn keyword(&mut self, word: &str) -> bool {
        let hit = matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(word));
        if hit {
            self.at += 1;
        }
        hit
    }

    fn fail<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at position {}", self.position()))
    }

    fn or(&mut self) -> Result<Parsed, String> {
        let mut left = self.and()?;
        while self.keyword("or") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Parsed, String> {
        let mut left = self.not()?;
        while self.keyword("and") {
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Parsed, String> {
        if self.keyword("not") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Parsed, String> {
        if self.peek() == Some(&Tok::Open) {
            self.at += 1;
            let inner = self.or()?;
            if self.peek() != Some(&Tok::Close) {
                return self.fail("expected ')'");
            }
            self.at += 1;
            return Ok(inner);
        }
        let left = self.operand()?;
        if self.keyword("is") {
            let negated = self.keyword("not");
            if !self.keyword("null") {
                return self.fail("expected NULL");
            }
            return match left {
                Operand::Field(field) => Ok(Expr::IsNull(field, negated)),
                Operand::Lit(_) => self.fail("IS NULL needs a field"),
            };
        }
        let Some(Tok::Op(op)) = self.peek().cloned() else {
            return self.fail("expected a comparison operator");
        };
        self.at += 1;
        let right = self.operand()?;
        match (left, right) {
            (Operand::Field(f), Operand::Lit(l)) => Ok(Expr::Cmp(f, op, l)),
            (Operand::Lit(l), Operand::Field(f)) => Ok(Expr::Cmp(f, op.flip(), l)),
            (Operand::Lit(a), Operand::Lit(b)) => Ok(Expr::Const(
                compare_literals(&a, &b).is_some_and(|o| op.test(o)),
            )),
            (Operand::Field(_), Operand::Field(_)) => {
                self.fail("comparing two fields is not supported")
            }
        }
    }

    fn operand(&mut self) -> Result<Operand, String> {
        let position = self.position();
        let Some(token) = self.peek().cloned() else {
            return self.fail("unexpected end of expression");
        };
        self.at += 1;
        Ok(match token {
            Tok::Str(s) => Operand::Lit(Literal::Text(s)),
            Tok::Num(n) => Operand::Lit(Literal::Number(n)),
            Tok::Quoted(name) => Operand::Field(Ident { name, position }),
            Tok::Word(w) if w.eq_ignore_ascii_case("true") || w.eq_ignore_ascii_case("false") => {
                Operand::Lit(Literal::Bool(w.eq_ignore_ascii_case("true")))
            }
            Tok::Word(w)
                if (w.eq_ignore_ascii_case("date") || w.eq_ignore_ascii_case("timestamp"))
                    && matches!(self.peek(), Some(Tok::Str(_))) =>
            {
                let Some(Tok::Str(text)) = self.peek().cloned() else {
                    unreachable!()
                };
                self.at += 1;
                Operand::Lit(Literal::Typed {
                    kind: w.to_ascii_lowercase(),
                    text,
                })
            }
            Tok::Word(w)
                if ["and", "or", "not", "is", "null"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                self.at -= 1;
                return self.fail(&format!("unexpected keyword {w}"));
            }
            Tok::Word(name) => Operand::Field(Ident { name, position }),
            _ => {
                self.at -= 1;
                return self.fail("expected a field or a value");
            }
        })
    }
}

fn compare_literals(a: &Literal, b: &Literal) -> Option<Ordering> {
    match (a, b) {
        (Literal::Number(x), Literal::Number(y)) => {
            x.parse::<f64>().ok()?.partial_cmp(&y.parse::<f64>().ok()?)
        }
        _ => Some(a.text().cmp(&b.text())),
    }
}

/// Parses a filter expression.
pub(crate) fn parse(input: &str, dialect: Dialect) -> Result<Parsed, String> {
    let mut parser = Parser {
        tokens: tokenize(input, dialect)?,
        at: 0,
    };
    if parser.tokens.is_empty() {
        return Err("empty expression".into());
    }
    let expr = parser.or()?;
    if parser.at < parser.tokens.len() {
        return parser.fail("unexpected input");
    }
    Ok(expr)
}

impl Parsed {
    /// Resolves field names and converts literals; the first error wins.
    pub(crate) fn bind<E>(
        self,
        field: &mut dyn FnMut(&Ident) -> Result<Key, E>,
        literal: &mut dyn FnMut(Key, Literal) -> Result<Scalar, E>,
    ) -> Result<Filter, E> {
        Ok(match self {
            Expr::Const(b) => Expr::Const(b),
            Expr::Not(e) => Expr::Not(Box::new(e.bind(field, literal)?)),
            Expr::And(a, b) => Expr::And(
                Box::new(a.bind(field, literal)?),
                Box::new(b.bind(field, literal)?),
            ),
            Expr::Or(a, b) => Expr::Or(
                Box::new(a.bind(field, literal)?),
                Box::new(b.bind(field, literal)?),
            ),
            Expr::Cmp(f, op, l) => {
                let key = field(&f)?;
                Expr::Cmp(key, op, literal(key, l)?)
            }
            Expr::IsNull(f, negated) => Expr::IsNull(field(&f)?, negated),
        })
    }
}

impl Filter {
    /// Three-valued evaluation: `None` is SQL's unknown.
    pub(crate) fn eval(&self, get: &dyn Fn(Key) -> Option<Scalar>) -> Option<bool> {
        match self {
            Expr::Const(b) => Some(*b),
            Expr::Not(e) => e.eval(get).map(|b| !b),
            Expr::And(a, b) => match (a.eval(get), b.eval(get)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Expr::Or(a, b) => match (a.eval(get), b.eval(get)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Expr::Cmp(key, op, value) => compare(&get(*key)?, value).map(|o| op.test(o)),
            Expr::IsNull(key, negated) => Some(get(*key).is_none() != *negated),
        }
    }

    /// Ands two filters.
    pub(crate) fn and(left: Option<Filter>, right: Filter) -> Filter {
        match left {
            Some(left) => Expr::And(Box::new(left), Box::new(right)),
            None => right,
        }
    }
}

/// What a filter or ordering can refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Column(usize),
    Sid,
    RowId,
    CreatedAt,
    UpdatedAt,
}

/// A comparable value. `Time` is epoch seconds, of an instant or of a floating time read as
/// if it were UTC, depending on the [`Clock`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Text(String),
    Number(f64),
    Time(i64),
    Bool(bool),
}

pub(crate) fn compare(a: &Scalar, b: &Scalar) -> Option<Ordering> {
    match (a, b) {
        (Scalar::Text(x), Scalar::Text(y)) => Some(x.cmp(y)),
        (Scalar::Number(x), Scalar::Number(y)) => Some(x.total_cmp(y)),
        (Scalar::Time(x), Scalar::Time(y)) => Some(x.cmp(y)),
        (Scalar::Bool(x), Scalar::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// How a dialect reads the source's floating timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Clock {
    /// As floating local times (Socrata's `floating_timestamp`).
    Floating,
    /// As instants in America/Los_Angeles (ArcGIS dates).
    Utc,
    /// As instants, except date-only columns, which stay calendar dates (Opendatasoft).
    UtcWithFloatingDates,
}

/// The kind of value `key` holds, and whether it is a date without time of day.
pub(crate) fn key_kind(dataset: &Dataset, key: Key) -> (ColumnKind, bool) {
    match key {
        Key::Column(i) => (dataset.columns()[i].kind, dataset.columns()[i].date_only),
        Key::Sid => (ColumnKind::Number, false),
        Key::RowId => (ColumnKind::Text, false),
        Key::CreatedAt | Key::UpdatedAt => (ColumnKind::Timestamp, false),
    }
}

/// The comparable value of `key` in `row`.
pub(crate) fn scalar(dataset: &Dataset, row: &Row, key: Key, clock: Clock) -> Option<Scalar> {
    match key {
        Key::Column(i) => {
            let column = &dataset.columns()[i];
            let text = row.get(i)?;
            match column.kind {
                ColumnKind::Text | ColumnKind::Point => Some(Scalar::Text(text.to_owned())),
                ColumnKind::Number => text.parse().ok().map(Scalar::Number),
                ColumnKind::Boolean => Some(Scalar::Bool(text == "true")),
                ColumnKind::Timestamp => {
                    let t = parse_canonical_timestamp(text)?;
                    let floating = match clock {
                        Clock::Floating => true,
                        Clock::Utc => false,
                        Clock::UtcWithFloatingDates => column.date_only,
                    };
                    Some(Scalar::Time(if floating {
                        t.and_utc().timestamp()
                    } else {
                        local_to_utc(t).timestamp()
                    }))
                }
            }
        }
        Key::Sid => Some(Scalar::Number(row.sid as f64)),
        Key::RowId => Some(Scalar::Text(row.id.clone())),
        Key::CreatedAt => Some(Scalar::Time(row.created_at)),
        Key::UpdatedAt => Some(Scalar::Time(row.updated_at)),
    }
}

/// Converts a literal for comparison with a value of `kind`; `time` reads time literals.
pub(crate) fn convert_literal(
    kind: ColumnKind,
    literal: Literal,
    time: impl FnOnce(&Literal) -> Option<i64>,
) -> Result<Scalar, String> {
    match kind {
        ColumnKind::Text | ColumnKind::Point => Ok(Scalar::Text(literal.text())),
        ColumnKind::Number => match &literal {
            Literal::Number(s) | Literal::Text(s) => s
                .trim()
                .parse()
                .map(Scalar::Number)
                .map_err(|_| format!("'{s}' is not a number")),
            other => Err(format!("'{}' is not a number", other.text())),
        },
        ColumnKind::Boolean => match literal {
            Literal::Bool(b) => Ok(Scalar::Bool(b)),
            Literal::Text(s) if s == "true" || s == "false" => Ok(Scalar::Bool(s == "true")),
            other => Err(format!("'{}' is not a boolean", other.text())),
        },
        ColumnKind::Timestamp => time(&literal)
            .map(Scalar::Time)
            .ok_or_else(|| format!("'{}' is not a date", literal.text())),
    }
}

/// A time literal: with a zone (an instant) or without (floating).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeLiteral {
    Floating(NaiveDateTime),
    Instant(DateTime<Utc>),
}

/// Reads ISO 8601 dates and date-times, with `T` or a space, optional fraction and zone.
pub(crate) fn parse_time_literal(text: &str) -> Option<TimeLiteral> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(TimeLiteral::Instant(t.with_timezone(&Utc)));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(&text.replacen(' ', "T", 1)) {
        return Some(TimeLiteral::Instant(t.with_timezone(&Utc)));
    }
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .map(|d| d.and_time(Default::default()))
    })
    .map(TimeLiteral::Floating)
}

/// One ordering term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SortKey {
    pub key: Key,
    pub descending: bool,
}

/// Splits `a ASC, b desc, c` into names and directions (backticks and double quotes stripped).
pub(crate) fn parse_order_list(text: &str) -> Result<Vec<(String, bool)>, String> {
    text.split(',')
        .map(|term| {
            let term = term.trim();
            let (name, descending) = match term.rsplit_once(char::is_whitespace) {
                Some((name, dir)) if dir.eq_ignore_ascii_case("desc") => (name.trim(), true),
                Some((name, dir)) if dir.eq_ignore_ascii_case("asc") => (name.trim(), false),
                _ => (term, false),
            };
            let name = name.trim_matches(|c| c == '`' || c == '"');
            if name.is_empty() {
                Err(format!("empty ordering term in '{text}'"))
            } else {
                Ok((name.to_owned(), descending))
            }
        })
        .collect()
}

/// Sorts rows by `keys`, SQL-style (nulls sort after every value, so first when descending),
/// breaking ties with `tiebreak`.
pub(crate) fn sort_rows(
    dataset: &Dataset,
    rows: &mut Vec<&Row>,
    keys: &[SortKey],
    clock: Clock,
    tiebreak: impl Fn(&Row) -> u64,
) {
    let mut decorated: Vec<(Vec<Option<Scalar>>, u64, &Row)> = rows
        .iter()
        .map(|row| {
            let values = keys
                .iter()
                .map(|k| scalar(dataset, row, k.key, clock))
                .collect();
            (values, tiebreak(row), *row)
        })
        .collect();
    decorated.sort_by(|(a, ta, _), (b, tb, _)| {
        keys.iter()
            .zip(a.iter().zip(b))
            .map(|(key, (x, y))| {
                let ordering = match (x, y) {
                    (None, None) => Ordering::Equal,
                    (None, Some(_)) => Ordering::Greater,
                    (Some(_), None) => Ordering::Less,
                    (Some(x), Some(y)) => compare(x, y).unwrap_or(Ordering::Equal),
                };
                if key.descending {
                    ordering.reverse()
                } else {
                    ordering
                }
            })
            .find(|o| o.is_ne())
            .unwrap_or_else(|| ta.cmp(tb))
    });
    *rows = decorated.into_iter().map(|(_, _, row)| row).collect();
}

/// Rows of `dataset` for which `filter` holds.
pub(crate) fn filter_rows<'a>(
    dataset: &'a Dataset,
    filter: Option<&Filter>,
    clock: Clock,
) -> Vec<&'a Row> {
    dataset
        .rows()
        .iter()
        .filter(|row| {
            filter.is_none_or(|f| f.eval(&|key| scalar(dataset, row, key, clock)) == Some(true))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_precedence_quotes_and_typed_literals() {
        let e = parse(
            "a = 'it''s' OR b >= -2 AND NOT (c IS NOT NULL)",
            Dialect::default(),
        )
        .unwrap();
        let Expr::Or(left, right) = e else {
            panic!("{e:?}")
        };
        assert!(
            matches!(*left, Expr::Cmp(ref f, CmpOp::Eq, Literal::Text(ref s)) if f.name == "a" && s == "it's")
        );
        assert!(matches!(*right, Expr::And(..)));
        let e = parse("date'2017-01-01' < `x y`", Dialect::default()).unwrap();
        assert!(matches!(e, Expr::Cmp(ref f, CmpOp::Gt, Literal::Typed { .. }) if f.name == "x y"));
        assert_eq!(parse("1=1", Dialect::default()).unwrap(), Expr::Const(true));
        assert!(
            parse("a = ", Dialect::default())
                .unwrap_err()
                .contains("position 4")
        );
    }
}
