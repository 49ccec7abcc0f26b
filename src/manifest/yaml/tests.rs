//! Unit tests of the YAML reader.
use super::*;

fn p(s: &str) -> Node {
    parse(&Arc::from("t.yaml"), s).expect("parses")
}

fn get<'a>(n: &'a Node, key: &str) -> &'a Node {
    match &n.value {
        Value::Map(m) => {
            &m.iter()
                .find(|(k, _)| k.value == Value::Str(key.into()))
                .expect(key)
                .1
        }
        _ => panic!("not a map"),
    }
}

#[test]
fn locations_are_one_based_line_and_column() {
    let n = p("a: 1\nb:\n  c: x\n");
    assert_eq!(get(&n, "a").loc.to_string(), "t.yaml:1:4");
    assert_eq!(get(get(&n, "b"), "c").loc.to_string(), "t.yaml:3:6");
}

#[test]
fn core_schema_scalars() {
    let n = p("a: 5\nb: '5'\nc: true\nd: 16:9\ne: ~\nf: 1.5\ng: -1\n");
    assert_eq!(get(&n, "a").value, Value::Int(5));
    assert_eq!(get(&n, "b").value, Value::Str("5".into()));
    assert_eq!(get(&n, "c").value, Value::Bool(true));
    assert_eq!(get(&n, "d").value, Value::Str("16:9".into()));
    assert_eq!(get(&n, "e").value, Value::Null);
    assert_eq!(get(&n, "f").value, Value::Float(1.5));
    assert_eq!(get(&n, "g").value, Value::Int(-1));
}

#[test]
fn zero_padded_numbers_keep_their_zeros() {
    let n = p("a: 007\nb: -01\nc: 0\nd: 0.5\ne: 10\n");
    assert_eq!(get(&n, "a").value, Value::Str("007".into()));
    assert_eq!(get(&n, "b").value, Value::Str("-01".into()));
    assert_eq!(get(&n, "c").value, Value::Int(0));
    assert_eq!(get(&n, "d").value, Value::Float(0.5));
    assert_eq!(get(&n, "e").value, Value::Int(10));
}

#[test]
fn anchors_aliases_and_merge_keys() {
    let n = p("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\nlist: [*b, *b]\n");
    let o = get(&n, "other");
    assert_eq!(get(o, "x").value, Value::Int(1));
    assert_eq!(get(o, "y").value, Value::Int(3));
    let Value::Seq(l) = &get(&n, "list").value else {
        panic!()
    };
    assert_eq!(l.len(), 2);
}

#[test]
fn merge_of_a_list_first_wins() {
    let n = p("a: &a {x: 1}\nb: &b {x: 2, z: 9}\nc:\n  <<: [*a, *b]\n");
    let c = get(&n, "c");
    assert_eq!(get(c, "x").value, Value::Int(1));
    assert_eq!(get(c, "z").value, Value::Int(9));
}

#[test]
fn a_key_given_twice_is_an_error_naming_both_places() {
    let e = parse(
        &Arc::from("t.yaml"),
        "version: 1\njobs:\n  - prompt: a\njobs:\n  - prompt: b\n",
    )
    .expect_err("two `jobs:`");
    let said = e.to_string();
    assert!(
        said.starts_with("t.yaml:4:1:") && said.contains("`jobs`") && said.contains("first at t.yaml:2:1"),
        "{said}"
    );
    let e = parse(&Arc::from("t.yaml"), "- {prompt: a, seed: 1, prompt: b}\n").expect_err("two prompts");
    assert!(e.to_string().contains("`prompt` is given twice"), "{e}");
    // Repeated merge keys, and a key a merge also brings, are not duplicates.
    let n = p("a: &a {x: 1}\nb: &b {y: 2}\nc:\n  <<: *a\n  <<: *b\n  x: 3\n");
    assert_eq!(get(get(&n, "c"), "x").value, Value::Int(3));
    assert_eq!(get(get(&n, "c"), "y").value, Value::Int(2));
}

#[test]
fn a_second_document_is_an_error_and_an_empty_one_is_not() {
    let e = parse(
        &Arc::from("t.yaml"),
        "version: 1\njobs: []\n---\njobs:\n  - prompt: b\n",
    )
    .expect_err("a second document");
    let said = e.to_string();
    assert!(
        said.starts_with("t.yaml:4:") && said.contains("second YAML document"),
        "{said}"
    );
    for fine in ["a: 1\n---\n", "a: 1\n...\n", "---\na: 1\n---\n...\n"] {
        assert_eq!(get(&p(fine), "a").value, Value::Int(1), "{fine:?}");
    }
}

#[test]
fn alias_bomb_is_refused() {
    let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let prev = format!("*a{}", i - 1);
        s.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    let e = parse(&Arc::from("t.yaml"), &s).expect_err("bomb");
    assert!(e.to_string().contains("more than"), "{e}");
}

#[test]
fn long_string_alias_bomb_fails_fast_on_the_byte_cap() {
    // 1 MB aliased 10 times over 4 levels would be 10 GB of text.
    let mut s = format!("a0: &a0 \"{}\"\n", "x".repeat(1_000_000));
    for i in 1..=4 {
        let prev = format!("*a{}", i - 1);
        s.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    let t = std::time::Instant::now();
    let e = parse(&Arc::from("t.yaml"), &s).expect_err("bomb");
    assert!(e.to_string().contains("MiB of text"), "{e}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn merge_of_80k_keys_is_linear() {
    let mut s = String::from("base: &b\n");
    for i in 0..80_000 {
        s.push_str(&format!("  k{i}: {i}\n"));
    }
    s.push_str("other:\n  <<: *b\n  k5: own\n");
    let t = std::time::Instant::now();
    let n = p(&s);
    let o = get(&n, "other");
    let Value::Map(m) = &o.value else { panic!() };
    assert_eq!(m.len(), 80_000);
    assert_eq!(get(o, "k5").value, Value::Str("own".into()));
    assert_eq!(get(o, "k79999").value, Value::Int(79_999));
    // Debug build; the quadratic merge took minutes.
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn deep_nesting_is_refused() {
    let s = "- ".repeat(100_000) + "x\n";
    assert!(parse(&Arc::from("t.yaml"), &s).is_err());
    let s = "[".repeat(200) + &"]".repeat(200);
    assert!(parse(&Arc::from("t.yaml"), &s).is_err());
}

#[test]
fn syntax_errors_on_any_prefix_of_odd_text_render_without_panicking() {
    let text = "jobs:\n\t- prompt: «Nöte»: a cät 🐈\n  - [\"x\", 'y: z\n   k: {a: [1,\n".repeat(3)
        + &"é".repeat(300)
        + ": x: y\n";
    for (i, _) in text.char_indices() {
        if let Err(e) = parse(&Arc::from("t.yaml"), &text[..i]) {
            let _ = e.to_string();
        }
    }
}

#[test]
fn syntax_error_has_a_location() {
    let e = parse(&Arc::from("t.yaml"), "a: [1, 2\nb: c\n").expect_err("bad");
    assert!(e.to_string().starts_with("t.yaml:"), "{e}");
}
