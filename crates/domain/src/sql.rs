//! Diesel column types for the domain's ids and enums (feature `sql`), so storage's rows carry
//! typed values and a stored spelling that no longer parses is an error, never a default.

use crate::alerts::{Metric, Severity};
use crate::{GatewayId, MachineId, MachineStatus, Role, UserId};
use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::{Text, Uuid as SqlUuid};
use std::io::Write;
use uuid::Uuid;

macro_rules! text_column {
    ($type:ty, $parse:expr) => {
        impl ToSql<Text, Pg> for $type {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                out.write_all(self.as_str().as_bytes())?;
                Ok(serialize::IsNull::No)
            }
        }

        impl FromSql<Text, Pg> for $type {
            fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
                let text = std::str::from_utf8(value.as_bytes())?;
                let parse: fn(&str) -> Option<$type> = $parse;
                parse(text).ok_or_else(|| {
                    format!("unknown {} {text:?} in the database", stringify!($type)).into()
                })
            }
        }
    };
}

text_column!(MachineStatus, |text| text.parse().ok());
text_column!(Role, |text| text.parse().ok());
text_column!(Metric, Metric::parse);
text_column!(Severity, Severity::parse);

macro_rules! uuid_column {
    ($type:ty) => {
        impl ToSql<SqlUuid, Pg> for $type {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <Uuid as ToSql<SqlUuid, Pg>>::to_sql(self.as_uuid(), out)
            }
        }

        impl FromSql<SqlUuid, Pg> for $type {
            fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
                <Uuid as FromSql<SqlUuid, Pg>>::from_sql(value).map(Self::from)
            }
        }
    };
}

uuid_column!(MachineId);
uuid_column!(UserId);
uuid_column!(GatewayId);
