//! The Admin area's lists (users, mailbox, outbox): one table markup.

use crate::{i18n::use_i18n, language::Words};
use leptos::prelude::*;

/// A `table.list` with one header row; `children` are its `<tr>` rows.
#[component]
pub fn AdminTable(
    /// Column headings in order, each worded in the reader's language.
    headers: &'static [Words],
    /// Added to the table's `list` class, e.g. "outbox".
    #[prop(optional)]
    variant: Option<&'static str>,
    children: Children,
) -> impl IntoView {
    let i18n = use_i18n();
    let class = variant.map_or_else(|| "list".to_owned(), |variant| format!("list {variant}"));
    view! {
        <table class=class>
            <thead><tr>{headers.iter().map(|&header| view! { <th scope="col">{move || header(i18n.get_locale())}</th> }).collect_view()}</tr></thead>
            <tbody>{children()}</tbody>
        </table>
    }
}
