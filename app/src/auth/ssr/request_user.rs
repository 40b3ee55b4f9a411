//! The signed-in user as read once in a request, for the rest of it.

use crate::{auth::CurrentUser, state::AppState};
use std::sync::{Arc, Mutex};

/// An admin page asks for its frame and for its content: the user is read once. Kept by user
/// id, so a session that changes hands mid-request reads again. Provided per request by
/// [`provide_request_context`].
#[derive(Clone, Default)]
pub struct RequestUser(Arc<Mutex<Option<CurrentUser>>>);

impl RequestUser {
    pub(super) fn get(&self, uid: &str) -> Option<CurrentUser> {
        self.0.lock().ok()?.as_ref().filter(|user| user.id == uid).cloned()
    }

    pub(super) fn keep(&self, user: CurrentUser) {
        if let Ok(mut kept) = self.0.lock() {
            *kept = Some(user);
        }
    }
}

/// What every request's Leptos context holds: the state, and a place for the signed-in user
/// once read.
pub fn provide_request_context(state: AppState) {
    leptos::prelude::provide_context(state);
    leptos::prelude::provide_context(RequestUser::default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn a_request_keeps_the_user_it_read_only_for_that_user() {
        let memo = RequestUser::default();
        assert_eq!(memo.get("u1"), None);
        let user = CurrentUser {
            id: "u1".into(),
            email: "a@example.com".parse().unwrap(),
            name: "A".into(),
            role: Role::Admin,
            language: None,
        };
        memo.keep(user.clone());
        assert_eq!(memo.get("u1"), Some(user));
        assert_eq!(memo.get("u2"), None, "a session that changed hands reads again");
    }
}
