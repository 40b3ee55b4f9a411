//! Pieces every domain uses: form fields, the error alert, the Admin tables, polling, email
//! addresses, dates, tokens, and sealing secrets at rest.

pub mod alert;
pub mod email;
pub mod fields;
pub mod language_switch;
pub mod poll;
#[cfg(feature = "ssr")]
pub mod seal;
pub mod table;
pub mod time;
#[cfg(feature = "ssr")]
pub mod token;
