//! The emails the instance sends, each with a plain-text and an HTML part. Every value put into
//! the HTML is escaped.

use super::ssr::NewMail;
use crate::{i18n::td_string, language::Locale, shared::email::EmailAddress};
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

fn html_page(locale: Locale, body: &str) -> String {
    let lang = crate::language::code(locale);
    format!("<!DOCTYPE html><html lang=\"{lang}\"><body style=\"font-family:sans-serif\">{body}</body></html>")
}

/// The language of email to a user: their choice, else the instance's default.
pub fn language_for(chosen: Option<&str>, default: Locale) -> Locale {
    chosen.and_then(crate::language::parse).unwrap_or(default)
}

pub fn invitation(
    locale: Locale,
    instance: &str,
    inviter: &str,
    name: &str,
    email: &EmailAddress,
    link: &str,
    hours: i64,
) -> NewMail {
    let l = locale;
    NewMail {
        kind: "invitation",
        to_addr: email.clone(),
        to_name: Some(name.to_owned()),
        subject: td_string!(l, email.invitation_subject, instance).to_string(),
        text: format!(
            "{}\n\n{}\n\n{link}\n",
            td_string!(l, email.hello, name),
            td_string!(l, email.invitation_body, inviter, instance, hours)
        ),
        html: html_page(
            l,
            &format!(
                "<p>{}</p><p>{}</p><p><a href=\"{}\">{}</a></p>",
                td_string!(l, email.hello, name = text(name)),
                td_string!(l, email.invitation_body, inviter = text(inviter), instance = text(instance), hours),
                attr(link),
                td_string!(l, email.invitation_link)
            ),
        ),
    }
}

pub fn password_reset(locale: Locale, instance: &str, name: &str, email: &EmailAddress, link: &str) -> NewMail {
    let l = locale;
    NewMail {
        kind: "password_reset",
        to_addr: email.clone(),
        to_name: Some(name.to_owned()),
        subject: td_string!(l, email.reset_subject, instance).to_string(),
        text: format!(
            "{}\n\n{}\n\n{link}\n\n{}\n",
            td_string!(l, email.hello, name),
            td_string!(l, email.reset_body, instance),
            td_string!(l, email.reset_ignore)
        ),
        html: html_page(
            l,
            &format!(
                "<p>{}</p><p>{}</p><p><a href=\"{}\">{}</a></p><p>{}</p>",
                td_string!(l, email.hello, name = text(name)),
                td_string!(l, email.reset_body, instance = text(instance)),
                attr(link),
                td_string!(l, email.reset_link),
                td_string!(l, email.reset_ignore)
            ),
        ),
    }
}

pub fn smtp_changed(
    locale: Locale,
    instance: &str,
    changed_by: &str,
    fields: &[String],
    admin_name: &str,
    admin_email: &EmailAddress,
) -> NewMail {
    let l = locale;
    let list = fields.join(", ");
    let items: String = fields.iter().map(|f| format!("<li>{}</li>", text(f))).collect();
    NewMail {
        kind: "admin_notice",
        to_addr: admin_email.clone(),
        to_name: Some(admin_name.to_owned()),
        subject: td_string!(l, email.changed_subject, who = changed_by).to_string(),
        text: format!(
            "{}\n\n{} {list}\n",
            td_string!(l, email.changed_body, who = changed_by, instance),
            td_string!(l, email.changed_list)
        ),
        html: html_page(
            l,
            &format!(
                "<p>{}</p><p>{}</p><ul>{items}</ul>",
                td_string!(l, email.changed_body, who = text(changed_by), instance = text(instance)),
                td_string!(l, email.changed_list)
            ),
        ),
    }
}

/// Send Test Email's subject and body.
pub fn test_email(locale: Locale, instance: &str) -> (String, String) {
    (
        td_string!(locale, email.test_subject, instance).to_string(),
        td_string!(locale, email.test_body, instance).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_in_html_are_escaped_and_both_parts_exist() {
        let mail = invitation(
            Locale::en,
            "Mail<room>",
            "Eve \"admin\"",
            "<script>x</script>",
            &"a@example.com".parse().unwrap(),
            "https://x/?a=1&b=\"2\"",
            72,
        );
        assert!(mail.html.contains("&lt;script&gt;x&lt;/script&gt;"), "{}", mail.html);
        assert!(mail.html.contains("Mail&lt;room&gt;"));
        assert!(mail.html.contains("href=\"https://x/?a=1&amp;b=&quot;2&quot;\""), "{}", mail.html);
        assert!(!mail.html.contains("<script>"));
        assert!(mail.text.contains("<script>x</script>"), "plain text stays as typed");
        let notice = smtp_changed(
            Locale::en,
            "M",
            "Ann <ann@x.io>",
            &["Email Server".into(), "Password".into()],
            "Bo",
            &"bo@x.io".parse().unwrap(),
        );
        assert_eq!(notice.subject, "SMTP settings were changed by Ann <ann@x.io>");
        assert!(notice.html.contains("Ann &lt;ann@x.io&gt;") && notice.html.contains("<li>Password</li>"));
    }

    #[test]
    fn email_speaks_the_recipients_language() {
        let to: EmailAddress = "a@example.com".parse().unwrap();
        let en = invitation(Locale::en, "M", "Ann", "Bo", &to, "https://x/l", 72);
        assert_eq!(en.subject, "You are invited to M");
        assert!(en.text.starts_with(
            "Hello Bo,\n\nAnn invited you to M. Set your password here (the link works once, for 72 hours):"
        ));
        let id = invitation(Locale::id, "M", "Ann", "Bo", &to, "https://x/l", 72);
        assert_eq!(id.subject, "Anda diundang ke M");
        assert!(id.text.contains("Ann mengundang Anda ke M"), "{}", id.text);
        assert!(id.html.starts_with("<!DOCTYPE html><html lang=\"id\">"));
        let reset = password_reset(Locale::id, "M", "Bo", &to, "https://x/r");
        assert_eq!(reset.subject, "Setel ulang sandi M Anda");
        assert_eq!(test_email(Locale::en, "M"), ("M Mail Test".to_owned(), "M mail is working!".to_owned()));
        assert_eq!(language_for(Some("id"), Locale::en), Locale::id);
        assert_eq!(language_for(None, Locale::id), Locale::id);
        assert_eq!(language_for(Some("xx"), Locale::en), Locale::en);
    }
}
