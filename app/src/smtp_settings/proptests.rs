//! Property tests of the form parsers: whatever an admin (or an attacker) types, parsing never
//! panics, and an accepted value never shows a CR, LF or NUL — it goes into SMTP commands, mail
//! headers and HTTP requests — and reads back as itself.
//!
//! Each property runs 25,000 cases (100,000 in all) in a normal `cargo test`. Set
//! `MAILROOM_PROPTEST_CASES` to run more (or fewer) cases per property, e.g.
//! `MAILROOM_PROPTEST_CASES=1000000 cargo test -p app --features ssr --lib proptests`.
//!
//! Inputs mix arbitrary Unicode, strings of characters that matter to these parsers, concatenated
//! near-valid pieces, valid-shaped values, and valid-shaped values with one such character
//! inserted. Valid-shaped values must be accepted, and each property checks that a fair share of
//! all cases is accepted and a fair share rejected, so a parser that refuses everything (or
//! nothing) fails.

use super::types::{FromMailbox, SmtpHost, SmtpPort, TokenUrl};
use proptest::{
    collection::vec,
    prelude::*,
    sample::{Index, select},
    test_runner::{Config, TestCaseError, TestRunner},
};
use std::sync::atomic::{AtomicUsize, Ordering};

const DEFAULT_CASES: u32 = 25_000;

/// Characters that mean something to one of the parsers, to a mail header or to a URL, and
/// Unicode that trims, folds or maps to ASCII.
const INTERESTING: &str = "\r\n\0\t\u{b}\u{c}\u{7f}\u{85}\u{2028}\u{200d}\u{200b}\u{301}\u{feff}\u{3000}\u{a0}\
    <>@:[]/. ,;\"\\%#?=&-_+()aZ09éßı\u{212a}\u{ff0e}\u{3002}\u{ff1a}\u{ff20}Ж字\u{1f4e7}";

fn interesting() -> impl Strategy<Value = char> + Clone {
    select(INTERESTING.chars().collect::<Vec<_>>())
}

/// One input, and whether it was built to be valid (and so must be accepted).
#[derive(Debug, Clone)]
struct Input {
    text: String,
    shaped: bool,
}

fn cases() -> u32 {
    match std::env::var("MAILROOM_PROPTEST_CASES") {
        Ok(text) => text.trim().parse().expect("MAILROOM_PROPTEST_CASES must be a number of cases"),
        Err(_) => DEFAULT_CASES,
    }
}

fn regex(pattern: &str) -> BoxedStrategy<String> {
    proptest::string::string_regex(pattern).expect("a valid test regex").boxed()
}

fn unshaped(text: String) -> Input {
    Input { text, shaped: false }
}

/// The mix every property runs on. `shaped` must only produce values the parser accepts;
/// `pieces` are fragments separated by '|'.
fn inputs(
    shaped: BoxedStrategy<String>,
    near: BoxedStrategy<String>,
    pieces: &'static str,
) -> impl Strategy<Value = Input> {
    prop_oneof![
        2 => any::<String>().prop_map(unshaped),
        2 => vec(interesting(), 0..24).prop_map(|chars| unshaped(chars.into_iter().collect())),
        2 => vec(select(pieces.split('|').collect::<Vec<_>>()), 0..8).prop_map(|pieces| unshaped(pieces.concat())),
        2 => near.prop_map(unshaped),
        3 => shaped.clone().prop_map(|text| Input { text, shaped: true }),
        2 => (shaped, any::<Index>(), interesting()).prop_map(|(text, at, ch)| {
            let mut chars: Vec<char> = text.chars().collect();
            chars.insert(at.index(chars.len() + 1), ch);
            unshaped(chars.into_iter().collect())
        }),
    ]
}

/// Runs `property` on every input; it answers whether the input was accepted. Fails on the first
/// (shrunk) counterexample, on a panic, or when too few inputs were accepted or rejected.
fn check(name: &str, strategy: impl Strategy<Value = Input>, property: impl Fn(&Input) -> Result<bool, TestCaseError>) {
    let accepted = AtomicUsize::new(0);
    let total = AtomicUsize::new(0);
    let config = Config { cases: cases(), failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(&strategy, |input| {
        let ok = property(&input)?;
        prop_assert!(ok || !input.shaped, "a valid-shaped input was rejected: {:?}", input.text);
        total.fetch_add(1, Ordering::Relaxed);
        accepted.fetch_add(usize::from(ok), Ordering::Relaxed);
        Ok(())
    });
    if let Err(err) = outcome {
        panic!("{name}: {err}");
    }
    let (accepted, total) = (accepted.into_inner(), total.into_inner());
    let share = accepted as f64 / total.max(1) as f64;
    eprintln!("{name}: {accepted} of {total} inputs accepted ({:.0}%)", share * 100.0);
    assert!((0.15..=0.85).contains(&share), "{name}: {accepted} of {total} accepted; the inputs miss the parser");
}

fn has_line_breaking_char(text: &str) -> bool {
    text.contains(['\r', '\n', '\0'])
}

const MAILBOX_PIECES: &str = "Mailroom|Ops Team|José|名前|mail|no-reply|a.b|first+tag|@|example|.com|.|..|<|>| |\
    ,|;|\"|\r\n|\n|\0|\t|[127.0.0.1]|xn--bcher-kva|-|_|=?utf-8?q?x?=|\u{301}|\u{200d}";

fn mailbox_address() -> BoxedStrategy<String> {
    regex(
        "[a-zA-Z0-9_+-]{1,10}(\\.[a-zA-Z0-9_+-]{1,6}){0,2}@\
         [a-zA-Z0-9]{1,8}(-[a-zA-Z0-9]{1,8})?(\\.[a-zA-Z0-9]{1,8}(-[a-zA-Z0-9]{1,8})?){0,2}\\.[a-zA-Z]{2,6}",
    )
}

fn valid_mailbox() -> BoxedStrategy<String> {
    let name = regex("[\\p{L}\\p{N}]([\\p{L}\\p{N} ]{0,12}[\\p{L}\\p{N}])?");
    prop_oneof![
        (regex(" {0,2}"), mailbox_address(), regex(" {0,2}")).prop_map(|(a, address, b)| format!("{a}{address}{b}")),
        (name, mailbox_address(), regex(" {0,2}")).prop_map(|(name, address, b)| format!("{name} <{address}>{b}")),
    ]
    .boxed()
}

fn near_mailbox() -> BoxedStrategy<String> {
    regex("[A-Za-z0-9 .,;\"é]{0,10}<?[a-z0-9._+@-]{0,12}@[a-z0-9.-]{0,12}>?[ ,<>a-z]{0,3}")
}

#[test]
fn from_mailbox_parsing_never_panics_and_accepted_values_are_clean() {
    check("FromMailbox", inputs(valid_mailbox(), near_mailbox(), MAILBOX_PIECES), |input| {
        let Ok(from) = input.text.parse::<FromMailbox>() else { return Ok(false) };
        let shown = from.to_string();
        let mailbox = from.mailbox().to_string();
        let address = from.address().to_string();
        for text in [&shown, &mailbox, &address] {
            prop_assert!(!has_line_breaking_char(text), "{:?} was accepted as {text:?}", input.text);
        }
        if let Some(name) = from.name() {
            prop_assert!(!name.is_empty() && name.trim() == name, "untrimmed name {name:?}");
            prop_assert!(!name.chars().any(char::is_control), "control character in the name {name:?}");
        }
        prop_assert!(address.is_ascii(), "non-ASCII address {address:?}");
        prop_assert_eq!(shown.parse::<FromMailbox>(), Ok(from.clone()), "{:?} does not read back", shown);
        Ok(true)
    });
}

const HOST_PIECES: &str = "smtp|mail|example|.com|.|..|-|localhost|127.0.0.1|0x7f|::1|::|fe80::1%eth0|[|]|:|\
    25|587|/|://|smtp://|@|user@| |\t|\r\n|\n|\0|xn--|é|\u{ff0e}|1|255|256|%";

fn domain() -> BoxedStrategy<String> {
    regex("([a-zA-Z0-9]{1,8}(-[a-zA-Z0-9]{1,8})?\\.){0,3}[a-zA-Z][a-zA-Z0-9]{0,7}(-[a-zA-Z0-9]{1,8})?")
}

fn valid_host() -> BoxedStrategy<String> {
    let host = prop_oneof![
        4 => domain(),
        1 => domain().prop_map(|name| format!("{name}.")),
        2 => any::<std::net::Ipv4Addr>().prop_map(|ip| ip.to_string()),
        1 => any::<std::net::Ipv6Addr>().prop_map(|ip| ip.to_string()),
        1 => any::<std::net::Ipv6Addr>().prop_map(|ip| format!("[{ip}]")),
    ];
    (regex("[ \t]{0,2}"), host, regex("[ \t]{0,2}")).prop_map(|(a, host, b)| format!("{a}{host}{b}")).boxed()
}

fn near_host() -> BoxedStrategy<String> {
    prop_oneof![
        // Around the 253-character limit and the 63-character label limit.
        regex("([a-z0-9]{60,64}\\.){3}[a-z]{55,64}"),
        regex("[a-zA-Z0-9.:\\[\\]-]{1,24}(:[0-9]{1,5})?"),
        regex("[0-9]{1,3}(\\.[0-9]{1,4}){1,4}"),
    ]
    .boxed()
}

#[test]
fn smtp_host_parsing_never_panics_and_accepted_values_are_clean() {
    check("SmtpHost", inputs(valid_host(), near_host(), HOST_PIECES), |input| {
        let Ok(host) = input.text.parse::<SmtpHost>() else { return Ok(false) };
        let shown = host.to_string();
        prop_assert!(!has_line_breaking_char(&shown), "{:?} was accepted as {shown:?}", input.text);
        prop_assert!(!shown.is_empty() && shown.trim() == shown, "{:?} was accepted as {shown:?}", input.text);
        if !matches!(host, SmtpHost::Ipv6(_)) {
            prop_assert!(shown.len() <= 253, "{} characters accepted: {shown:?}", shown.len());
        }
        prop_assert_eq!(shown.parse::<SmtpHost>(), Ok(host.clone()), "{:?} does not read back", shown);
        Ok(true)
    });
}

const PORT_PIECES: &str = "0|1|25|465|587|65535|65536|99999|4294967296|-|+| |\t|\n|\0|٣|²|１|e3|0x19|.|:";

fn valid_port() -> BoxedStrategy<String> {
    prop_oneof![
        (1u16..=u16::MAX).prop_map(|port| port.to_string()),
        regex("[ \t]{0,2}0{0,3}[1-9][0-9]{0,3}[ \t]{0,2}"),
    ]
    .boxed()
}

#[test]
fn smtp_port_parsing_never_panics_and_accepted_values_are_clean() {
    check("SmtpPort", inputs(valid_port(), regex("[0-9 +-]{0,12}"), PORT_PIECES), |input| {
        let Ok(port) = input.text.parse::<SmtpPort>() else { return Ok(false) };
        let shown = port.to_string();
        prop_assert!(port.get() >= 1, "port 0 accepted from {:?}", input.text);
        prop_assert_eq!(&shown, &port.get().to_string());
        // Leading zeros and spaces are dropped, so the value (not the text) reads back.
        prop_assert_eq!(shown.parse::<SmtpPort>(), Ok(port));
        Ok(true)
    });
}

const URL_PIECES: &str = "https://|http://|ftp://|javascript:|https:|//|localhost|127.0.0.1|[::1]|0x7f.1|\
    login.example.com|example.com|:|443|8080|99999|/|oauth2|/token|?|#|&|=|@|user:pw@|%|%0d%0a|%00|\r\n|\n|\0|\t| |\
    \\|[|]|..|xn--|xn--nxasmq6b|é|\u{ff0e}|\u{3002}";

fn valid_token_url() -> BoxedStrategy<String> {
    let path = "(/[A-Za-z0-9._~-]{0,10}){0,3}(\\?[a-z0-9=&]{0,12})?";
    prop_oneof![
        3 => (domain(), regex(&format!("(:[1-9][0-9]{{0,3}})?{path}")))
            .prop_map(|(host, rest)| format!("https://{host}{rest}")),
        1 => regex(&format!("https?://(localhost|127\\.[1-9]?[0-9]\\.0\\.1|\\[::1\\])(:[1-9][0-9]{{0,3}})?{path}")),
    ]
    .boxed()
}

fn near_token_url() -> BoxedStrategy<String> {
    regex("(https?|ftp)://([a-z0-9.:@%-]{0,16}|\\[[0-9a-f:]{0,10}\\])(:[0-9]{0,6})?(/[a-z0-9%?#&=./\\\\]{0,10}){0,2}")
}

#[test]
fn token_url_parsing_never_panics_and_accepted_values_are_clean() {
    check("TokenUrl", inputs(valid_token_url(), near_token_url(), URL_PIECES), |input| {
        let Ok(url) = input.text.parse::<TokenUrl>() else { return Ok(false) };
        let shown = url.to_string();
        prop_assert!(!has_line_breaking_char(&shown), "{:?} was accepted as {shown:?}", input.text);
        prop_assert!(url.url().username().is_empty() && url.url().password().is_none(), "credentials in {shown:?}");
        let loopback = matches!(url.url().host_str(), Some("localhost" | "[::1]"))
            || url.url().host_str().is_some_and(|h| h.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback()));
        prop_assert!(
            url.url().scheme() == "https" || (url.url().scheme() == "http" && loopback),
            "{:?} was accepted as {shown:?}",
            input.text
        );
        prop_assert_eq!(shown.parse::<TokenUrl>(), Ok(url.clone()), "{:?} does not read back", shown);
        Ok(true)
    });
}
