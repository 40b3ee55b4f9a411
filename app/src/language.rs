//! Which language a person reads: English (the default) or Bahasa Indonesia.
//!
//! The words live in `app/locales/<code>.json` and are compiled into the `i18n` module
//! (leptos_i18n); `build.rs` refuses a build where one language lacks a key. Pages follow the
//! reactive locale of the `I18nContextProvider`; the server picks a language per request
//! (cookie, else `Accept-Language`) for the messages it writes, and per recipient for email.

pub use crate::i18n::Locale;
use leptos_i18n::Locale as _;

/// A fixed text in the reader's language, e.g. `|l| td_string!(l, smtp.save)`: what a select's
/// option or a table's heading shows.
pub type Words = fn(Locale) -> &'static str;

/// The cookie leptos_i18n keeps the choice in (its default name), read by the server too.
pub const COOKIE: &str = "i18n_pref_locale";
/// How long the choice is kept: a year.
pub const COOKIE_MAX_AGE_SECS: i64 = 365 * 24 * 3600;

/// Every language, in the order the switch lists them.
pub fn all() -> &'static [Locale] {
    Locale::get_all()
}

/// `"en"` or `"id"`: what the cookie, the database and `<html lang>` hold.
pub fn code(locale: Locale) -> &'static str {
    locale.as_str()
}

/// The language of a code, `None` for one we do not have.
pub fn parse(code: &str) -> Option<Locale> {
    all().iter().copied().find(|l| l.as_str().eq_ignore_ascii_case(code.trim()))
}

/// Dates as the pages show them: `2026-11-28 14:05 UTC` in English, `28 Nov 2026 14.05 UTC` in
/// Indonesian (day first, Indonesian month names, a dot between hours and minutes).
pub fn format_time(locale: Locale, ms: i64) -> String {
    let at = crate::shared::time::utc(ms);
    match locale {
        Locale::en => crate::shared::time::format_utc(ms),
        Locale::id => {
            const MONTHS: [&str; 12] =
                ["Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agu", "Sep", "Okt", "Nov", "Des"];
            let month = MONTHS[usize::from(u8::from(at.month())) - 1];
            format!("{} {month} {:04} {:02}.{:02} UTC", at.day(), at.year(), at.hour(), at.minute())
        }
    }
}

/// Whole numbers with the language's thousands separator: `12,345` / `12.345`.
pub fn format_count(locale: Locale, n: i64) -> String {
    let separator = match locale {
        Locale::en => ',',
        Locale::id => '.',
    };
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(separator);
        }
        out.push(ch);
    }
    out
}

#[cfg(feature = "ssr")]
pub mod ssr {
    use super::{COOKIE, Locale, parse};
    use leptos_i18n::Locale as _;

    /// The `Set-Cookie` value that keeps `locale` as the choice, for the whole site.
    pub fn set_cookie(locale: Locale) -> String {
        format!("{COOKIE}={}; Path=/; Max-Age={}; SameSite=Lax", locale.as_str(), super::COOKIE_MAX_AGE_SECS)
    }

    /// The language of the current request: the choice in its cookie, else the first of its
    /// `Accept-Language` we have, else English.
    pub fn request_locale() -> Locale {
        leptos::prelude::use_context::<http::request::Parts>()
            .map(|parts| from_headers(&parts.headers))
            .unwrap_or_default()
    }

    pub fn from_headers(headers: &http::HeaderMap) -> Locale {
        let chosen = headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .and_then(|(_, value)| parse(value));
        chosen.unwrap_or_else(|| {
            let accepted: Vec<String> = headers
                .get(http::header::ACCEPT_LANGUAGE)
                .and_then(|value| value.to_str().ok())
                .map(accepted_languages)
                .unwrap_or_default();
            Locale::find_locale(&accepted)
        })
    }

    /// The languages of an `Accept-Language` header, most wanted first.
    fn accepted_languages(header: &str) -> Vec<String> {
        let mut weighted: Vec<(f32, String)> = header
            .split(',')
            .filter_map(|item| {
                let mut parts = item.trim().split(';');
                let tag = parts.next()?.trim();
                let q =
                    parts.find_map(|p| p.trim().strip_prefix("q=")).and_then(|q| q.parse::<f32>().ok()).unwrap_or(1.0);
                (!tag.is_empty() && tag != "*" && q > 0.0).then(|| (q, tag.to_owned()))
            })
            .collect();
        weighted.sort_by(|a, b| b.0.total_cmp(&a.0));
        weighted.into_iter().map(|(_, tag)| tag).collect()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
            let mut map = http::HeaderMap::new();
            for (name, value) in pairs {
                map.append(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
            }
            map
        }

        #[test]
        fn the_cookie_wins_then_accept_language_then_english() {
            assert_eq!(from_headers(&headers(&[("accept-language", "id-ID,id;q=0.9,en;q=0.8")])), Locale::id);
            assert_eq!(from_headers(&headers(&[("accept-language", "fr, en;q=0.5")])), Locale::en);
            assert_eq!(from_headers(&headers(&[("accept-language", "en;q=0.3, id;q=0.7")])), Locale::id);
            assert_eq!(
                from_headers(&headers(&[("accept-language", "id"), ("cookie", "a=1; i18n_pref_locale=en")])),
                Locale::en
            );
            assert_eq!(from_headers(&headers(&[("cookie", "i18n_pref_locale=xx")])), Locale::en);
            assert_eq!(from_headers(&headers(&[])), Locale::en);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_numbers_follow_the_language() {
        assert_eq!(format_time(Locale::en, 1_795_833_000_000), "2026-11-28 02:30 UTC");
        assert_eq!(format_time(Locale::id, 1_795_833_000_000), "28 Nov 2026 02.30 UTC");
        assert_eq!(format_time(Locale::id, 1_796_000_000_000), "30 Nov 2026 00.53 UTC");
        assert_eq!(format_count(Locale::en, 1_234_567), "1,234,567");
        assert_eq!(format_count(Locale::id, 1_234_567), "1.234.567");
        assert_eq!(format_count(Locale::id, -999), "-999");
    }

    /// The keys of one language's file, nested keys as `a.b` (build.rs refuses the same gap).
    fn keys(json: &str) -> std::collections::BTreeSet<String> {
        fn walk(prefix: &str, value: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
            match value {
                serde_json::Value::Object(map) => {
                    for (key, value) in map {
                        walk(&if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") }, value, out);
                    }
                }
                _ => {
                    out.insert(prefix.to_owned());
                }
            }
        }
        let mut out = std::collections::BTreeSet::new();
        walk("", &serde_json::from_str(json).unwrap(), &mut out);
        out
    }

    #[test]
    fn every_key_exists_in_both_languages() {
        let en = keys(include_str!("../locales/en.json"));
        let id = keys(include_str!("../locales/id.json"));
        assert!(en.len() > 300, "{} keys", en.len());
        assert_eq!(en.symmetric_difference(&id).collect::<Vec<_>>(), Vec::<&String>::new());
    }

    #[test]
    fn the_smtp_page_uses_the_reference_documents_words() {
        use crate::i18n::td_string;
        let l = Locale::id;
        let words = [
            td_string!(l, smtp.host),
            td_string!(l, smtp.from),
            td_string!(l, smtp.port),
            td_string!(l, smtp.tls),
            td_string!(l, smtp.auth_type),
            td_string!(l, smtp.basic),
            td_string!(l, smtp.username),
            td_string!(l, smtp.password),
            td_string!(l, smtp.client_id),
            td_string!(l, smtp.client_secret),
            td_string!(l, smtp.token_url),
            td_string!(l, smtp.scope),
            td_string!(l, smtp.save),
            td_string!(l, smtp.send_test),
            td_string!(l, smtp.mode_default),
            td_string!(l, smtp.mode_custom),
        ];
        assert_eq!(
            words,
            [
                "Server Email",
                "Dari",
                "Port",
                "TLS/SSL",
                "Jenis autentikasi",
                "Autentikasi Dasar",
                "Nama Pengguna",
                "Sandi",
                "Client ID",
                "Rahasia Klien",
                "URL token",
                "Cakupan",
                "Simpan",
                "Kirim Email Uji Coba",
                "Gunakan setelan email default",
                "Gunakan setelan email kustom",
            ]
        );
    }

    #[test]
    fn codes_round_trip() {
        for &locale in all() {
            assert_eq!(parse(code(locale)), Some(locale));
        }
        assert_eq!(parse("ID"), Some(Locale::id));
        assert_eq!(parse("fr"), None);
    }
}

/// Every word a person reads comes from `locales/*.json`: a scan of the components for text
/// left in their markup (children and the attributes people read).
#[cfg(test)]
mod scan {
    use std::path::Path;

    /// Literals that are not words of either language: names, symbols, examples of input.
    const ALLOWED: &[&str] = &[
        "Mailroom",
        "⚠",
        " ",
        "smtp.example.com",
        "mail@example.com",
        "Mailroom <mail@example.com>",
        "https://login.example.com/oauth2/v2.0/token",
        "https://outlook.office365.com/.default",
        "-----BEGIN CERTIFICATE-----",
        "-----BEGIN PRIVATE KEY-----",
        "{ \\\"type\\\": \\\"service_account\\\", … }",
    ];
    /// Attributes people read (or hear); the rest (ids, classes, types, names) are not words.
    const READ: &[&str] = &["aria-label", "title", "placeholder", "label", "hint", "alt", "text"];

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The bodies of the `view! { … }` macros in `source`.
    fn views(source: &str) -> Vec<&str> {
        let mut found = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find("view! {") {
            let body = &rest[start + 7..];
            let mut depth = 1;
            let mut end = body.len();
            let mut in_string = false;
            let mut previous = ' ';
            for (i, ch) in body.char_indices() {
                match ch {
                    '"' if previous != '\\' => in_string = !in_string,
                    '{' if !in_string => depth += 1,
                    '}' if !in_string => {
                        depth -= 1;
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    _ => {}
                }
                previous = ch;
            }
            found.push(&body[..end]);
            rest = &body[end..];
        }
        found
    }

    /// Literals of a view body that a person would read: children text and read attributes.
    fn read_literals(view: &str) -> Vec<String> {
        let mut out = Vec::new();
        let bytes: Vec<char> = view.chars().collect();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != '"' {
                i += 1;
                continue;
            }
            let start = i + 1;
            let mut j = start;
            while j < bytes.len() && !(bytes[j] == '"' && bytes[j - 1] != '\\') {
                j += 1;
            }
            let literal: String = bytes[start..j.min(bytes.len())].iter().collect();
            let before: String = bytes[..i].iter().collect();
            let before = before.trim_end();
            let attribute = before.strip_suffix('=').map(|b| {
                let name: String =
                    b.chars().rev().take_while(|c| c.is_alphanumeric() || *c == '-' || *c == ':').collect();
                name.chars().rev().collect::<String>()
            });
            let is_child = before.ends_with('>') || before.ends_with('}') || before.ends_with('"');
            let is_call = before.ends_with('(') || before.ends_with(',') || before.ends_with('!');
            let read = match attribute {
                Some(name) => READ.contains(&name.as_str()),
                None => is_child && !is_call,
            };
            if read && literal.chars().any(char::is_alphabetic) && !ALLOWED.contains(&literal.as_str()) {
                out.push(literal);
            }
            i = j + 1;
        }
        out
    }

    #[test]
    fn no_words_are_left_in_the_components() {
        let mut files = Vec::new();
        rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
        let mut left = Vec::new();
        for file in files {
            let source = std::fs::read_to_string(&file).unwrap();
            for view in views(&source) {
                for literal in read_literals(view) {
                    left.push(format!("{}: {literal:?}", file.display()));
                }
            }
        }
        assert!(left.is_empty(), "put these in locales/*.json:\n{}", left.join("\n"));
    }

    #[test]
    fn the_scan_finds_text_in_markup() {
        let found = read_literals(r#"<p class="note">"Hello there"</p><span aria-label="Warning" id="w"/>"#);
        assert_eq!(found, vec!["Hello there".to_owned(), "Warning".to_owned()]);
        assert!(read_literals(r#"<input type="email" autocomplete="username"/>"#).is_empty());
    }
}
