//! Canonical JSON (RFC 8785 style): object keys sorted by UTF-16 code units, no
//! insignificant whitespace, numbers in their shortest round-trip form.
//!
//! Hashes and signatures are taken over this form so that two nodes that serialise
//! the same value differently (key order, `1.0` vs `1`) still agree on the bytes.
//! One deliberate departure from RFC 8785: integers beyond 2^53 are written exactly
//! rather than rounded through an IEEE double, because rounding would make two
//! different inputs hash the same.

use serde::Serialize;
use serde::ser::{self, Impossible};
use serde_json::Value;
use std::borrow::Cow;
use std::cmp::Ordering;

/// The canonical form of `value` as a string.
pub fn to_string(value: &Value) -> String {
    String::from_utf8(to_vec(value)).expect("canonical JSON is UTF-8")
}

/// The canonical form of `value` as bytes.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_value(value, &mut out);
    out
}

/// The canonical form of anything serialisable: the same bytes as
/// `to_vec(&serde_json::to_value(value)?)`, written directly, without building the
/// `Value` tree first (on a receipt that tree was most of the signing cost besides
/// the signature itself).
pub fn to_vec_of<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    value.serialize(Canon { out: &mut out })?;
    Ok(out)
}

/// An object written field by field by code that knows its keys, given in canonical
/// order (ASCII keys in byte order; checked in debug builds). Faster than
/// [`to_vec_of`] for a struct on a hot path, which would sort its fields each time.
pub struct SortedObject<'a> {
    out: &'a mut Vec<u8>,
    last: Option<&'static str>,
}

impl<'a> SortedObject<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        SortedObject { out, last: None }
    }

    /// Writes `"key":value`; `key` must sort after the previous one.
    pub fn field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        self.key(key);
        value.serialize(Canon { out: self.out })
    }

    /// Writes `"key":{...}`, an object whose fields `fields` writes in canonical
    /// order: for a struct on a hot path, which [`SortedObject::field`] would write
    /// through serde, sorting its fields each time.
    pub fn object(
        &mut self,
        key: &'static str,
        fields: impl FnOnce(&mut SortedObject) -> Result<(), CanonicalError>,
    ) -> Result<(), CanonicalError> {
        self.key(key);
        let mut inner = SortedObject::new(self.out);
        fields(&mut inner)?;
        inner.finish();
        Ok(())
    }

    /// Writes `"key":` and leaves the value to the caller (who writes the rest of the
    /// object itself); `key` must sort after the previous one.
    pub(crate) fn key(&mut self, key: &'static str) {
        debug_assert!(
            key.is_ascii() && self.last.is_none_or(|l| l < key),
            "{key} given out of canonical order"
        );
        // The keys are the code's own names: written as they are, without the escape
        // scan a string from outside needs (checked in debug builds).
        debug_assert!(!needs_escape(key.as_bytes()), "{key:?} would need escaping");
        if self.last.is_some() {
            self.out.push(b',');
        }
        self.last = Some(key);
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    pub fn finish(self) {
        self.out.push(b'}');
    }
}

/// Why a value has no canonical JSON form: what serde_json's `to_value` refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CanonicalError(String);

impl ser::Error for CanonicalError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        CanonicalError(msg.to_string())
    }
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                write_u64(u, out);
            } else if let Some(i) = n.as_i64() {
                write_i64(i, out);
            } else if let Some(f) = n.as_f64() {
                write_f64(f, out);
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            // serde_json's map iterates in byte order (a BTreeMap), which is the
            // canonical order when every key is ASCII: then nothing is sorted.
            if in_canonical_order(map.keys().map(String::as_str)) {
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_string(k, out);
                    out.push(b':');
                    write_value(v, out);
                }
            } else {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by(|a, b| key_order(a.0, b.0));
                for (i, (k, v)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_string(k, out);
                    out.push(b':');
                    write_value(v, out);
                }
            }
            out.push(b'}');
        }
    }
}

/// RFC 8785 orders keys by their UTF-16 code units. That is byte order except
/// between characters outside the Basic Multilingual Plane and those from U+E000
/// up, so ASCII keys compare as bytes.
fn key_order(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.cmp(b)
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

/// Whether `keys` are ASCII and strictly ascending already.
fn in_canonical_order<'a>(keys: impl Iterator<Item = &'a str>) -> bool {
    let mut prev: Option<&str> = None;
    for k in keys {
        if !k.is_ascii() || prev.is_some_and(|p| p >= k) {
            return false;
        }
        prev = Some(k);
    }
    true
}

fn write_u64(u: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(u).as_bytes());
}

fn write_i64(i: i64, out: &mut Vec<u8>) {
    out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
}

fn write_f64(f: f64, out: &mut Vec<u8>) {
    if f.is_finite() {
        // ECMAScript Number.prototype.toString, as RFC 8785 requires.
        out.extend_from_slice(ryu_js::Buffer::new().format(f).as_bytes());
    } else {
        // serde_json makes NaN and the infinities null.
        out.extend_from_slice(b"null");
    }
}

/// A JSON string, escaped exactly as serde_json (and RFC 8785) escape: '"', '\\',
/// and control characters (as \b \f \n \r \t or lower-case \u00xx), nothing else.
pub(crate) fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    // Most strings (hashes, ids, names) need no escape: check eight bytes at a time,
    // then copy.
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether any byte of `bytes` is a control character, '"' or '\\' (may say yes
/// for a string that needs no escape, never no for one that does).
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Some byte of `x` is below `n` (n <= 128): the classic SWAR test.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS != 0;
    let equal = |x: u64, b: u8| below(x ^ (ONES * u64::from(b)), 1);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let x = u64::from_ne_bytes(c.try_into().expect("8 bytes"));
        if below(x, 0x20) || equal(x, b'"') || equal(x, b'\\') {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// An object's key with what sorts it fast: for an ASCII key (the usual case)
/// canonical order is byte order, and its first eight bytes decide most comparisons.
struct Key {
    text: Cow<'static, str>,
    /// The first eight bytes, big-endian, zero-padded; meaningful when `ascii`.
    prefix: u64,
    ascii: bool,
}

impl Key {
    fn new(text: Cow<'static, str>) -> Key {
        let mut head = [0u8; 8];
        let n = text.len().min(8);
        head[..n].copy_from_slice(&text.as_bytes()[..n]);
        Key {
            prefix: u64::from_be_bytes(head),
            ascii: text.is_ascii(),
            text,
        }
    }

    fn order(&self, other: &Key) -> Ordering {
        if self.ascii && other.ascii {
            // Zero padding sorts a shorter key first, as byte order does (keys with
            // a NUL byte fall through to the full comparison when prefixes tie).
            self.prefix
                .cmp(&other.prefix)
                .then_with(|| self.text.as_bytes().cmp(other.text.as_bytes()))
        } else {
            key_order(&self.text, &other.text)
        }
    }
}

/// The serializer behind [`to_vec_of`]: values straight into canonical bytes.
/// Objects (structs and maps) write their values into a scratch buffer first and are
/// then assembled in key order.
struct Canon<'a> {
    out: &'a mut Vec<u8>,
}

/// An object being written: each value's bytes in `buf`, found by `entries`.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    buf: Vec<u8>,
    entries: Vec<(Key, std::ops::Range<usize>)>,
    /// The key of the entry whose value comes next (maps).
    pending: Option<String>,
    /// `{"variant": {...}}`: the variant wrapping the object.
    variant: Option<&'static str>,
}

impl<'a> Object<'a> {
    fn new(out: &'a mut Vec<u8>, len: usize, variant: Option<&'static str>) -> Self {
        Object {
            out,
            buf: Vec::with_capacity(len * 24),
            entries: Vec::with_capacity(len),
            pending: None,
            variant,
        }
    }

    fn value<T: Serialize + ?Sized>(
        &mut self,
        key: Cow<'static, str>,
        value: &T,
    ) -> Result<(), CanonicalError> {
        let start = self.buf.len();
        value.serialize(Canon { out: &mut self.buf })?;
        self.entries.push((Key::new(key), start..self.buf.len()));
        Ok(())
    }

    fn finish(mut self) -> Result<(), CanonicalError> {
        if let Some(v) = self.variant {
            self.out.push(b'{');
            write_string(v, self.out);
            self.out.push(b':');
        }
        self.entries.sort_by(|a, b| a.0.order(&b.0));
        // serde_json keeps the last of two equal keys; so does this.
        self.entries.dedup_by(|later, earlier| {
            if later.0.text == earlier.0.text {
                std::mem::swap(later, earlier);
                true
            } else {
                false
            }
        });
        self.out.push(b'{');
        for (i, (k, range)) in self.entries.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write_string(&k.text, self.out);
            self.out.push(b':');
            self.out.extend_from_slice(&self.buf[range.clone()]);
        }
        self.out.push(b'}');
        if self.variant.is_some() {
            self.out.push(b'}');
        }
        Ok(())
    }
}

/// An array being written.
struct Array<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    /// `{"variant": [...]}`: the variant wrapping the array.
    variant: bool,
}

impl<'a> Array<'a> {
    fn new(out: &'a mut Vec<u8>, variant: Option<&'static str>) -> Self {
        if let Some(v) = variant {
            out.push(b'{');
            write_string(v, out);
            out.push(b':');
        }
        out.push(b'[');
        Array {
            out,
            first: true,
            variant: variant.is_some(),
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        value.serialize(Canon { out: self.out })
    }

    fn finish(self) -> Result<(), CanonicalError> {
        self.out.push(b']');
        if self.variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

impl<'a> ser::Serializer for Canon<'a> {
    type Ok = ();
    type Error = CanonicalError;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = Array<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), CanonicalError> {
        self.out.extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), CanonicalError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), CanonicalError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), CanonicalError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), CanonicalError> {
        write_i64(v, self.out);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), CanonicalError> {
        match i64::try_from(v) {
            Ok(v) => self.serialize_i64(v),
            Err(_) => self.serialize_u128(u128::try_from(v).map_err(|_| number_out_of_range())?),
        }
    }
    fn serialize_u8(self, v: u8) -> Result<(), CanonicalError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), CanonicalError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), CanonicalError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), CanonicalError> {
        write_u64(v, self.out);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), CanonicalError> {
        self.serialize_u64(u64::try_from(v).map_err(|_| number_out_of_range())?)
    }
    fn serialize_f32(self, v: f32) -> Result<(), CanonicalError> {
        // serde_json's `to_value` widens an f32 to f64.
        self.serialize_f64(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<(), CanonicalError> {
        write_f64(v, self.out);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), CanonicalError> {
        write_string(v.encode_utf8(&mut [0; 4]), self.out);
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), CanonicalError> {
        write_string(v, self.out);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), CanonicalError> {
        let mut a = Array::new(self.out, None);
        for b in v {
            a.element(b)?;
        }
        a.finish()
    }
    fn serialize_none(self) -> Result<(), CanonicalError> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CanonicalError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), CanonicalError> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), CanonicalError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
    ) -> Result<(), CanonicalError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        self.out.push(b'{');
        write_string(variant, self.out);
        self.out.push(b':');
        value.serialize(Canon { out: self.out })?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Array<'a>, CanonicalError> {
        Ok(Array::new(self.out, None))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Array<'a>, CanonicalError> {
        Ok(Array::new(self.out, None))
    }
    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Array<'a>, CanonicalError> {
        Ok(Array::new(self.out, None))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Array<'a>, CanonicalError> {
        Ok(Array::new(self.out, Some(variant)))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Object<'a>, CanonicalError> {
        Ok(Object::new(self.out, len.unwrap_or(8), None))
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Object<'a>, CanonicalError> {
        Ok(Object::new(self.out, len, None))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Object<'a>, CanonicalError> {
        Ok(Object::new(self.out, len, Some(variant)))
    }
}

fn number_out_of_range() -> CanonicalError {
    CanonicalError("number out of range".into())
}

/// serde's four sequence traits, all an [`Array`]'s elements: `$trait` and the name
/// of its element method.
macro_rules! array_impl {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Array<'_> {
            type Ok = ();
            type Error = CanonicalError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
                self.element(value)
            }
            fn end(self) -> Result<(), CanonicalError> {
                self.finish()
            }
        }
    )*};
}

array_impl!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CanonicalError> {
        self.pending = Some(key.serialize(KeySerializer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
        let key = self
            .pending
            .take()
            .ok_or_else(|| CanonicalError("a map value without a key".into()))?;
        self.value(Cow::Owned(key), value)
    }
    fn end(self) -> Result<(), CanonicalError> {
        self.finish()
    }
}

/// serde's two struct traits, both an [`Object`]'s fields.
macro_rules! struct_impl {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Object<'_> {
            type Ok = ();
            type Error = CanonicalError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), CanonicalError> {
                self.value(Cow::Borrowed(key), value)
            }
            fn end(self) -> Result<(), CanonicalError> {
                self.finish()
            }
        }
    )*};
}

struct_impl!(SerializeStruct, SerializeStructVariant);

/// Map keys as serde_json's `to_value` takes them: strings, and numbers, booleans
/// and characters as their text; anything else is refused.
struct KeySerializer;

/// A float map key as serde_json's `to_value` writes it (finite ones only); rare
/// enough to ask serde_json itself.
fn float_key<F: Serialize>(v: &F) -> Result<String, CanonicalError> {
    struct One<'a, F>(&'a F);
    impl<F: Serialize> Serialize for One<'_, F> {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use ser::SerializeMap;
            let mut m = s.serialize_map(Some(1))?;
            m.serialize_entry(self.0, &())?;
            m.end()
        }
    }
    match serde_json::to_value(One(v)) {
        Ok(Value::Object(m)) => m
            .into_iter()
            .next()
            .map(|(k, _)| k)
            .ok_or_else(key_must_be_a_string),
        Ok(_) => Err(key_must_be_a_string()),
        Err(e) => Err(CanonicalError(e.to_string())),
    }
}

fn key_must_be_a_string() -> CanonicalError {
    CanonicalError("key must be a string".into())
}

impl ser::Serializer for KeySerializer {
    type Ok = String;
    type Error = CanonicalError;
    type SerializeSeq = Impossible<String, CanonicalError>;
    type SerializeTuple = Impossible<String, CanonicalError>;
    type SerializeTupleStruct = Impossible<String, CanonicalError>;
    type SerializeTupleVariant = Impossible<String, CanonicalError>;
    type SerializeMap = Impossible<String, CanonicalError>;
    type SerializeStruct = Impossible<String, CanonicalError>;
    type SerializeStructVariant = Impossible<String, CanonicalError>;

    fn serialize_bool(self, v: bool) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_i16(self, v: i16) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_i32(self, v: i32) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_i128(self, v: i128) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_u16(self, v: u16) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_u128(self, v: u128) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_f32(self, v: f32) -> Result<String, CanonicalError> {
        float_key(&v)
    }
    fn serialize_f64(self, v: f64) -> Result<String, CanonicalError> {
        float_key(&v)
    }
    fn serialize_char(self, v: char) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<String, CanonicalError> {
        Ok(v.to_string())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<String, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_none(self) -> Result<String, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<String, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit(self) -> Result<String, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<String, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _i: u32,
        variant: &'static str,
    ) -> Result<String, CanonicalError> {
        Ok(variant.to_string())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<String, CanonicalError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _i: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<String, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _i: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, CanonicalError> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _i: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, CanonicalError> {
        Err(key_must_be_a_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_and_whitespace_dropped() {
        let v: Value =
            serde_json::from_str(r#"{ "b": 1, "a": [ true, null ], "c": {"z":1,"y":2} }"#).unwrap();
        assert_eq!(to_string(&v), r#"{"a":[true,null],"b":1,"c":{"y":2,"z":1}}"#);
    }

    #[test]
    fn numbers_take_their_shortest_form() {
        assert_eq!(to_string(&json!(1.0)), "1");
        assert_eq!(to_string(&json!(-0.0)), "0");
        assert_eq!(to_string(&json!(1e21)), "1e+21");
        assert_eq!(to_string(&json!(0.1)), "0.1");
        assert_eq!(to_string(&json!(u64::MAX)), "18446744073709551615");
        assert_eq!(to_string(&json!(-5)), "-5");
    }

    #[test]
    fn strings_escape_only_what_they_must() {
        assert_eq!(to_string(&json!("é\n\u{1f}\"/")), "\"é\\n\\u001f\\\"/\"");
    }

    /// A float as a map key (serde_json accepts finite ones).
    #[derive(PartialEq)]
    struct FloatKey(f64);
    impl Eq for FloatKey {}
    impl std::hash::Hash for FloatKey {
        fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
            self.0.to_bits().hash(h)
        }
    }
    impl serde::Serialize for FloatKey {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_f64(self.0)
        }
    }

    #[test]
    fn serialising_directly_gives_the_bytes_of_the_value() {
        let values = [
            json!(null),
            json!([
                1,
                -2,
                3.5,
                1e300,
                -0.0,
                1.0,
                u64::MAX,
                i64::MIN,
                "x",
                true,
                false,
                null
            ]),
            json!({"b": {"y": [1, {"k": "v"}], "x": "\u{0}\u{8}\u{c}\t\r\n\"\\/\u{7f}"}, "a": 1}),
            json!({"\u{fb01}": 1, "\u{1f600}": 2, "Z": 3, "é": 4, "": 5}),
            json!({"runtime": 1, "runtime_version": 2, "runtime\u{0}": 3, "runtimf": 4, "a": 5, "abcdefgh": 6, "abcdefg": 7}),
            json!({"user":"alice","action":"score","values":[1,2,3,4,5],"note":"a hundred bytes of params roughly"}),
        ];
        for v in values {
            assert_eq!(to_vec_of(&v).unwrap(), to_vec(&v), "{v}");
        }
        #[derive(serde::Serialize)]
        enum E {
            Unit,
            New(u8),
            Tuple(u8, String),
            Struct { b: u8, a: Option<f32> },
        }
        #[derive(serde::Serialize)]
        struct S {
            z: Vec<E>,
            a: std::collections::HashMap<u32, bool>,
            f: f64,
            c: char,
            t: (i8, u128),
            n: u8,
        }
        let floats: std::collections::BTreeMap<String, std::collections::HashMap<u8, f64>> =
            [("k".to_string(), [(1, 0.5)].into_iter().collect())]
                .into_iter()
                .collect();
        assert_eq!(
            to_vec_of(&floats).unwrap(),
            to_vec(&serde_json::to_value(&floats).unwrap())
        );
        let float_keyed: Vec<std::collections::HashMap<FloatKey, u8>> =
            vec![[(FloatKey(1.5), 1)].into_iter().collect()];
        assert_eq!(
            to_vec_of(&float_keyed).unwrap(),
            to_vec(&serde_json::to_value(&float_keyed).unwrap())
        );
        let s = S {
            z: vec![
                E::Unit,
                E::New(1),
                E::Tuple(2, "t".into()),
                E::Struct { b: 3, a: Some(0.1) },
            ],
            a: [(10, true), (2, false)].into_iter().collect(),
            f: f64::NAN,
            c: '\u{1f600}',
            t: (-1, 7),
            n: 9,
        };
        let expected = to_vec(&serde_json::to_value(&s).unwrap());
        assert_eq!(to_vec_of(&s).unwrap(), expected);
    }

    #[test]
    fn every_character_is_escaped_as_serde_json_does_wherever_it_falls() {
        for c in (0u8..0x80).map(char::from).chain(['é', '\u{2028}', '\u{1f600}']) {
            for at in 0..17 {
                let mut text: String = "abcdefghijklmnopq".into();
                text.replace_range(at..at + 1, c.encode_utf8(&mut [0; 4]));
                let mut out = Vec::new();
                write_string(&text, &mut out);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    serde_json::to_string(&text).unwrap()
                );
            }
        }
    }

    #[test]
    fn keys_sort_by_utf16_units() {
        // U+1F600 (surrogates D83D..) sorts before U+FB01 in UTF-16, after it in UTF-8.
        let v = json!({"\u{fb01}": 1, "\u{1f600}": 2});
        assert_eq!(to_string(&v), "{\"\u{1f600}\":2,\"\u{fb01}\":1}");
    }
}
