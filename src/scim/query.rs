//! List and search parameters (RFC 7644 §3.4.2, §3.4.3): `filter`, 1-based `startIndex`,
//! `count`, and `attributes`/`excludedAttributes`, from a query string or a SearchRequest body.
//!
//! Paging is by position in a stable order (creation time, then id), which is what Okta's
//! import and Entra's matching expect. `sortBy` is ignored (`sort.supported` is false).

use serde_json::{Map, Value};

use super::error::{ScimError, ScimType};
use super::eval::member;
use super::filter::{self, Filter, Path};
use super::schema::{MAX_RESULTS, SEARCH_REQUEST, list_response};

/// Which attributes a response carries.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    pub attributes: Vec<Path>,
    pub excluded: Vec<Path>,
}

/// A list or search request.
#[derive(Debug, Clone)]
pub struct ListParams {
    pub filter: Option<Filter>,
    /// 1-based.
    pub start_index: usize,
    pub count: usize,
    pub projection: Projection,
}

fn pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, ScimError> {
    serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| ScimError::invalid_syntax(format!("the query string is malformed: {e}")))
}

fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn paths(list: &str, name: &str) -> Result<Vec<Path>, ScimError> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            filter::parse_path(p)
                .map_err(|e| ScimError::invalid_value(format!("{name}: '{p}': {e}")))
        })
        .collect()
}

fn parse_filter(text: &str) -> Result<Option<Filter>, ScimError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    filter::parse(text)
        .map(Some)
        .map_err(|e| ScimError::bad_request(ScimType::InvalidFilter, format!("filter: {e}")))
}

/// `startIndex` below 1 means 1 and a negative `count` means 0 (RFC 7644 §3.4.2.4); `count`
/// above the maximum is lowered to it.
fn paging(start: Option<i64>, count: Option<i64>) -> (usize, usize) {
    let start = usize::try_from(start.unwrap_or(1).max(1)).unwrap_or(1);
    let count = count.map_or(MAX_RESULTS, |c| {
        usize::try_from(c.max(0)).unwrap_or(0).min(MAX_RESULTS)
    });
    (start, count)
}

fn integer(text: &str, name: &str) -> Result<i64, ScimError> {
    text.trim()
        .parse()
        .map_err(|_| ScimError::invalid_value(format!("'{name}' must be an integer")))
}

impl Projection {
    /// `attributes`/`excludedAttributes` of a GET on one resource.
    pub fn from_query(raw: Option<&str>) -> Result<Projection, ScimError> {
        let pairs = pairs(raw)?;
        Ok(Projection {
            attributes: get(&pairs, "attributes")
                .map(|a| paths(a, "attributes"))
                .transpose()?
                .unwrap_or_default(),
            excluded: get(&pairs, "excludedAttributes")
                .map(|a| paths(a, "excludedAttributes"))
                .transpose()?
                .unwrap_or_default(),
        })
    }

    /// Applies the projection to a rendered resource; `id` and `schemas` always stay.
    pub fn apply(&self, doc: &mut Value) {
        let Value::Object(map) = doc else { return };
        if !self.attributes.is_empty() {
            let mut kept = Map::new();
            for (k, v) in map.iter() {
                if ["id", "schemas"].contains(&k.as_str()) {
                    kept.insert(k.clone(), v.clone());
                    continue;
                }
                let wanted: Vec<&Path> = self
                    .attributes
                    .iter()
                    .filter(|p| p.attr.name.eq_ignore_ascii_case(k))
                    .collect();
                if wanted.is_empty() {
                    continue;
                }
                if wanted.iter().any(|p| p.attr.sub.is_none()) {
                    kept.insert(k.clone(), v.clone());
                } else {
                    let subs: Vec<&str> = wanted
                        .iter()
                        .filter_map(|p| p.attr.sub.as_deref())
                        .collect();
                    kept.insert(k.clone(), only_subs(v, &subs));
                }
            }
            *map = kept;
        }
        for p in &self.excluded {
            let Some(key) = map
                .keys()
                .find(|k| k.eq_ignore_ascii_case(&p.attr.name))
                .cloned()
            else {
                continue;
            };
            if key == "id" || key == "schemas" {
                continue;
            }
            match &p.attr.sub {
                None => {
                    map.remove(&key);
                }
                Some(sub) => drop_sub(map.get_mut(&key), sub),
            }
        }
    }
}

fn only_subs(value: &Value, subs: &[&str]) -> Value {
    match value {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| subs.iter().any(|s| s.eq_ignore_ascii_case(k)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|i| only_subs(i, subs)).collect()),
        other => other.clone(),
    }
}

fn drop_sub(value: Option<&mut Value>, sub: &str) {
    match value {
        Some(Value::Object(m)) => m.retain(|k, _| !k.eq_ignore_ascii_case(sub)),
        Some(Value::Array(items)) => items.iter_mut().for_each(|i| drop_sub(Some(i), sub)),
        _ => {}
    }
}

impl ListParams {
    /// From a GET's query string.
    pub fn from_query(raw: Option<&str>) -> Result<ListParams, ScimError> {
        let pairs = pairs(raw)?;
        let start = get(&pairs, "startIndex")
            .map(|v| integer(v, "startIndex"))
            .transpose()?;
        let count = get(&pairs, "count")
            .map(|v| integer(v, "count"))
            .transpose()?;
        let (start_index, count) = paging(start, count);
        Ok(ListParams {
            filter: get(&pairs, "filter")
                .map(parse_filter)
                .transpose()?
                .flatten(),
            start_index,
            count,
            projection: Projection::from_query(raw)?,
        })
    }

    /// From a `POST …/.search` body.
    pub fn from_search(body: &Value) -> Result<ListParams, ScimError> {
        if !body.is_object() {
            return Err(ScimError::invalid_syntax(
                "a SearchRequest must be a JSON object",
            ));
        }
        if let Some(schemas) = member(body, "schemas")
            && !schemas.as_array().is_some_and(|s| {
                s.iter().any(|x| {
                    x.as_str()
                        .is_some_and(|x| x.eq_ignore_ascii_case(SEARCH_REQUEST))
                })
            })
        {
            return Err(ScimError::invalid_syntax(format!(
                "'schemas' must list '{SEARCH_REQUEST}'"
            )));
        }
        let int = |name: &str| match member(body, name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| ScimError::invalid_value(format!("'{name}' must be an integer"))),
        };
        let list = |name: &str| -> Result<Vec<Path>, ScimError> {
            match member(body, name) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => {
                    let mut out = Vec::new();
                    for item in items {
                        let s = item.as_str().ok_or_else(|| {
                            ScimError::invalid_value(format!("'{name}' must list strings"))
                        })?;
                        out.extend(paths(s, name)?);
                    }
                    Ok(out)
                }
                Some(Value::String(s)) => paths(s, name),
                Some(_) => Err(ScimError::invalid_value(format!(
                    "'{name}' must be an array of strings"
                ))),
            }
        };
        let filter = match member(body, "filter") {
            None | Some(Value::Null) => None,
            Some(Value::String(f)) => parse_filter(f)?,
            Some(_) => return Err(ScimError::invalid_value("'filter' must be a string")),
        };
        let (start_index, count) = paging(int("startIndex")?, int("count")?);
        Ok(ListParams {
            filter,
            start_index,
            count,
            projection: Projection {
                attributes: list("attributes")?,
                excluded: list("excludedAttributes")?,
            },
        })
    }

    /// The ListResponse for the resources that matched, in order.
    pub fn page(&self, matching: Vec<Value>) -> Value {
        self.page_of(matching, |r| r)
    }

    /// The ListResponse for `matching`, rendering only the resources on the page: without a
    /// filter, a page costs its `count`, not the organization's size.
    pub fn page_of<T>(&self, matching: Vec<T>, render: impl Fn(T) -> Value) -> Value {
        let total = matching.len();
        let resources = matching
            .into_iter()
            .skip(self.start_index - 1)
            .take(self.count)
            .map(|item| {
                let mut r = render(item);
                self.projection.apply(&mut r);
                r
            })
            .collect();
        list_response(total, self.start_index, resources)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paging_follows_the_rfc() {
        let p = ListParams::from_query(Some("startIndex=0&count=-3")).unwrap();
        assert_eq!((p.start_index, p.count), (1, 0));
        let p = ListParams::from_query(Some("COUNT=5000")).unwrap();
        assert_eq!(p.count, MAX_RESULTS);
        assert!(ListParams::from_query(Some("count=x")).is_err());
        let e = ListParams::from_query(Some("filter=userName%20eqq%20%22x%22")).unwrap_err();
        assert_eq!(e.scim_type, Some(ScimType::InvalidFilter));
        let page = ListParams::from_query(Some("startIndex=2&count=1"))
            .unwrap()
            .page(vec![
                json!({"id": "a"}),
                json!({"id": "b"}),
                json!({"id": "c"}),
            ]);
        assert_eq!(page["totalResults"], 3);
        assert_eq!(page["itemsPerPage"], 1);
        assert_eq!(page["Resources"], json!([{"id": "b"}]));
    }

    #[test]
    fn attributes_keep_and_excluded_attributes_drop() {
        let doc = json!({"id": "1", "schemas": ["s"], "userName": "u", "displayName": "d",
                         "name": {"givenName": "g", "familyName": "f"}, "meta": {}});
        let mut a = doc.clone();
        Projection::from_query(Some("attributes=userName,name.givenName"))
            .unwrap()
            .apply(&mut a);
        assert_eq!(
            a,
            json!({"id": "1", "schemas": ["s"], "userName": "u", "name": {"givenName": "g"}})
        );
        let mut e = doc.clone();
        Projection::from_query(Some("excludedAttributes=displayName,id,name.familyName"))
            .unwrap()
            .apply(&mut e);
        assert_eq!(
            e,
            json!({"id": "1", "schemas": ["s"], "userName": "u", "name": {"givenName": "g"}, "meta": {}})
        );
    }
}
