//! Unit tests beyond the conformance data: options, offsets, and a
//! deterministic "never panics" sweep.

use super::*;

fn env() -> Vec<(String, String)> {
    [("A", "x y"), ("E", ""), ("K", "한국어")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn last_entry_wins() {
    let e: Vec<(String, String)> = vec![("A".into(), "1".into()), ("A".into(), "2".into())];
    assert_eq!(e.lookup("A"), Some("2"));
    assert_eq!(CaseInsensitiveEnv(&e).lookup("a"), Some("2"));
    assert_eq!(e.lookup("a"), None);
}

#[test]
fn error_messages_and_offsets() {
    let lx = Lexer::default();
    let e = env();
    let err = |w: &str| lx.process_word(w, &e).unwrap_err();
    let x = err("ab${Z:?}");
    assert_eq!(
        (x.message.as_str(), x.offset),
        ("Z: is not allowed to be unset", 2)
    );
    let x = err("${E:?}");
    assert_eq!(x.message, "E: is not allowed to be empty");
    let x = err("${Z?boom $K}");
    assert_eq!(x.message, "Z: boom 한국어");
    let x = err("한${A:=b}");
    assert_eq!(
        (x.message.as_str(), x.offset),
        ("unsupported modifier (:=) in substitution", 6)
    );
    let x = err("${A=b}");
    assert_eq!(x.message, "unsupported modifier (=) in substitution");
    assert_eq!(err("a${A").message, "syntax error: missing '}'");
    assert_eq!(err("a${A").offset, 1);
    assert_eq!(err("${}").message, "syntax error: bad substitution");
    assert_eq!(err("x 'abc").offset, 2);
    assert_eq!(err("x \"abc").offset, 2);
    assert!(err("${A#\\a}").message.starts_with("invalid pattern"));
}

#[test]
fn options() {
    let e = env();
    let lx = Lexer::default().skip_unset_env(true);
    assert_eq!(
        lx.process_word("$Z ${Z} ${Z:-a} $A", &e).unwrap().value,
        "$Z ${Z} ${Z:-a} x y"
    );
    let lx = Lexer::default().raw_quotes(true);
    assert_eq!(lx.process_word("'a'\"b\"", &e).unwrap().value, "'a'\"b\"");
    let lx = Lexer::default().raw_escapes(true);
    assert_eq!(lx.process_word("a\\$b", &e).unwrap().value, "a\\$b");
    let lx = Lexer::default().skip_process_quotes(true);
    assert_eq!(lx.process_word("'$A'", &e).unwrap().value, "'x y'");
}

#[test]
fn backtick_escape() {
    let e = env();
    let lx = Lexer::new('`');
    let v = |w: &str| lx.process_word(w, &e).unwrap().value;
    assert_eq!(v("`$A"), "$A");
    assert_eq!(v("\\$A"), "\\x y");
    assert_eq!(v("\"`\"`$A\""), "\"$A");
    assert_eq!(v("${A#`*}"), "x y");
    // Like BuildKit with `\/`, the replacement keeps its escape.
    assert_eq!(v("${A/ /`/}"), "x`/y");
}

#[test]
fn words_quirks() {
    let e = env();
    let lx = Lexer::default();
    let w = |s: &str| lx.process_words(s, &e).unwrap();
    assert_eq!(w("a \"\" b"), vec!["a", "b"]);
    assert_eq!(w("$A\"$A\""), vec!["x", "yx y"]);
    assert_eq!(w("  "), Vec::<String>::new());
    assert_eq!(w("a\\ b"), vec!["a b"]);
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let e = env();
    let lx = Lexer::default();
    let ok = format!("{}x{}", "${Z:-".repeat(100), "}".repeat(100));
    assert_eq!(lx.process_word(&ok, &e).unwrap().value, "x");
    let deep = format!("{}x{}", "${Z:-".repeat(100_000), "}".repeat(100_000));
    let err = lx.process_word(&deep, &e).unwrap_err();
    assert_eq!(err.message, "too many nested variable expansions");
    assert!(lx.process_words(&"${A:-\"".repeat(50_000), &e).is_err());
}

/// Small deterministic LCG so the sweep needs no dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn never_panics() {
    const ALPHABET: &[char] = &[
        '$', '{', '}', ':', '-', '+', '?', '#', '%', '/', '\\', '\'', '"', 'a', 'b', '_', '1', ' ',
        '한', '`', '*',
    ];
    let e = env();
    let lexers = [
        Lexer::new('\\'),
        Lexer::new('`'),
        Lexer::new('\\').skip_unset_env(true).raw_quotes(true),
    ];
    let mut rng = Lcg(0x5eed);
    let mut s = String::new();
    for i in 0..50_000 {
        s.clear();
        let len = rng.next() % 24;
        for _ in 0..len {
            s.push(ALPHABET[(rng.next() % ALPHABET.len() as u64) as usize]);
        }
        let lx = lexers[i % lexers.len()];
        if let Err(err) = lx.process_word(&s, &e) {
            assert!(
                err.offset <= s.len() && s.is_char_boundary(err.offset),
                "{s:?}"
            );
        }
        let _ = lx.process_words(&s, &e);
    }
}
