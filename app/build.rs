//! Compiles `locales/<language>.json` into the `i18n` module (leptos_i18n), and refuses to
//! build when one language has a key the other lacks.

use leptos_i18n_build::{Config, ParseOptions, TranslationsInfos};
use std::{collections::BTreeSet, path::PathBuf};

const DEFAULT: &str = "en";
const OTHERS: &[&str] = &["id"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo::rerun-if-changed=build.rs");
    let mut config = Config::new(DEFAULT)?;
    for locale in OTHERS {
        config = config.add_locale(locale)?;
    }
    // Interpolated messages are also needed as plain strings (emails, server messages).
    config.options = ParseOptions::default().interpolate_display(true);
    let translations = TranslationsInfos::parse(config)?;
    translations.rerun_if_locales_changed();
    translations.emit_diagnostics();

    let reference = keys(DEFAULT)?;
    for locale in OTHERS {
        let other = keys(locale)?;
        let missing: Vec<_> = reference.difference(&other).collect();
        let extra: Vec<_> = other.difference(&reference).collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(format!("locales/{locale}.json lacks {missing:?} and has keys English lacks: {extra:?}").into());
        }
    }

    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    translations.generate_i18n_module(out.join("i18n"))?;
    Ok(())
}

/// Every key of one language's file, nested keys as `a.b`.
fn keys(locale: &str) -> Result<BTreeSet<String>, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(format!("locales/{locale}.json"))?;
    let value: serde_json::Value = serde_json::from_str(&text)?;
    let mut out = BTreeSet::new();
    collect("", &value, &mut out);
    Ok(out)
}

fn collect(prefix: &str, value: &serde_json::Value, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                collect(&path, value, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}
