//! The part of Sparkplug B's payload schema (`sparkplug_b.proto`, Eclipse Tahu; Sparkplug 3.0
//! §6.4) that scalar readings need, written as prost types by hand: no protoc, no build
//! script. Metadata, property sets, data sets, templates and extensions are not declared, so
//! prost skips them unread: a hostile payload cannot make us walk a deep structure. Shared by
//! mqtt-bridge (the host application) and the simulator (an edge node); behind the
//! `sparkplug` feature so the other crates do not build prost.

/// `org.eclipse.tahu.protobuf.Payload`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Payload {
    /// Milliseconds since the epoch, when the message was sent.
    #[prost(uint64, optional, tag = "1")]
    pub timestamp: Option<u64>,
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
    /// 0..=255, one counter per edge node (absent on NDEATH and commands).
    #[prost(uint64, optional, tag = "3")]
    pub seq: Option<u64>,
    #[prost(string, optional, tag = "4")]
    pub uuid: Option<String>,
}

/// `Payload.Metric`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    /// Present in births; DATA may carry only the alias.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(uint64, optional, tag = "2")]
    pub alias: Option<u64>,
    /// Milliseconds since the epoch, when the value was acquired.
    #[prost(uint64, optional, tag = "3")]
    pub timestamp: Option<u64>,
    /// A [`DataType`] number; DATA may leave it out (the birth's holds).
    #[prost(uint32, optional, tag = "4")]
    pub datatype: Option<u32>,
    #[prost(bool, optional, tag = "5")]
    pub is_historical: Option<bool>,
    #[prost(bool, optional, tag = "6")]
    pub is_transient: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    pub is_null: Option<bool>,
    #[prost(oneof = "Value", tags = "10, 11, 12, 13, 14, 15, 16")]
    pub value: Option<Value>,
}

/// `Metric.value`, the scalar cases (data sets, templates and extensions are skipped).
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    /// Int8/16/32 (two's complement) and UInt8/16/32.
    #[prost(uint32, tag = "10")]
    Int(u32),
    /// Int64 (two's complement), UInt64 and DateTime.
    #[prost(uint64, tag = "11")]
    Long(u64),
    #[prost(float, tag = "12")]
    Float(f32),
    #[prost(double, tag = "13")]
    Double(f64),
    #[prost(bool, tag = "14")]
    Boolean(bool),
    #[prost(string, tag = "15")]
    String(String),
    #[prost(bytes = "vec", tag = "16")]
    Bytes(Vec<u8>),
}

/// `DataType` numbers of the scalar types (Sparkplug 3.0 §6.4.16).
pub mod data_type {
    pub const INT8: u32 = 1;
    pub const INT16: u32 = 2;
    pub const INT32: u32 = 3;
    pub const INT64: u32 = 4;
    pub const UINT8: u32 = 5;
    pub const UINT16: u32 = 6;
    pub const UINT32: u32 = 7;
    pub const UINT64: u32 = 8;
    pub const FLOAT: u32 = 9;
    pub const DOUBLE: u32 = 10;
    pub const BOOLEAN: u32 = 11;
}

impl Metric {
    /// The value as a number, read by its data type (from the message or, for DATA that
    /// leaves it out, the birth's); `None` for a null, a non-numeric type or no value.
    pub fn number(&self, birth_type: Option<u32>) -> Option<f64> {
        use data_type::*;
        if self.is_null == Some(true) {
            return None;
        }
        let kind = self.datatype.or(birth_type);
        let number = match (&self.value, kind) {
            (Some(Value::Int(v)), Some(INT8)) => f64::from(*v as u8 as i8),
            (Some(Value::Int(v)), Some(INT16)) => f64::from(*v as u16 as i16),
            (Some(Value::Int(v)), Some(INT32)) => f64::from(*v as i32),
            (Some(Value::Int(v)), Some(UINT8 | UINT16 | UINT32) | None) => f64::from(*v),
            (Some(Value::Long(v)), Some(INT64) | None) => *v as i64 as f64,
            (Some(Value::Long(v)), Some(UINT64)) => *v as f64,
            (Some(Value::Float(v)), Some(FLOAT) | None) => f64::from(*v),
            (Some(Value::Double(v)), Some(DOUBLE) | None) => *v,
            // Booleans, strings, bytes, date-times, and a value that contradicts its type.
            _ => return None,
        };
        number.is_finite().then_some(number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn metric(value: Value, datatype: Option<u32>) -> Metric {
        Metric {
            value: Some(value),
            datatype,
            ..Metric::default()
        }
    }

    #[test]
    fn signed_types_travel_in_unsigned_fields() {
        use data_type::*;
        // Sign-extended to 32 bits, or not: both read as -1.
        assert_eq!(
            metric(Value::Int(u32::MAX), Some(INT8)).number(None),
            Some(-1.0)
        );
        assert_eq!(
            metric(Value::Int(0xFF), Some(INT8)).number(None),
            Some(-1.0)
        );
        assert_eq!(
            metric(Value::Int(0xFFFE), Some(INT16)).number(None),
            Some(-2.0)
        );
        assert_eq!(
            metric(Value::Int(u32::MAX), Some(UINT32)).number(None),
            Some(4294967295.0)
        );
        assert_eq!(
            metric(Value::Long(u64::MAX), Some(INT64)).number(None),
            Some(-1.0)
        );
        // DATA without a type takes the birth's.
        assert_eq!(
            metric(Value::Int(u32::MAX), None).number(Some(INT32)),
            Some(-1.0)
        );
        assert_eq!(metric(Value::Float(1.5), None).number(None), Some(1.5));
        assert_eq!(
            metric(Value::Boolean(true), Some(BOOLEAN)).number(None),
            None
        );
        assert_eq!(
            metric(Value::Double(f64::NAN), Some(DOUBLE)).number(None),
            None
        );
        let null = Metric {
            is_null: Some(true),
            ..metric(Value::Double(1.0), Some(DOUBLE))
        };
        assert_eq!(null.number(None), None);
    }

    #[test]
    fn a_payload_round_trips_and_unknown_fields_are_skipped() {
        let payload = Payload {
            timestamp: Some(1_700_000_000_000),
            metrics: vec![Metric {
                name: Some("Temperature".into()),
                alias: Some(7),
                ..metric(Value::Double(71.5), Some(data_type::DOUBLE))
            }],
            seq: Some(3),
            uuid: None,
        };
        let mut bytes = payload.encode_to_vec();
        // A `body` (field 5, bytes) we do not declare.
        bytes.extend_from_slice(&[0x2A, 0x02, 0xDE, 0xAD]);
        assert_eq!(Payload::decode(bytes.as_slice()).unwrap(), payload);
        assert!(Payload::decode(&[0xFF, 0xFF, 0xFF][..]).is_err());
    }
}
