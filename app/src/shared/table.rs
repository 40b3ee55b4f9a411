//! The Admin area's lists (users, mailbox, outbox): one table markup.

use leptos::prelude::*;

/// A `table.list` with one header row; `children` are its `<tr>` rows.
#[component]
pub fn AdminTable(
    /// Column headings in order; an empty one heads a column of buttons.
    headers: &'static [&'static str],
    /// Added to the table's `list` class, e.g. "outbox".
    #[prop(optional)]
    variant: Option<&'static str>,
    children: Children,
) -> impl IntoView {
    let class = variant.map_or_else(|| "list".to_owned(), |variant| format!("list {variant}"));
    view! {
        <table class=class>
            <thead><tr>{headers.iter().map(|&header| view! { <th>{header}</th> }).collect_view()}</tr></thead>
            <tbody>{children()}</tbody>
        </table>
    }
}
