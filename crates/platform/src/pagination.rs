//! Offset paging of list endpoints: the `limit`/`offset` parameters and the `pagination`
//! object every list answer carries.

use crate::error::FieldError;
use serde::{Deserialize, Serialize};

/// `limit`/`offset` query parameters of list endpoints.
#[derive(Debug, Deserialize)]
pub struct Page {
    /// 1..=500, default 50.
    pub limit: Option<i64>,
    /// 0 or more, default 0.
    pub offset: Option<i64>,
}

impl Page {
    /// Checks the bounds, pushing every problem onto `errors`; returns (limit, offset).
    pub fn check(&self, errors: &mut Vec<FieldError>) -> (i64, i64) {
        let limit = self.limit.unwrap_or(50);
        if !(1..=500).contains(&limit) {
            errors.push(FieldError::parameter("limit", "must be 1 to 500").with_value(limit));
        }
        let offset = self.offset.unwrap_or(0);
        if offset < 0 {
            errors.push(FieldError::parameter("offset", "must be 0 or more").with_value(offset));
        }
        (limit, offset)
    }
}

/// Where a page sits in the whole list.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Pagination {
    pub limit: i64,
    pub offset: i64,
    /// Rows matching the filters, on every page.
    pub total: i64,
    /// Whether a page after this one has rows.
    pub has_more: bool,
}

impl Pagination {
    /// The page at `offset` of `limit` rows showing `shown` of `total`.
    pub fn of(limit: i64, offset: i64, shown: usize, total: i64) -> Self {
        Self {
            limit,
            offset,
            total,
            has_more: offset + (shown as i64) < total,
        }
    }
}
