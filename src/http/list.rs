//! The list pipeline every collection endpoint shares: parse `limit`/`cursor`/`filter`/`sort`,
//! open the cursor (bound to the organization, the endpoint, the filter and the sort), and turn
//! the matching items into one page with a sealed `next_cursor`.

use super::filter::{Filter, Sort};
use super::pagination::{CursorPosition, Page, PageParams, paginate};
use super::problem::Problem;
use crate::state::AppState;

/// An empty query value (`?filter=`) means the parameter was not given.
pub fn nonempty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// What one collection endpoint accepts.
pub struct ListSpec {
    /// Binds cursors to the endpoint, e.g. `devices`.
    pub resource: &'static str,
    pub filter_keys: &'static [&'static str],
    pub sort_fields: &'static [&'static str],
    pub default_sort: &'static str,
}

/// A parsed list request.
pub struct Listing {
    pub filter: Filter,
    pub sort: Sort,
    pub limit: usize,
    /// Where the previous page ended.
    pub after: Option<CursorPosition>,
    binding: String,
    org_id: String,
    /// The cursor as sent, for [`Listing::normalized`].
    cursor: Option<String>,
}

impl Listing {
    /// Parses the raw query values; a cursor issued for another organization, endpoint, filter
    /// or sort is refused.
    pub fn parse(
        state: &AppState,
        org_id: &str,
        spec: &ListSpec,
        limit: &Option<String>,
        cursor: &Option<String>,
        filter: &Option<String>,
        sort: &Option<String>,
    ) -> Result<Listing, Problem> {
        // An empty `limit=` is not an integer: a 400 like any other (the schema says integer).
        let page = PageParams::from_query(limit.as_deref(), nonempty(cursor))?;
        let filter = Filter::parse(nonempty(filter).unwrap_or(""), spec.filter_keys)?;
        let sort = Sort::parse(
            nonempty(sort).unwrap_or(spec.default_sort),
            spec.sort_fields,
        )?;
        let binding = format!(
            "{}|{}|{}",
            spec.resource,
            filter.canonical(),
            sort.canonical()
        );
        let after = match &page.cursor {
            Some(c) => Some(state.cursor_key().open(c, org_id, &binding)?),
            None => None,
        };
        Ok(Listing {
            filter,
            sort,
            limit: page.limit,
            after,
            binding,
            org_id: org_id.to_owned(),
            cursor: page.cursor.clone(),
        })
    }

    /// The query in a normal form: requests that differ only in how they spell the same
    /// filter, sort or limit get the same text (a key for cached answers).
    pub fn normalized(&self) -> String {
        format!(
            "{}|{}|{}",
            self.binding,
            self.limit,
            self.cursor.as_deref().unwrap_or("")
        )
    }

    /// The cursor that continues after `position`.
    pub fn seal(&self, state: &AppState, position: &CursorPosition) -> String {
        state
            .cursor_key()
            .seal(&self.org_id, &self.binding, position)
    }

    /// Sorts `items` by (sort key, id) in the requested direction and returns the page after
    /// the cursor. Sort keys must compare as strings in the intended order (zero-pad numbers).
    pub fn page<T, V>(
        &self,
        state: &AppState,
        items: Vec<T>,
        sort_key: impl Fn(&T) -> String,
        id: impl Fn(&T) -> &str,
        view: impl FnMut(T) -> V,
    ) -> Page<V> {
        let mut keyed: Vec<(String, T)> = items.into_iter().map(|t| (sort_key(&t), t)).collect();
        keyed.sort_by(|a, b| (&a.0, id(&a.1)).cmp(&(&b.0, id(&b.1))));
        if self.sort.descending {
            keyed.reverse();
        }
        let (items, next) = paginate(
            keyed,
            self.after.as_ref(),
            self.limit,
            |(key, t)| CursorPosition {
                sort_key: key.clone(),
                id: id(t).to_owned(),
            },
            self.sort.descending,
        );
        Page {
            items: items.into_iter().map(|(_, t)| t).map(view).collect(),
            next_cursor: next.map(|pos| self.seal(state, &pos)),
        }
    }
}
