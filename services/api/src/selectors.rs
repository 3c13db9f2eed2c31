//! Label and field selectors: Kubernetes' string syntax, matching and canonical form.
//!
//! [`LabelSelector`] is the parsed selector of `?labelSelector=` and of the `selector` fields of
//! workloads (built with [`LabelSelector::from_meta`]); it is distinct from the generated
//! `meta::v1::LabelSelector` message. [`FieldSelector`] is `?fieldSelector=`, restricted per kind
//! to the fields Kubernetes supports.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::Value as Json;

use crate::errors::{ApiError, FieldError};
use crate::kinds::KindInfo;
use crate::meta;
use crate::validation::names::{is_qualified_name, is_valid_label_value};

/// A selection operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `a=b`
    Equals,
    /// `a==b`
    DoubleEquals,
    /// `a!=b`
    NotEquals,
    /// `a in (x,y)`
    In,
    /// `a notin (x,y)`
    NotIn,
    /// `a`
    Exists,
    /// `!a`
    DoesNotExist,
    /// `a>1` (integer comparison)
    GreaterThan,
    /// `a<1` (integer comparison)
    LessThan,
}

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted and de-duplicated for the string syntax; as given for `from_meta`.
    pub values: Vec<String>,
}

impl Requirement {
    /// Kubernetes' `NewRequirement`: validates the key, the values and their count.
    fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, Vec<FieldError>> {
        let mut errs = Vec::new();
        let key_msgs = is_qualified_name(key);
        if !key_msgs.is_empty() {
            errs.push(FieldError::invalid(
                "<nil>",
                quote(key),
                key_msgs.join("; "),
            ));
        }
        let values_path = "values";
        let rendered = || {
            format!(
                "[]string{{{}}}",
                values
                    .iter()
                    .map(|v| quote(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => errs.push(FieldError::invalid(
                values_path,
                rendered(),
                "for 'in', 'notin' operators, values set can't be empty",
            )),
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                errs.push(FieldError::invalid(
                    values_path,
                    rendered(),
                    "exact-match compatibility requires one single value",
                ))
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                errs.push(FieldError::invalid(
                    values_path,
                    rendered(),
                    "values set must be empty for exists and does not exist",
                ))
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(FieldError::invalid(
                        values_path,
                        rendered(),
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(FieldError::invalid(
                            format!("{values_path}[{i}]"),
                            quote(v),
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let msgs = is_valid_label_value(v);
            if !msgs.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{values_path}[{i}][{key}]"),
                    quote(v),
                    msgs.join("; "),
                ));
            }
        }
        if errs.is_empty() {
            Ok(Self {
                key: key.to_string(),
                operator,
                values,
            })
        } else {
            Err(errs)
        }
    }

    /// Whether `labels` satisfy the requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                value.is_some_and(|v| self.values.contains(v))
            }
            Operator::NotIn | Operator::NotEquals => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(have), [want]) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.as_slice(),
                ) else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
        };
        f.write_str(op)?;
        let set = matches!(self.operator, Operator::In | Operator::NotIn);
        if set {
            f.write_str("(")?;
        }
        if self.values.len() == 1 {
            f.write_str(&self.values[0])?;
        } else {
            let mut sorted = self.values.clone();
            sorted.sort();
            f.write_str(&sorted.join(","))?;
        }
        if set {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// A parsed label selector: requirements that must all hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// The selector that matches everything (an empty `?labelSelector=`).
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses Kubernetes' string syntax: `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    /// Invalid input is a BadRequest with Kubernetes' parser message.
    pub fn parse(input: &str) -> Result<Self, ApiError> {
        Parser::new(input).parse().map_err(ApiError::bad_request)
    }

    /// Kubernetes' `LabelSelectorAsSelector` for a `matchLabels`/`matchExpressions` selector.
    /// An empty selector selects everything (workload validation rejects it separately); errors
    /// carry paths relative to the selector (`matchExpressions[0].operator`).
    pub fn from_meta(selector: &meta::v1::LabelSelector) -> Result<Self, Vec<FieldError>> {
        let mut errs = Vec::new();
        crate::validation::validate_label_selector_at(selector, "", &mut errs);
        if !errs.is_empty() {
            return Err(errs);
        }
        let mut requirements = Vec::new();
        for (k, v) in &selector.match_labels {
            requirements.push(Requirement::new(k, Operator::Equals, vec![v.clone()])?);
        }
        for expr in &selector.match_expressions {
            let op = match expr.operator.as_deref().unwrap_or("") {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(vec![FieldError::invalid(
                        "operator",
                        quote(other),
                        format!("{} is not a valid label selector operator", quote(other)),
                    )]);
                }
            };
            requirements.push(Requirement::new(
                expr.key.as_deref().unwrap_or(""),
                op,
                expr.values.clone(),
            )?);
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Self { requirements })
    }

    /// The selector matching exactly these labels (`SelectorFromSet`).
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Self {
        let requirements = labels
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                operator: Operator::Equals,
                values: vec![v.clone()],
            })
            .collect();
        Self { requirements }
    }

    /// Whether every requirement holds for `labels`.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// No requirements: matches every object.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// The single value `key` must have, if the selector pins it (`key=v` or `key in (v)`):
    /// lets a caller use an index.
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for LabelSelector {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn quote(s: &str) -> String {
    format!("{s:?}")
}

// ---- the label selector parser (a port of apimachinery's lexer and parser) -------------------

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Error(String),
    End,
    ClosedPar,
    Comma,
    Not,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier(String),
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

impl Token {
    /// The literal Kubernetes prints in its messages.
    fn literal(&self) -> &str {
        match self {
            Token::Error(s) | Token::Identifier(s) => s,
            Token::End => "",
            Token::ClosedPar => ")",
            Token::Comma => ",",
            Token::Not => "!",
            Token::DoubleEquals => "==",
            Token::Equals => "=",
            Token::GreaterThan => ">",
            Token::In => "in",
            Token::LessThan => "<",
            Token::NotEquals => "!=",
            Token::NotIn => "notin",
            Token::OpenPar => "(",
        }
    }

    fn from_literal(s: &str) -> Option<Token> {
        Some(match s {
            ")" => Token::ClosedPar,
            "," => Token::Comma,
            "!" => Token::Not,
            "==" => Token::DoubleEquals,
            "=" => Token::Equals,
            ">" => Token::GreaterThan,
            "in" => Token::In,
            "<" => Token::LessThan,
            "!=" => Token::NotEquals,
            "notin" => Token::NotIn,
            "(" => Token::OpenPar,
            _ => return None,
        })
    }
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn lex(input: &str) -> Vec<Token> {
    let bytes = input.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < bytes.len() && is_space(bytes[pos]) {
            pos += 1;
        }
        if pos >= bytes.len() {
            out.push(Token::End);
            return out;
        }
        if is_special(bytes[pos]) {
            let start = pos;
            let mut last: Option<(Token, usize)> = None;
            while pos < bytes.len() && is_special(bytes[pos]) {
                let candidate = &input[start..=pos];
                if let Some(t) = Token::from_literal(candidate) {
                    last = Some((t, pos + 1));
                } else if last.is_some() {
                    break;
                }
                pos += 1;
            }
            match last {
                Some((t, end)) => {
                    pos = end;
                    out.push(t);
                }
                None => out.push(Token::Error(format!(
                    "error expected: keyword found '{}'",
                    &input[start..pos]
                ))),
            }
        } else {
            let start = pos;
            while pos < bytes.len() && !is_special(bytes[pos]) && !is_space(bytes[pos]) {
                pos += 1;
            }
            let word = &input[start..pos];
            out.push(
                Token::from_literal(word).unwrap_or_else(|| Token::Identifier(word.to_string())),
            );
        }
        if matches!(out.last(), Some(Token::Error(_))) {
            out.push(Token::End);
            return out;
        }
    }
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
}

/// In value context `in` and `notin` are plain identifiers (`x in (in)`).
fn as_value(t: Token) -> Token {
    match t {
        Token::In => Token::Identifier("in".into()),
        Token::NotIn => Token::Identifier("notin".into()),
        other => other,
    }
}

impl Parser {
    fn new(input: &str) -> Self {
        Self {
            tokens: lex(input),
            position: 0,
        }
    }

    fn lookahead(&self, values: bool) -> Token {
        let t = self
            .tokens
            .get(self.position)
            .cloned()
            .unwrap_or(Token::End);
        if values { as_value(t) } else { t }
    }

    fn consume(&mut self, values: bool) -> Token {
        let t = self.lookahead(values);
        self.position += 1;
        t
    }

    fn parse(&mut self) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        loop {
            match self.lookahead(true) {
                Token::Identifier(_) | Token::Not => {
                    let r = self
                        .requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(r);
                    match self.consume(true) {
                        Token::End => break,
                        Token::Comma => {
                            let next = self.lookahead(true);
                            if !matches!(next, Token::Identifier(_) | Token::Not) {
                                return Err(format!(
                                    "found '{}', expected: identifier after ','",
                                    next.literal()
                                ));
                            }
                        }
                        other => {
                            return Err(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                other.literal()
                            ));
                        }
                    }
                }
                Token::End => break,
                other => {
                    return Err(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        other.literal()
                    ));
                }
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    fn requirement(&mut self) -> Result<Requirement, String> {
        let mut operator = None;
        let mut t = self.consume(true);
        if t == Token::Not {
            operator = Some(Operator::DoesNotExist);
            t = self.consume(true);
        }
        let Token::Identifier(key) = t else {
            return Err(format!("found '{}', expected: identifier", t.literal()));
        };
        let msgs = is_qualified_name(&key);
        if !msgs.is_empty() {
            return Err(format!(
                "<nil>: Invalid value: {}: {}",
                quote(&key),
                msgs.join("; ")
            ));
        }
        let next = self.lookahead(true);
        if next == Token::End || next == Token::Comma {
            operator = Some(operator.unwrap_or(Operator::Exists));
        }
        // `!a` stands alone; whatever follows it is the caller's problem (`!a=b` fails there).
        if let Some(op) = operator {
            return Requirement::new(&key, op, Vec::new()).map_err(aggregate);
        }
        let op = match self.consume(false) {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            other => {
                return Err(format!(
                    "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                    other.literal()
                ));
            }
        };
        let values = match op {
            Operator::In | Operator::NotIn => self.set_values()?,
            _ => self.exact_value()?,
        };
        Requirement::new(&key, op, values).map_err(aggregate)
    }

    fn set_values(&mut self) -> Result<Vec<String>, String> {
        let t = self.consume(true);
        if t != Token::OpenPar {
            return Err(format!("found '{}' expected: '('", t.literal()));
        }
        let next = self.lookahead(true);
        match next {
            Token::Identifier(_) | Token::Comma => {
                let values = self.identifiers()?;
                if self.consume(true) != Token::ClosedPar {
                    return Err(format!("found '{}', expected: ')'", next.literal()));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(true);
                Ok(vec![String::new()])
            }
            other => Err(format!(
                "found '{}', expected: ',', ')' or identifier",
                other.literal()
            )),
        }
    }

    fn identifiers(&mut self) -> Result<Vec<String>, String> {
        let mut set = std::collections::BTreeSet::new();
        loop {
            match self.consume(true) {
                Token::Identifier(v) => {
                    set.insert(v);
                    match self.lookahead(true) {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(set.into_iter().collect()),
                        other => {
                            return Err(format!(
                                "found '{}', expected: ',' or ')'",
                                other.literal()
                            ));
                        }
                    }
                }
                Token::Comma => {
                    if set.is_empty() {
                        set.insert(String::new());
                    }
                    match self.lookahead(true) {
                        Token::ClosedPar => {
                            set.insert(String::new());
                            return Ok(set.into_iter().collect());
                        }
                        Token::Comma => {
                            set.insert(String::new());
                        }
                        _ => {}
                    }
                }
                other => {
                    return Err(format!(
                        "found '{}', expected: ',', or identifier",
                        other.literal()
                    ));
                }
            }
        }
    }

    fn exact_value(&mut self) -> Result<Vec<String>, String> {
        let next = self.lookahead(true);
        if next == Token::End || next == Token::Comma {
            return Ok(vec![String::new()]);
        }
        match self.consume(true) {
            Token::Identifier(v) => Ok(vec![v]),
            other => Err(format!("found '{}', expected: identifier", other.literal())),
        }
    }
}

/// Kubernetes' aggregate error text: one message, or `[a, b]`.
fn aggregate(errs: Vec<FieldError>) -> String {
    let list: Vec<String> = errs.iter().map(ToString::to_string).collect();
    if list.len() == 1 {
        list[0].clone()
    } else {
        format!("[{}]", list.join(", "))
    }
}

// ---- field selectors ------------------------------------------------------------------------

/// One `field=value` or `field!=value` term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    pub value: String,
    /// `!=`
    pub negated: bool,
}

impl fmt::Display for FieldTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let escaped = self
            .value
            .replace('\\', "\\\\")
            .replace(',', "\\,")
            .replace('=', "\\=");
        write!(
            f,
            "{}{}{escaped}",
            self.field,
            if self.negated { "!=" } else { "=" }
        )
    }
}

/// A parsed field selector: terms that must all hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

const META_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];
const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];
const EVENT_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];
const NODE_FIELDS: &[&str] = &["metadata.name", "spec.unschedulable"];
const NAMESPACE_FIELDS: &[&str] = &["metadata.name", "status.phase"];
const SECRET_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "type"];
const SERVICE_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.clusterIP",
    "spec.type",
];
const REPLICA_SET_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "status.replicas"];
const JOB_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "status.successful"];

impl FieldSelector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses `a=b,c==d,e!=f` (values may escape `\,`, `\=` and `\\`). Fields are not checked
    /// against a kind; see [`FieldSelector::parse_for`].
    pub fn parse(input: &str) -> Result<Self, ApiError> {
        let mut parts = split_terms(input);
        parts.sort();
        let mut terms = Vec::new();
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((lhs, op, rhs)) = split_term(part) else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{input}'; can't understand '{part}'"
                )));
            };
            let value = unescape_value(rhs).map_err(ApiError::bad_request)?;
            terms.push(FieldTerm {
                field: lhs.to_string(),
                value,
                negated: op == "!=",
            });
        }
        Ok(Self { terms })
    }

    /// Parses and checks every field against the kind's supported fields (`spec.host` is read
    /// as `spec.nodeName` for pods, as Kubernetes does for old clients).
    pub fn parse_for(input: &str, kind: &KindInfo) -> Result<Self, ApiError> {
        let mut selector = Self::parse(input)?;
        let supported = Self::supported_fields(kind);
        for term in &mut selector.terms {
            if kind.group.is_empty() && kind.kind == "Pod" && term.field == "spec.host" {
                term.field = "spec.nodeName".into();
            }
            if !supported.contains(&term.field.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {}",
                    term.field
                )));
            }
        }
        Ok(selector)
    }

    /// The fields `kind` can be selected on, following Kubernetes' per-kind conversion tables.
    pub fn supported_fields(kind: &KindInfo) -> &'static [&'static str] {
        match (kind.group, kind.kind) {
            ("", "Pod") => POD_FIELDS,
            ("", "Event") => EVENT_FIELDS,
            ("", "Node") => NODE_FIELDS,
            ("", "Namespace") => NAMESPACE_FIELDS,
            ("", "Secret") => SECRET_FIELDS,
            ("", "Service") => SERVICE_FIELDS,
            ("apps", "ReplicaSet") => REPLICA_SET_FIELDS,
            ("batch", "Job") => JOB_FIELDS,
            _ => META_FIELDS,
        }
    }

    /// Whether the object (its Kubernetes JSON, or any other [`FieldSource`]) satisfies every
    /// term.
    pub fn matches(&self, kind: &KindInfo, object: &dyn FieldSource) -> bool {
        self.matches_values(|field| field_value(kind, object, field))
    }

    /// Whether the selectable values `value(field)` (as [`field_value`] computes them, e.g.
    /// precomputed once for an object many watchers look at) satisfy every term.
    pub fn matches_values<V: AsRef<str>>(&self, value: impl Fn(&str) -> V) -> bool {
        self.terms
            .iter()
            .all(|t| (value(&t.field).as_ref() == t.value) != t.negated)
    }

    /// No terms: matches every object.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The terms, sorted.
    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    /// The value `field` must equal, if a term pins it (`spec.nodeName=n1`).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == field && !t.negated)
            .map(|t| t.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

impl FromStr for FieldSelector {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Splits on unescaped commas.
fn split_terms(input: &str) -> Vec<&str> {
    if input.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in input.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&input[start..i]);
            start = i + 1;
        }
    }
    terms.push(&input[start..]);
    terms
}

/// The first operator (`!=`, `==`, `=`) in a term.
fn split_term(term: &str) -> Option<(&str, &str, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for op in ["!=", "==", "="] {
            if rest.starts_with(op) {
                return Some((&term[..i], op, &term[i + op.len()..]));
            }
        }
    }
    None
}

fn unescape_value(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut in_slash = false;
    for c in value.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                other => {
                    return Err(format!(
                        "invalid field selector: invalid escape sequence: \\{other}"
                    ));
                }
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                ));
            }
            other => out.push(other),
        }
    }
    if in_slash {
        return Err("invalid field selector: invalid escape sequence: \\".to_string());
    }
    Ok(out)
}

/// Where selectable field values are read from: a dotted path (`status.phase`, with list
/// indexes as numbers: `status.podIPs.0.ip`) rendered as a string (`true`/`false` for
/// booleans), `None` when unset.
pub trait FieldSource {
    fn lookup(&self, path: &str) -> Option<String>;
}

/// The selectable value of `field` on an object, as Kubernetes' `GetAttrs` computes it.
pub fn field_value(kind: &KindInfo, object: &dyn FieldSource, field: &str) -> String {
    match (kind.group, kind.kind, field) {
        ("", "Pod", "status.podIP") => object
            .lookup("status.podIPs.0.ip")
            .or_else(|| object.lookup("status.podIP"))
            .unwrap_or_default(),
        ("", "Pod", "spec.hostNetwork") => object.lookup(field).unwrap_or_else(|| "false".into()),
        ("", "Node", "spec.unschedulable") => {
            object.lookup(field).unwrap_or_else(|| "false".into())
        }
        ("", "Event", "source") => {
            let component = object.lookup("source.component").unwrap_or_default();
            if component.is_empty() {
                object.lookup("reportingComponent").unwrap_or_default()
            } else {
                component
            }
        }
        ("apps", "ReplicaSet", "status.replicas") => {
            object.lookup(field).unwrap_or_else(|| "0".into())
        }
        ("batch", "Job", "status.successful") => object
            .lookup("status.succeeded")
            .unwrap_or_else(|| "0".into()),
        _ => object.lookup(field).unwrap_or_default(),
    }
}

impl FieldSource for Json {
    fn lookup(&self, path: &str) -> Option<String> {
        let mut current = self;
        for part in path.split('.') {
            current = match current {
                Json::Array(items) => items.get(part.parse::<usize>().ok()?)?,
                _ => current.get(part)?,
            };
        }
        match current {
            Json::String(s) => Some(s.clone()),
            Json::Bool(b) => Some(b.to_string()),
            Json::Number(n) => Some(n.to_string()),
            Json::Null => None,
            other => Some(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_table() {
        let web = labels(&[("app", "web"), ("tier", "frontend"), ("version", "3")]);
        let db = labels(&[("app", "db")]);
        // (selector, canonical form, matches web, matches db)
        let table: &[(&str, &str, bool, bool)] = &[
            ("", "", true, true),
            ("app=web", "app=web", true, false),
            ("app==web", "app==web", true, false),
            ("app!=web", "app!=web", false, true),
            ("app in (web,db)", "app in (db,web)", true, true),
            ("app notin (web)", "app notin (web)", false, true),
            ("tier", "tier", true, false),
            ("!tier", "!tier", false, true),
            ("  app = web ,  tier  ", "app=web,tier", true, false),
            ("tier,app=web", "app=web,tier", true, false),
            (
                "app in (web, db),tier notin (backend)",
                "app in (db,web),tier notin (backend)",
                true,
                true,
            ),
            ("version>2", "version>2", true, false),
            ("version<2", "version<2", false, false),
            ("x in (in)", "x in (in)", false, false),
            ("app=", "app=", false, false),
            ("example.com/app=web", "example.com/app=web", false, false),
        ];
        for (input, canonical, m_web, m_db) in table {
            let s = LabelSelector::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(s.to_string(), *canonical, "{input}");
            assert_eq!(s.matches(&web), *m_web, "{input} on web");
            assert_eq!(s.matches(&db), *m_db, "{input} on db");
            assert_eq!(
                LabelSelector::parse(&s.to_string()).unwrap(),
                s,
                "{input} re-parses"
            );
        }
        assert!(LabelSelector::parse("").unwrap().is_empty());
        assert_eq!(
            LabelSelector::parse("app=web,x=y")
                .unwrap()
                .requires_exact_match("app"),
            Some("web")
        );
    }

    #[test]
    fn label_selector_errors_read_like_kubernetes() {
        let table = [
            ("app=web,", "found '', expected: identifier after ','"),
            (
                "app in web",
                "unable to parse requirement: found 'web' expected: '('",
            ),
            (
                "app in (web",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "a b",
                "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "app=web web",
                "found 'web', expected: ',' or 'end of string'",
            ),
            ("!app=web", "found '=', expected: ',' or 'end of string'"),
            (
                "=x",
                "found '=', expected: !, identifier, or 'end of string'",
            ),
            (
                "app=>b",
                "unable to parse requirement: found '>', expected: identifier",
            ),
            (
                "app=-web",
                "unable to parse requirement: values[0][app]: Invalid value: \"-web\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ),
            (
                "x>y",
                "unable to parse requirement: values[0]: Invalid value: \"y\": for 'Gt', 'Lt' operators, the value must be an integer",
            ),
        ];
        for (input, message) in table {
            let e = LabelSelector::parse(input).unwrap_err();
            assert_eq!(e.reason, crate::Reason::BadRequest, "{input}");
            assert_eq!(e.message, message, "{input}");
        }
        let e = LabelSelector::parse("-bad=x").unwrap_err();
        assert!(e.message.starts_with("unable to parse requirement: <nil>: Invalid value: \"-bad\": name part must consist of"), "{}", e.message);
    }

    #[test]
    fn label_selector_from_meta() {
        let sel = meta::v1::LabelSelector {
            match_labels: labels(&[("app", "web")]),
            match_expressions: vec![meta::v1::LabelSelectorRequirement {
                key: Some("tier".into()),
                operator: Some("In".into()),
                values: vec!["frontend".into(), "edge".into()],
            }],
        };
        let s = LabelSelector::from_meta(&sel).unwrap();
        assert_eq!(s.to_string(), "app=web,tier in (edge,frontend)");
        assert!(s.matches(&labels(&[("app", "web"), ("tier", "edge")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
        assert!(
            LabelSelector::from_meta(&meta::v1::LabelSelector::default())
                .unwrap()
                .is_empty()
        );
        let bad = meta::v1::LabelSelector {
            match_expressions: vec![meta::v1::LabelSelectorRequirement {
                key: Some("tier".into()),
                operator: Some("Near".into()),
                values: vec![],
            }],
            ..Default::default()
        };
        let errs = LabelSelector::from_meta(&bad).unwrap_err();
        assert_eq!(
            errs[0].to_string(),
            "matchExpressions[0].operator: Invalid value: \"Near\": not a valid selector operator"
        );
    }

    #[test]
    fn field_selector_table() {
        let pods = kinds::by_kind("v1", "Pod").unwrap();
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "shop"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.7"}]}
        });
        // (selector, canonical, matches)
        let table = [
            ("", "", true),
            ("metadata.name=web-1", "metadata.name=web-1", true),
            ("metadata.name==web-1", "metadata.name=web-1", true),
            ("metadata.name!=web-1", "metadata.name!=web-1", false),
            (
                "spec.nodeName=n1,status.phase=Running",
                "spec.nodeName=n1,status.phase=Running",
                true,
            ),
            (
                "status.phase=Running,spec.nodeName=n2",
                "spec.nodeName=n2,status.phase=Running",
                false,
            ),
            ("spec.nodeName=", "spec.nodeName=", false),
            (
                "status.nominatedNodeName=",
                "status.nominatedNodeName=",
                true,
            ),
            ("spec.hostNetwork=false", "spec.hostNetwork=false", true),
            ("status.podIP=10.0.0.7", "status.podIP=10.0.0.7", true),
            ("spec.host=n1", "spec.nodeName=n1", true),
        ];
        for (input, canonical, matches) in table {
            let s =
                FieldSelector::parse_for(input, pods).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(s.to_string(), canonical, "{input}");
            assert_eq!(s.matches(pods, &pod), matches, "{input}");
        }
        assert_eq!(
            FieldSelector::parse("spec.nodeName=n1")
                .unwrap()
                .requires_exact_match("spec.nodeName"),
            Some("n1")
        );
    }

    #[test]
    fn field_selector_per_kind_tables() {
        let nodes = kinds::by_kind("v1", "Node").unwrap();
        let node = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
        assert!(
            FieldSelector::parse_for("spec.unschedulable=true", nodes)
                .unwrap()
                .matches(nodes, &node)
        );
        assert!(
            FieldSelector::parse_for("spec.unschedulable=false", nodes)
                .unwrap()
                .matches(nodes, &json!({}))
        );
        let events = kinds::by_kind("v1", "Event").unwrap();
        let event = json!({"involvedObject": {"kind": "Pod", "name": "p"}, "reportingComponent": "kubelet", "type": "Warning"});
        for sel in [
            "involvedObject.kind=Pod,involvedObject.name=p",
            "source=kubelet",
            "type=Warning",
            "reason=",
        ] {
            assert!(
                FieldSelector::parse_for(sel, events)
                    .unwrap()
                    .matches(events, &event),
                "{sel}"
            );
        }
        let secrets = kinds::by_kind("v1", "Secret").unwrap();
        assert!(FieldSelector::parse_for("type=kubernetes.io/tls", secrets).is_ok());
        let rs = kinds::by_kind("apps/v1", "ReplicaSet").unwrap();
        assert!(
            FieldSelector::parse_for("status.replicas=0", rs)
                .unwrap()
                .matches(rs, &json!({}))
        );
        let jobs = kinds::by_kind("batch/v1", "Job").unwrap();
        assert!(
            FieldSelector::parse_for("status.successful=2", jobs)
                .unwrap()
                .matches(jobs, &json!({"status": {"succeeded": 2}}))
        );
        let namespaces = kinds::by_kind("v1", "Namespace").unwrap();
        assert!(FieldSelector::parse_for("status.phase=Active", namespaces).is_ok());
        let deployments = kinds::by_kind("apps/v1", "Deployment").unwrap();
        assert!(FieldSelector::parse_for("metadata.namespace=default", deployments).is_ok());

        let e = FieldSelector::parse_for("spec.replicas=3", deployments).unwrap_err();
        assert_eq!(e.reason, crate::Reason::BadRequest);
        assert_eq!(e.message, "field label not supported: spec.replicas");
        let e = FieldSelector::parse_for("metadata.namespace=x", nodes).unwrap_err();
        assert_eq!(e.message, "field label not supported: metadata.namespace");
    }

    #[test]
    fn field_selector_syntax() {
        assert_eq!(
            FieldSelector::parse("foo").unwrap_err().message,
            "invalid selector: 'foo'; can't understand 'foo'"
        );
        let s = FieldSelector::parse(r"metadata.name=a\,b\=c").unwrap();
        assert_eq!(s.terms()[0].value, "a,b=c");
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c");
        assert_eq!(
            FieldSelector::parse(r"metadata.name=a\x")
                .unwrap_err()
                .message,
            r"invalid field selector: invalid escape sequence: \x"
        );
        assert_eq!(
            FieldSelector::parse("metadata.name=a=b")
                .unwrap_err()
                .message,
            "invalid field selector: unescaped character in value: 61"
        );
        assert!(FieldSelector::parse(",,").unwrap().is_empty());
    }
}
