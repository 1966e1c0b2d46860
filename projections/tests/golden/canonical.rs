//! A canonical byte encoding of a read model's state, for digests that are stable across runs.
//!
//! The read models keep `imbl::HashMap`s, whose iteration (and so postcard) order follows a
//! per-map random hasher: the same state encodes differently in every process. This encoder
//! follows serde's data model like postcard does (fields in declaration order, no field names,
//! variants by index), but writes every map's entries sorted by their encoded key. So a digest
//! changes when a field is added, removed, reordered or retyped, or when `apply` folds
//! differently, and not when only the hasher's seed does.
//!
//! What it cannot fix: a sequence whose order is itself random (an `imbl::HashSet`). The golden
//! test encodes several fresh folds and fails if they disagree.

use std::fmt;

use serde::Serialize;
use serde::ser;

pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Canon(Vec::new());
    value
        .serialize(&mut out)
        .expect("every read model's state serializes");
    out.0
}

struct Canon(Vec<u8>);

impl Canon {
    fn write_len(&mut self, n: usize) {
        self.0.extend_from_slice(&(n as u64).to_le_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.write_len(b.len());
        self.0.extend_from_slice(b);
    }
}

#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

type Done = Result<(), Error>;

/// Integers are written at their full width, so `u32` and `u64` fields encode differently.
macro_rules! fixed {
    ($($method:ident: $ty:ty),*) => {
        $(fn $method(self, v: $ty) -> Done {
            self.0.extend_from_slice(&v.to_le_bytes());
            Ok(())
        })*
    };
}

impl<'a> ser::Serializer for &'a mut Canon {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Map<'a>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fixed!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128);

    // As postcard: types with two forms (times, addresses) take their compact one.
    fn is_human_readable(&self) -> bool {
        false
    }
    fn serialize_bool(self, v: bool) -> Done {
        self.0.push(v as u8);
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Done {
        self.serialize_u32(v.to_bits())
    }
    fn serialize_f64(self, v: f64) -> Done {
        self.serialize_u64(v.to_bits())
    }
    fn serialize_char(self, v: char) -> Done {
        self.serialize_u32(v as u32)
    }
    fn serialize_str(self, v: &str) -> Done {
        self.bytes(v.as_bytes());
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Done {
        self.bytes(v);
        Ok(())
    }
    fn serialize_none(self) -> Done {
        self.0.push(0);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Done {
        self.0.push(1);
        value.serialize(self)
    }
    fn serialize_unit(self) -> Done {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Done {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, index: u32, _: &'static str) -> Done {
        self.serialize_u32(index)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Done {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        v: &T,
    ) -> Done {
        self.0.extend_from_slice(&index.to_le_bytes());
        v.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Seq<'a>, Error> {
        // The length is patched in at the end: serde may not know it up front.
        let at = self.0.len();
        self.write_len(0);
        Ok(Seq {
            out: self,
            at,
            count: 0,
        })
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Error> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Error> {
        self.0.extend_from_slice(&index.to_le_bytes());
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Map<'a>, Error> {
        Ok(Map {
            out: self,
            entries: Vec::new(),
            key: None,
        })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Error> {
        self.0.extend_from_slice(&index.to_le_bytes());
        Ok(self)
    }
}

pub struct Seq<'a> {
    out: &'a mut Canon,
    at: usize,
    count: u64,
}

impl ser::SerializeSeq for Seq<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Done {
        self.count += 1;
        v.serialize(&mut *self.out)
    }
    fn end(self) -> Done {
        self.out.0[self.at..self.at + 8].copy_from_slice(&self.count.to_le_bytes());
        Ok(())
    }
}

pub struct Map<'a> {
    out: &'a mut Canon,
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    key: Option<Vec<u8>>,
}

impl ser::SerializeMap for Map<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Done {
        self.key = Some(encode(k));
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Done {
        let key = self
            .key
            .take()
            .ok_or_else(|| Error("a map value without a key".into()))?;
        self.entries.push((key, encode(v)));
        Ok(())
    }
    fn end(mut self) -> Done {
        self.entries.sort();
        self.out.write_len(self.entries.len());
        for (k, v) in &self.entries {
            self.out.0.extend_from_slice(k);
            self.out.0.extend_from_slice(v);
        }
        Ok(())
    }
}

/// Tuples, structs and variants: their elements in order, nothing around them.
macro_rules! in_order {
    ($($trait:ident :: $method:ident ($($name:ident)?)),*) => {
        $(impl ser::$trait for &mut Canon {
            type Ok = ();
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, $($name: &'static str,)? v: &T) -> Done {
                $(let _ = $name;)?
                v.serialize(&mut **self)
            }
            fn end(self) -> Done {
                Ok(())
            }
        })*
    };
}

in_order!(
    SerializeTuple::serialize_element(),
    SerializeTupleStruct::serialize_field(),
    SerializeTupleVariant::serialize_field(),
    SerializeStruct::serialize_field(key),
    SerializeStructVariant::serialize_field(key)
);
