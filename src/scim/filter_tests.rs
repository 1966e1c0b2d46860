use super::*;
use proptest::prelude::*;

fn eq(name: &str, value: &str) -> Filter {
    Filter::Compare {
        path: Path::attr(AttrPath::simple(name)),
        op: CompareOp::Eq,
        value: CompValue::Str(value.into()),
    }
}

#[test]
fn parses_the_lookups_identity_providers_send() {
    assert_eq!(
        parse(r#"userName eq "bjensen""#).unwrap(),
        eq("userName", "bjensen")
    );
    assert_eq!(
        parse(r#"  externalId EQ "a\"b"  "#).unwrap(),
        eq("externalId", "a\"b")
    );
    let entra = parse(r#"emails[type eq "work"].value eq "a@b.c""#).unwrap();
    let Filter::Compare { path, .. } = entra else {
        panic!("not a comparison")
    };
    assert_eq!(path.attr.name, "emails");
    assert_eq!(path.sub.as_deref(), Some("value"));
    assert_eq!(path.filter.as_deref(), Some(&eq("type", "work")));
}

#[test]
fn and_binds_tighter_than_or_and_not_needs_parentheses() {
    let f = parse(r#"a eq "1" or b eq "2" and c eq "3""#).unwrap();
    assert_eq!(
        f,
        Filter::Or(
            Box::new(eq("a", "1")),
            Box::new(Filter::And(Box::new(eq("b", "2")), Box::new(eq("c", "3"))))
        )
    );
    let g = parse(r#"(a eq "1" or b eq "2") and not(c eq "3")"#).unwrap();
    assert_eq!(
        g,
        Filter::And(
            Box::new(Filter::Or(Box::new(eq("a", "1")), Box::new(eq("b", "2")))),
            Box::new(Filter::Not(Box::new(eq("c", "3"))))
        )
    );
}

#[test]
fn urn_prefixed_names_and_literals() {
    let f = parse("urn:ietf:params:scim:schemas:core:2.0:User:name.givenName pr").unwrap();
    assert_eq!(
        f,
        Filter::Present(Path::attr(AttrPath {
            urn: Some("urn:ietf:params:scim:schemas:core:2.0:User".into()),
            name: "name".into(),
            sub: Some("givenName".into()),
        }))
    );
    for (text, value) in [
        ("active eq TRUE", CompValue::Bool(true)),
        ("active eq false", CompValue::Bool(false)),
        ("title eq null", CompValue::Null),
        (
            "n gt -1.5e3",
            CompValue::Number(Number::from_f64(-1500.0).unwrap()),
        ),
        ("n le 7", CompValue::Number(7.into())),
        (r#"title eq "\u00e9\n""#, CompValue::Str("é\n".into())),
    ] {
        let Filter::Compare { value: got, .. } = parse(text).unwrap() else {
            panic!("{text}")
        };
        assert_eq!(got, value, "{text}");
    }
}

#[test]
fn errors_say_what_and_where() {
    let cases = [
        (r#"userName eqq "x""#, 9, "expected an operator"),
        (r#"userName eq "x"#, 12, "unterminated string"),
        (r#"userName eq x"#, 12, "expected a value"),
        (r#"(userName eq "x""#, 16, "expected ')'"),
        (r#"userName eq "x")"#, 15, "expected 'and', 'or' or the end"),
        (
            r#"userName eq "x" and"#,
            16,
            "expected 'and', 'or' or the end",
        ),
        ("", 0, "expected an attribute name"),
        ("1abc pr", 0, "is not an attribute name"),
        ("foo:bar pr", 0, "is not a schema URN"),
        (r#"userName eq "\x""#, 12, "invalid string literal"),
        ("userName", 8, "expected a space and an operator"),
    ];
    for (text, position, message) in cases {
        let err = parse(text).unwrap_err();
        assert_eq!(err.position, position, "{text}: {err}");
        assert!(err.message.contains(message), "{text}: {err}");
    }
    let deep = format!("{}a pr{}", "(".repeat(40), ")".repeat(40));
    assert!(parse(&deep).unwrap_err().message.contains("nested deeper"));
    assert!(parse(&"a".repeat(MAX_LEN + 1)).is_err());
}

#[test]
fn patch_paths() {
    let p = parse_path(r#"members[value eq "usr_1"]"#).unwrap();
    assert!(p.attr.is("members"));
    assert_eq!(p.filter.as_deref(), Some(&eq("value", "usr_1")));
    assert!(p.sub.is_none());
    let p = parse_path("name.givenName").unwrap();
    assert_eq!(p.attr.sub.as_deref(), Some("givenName"));
    assert!(parse_path("name.givenName[type eq \"x\"]").is_err());
    assert!(parse_path("active eq true").is_err());
    assert!(parse_path(r#"emails[type eq "work"].value"#).is_ok());
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("userName".to_owned()),
        Just("emails".to_owned()),
        Just("not".to_owned()),
        Just("$ref".to_owned()),
        "[a-zA-Z][a-zA-Z0-9_-]{0,8}",
    ]
}

fn attr_path() -> impl Strategy<Value = AttrPath> {
    (
        proptest::option::of(Just(
            "urn:ietf:params:scim:schemas:core:2.0:User".to_owned(),
        )),
        name(),
        proptest::option::of(name()),
    )
        .prop_map(|(urn, name, sub)| AttrPath { urn, name, sub })
}

fn comp_value() -> impl Strategy<Value = CompValue> {
    prop_oneof![
        any::<String>().prop_map(CompValue::Str),
        any::<bool>().prop_map(CompValue::Bool),
        Just(CompValue::Null),
        any::<i64>().prop_map(|n| CompValue::Number(n.into())),
        // Quarters print and parse back exactly.
        (-4_000_000i32..4_000_000)
            .prop_map(|q| CompValue::Number(Number::from_f64(f64::from(q) / 4.0).unwrap())),
    ]
}

fn op() -> impl Strategy<Value = CompareOp> {
    proptest::sample::select(CompareOp::ALL.map(|(_, op)| op).to_vec())
}

fn filter() -> impl Strategy<Value = Filter> {
    let leaf = prop_oneof![
        (attr_path(), op(), comp_value()).prop_map(|(attr, op, value)| Filter::Compare {
            path: Path::attr(attr),
            op,
            value
        }),
        attr_path().prop_map(|a| Filter::Present(Path::attr(a))),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
            inner.clone().prop_map(|a| Filter::Not(Box::new(a))),
            (name(), inner.clone()).prop_map(|(n, f)| Filter::Has {
                attr: AttrPath::simple(&n),
                filter: Box::new(f)
            }),
            (name(), inner, name(), op(), comp_value()).prop_map(|(n, f, sub, op, value)| {
                Filter::Compare {
                    path: Path {
                        attr: AttrPath::simple(&n),
                        filter: Some(Box::new(f)),
                        sub: Some(sub),
                    },
                    op,
                    value,
                }
            }),
        ]
    })
}

proptest! {
    #[test]
    fn printed_filters_parse_back_to_the_same_tree(f in filter()) {
        let printed = f.to_string();
        prop_assert_eq!(parse(&printed).unwrap(), f, "{}", printed);
    }

    #[test]
    fn parsing_never_panics(text in any::<String>()) {
        let _ = parse(&text);
        let _ = parse_path(&text);
    }

    #[test]
    fn parsing_filter_like_text_never_panics(
        text in r#"[a-zA-Z.:\[\]()" \\0-9-]{0,60}"#
    ) {
        if let Ok(f) = parse(&text) {
            let _ = crate::scim::eval::matches(&f, &serde_json::json!({"a": [{"b": 1}]}));
            prop_assert_eq!(parse(&f.to_string()).unwrap(), f);
        }
        let _ = parse_path(&text);
    }
}
